/* 2:4 x vector, bf16 values, vdpbf16ps (AVX512-BF16 + VBMI). See spmv-nm24.tmpl.h. */
#define SP_NM24 2
#define SP_FN sp_bf16_spmv_nm24_ukernel_4x64__avx512bf16
#define SP_OTHER sp_bf16_spmm_nm_ukernel__scalar
#include "kernels/spmv-nm24.tmpl.h"
