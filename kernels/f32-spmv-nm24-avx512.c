/* 2:4 x vector, f32, AVX-512. See spmv-nm24.tmpl.h. */
#define SP_NM24 0
#define SP_FN sp_f32_spmv_nm24_ukernel_4x32__avx512
#define SP_OTHER sp_f32_spmm_nm_ukernel_1x64__avx512
#include "kernels/spmv-nm24.tmpl.h"
