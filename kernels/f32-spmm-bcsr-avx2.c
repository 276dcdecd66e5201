/* Block-sparse and dense x dense, 4x16 register tile (rows x floats), avx2.
 * See f32-spmm-bcsr.tmpl.h. */
#include "kernels/simd-avx2.h"
#define SP_FN sp_f32_spmm_bcsr_ukernel_4x16__avx2
#define SP_GEMM_FN sp_f32_gemm_ukernel_4x16__avx2
#include "kernels/f32-spmm-bcsr.tmpl.h"
