/* CSR x vector by gathers of 8 nonzeros, avx2. See f32-spmv-csr.tmpl.h. */
#include "kernels/simd-avx2.h"
#define SP_FN sp_f32_spmv_csr_ukernel_8__avx2
#include "kernels/f32-spmv-csr.tmpl.h"
