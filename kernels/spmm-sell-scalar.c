/*
 * kernels/spmm-sell-scalar.c — the scalar references of SELL, f32 and bf16
 * values: every stored slot in order, padding included (a padding slot adds
 * 0 times X at its window's first column, as the vector kernels do). The
 * bf16 one computes what kernels/bf16-spmm-scalar.c describes: X rounded to
 * bf16, exact products, f32 sums.
 */
#include <assert.h>
#include <math.h>

#include "kernels/spmat-internal.h"
#include "kernels/ukernels.h"

static void sell_ref(const sp_spmat *restrict w, size_t p0, size_t p1, size_t n,
                     const float *restrict x, size_t ldx, float *restrict y, size_t ldy,
                     const float *restrict bias)
{
    assert(w->layout == SP_LAYOUT_SELL && p1 <= w->sell_slices && ldx >= n && ldy >= n);
    const bool bf16 = w->dtype == SP_BF16;
    const size_t H = SP_SELL_H, P = (size_t)w->sell_slots;
    assert(P == (bf16 ? 2u : 1u));
    for (size_t sl = p0; sl < p1; sl++)
        for (size_t l = 0; l < H; l++) {
            const size_t r = w->sell_rows[sl * H + l];
            if (r == UINT32_MAX)
                continue;
            for (size_t c = 0; c < n; c++) {
                float acc = bias ? bias[r] : 0.0f;
                size_t step = w->sell_ptr[sl];
                for (size_t win = 0; win < w->sell_windows; win++) {
                    const size_t ns = w->sell_steps[sl * w->sell_windows + win];
                    for (size_t j = step; j < step + ns; j++)
                        for (size_t q = 0; q < P; q++) {
                            const size_t i = j * H * P + l * P + q;
                            const size_t k = win * SP_SELL_W + w->sell_idx[sp_sell_idx_at(w, i)];
                            const float xv = x[k * ldx + c];
                            if (bf16) /* bf16 x bf16 is exact in f32: one rounding */
                                acc += sp_bf16_to_f32(w->bvalues[i]) *
                                       sp_bf16_to_f32(sp_bf16_from_f32(xv));
                            else
                                acc = fmaf(w->values[i], xv, acc);
                        }
                    step += ns;
                }
                y[r * ldy + c] = acc;
            }
        }
}

void sp_f32_spmm_sell_ukernel__scalar(const sp_spmat *restrict w, size_t p0, size_t p1,
                                      size_t n, const float *restrict x, size_t ldx,
                                      float *restrict y, size_t ldy,
                                      const float *restrict bias)
{
    assert(w->dtype == SP_F32);
    sell_ref(w, p0, p1, n, x, ldx, y, ldy, bias);
}

void sp_bf16_spmm_sell_ukernel__scalar(const sp_spmat *restrict w, size_t p0, size_t p1,
                                       size_t n, const float *restrict x, size_t ldx,
                                       float *restrict y, size_t ldy,
                                       const float *restrict bias)
{
    assert(w->dtype == SP_BF16);
    sell_ref(w, p0, p1, n, x, ldx, y, ldy, bias);
}
