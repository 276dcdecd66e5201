/*
 * Selection ukernels for AVX2 + FMA + F16C (prune/mask_ukernels.h); the
 * same scheme as mask-avx512.c with vector masks instead of mask registers.
 * Keys are below 2^(width-1), so AVX2's signed compares order them right.
 * Rotations inside a group: vpshufb within 128-bit lanes (16-bit elements,
 * m <= 8), vpermd (32-bit, m <= 8; 64-bit, m <= 4). Other m, partial
 * vectors and ragged groups: the scalar reference.
 */
#include <immintrin.h>

#define SFX avx2
#include "prune/mask-ukernels.tmpl.h"

#include "sparsify/common.h"

void sp_x16_nm_ukernel__scalar(uint16_t *dst, const uint16_t *src, size_t rows, size_t cols,
                               int n, int m, uint16_t expm, sp_kcount *c);
void sp_x32_nm_ukernel__scalar(uint32_t *dst, const uint32_t *src, size_t rows, size_t cols,
                               int n, int m, uint32_t expm, sp_kcount *c);
void sp_x64_nm_ukernel__scalar(uint64_t *dst, const uint64_t *src, size_t rows, size_t cols,
                               int n, int m, uint64_t expm, sp_kcount *c);
void sp_blockscore_ukernel__scalar(const void *row, int dt, size_t cols, size_t bc, int l2,
                                   double *sum, uint64_t *nnz, sp_kcount *c);

static inline int pow2(int m) { return m > 0 && !(m & (m - 1)); }

/* The body shared by the three widths: v, a (keys) given; rot(q) the
 * rotated keys; GT/EQ/SUB/AND the width's operations. */
#define NM_BODY(ROT, GT, EQ, SUB, BYTES_PER_LANE)                                             \
    do {                                                                                      \
        __m256i bn = GT(a, ex), bi = EQ(a, ex);                                               \
        bad = _mm256_or_si256(bad, bn);                                                       \
        badi = _mm256_or_si256(badi, bi);                                                     \
        __m256i z = EQ(a, zero);                                                              \
        __m256i rank = zero;                                                                  \
        for (int q = 0; q < m - 1; q++) {                                                     \
            __m256i o = ROT(q);                                                               \
            __m256i beat = _mm256_or_si256(GT(o, a), _mm256_and_si256(EQ(o, a), earlier[q])); \
            rank = SUB(rank, beat);                                                           \
        }                                                                                     \
        __m256i keep = GT(nv, rank);                                                          \
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_and_si256(v, keep));                   \
        zb += (uint64_t)__builtin_popcount((unsigned)_mm256_movemask_epi8(z)) / BYTES_PER_LANE; \
        za += (uint64_t)__builtin_popcount(                                                   \
                  (unsigned)_mm256_movemask_epi8(_mm256_or_si256(z, _mm256_xor_si256(keep, ones)))) / \
              BYTES_PER_LANE;                                                                 \
        __m256i vz = EQ(v, zero);                                                             \
        chv = _mm256_or_si256(chv, _mm256_andnot_si256(_mm256_or_si256(vz, keep), ones));     \
    } while (0)

#define NM_FINISH()                                                                           \
    do {                                                                                      \
        c->zeros_before += zb;                                                                \
        c->zeros_after += za;                                                                 \
        c->changed |= !_mm256_testz_si256(chv, chv);                                          \
        c->nan |= !_mm256_testz_si256(bad, bad);                                              \
        c->inf |= !_mm256_testz_si256(badi, badi);                                            \
    } while (0)

/* Loop over full vectors of a flat stretch or of each row; the rest of a
 * row (a partial vector of groups, a ragged group) goes to SCALAR. */
#define NM_LOOP(LANES, SCALAR_CALL, ...)                                                      \
    size_t full = cols / (size_t)m * (size_t)m;                                               \
    size_t nrun = full == cols ? 1 : rows, len = full == cols ? rows * cols : full;          \
    for (size_t r = 0; r < nrun; r++) {                                                       \
        const T *s = src + r * cols;                                                          \
        T *d = dst + r * cols;                                                                \
        size_t i = 0;                                                                         \
        for (; i + LANES <= len; i += LANES) {                                                \
            __m256i v = _mm256_loadu_si256((const __m256i *)(s + i));                         \
            __m256i a = _mm256_and_si256(v, absm);                                            \
            __VA_ARGS__;                                                                      \
        }                                                                                     \
        size_t rest = (full == cols ? len : cols) - i;                                        \
        if (rest)                                                                             \
            SCALAR_CALL;                                                                      \
    }

void sp_x16_nm_ukernel__avx2(uint16_t *dst, const uint16_t *src, size_t rows, size_t cols, int n,
                             int m, uint16_t expm, sp_kcount *c)
{
    typedef uint16_t T;
    if (!pow2(m) || m > 8 || m < 2 || n >= m || (size_t)m > cols) {
        sp_x16_nm_ukernel__scalar(dst, src, rows, cols, n, m, expm, c);
        return;
    }
    __m256i shuf[7], earlier[7];
    for (int dd = 1; dd < m; dd++) {
        uint8_t b[32];
        uint16_t e[16];
        for (int j = 0; j < 16; j++) {
            int jl = j & 7; /* lane within its 128-bit half */
            int o = (jl & ~(m - 1)) | ((jl - dd) & (m - 1));
            b[2 * j] = (uint8_t)(2 * o);
            b[2 * j + 1] = (uint8_t)(2 * o + 1);
            e[j] = (jl & (m - 1)) >= dd ? 0xffff : 0;
        }
        shuf[dd - 1] = _mm256_loadu_si256((const __m256i *)b);
        earlier[dd - 1] = _mm256_loadu_si256((const __m256i *)e);
    }
    const __m256i absm = _mm256_set1_epi16(0x7fff), ex = _mm256_set1_epi16((short)expm);
    const __m256i zero = _mm256_setzero_si256(), ones = _mm256_set1_epi8(-1);
    const __m256i nv = _mm256_set1_epi16((short)n);
    __m256i bad = zero, badi = zero, chv = zero;
    uint64_t zb = 0, za = 0;
#define ROT16(q) _mm256_shuffle_epi8(a, shuf[q])
    NM_LOOP(16, sp_x16_nm_ukernel__scalar(d + i, s + i, 1, rest, n, m, expm, c),
            NM_BODY(ROT16, _mm256_cmpgt_epi16, _mm256_cmpeq_epi16, _mm256_sub_epi16, 2))
#undef ROT16
    NM_FINISH();
}

void sp_x32_nm_ukernel__avx2(uint32_t *dst, const uint32_t *src, size_t rows, size_t cols, int n,
                             int m, uint32_t expm, sp_kcount *c)
{
    typedef uint32_t T;
    if (!pow2(m) || m > 8 || m < 2 || n >= m || (size_t)m > cols) {
        sp_x32_nm_ukernel__scalar(dst, src, rows, cols, n, m, expm, c);
        return;
    }
    __m256i perm[7], earlier[7];
    for (int dd = 1; dd < m; dd++) {
        int32_t p[8], e[8];
        for (int j = 0; j < 8; j++) {
            p[j] = (j & ~(m - 1)) | ((j - dd) & (m - 1));
            e[j] = (j & (m - 1)) >= dd ? -1 : 0;
        }
        perm[dd - 1] = _mm256_loadu_si256((const __m256i *)p);
        earlier[dd - 1] = _mm256_loadu_si256((const __m256i *)e);
    }
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), ex = _mm256_set1_epi32((int)expm);
    const __m256i zero = _mm256_setzero_si256(), ones = _mm256_set1_epi8(-1);
    const __m256i nv = _mm256_set1_epi32(n);
    __m256i bad = zero, badi = zero, chv = zero;
    uint64_t zb = 0, za = 0;
#define ROT32(q) _mm256_permutevar8x32_epi32(a, perm[q])
    NM_LOOP(8, sp_x32_nm_ukernel__scalar(d + i, s + i, 1, rest, n, m, expm, c),
            NM_BODY(ROT32, _mm256_cmpgt_epi32, _mm256_cmpeq_epi32, _mm256_sub_epi32, 4))
#undef ROT32
    NM_FINISH();
}

void sp_x64_nm_ukernel__avx2(uint64_t *dst, const uint64_t *src, size_t rows, size_t cols, int n,
                             int m, uint64_t expm, sp_kcount *c)
{
    typedef uint64_t T;
    if (!pow2(m) || m > 4 || m < 2 || n >= m || (size_t)m > cols) {
        sp_x64_nm_ukernel__scalar(dst, src, rows, cols, n, m, expm, c);
        return;
    }
    __m256i perm[3], earlier[3];
    for (int dd = 1; dd < m; dd++) {
        int32_t p[8];
        int64_t e[4];
        for (int j = 0; j < 4; j++) {
            int o = (j & ~(m - 1)) | ((j - dd) & (m - 1));
            p[2 * j] = 2 * o;
            p[2 * j + 1] = 2 * o + 1;
            e[j] = (j & (m - 1)) >= dd ? -1 : 0;
        }
        perm[dd - 1] = _mm256_loadu_si256((const __m256i *)p);
        earlier[dd - 1] = _mm256_loadu_si256((const __m256i *)e);
    }
    const __m256i absm = _mm256_set1_epi64x(0x7fffffffffffffffll);
    const __m256i ex = _mm256_set1_epi64x((long long)expm);
    const __m256i zero = _mm256_setzero_si256(), ones = _mm256_set1_epi8(-1);
    const __m256i nv = _mm256_set1_epi64x(n);
    __m256i bad = zero, badi = zero, chv = zero;
    uint64_t zb = 0, za = 0;
#define ROT64(q) _mm256_permutevar8x32_epi32(a, perm[q])
    NM_LOOP(4, sp_x64_nm_ukernel__scalar(d + i, s + i, 1, rest, n, m, expm, c),
            NM_BODY(ROT64, _mm256_cmpgt_epi64, _mm256_cmpeq_epi64, _mm256_sub_epi64, 8))
#undef ROT64
    NM_FINISH();
}

/* ---- block scores: 4 blocks per vector of doubles ---- */

static inline __m256d gather_col(const void *row, int dt, __m128i pos, __m256i *key)
{
    switch (dt) {
    case SP_F32: {
        __m128i u = _mm_i32gather_epi32((const int *)row, pos, 4);
        *key = _mm256_cvtepu32_epi64(_mm_and_si128(u, _mm_set1_epi32(0x7fffffff)));
        return _mm256_cvtps_pd(_mm_castsi128_ps(u));
    }
    case SP_F64: {
        __m256i u = _mm256_i32gather_epi64((const long long *)row, pos, 8);
        *key = _mm256_and_si256(u, _mm256_set1_epi64x(0x7fffffffffffffffll));
        return _mm256_castsi256_pd(u);
    }
    case SP_F16: {
        __m128i u = _mm_i32gather_epi32((const int *)row, pos, 2);
        __m128i lo = _mm_and_si128(u, _mm_set1_epi32(0xffff));
        __m128i h = _mm_packus_epi32(lo, lo);
        *key = _mm256_cvtepu32_epi64(_mm_and_si128(lo, _mm_set1_epi32(0x7fff)));
        return _mm256_cvtps_pd(_mm_cvtph_ps(h));
    }
    default: {
        __m128i u = _mm_i32gather_epi32((const int *)row, pos, 2);
        __m128i b = _mm_slli_epi32(u, 16);
        *key = _mm256_cvtepu32_epi64(_mm_srli_epi32(_mm_and_si128(b, _mm_set1_epi32(0x7fffffff)), 16));
        return _mm256_cvtps_pd(_mm_castsi128_ps(b));
    }
    }
}

void sp_blockscore_ukernel__avx2(const void *row, int dt, size_t cols, size_t bc, int l2,
                                 double *sum, uint64_t *nnz, sp_kcount *c)
{
    size_t nb = (cols + bc - 1) / bc;
    size_t es = dt == SP_F64 ? 8 : dt == SP_F32 ? 4 : 2;
    /* groups of 4 full blocks; 16-bit gathers read 4 bytes, so their last
     * element read must not be the row's last */
    size_t vb = 0;
    if (cols <= (size_t)INT32_MAX / 2) {
        vb = cols / bc / 4 * 4;
        while (es == 2 && vb && vb * bc >= cols)
            vb -= 4;
    }
    const int64_t kexp = dt == SP_F64 ? 0x7ff0000000000000ll
                         : dt == SP_F32 ? 0x7f800000
                         : dt == SP_F16 ? 0x7c00
                                        : 0x7f80;
    const __m256i keyexp = _mm256_set1_epi64x(kexp), zero = _mm256_setzero_si256();
    const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffll));
    __m256i bad = zero, badi = zero;
    const __m128i step = _mm_setr_epi32(0, 1, 2, 3);
    for (size_t b = 0; b < vb; b += 4) {
        __m128i base = _mm_mullo_epi32(_mm_add_epi32(step, _mm_set1_epi32((int)b)),
                                       _mm_set1_epi32((int)bc));
        __m256d s = _mm256_setzero_pd();
        __m256i cnt = zero;
        for (size_t j = 0; j < bc; j++) {
            __m256i key;
            __m256d v = gather_col(row, dt, _mm_add_epi32(base, _mm_set1_epi32((int)j)), &key);
            __m256i nonfin = _mm256_cmpgt_epi64(key, _mm256_sub_epi64(keyexp, _mm256_set1_epi64x(1)));
            bad = _mm256_or_si256(bad, _mm256_cmpgt_epi64(key, keyexp));
            badi = _mm256_or_si256(badi, _mm256_cmpeq_epi64(key, keyexp));
            cnt = _mm256_sub_epi64(cnt, _mm256_xor_si256(_mm256_cmpeq_epi64(key, zero),
                                                         _mm256_set1_epi64x(-1)));
            __m256d t = l2 ? _mm256_mul_pd(v, v) : _mm256_and_pd(v, absm);
            t = _mm256_andnot_pd(_mm256_castsi256_pd(nonfin), t);
            s = _mm256_add_pd(s, t);
        }
        _mm256_storeu_pd(sum + b, _mm256_add_pd(_mm256_loadu_pd(sum + b), s));
        _mm256_storeu_si256((__m256i *)(nnz + b),
                            _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)(nnz + b)), cnt));
    }
    c->nan |= !_mm256_testz_si256(bad, bad);
    c->inf |= !_mm256_testz_si256(badi, badi);
    if (vb < nb)
        sp_blockscore_ukernel__scalar((const unsigned char *)row + vb * bc * es, dt, cols - vb * bc,
                                      bc, l2, sum + vb, nnz + vb, c);
}

const sp_mask_ukernels sp_mask_ukernels_avx2 = {
    .isa = "avx2",
    .nm16 = sp_x16_nm_ukernel__avx2,
    .nm32 = sp_x32_nm_ukernel__avx2,
    .nm64 = sp_x64_nm_ukernel__avx2,
    .cut16 = sp_x16_cut_ukernel__avx2,
    .cut32 = sp_x32_cut_ukernel__avx2,
    .cut64 = sp_x64_cut_ukernel__avx2,
    .blockscore = sp_blockscore_ukernel__avx2,
    .blockapply = sp_blockapply_ukernel__avx2,
    .count_eq16 = sp_x16_count_eq_ukernel__avx2,
    .count_eq32 = sp_x32_count_eq_ukernel__avx2,
};
