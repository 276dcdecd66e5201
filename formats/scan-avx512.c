/*
 * Scanning and packing ukernels for AVX-512 (F, BW, VL, DQ) + BMI2
 * (formats/scan.h). A vector's nonzero lanes become one mask register,
 * which is the bitmask itself (lane c = bit c); 2:4 groups are nibbles of
 * it. Kept values are compressed through 32-bit lanes (vpcompressd), which
 * AVX-512F has for every element width used here. Partial vectors use
 * masked loads; 1-byte compress and packing go to the scalar reference.
 */
#include <immintrin.h>
#include <string.h>

#include "formats/scan.h"

/* a group of 4 (a nibble of a lane mask) with 3 or 4 bits set */
static inline uint64_t over2(uint64_t m)
{
    uint64_t s = m - ((m >> 1) & 0x5555555555555555ull);
    s = (s & 0x3333333333333333ull) + ((s >> 2) & 0x3333333333333333ull);
    return (s + 0x5555555555555555ull) & 0x8888888888888888ull;
}

/* nonzero lanes of the elements at p: `lanes` of them, masked by lm */
static inline uint64_t nzmask(const void *p, size_t es, uint64_t zm, uint64_t lm)
{
    switch (es) {
    case 1: return _mm512_mask_test_epi8_mask(lm, _mm512_maskz_loadu_epi8(lm, p), _mm512_set1_epi8((char)zm));
    case 2: return _mm512_mask_test_epi16_mask((__mmask32)lm, _mm512_maskz_loadu_epi16((__mmask32)lm, p),
                                               _mm512_set1_epi16((short)zm));
    case 4: return _mm512_mask_test_epi32_mask((__mmask16)lm, _mm512_maskz_loadu_epi32((__mmask16)lm, p),
                                               _mm512_set1_epi32((int)zm));
    default: return _mm512_mask_test_epi64_mask((__mmask8)lm, _mm512_maskz_loadu_epi64((__mmask8)lm, p),
                                                _mm512_set1_epi64((long long)zm));
    }
}

static inline size_t lanes_of(size_t es) { return 64 / es; }

static inline uint64_t lane_mask(size_t k) { return k >= 64 ? ~0ull : ((1ull << k) - 1); }

static uint64_t zeros_avx512(const void *src, size_t n, size_t es, uint64_t zm)
{
    const unsigned char *p = src;
    const size_t L = lanes_of(es);
    uint64_t nz = 0;
    size_t i = 0;
    for (; i + L <= n; i += L)
        nz += (uint64_t)__builtin_popcountll(nzmask(p + i * es, es, zm, lane_mask(L)));
    if (i < n)
        nz += (uint64_t)__builtin_popcountll(nzmask(p + i * es, es, zm, lane_mask(n - i)));
    return (uint64_t)n - nz;
}

static uint64_t zeros24_avx512(const void *src, size_t n, size_t es, uint64_t zm, bool *ok)
{
    const unsigned char *p = src;
    const size_t L = lanes_of(es);
    uint64_t nz = 0, bad = 0;
    size_t i = 0;
    for (; i + L <= n; i += L) {
        uint64_t m = nzmask(p + i * es, es, zm, lane_mask(L));
        nz += (uint64_t)__builtin_popcountll(m);
        bad |= over2(m);
    }
    if (i < n) {
        uint64_t m = nzmask(p + i * es, es, zm, lane_mask(n - i));
        nz += (uint64_t)__builtin_popcountll(m);
        bad |= over2(m); /* n - i is a multiple of 4: whole nibbles */
    }
    *ok = *ok && !bad;
    return (uint64_t)n - nz;
}

static size_t bitmask_avx512(uint8_t *bits, const void *row, size_t cols, size_t es, uint64_t zm)
{
    const unsigned char *p = row;
    const size_t L = lanes_of(es);
    size_t nnz = 0, c = 0;
    for (; c + L <= cols; c += L) {
        uint64_t m = nzmask(p + c * es, es, zm, lane_mask(L));
        memcpy(bits + c / 8, &m, L / 8);
        nnz += (size_t)__builtin_popcountll(m);
    }
    if (c < cols) {
        uint64_t m = nzmask(p + c * es, es, zm, lane_mask(cols - c));
        memcpy(bits + c / 8, &m, (cols - c + 7) / 8);
        nnz += (size_t)__builtin_popcountll(m);
    }
    return nnz;
}

/* Store the lanes of v (16 x 32-bit) selected by k, compressed, as es-byte
 * elements at o; returns the count. */
static inline size_t put16(unsigned char *o, __m512i v, __mmask16 k, size_t es)
{
    __m512i c = _mm512_maskz_compress_epi32(k, v);
    unsigned cnt = (unsigned)__builtin_popcount(k);
    if (es == 2)
        _mm256_mask_storeu_epi16(o, (__mmask16)((1u << cnt) - 1), _mm512_cvtepi32_epi16(c));
    else
        _mm512_mask_storeu_epi32(o, (__mmask16)((1u << cnt) - 1), c);
    return cnt;
}

static size_t compress_avx512(void *vals, const void *row, const uint8_t *bits, size_t cols,
                              size_t es)
{
    if (es == 1)
        return sp_scan_ukernels_scalar.compress(vals, row, bits, cols, es);
    const unsigned char *p = row;
    unsigned char *o = vals;
    size_t k = 0, c = 0;
    const size_t L = es == 8 ? 8 : 16;
    for (; c < cols; c += L) {
        size_t left = cols - c < L ? cols - c : L;
        uint32_t b = 0;
        memcpy(&b, bits + c / 8, (left + 7) / 8);
        b &= (uint32_t)lane_mask(left);
        if (es == 8) {
            __m512i v = _mm512_maskz_loadu_epi64((__mmask8)b, p + c * 8);
            _mm512_mask_compressstoreu_epi64(o + k * 8, (__mmask8)b, v);
            k += (size_t)__builtin_popcount(b);
            continue;
        }
        __m512i v = es == 2 ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16((__mmask16)b, p + c * 2))
                            : _mm512_maskz_loadu_epi32((__mmask16)b, p + c * 4);
        k += put16(o + k * es, v, (__mmask16)b, es);
    }
    return k;
}

/* The kept positions of 16 groups of 4 (a 64-bit nonzero mask, no group
 * with more than two bits): per nibble its nonzeros, then its lowest zeros,
 * to exactly two. Bit tricks on all nibbles at once: twice, a nibble with
 * fewer than two bits gains its lowest clear bit (x + 1 within a nibble
 * cannot carry out: no nibble has more than two bits). */
static inline uint64_t sel24_mask(uint64_t x)
{
    const uint64_t ones = 0x1111111111111111ull, hi = 0x8888888888888888ull;
    for (int round = 0; round < 2; round++) {
        uint64_t pc = x - ((x >> 1) & 0x5555555555555555ull);
        pc = (pc & 0x3333333333333333ull) + ((pc >> 2) & 0x3333333333333333ull);
        /* nibbles with at most one bit: pc + 6 stays below 8 */
        uint64_t few = ((~(pc + 0x6666666666666666ull) & hi) >> 3) * 0xf;
        x |= ~x & (x + ones) & few;
    }
    return x;
}

static void pack24_avx512(void *vals, uint8_t *bits, const void *row, size_t cols, size_t es,
                          uint64_t zm)
{
    if (es != 2 && es != 4) {
        sp_scan_ukernels_scalar.pack24(vals, bits, row, cols, es, zm);
        return;
    }
    const unsigned char *p = row;
    unsigned char *o = vals;
    const size_t L = lanes_of(es);
    size_t c = 0, k = 0;
    for (; c < cols; c += L) {
        size_t left = cols - c < L ? cols - c : L;
        uint64_t m = nzmask(p + c * es, es, zm, lane_mask(left));
        if (over2(m)) { /* not 2:4: the reference's rule */
            sp_scan_ukernels_scalar.pack24(o ? o + k * es : NULL, bits + c / 8, p + c * es, left, es, zm);
            k += left / 2;
            continue;
        }
        uint64_t s = sel24_mask(m) & lane_mask(left);
        memcpy(bits + c / 8, &s, (left + 7) / 8);
        if (!o)
            continue;
        if (left == L) {
            /* a full vector keeps exactly half: two compressed halves */
            __m512i lo, hi;
            if (es == 2) {
                __m512i v = _mm512_loadu_si512(p + c * 2);
                lo = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(v));
                hi = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(v, 1));
                __m512i a = _mm512_maskz_compress_epi32((__mmask16)s, lo);
                __m512i b = _mm512_maskz_compress_epi32((__mmask16)(s >> 16), hi);
                __m512i r = _mm512_inserti64x4(a, _mm512_castsi512_si256(b), 1);
                _mm256_storeu_si256((__m256i *)(o + k * 2), _mm512_cvtepi32_epi16(r));
            } else {
                __m512i v = _mm512_loadu_si512(p + c * 4);
                _mm256_storeu_si256((__m256i *)(o + k * 4),
                                    _mm512_castsi512_si256(_mm512_maskz_compress_epi32((__mmask16)s, v)));
            }
            k += L / 2;
            continue;
        }
        for (size_t h = 0; h < left; h += 16) {
            __mmask16 kh = (__mmask16)(s >> h);
            size_t part = left - h < 16 ? left - h : 16;
            __m512i v = es == 2 ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(
                                      (__mmask16)lane_mask(part), p + (c + h) * 2))
                                : _mm512_maskz_loadu_epi32((__mmask16)lane_mask(part), p + (c + h) * 4);
            k += put16(o + k * es, v, kh, es);
        }
    }
}

const sp_scan_ukernels sp_scan_ukernels_avx512 = {
    .isa = "avx512",
    .zeros = zeros_avx512,
    .zeros24 = zeros24_avx512,
    .bitmask = bitmask_avx512,
    .compress = compress_avx512,
    .pack24 = pack24_avx512,
};
