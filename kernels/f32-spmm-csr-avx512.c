/* CSR x dense, 1x64 N-tile (row x floats), avx512. See f32-spmm-csr.tmpl.h. */
#include "kernels/simd-avx512.h"
#define SP_FN sp_f32_spmm_csr_ukernel_1x64__avx512
#include "kernels/f32-spmm-csr.tmpl.h"
