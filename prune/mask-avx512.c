/*
 * Selection ukernels for AVX-512 (F, BW, VL, DQ) + F16C (prune/mask_ukernels.h).
 *
 * N:M: a vector holds whole groups (m divides the lane count). An element's
 * rank in its group is built from m - 1 rotations of the key vector inside
 * each group (one vpermw/vpermd/vpermq per rotation): the rotation by d
 * brings the element d places before (cyclically), which beats the element
 * when its key is larger, or equal and earlier (no wrap). Kept: rank < n.
 * Row tails (a partial vector, a ragged group) go to the scalar reference.
 *
 * Block scores: eight blocks at a time, one double lane each; column j of
 * the eight blocks is gathered and added in column order, so every block's
 * sum is the scalar reference's to the bit.
 */
#include <immintrin.h>

#define SFX avx512
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

/* One N:M kernel per width W (lanes L, mask type MT, intrinsic suffix
 * SX/UX, unsigned compare suffix): the rotations' index vectors and
 * "earlier" lane masks, then every stretch of whole groups as full or
 * masked vectors; the ragged group of a row goes to the scalar reference. */
#define NM512(W, T, L, MT, SX, UX, ABSM, EXPV, SCALAR_CALL, ...)                                      \
    void sp_x##W##_nm_ukernel__avx512(T *dst, const T *src, size_t rows, size_t cols, int n,    \
                                      int m, __VA_ARGS__, sp_kcount *c)                         \
    {                                                                                           \
        if (!pow2(m) || m > L || m < 2 || n >= m || (size_t)m > cols) {                         \
            SCALAR_CALL(dst, src, rows, cols);                                                  \
            return;                                                                             \
        }                                                                                       \
        __m512i idx[L - 1];                                                                     \
        MT earlier[L - 1];                                                                      \
        for (int d = 1; d < m; d++) {                                                           \
            T ix[L];                                                                            \
            MT e = 0;                                                                           \
            for (int j = 0; j < L; j++) {                                                       \
                ix[j] = (T)((j & ~(m - 1)) | ((j - d) & (m - 1)));                              \
                if ((j & (m - 1)) >= d)                                                         \
                    e |= (MT)((MT)1 << j);                                                      \
            }                                                                                   \
            idx[d - 1] = _mm512_loadu_si512(ix);                                                \
            earlier[d - 1] = e;                                                                 \
        }                                                                                       \
        const __m512i absm = _mm512_set1_##SX(ABSM), ex = _mm512_set1_##SX(EXPV);         \
        const __m512i one = _mm512_set1_##SX(1), nv = _mm512_set1_##SX(n);                      \
        uint64_t zb = 0, za = 0;                                                                \
        MT ch = 0, bad_nan = 0, bad_inf = 0;                                                    \
        size_t full = cols / (size_t)m * (size_t)m;                                             \
        size_t nrun = full == cols ? 1 : rows, len = full == cols ? rows * cols : full;         \
        for (size_t r = 0; r < nrun; r++) {                                                     \
            const T *s = src + r * cols;                                                        \
            T *d = dst + r * cols;                                                              \
            for (size_t i = 0; i < len; i += L) {                                               \
                MT lm = len - i >= L ? (MT)~(MT)0 : (MT)(((MT)1 << (len - i)) - 1);             \
                __m512i v = _mm512_maskz_loadu_##SX(lm, s + i);                                 \
                __m512i a = _mm512_and_si512(v, absm);                                          \
                bad_nan |= _mm512_mask_cmpgt_##UX##_mask(lm, a, ex);                            \
                bad_inf |= _mm512_mask_cmpeq_##SX##_mask(lm, a, ex);                            \
                MT z = _mm512_mask_testn_##SX##_mask(lm, a, a);                                 \
                __m512i rank = _mm512_setzero_si512();                                          \
                for (int q = 0; q < m - 1; q++) {                                               \
                    __m512i o = _mm512_permutexvar_##SX(idx[q], a);                             \
                    MT beat = _mm512_cmpgt_##UX##_mask(o, a) |                                  \
                              (_mm512_cmpeq_##SX##_mask(o, a) & earlier[q]);                    \
                    rank = _mm512_mask_add_##SX(rank, beat, rank, one);                         \
                }                                                                               \
                MT keep = _mm512_cmplt_##UX##_mask(rank, nv) & lm;                              \
                _mm512_mask_storeu_##SX(d + i, lm, _mm512_maskz_mov_##SX(keep, v));             \
                zb += (uint64_t)__builtin_popcountll((uint64_t)z);                              \
                za += (uint64_t)__builtin_popcountll((uint64_t)(MT)((MT)(~keep & lm) | z));     \
                ch |= _mm512_mask_test_##SX##_mask(lm, v, v) & (MT)~keep;                       \
            }                                                                                   \
            if (full != cols) /* the ragged group of this row */                               \
                SCALAR_CALL(d + full, s + full, 1, cols - full);                                \
        }                                                                                       \
        c->zeros_before += zb;                                                                  \
        c->zeros_after += za;                                                                   \
        c->changed |= ch != 0;                                                                  \
        c->nan |= bad_nan != 0;                                                                 \
        c->inf |= bad_inf != 0;                                                                 \
    }

#define SC16(d, s, r, cc) sp_x16_nm_ukernel__scalar(d, s, r, cc, n, m, expm, c)
#define SC32(d, s, r, cc) sp_x32_nm_ukernel__scalar(d, s, r, cc, n, m, expm, c)
#define SC64(d, s, r, cc) sp_x64_nm_ukernel__scalar(d, s, r, cc, n, m, expm, c)

NM512(16, uint16_t, 32, __mmask32, epi16, epu16, 0x7fff, (short)expm, SC16, uint16_t expm)
NM512(32, uint32_t, 16, __mmask16, epi32, epu32, 0x7fffffff, (int)expm, SC32, uint32_t expm)
NM512(64, uint64_t, 8, __mmask8, epi64, epu64, 0x7fffffffffffffffll, (long long)expm, SC64,
      uint64_t expm)

/* ---- block scores: 8 blocks per vector of doubles ---- */

/* Column j of blocks b..b+7 as doubles, and its key bits (for counting). */
static inline __m512d gather_col(const void *row, int dt, __m256i pos, __m512i *key)
{
    switch (dt) {
    case SP_F32: {
        __m256i u = _mm256_i32gather_epi32((const int *)row, pos, 4);
        *key = _mm512_cvtepu32_epi64(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)));
        return _mm512_cvtps_pd(_mm256_castsi256_ps(u));
    }
    case SP_F64: {
        __m512i u = _mm512_i32gather_epi64(pos, row, 8);
        *key = _mm512_and_si512(u, _mm512_set1_epi64(0x7fffffffffffffffll));
        return _mm512_castsi512_pd(u);
    }
    case SP_F16: {
        /* 32-bit gathers at 2-byte steps: the element is the low half */
        __m256i u = _mm256_i32gather_epi32((const int *)row, pos, 2);
        __m128i h = _mm256_cvtepi32_epi16(u);
        *key = _mm512_cvtepu16_epi64(_mm_and_si128(h, _mm_set1_epi16(0x7fff)));
        return _mm512_cvtps_pd(_mm256_cvtph_ps(h));
    }
    default: {
        __m256i u = _mm256_i32gather_epi32((const int *)row, pos, 2);
        __m256i b = _mm256_slli_epi32(u, 16);
        *key = _mm512_cvtepu32_epi64(_mm256_srli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x7fffffff)), 16));
        return _mm512_cvtps_pd(_mm256_castsi256_ps(b));
    }
    }
}

void sp_blockscore_ukernel__avx512(const void *row, int dt, size_t cols, size_t bc, int l2,
                                   double *sum, uint64_t *nnz, sp_kcount *c)
{
    size_t nb = (cols + bc - 1) / bc;
    size_t es = dt == SP_F64 ? 8 : dt == SP_F32 ? 4 : 2;
    /* blocks whose 8-wide gathers stay inside the row: the 16-bit ones read
     * 4 bytes per element, so the last element read must not be the row's
     * last; and indices must fit in 32 bits */
    size_t vb = 0;
    if (cols <= (size_t)INT32_MAX / 2 && nb >= 8) {
        size_t lim = cols / bc; /* full blocks */
        while (vb + 8 <= lim && ((vb + 8) * bc + (es == 2 ? 1 : 0) <= cols))
            vb += 8;
        if (es == 2 && vb && vb * bc >= cols)
            vb -= 8;
    }
    const __m512i keyexp = dt == SP_F64 ? _mm512_set1_epi64(0x7ff0000000000000ll)
                           : dt == SP_F32 ? _mm512_set1_epi64(0x7f800000)
                           : dt == SP_F16 ? _mm512_set1_epi64(0x7c00)
                                          : _mm512_set1_epi64(0x7f80);
    const __m512d absm = _mm512_castsi512_pd(_mm512_set1_epi64(0x7fffffffffffffffll));
    __mmask8 bad_nan = 0, bad_inf = 0;
    const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (size_t b = 0; b < vb; b += 8) {
        __m256i base = _mm256_mullo_epi32(_mm256_add_epi32(step, _mm256_set1_epi32((int)b)),
                                          _mm256_set1_epi32((int)bc));
        __m512d s = _mm512_setzero_pd();
        __m512i cnt = _mm512_setzero_si512();
        for (size_t j = 0; j < bc; j++) {
            __m512i key;
            __m512d v = gather_col(row, dt, _mm256_add_epi32(base, _mm256_set1_epi32((int)j)), &key);
            __mmask8 fin = _mm512_cmplt_epu64_mask(key, keyexp);
            bad_nan |= _mm512_cmpgt_epu64_mask(key, keyexp);
            bad_inf |= _mm512_cmpeq_epu64_mask(key, keyexp);
            cnt = _mm512_mask_add_epi64(cnt, _mm512_test_epi64_mask(key, key), cnt,
                                        _mm512_set1_epi64(1));
            __m512d t = l2 ? _mm512_mul_pd(v, v) : _mm512_and_pd(v, absm);
            s = _mm512_mask_add_pd(s, fin, s, t);
        }
        _mm512_storeu_pd(sum + b, _mm512_add_pd(_mm512_loadu_pd(sum + b), s));
        _mm512_storeu_si512(nnz + b, _mm512_add_epi64(_mm512_loadu_si512(nnz + b), cnt));
    }
    c->nan |= bad_nan != 0;
    c->inf |= bad_inf != 0;
    if (vb < nb)
        sp_blockscore_ukernel__scalar((const unsigned char *)row + vb * bc * es, dt, cols - vb * bc,
                                      bc, l2, sum + vb, nnz + vb, c);
}

const sp_mask_ukernels sp_mask_ukernels_avx512 = {
    .isa = "avx512",
    .nm16 = sp_x16_nm_ukernel__avx512,
    .nm32 = sp_x32_nm_ukernel__avx512,
    .nm64 = sp_x64_nm_ukernel__avx512,
    .cut16 = sp_x16_cut_ukernel__avx512,
    .cut32 = sp_x32_cut_ukernel__avx512,
    .cut64 = sp_x64_cut_ukernel__avx512,
    .blockscore = sp_blockscore_ukernel__avx512,
    .blockapply = sp_blockapply_ukernel__avx512,
    .count_eq16 = sp_x16_count_eq_ukernel__avx512,
    .count_eq32 = sp_x32_count_eq_ukernel__avx512,
};
