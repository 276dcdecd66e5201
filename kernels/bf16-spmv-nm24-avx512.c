/* 2:4 x vector, bf16 values, AVX-512 without BF16. See spmv-nm24.tmpl.h. */
#define SP_NM24 1
#define SP_FN sp_bf16_spmv_nm24_ukernel_4x32__avx512
#define SP_OTHER sp_bf16_spmm_nm_ukernel__scalar
#include "kernels/spmv-nm24.tmpl.h"
