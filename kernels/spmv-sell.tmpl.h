/*
 * kernels/spmv-sell.tmpl.h — SELL x vector (the batch-1 ukernels for
 * unstructured and block weights). One vector lane per row of a 16-row
 * slice; for each 128-column window the window of X sits in registers and
 * each step is one vector operation: its 16 (or 32) window offsets widened,
 * X picked by two-source permutes, one multiply-add into the lanes. No
 * gather (vgatherdps costs ~5 cycles per element on Zen 5) and no
 * horizontal sum; the lanes' rows (sorted by the packer) are stored one by
 * one; with row blocks (sell_group G > 1) a step's offsets are stored
 * once per block and spread to its G lanes by one permute. Columns of X
 * other than one contiguous column go through a stack copy of each window
 * (spv_window). Define SP_FN and SP_SELL:
 *   0  f32 values: offsets widened to dwords, 4 vpermt2ps + 3 blends pick
 *      X (8 registers), one FMA; 5 bytes per stored slot
 *   1  bf16 values (two slots per lane), AVX-512 without BF16: the window
 *      rounded to bf16 in integer registers and kept as f32, the pairs split
 *      into even and odd slots, two FMAs; 3 bytes per slot
 *   2  bf16 values, AVX512-BF16: the window rounded by vcvtne2ps2bf16 into 4
 *      registers of 32 bf16, 2 vpermt2w + a blend pick X for 32 slots, and
 *      one vdpbf16ps does the step's 32 products; 3 bytes per slot
 * Semantics: the scalar references (kernels/spmm-sell-scalar.c).
 */
#include <assert.h>

#include "kernels/spmv-avx512.h"
#include "kernels/ukernels.h"

#if SP_SELL == 0
#define SELL_P 1
typedef float sell_value;
#define SELL_VALUES(w) ((w)->values)
#else
#define SELL_P 2
typedef uint16_t sell_value;
#define SELL_VALUES(w) ((w)->bvalues)
#endif

/* Cold weights: the values and offsets are two sequential streams per
 * slice that the hardware prefetchers pick up late at each slice's start;
 * fetch SELL_PF bytes ahead of the step being read (8 KiB: 0.075 -> 0.068
 * ms cold at 3072x768, 90%; 2 KiB and 16 KiB were slower). */
#ifndef SELL_PF
#define SELL_PF 8192
#endif
#define SELL_PREFETCH(vp, ip)                                   \
    do {                                                        \
        __builtin_prefetch((const char *)(vp) + SELL_PF);       \
        __builtin_prefetch((const char *)(vp) + SELL_PF + 64);  \
        __builtin_prefetch((const char *)(ip) + SELL_PF / 4);   \
    } while (0)

/* The steps [0, ns) of one window into the accumulators a, b. Indices are
 * shared by G lanes (gp spreads them; grouped is G > 1); LI index bytes per
 * step. */
SPV_INLINE void sell_window(const bool grouped, __m512 *xw, const sell_value *restrict v,
                            const uint8_t *restrict ix, size_t LI, __m512i gp, size_t ns,
                            __m512 *a, __m512 *b)
{
    const size_t L = SP_SELL_H * SELL_P;
#if SP_SELL == 0
#define SELL_IDX(j) (grouped ? _mm512_permutexvar_epi32(gp, _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(ix + (j) * LI)))) \
                             : _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(ix + (j) * LI))))
    size_t j = 0;
    for (; j + 2 <= ns; j += 2) {
        SELL_PREFETCH(v + j * L, ix + j * LI);
        const __m512i i0 = SELL_IDX(j), i1 = SELL_IDX(j + 1);
        *a = _mm512_fmadd_ps(_mm512_loadu_ps(v + j * L), spv_pick128(xw, i0), *a);
        *b = _mm512_fmadd_ps(_mm512_loadu_ps(v + j * L + L), spv_pick128(xw, i1), *b);
    }
    if (j < ns)
        *a = _mm512_fmadd_ps(_mm512_loadu_ps(v + j * L), spv_pick128(xw, SELL_IDX(j)), *a);
#undef SELL_IDX
#elif SP_SELL == 1
    for (int q = 0; q < 8; q++)
        xw[q] = spv_bf16_round(xw[q]);
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    for (size_t j = 0; j < ns; j++) {
        SELL_PREFETCH(v + j * L, ix + j * LI);
        /* lane l: bytes (2l, 2l+1) = its two slots' offsets */
        __m512i t = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(ix + j * LI)));
        if (grouped)
            t = _mm512_permutexvar_epi32(gp, t);
        const __m512i i0 = _mm512_and_si512(t, _mm512_set1_epi32(0xff));
        const __m512i i1 = _mm512_srli_epi32(t, 8);
        const __m512i wv = _mm512_loadu_si512(v + j * L);
        *b = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(wv, hi)), spv_pick128(xw, i1), *b);
        *a = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(wv, 16)), spv_pick128(xw, i0), *a);
    }
#else
    __m512i xb[4];
    for (int q = 0; q < 4; q++)
        xb[q] = (__m512i)_mm512_cvtne2ps_pbh(xw[2 * q + 1], xw[2 * q]);
    for (size_t j = 0; j < ns; j++) {
        SELL_PREFETCH(v + j * L, ix + j * LI);
        /* word 2l+q: byte 2l+q, or 2(l/G)+q of the shared ones (the dword
         * permute moves both of a lane's words at once) */
        __m512i i0 = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(ix + j * LI)));
        if (grouped)
            i0 = _mm512_permutexvar_epi32(gp, i0);
        const __mmask32 h6 = _mm512_test_epi16_mask(i0, _mm512_set1_epi16(64));
        const __m512i g = _mm512_mask_blend_epi16(h6, _mm512_permutex2var_epi16(xb[0], i0, xb[1]),
                                                  _mm512_permutex2var_epi16(xb[2], i0, xb[3]));
        const __m512bh wv = (__m512bh)_mm512_loadu_si512(v + j * L);
        if (j & 1)
            *b = _mm512_dpbf16_ps(*b, wv, (__m512bh)g);
        else
            *a = _mm512_dpbf16_ps(*a, wv, (__m512bh)g);
    }
#endif
}

void SP_FN(const sp_spmat *restrict w, size_t p0, size_t p1, size_t n,
           const float *restrict x, size_t ldx, float *restrict y, size_t ldy,
           const float *restrict bias)
{
    assert(w->layout == SP_LAYOUT_SELL && w->sell_slots == SELL_P);
    assert(w->dtype == (SP_SELL ? SP_BF16 : SP_F32));
    assert(p1 <= w->sell_slices && ldx >= n && ldy >= n);
    const size_t K = w->cols, NW = w->sell_windows, H = SP_SELL_H;
    const size_t L = H * SELL_P, G = (size_t)w->sell_group, LI = L / G;
    const __m512i gp = spv_group_perm((int)G);
    for (size_t c = 0; c < n; c++)
        for (size_t sl = p0; sl < p1; sl++) {
            const uint32_t *rows = w->sell_rows + sl * H;
            __m512 a = spv_bias16(bias, rows), b = _mm512_setzero_ps();
            const sell_value *v = SELL_VALUES(w) + (size_t)w->sell_ptr[sl] * L;
            const uint8_t *ix = w->sell_idx + (size_t)w->sell_ptr[sl] * LI;
            const uint8_t *steps = w->sell_steps + sl * NW;
            for (size_t win = 0; win < NW; win++) {
                const size_t ns = steps[win];
                if (!ns)
                    continue;
                __m512 xw[8];
                spv_window(x, ldx, c, win * SP_SELL_W, K, 8, xw);
                if (G > 1)
                    sell_window(true, xw, v, ix, LI, gp, ns, &a, &b);
                else
                    sell_window(false, xw, v, ix, LI, gp, ns, &a, &b);
                v += ns * L;
                ix += ns * LI;
            }
            spv_store16(y, ldy, c, rows, _mm512_add_ps(a, b));
        }
}
