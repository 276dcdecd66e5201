/* CSR x vector by gathers of 16 nonzeros, avx512. See f32-spmv-csr.tmpl.h. */
#include "kernels/simd-avx512.h"
#define SP_FN sp_f32_spmv_csr_ukernel_16__avx512
#include "kernels/f32-spmv-csr.tmpl.h"
