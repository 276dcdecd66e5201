/* CSR x dense, 1x32 N-tile (row x floats), avx2. See f32-spmm-csr.tmpl.h. */
#include "kernels/simd-avx2.h"
#define SP_FN sp_f32_spmm_csr_ukernel_1x32__avx2
#include "kernels/f32-spmm-csr.tmpl.h"
