/*
 * Per-layer mask selection: unstructured, RxC blocks and N:M, plus applying
 * masks, counting zeros and checking a tensor against a pattern.
 *
 * Selection is exact and deterministic: the k = floor(s*n + 0.5) units with
 * the smallest (key, flat index) are pruned (see internal.h for the key).
 * The k-th key is found by a radix select over the key bits (histogram of
 * 16-bit digits, then only the boundary bucket's candidates) - linear time,
 * no sort. Score computation runs on all cores with OpenMP; every parallel
 * step is a pure per-element map or a count, so results do not depend on
 * the number of threads.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prune/internal.h"
#include "formats/scan.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define PAR_MIN 65536 /* below this many elements threads do not pay */

int sp__nthreads(void)
{
#ifdef _OPENMP
    int t = omp_get_max_threads();
    if (t > 2 && !getenv("OMP_NUM_THREADS"))
        t = 2;
    return t < 1 ? 1 : t;
#else
    return 1;
#endif
}

size_t sp__round_count(double s, size_t n)
{
    if (!(s > 0.0))
        return 0;
    if (s >= 1.0)
        return n;
    double k = floor(s * (double)n + 0.5);
    if (k >= (double)n)
        return n;
    return (size_t)k;
}

static size_t ceil_div(int64_t a, int64_t b) { return (size_t)((a + b - 1) / b); }

size_t sp__unit_count(int ndim, const int64_t *shape, const sp_pattern *p)
{
    sp_wgeom g;
    sp_wgeom_init(&g, ndim, shape);
    if (p->kind == SP_PATTERN_BLOCK)
        return (size_t)g.nmat * ceil_div(g.rows, p->r) * ceil_div(g.cols, p->c);
    return (size_t)(g.nmat * g.rows * g.cols);
}

/* |w| of element i as double, plus its raw "is zero"/"non-finite" state. */
static inline double load_val(sp_dtype t, const void *data, size_t i)
{
    switch (t) {
    case SP_F32: return ((const float *)data)[i];
    case SP_F64: return ((const double *)data)[i];
    case SP_F16: return sp_f16_to_f32(((const uint16_t *)data)[i]);
    case SP_BF16: return sp_bf16_to_f32(((const uint16_t *)data)[i]);
    default: return 0.0;
    }
}

static sp_status nonfinite_error(sp_error *err, int nan, int inf, int in_scores)
{
    return sp_error_set(err, SP_ERR_INVALID_ARG, "%s %s", in_scores ? "scores contain" : "contains",
                        nan ? "NaN" : (inf ? "Inf" : "?"));
}

static sp_status check_dtype(sp_dtype t, sp_error *err)
{
    if (t == SP_F32 || t == SP_F16 || t == SP_BF16 || t == SP_F64)
        return SP_OK;
    return sp_error_set(err, SP_ERR_UNSUPPORTED, "cannot prune dtype %s (floating point only)",
                        sp_dtype_name(t));
}

/* Scan scores for NaN/Inf. */
static sp_status check_scores(const float *scores, size_t n, sp_error *err)
{
    int nan = 0, inf = 0;
#pragma omp parallel for reduction(| : nan, inf) if (n > PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float s = scores[i];
        nan |= isnan(s) ? 1 : 0;
        inf |= isinf(s) ? 1 : 0;
    }
    if (nan || inf)
        return nonfinite_error(err, nan, inf, 1);
    return SP_OK;
}

/* Element keys (unstructured units, also used by N:M). */
static sp_status element_keys(uint64_t *keys, size_t *nzero, sp_dtype t, const void *data,
                              const float *scores, size_t n, sp_error *err)
{
    int nan = 0, inf = 0;
    size_t nz = 0;
    if (t == SP_F32) {
        const uint32_t *w = (const uint32_t *)data;
#pragma omp parallel for reduction(| : nan, inf) reduction(+ : nz) if (n > PAR_MIN) schedule(static)
        for (size_t i = 0; i < n; i++) {
            uint32_t a = w[i] & 0x7fffffffu;
            if (a >= 0x7f800000u) {
                nan |= a > 0x7f800000u;
                inf |= a == 0x7f800000u;
                keys[i] = 0;
                continue;
            }
            if (!a) {
                keys[i] = 0;
                nz++;
                continue;
            }
            float f;
            memcpy(&f, &a, 4);
            keys[i] = sp__score_key(scores ? (double)scores[i] : (double)f);
        }
    } else {
#pragma omp parallel for reduction(| : nan, inf) reduction(+ : nz) if (n > PAR_MIN) schedule(static)
        for (size_t i = 0; i < n; i++) {
            double v = load_val(t, data, i);
            if (!isfinite(v)) {
                nan |= isnan(v) ? 1 : 0;
                inf |= isinf(v) ? 1 : 0;
                keys[i] = 0;
                continue;
            }
            if (v == 0.0) {
                keys[i] = 0;
                nz++;
                continue;
            }
            keys[i] = sp__score_key(scores ? (double)scores[i] : fabs(v));
        }
    }
    if (nan || inf)
        return nonfinite_error(err, nan, inf, 0);
    *nzero = nz;
    return SP_OK;
}


/* 32-bit element keys for everything but f64 magnitudes: the absolute bit
 * pattern of f32/f16/bf16 is already monotone in |w|, and float scores map
 * onto 32 bits. Only used within one tensor (global scope uses 64 bits). */
static sp_status element_keys32(uint32_t *keys, sp_dtype t, const void *data,
                                const float *scores, size_t n, sp_error *err)
{
    int nan = 0, inf = 0;
    if (t == SP_F32 || t == SP_F16 || t == SP_BF16) {
        const uint32_t *w32 = data;
        const uint16_t *w16 = data;
        const uint32_t absm = t == SP_F32 ? 0x7fffffffu : 0x7fffu;
        const uint32_t expm = t == SP_F32 ? 0x7f800000u : t == SP_F16 ? 0x7c00u : 0x7f80u;
#pragma omp parallel for reduction(| : nan, inf) if (n > PAR_MIN) schedule(static)
        for (size_t i = 0; i < n; i++) {
            uint32_t a = (t == SP_F32 ? w32[i] : w16[i]) & absm;
            if (a >= expm) {
                nan |= a > expm;
                inf |= a == expm;
                a = 0;
            }
            if (a && scores) {
                uint32_t u;
                memcpy(&u, &scores[i], 4);
                a = ((u >> 31) ? ~u : (u | 0x80000000u)) + 1;
            }
            keys[i] = a;
        }
    } else { /* f64 with scores */
        const double *w = data;
#pragma omp parallel for reduction(| : nan, inf) if (n > PAR_MIN) schedule(static)
        for (size_t i = 0; i < n; i++) {
            double v = w[i];
            uint32_t a = 0;
            if (!isfinite(v)) {
                nan |= isnan(v) ? 1 : 0;
                inf |= isinf(v) ? 1 : 0;
            } else if (v != 0.0) {
                uint32_t u;
                memcpy(&u, &scores[i], 4);
                a = ((u >> 31) ? ~u : (u | 0x80000000u)) + 1;
            }
            keys[i] = a;
        }
    }
    if (nan || inf)
        return nonfinite_error(err, nan, inf, 0);
    return SP_OK;
}

/* Score the blocks of one block row (matrix m, block row br) into sum/nnz.
 * Always inlined with a constant dtype so load_val's switch folds away. */
static inline __attribute__((always_inline)) void
block_row_scores(sp_dtype t, const void *data, const float *scores, const sp_wgeom *g,
                 int64_t m, int64_t r0, int64_t r1, int64_t C, int64_t nbc,
                 sp_block_score bscore, double *sum, int64_t *nnz, int *nan, int *inf)
{
    if (t == SP_F32 && C == 1 && !scores && g->col_stride == 1) {
        /* Rx1 blocks: the same sums as below (0.0 + x == x), without the
         * per-block loop */
        const uint32_t *w = data;
        for (int64_t r = r0; r < r1; r++) {
            const uint32_t *row = w + (size_t)(m * g->mat_stride + r * g->row_stride);
            for (int64_t c = 0; c < g->cols; c++) {
                uint32_t a = row[c] & 0x7fffffffu;
                if (a >= 0x7f800000u) {
                    *nan |= a > 0x7f800000u;
                    *inf |= a == 0x7f800000u;
                    continue;
                }
                float f;
                memcpy(&f, &a, 4);
                double v = f;
                nnz[c] += a != 0;
                sum[c] += bscore == SP_BLOCK_SCORE_L2 ? v * v : v;
            }
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        size_t base = (size_t)(m * g->mat_stride + r * g->row_stride);
        for (int64_t bc = 0; bc < nbc; bc++) {
            int64_t c0 = bc * C, c1 = c0 + C < g->cols ? c0 + C : g->cols;
            double s = 0.0;
            int64_t cnt = 0;
            for (int64_t c = c0; c < c1; c++) {
                size_t i = base + (size_t)(c * g->col_stride);
                double v = load_val(t, data, i);
                if (!isfinite(v)) {
                    *nan |= isnan(v) ? 1 : 0;
                    *inf |= isinf(v) ? 1 : 0;
                    continue;
                }
                cnt += v != 0.0;
                if (scores)
                    s += scores[i];
                else if (bscore == SP_BLOCK_SCORE_L2)
                    s += v * v;
                else
                    s += fabs(v);
            }
            sum[bc] += s;
            nnz[bc] += cnt;
        }
    }
}

static sp_status block_keys(uint64_t *keys, size_t *nzero, sp_dtype t, const void *data,
                            const float *scores, int ndim, const int64_t *shape,
                            const sp_pattern *p, sp_block_score bscore, sp_error *err)
{
    sp_wgeom g;
    sp_wgeom_init(&g, ndim, shape);
    const int64_t R = p->r, C = p->c;
    const int64_t nbr = (int64_t)ceil_div(g.rows, R), nbc = (int64_t)ceil_div(g.cols, C);
    const int64_t nrowjobs = g.nmat * nbr;
    int nan = 0, inf = 0, nomem = 0;
    size_t nz = 0;
    const size_t numel = (size_t)(g.nmat * g.rows * g.cols);
    const int nt = numel > PAR_MIN ? sp__nthreads() : 1;
#pragma omp parallel num_threads(nt) reduction(| : nan, inf, nomem) reduction(+ : nz) if (nt > 1)
    {
        double *sum = malloc(sizeof(double) * (size_t)(nbc ? nbc : 1));
        int64_t *nnz = malloc(sizeof(int64_t) * (size_t)(nbc ? nbc : 1));
        if (!sum || !nnz)
            nomem = 1;
#pragma omp for schedule(static)
        for (int64_t job = 0; job < nrowjobs; job++) {
            if (!sum || !nnz)
                continue;
            int64_t m = job / nbr, br = job % nbr;
            int64_t r0 = br * R, r1 = r0 + R < g.rows ? r0 + R : g.rows;
            memset(sum, 0, sizeof(double) * (size_t)nbc);
            memset(nnz, 0, sizeof(int64_t) * (size_t)nbc);
            switch (t) {
            case SP_F32:
                block_row_scores(SP_F32, data, scores, &g, m, r0, r1, C, nbc, bscore, sum, nnz,
                                 &nan, &inf);
                break;
            case SP_F16:
                block_row_scores(SP_F16, data, scores, &g, m, r0, r1, C, nbc, bscore, sum, nnz,
                                 &nan, &inf);
                break;
            case SP_BF16:
                block_row_scores(SP_BF16, data, scores, &g, m, r0, r1, C, nbc, bscore, sum, nnz,
                                 &nan, &inf);
                break;
            default:
                block_row_scores(SP_F64, data, scores, &g, m, r0, r1, C, nbc, bscore, sum, nnz,
                                 &nan, &inf);
                break;
            }
            for (int64_t bc = 0; bc < nbc; bc++) {
                int64_t c0 = bc * C, c1 = c0 + C < g.cols ? c0 + C : g.cols;
                double cnt = (double)((r1 - r0) * (c1 - c0));
                size_t u = (size_t)(job * nbc + bc);
                if (!nnz[bc]) {
                    keys[u] = 0;
                    nz++;
                    continue;
                }
                double sc = sum[bc] / cnt;
                if (!scores && bscore == SP_BLOCK_SCORE_L2)
                    sc = sqrt(sc);
                keys[u] = sp__score_key(sc);
            }
        }
        free(sum);
        free(nnz);
    }
    if (nomem)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory scoring blocks");
    if (nan || inf)
        return nonfinite_error(err, nan, inf, 0);
    *nzero = nz;
    return SP_OK;
}

sp_status sp__unit_keys(uint64_t *keys, size_t *nzero, sp_dtype dtype, const void *data,
                        const float *scores, int ndim, const int64_t *shape,
                        const sp_pattern *p, sp_block_score bscore, sp_error *err)
{
    sp_status st = check_dtype(dtype, err);
    if (st)
        return st;
    sp_wgeom g;
    sp_wgeom_init(&g, ndim, shape);
    size_t numel = (size_t)(g.nmat * g.rows * g.cols);
    if (scores && (st = check_scores(scores, numel, err)))
        return st;
    if (p->kind == SP_PATTERN_BLOCK)
        return block_keys(keys, nzero, dtype, data, scores, ndim, shape, p, bscore, err);
    return element_keys(keys, nzero, dtype, data, scores, numel, err);
}

void sp__block_mask_expand(uint8_t *mask, const uint8_t *bkeep, int ndim, const int64_t *shape,
                           const sp_pattern *p)
{
    sp_wgeom g;
    sp_wgeom_init(&g, ndim, shape);
    const int64_t R = p->r, C = p->c;
    const int64_t nbr = (int64_t)ceil_div(g.rows, R), nbc = (int64_t)ceil_div(g.cols, C);
    const size_t numel = (size_t)(g.nmat * g.rows * g.cols);
#pragma omp parallel for collapse(2) if (numel > PAR_MIN) schedule(static)
    for (int64_t m = 0; m < g.nmat; m++)
        for (int64_t r = 0; r < g.rows; r++) {
            const uint8_t *bk = bkeep + (size_t)((m * nbr + r / R) * nbc);
            size_t base = (size_t)(m * g.mat_stride + r * g.row_stride);
            for (int64_t c = 0; c < g.cols; c++)
                mask[base + (size_t)(c * g.col_stride)] = bk[c / C];
        }
}

/* Fixed number of work chunks for the radix select (a few per core). */
static size_t sp__nchunks(void)
{
#ifdef _OPENMP
    int t = omp_get_max_threads();
    return (size_t)(t > 1 ? 4 * t : 1);
#else
    return 1;
#endif
}

#define KEY_T uint64_t
#define SFX 64
#include "prune/select_impl.h"
#undef KEY_T
#undef SFX
#define KEY_T uint32_t
#define SFX 32
#include "prune/select_impl.h"
#undef KEY_T
#undef SFX

sp_status sp__select_units64(uint8_t *keep, const uint64_t *keys, size_t n, size_t k,
                             sp_error *err)
{
    return select_units_64(keep, keys, n, k, err);
}

sp_status sp_mask_select(uint8_t *mask, sp_dtype dtype, const void *data, const float *scores,
                         int ndim, const int64_t *shape, const sp_pattern *pattern,
                         double sparsity, sp_block_score bscore, sp_error *err)
{
    sp_status st = sp__check_select_args(dtype, pattern, sparsity, err);
    if (st)
        return st;
    sp_wgeom g;
    sp_wgeom_init(&g, ndim, shape);
    size_t numel = (size_t)(g.nmat * g.rows * g.cols);
    if (numel == 0)
        return SP_OK;
    size_t nunits = sp__unit_count(ndim, shape, pattern);
    size_t nzero = 0;
    if (pattern->kind == SP_PATTERN_UNSTRUCTURED && !scores && dtype != SP_F64 &&
        numel >= SP__CUT_MIN) {
        /* magnitudes: a histogram select on the bits, no key array */
        sp__tplan p;
        st = sp__tplan_init(&p, data, dtype, ndim, shape, pattern, sparsity, bscore, err);
        if (!st)
            sp__tplan_mask(&p, data, mask);
        sp__tplan_release(&p);
        return st;
    }
    uint8_t *bkeep = NULL;
    void *keys = NULL;
    if (pattern->kind != SP_PATTERN_BLOCK && (dtype != SP_F64 || scores)) {
        /* elements with 32-bit keys: the hot path */
        uint32_t *k32 = malloc(sizeof(uint32_t) * nunits);
        keys = k32;
        if (!k32)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory (%zu elements)", nunits);
        if (scores && (st = check_scores(scores, numel, err)))
            goto out;
        if ((st = element_keys32(k32, dtype, data, scores, numel, err)))
            goto out;
        if (pattern->kind == SP_PATTERN_NM) {
            st = select_nm_32(mask, k32, &g, pattern, err);
            goto out;
        }
        size_t k = sp__round_count(sparsity, nunits);
        if (k < numel) {
#pragma omp parallel for reduction(+ : nzero) if (numel > PAR_MIN) schedule(static)
            for (size_t i = 0; i < numel; i++)
                nzero += k32[i] == 0;
        }
        if (k < nzero)
            k = nzero; /* elements that are already zero stay zero */
        st = select_units_32(mask, k32, nunits, k, err);
        goto out;
    }
    uint64_t *k64 = malloc(sizeof(uint64_t) * nunits);
    keys = k64;
    if (!k64)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory (%zu units)", nunits);
    st = sp__unit_keys(k64, &nzero, dtype, data, scores, ndim, shape, pattern, bscore, err);
    if (st)
        goto out;
    if (pattern->kind == SP_PATTERN_NM) {
        st = select_nm_64(mask, k64, &g, pattern, err);
        goto out;
    }
    size_t k = sp__round_count(sparsity, nunits);
    if (k < nzero)
        k = nzero; /* units that are already zero stay zero */
    if (pattern->kind == SP_PATTERN_BLOCK) {
        bkeep = malloc(nunits);
        if (!bkeep) {
            st = sp_error_set(err, SP_ERR_NOMEM, "out of memory (%zu blocks)", nunits);
            goto out;
        }
        if ((st = select_units_64(bkeep, k64, nunits, k, err)))
            goto out;
        sp__block_mask_expand(mask, bkeep, ndim, shape, pattern);
    } else {
        st = select_units_64(mask, k64, nunits, k, err);
    }
out:
    free(keys);
    free(bkeep);
    return st;
}

void sp_mask_apply(void *data, sp_dtype dtype, size_t numel, const uint8_t *mask)
{
    size_t sz = sp_dtype_size(dtype);
    unsigned char *p = data;
    if (dtype == SP_F32) {
        uint32_t *w = data;
#pragma omp parallel for if (numel > PAR_MIN) schedule(static)
        for (size_t i = 0; i < numel; i++)
            if (!mask[i])
                w[i] = 0;
        return;
    }
    for (size_t i = 0; i < numel; i++)
        if (!mask[i])
            memset(p + i * sz, 0, sz);
}

size_t sp_count_zeros(sp_dtype dtype, const void *data, size_t numel)
{
    uint64_t zm = sp_scan_zmask(dtype);
    if (zm)
        return (size_t)sp_scan_ukernels_get()->zeros(data, numel, sp_dtype_size(dtype), zm);
    size_t nz = 0;
    for (size_t i = 0; i < numel; i++)
        nz += sp_dtype_is_zero(dtype, data, i);
    return nz;
}

/* Bits [at, at + m) of a bitmask (m <= 57; bits holds 8 spare bytes). */
static inline unsigned bits_count(const uint8_t *bits, size_t at, int m)
{
    uint64_t w;
    memcpy(&w, bits + at / 8, 8);
    w >>= at % 8;
    return (unsigned)__builtin_popcountll(w & ((1ull << m) - 1));
}

/* N:M check of contiguous rows: each row's nonzeros as a bitmask (the
 * scanning ukernel), then each group's bits counted. Returns false and
 * fills buf at the first group with more than N nonzeros; *maxkept gets
 * the most nonzeros N:M allows in the tensor. -1: not handled here. */
static int nm_check_rows(sp_dtype dtype, const void *data, const sp_wgeom *g, int N, int M,
                         size_t *maxkept, char *buf, size_t blen)
{
    uint64_t zm = sp_scan_zmask(dtype);
    if (!zm || M > 57 || g->col_stride != 1 || g->row_stride != g->cols ||
        !(g->nmat == 1 || g->mat_stride == g->rows * g->cols))
        return -1;
    const size_t cols = (size_t)g->cols, rows = (size_t)(g->nmat * g->rows), es = sp_dtype_size(dtype);
    uint8_t *bits = malloc((cols + 7) / 8 + 8);
    if (!bits)
        return -1;
    memset(bits, 0, (cols + 7) / 8 + 8);
    const sp_scan_ukernels *uk = sp_scan_ukernels_get();
    size_t kept = 0;
    int ok = 1;
    for (size_t r = 0; r < rows && ok; r++) {
        uk->bitmask(bits, (const unsigned char *)data + r * cols * es, cols, es, zm);
        for (size_t c0 = 0; c0 < cols; c0 += (size_t)M) {
            int t = cols - c0 < (size_t)M ? (int)(cols - c0) : M;
            unsigned nnz = bits_count(bits, c0, t);
            kept += (size_t)(t < N ? t : N);
            if ((int)nnz > N) {
                snprintf(buf, blen, "row %zu group %zu has %u nonzeros (%d:%d allows %d)", r,
                         c0 / (size_t)M, nnz, N, M, N);
                ok = 0;
                break;
            }
        }
    }
    free(bits);
    *maxkept = kept;
    return ok;
}

bool sp_mask_check(sp_dtype dtype, const void *data, int ndim, const int64_t *shape,
                   const sp_pattern *pattern, double target, double *measured, char *violation,
                   size_t vlen)
{
    sp_wgeom g;
    sp_wgeom_init(&g, ndim, shape);
    size_t numel = (size_t)(g.nmat * g.rows * g.cols);
    double meas = 0.0;
    size_t units = numel;
    bool ok = true;
    char buf[160] = "";
    if (pattern->kind == SP_PATTERN_BLOCK) {
        const int64_t R = pattern->r, C = pattern->c;
        const int64_t nbr = (int64_t)ceil_div(g.rows, R), nbc = (int64_t)ceil_div(g.cols, C);
        size_t zb = 0;
        units = (size_t)(g.nmat * nbr * nbc);
        for (int64_t m = 0; m < g.nmat; m++)
            for (int64_t br = 0; br < nbr; br++)
                for (int64_t bc = 0; bc < nbc; bc++) {
                    bool zero = true;
                    for (int64_t r = br * R; r < g.rows && r < (br + 1) * R && zero; r++)
                        for (int64_t c = bc * C; c < g.cols && c < (bc + 1) * C; c++)
                            if (!sp_dtype_is_zero(dtype, data,
                                                  (size_t)(m * g.mat_stride + r * g.row_stride +
                                                           c * g.col_stride))) {
                                zero = false;
                                break;
                            }
                    zb += zero;
                }
        meas = units ? (double)zb / (double)units : 0.0;
    } else {
        meas = numel ? (double)sp_count_zeros(dtype, data, numel) / (double)numel : 0.0;
    }
    if (pattern->kind == SP_PATTERN_NM && numel) {
        const int64_t M = pattern->m, N = pattern->n;
        size_t maxkept = 0;
        int fast = nm_check_rows(dtype, data, &g, pattern->n, pattern->m, &maxkept, buf, sizeof buf);
        if (fast >= 0)
            ok = fast;
        for (int64_t m = 0; fast < 0 && m < g.nmat && ok; m++)
            for (int64_t r = 0; r < g.rows && ok; r++)
                for (int64_t c0 = 0; c0 < g.cols; c0 += M) {
                    int64_t t = g.cols - c0 < M ? g.cols - c0 : M, nnz = 0;
                    for (int64_t j = 0; j < t; j++)
                        nnz += !sp_dtype_is_zero(dtype, data,
                                                 (size_t)(m * g.mat_stride + r * g.row_stride +
                                                          (c0 + j) * g.col_stride));
                    maxkept += (size_t)(t < N ? t : N);
                    if (nnz > N) {
                        int n0 = 0;
                        if (g.nmat > 1)
                            n0 = snprintf(buf, sizeof buf, "kernel position %lld ", (long long)m);
                        snprintf(buf + n0, sizeof buf - (size_t)n0,
                                 "row %lld group %lld has %lld nonzeros (%d:%d allows %d)",
                                 (long long)r, (long long)(c0 / M), (long long)nnz, pattern->n,
                                 pattern->m, pattern->n);
                        ok = false;
                        break;
                    }
                }
        /* a conformant tensor cannot exceed the sparsity its groups allow */
        if (ok) {
            double cap = (double)(numel - maxkept) / (double)numel;
            if (target > cap)
                target = cap;
        }
    }
    if (ok && units && meas < target - 0.5 / (double)units) {
        snprintf(buf, sizeof buf, "sparsity %.4f < target %.4f", meas, target);
        ok = false;
    }
    if (measured)
        *measured = meas;
    if (violation && vlen)
        snprintf(violation, vlen, "%s", ok ? "" : buf);
    return ok;
}

/* ---- applying a mask (the MASK plans of tensor.c) ---- */

#define APPLY_MASK_LOOP(UT, ABS)                                                          \
    do {                                                                                  \
        const UT *s_ = src;                                                               \
        UT *d_ = dst;                                                                     \
        _Pragma("omp parallel for simd num_threads(nt) if (nt > 1) schedule(static) reduction(+ : zb, za) reduction(| : ch)") \
        for (size_t i = 0; i < n; i++) {                                                  \
            UT v = s_[i];                                                                 \
            UT keep = (UT)0 - (UT)(mask[i] != 0);                                         \
            UT o = v & keep;                                                              \
            d_[i] = o;                                                                    \
            zb += (v & (ABS)) == 0;                                                       \
            za += (o & (ABS)) == 0;                                                       \
            ch |= (v & (UT)~keep) != 0;                                                   \
        }                                                                                 \
    } while (0)

void sp__apply_mask(void *dst, const void *src, sp_dtype dtype, size_t n, const uint8_t *mask,
                    sp__prune_stats *st)
{
    const int nt = n > PAR_MIN ? sp__nthreads() : 1;
    size_t zb = 0, za = 0;
    int ch = 0;
    switch (sp_dtype_size(dtype)) {
    case 2: APPLY_MASK_LOOP(uint16_t, 0x7fffu); break;
    case 4: APPLY_MASK_LOOP(uint32_t, 0x7fffffffu); break;
    default: APPLY_MASK_LOOP(uint64_t, 0x7fffffffffffffffull); break;
    }
    st->zeros_before = zb;
    st->zeros_after = za;
    st->changed = ch != 0;
}

sp_status sp__check_select_args(sp_dtype dtype, const sp_pattern *pattern, double sparsity,
                                sp_error *err)
{
    sp_status st = check_dtype(dtype, err);
    if (st)
        return st;
    if (pattern->kind != SP_PATTERN_NM && !(sparsity >= 0.0 && sparsity <= 1.0))
        return sp_error_set(err, SP_ERR_INVALID_ARG, "sparsity %g is out of range [0, 1]", sparsity);
    if (pattern->kind == SP_PATTERN_BLOCK && (pattern->r <= 0 || pattern->c <= 0))
        return sp_error_set(err, SP_ERR_INVALID_ARG, "invalid block size");
    if (pattern->kind == SP_PATTERN_NM && (pattern->m <= 0 || pattern->n < 0 || pattern->n > pattern->m))
        return sp_error_set(err, SP_ERR_INVALID_ARG, "invalid N:M pattern %d:%d", pattern->n,
                            pattern->m);
    return SP_OK;
}
