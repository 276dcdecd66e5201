/*
 * kernels/spmv-avx512.h — helpers shared by the AVX-512 batch-1 ukernels
 * (SELL and 2:4): loading a window of one column of X into registers
 * without reading rows >= K, picking X values by 7-bit window offsets with
 * two-source permutes, emulating the bf16 rounding of AVX512-BF16, and
 * writing a slice of Y. Included only by *-avx512*.c files.
 */
#ifndef SP_SPMV_AVX512_H
#define SP_SPMV_AVX512_H
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define SPV_INLINE static inline __attribute__((always_inline))

SPV_INLINE __mmask16 spv_first16(size_t cnt)
{
    return cnt >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cnt) - 1u);
}

/*
 * Columns [k0, k0 + 16*nv) of column c of X into xw[0..nv), zeros past K.
 * Contiguous (ldx == 1) columns are loaded directly; strided ones are
 * copied through a stack buffer.
 */
SPV_INLINE void spv_window(const float *x, size_t ldx, size_t c, size_t k0, size_t K,
                           int nv, __m512 *xw)
{
    const size_t kw = K - k0;
    if (ldx == 1 && kw >= (size_t)nv * 16) {
        for (int q = 0; q < nv; q++)
            xw[q] = _mm512_loadu_ps(x + c + k0 + 16 * (size_t)q);
        return;
    }
    if (ldx == 1) {
        for (int q = 0; q < nv; q++) {
            const size_t o = (size_t)q * 16;
            xw[q] = o >= kw ? _mm512_setzero_ps()
                            : _mm512_maskz_loadu_ps(spv_first16(kw - o), x + c + k0 + o);
        }
        return;
    }
    float buf[128] __attribute__((aligned(64)));
    const size_t w = kw < (size_t)nv * 16 ? kw : (size_t)nv * 16;
    for (size_t i = 0; i < w; i++)
        buf[i] = x[(k0 + i) * ldx + c];
    for (size_t i = w; i < (size_t)nv * 16; i++)
        buf[i] = 0.0f;
    for (int q = 0; q < nv; q++)
        xw[q] = _mm512_load_ps(buf + 16 * q);
}

/* xw[idx] for 16 offsets 0..127 into a 128-float window (8 registers). */
SPV_INLINE __m512 spv_pick128(const __m512 *xw, __m512i idx)
{
    const __mmask16 h5 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
    const __mmask16 h6 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(64));
    const __m512 a = _mm512_mask_blend_ps(h5, _mm512_permutex2var_ps(xw[0], idx, xw[1]),
                                          _mm512_permutex2var_ps(xw[2], idx, xw[3]));
    const __m512 b = _mm512_mask_blend_ps(h5, _mm512_permutex2var_ps(xw[4], idx, xw[5]),
                                          _mm512_permutex2var_ps(xw[6], idx, xw[7]));
    return _mm512_mask_blend_ps(h6, a, b);
}

/* v rounded to bf16 and widened back (sp_bf16_from_f32 on 16 lanes). */
SPV_INLINE __m512 spv_bf16_round(__m512 v)
{
    const __m512i u = _mm512_castps_si512(v);
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    r = _mm512_and_si512(r, hi);
    const __m512i mag = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(mag, _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_mov_epi32(r, nan,
                              _mm512_and_si512(_mm512_or_si512(u, _mm512_set1_epi32(0x400000)), hi));
    const __mmask16 tiny = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_mov_epi32(r, tiny, _mm512_and_si512(u, _mm512_set1_epi32((int)0x80000000u)));
    return _mm512_castsi512_ps(r);
}

/* The rows rows[0..16) (UINT32_MAX: none) of column c of Y from v. */
SPV_INLINE void spv_store16(float *y, size_t ldy, size_t c, const uint32_t *rows, __m512 v)
{
    float buf[16] __attribute__((aligned(64)));
    _mm512_store_ps(buf, v);
    for (size_t i = 0; i < 16; i++)
        if (rows[i] != UINT32_MAX)
            y[(size_t)rows[i] * ldy + c] = buf[i];
}

/* The bias of rows rows[0..16) (0 for no row, or without bias). */
SPV_INLINE __m512 spv_bias16(const float *bias, const uint32_t *rows)
{
    if (!bias)
        return _mm512_setzero_ps();
    float buf[16] __attribute__((aligned(64)));
    for (size_t i = 0; i < 16; i++)
        buf[i] = rows[i] != UINT32_MAX ? bias[rows[i]] : 0.0f;
    return _mm512_load_ps(buf);
}

/* Lane l of a SELL step takes index (l / G) of the step's G-shared ones:
 * the permutation of dwords that spreads them. */
SPV_INLINE __m512i spv_group_perm(int G)
{
    const __m512i l = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return G == 2 ? _mm512_srli_epi32(l, 1) : G == 4 ? _mm512_srli_epi32(l, 2)
         : G == 8 ? _mm512_srli_epi32(l, 3) : G == 16 ? _mm512_setzero_si512() : l;
}
#endif
