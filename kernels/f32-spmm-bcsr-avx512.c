/* Block-sparse and dense x dense, 4x64 register tile (rows x floats), avx512.
 * See f32-spmm-bcsr.tmpl.h. */
#include "kernels/simd-avx512.h"
#define SP_FN sp_f32_spmm_bcsr_ukernel_4x64__avx512
#define SP_GEMM_FN sp_f32_gemm_ukernel_4x64__avx512
#include "kernels/f32-spmm-bcsr.tmpl.h"
