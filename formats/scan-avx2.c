/*
 * Scanning ukernels for AVX2 + BMI2 (formats/scan.h): nonzero lanes
 * through vpmovmskb (16-bit lanes squeezed with pext), 2:4 groups as
 * nibbles of that mask. Tails, compress and packing: the scalar reference.
 */
#include <immintrin.h>
#include <string.h>

#include "formats/scan.h"

static inline uint64_t over2(uint64_t m)
{
    uint64_t s = m - ((m >> 1) & 0x5555555555555555ull);
    s = (s & 0x3333333333333333ull) + ((s >> 2) & 0x3333333333333333ull);
    return (s + 0x5555555555555555ull) & 0x8888888888888888ull;
}

/* nonzero lanes of 32 bytes at p (32 / es lanes) as a bit per lane */
static inline uint32_t nzmask(const void *p, size_t es, __m256i zmv)
{
    __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), zmv);
    __m256i z = _mm256_setzero_si256();
    switch (es) {
    case 1: return ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, z));
    case 2: return (uint32_t)_pext_u32(~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi16(v, z)),
                                       0x55555555u) & 0xffffu;
    case 4: return ~(uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(v, z))) & 0xffu;
    default: return ~(uint32_t)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(v, z))) & 0xfu;
    }
}

static inline __m256i zvec(size_t es, uint64_t zm)
{
    switch (es) {
    case 1: return _mm256_set1_epi8((char)zm);
    case 2: return _mm256_set1_epi16((short)zm);
    case 4: return _mm256_set1_epi32((int)zm);
    default: return _mm256_set1_epi64x((long long)zm);
    }
}

static uint64_t zeros_avx2(const void *src, size_t n, size_t es, uint64_t zm)
{
    const unsigned char *p = src;
    const size_t L = 32 / es;
    const __m256i zmv = zvec(es, zm);
    uint64_t nz = 0;
    size_t i = 0;
    for (; i + L <= n; i += L)
        nz += (uint64_t)__builtin_popcount(nzmask(p + i * es, es, zmv));
    return (uint64_t)(i - nz) + sp_scan_ukernels_scalar.zeros(p + i * es, n - i, es, zm);
}

static uint64_t zeros24_avx2(const void *src, size_t n, size_t es, uint64_t zm, bool *ok)
{
    const unsigned char *p = src;
    const size_t L = 32 / es;
    const __m256i zmv = zvec(es, zm);
    uint64_t nz = 0, bad = 0;
    size_t i = 0;
    if (L >= 4)
        for (; i + L <= n; i += L) {
            uint32_t m = nzmask(p + i * es, es, zmv);
            nz += (uint64_t)__builtin_popcount(m);
            bad |= over2(m);
        }
    *ok = *ok && !bad;
    return (uint64_t)(i - nz) + sp_scan_ukernels_scalar.zeros24(p + i * es, n - i, es, zm, ok);
}

static size_t bitmask_avx2(uint8_t *bits, const void *row, size_t cols, size_t es, uint64_t zm)
{
    const unsigned char *p = row;
    const size_t L = 32 / es;
    const __m256i zmv = zvec(es, zm);
    size_t nnz = 0, c = 0;
    if (L >= 8)
        for (; c + L <= cols; c += L) {
            uint32_t m = nzmask(p + c * es, es, zmv);
            memcpy(bits + c / 8, &m, L / 8);
            nnz += (size_t)__builtin_popcount(m);
        }
    if (c < cols)
        nnz += sp_scan_ukernels_scalar.bitmask(bits + c / 8, p + c * es, cols - c, es, zm);
    return nnz;
}

static size_t compress_avx2(void *vals, const void *row, const uint8_t *bits, size_t cols,
                            size_t es)
{
    return sp_scan_ukernels_scalar.compress(vals, row, bits, cols, es);
}

static void pack24_avx2(void *vals, uint8_t *bits, const void *row, size_t cols, size_t es,
                        uint64_t zm)
{
    sp_scan_ukernels_scalar.pack24(vals, bits, row, cols, es, zm);
}

const sp_scan_ukernels sp_scan_ukernels_avx2 = {
    .isa = "avx2",
    .zeros = zeros_avx2,
    .zeros24 = zeros24_avx2,
    .bitmask = bitmask_avx2,
    .compress = compress_avx2,
    .pack24 = pack24_avx2,
};
