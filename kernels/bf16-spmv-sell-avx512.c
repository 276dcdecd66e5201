/* SELL x vector, bf16 values, AVX-512 without BF16. See spmv-sell.tmpl.h. */
#define SP_SELL 1
#define SP_FN sp_bf16_spmv_sell_ukernel_16x128__avx512
#include "kernels/spmv-sell.tmpl.h"
