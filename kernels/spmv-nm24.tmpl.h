/*
 * kernels/spmv-nm24.tmpl.h — 2:4 x vector (n == 1) on the N:M layout: rows
 * four at a time share each window of X, which sits in registers; a row's
 * slots of the window are loaded as one vector, their 2-bit offsets widened
 * to lanes by one variable shift and one ternary-logic op (offset | 4*group),
 * and X picked by a two-source permute. One horizontal sum per row at the
 * end. Define SP_FN and SP_NM24:
 *   0  f32 values; windows of 32 columns (16 slots)
 *   1  bf16 values, AVX-512 without BF16: values widened, X rounded to bf16
 *      in integer registers, f32 FMAs; windows of 32 columns
 *   2  bf16 values, AVX512-BF16 + VBMI: X rounded by vcvtne2ps2bf16, 64
 *      columns (32 slots, one pair per group and lane) per vdpbf16ps, the
 *      32 offsets widened to words by one vpmultishiftqb
 * Other N:M patterns, n > 1 and strided X go to SP_OTHER (correct for any
 * input). The bit string is read through 32- and 64-bit windows (the packer
 * pads it by 8 bytes).
 */
#include <assert.h>
#include <string.h>

#include "kernels/spmv-avx512.h"
#include "kernels/ukernels.h"

#if SP_NM24 == 2
#define NM24_COLS 64
#else
#define NM24_COLS 32
#endif
#if SP_NM24 == 0
#define NM24_VALUES(w) ((w)->values)
#else
#define NM24_VALUES(w) ((w)->bvalues)
#endif
/* Windows ahead to prefetch: 8 KiB over four rows' values. */
#if SP_NM24 == 1
#define NM24_PFW (8192 / (4 * 32))
#else
#define NM24_PFW (8192 / (4 * 64))
#endif

/* One window [k0, k0 + NM24_COLS) of rows [r, r + R) into acc; tail: the
 * window is cut by K (masked loads). */
SPV_INLINE void nm24_window(const int R, const bool tail, const sp_spmat *restrict w,
                            size_t r, const float *restrict x, size_t k0, size_t pr,
                            size_t pk, __m512 *acc)
{
    const size_t K = w->cols, slots = w->nm_groups * 2, st = w->nm_stride;
    const size_t kw = tail ? K - k0 : NM24_COLS, nsl = 2 * ((kw + 3) / 4), s0 = k0 / 2;
    __m512 xw[4];
    if (tail) {
        spv_window(x, 1, 0, k0, K, NM24_COLS / 16, xw);
    } else {
        for (int q = 0; q < NM24_COLS / 16; q++)
            xw[q] = _mm512_loadu_ps(x + k0 + 16 * q);
    }
    /* Four rows are four interleaved streams, which the hardware
     * prefetchers follow poorly from memory (18 GB/s on one core where
     * sgemv reads 26): each stream is fetched at the window that the
     * caller's cursor (pr, pk) says will be read NM24_PFW windows later —
     * further along the same rows or in the next rows, 8 KiB ahead in all
     * (the best of 0.25-16 KiB; a plain 8 KiB past each row's window fell
     * inside the same four rows once a row passed 2 KiB: 768x3072 cold
     * read at 21 GB/s, now 36). */
    for (int i = 0; i < R; i++) {
        __builtin_prefetch(NM24_VALUES(w) + (pr + (size_t)i) * slots + pk / 2);
        __builtin_prefetch(w->nm_idx + (pr + (size_t)i) * st + pk / 8);
    }
#if SP_NM24 == 2
    const __m512i ctl = _mm512_set_epi8(
        0, 62, 0, 60, 0, 58, 0, 56, 0, 54, 0, 52, 0, 50, 0, 48, 0, 46, 0, 44, 0, 42, 0, 40,
        0, 38, 0, 36, 0, 34, 0, 32, 0, 30, 0, 28, 0, 26, 0, 24, 0, 22, 0, 20, 0, 18, 0, 16,
        0, 14, 0, 12, 0, 10, 0, 8, 0, 6, 0, 4, 0, 2, 0, 0);
    const __m512i base = _mm512_set_epi16(60, 60, 56, 56, 52, 52, 48, 48, 44, 44, 40, 40,
                                          36, 36, 32, 32, 28, 28, 24, 24, 20, 20, 16, 16,
                                          12, 12, 8, 8, 4, 4, 0, 0);
    const __m512i three = _mm512_set1_epi16(3);
    const __m512i xl = (__m512i)_mm512_cvtne2ps_pbh(xw[1], xw[0]);
    const __m512i xh = (__m512i)_mm512_cvtne2ps_pbh(xw[3], xw[2]);
    const __mmask32 vm = nsl >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << nsl) - 1u);
    for (int i = 0; i < R; i++) {
        uint64_t u;
        memcpy(&u, w->nm_idx + (r + (size_t)i) * st + k0 / 8, 8);
        const __m512i id = _mm512_ternarylogic_epi32(
            _mm512_multishift_epi64_epi8(ctl, _mm512_set1_epi64((long long)u)), three, base, 0xEA);
        const uint16_t *vp = w->bvalues + (r + (size_t)i) * slots + s0;
        const __m512i wv = tail ? _mm512_maskz_loadu_epi16(vm, vp) : _mm512_loadu_si512(vp);
        acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)wv,
                                  (__m512bh)_mm512_permutex2var_epi16(xl, id, xh));
    }
#else
    const __m512i sh = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i base = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
    const __m512i three = _mm512_set1_epi32(3);
#if SP_NM24 == 1
    xw[0] = spv_bf16_round(xw[0]);
    xw[1] = spv_bf16_round(xw[1]);
#endif
    const __mmask16 vm = spv_first16(nsl);
    for (int i = 0; i < R; i++) {
        uint32_t u;
        memcpy(&u, w->nm_idx + (r + (size_t)i) * st + k0 / 8, 4);
        const __m512i id = _mm512_ternarylogic_epi32(
            _mm512_srlv_epi32(_mm512_set1_epi32((int)u), sh), three, base, 0xEA);
#if SP_NM24 == 1
        const uint16_t *vp = w->bvalues + (r + (size_t)i) * slots + s0;
        const __m256i wb = tail ? _mm256_maskz_loadu_epi16(vm, vp)
                                : _mm256_loadu_si256((const __m256i *)vp);
        const __m512 wv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(wb), 16));
#else
        const float *vp = w->values + (r + (size_t)i) * slots + s0;
        const __m512 wv = tail ? _mm512_maskz_loadu_ps(vm, vp) : _mm512_loadu_ps(vp);
#endif
        acc[i] = _mm512_fmadd_ps(wv, _mm512_permutex2var_ps(xw[0], id, xw[1]), acc[i]);
    }
#endif
}

/* Rows [r, r + R) of a 2:4 matrix times the contiguous vector x. */
SPV_INLINE void nm24_rows(const int R, const sp_spmat *restrict w, size_t r,
                          const float *restrict x, float *restrict y, size_t ldy,
                          const float *restrict bias)
{
    const size_t K = w->cols;
    __m512 acc[4];
    for (int i = 0; i < R; i++)
        acc[i] = _mm512_setzero_ps();
    /* the prefetch cursor: rows pr.., column pk (NM24_PFW windows ahead) */
    const size_t nw = K ? (K + NM24_COLS - 1) / NM24_COLS : 1;
    size_t pr = r + (size_t)R * (NM24_PFW / nw), pk = NM24_PFW % nw * NM24_COLS;
    size_t k0 = 0;
    for (; k0 + NM24_COLS <= K; k0 += NM24_COLS) {
        nm24_window(R, false, w, r, x, k0, pr, pk, acc);
        pk += NM24_COLS;
        if (pk >= K) {
            pk = 0;
            pr += (size_t)R;
        }
    }
    if (k0 < K)
        nm24_window(R, true, w, r, x, k0, pr, pk, acc);
    for (int i = 0; i < R; i++) {
        const float s = _mm512_reduce_add_ps(acc[i]);
        y[(r + (size_t)i) * ldy] = bias ? s + bias[r + (size_t)i] : s;
    }
}

void SP_FN(const sp_spmat *restrict w, size_t p0, size_t p1, size_t n,
           const float *restrict x, size_t ldx, float *restrict y, size_t ldy,
           const float *restrict bias)
{
    assert(w->layout == SP_LAYOUT_NM && p1 <= w->rows && ldx >= n && ldy >= n);
    assert(w->dtype == (SP_NM24 ? SP_BF16 : SP_F32));
    if (w->n != 2 || w->m != 4 || n != 1 || ldx != 1) {
        SP_OTHER(w, p0, p1, n, x, ldx, y, ldy, bias);
        return;
    }
    size_t r = p0;
    for (; r + 4 <= p1; r += 4)
        nm24_rows(4, w, r, x, y, ldy, bias);
    for (; r < p1; r++)
        nm24_rows(1, w, r, x, y, ldy, bias);
}
