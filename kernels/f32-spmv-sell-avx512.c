/* SELL x vector, f32, AVX-512. See spmv-sell.tmpl.h. */
#define SP_SELL 0
#define SP_FN sp_f32_spmv_sell_ukernel_16x128__avx512
#include "kernels/spmv-sell.tmpl.h"
