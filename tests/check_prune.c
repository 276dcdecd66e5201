/*
 * Unit tests for prune/: patterns, geometry, mask selection (unstructured,
 * blocks, N:M), apply/count, global scope, checking and tensor selection.
 * Masks are compared against brute-force references written here (sort by
 * (score, index)), and against PyTorch (tests/prune_oracle.py) in the
 * "oracle" case.
 */
#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sparsify/prune.h"
#include "prune/internal.h"
#include "prune/mask_ukernels.h"

/* ---- helpers */

static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }
static uint64_t rng_u64(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}
static float rng_normal(void)
{
    double u1 = ((rng_u64() >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (rng_u64() >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2 * M_PI * u2));
}

static float *rand_f32(size_t n, uint64_t seed)
{
    float *w = malloc(n * sizeof(float));
    rng_seed(seed);
    for (size_t i = 0; i < n; i++)
        w[i] = rng_normal();
    return w;
}

static size_t numel_of(int ndim, const int64_t *shape)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= (size_t)shape[d];
    return n;
}

static size_t count_pruned(const uint8_t *mask, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += !mask[i];
    return c;
}

typedef struct ref_unit {
    double score;
    size_t idx;
} ref_unit;

static int ref_cmp(const void *a, const void *b)
{
    const ref_unit *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static size_t ref_round(double s, size_t n) { return (size_t)floor(s * (double)n + 0.5); }

/* Brute force unstructured selection: sort (score, index); zero weights
 * score -inf (they are pruned first). */
static void ref_unstructured(uint8_t *mask, sp_dtype t, const void *data, const float *scores,
                             size_t n, double s)
{
    ref_unit *u = malloc(n * sizeof *u);
    size_t nz = 0;
    for (size_t i = 0; i < n; i++) {
        double v = sp_dtype_load(t, data, i);
        u[i].idx = i;
        u[i].score = v == 0.0 ? -INFINITY : scores ? scores[i] : fabs(v);
        nz += v == 0.0;
    }
    qsort(u, n, sizeof *u, ref_cmp);
    size_t k = ref_round(s, n);
    if (k < nz)
        k = nz;
    memset(mask, 1, n);
    for (size_t i = 0; i < k; i++)
        mask[u[i].idx] = 0;
    free(u);
}

/* Brute force block selection over a 2-D [rows, cols] tensor. */
static void ref_blocks_2d(uint8_t *mask, const float *w, int64_t rows, int64_t cols, int64_t R,
                          int64_t C, double s, int l2)
{
    int64_t nbr = (rows + R - 1) / R, nbc = (cols + C - 1) / C;
    size_t nb = (size_t)(nbr * nbc), nz = 0;
    ref_unit *u = malloc(nb * sizeof *u);
    for (int64_t br = 0; br < nbr; br++)
        for (int64_t bc = 0; bc < nbc; bc++) {
            double sum = 0;
            int cnt = 0, nnz = 0;
            for (int64_t r = br * R; r < rows && r < (br + 1) * R; r++)
                for (int64_t c = bc * C; c < cols && c < (bc + 1) * C; c++) {
                    double v = w[r * cols + c];
                    sum += l2 ? v * v : fabs(v);
                    cnt++;
                    nnz += v != 0;
                }
            size_t b = (size_t)(br * nbc + bc);
            u[b].idx = b;
            u[b].score = nnz ? (l2 ? sqrt(sum / cnt) : sum / cnt) : -INFINITY;
            nz += !nnz;
        }
    qsort(u, nb, sizeof *u, ref_cmp);
    size_t k = ref_round(s, nb);
    if (k < nz)
        k = nz;
    uint8_t *bk = malloc(nb);
    memset(bk, 1, nb);
    for (size_t i = 0; i < k; i++)
        bk[u[i].idx] = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            mask[r * cols + c] = bk[(r / R) * nbc + c / C];
    free(bk);
    free(u);
}

/* ---- patterns and geometry */

START_TEST(test_pattern_parse)
{
    sp_pattern p;
    sp_error err = {0};
    char buf[32];
    ck_assert_int_eq(sp_pattern_parse(&p, "unstructured", &err), SP_OK);
    ck_assert_int_eq(p.kind, SP_PATTERN_UNSTRUCTURED);
    ck_assert_int_eq(sp_pattern_parse(&p, "4x1", &err), SP_OK);
    ck_assert_int_eq(p.kind, SP_PATTERN_BLOCK);
    ck_assert_int_eq(p.r, 4);
    ck_assert_int_eq(p.c, 1);
    ck_assert_int_eq(sp_pattern_parse(&p, "16x16", &err), SP_OK);
    ck_assert_str_eq(sp_pattern_str(&p, buf, sizeof buf), "16x16");
    ck_assert_int_eq(sp_pattern_parse(&p, "block4", &err), SP_OK);
    ck_assert_str_eq(sp_pattern_str(&p, buf, sizeof buf), "1x4");
    ck_assert_int_eq(sp_pattern_parse(&p, "tensorrt", &err), SP_OK);
    ck_assert_str_eq(sp_pattern_str(&p, buf, sizeof buf), "2:4");
    ck_assert_int_eq(sp_pattern_parse(&p, "1x1", &err), SP_OK);
    ck_assert_int_eq(p.kind, SP_PATTERN_UNSTRUCTURED);
    ck_assert_str_eq(sp_pattern_str(&p, buf, sizeof buf), "unstructured");
    ck_assert_int_eq(sp_pattern_parse(&p, "4:8", &err), SP_OK);
    ck_assert_int_eq(p.n, 4);
    ck_assert_int_eq(p.m, 8);
    ck_assert_str_eq(sp_pattern_str(&p, buf, sizeof buf), "4:8");
    const char *bad[] = {"", "4x", "x4", "0x4", "4x0", "5:4", "2:0", "2:4x", "-1x4", "abc", "2::4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        ck_assert_int_eq(sp_pattern_parse(&p, bad[i], &err), SP_ERR_INVALID_ARG);
        ck_assert(err.msg[0]);
    }
    ck_assert(strstr(err.msg, "'2::4'"));
}
END_TEST

START_TEST(test_pattern_str)
{
    char buf[32];
    sp_pattern p = {SP_PATTERN_BLOCK, 8, 8, 0, 0};
    ck_assert_str_eq(sp_pattern_str(&p, buf, sizeof buf), "8x8");
    p = (sp_pattern){SP_PATTERN_NM, 1, 1, 1, 4};
    ck_assert_str_eq(sp_pattern_str(&p, buf, sizeof buf), "1:4");
    p = (sp_pattern){SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    ck_assert_str_eq(sp_pattern_str(&p, buf, sizeof buf), "unstructured");
}
END_TEST

START_TEST(test_pattern_implied)
{
    sp_pattern p = {SP_PATTERN_NM, 1, 1, 2, 4};
    ck_assert_double_eq(sp_pattern_implied_sparsity(&p), 0.5);
    p.n = 1;
    ck_assert_double_eq(sp_pattern_implied_sparsity(&p), 0.75);
    p = (sp_pattern){SP_PATTERN_BLOCK, 4, 4, 0, 0};
    ck_assert_double_eq(sp_pattern_implied_sparsity(&p), -1.0);
}
END_TEST

START_TEST(test_wgeom_init)
{
    sp_wgeom g;
    int64_t s2[] = {5, 7};
    sp_wgeom_init(&g, 2, s2);
    ck_assert_int_eq(g.nmat, 1);
    ck_assert_int_eq(g.rows, 5);
    ck_assert_int_eq(g.cols, 7);
    ck_assert_int_eq(g.row_stride, 7);
    ck_assert_int_eq(g.col_stride, 1);
    int64_t s4[] = {8, 6, 3, 2};
    sp_wgeom_init(&g, 4, s4);
    ck_assert_int_eq(g.nmat, 6);
    ck_assert_int_eq(g.rows, 8);
    ck_assert_int_eq(g.cols, 6);
    /* element (o=2, i=4, kh=1, kw=1) of the row-major tensor */
    int64_t flat = ((2 * 6 + 4) * 3 + 1) * 2 + 1;
    int64_t mat = 1 * 2 + 1;
    ck_assert_int_eq(mat * g.mat_stride + 2 * g.row_stride + 4 * g.col_stride, flat);
    int64_t s3[] = {4, 5, 6};
    sp_wgeom_init(&g, 3, s3);
    ck_assert_int_eq(g.nmat, 1);
    ck_assert_int_eq(g.rows, 4);
    ck_assert_int_eq(g.cols, 30);
    int64_t s1[] = {9};
    sp_wgeom_init(&g, 1, s1);
    ck_assert_int_eq(g.rows, 1);
    ck_assert_int_eq(g.cols, 9);
    sp_wgeom_init(&g, 0, s1);
    ck_assert_int_eq(g.rows, 1);
    ck_assert_int_eq(g.cols, 1);
}
END_TEST

/* ---- unstructured */

static const double sparsities[] = {0.0, 0.1, 0.5, 0.9, 0.95, 1.0};

START_TEST(test_select_unstructured_exact)
{
    int64_t shape[] = {97, 131};
    size_t n = 97 * 131;
    float *w = rand_f32(n, 1);
    uint8_t *m = malloc(n), *r = malloc(n);
    sp_pattern p = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    sp_error err = {0};
    for (size_t i = 0; i < sizeof sparsities / sizeof sparsities[0]; i++) {
        double s = sparsities[i];
        ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &p, s, 0, &err), SP_OK);
        ck_assert_uint_eq(count_pruned(m, n), ref_round(s, n));
        ref_unstructured(r, SP_F32, w, NULL, n, s);
        ck_assert_mem_eq(m, r, n);
    }
    /* round half away from zero: 0.5 * 7 = 3.5 -> 4 */
    int64_t s7[] = {7};
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 1, s7, &p, 0.5, 0, &err), SP_OK);
    ck_assert_uint_eq(count_pruned(m, 7), 4);
    /* out of range */
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &p, 1.5, 0, &err),
                     SP_ERR_INVALID_ARG);
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &p, NAN, 0, &err),
                     SP_ERR_INVALID_ARG);
    free(w);
    free(m);
    free(r);
}
END_TEST

START_TEST(test_select_large_parallel)
{
    /* big enough for the threaded paths and several radix levels */
    int64_t shape[] = {1024, 1000};
    size_t n = 1024 * 1000;
    float *w = rand_f32(n, 2);
    /* many exact duplicates to exercise the radix boundary */
    for (size_t i = 0; i < n; i += 3)
        w[i] = 0.25f * (float)((i / 3) % 5);
    uint8_t *m = malloc(n), *r = malloc(n);
    sp_pattern p = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    sp_error err = {0};
    const double ss[] = {0.3, 0.5, 0.77, 0.9};
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &p, ss[i], 0, &err), SP_OK);
        ref_unstructured(r, SP_F32, w, NULL, n, ss[i]);
        ck_assert_mem_eq(m, r, n);
    }
    free(w);
    free(m);
    free(r);
}
END_TEST

START_TEST(test_select_ties)
{
    /* all equal magnitudes (mixed signs): the lowest indices are pruned */
    int64_t shape[] = {50, 40};
    size_t n = 2000;
    float *w = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        w[i] = (i & 1) ? -0.5f : 0.5f;
    uint8_t *m = malloc(n), *m2 = malloc(n);
    sp_pattern p = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    sp_error err = {0};
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &p, 0.9, 0, &err), SP_OK);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(m[i], i >= 1800);
    /* deterministic on repetition */
    ck_assert_int_eq(sp_mask_select(m2, SP_F32, w, NULL, 2, shape, &p, 0.9, 0, &err), SP_OK);
    ck_assert_mem_eq(m, m2, n);
    /* groups of ties at the boundary */
    for (size_t i = 0; i < n; i++)
        w[i] = (float)(i % 10);
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &p, 0.45, 0, &err), SP_OK);
    uint8_t *r = malloc(n);
    ref_unstructured(r, SP_F32, w, NULL, n, 0.45);
    ck_assert_mem_eq(m, r, n);
    free(r);
    free(w);
    free(m);
    free(m2);
}
END_TEST

START_TEST(test_select_existing_zeros)
{
    int64_t shape[] = {20, 50};
    size_t n = 1000;
    float *w = rand_f32(n, 3);
    for (size_t i = 0; i < 600; i++)
        w[(i * 7) % n] = (i & 1) ? -0.0f : 0.0f;
    size_t nz = sp_count_zeros(SP_F32, w, n);
    ck_assert_uint_gt(nz, 500);
    uint8_t *m = malloc(n);
    sp_pattern p = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    sp_error err = {0};
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &p, 0.5, 0, &err), SP_OK);
    ck_assert_uint_eq(count_pruned(m, n), nz);
    for (size_t i = 0; i < n; i++)
        if (w[i] == 0.0f)
            ck_assert_int_eq(m[i], 0);
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &p, 0.8, 0, &err), SP_OK);
    ck_assert_uint_eq(count_pruned(m, n), 800);
    free(w);
    free(m);
}
END_TEST

START_TEST(test_select_scores)
{
    int64_t shape[] = {30, 33};
    size_t n = 990;
    float *w = rand_f32(n, 4), *sc = rand_f32(n, 5); /* scores may be negative */
    w[10] = 0.0f;
    uint8_t *m = malloc(n), *r = malloc(n);
    sp_pattern p = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    sp_error err = {0};
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, sc, 2, shape, &p, 0.6, 0, &err), SP_OK);
    ref_unstructured(r, SP_F32, w, sc, n, 0.6);
    ck_assert_mem_eq(m, r, n);
    ck_assert_int_eq(m[10], 0);
    sc[7] = NAN;
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, sc, 2, shape, &p, 0.6, 0, &err),
                     SP_ERR_INVALID_ARG);
    ck_assert(strstr(err.msg, "NaN"));
    ck_assert(strstr(err.msg, "scores"));
    free(w);
    free(sc);
    free(m);
    free(r);
}
END_TEST

START_TEST(test_select_nonfinite)
{
    int64_t shape[] = {4, 5};
    float w[20];
    for (int i = 0; i < 20; i++)
        w[i] = (float)i + 1;
    uint8_t m[20];
    sp_error err = {0};
    sp_pattern pats[] = {{SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0},
                         {SP_PATTERN_BLOCK, 2, 2, 0, 0},
                         {SP_PATTERN_NM, 1, 1, 2, 4}};
    for (int k = 0; k < 3; k++) {
        w[13] = NAN;
        ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &pats[k], 0.5, 0, &err),
                         SP_ERR_INVALID_ARG);
        ck_assert_str_eq(err.msg, "contains NaN");
        w[13] = -INFINITY;
        ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &pats[k], 0.5, 0, &err),
                         SP_ERR_INVALID_ARG);
        ck_assert_str_eq(err.msg, "contains Inf");
    }
    double d[20] = {0};
    d[3] = INFINITY;
    ck_assert_int_eq(sp_mask_select(m, SP_F64, d, NULL, 2, shape, &pats[0], 0.5, 0, &err),
                     SP_ERR_INVALID_ARG);
    ck_assert_str_eq(err.msg, "contains Inf");
    uint16_t h[20] = {0};
    h[0] = 0x7e00; /* f16 NaN */
    ck_assert_int_eq(sp_mask_select(m, SP_F16, h, NULL, 2, shape, &pats[0], 0.5, 0, &err),
                     SP_ERR_INVALID_ARG);
    ck_assert_str_eq(err.msg, "contains NaN");
    int32_t iv[20] = {0};
    ck_assert_int_eq(sp_mask_select(m, SP_I32, iv, NULL, 2, shape, &pats[0], 0.5, 0, &err),
                     SP_ERR_UNSUPPORTED);
}
END_TEST

START_TEST(test_select_dtypes)
{
    int64_t shape[] = {33, 47};
    size_t n = 33 * 47;
    uint16_t *h = malloc(n * 2), *b = malloc(n * 2);
    double *d = malloc(n * 8);
    rng_seed(6);
    for (size_t i = 0; i < n; i++) {
        /* finite random halves (some repeat: ties), bf16 = top of a float */
        uint16_t e = (uint16_t)(5 + rng_u64() % 20), man = (uint16_t)(rng_u64() & 0x3ff);
        h[i] = (uint16_t)(((rng_u64() & 1) << 15) | (e << 10) | man);
        float f = rng_normal();
        uint32_t u;
        memcpy(&u, &f, 4);
        b[i] = (uint16_t)(u >> 16);
        d[i] = rng_normal() * 1e-3;
    }
    uint8_t *m = malloc(n), *r = malloc(n);
    sp_pattern p = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    sp_error err = {0};
    struct {
        sp_dtype t;
        void *data;
    } cases[] = {{SP_F16, h}, {SP_BF16, b}, {SP_F64, d}};
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < sizeof sparsities / sizeof sparsities[0]; i++) {
            ck_assert_int_eq(
                sp_mask_select(m, cases[c].t, cases[c].data, NULL, 2, shape, &p, sparsities[i], 0, &err),
                SP_OK);
            ref_unstructured(r, cases[c].t, cases[c].data, NULL, n, sparsities[i]);
            ck_assert_mem_eq(m, r, n);
        }
    /* apply keeps the kept halves bit-identical and writes +0 */
    uint16_t *h2 = malloc(n * 2);
    memcpy(h2, h, n * 2);
    ck_assert_int_eq(sp_mask_select(m, SP_F16, h2, NULL, 2, shape, &p, 0.7, 0, &err), SP_OK);
    sp_mask_apply(h2, SP_F16, n, m);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(h2[i], m[i] ? h[i] : 0);
    ck_assert_uint_eq(sp_count_zeros(SP_F16, h2, n), ref_round(0.7, n));
    free(h2);
    free(h);
    free(b);
    free(d);
    free(m);
    free(r);
}
END_TEST

/* ---- blocks */

START_TEST(test_select_blocks)
{
    int64_t shape[] = {33, 70};
    size_t n = 33 * 70;
    float *w = rand_f32(n, 7);
    uint8_t *m = malloc(n), *r = malloc(n);
    sp_error err = {0};
    const int64_t bs[][2] = {{4, 4}, {8, 8}, {1, 4}, {4, 1}, {16, 16}, {32, 32}, {3, 5}};
    for (size_t b = 0; b < sizeof bs / sizeof bs[0]; b++) {
        sp_pattern p = {SP_PATTERN_BLOCK, bs[b][0], bs[b][1], 0, 0};
        size_t nb = (size_t)(((33 + bs[b][0] - 1) / bs[b][0]) * ((70 + bs[b][1] - 1) / bs[b][1]));
        for (int l2 = 0; l2 < 2; l2++)
            for (size_t i = 0; i < sizeof sparsities / sizeof sparsities[0]; i++) {
                double s = sparsities[i];
                ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &p, s,
                                                l2 ? SP_BLOCK_SCORE_L2 : SP_BLOCK_SCORE_L1, &err),
                                 SP_OK);
                ref_blocks_2d(r, w, 33, 70, bs[b][0], bs[b][1], s, l2);
                ck_assert_mem_eq(m, r, n);
                /* exactly round(s * nblocks) zero blocks */
                sp_pattern_kind k = p.kind;
                (void)k;
                double meas;
                float *w2 = malloc(n * sizeof(float));
                memcpy(w2, w, n * sizeof(float));
                sp_mask_apply(w2, SP_F32, n, m);
                ck_assert(sp_mask_check(SP_F32, w2, 2, shape, &p, s, &meas, NULL, 0));
                ck_assert_double_eq_tol(meas, (double)ref_round(s, nb) / (double)nb, 1e-12);
                free(w2);
            }
    }
    free(w);
    free(m);
    free(r);
}
END_TEST

START_TEST(test_select_blocks_conv)
{
    /* conv [O=10, I=12, 3, 3] with 4x4 blocks: per kernel position an [O, I]
     * matrix; compare with the 2-D reference on each extracted matrix */
    int64_t shape[] = {10, 12, 3, 3};
    size_t n = numel_of(4, shape);
    float *w = rand_f32(n, 8);
    uint8_t *m = malloc(n);
    sp_pattern p = {SP_PATTERN_BLOCK, 4, 4, 0, 0};
    sp_error err = {0};
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 4, shape, &p, 0.5, 0, &err), SP_OK);
    /* 9 matrices of 3x3 blocks = 81 blocks, round(40.5) = 41 pruned blocks */
    size_t zb = 0;
    for (int k = 0; k < 9; k++)
        for (int br = 0; br < 3; br++)
            for (int bc = 0; bc < 3; bc++) {
                int first = -1, same = 1;
                for (int o = br * 4; o < 10 && o < br * 4 + 4; o++)
                    for (int i = bc * 4; i < 12 && i < bc * 4 + 4; i++) {
                        int v = m[(o * 12 + i) * 9 + k];
                        if (first < 0)
                            first = v;
                        same &= v == first;
                    }
                ck_assert(same);
                zb += first == 0;
            }
    ck_assert_uint_eq(zb, 41);
    free(w);
    free(m);
}
END_TEST

/* ---- N:M */

static void check_nm_rows(const uint8_t *m, const float *w, int64_t rows, int64_t cols, int N, int M)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += M) {
            int64_t t = cols - c0 < M ? cols - c0 : M;
            int kept = 0;
            for (int64_t j = 0; j < t; j++)
                kept += m[r * cols + c0 + j];
            ck_assert_int_eq(kept, t < N ? t : N);
            /* every kept |w| >= every pruned |w| in the group */
            for (int64_t a = 0; a < t; a++)
                for (int64_t b = 0; b < t; b++)
                    if (m[r * cols + c0 + a] && !m[r * cols + c0 + b])
                        ck_assert(fabsf(w[r * cols + c0 + a]) >= fabsf(w[r * cols + c0 + b]));
        }
}

START_TEST(test_select_nm)
{
    sp_error err = {0};
    /* tails: in = 10 with 2:4 -> groups of 4, 4, 2 */
    int64_t shape[] = {6, 10};
    float *w = rand_f32(60, 9);
    uint8_t m[60];
    sp_pattern p = {SP_PATTERN_NM, 1, 1, 2, 4};
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &p, 0.0, 0, &err), SP_OK);
    check_nm_rows(m, w, 6, 10, 2, 4);
    ck_assert_uint_eq(count_pruned(m, 60), 6 * 4);
    /* 1:4 and 4:8 with a tail of 3 < N */
    int64_t shape2[] = {5, 11};
    float *w2 = rand_f32(55, 10);
    uint8_t m2[55];
    sp_pattern p14 = {SP_PATTERN_NM, 1, 1, 1, 4}, p48 = {SP_PATTERN_NM, 1, 1, 4, 8};
    ck_assert_int_eq(sp_mask_select(m2, SP_F32, w2, NULL, 2, shape2, &p14, 0.0, 0, &err), SP_OK);
    check_nm_rows(m2, w2, 5, 11, 1, 4);
    ck_assert_int_eq(sp_mask_select(m2, SP_F32, w2, NULL, 2, shape2, &p48, 0.0, 0, &err), SP_OK);
    check_nm_rows(m2, w2, 5, 11, 4, 8);
    ck_assert_uint_eq(count_pruned(m2, 55), 5 * 4); /* tail of 3 keeps all 3 */
    /* ties: the earlier ones are kept */
    float t[8] = {1, 1, 1, 1, 0.5f, 2, 0.5f, 0.5f};
    int64_t s8[] = {1, 8};
    uint8_t mt[8];
    ck_assert_int_eq(sp_mask_select(mt, SP_F32, t, NULL, 2, s8, &p, 0.0, 0, &err), SP_OK);
    const uint8_t want[8] = {1, 1, 0, 0, 1, 1, 0, 0};
    ck_assert_mem_eq(mt, want, 8);
    /* a group with zeros: zeros are pruned first, never kept over nonzeros */
    float z[4] = {0.0f, -0.0f, 3, 0.0f};
    int64_t s4[] = {1, 4};
    ck_assert_int_eq(sp_mask_select(mt, SP_F32, z, NULL, 2, s4, &p, 0.0, 0, &err), SP_OK);
    ck_assert_int_eq(mt[2], 1);
    ck_assert_int_eq(mt[0] + mt[1] + mt[3], 1);
    free(w);
    free(w2);
}
END_TEST

START_TEST(test_select_nm_conv)
{
    /* [O=4, I=10, 3, 3]: groups of 4 along the input channel for each (kh, kw) */
    int64_t shape[] = {4, 10, 3, 3};
    size_t n = numel_of(4, shape);
    float *w = rand_f32(n, 11);
    uint8_t *m = malloc(n);
    sp_pattern p = {SP_PATTERN_NM, 1, 1, 2, 4};
    sp_error err = {0};
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 4, shape, &p, 0.0, 0, &err), SP_OK);
    float mat[40];
    uint8_t mm[40];
    for (int k = 0; k < 9; k++) {
        for (int o = 0; o < 4; o++)
            for (int i = 0; i < 10; i++) {
                mat[o * 10 + i] = w[(o * 10 + i) * 9 + k];
                mm[o * 10 + i] = m[(o * 10 + i) * 9 + k];
            }
        check_nm_rows(mm, mat, 4, 10, 2, 4);
    }
    double meas;
    char why[128];
    sp_mask_apply(w, SP_F32, n, m);
    ck_assert(sp_mask_check(SP_F32, w, 4, shape, &p, 0.5, &meas, why, sizeof why));
    ck_assert_double_eq_tol(meas, 0.4, 1e-12);
    free(w);
    free(m);
}
END_TEST

/* ---- apply and count */

START_TEST(test_mask_apply)
{
    int64_t shape[] = {64, 64};
    size_t n = 4096;
    float *w = rand_f32(n, 12), *orig = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i += 17)
        w[i] = -fabsf(w[i]); /* plenty of negatives: pruned ones must become +0 */
    memcpy(orig, w, n * sizeof(float));
    uint8_t *m = malloc(n);
    sp_pattern p = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    sp_error err = {0};
    ck_assert_int_eq(sp_mask_select(m, SP_F32, w, NULL, 2, shape, &p, 0.9, 0, &err), SP_OK);
    sp_mask_apply(w, SP_F32, n, m);
    for (size_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, &w[i], 4);
        memcpy(&b, &orig[i], 4);
        ck_assert_uint_eq(a, m[i] ? b : 0u);
    }
    double d[3] = {-1.5, -2.5, 3.0};
    uint8_t dm[3] = {0, 1, 0};
    sp_mask_apply(d, SP_F64, 3, dm);
    uint64_t u;
    memcpy(&u, &d[0], 8);
    ck_assert_uint_eq(u, 0);
    ck_assert_double_eq(d[1], -2.5);
    free(w);
    free(orig);
    free(m);
}
END_TEST

START_TEST(test_count_zeros)
{
    float f[5] = {0.0f, -0.0f, 1.0f, 0.0f, -2.0f};
    ck_assert_uint_eq(sp_count_zeros(SP_F32, f, 5), 3);
    uint16_t h[4] = {0x8000, 0x0000, 0x3c00, 0x0001};
    ck_assert_uint_eq(sp_count_zeros(SP_F16, h, 4), 2);
    ck_assert_uint_eq(sp_count_zeros(SP_BF16, h, 4), 2);
    double d[3] = {0.0, -0.0, 1e-300};
    ck_assert_uint_eq(sp_count_zeros(SP_F64, d, 3), 2);
    int64_t iv[3] = {0, 5, 0};
    ck_assert_uint_eq(sp_count_zeros(SP_I64, iv, 3), 2);
    ck_assert_uint_eq(sp_count_zeros(SP_F32, f, 0), 0);
}
END_TEST

/* ---- global */

typedef struct gref {
    double score;
    size_t tensor, idx;
} gref;

static int gref_cmp(const void *a, const void *b)
{
    const gref *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    if (x->tensor != y->tensor)
        return x->tensor < y->tensor ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static void run_global(sp_global *g, size_t nt, float **ws, const int64_t (*shapes)[2],
                       uint8_t **masks)
{
    sp_error err = {0};
    for (int pass = 1; pass <= 2; pass++)
        for (size_t t = 0; t < nt; t++)
            ck_assert_int_eq(sp_global_add(g, pass, t, SP_F32, ws[t], NULL, 2, shapes[t], &err),
                             SP_OK);
    for (size_t t = 0; t < nt; t++)
        ck_assert_int_eq(sp_global_mask(g, t, masks[t], SP_F32, ws[t], NULL, 2, shapes[t], &err),
                         SP_OK);
}

START_TEST(test_global)
{
    const int64_t shapes[3][2] = {{40, 50}, {17, 33}, {64, 64}};
    float *ws[3];
    uint8_t *masks[3];
    size_t total = 0;
    for (int t = 0; t < 3; t++) {
        size_t n = (size_t)(shapes[t][0] * shapes[t][1]);
        ws[t] = rand_f32(n, 20 + (uint64_t)t);
        for (size_t i = 0; i < n; i++)
            ws[t][i] *= (float)(t + 1) * 0.5f; /* different scales per tensor */
        masks[t] = malloc(n);
        total += n;
    }
    /* ties across tensors: the same value in all three */
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < 100; i++)
            ws[t][i * 3] = 0.125f;
    ws[1][5] = 0.0f;
    sp_pattern p = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    sp_error err = {0};
    gref *ref = malloc(total * sizeof *ref);
    for (size_t si = 0; si < sizeof sparsities / sizeof sparsities[0]; si++) {
        double s = sparsities[si];
        sp_global *g;
        ck_assert_int_eq(sp_global_new(&g, &p, s, 0, 3, &err), SP_OK);
        run_global(g, 3, ws, shapes, masks);
        sp_global_free(g);
        /* reference */
        size_t j = 0, nz = 0;
        for (size_t t = 0; t < 3; t++)
            for (size_t i = 0; i < (size_t)(shapes[t][0] * shapes[t][1]); i++) {
                double v = ws[t][i];
                ref[j++] = (gref){v == 0 ? -INFINITY : fabs(v), t, i};
                nz += v == 0;
            }
        qsort(ref, total, sizeof *ref, gref_cmp);
        size_t k = ref_round(s, total);
        if (k < nz)
            k = nz;
        size_t pruned = 0;
        for (size_t t = 0; t < 3; t++)
            pruned += count_pruned(masks[t], (size_t)(shapes[t][0] * shapes[t][1]));
        ck_assert_uint_eq(pruned, k);
        for (size_t i = 0; i < total; i++)
            ck_assert_int_eq(masks[ref[i].tensor][ref[i].idx], i >= k);
    }
    /* a sparsity that cuts through the tied 0.125 values */
    size_t below = 0;
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < (size_t)(shapes[t][0] * shapes[t][1]); i++)
            below += ws[t][i] != 0.0f && fabsf(ws[t][i]) < 0.125f;
    double s = (double)(below + 1 + 150) / (double)total; /* zero + half the ties */
    sp_global *g;
    ck_assert_int_eq(sp_global_new(&g, &p, s, 0, 3, &err), SP_OK);
    run_global(g, 3, ws, shapes, masks);
    sp_global_free(g);
    /* tensor 0's 100 ties all pruned, half of tensor 1's, none of tensor 2's */
    size_t tied_pruned[3] = {0};
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < 100; i++)
            tied_pruned[t] += !masks[t][i * 3];
    ck_assert_uint_eq(tied_pruned[0], 100);
    ck_assert_uint_eq(tied_pruned[1], 50);
    ck_assert_uint_eq(tied_pruned[2], 0);
    for (int t = 0; t < 3; t++) {
        free(ws[t]);
        free(masks[t]);
    }
    free(ref);
}
END_TEST

/* ---- fused select + apply (prune/internal.h, the checkpoint pruner) */

/* expected dst and stats from sp_mask_select's mask */
static void expect_apply(void *dst, sp__prune_stats *st, sp_dtype t, const void *src,
                         const uint8_t *mask, size_t n)
{
    size_t es = sp_dtype_size(t);
    memcpy(dst, src, n * es);
    sp_mask_apply(dst, t, n, mask);
    st->zeros_before = sp_count_zeros(t, src, n);
    st->zeros_after = sp_count_zeros(t, dst, n);
    st->changed = memcmp(dst, src, n * es) != 0;
}

/* f32 -> f16 (truncating; tiny values flush to a signed zero) and bf16 */
static uint16_t to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    int e = (int)((u >> 23) & 0xff) - 127 + 15;
    if (e <= 0)
        return sign;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00);
    return (uint16_t)(sign | (e << 10) | ((u >> 13) & 0x3ff));
}

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

static void fill_dtype(void *buf, sp_dtype t, const float *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (t) {
        case SP_F32: ((float *)buf)[i] = w[i]; break;
        case SP_F64: ((double *)buf)[i] = w[i]; break;
        case SP_F16: ((uint16_t *)buf)[i] = to_f16(w[i]); break;
        default: ((uint16_t *)buf)[i] = to_bf16(w[i]); break;
        }
    }
}

static void check_fused_one(sp_dtype t, int ndim, const int64_t *shape, const char *pat,
                            double s, const float *w)
{
    size_t n = numel_of(ndim, shape), es = sp_dtype_size(t);
    void *src = malloc(n * es), *dst = malloc(n * es), *exp = malloc(n * es);
    uint8_t *mask = malloc(n);
    sp_pattern p;
    sp_error err = {0};
    ck_assert_int_eq(sp_pattern_parse(&p, pat, &err), SP_OK);
    fill_dtype(src, t, w, n);
    ck_assert_int_eq(sp_mask_select(mask, t, src, NULL, ndim, shape, &p, s, 0, &err), SP_OK);
    sp__prune_stats want, got;
    expect_apply(exp, &want, t, src, mask, n);
    memset(dst, 0xa5, n * es);
    ck_assert_msg(sp__prune_tensor(dst, src, t, ndim, shape, &p, s, 0, &got, &err) == SP_OK,
                  "%s", err.msg);
    ck_assert_msg(!memcmp(dst, exp, n * es), "%s %s s=%g n=%zu", sp_dtype_name(t), pat, s, n);
    ck_assert_uint_eq(got.zeros_before, want.zeros_before);
    ck_assert_uint_eq(got.zeros_after, want.zeros_after);
    ck_assert_int_eq(got.changed, want.changed);
    /* in place (dst == src) gives the same */
    ck_assert_int_eq(sp__prune_tensor(src, src, t, ndim, shape, &p, s, 0, &got, &err), SP_OK);
    ck_assert(!memcmp(src, exp, n * es));
    ck_assert_uint_eq(got.zeros_after, want.zeros_after);
    free(src);
    free(dst);
    free(exp);
    free(mask);
}

START_TEST(test_prune_tensor_fused)
{
    const sp_dtype dts[] = {SP_F32, SP_F16, SP_BF16, SP_F64};
    const char *pats[] = {"unstructured", "4x1", "3x5", "2:4", "1:4", "3:7"};
    const double ss[] = {0.0, 0.3, 0.5, 0.9, 1.0};
    int64_t shape[] = {37, 71};
    size_t n = 37 * 71;
    float *w = rand_f32(n, 77);
    /* ties, zeros, negative zeros, subnormals, a ragged tail group */
    for (size_t i = 0; i < n; i += 7)
        w[i] = (i & 8) ? -0.375f : 0.375f;
    for (size_t i = 3; i < n; i += 29)
        w[i] = 0.0f;
    for (size_t i = 5; i < n; i += 31)
        w[i] = -0.0f;
    for (size_t i = 11; i < n; i += 97)
        w[i] = 1e-40f * (float)(i % 5 + 1);
    for (size_t d = 0; d < 4; d++)
        for (size_t p = 0; p < 6; p++)
            for (size_t k = 0; k < 5; k++)
                check_fused_one(dts[d], 2, shape, pats[p], ss[k], w);
    /* conv geometry (strided N:M groups) and a large tensor (threads) */
    int64_t conv[] = {8, 12, 3, 3};
    check_fused_one(SP_F32, 4, conv, "2:4", 0, w);
    check_fused_one(SP_F32, 4, conv, "unstructured", 0.6, w);
    int64_t big[] = {640, 800};
    float *wb = rand_f32(640 * 800, 78);
    for (size_t i = 0; i < 640 * 800; i += 5)
        wb[i] = 0.25f * (float)((i / 5) % 3);
    const double bs[] = {0.2, 0.5, 0.9, 0.97};
    for (size_t k = 0; k < 4; k++) {
        check_fused_one(SP_F32, 2, big, "unstructured", bs[k], wb);
        check_fused_one(SP_F32, 2, big, "4x1", bs[k], wb);
    }
    check_fused_one(SP_F32, 2, big, "2:4", 0, wb);
    check_fused_one(SP_F16, 2, big, "unstructured", 0.9, wb);
    /* errors: NaN, Inf, bad sparsity */
    sp_error err = {0};
    sp__prune_stats st;
    sp_pattern un = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0}, nm = {SP_PATTERN_NM, 1, 1, 2, 4};
    wb[1234] = NAN;
    ck_assert_int_eq(sp__prune_tensor(wb, wb, SP_F32, 2, big, &un, 0.5, 0, &st, &err),
                     SP_ERR_INVALID_ARG);
    ck_assert_str_eq(err.msg, "contains NaN");
    ck_assert_int_eq(sp__prune_tensor(wb, wb, SP_F32, 2, big, &nm, 0, 0, &st, &err),
                     SP_ERR_INVALID_ARG);
    wb[1234] = -INFINITY;
    ck_assert_int_eq(sp__prune_tensor(wb, wb, SP_F32, 2, big, &un, 0.5, 0, &st, &err),
                     SP_ERR_INVALID_ARG);
    ck_assert_str_eq(err.msg, "contains Inf");
    ck_assert_int_eq(sp__prune_tensor(wb, wb, SP_F32, 2, big, &un, 1.5, 0, &st, &err),
                     SP_ERR_INVALID_ARG);
    free(w);
    free(wb);
}
END_TEST

START_TEST(test_global_apply)
{
    /* large tensors (threaded passes), cross-tensor ties, subnormals, zeros */
    const int64_t shapes[3][2] = {{300, 400}, {512, 300}, {7, 9}};
    float *ws[3];
    uint8_t *masks[3];
    for (int t = 0; t < 3; t++) {
        size_t n = (size_t)(shapes[t][0] * shapes[t][1]);
        ws[t] = rand_f32(n, 40 + (uint64_t)t);
        for (size_t i = 0; i < n; i += 11)
            ws[t][i] = 0.5f;
        for (size_t i = 1; i < n; i += 53)
            ws[t][i] = 3e-39f * (float)(i % 7);
        masks[t] = malloc(n);
    }
    ws[2][4] = -0.0f;
    const double ss[] = {0.0, 0.4, 0.61, 0.9, 1.0};
    sp_pattern p = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    sp_error err = {0};
    for (size_t si = 0; si < 5; si++) {
        sp_global *g;
        ck_assert_int_eq(sp_global_new(&g, &p, ss[si], 0, 3, &err), SP_OK);
        run_global(g, 3, ws, shapes, masks);
        size_t pruned = 0, total = 0;
        for (int t = 0; t < 3; t++) {
            size_t n = (size_t)(shapes[t][0] * shapes[t][1]);
            float *dst = malloc(n * 4), *exp = malloc(n * 4);
            sp__prune_stats want, got;
            expect_apply(exp, &want, SP_F32, ws[t], masks[t], n);
            ck_assert_int_eq(sp__global_apply(g, (size_t)t, dst, ws[t], SP_F32, 2, shapes[t],
                                              &got, &err),
                             SP_OK);
            ck_assert(!memcmp(dst, exp, n * 4));
            ck_assert_uint_eq(got.zeros_before, want.zeros_before);
            ck_assert_uint_eq(got.zeros_after, want.zeros_after);
            ck_assert_int_eq(got.changed, want.changed);
            pruned += count_pruned(masks[t], n);
            total += n;
            free(dst);
            free(exp);
        }
        size_t nz = 0, k = ref_round(ss[si], total);
        for (int t = 0; t < 3; t++)
            nz += sp_count_zeros(SP_F32, ws[t], (size_t)(shapes[t][0] * shapes[t][1]));
        ck_assert_uint_eq(pruned, k > nz ? k : nz);
        sp_global_free(g);
        /* the masks equal the brute-force order (score, tensor, index) */
        size_t j = 0;
        gref *ref = malloc(total * sizeof *ref);
        for (size_t t = 0; t < 3; t++)
            for (size_t i = 0; i < (size_t)(shapes[t][0] * shapes[t][1]); i++) {
                double v = ws[t][i];
                ref[j++] = (gref){v == 0 ? -INFINITY : fabs(v), t, i};
            }
        qsort(ref, total, sizeof *ref, gref_cmp);
        for (size_t i = 0; i < total; i++)
            ck_assert_int_eq(masks[ref[i].tensor][ref[i].idx], i >= pruned);
        free(ref);
    }
    for (int t = 0; t < 3; t++) {
        free(ws[t]);
        free(masks[t]);
    }
}
END_TEST

START_TEST(test_global_blocks_and_errors)
{
    const int64_t shapes[2][2] = {{33, 70}, {16, 20}};
    float *ws[2] = {rand_f32(33 * 70, 30), rand_f32(320, 31)};
    uint8_t *masks[2] = {malloc(33 * 70), malloc(320)};
    sp_pattern p = {SP_PATTERN_BLOCK, 4, 4, 0, 0};
    sp_error err = {0};
    sp_global *g;
    ck_assert_int_eq(sp_global_new(&g, &p, 0.6, 0, 2, &err), SP_OK);
    run_global(g, 2, ws, shapes, masks);
    sp_global_free(g);
    /* 9*18 + 4*5 = 182 blocks, round(109.2) = 109 zero blocks; check via sp_mask_check */
    size_t zb = 0;
    for (int t = 0; t < 2; t++) {
        size_t n = (size_t)(shapes[t][0] * shapes[t][1]);
        sp_mask_apply(ws[t], SP_F32, n, masks[t]);
        double meas;
        sp_mask_check(SP_F32, ws[t], 2, shapes[t], &p, 0, &meas, NULL, 0);
        size_t nb = t ? 20 : 162;
        zb += (size_t)llround(meas * (double)nb);
    }
    ck_assert_uint_eq(zb, 109);
    /* errors */
    sp_pattern nm = {SP_PATTERN_NM, 1, 1, 2, 4};
    ck_assert_int_eq(sp_global_new(&g, &nm, 0.5, 0, 2, &err), SP_ERR_INVALID_ARG);
    ck_assert_ptr_null(g);
    ck_assert_int_eq(sp_global_new(&g, &p, 1.5, 0, 2, &err), SP_ERR_INVALID_ARG);
    ck_assert_int_eq(sp_global_new(&g, &p, 0.5, 0, 2, &err), SP_OK);
    ck_assert_int_eq(sp_global_add(g, 1, 0, SP_F32, ws[0], NULL, 2, shapes[0], &err), SP_OK);
    ck_assert_int_eq(sp_global_add(g, 2, 0, SP_F32, ws[0], NULL, 2, shapes[0], &err),
                     SP_ERR_INVALID_ARG); /* pass 1 incomplete */
    ck_assert_int_eq(sp_global_add(g, 1, 5, SP_F32, ws[0], NULL, 2, shapes[0], &err),
                     SP_ERR_INVALID_ARG);
    ws[1][3] = NAN;
    ck_assert_int_eq(sp_global_add(g, 1, 1, SP_F32, ws[1], NULL, 2, shapes[1], &err),
                     SP_ERR_INVALID_ARG);
    ck_assert_str_eq(err.msg, "contains NaN");
    sp_global_free(g);
    sp_global_free(NULL);
    for (int t = 0; t < 2; t++) {
        free(ws[t]);
        free(masks[t]);
    }
}
END_TEST

/* ---- check */

START_TEST(test_mask_check)
{
    int64_t shape[] = {2, 8};
    float w[16] = {1, 0, 0, 2, 0, 3, 4, 0, /* row 0: groups {1,0,0,2} {0,3,4,0} */
                   5, 6, 7, 0, 0, 0, 0, 1};
    sp_pattern nm = {SP_PATTERN_NM, 1, 1, 2, 4};
    double meas;
    char why[128];
    ck_assert(!sp_mask_check(SP_F32, w, 2, shape, &nm, 0.5, &meas, why, sizeof why));
    ck_assert_str_eq(why, "row 1 group 0 has 3 nonzeros (2:4 allows 2)");
    w[10] = 0;
    ck_assert(sp_mask_check(SP_F32, w, 2, shape, &nm, 0.5, &meas, why, sizeof why));
    ck_assert_double_eq(meas, 9.0 / 16.0);
    ck_assert_str_eq(why, "");
    sp_pattern un = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    ck_assert(!sp_mask_check(SP_F32, w, 2, shape, &un, 0.9, &meas, why, sizeof why));
    ck_assert_str_eq(why, "sparsity 0.5625 < target 0.9000");
    /* round() targets pass: 9/16 meets 0.59 (round(0.59*16) = 9), not 0.6 */
    ck_assert(sp_mask_check(SP_F32, w, 2, shape, &un, 0.59, &meas, NULL, 0));
    ck_assert(!sp_mask_check(SP_F32, w, 2, shape, &un, 0.6, &meas, NULL, 0));
    /* blocks: partially-zero blocks count as kept */
    sp_pattern b = {SP_PATTERN_BLOCK, 1, 4, 0, 0};
    w[15] = 0;
    ck_assert(sp_mask_check(SP_F32, w, 2, shape, &b, 0.25, &meas, why, sizeof why));
    ck_assert_double_eq(meas, 0.25); /* only row 1's second block is all zero */
    ck_assert(!sp_mask_check(SP_F32, w, 2, shape, &b, 0.5, &meas, why, sizeof why));
    /* N:M with a tail: target capped at what a conformant tensor reaches */
    int64_t s10[] = {1, 10};
    float t[10] = {1, 2, 0, 0, 3, 0, 4, 0, 5, 6};
    ck_assert(sp_mask_check(SP_F32, t, 2, s10, &nm, 0.5, &meas, why, sizeof why));
    ck_assert_double_eq(meas, 0.4);
    /* conv: the message names the kernel position */
    int64_t sc[] = {1, 4, 1, 2};
    float cw[8] = {1, 1, 1, 0, 1, 0, 0, 0};
    ck_assert(!sp_mask_check(SP_F32, cw, 4, sc, &nm, 0, &meas, why, sizeof why));
    ck_assert_str_eq(why, "kernel position 0 row 0 group 0 has 3 nonzeros (2:4 allows 2)");
}
END_TEST

/* ---- selection */

START_TEST(test_select_default)
{
    ck_assert(sp_select_default("encoder.layer.0.attention.self.query.weight", SP_F32, 2));
    ck_assert(sp_select_default("features.0.weight", SP_F16, 4));
    ck_assert(sp_select_default("fc.weight", SP_BF16, 2));
    ck_assert(!sp_select_default("fc.bias", SP_F32, 1));
    ck_assert(!sp_select_default("fc.weight", SP_F32, 1));
    ck_assert(!sp_select_default("fc.weight", SP_I8, 2));
    ck_assert(!sp_select_default("embeddings.word_embeddings.weight", SP_F32, 2));
    ck_assert(!sp_select_default("model.embed_tokens.weight", SP_F32, 2));
    ck_assert(!sp_select_default("encoder.LayerNorm.weight", SP_F32, 2));
    ck_assert(!sp_select_default("transformer.wte.weight", SP_F32, 2));
    ck_assert(!sp_select_default("transformer.wpe.weight", SP_F32, 2));
    ck_assert(!sp_select_default("transformer.ln_f.weight", SP_F32, 2));
    ck_assert(!sp_select_default("transformer.h.0.ln_1.weight", SP_F32, 2));
    ck_assert(!sp_select_default("layer1.0.bn1.weight", SP_F32, 2));
    ck_assert(sp_select_default("transformer.h.0.attn.c_attn.weight", SP_F32, 2));
    ck_assert(!sp_select_default("fc.weight_orig", SP_F32, 2));
    /* output heads stay dense by default (SparseGPT, Wanda, llm-compressor) */
    ck_assert(!sp_select_default("lm_head.weight", SP_F32, 2));
    ck_assert(!sp_select_default("model.lm_head.weight", SP_BF16, 2));
    ck_assert(!sp_select_default("gpt_neox.embed_out.weight", SP_F32, 2));
    ck_assert(!sp_select_default("output.weight", SP_F32, 2));
    ck_assert(!sp_select_default("cls.predictions.decoder.weight", SP_F32, 2));
    ck_assert(!sp_select_default("generator_lm_head.weight", SP_F32, 2));
    ck_assert(sp_select_default("layers.0.attention.output.dense.weight", SP_F32, 2));
    ck_assert(sp_select_default("my_lm_head_proj.weight", SP_F32, 2));
    ck_assert(sp_name_is_output_head("lm_head.weight"));
    ck_assert(!sp_name_is_output_head("lm_head"));
    ck_assert(!sp_name_is_output_head("x.output.weight"));
}
END_TEST

/* sp_regex_match that must succeed */
static bool rx(const char *pat, bool anchored, const char *subject)
{
    sp_regex *re;
    sp_error err = {0};
    bool m = false;
    ck_assert_msg(sp_regex_new(&re, pat, anchored, &err) == SP_OK, "%s: %s", pat, err.msg);
    ck_assert_msg(sp_regex_match(re, subject, &m, &err) == SP_OK, "%s: %s", pat, err.msg);
    ck_assert_str_eq(sp_regex_pattern(re), pat);
    sp_regex_free(re);
    return m;
}

static void rx_bad(const char *pat, const char *want)
{
    sp_regex *re = (sp_regex *)1;
    sp_error err = {0};
    ck_assert_int_eq(sp_regex_new(&re, pat, false, &err), SP_ERR_INVALID_ARG);
    ck_assert(re == NULL);
    ck_assert_msg(strstr(err.msg, want), "%s: '%s' lacks '%s'", pat, err.msg, want);
}

START_TEST(test_regex_python_syntax)
{
    /* search vs match (anchored at the start only, like re.match) */
    ck_assert(rx("mlp", false, "layers.0.mlp.weight"));
    ck_assert(!rx("mlp", true, "layers.0.mlp.weight"));
    ck_assert(rx("layers", true, "layers.0.mlp.weight"));
    /* Python escapes and classes */
    ck_assert(rx("layers\\.\\d\\.mlp", false, "layers.3.mlp.up_proj.weight"));
    ck_assert(rx("[\\d]", false, "a1"));
    ck_assert(!rx("^[\\d]+$", false, "a1"));
    ck_assert(rx("^[^\\d]+$", false, "ab.c"));
    ck_assert(!rx("^[^\\d]+$", false, "a1"));
    ck_assert(rx("\\d", false, "layer.\xd9\xa3")); /* U+0663 ARABIC-INDIC THREE: Unicode \d */
    ck_assert(rx("^\\w+$", false, "caf\xc3\xa9"));
    ck_assert(rx("\\bup\\b", false, "mlp.up.weight"));
    ck_assert(!rx("\\bup\\b", false, "mlp.up_proj.weight"));
    ck_assert(rx("(?i)MLP", false, "mlp"));
    ck_assert(rx("(?P<l>\\d+)\\.(?P=l)", false, "1.1"));
    ck_assert(!rx("(?P<l>\\d+)\\.(?P=l)$", false, "1.2"));
    ck_assert(rx("^((?!dfl).)*$", true, "model.head.weight"));
    ck_assert(!rx("^((?!dfl).)*$", true, "model.dfl.conv.weight"));
    ck_assert(rx("(?<=mlp\\.)up", false, "mlp.up"));
    ck_assert(!rx("(?<!mlp\\.)up", false, "mlp.up"));
    /* spellings that differ between Python and PCRE2 */
    ck_assert(!rx("weight\\Z", false, "weight\n"));   /* PCRE2's \Z would match */
    ck_assert(rx("weight$", false, "weight\n"));        /* as in Python */
    ck_assert(rx("^a{,2}b$", false, "aab"));            /* {,n} is a quantifier */
    ck_assert(!rx("^a{,2}b$", false, "a{,2}b"));
    ck_assert(rx("^a{,}$", false, "aaaa"));
    ck_assert(rx("[[:a]", false, ":"));                 /* a set of '[', ':', 'a' */
    ck_assert(!rx("^[[:alpha:]]$", false, "b"));         /* not a POSIX class */
    ck_assert(rx("^[[:alpha:]]$", false, "a]"));
    ck_assert(rx("\\u00e9", false, "caf\xc3\xa9"));
    ck_assert(rx("\\U0001F600", false, "\xf0\x9f\x98\x80"));
    ck_assert(rx("\\x41", false, "A"));
    ck_assert(rx("a\\vb", false, "a\vb"));
    ck_assert(!rx("a\\vb", false, "a\nb"));           /* PCRE2's \v is a class */
    ck_assert(rx("(?u)\\w", false, "x"));
    ck_assert(rx("(?u:\\w)", false, "x"));
    ck_assert(rx("(?x) a b # comment", false, "ab"));
    ck_assert(rx("a++b", false, "aab"));                /* possessive, as Python 3.11 */
    ck_assert(rx("(?>a+)b", false, "aab"));
    ck_assert(rx("a.*?b", false, "axxb"));
    ck_assert(rx("[]a]", false, "]"));
    /* verbose comments run to the end of the line, whatever they hold */
    ck_assert(rx("(?x) a # [ \\q (\n b", false, "ab"));
    ck_assert(rx("(?x:a b # [)\n)c", false, "abc"));
    ck_assert(!rx("(?x:a b)c d", false, "abcd"));   /* x ends with its group */
    ck_assert(rx("(?x:a b)c d", false, "abc d"));
    ck_assert(rx("a#b", false, "a#b"));             /* not verbose: '#' is a literal */
    /* what Python refuses */
    rx_bad("a++++++++++++++++++++++++", "quantifier does not follow a repeatable item");
    rx_bad("\\K", "bad escape \\K at position 0");
    rx_bad("x\\p{L}", "bad escape \\p at position 1");
    rx_bad("\\N{DIGIT ONE}", "not supported");
    rx_bad("\\x4", "incomplete escape \\x");
    rx_bad("x(?i)a", "global flags not at the start");
    rx_bad("(?a)x", "flag 'a'");
    rx_bad("(?U)x", "unknown extension ?U at position 1");
    rx_bad("(?iU)x", "unknown flag 'U'");
    rx_bad("(?-i)x", "missing :");
    rx_bad("(?-u:x)", "cannot be turned off");
    rx_bad("fc([", "regex 'fc(['");
    rx_bad("x\\", "bad escape (end of pattern)");
    rx_bad("(*ACCEPT)a", "nothing to repeat at position 1");   /* PCRE2 verbs */
    rx_bad("a(*LIMIT_MATCH=9)", "nothing to repeat at position 2");
    rx_bad("(?C)a", "unknown extension ?C at position 1");      /* callouts */
    rx_bad("a(?R)", "unknown extension ?R");
    rx_bad("(?|a)", "unknown extension ?|");
    rx_bad("(?<n>a)", "unknown extension ?<");
}
END_TEST

START_TEST(test_regex_limits)
{
    sp_regex *re;
    sp_error err = {0};
    bool m;
    /* catastrophic backtracking fails fast with an error naming the pattern */
    ck_assert_int_eq(sp_regex_new(&re, "^(a+)+$", false, &err), SP_OK);
    ck_assert_int_eq(sp_regex_match(re, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", &m, &err),
                     SP_ERR_INVALID_ARG);
    ck_assert(strstr(err.msg, "regex '^(a+)+$' backtracks too much"));
    ck_assert_int_eq(sp_regex_match(re, "aaaa", &m, &err), SP_OK);
    ck_assert(m);
    /* a tensor name that is not UTF-8 is an error, not a silent no-match */
    ck_assert_int_eq(sp_regex_match(re, "a\xff", &m, &err), SP_ERR_INVALID_ARG);
    ck_assert(strstr(err.msg, "not valid UTF-8"));
    sp_regex_free(re);
    sp_regex_free(NULL);
    /* length cap and PCRE2's compiled-size cap */
    char *big = malloc(SP_REGEX_MAX_LEN + 2);
    memset(big, 'a', SP_REGEX_MAX_LEN + 1);
    big[SP_REGEX_MAX_LEN + 1] = '\0';
    ck_assert_int_eq(sp_regex_new(&re, big, false, &err), SP_ERR_INVALID_ARG);
    ck_assert(strstr(err.msg, "long"));
    free(big);
    rx_bad("((a{65535}){65535}){65535}", "too large");
}
END_TEST

START_TEST(test_selector_init)
{
    sp_selector s;
    sp_error err = {0};
    const char *inc[] = {"attention", "^fc[0-9]+\\.weight$"};
    const char *exc[] = {"\\.key\\."};
    ck_assert_int_eq(sp_selector_init(&s, inc, 2, exc, 1, &err), SP_OK);
    sp_selector_release(&s);
    const char *bad[] = {"fc(["};
    ck_assert_int_eq(sp_selector_init(&s, bad, 1, NULL, 0, &err), SP_ERR_INVALID_ARG);
    ck_assert_str_eq(err.msg, "--include: regex 'fc([': missing terminating ] for character class");
    ck_assert_int_eq(sp_selector_init(&s, NULL, 0, bad, 1, &err), SP_ERR_INVALID_ARG);
    ck_assert(!strncmp(err.msg, "--exclude: regex 'fc(['", 23));
}
END_TEST

static bool sel(const sp_selector *s, const char *name, sp_dtype dt, int ndim)
{
    bool hit;
    sp_error err = {0};
    ck_assert_msg(sp_selector_match(s, name, dt, ndim, &hit, &err) == SP_OK, "%s", err.msg);
    return hit;
}

START_TEST(test_selector_match)
{
    sp_selector s;
    sp_error err = {0};
    const char *inc[] = {"attention", "^fc\\d+\\.weight$", "lm_head"};
    const char *exc[] = {"\\.key\\."};
    ck_assert_int_eq(sp_selector_init(&s, inc, 3, exc, 1, &err), SP_OK);
    ck_assert(sel(&s, "bert.attention.query.weight", SP_F32, 2));
    ck_assert(sel(&s, "bert.attention.query.bias", SP_F32, 1)); /* asked for */
    ck_assert(!sel(&s, "bert.attention.key.weight", SP_F32, 2)); /* excluded */
    ck_assert(sel(&s, "fc12.weight", SP_F32, 2));
    ck_assert(!sel(&s, "xfc12.weight", SP_F32, 2));
    ck_assert(!sel(&s, "attention.mask", SP_I64, 2)); /* not floating */
    ck_assert(sel(&s, "lm_head.weight", SP_F32, 2));  /* an output head, asked for */
    sp_selector_release(&s);
    /* no include: the defaults, minus the excludes */
    ck_assert_int_eq(sp_selector_init(&s, NULL, 0, exc, 1, &err), SP_OK);
    ck_assert(sel(&s, "a.query.weight", SP_F32, 2));
    ck_assert(!sel(&s, "a.key.weight", SP_F32, 2));
    ck_assert(!sel(&s, "a.query.bias", SP_F32, 1));
    ck_assert(!sel(&s, "lm_head.weight", SP_F32, 2));
    sp_selector_release(&s);
    sp_selector_release(NULL);
    /* a Python exclude means what it means in Python (POSIX ERE read \d as 'd') */
    const char *pyexc[] = {"layers\\.\\d\\.mlp"};
    ck_assert_int_eq(sp_selector_init(&s, NULL, 0, pyexc, 1, &err), SP_OK);
    ck_assert(!sel(&s, "model.layers.3.mlp.up_proj.weight", SP_F32, 2));
    ck_assert(sel(&s, "model.layers.12.mlp.up_proj.weight", SP_F32, 2));
    ck_assert(sel(&s, "model.layers.3.self_attn.q_proj.weight", SP_F32, 2));
    sp_selector_release(&s);
    /* a pattern that cannot run is an error, not a silent no-match */
    const char *slow[] = {"^(\\w+\\.?)+$"};
    bool hit;
    ck_assert_int_eq(sp_selector_init(&s, slow, 1, NULL, 0, &err), SP_OK);
    ck_assert_int_eq(sp_selector_match(&s, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-", SP_F32, 2,
                                       &hit, &err),
                     SP_ERR_INVALID_ARG);
    ck_assert(strstr(err.msg, "backtracks too much"));
    sp_selector_release(&s);
}
END_TEST

START_TEST(test_selector_release)
{
    sp_selector s;
    sp_error err = {0};
    ck_assert_int_eq(sp_selector_init(&s, NULL, 0, NULL, 0, &err), SP_OK);
    sp_selector_release(&s);
    ck_assert_uint_eq(s.ninc + s.nexc, 0);
}
END_TEST

/* ---- PyTorch oracle: tests/prune_oracle.py writes weights and masks */

static char *src_dir(void)
{
    static char buf[4096];
    const char *env = getenv("SPARSIFY_SRC");
    if (env && *env) {
        snprintf(buf, sizeof buf, "%s/tests", env);
        return buf;
    }
    /* otherwise: __FILE__ is relative to the build root (where ninja runs),
     * two levels above this executable (build/tests/check_prune) */
    const char *f = __FILE__;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (f[0] == '/') {
        snprintf(buf, sizeof buf, "%s", f);
    } else {
        ck_assert(n > 0);
        exe[n] = 0;
        for (int k = 0; k < 2; k++)
            *strrchr(exe, '/') = 0;
        size_t el = strlen(exe);
        ck_assert(el + 1 + strlen(f) < sizeof buf);
        memcpy(buf, exe, el);
        buf[el] = '/';
        strcpy(buf + el + 1, f);
    }
    *strrchr(buf, '/') = 0; /* .../tests */
    return buf;
}

static void *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

START_TEST(test_oracle_pytorch)
{
    char dir[] = "/tmp/sp_oracle_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/prune_oracle.py %s", src_dir(), dir);
    ck_assert_msg(system(cmd) == 0, "oracle failed: %s", cmd);
    char path[8192];
    snprintf(path, sizeof path, "%s/cases.txt", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char name[64], scope[16], pat[16];
    double s;
    int nt, ncases = 0;
    while (fscanf(f, " case %63s %15s %15s %lf %d", name, pat, scope, &s, &nt) == 5) {
        sp_pattern p;
        sp_error err = {0};
        ck_assert_int_eq(sp_pattern_parse(&p, pat, &err), SP_OK);
        int ndims[8];
        int64_t shapes[8][4];
        float *ws[8];
        uint8_t *refm[8], *mine[8];
        size_t ns[8];
        ck_assert_int_le(nt, 8);
        for (int t = 0; t < nt; t++) {
            ck_assert_int_eq(fscanf(f, " tensor %d", &ndims[t]), 1);
            for (int d = 0; d < ndims[t]; d++)
                ck_assert_int_eq(fscanf(f, " %ld", (long *)&shapes[t][d]), 1);
            ns[t] = numel_of(ndims[t], shapes[t]);
            size_t len;
            snprintf(path, sizeof path, "%s/%s.%d.w", dir, name, t);
            ws[t] = read_all(path, &len);
            ck_assert_uint_eq(len, ns[t] * 4);
            snprintf(path, sizeof path, "%s/%s.%d.m", dir, name, t);
            refm[t] = read_all(path, &len);
            ck_assert_uint_eq(len, ns[t]);
            mine[t] = malloc(ns[t]);
        }
        if (!strcmp(scope, "global")) {
            sp_global *g;
            ck_assert_int_eq(sp_global_new(&g, &p, s, SP_BLOCK_SCORE_L1, (size_t)nt, &err), SP_OK);
            for (int pass = 1; pass <= 2; pass++)
                for (int t = 0; t < nt; t++)
                    ck_assert_int_eq(sp_global_add(g, pass, (size_t)t, SP_F32, ws[t], NULL,
                                                   ndims[t], shapes[t], &err),
                                     SP_OK);
            for (int t = 0; t < nt; t++)
                ck_assert_int_eq(sp_global_mask(g, (size_t)t, mine[t], SP_F32, ws[t], NULL,
                                                ndims[t], shapes[t], &err),
                                 SP_OK);
            sp_global_free(g);
        } else {
            sp_block_score bs = !strcmp(scope, "layer_l2") ? SP_BLOCK_SCORE_L2 : SP_BLOCK_SCORE_L1;
            for (int t = 0; t < nt; t++)
                ck_assert_int_eq(sp_mask_select(mine[t], SP_F32, ws[t], NULL, ndims[t], shapes[t],
                                                &p, s, bs, &err),
                                 SP_OK);
        }
        for (int t = 0; t < nt; t++) {
            size_t diff = 0;
            for (size_t i = 0; i < ns[t]; i++)
                diff += mine[t][i] != refm[t][i];
            ck_assert_msg(diff == 0, "case %s tensor %d: %zu of %zu mask entries differ from PyTorch",
                          name, t, diff, ns[t]);
            free(ws[t]);
            free(refm[t]);
            free(mine[t]);
        }
        ncases++;
    }
    fclose(f);
    ck_assert_int_ge(ncases, 8);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* ---- 16-bit selection: histogram cut, ukernels, huge tensors */

/* 16-bit values full of ties: +0 and -0, subnormals, a few normals, each
 * with either sign (bits, so both dtypes get exact subnormals). */
static void fill_ties16(uint16_t *h, size_t n, sp_dtype t, uint64_t seed)
{
    static const uint16_t f16pool[] = {0x0000, 0x0001, 0x0002, 0x03ff, 0x0400,
                                       0x2e66, 0x3c00, 0x3c01, 0x7bff};
    static const uint16_t bfpool[] = {0x0000, 0x0001, 0x007f, 0x0080, 0x3c23,
                                      0x3f80, 0x3f81, 0x7f7f};
    const uint16_t *pool = t == SP_F16 ? f16pool : bfpool;
    size_t np = t == SP_F16 ? sizeof f16pool / 2 : sizeof bfpool / 2;
    rng_seed(seed);
    for (size_t i = 0; i < n; i++)
        h[i] = (uint16_t)(pool[rng_u64() % np] | ((rng_u64() & 1) << 15));
}

START_TEST(test_select16_ties)
{
    const sp_dtype dts[] = {SP_F16, SP_BF16};
    const double ss[] = {0.0, 0.05, 0.3, 0.5, 0.61, 0.9, 0.999, 1.0};
    int64_t shape[] = {96, 130};
    const size_t n = 96 * 130;
    uint16_t *src = malloc(n * 2), *dst = malloc(n * 2), *exp = malloc(n * 2);
    uint8_t *ref = malloc(n), *m = malloc(n);
    sp_pattern un = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    sp_error err = {0};
    for (int d = 0; d < 2; d++)
        for (uint64_t seed = 1; seed <= 2; seed++)
            for (size_t k = 0; k < sizeof ss / sizeof ss[0]; k++) {
                fill_ties16(src, n, dts[d], seed * 10 + (uint64_t)d);
                /* the reference sorts (|w| as a double, flat index) */
                ref_unstructured(ref, dts[d], src, NULL, n, ss[k]);
                sp__prune_stats want;
                expect_apply(exp, &want, dts[d], src, ref, n);
                ck_assert_int_eq(sp_mask_select(m, dts[d], src, NULL, 2, shape, &un, ss[k], 0, &err),
                                 SP_OK);
                ck_assert_msg(!memcmp(m, ref, n), "mask %s s=%g", sp_dtype_name(dts[d]), ss[k]);
                /* the histogram plan, applied in chunks of random length */
                sp__tplan pl;
                ck_assert_int_eq(sp__tplan_init(&pl, src, dts[d], 2, shape, &un, ss[k], 0, &err), SP_OK);
                ck_assert_int_eq(pl.mode, SP__TP_CUT);
                uint64_t za = 0, zb = 0;
                for (size_t e0 = 0; e0 < n;) {
                    size_t e1 = e0 + 1 + (size_t)(rng_u64() % 3000);
                    if (e1 > n)
                        e1 = n;
                    sp__prune_stats st;
                    ck_assert_int_eq(sp__tplan_apply(&pl, dst + e0, src + e0, e0, e1, &st, &err), SP_OK);
                    za += st.zeros_after;
                    zb += st.zeros_before;
                    e0 = e1;
                }
                sp__tplan_release(&pl);
                ck_assert_msg(!memcmp(dst, exp, n * 2), "%s s=%g", sp_dtype_name(dts[d]), ss[k]);
                ck_assert_uint_eq(za, want.zeros_after);
                ck_assert_uint_eq(zb, want.zeros_before);
            }
    /* NaN (either sign) and Inf are refused by name */
    const uint16_t nan[2][2] = {{0x7e00, 0xfc01}, {0x7fc0, 0xff81}}, inf[2] = {0xfc00, 0x7f80};
    for (int d = 0; d < 2; d++) {
        for (int j = 0; j < 2; j++) {
            fill_ties16(src, n, dts[d], 5);
            src[n - 3] = nan[d][j];
            sp__prune_stats st;
            ck_assert_int_eq(sp__prune_tensor(dst, src, dts[d], 2, shape, &un, 0.5, 0, &st, &err),
                             SP_ERR_INVALID_ARG);
            ck_assert_str_eq(err.msg, "contains NaN");
        }
        src[n - 3] = inf[d];
        sp__prune_stats st;
        ck_assert_int_eq(sp__prune_tensor(dst, src, dts[d], 2, shape, &un, 0.5, 0, &st, &err),
                         SP_ERR_INVALID_ARG);
        ck_assert_str_eq(err.msg, "contains Inf");
    }
    free(src);
    free(dst);
    free(exp);
    free(ref);
    free(m);
}
END_TEST

/* N:M reference on raw keys (any width): per group of m from a row's
 * start, keep the n largest keys, the earlier first among equals; a tail
 * of t < m keeps min(n, t). Pruned -> 0 bits, kept copied. */
static void ref_nm_bits(void *dst, const void *src, size_t es, size_t rows, size_t cols, int n,
                        int m)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t c0 = 0; c0 < cols; c0 += (size_t)m) {
            size_t t = cols - c0 < (size_t)m ? cols - c0 : (size_t)m;
            uint64_t key[256];
            for (size_t a = 0; a < t; a++) {
                uint64_t u = 0;
                memcpy(&u, (const char *)src + (r * cols + c0 + a) * es, es);
                key[a] = u & ((es == 8 ? ~0ull : (1ull << (8 * es)) - 1) >> 1);
            }
            for (size_t a = 0; a < t; a++) {
                size_t rank = 0; /* elements that beat a */
                for (size_t b = 0; b < t; b++)
                    rank += key[b] > key[a] || (key[b] == key[a] && b < a);
                char *o = (char *)dst + (r * cols + c0 + a) * es;
                if (rank < (size_t)n)
                    memcpy(o, (const char *)src + (r * cols + c0 + a) * es, es);
                else
                    memset(o, 0, es);
            }
        }
}

START_TEST(test_ukernels_vs_reference)
{
    size_t nsets;
    const sp_mask_ukernels *const *sets = sp_mask_ukernels_all(&nsets);
    ck_assert_uint_ge(nsets, 1);
    ck_assert_str_eq(sets[0]->isa, "scalar");
    const int nms[][2] = {{2, 4}, {1, 4}, {4, 8}, {3, 7}, {0, 4}, {4, 4}, {5, 16}, {2, 3}};
    const size_t colss[] = {1, 2, 3, 5, 10, 13, 30, 67, 130, 259};
    const size_t rows = 3, maxn = 3 * 259;
    uint16_t *s16 = malloc(maxn * 2), *d16 = malloc(maxn * 2), *r16 = malloc(maxn * 2);
    uint32_t *s32 = malloc(maxn * 4), *d32 = malloc(maxn * 4), *r32 = malloc(maxn * 4);
    uint64_t *s64 = malloc(maxn * 8), *d64 = malloc(maxn * 8), *r64 = malloc(maxn * 8);
    fill_ties16(s16, maxn, SP_BF16, 41);
    for (size_t i = 0; i < maxn; i++) {
        s32[i] = (uint32_t)s16[i] << 16; /* the bf16 values as f32: the same ties */
        double v = sp_dtype_load(SP_BF16, s16, i);
        memcpy(&s64[i], &v, 8);
    }
    for (size_t si = 0; si < nsets; si++) {
        const sp_mask_ukernels *uk = sets[si];
        for (size_t a = 0; a < sizeof nms / sizeof nms[0]; a++)
            for (size_t b = 0; b < sizeof colss / sizeof colss[0]; b++) {
                int n = nms[a][0], m = nms[a][1];
                size_t cols = colss[b], cnt = rows * cols;
                sp_kcount c = {0};
                ref_nm_bits(r16, s16, 2, rows, cols, n, m);
                uk->nm16(d16, s16, rows, cols, n, m, 0x7f80, &c);
                ck_assert_msg(!memcmp(d16, r16, cnt * 2), "%s nm16 %d:%d cols %zu", uk->isa, n, m, cols);
                ck_assert_uint_eq(c.zeros_after, sp_count_zeros(SP_BF16, r16, cnt));
                ck_assert_uint_eq(c.zeros_before, sp_count_zeros(SP_BF16, s16, cnt));
                ck_assert(!c.nan && !c.inf);
                memset(&c, 0, sizeof c);
                ref_nm_bits(r32, s32, 4, rows, cols, n, m);
                uk->nm32(d32, s32, rows, cols, n, m, 0x7f800000u, &c);
                ck_assert_msg(!memcmp(d32, r32, cnt * 4), "%s nm32 %d:%d cols %zu", uk->isa, n, m, cols);
                memset(&c, 0, sizeof c);
                ref_nm_bits(r64, s64, 8, rows, cols, n, m);
                uk->nm64(d64, s64, rows, cols, n, m, 0x7ff0000000000000ull, &c);
                ck_assert_msg(!memcmp(d64, r64, cnt * 8), "%s nm64 %d:%d cols %zu", uk->isa, n, m, cols);
                ck_assert_uint_eq(c.zeros_after, sp_count_zeros(SP_F64, r64, cnt));
            }
        /* cut and count: against the scalar set */
        const sp_mask_ukernels *sc = sets[0];
        for (size_t split = 0; split <= maxn; split += 97) {
            uint32_t lo = (uint32_t)(s16[split % maxn] & 0x7fff), hi = lo + 1;
            sp_kcount c1 = {0}, c2 = {0};
            sc->cut16(r16, s16, maxn, split, lo, hi, &c1);
            uk->cut16(d16, s16, maxn, split, lo, hi, &c2);
            ck_assert_msg(!memcmp(d16, r16, maxn * 2), "%s cut16 split %zu", uk->isa, split);
            ck_assert_uint_eq(c1.zeros_after, c2.zeros_after);
            ck_assert_uint_eq(c1.zeros_before, c2.zeros_before);
            ck_assert_uint_eq(!c1.changed, !c2.changed);
            memset(&c1, 0, sizeof c1);
            memset(&c2, 0, sizeof c2);
            sc->cut32(r32, s32, maxn, split, (uint64_t)lo << 16, (uint64_t)hi << 16, &c1);
            uk->cut32(d32, s32, maxn, split, (uint64_t)lo << 16, (uint64_t)hi << 16, &c2);
            ck_assert_msg(!memcmp(d32, r32, maxn * 4), "%s cut32 split %zu", uk->isa, split);
            ck_assert_uint_eq(c1.zeros_after, c2.zeros_after);
            size_t len = maxn - split % 200;
            ck_assert_uint_eq(uk->count_eq16(s16, len, (uint16_t)lo), sc->count_eq16(s16, len, (uint16_t)lo));
            ck_assert_uint_eq(uk->count_eq32(s32, len, lo << 16), sc->count_eq32(s32, len, lo << 16));
        }
        /* block scores: the same bits of every double sum, every dtype */
        const int dts[] = {SP_F16, SP_BF16, SP_F32, SP_F64};
        const void *srcs[] = {s16, s16, s32, s64};
        for (int d = 0; d < 4; d++)
            for (size_t bc = 1; bc <= 9; bc += 2)
                for (int l2 = 0; l2 < 2; l2++) {
                    double sum1[300] = {0}, sum2[300] = {0};
                    uint64_t nnz1[300] = {0}, nnz2[300] = {0};
                    sp_kcount c1 = {0}, c2 = {0};
                    sc->blockscore(srcs[d], dts[d], 259, bc, l2, sum1, nnz1, &c1);
                    uk->blockscore(srcs[d], dts[d], 259, bc, l2, sum2, nnz2, &c2);
                    ck_assert_msg(!memcmp(sum1, sum2, sizeof sum1), "%s blockscore dt %d bc %zu",
                                  uk->isa, dts[d], bc);
                    ck_assert(!memcmp(nnz1, nnz2, sizeof nnz1));
                    uint8_t keep[300];
                    for (size_t j = 0; j < 300; j++)
                        keep[j] = (uint8_t)((j * 7 + bc) % 3 != 0);
                    size_t es = d < 2 ? 2 : d == 2 ? 4 : 8;
                    char o1[259 * 8], o2[259 * 8];
                    memset(&c1, 0, sizeof c1);
                    memset(&c2, 0, sizeof c2);
                    sc->blockapply(o1, srcs[d], es, 259, bc, keep, &c1);
                    uk->blockapply(o2, srcs[d], es, 259, bc, keep, &c2);
                    ck_assert(!memcmp(o1, o2, 259 * es));
                    ck_assert_uint_eq(c1.zeros_after, c2.zeros_after);
                }
    }
    /* NaN found by N:M as it goes */
    sp_kcount c = {0};
    s16[7] = 0x7fc1;
    sets[nsets - 1]->nm16(d16, s16, 1, 16, 2, 4, 0x7f80, &c);
    ck_assert(c.nan);
    free(s16);
    free(d16);
    free(r16);
    free(s32);
    free(d32);
    free(r32);
    free(s64);
    free(d64);
    free(r64);
}
END_TEST

START_TEST(test_nm16_tails)
{
    /* whole tensors through the plan, 16-bit, rows with tail groups */
    const sp_dtype dts[] = {SP_F16, SP_BF16};
    const char *pats[] = {"2:4", "1:4", "4:8", "3:7", "2:16"};
    int64_t shape[] = {11, 37};
    const size_t n = 11 * 37;
    uint16_t src[11 * 37], dst[11 * 37], exp[11 * 37];
    sp_error err = {0};
    for (int d = 0; d < 2; d++)
        for (size_t k = 0; k < 5; k++) {
            sp_pattern p;
            ck_assert_int_eq(sp_pattern_parse(&p, pats[k], &err), SP_OK);
            fill_ties16(src, n, dts[d], 60 + k);
            ref_nm_bits(exp, src, 2, 11, 37, p.n, p.m);
            sp__prune_stats st;
            ck_assert_int_eq(sp__prune_tensor(dst, src, dts[d], 2, shape, &p, 0, 0, &st, &err), SP_OK);
            ck_assert_msg(!memcmp(dst, exp, sizeof dst), "%s %s", sp_dtype_name(dts[d]), pats[k]);
            ck_assert_uint_eq(st.zeros_after, sp_count_zeros(dts[d], exp, n));
            /* the mask path gives the same */
            uint8_t m[11 * 37];
            ck_assert_int_eq(sp_mask_select(m, dts[d], src, NULL, 2, shape, &p, 0, 0, &err), SP_OK);
            for (size_t i = 0; i < n; i++)
                ck_assert_int_eq(m[i] ? src[i] : 0, exp[i]);
        }
}
END_TEST

typedef struct { uint16_t key; size_t idx; } u16ref;
static int u16ref_cmp(const void *a, const void *b)
{
    const u16ref *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

START_TEST(test_select16_huge)
{
    /* 2^31 + 8192 bf16 elements, untouched pages (all zeros) but for 4096
     * values around index 2^31: the histogram, the tie scan and the cut
     * run at that size; only the pages written take memory. */
    const size_t n = ((size_t)1 << 31) + 8192, base = ((size_t)1 << 31) - 2048, nv = 4096;
    uint16_t *w = mmap(NULL, n * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
    ck_assert(w != MAP_FAILED);
    static const uint16_t pool[] = {0x3c23, 0x3f80, 0x0001, 0x3f81, 0x3c24};
    rng_seed(99);
    for (size_t j = 0; j < nv; j++)
        w[base + j] = (uint16_t)(pool[rng_u64() % 5] | ((rng_u64() & 1) << 15));
    uint64_t *h = calloc(32768, sizeof *h);
    sp_error err = {0};
    ck_assert_int_eq(sp__hist16(w, n, h, &err), SP_OK);
    ck_assert_uint_eq(h[0], n - nv);
    uint64_t tot = 0;
    for (size_t b = 0; b < 32768; b++)
        tot += h[b];
    ck_assert_uint_eq(tot, n);
    /* the last element of key 0x3f80 lies past 2^31 */
    size_t last = 0, cnt = 0;
    for (size_t j = 0; j < nv; j++)
        if ((w[base + j] & 0x7fff) == 0x3f80) {
            last = base + j;
            cnt++;
        }
    ck_assert_uint_gt(last, (size_t)1 << 31);
    ck_assert_uint_eq(h[0x3f80], cnt);
    ck_assert_uint_eq(sp__nth_equal(sp_mask_ukernels_get(), w, 2, n, 0x3f80, cnt), last);
    /* prune every zero and 2500 of the values: the plan's cut over the
     * 4096 values is the reference's (key, index) order */
    const size_t kv = 2500;
    double s = ((double)(n - nv + kv) + 0.25) / (double)n;
    ck_assert_uint_eq(sp__round_count(s, n), n - nv + kv);
    int64_t shape[] = {(int64_t)n};
    sp_pattern un = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    sp__tplan pl;
    ck_assert_int_eq(sp__tplan_init(&pl, w, SP_BF16, 1, shape, &un, s, 0, &err), SP_OK);
    ck_assert_int_eq(pl.mode, SP__TP_CUT);
    uint16_t out[4096];
    sp__prune_stats st;
    ck_assert_int_eq(sp__tplan_apply(&pl, out, w + base, base, base + nv, &st, &err), SP_OK);
    sp__tplan_release(&pl);
    u16ref *r = malloc(nv * sizeof *r);
    for (size_t j = 0; j < nv; j++) {
        r[j].key = (uint16_t)(w[base + j] & 0x7fff);
        r[j].idx = j;
    }
    qsort(r, nv, sizeof *r, u16ref_cmp);
    uint16_t want[4096];
    memcpy(want, w + base, sizeof want);
    for (size_t j = 0; j < kv; j++)
        want[r[j].idx] = 0;
    ck_assert(!memcmp(out, want, sizeof want));
    ck_assert_uint_eq(st.zeros_after, kv);
    free(r);
    free(h);
    munmap(w, n * 2);
}
END_TEST

/* ---- wanda scores and per-row selection */

START_TEST(test_wanda_scores)
{
    sp_error err = {0};
    /* Linear [3, 4]: score = |w| * norm[column], in float32 */
    const float w[12] = {1, -2, 0.5f, 0, -1.5f, 3, 0.25f, -0.75f, 2, -2, 1, 8};
    const float nrm[4] = {2, 0.5f, 0, 3.25f};
    const int64_t shape[2] = {3, 4};
    float sc[12];
    ck_assert_int_eq(sp_wanda_scores(sc, SP_F32, w, 2, shape, nrm, 4, &err), SP_OK);
    for (int i = 0; i < 12; i++)
        ck_assert_float_eq(sc[i], fabsf(w[i]) * nrm[i % 4]);
    /* one norm per (row, column) */
    float nr2[12];
    for (int i = 0; i < 12; i++)
        nr2[i] = 0.5f * (float)i;
    ck_assert_int_eq(sp_wanda_scores(sc, SP_F32, w, 2, shape, nr2, 12, &err), SP_OK);
    for (int i = 0; i < 12; i++)
        ck_assert_float_eq(sc[i], fabsf(w[i]) * nr2[i]);
    /* conv [O=2, I=3, 2, 2]: the feature is the input channel, dim 1 */
    const int64_t cshape[4] = {2, 3, 2, 2};
    float *cw = rand_f32(24, 7), csc[24];
    const float cn[3] = {1.5f, 0.25f, 4};
    ck_assert_int_eq(sp_wanda_scores(csc, SP_F32, cw, 4, cshape, cn, 3, &err), SP_OK);
    for (int o = 0; o < 2; o++)
        for (int i = 0; i < 3; i++)
            for (int k = 0; k < 4; k++) {
                int idx = (o * 3 + i) * 4 + k;
                ck_assert_float_eq(csc[idx], fabsf(cw[idx]) * cn[i]);
            }
    /* grouped conv: [O, I/g] norms, row o's own channels */
    float cn2[6] = {1, 2, 3, 4, 5, 6};
    ck_assert_int_eq(sp_wanda_scores(csc, SP_F32, cw, 4, cshape, cn2, 6, &err), SP_OK);
    for (int o = 0; o < 2; o++)
        for (int i = 0; i < 3; i++)
            for (int k = 0; k < 4; k++) {
                int idx = (o * 3 + i) * 4 + k;
                ck_assert_float_eq(csc[idx], fabsf(cw[idx]) * cn2[o * 3 + i]);
            }
    free(cw);
    /* f16 and f64 weights */
    uint16_t h[4] = {0x3c00, 0xc000, 0x3800, 0x0000}; /* 1, -2, 0.5, 0 */
    const int64_t hs[2] = {1, 4};
    ck_assert_int_eq(sp_wanda_scores(sc, SP_F16, h, 2, hs, nrm, 4, &err), SP_OK);
    ck_assert_float_eq(sc[0], 2.0f);
    ck_assert_float_eq(sc[1], 1.0f);
    ck_assert_float_eq(sc[2], 0.0f);
    ck_assert_float_eq(sc[3], 0.0f);
    const double d[4] = {-3, 1, 1, 1};
    ck_assert_int_eq(sp_wanda_scores(sc, SP_F64, d, 2, hs, nrm, 4, &err), SP_OK);
    ck_assert_float_eq(sc[0], 6.0f);
    /* a NaN weight scores 0: selection reports the NaN itself */
    float wn[4] = {1, NAN, 2, 3};
    uint8_t mask[4];
    ck_assert_int_eq(sp_wanda_scores(sc, SP_F32, wn, 2, hs, nrm, 4, &err), SP_OK);
    ck_assert_float_eq(sc[1], 0.0f);
    sp_pattern un = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    ck_assert_int_eq(sp_mask_select(mask, SP_F32, wn, sc, 2, hs, &un, 0.5, SP_BLOCK_SCORE_L1, &err),
                     SP_ERR_INVALID_ARG);
    ck_assert_msg(strstr(err.msg, "contains NaN"), "%s", err.msg);
    /* bad norms */
    ck_assert_int_eq(sp_wanda_scores(sc, SP_F32, w, 2, shape, nrm, 3, &err), SP_ERR_INVALID_ARG);
    ck_assert_msg(strstr(err.msg, "3 values, expected 4"), "%s", err.msg);
    const float neg[4] = {1, -1, 1, 1}, nan4[4] = {1, 1, NAN, 1}, inf4[4] = {INFINITY, 1, 1, 1};
    ck_assert_int_eq(sp_wanda_scores(sc, SP_F32, w, 2, shape, neg, 4, &err), SP_ERR_INVALID_ARG);
    ck_assert_msg(strstr(err.msg, "norm 1 is -1"), "%s", err.msg);
    ck_assert_int_eq(sp_wanda_scores(sc, SP_F32, w, 2, shape, nan4, 4, &err), SP_ERR_INVALID_ARG);
    ck_assert_int_eq(sp_wanda_scores(sc, SP_F32, w, 2, shape, inf4, 4, &err), SP_ERR_INVALID_ARG);
    const int32_t iw[4] = {1, 2, 3, 4};
    ck_assert_int_eq(sp_wanda_scores(sc, SP_I32, iw, 2, hs, nrm, 4, &err), SP_ERR_UNSUPPORTED);
}
END_TEST

/* Per-row selection against the brute-force reference run on each row. */
static void check_rows(int ndim, const int64_t *shape, double s, uint64_t seed, bool ties,
                       bool with_zeros)
{
    sp_error err = {0};
    size_t n = numel_of(ndim, shape);
    size_t rows = ndim >= 2 ? (size_t)shape[0] : 1, len = n / rows;
    float *w = rand_f32(n, seed), *sc = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        if (ties)
            w[i] = roundf(w[i] * 2) / 2; /* few distinct values */
        if (with_zeros && i % 5 == 0)
            w[i] = 0;
        sc[i] = fabsf(w[i]) * (float)(1 + (i % len) % 3); /* norms 1, 2, 3, ... */
    }
    uint8_t *mask = malloc(n), *ref = malloc(n);
    ck_assert_int_eq(sp_mask_select_rows(mask, SP_F32, w, sc, ndim, shape, s, &err), SP_OK);
    const size_t k = ref_round(s, n); /* the tensor's count, spread over the rows */
    for (size_t r = 0; r < rows; r++) {
        const size_t kr = k / rows + (r < k % rows);
        ref_unstructured(ref + r * len, SP_F32, w + r * len, sc + r * len, len,
                         (double)kr / (double)len);
        size_t zeros = 0;
        for (size_t i = 0; i < len; i++)
            zeros += w[r * len + i] == 0;
        ck_assert_uint_eq(count_pruned(mask + r * len, len), kr > zeros ? kr : zeros);
    }
    size_t nzw = 0;
    for (size_t i = 0; i < n; i++)
        nzw += w[i] == 0;
    if (nzw == 0)
        ck_assert_uint_eq(count_pruned(mask, n), k);
    ck_assert_msg(!memcmp(mask, ref, n), "rows mask differs (s=%g, seed %llu)", s,
                  (unsigned long long)seed);
    free(w);
    free(sc);
    free(mask);
    free(ref);
}

START_TEST(test_select_rows)
{
    const int64_t lin[2] = {7, 13}, conv[4] = {4, 3, 2, 2}, big[2] = {300, 301}, one[1] = {17};
    const double ss[] = {0, 0.3, 0.5, 0.77, 0.9, 1};
    for (size_t i = 0; i < sizeof ss / sizeof ss[0]; i++) {
        check_rows(2, lin, ss[i], 11 + i, false, false);
        check_rows(2, lin, ss[i], 21 + i, true, false);
        check_rows(2, lin, ss[i], 31 + i, true, true);
        check_rows(4, conv, ss[i], 41 + i, true, false);
        check_rows(2, big, ss[i], 51 + i, true, true); /* parallel rows */
        check_rows(1, one, ss[i], 61 + i, true, false);
    }
    /* 0.74 of 2 rows of 10: 15 in all, 8 from the first row and 7 from the second */
    {
        float w20[20], s20[20];
        for (int i = 0; i < 20; i++)
            w20[i] = s20[i] = (float)(i % 10 + 1);
        const int64_t sh20[2] = {2, 10};
        uint8_t m20[20];
        sp_error e2 = {0};
        ck_assert_int_eq(sp_mask_select_rows(m20, SP_F32, w20, s20, 2, sh20, 0.74, &e2), SP_OK);
        ck_assert_uint_eq(count_pruned(m20, 10), 8);
        ck_assert_uint_eq(count_pruned(m20 + 10, 10), 7);
    }
    /* ties go to the lower index within the row: equal scores everywhere */
    float w[8] = {1, 1, 1, 1, 1, 1, 1, 1}, sc[8] = {2, 2, 2, 2, 2, 2, 2, 2};
    const int64_t shape[2] = {2, 4};
    uint8_t mask[8];
    sp_error err = {0};
    ck_assert_int_eq(sp_mask_select_rows(mask, SP_F32, w, sc, 2, shape, 0.5, &err), SP_OK);
    const uint8_t want[8] = {0, 0, 1, 1, 0, 0, 1, 1};
    ck_assert(!memcmp(mask, want, 8));
    /* errors name the row */
    w[6] = NAN;
    ck_assert_int_eq(sp_mask_select_rows(mask, SP_F32, w, sc, 2, shape, 0.5, &err),
                     SP_ERR_INVALID_ARG);
    ck_assert_msg(strstr(err.msg, "row 1") && strstr(err.msg, "NaN"), "%s", err.msg);
    w[6] = 1;
    ck_assert_int_eq(sp_mask_select_rows(mask, SP_F32, w, sc, 2, shape, 1.5, &err),
                     SP_ERR_INVALID_ARG);
}
END_TEST

static Suite *prune_suite(void)
{
    Suite *s = suite_create("prune");
    struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"pattern_parse", test_pattern_parse},
        {"pattern_str", test_pattern_str},
        {"pattern_implied_sparsity", test_pattern_implied},
        {"wgeom_init", test_wgeom_init},
        {"mask_select_unstructured", test_select_unstructured_exact},
        {"mask_select_large", test_select_large_parallel},
        {"mask_select_ties", test_select_ties},
        {"mask_select_existing_zeros", test_select_existing_zeros},
        {"mask_select_scores", test_select_scores},
        {"mask_select_nonfinite", test_select_nonfinite},
        {"mask_select_dtypes", test_select_dtypes},
        {"mask_select_blocks", test_select_blocks},
        {"mask_select_blocks_conv", test_select_blocks_conv},
        {"mask_select_nm", test_select_nm},
        {"mask_select_nm_conv", test_select_nm_conv},
        {"wanda_scores", test_wanda_scores},
        {"mask_select_rows", test_select_rows},
        {"mask_apply", test_mask_apply},
        {"count_zeros", test_count_zeros},
        {"global", test_global},
        {"global_blocks_errors", test_global_blocks_and_errors},
        {"prune_tensor_fused", test_prune_tensor_fused},
        {"global_apply", test_global_apply},
        {"mask_check", test_mask_check},
        {"select_default", test_select_default},
        {"regex_python_syntax", test_regex_python_syntax},
        {"regex_limits", test_regex_limits},
        {"selector_init", test_selector_init},
        {"selector_match", test_selector_match},
        {"selector_release", test_selector_release},
        {"oracle_pytorch", test_oracle_pytorch},
        {"select16_ties", test_select16_ties},
        {"ukernels_vs_reference", test_ukernels_vs_reference},
        {"nm16_tails", test_nm16_tails},
        {"select16_huge", test_select16_huge},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].fn);
        if (cases[i].fn == test_select16_huge)
            tcase_set_timeout(tc, 300); /* reads 4 GiB of untouched pages twice */
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(prune_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
