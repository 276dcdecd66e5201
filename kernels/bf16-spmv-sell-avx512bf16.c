/* SELL x vector, bf16 values, vdpbf16ps (AVX512-BF16). See spmv-sell.tmpl.h. */
#define SP_SELL 2
#define SP_FN sp_bf16_spmv_sell_ukernel_16x128__avx512bf16
#include "kernels/spmv-sell.tmpl.h"
