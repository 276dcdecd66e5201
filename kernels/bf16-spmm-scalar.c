/*
 * kernels/bf16-spmm-scalar.c — the scalar reference of N:M with bf16 values
 * (SELL's is in spmm-sell-scalar.c). Like it, every bf16 ukernel computes
 *
 *   y[r, c] = bias[r] + sum over stored slots of  w * bf16(x[k, c])
 *
 * where w is the stored bf16 weight, bf16() is sp_bf16_from_f32 (round to
 * nearest even, subnormals to zero), each product of two bf16 numbers is
 * exact in f32 and the sum is accumulated in f32 starting from the bias.
 * Only the order of that sum may differ between kernels (and vdpbf16ps
 * flushes f32 subnormal sums to zero). Stored slots include padding and
 * empty N:M slots (value 0).
 */
#include <assert.h>

#include "kernels/spmat-internal.h"
#include "kernels/ukernels.h"

/* bf16(v) as an f32. */
static float bf16_round(float v) { return sp_bf16_to_f32(sp_bf16_from_f32(v)); }

void sp_bf16_spmm_nm_ukernel__scalar(const sp_spmat *restrict w, size_t p0, size_t p1,
                                     size_t n, const float *restrict x, size_t ldx,
                                     float *restrict y, size_t ldy,
                                     const float *restrict bias)
{
    assert(w->layout == SP_LAYOUT_NM && w->dtype == SP_BF16);
    assert(p1 <= w->rows && ldx >= n && ldy >= n);
    const size_t G = w->nm_groups, N = (size_t)w->n, M = (size_t)w->m;
    const unsigned bits = (unsigned)w->nm_bits;
    for (size_t m = p0; m < p1; m++) {
        const uint8_t *ix = w->nm_idx + m * w->nm_stride;
        for (size_t c = 0; c < n; c++) {
            float acc = bias ? bias[m] : 0.0f;
            for (size_t s = 0; s < G * N; s++) {
                const size_t k = (s / N) * M + sp_nm_offset(ix, s, (int)bits);
                assert(k < w->cols);
                acc += sp_bf16_to_f32(w->bvalues[m * G * N + s]) * bf16_round(x[k * ldx + c]);
            }
            y[m * ldy + c] = acc;
        }
    }
}
