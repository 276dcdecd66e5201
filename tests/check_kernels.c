/*
 * tests/check_kernels.c — every ukernel of kernels/f32-spmm.inc against its
 * scalar reference and against a double-precision dense product, over the
 * edge cases: m below and above the register tile, n not a multiple of the
 * vector width (1, 3, 17, 64, 65), ragged k for blocks and N:M, sparsity 0,
 * 0.5, 0.9, 0.99 and 1, all-zero rows, bias on and off, padded leading
 * dimensions, and row ranges split in two. ISA variants this CPU cannot run
 * are not called; the test prints that they were skipped.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ukernels.h"
#include "sparsify/kernels.h"

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static float rndf(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
static double rndu(void) { return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0); }

static sp_pattern pat(const char *text)
{
    sp_pattern p;
    sp_error err = {0};
    ck_assert_msg(sp_pattern_parse(&p, text, &err) == SP_OK, "%s", err.msg);
    return p;
}

/* A masked random weight that fits the pattern; rows 0 and m/2 all zero. */
static float *make_weight(size_t m, size_t k, const sp_pattern *p, double sparsity)
{
    float *w = malloc(m * k * sizeof(float) + 1);
    for (size_t i = 0; i < m * k; i++) {
        w[i] = rndf();
        if (w[i] == 0.0f)
            w[i] = 0.25f;
    }
    if (!p || p->kind == SP_PATTERN_UNSTRUCTURED) {
        for (size_t i = 0; i < m * k; i++)
            if (rndu() < sparsity)
                w[i] = 0;
    } else if (p->kind == SP_PATTERN_BLOCK) {
        const size_t br = (size_t)p->r, bc = (size_t)p->c;
        for (size_t i = 0; i < m; i += br)
            for (size_t j = 0; j < k; j += bc)
                if (rndu() < sparsity)
                    for (size_t r = i; r < m && r < i + br; r++)
                        for (size_t c = j; c < k && c < j + bc; c++)
                            w[r * k + c] = 0;
    } else {
        const size_t gm = (size_t)p->m;
        for (size_t r = 0; r < m; r++)
            for (size_t g = 0; g < k; g += gm) {
                /* keep a random number <= n of the group */
                size_t keep = sparsity >= 1.0 ? 0 : rnd() % ((size_t)p->n + 1);
                if (sparsity == 0.0)
                    keep = (size_t)p->n;
                size_t len = k - g < gm ? k - g : gm, kept = 0;
                for (size_t c = 0; c < len; c++) {
                    const bool want = kept < keep && rnd() % (len - c) < keep - kept;
                    if (want)
                        kept++;
                    else
                        w[r * k + g + c] = 0;
                }
            }
    }
    if (m > 0)
        memset(w, 0, k * sizeof(float));
    if (m > 2)
        memset(w + (m / 2) * k, 0, k * sizeof(float));
    return w;
}

static bool close_to(float got, double want, double scale)
{
    return fabs((double)got - want) <= 1e-5 * scale + 1e-6;
}

static const int nvals[] = {1, 3, 17, 64, 65};
static const double sparsities[] = {0.0, 0.5, 0.9, 0.99, 1.0};

typedef struct counts {
    size_t runs, skipped_isa;
} counts;

/*
 * Run every ukernel of w's layout on (m, k, n): Y against the scalar
 * reference and the double-precision dense product; padding columns of Y
 * must stay untouched; the row range is also run split in two.
 */
static void check_all_kernels(const sp_spmat *s, const float *w, size_t n, bool bias_on,
                              counts *cnt)
{
    const size_t m = s->rows, k = s->cols, ldx = n + 3, ldy = n + 5;
    float *x = malloc((k * ldx + 1) * sizeof(float));
    float *y = malloc((m * ldy + 1) * sizeof(float));
    float *yref = malloc((m * ldy + 1) * sizeof(float));
    double *dref = malloc((m * n + 1) * sizeof(double));
    double *scale = malloc((m * n + 1) * sizeof(double));
    float *bias = malloc((m + 1) * sizeof(float));
    for (size_t i = 0; i < k * ldx; i++)
        x[i] = rndf();
    for (size_t i = 0; i < m; i++)
        bias[i] = rndf();
    const float *b = bias_on ? bias : NULL;
    for (size_t i = 0; i < m; i++)
        for (size_t c = 0; c < n; c++) {
            double acc = b ? b[i] : 0, sc = b ? fabs(b[i]) : 0;
            for (size_t j = 0; j < k; j++) {
                acc += (double)w[i * k + j] * x[j * ldx + c];
                sc += fabs((double)w[i * k + j] * x[j * ldx + c]);
            }
            dref[i * n + c] = acc;
            scale[i * n + c] = sc;
        }
    const size_t np = s->layout == SP_LAYOUT_BCSR ? s->nbrows : s->rows;
    const sp_ukernel_info *ref = NULL;
    for (size_t i = 0; i < sp_ukernel_count(); i++)
        if (sp_ukernel_at(i)->layout == s->layout && sp_ukernel_at(i)->reference)
            ref = sp_ukernel_at(i);
    ck_assert_ptr_nonnull(ref);
    for (size_t i = 0; i < m * ldy; i++)
        yref[i] = NAN;
    ref->fn(s, 0, np, n, x, ldx, yref, ldy, b);

    for (size_t ki = 0; ki < sp_ukernel_count(); ki++) {
        const sp_ukernel_info *uk = sp_ukernel_at(ki);
        if (uk->layout != s->layout)
            continue;
        if (!sp_isa_supported(uk->isa)) {
            cnt->skipped_isa++;
            continue;
        }
        for (int split = 0; split < 2; split++) {
            for (size_t i = 0; i < m * ldy; i++)
                y[i] = NAN; /* garbage: kernels overwrite Y */
            if (split && np > 1) {
                uk->fn(s, 0, np / 2, n, x, ldx, y, ldy, b);
                uk->fn(s, np / 2, np, n, x, ldx, y, ldy, b);
            } else {
                uk->fn(s, 0, np, n, x, ldx, y, ldy, b);
            }
            cnt->runs++;
            for (size_t i = 0; i < m; i++) {
                for (size_t c = 0; c < n; c++) {
                    const float got = y[i * ldy + c];
                    ck_assert_msg(close_to(got, dref[i * n + c], scale[i * n + c]),
                                  "%s: %zux%zu n=%zu bias=%d y[%zu,%zu] = %g, dense %g",
                                  uk->name, m, k, n, bias_on, i, c, got, dref[i * n + c]);
                    ck_assert_msg(close_to(got, yref[i * ldy + c], scale[i * n + c]),
                                  "%s: %zux%zu n=%zu y[%zu,%zu] = %g, reference %g", uk->name,
                                  m, k, n, i, c, got, yref[i * ldy + c]);
                }
                for (size_t c = n; c < ldy; c++)
                    ck_assert_msg(isnan(y[i * ldy + c]), "%s: wrote padding y[%zu,%zu]",
                                  uk->name, i, c);
            }
        }
    }
    free(x);
    free(y);
    free(yref);
    free(dref);
    free(scale);
    free(bias);
}

static void sweep(const char *pattern, const size_t *ms, size_t nm, const size_t *ks,
                  size_t nk)
{
    sp_pattern p = {0};
    const sp_pattern *pp = NULL;
    if (pattern) {
        p = pat(pattern);
        pp = &p;
    }
    counts cnt = {0};
    for (size_t mi = 0; mi < nm; mi++)
        for (size_t ki = 0; ki < nk; ki++)
            for (size_t si = 0; si < sizeof sparsities / sizeof sparsities[0]; si++) {
                const size_t m = ms[mi], k = ks[ki];
                float *w = make_weight(m, k, pp, sparsities[si]);
                sp_spmat *s = NULL;
                sp_error err = {0};
                ck_assert_msg(sp_spmat_pack(&s, w, m, k, pp, &err) == SP_OK, "%s", err.msg);
                for (size_t ni = 0; ni < sizeof nvals / sizeof nvals[0]; ni++)
                    for (int bias_on = 0; bias_on < 2; bias_on++)
                        check_all_kernels(s, w, (size_t)nvals[ni], bias_on, &cnt);
                sp_spmat_free(s);
                free(w);
            }
    ck_assert_uint_gt(cnt.runs, 0);
    if (cnt.skipped_isa)
        printf("%s: %zu runs of kernels for ISAs this CPU lacks were skipped\n",
               pattern ? pattern : "dense", cnt.skipped_isa);
}

/* m around the 4-row tile and the 16-row blocks; k ragged, and > 128 so
 * that CSR has several K-panels and N:M several panels too. */
static const size_t ms_small[] = {1, 3, 5, 37};
static const size_t ks_ragged[] = {1, 13, 70, 301};

/* ---- sp_isa_* / sp_layout_name ---------------------------------------- */

START_TEST(test_isa)
{
    ck_assert(sp_isa_supported(SP_ISA_SCALAR));
    ck_assert(sp_isa_supported(sp_isa_best()));
    ck_assert_str_eq(sp_isa_name(SP_ISA_AVX512), "avx512");
    ck_assert_str_eq(sp_isa_name(SP_ISA_AVX2), "avx2");
    ck_assert_str_eq(sp_isa_name(SP_ISA_SCALAR), "scalar");
    ck_assert_str_eq(sp_isa_name(SP_ISA_COUNT), "?");
    ck_assert(!sp_isa_supported(SP_ISA_COUNT));
    for (int i = 0; i < SP_ISA_COUNT; i++)
        printf("isa %s: %s\n", sp_isa_name((sp_isa)i),
               sp_isa_supported((sp_isa)i) ? "supported" : "not supported (skipped)");
}
END_TEST

START_TEST(test_layout_name)
{
    ck_assert_str_eq(sp_layout_name(SP_LAYOUT_CSR), "csr");
    ck_assert_str_eq(sp_layout_name(SP_LAYOUT_BCSR), "bcsr");
    ck_assert_str_eq(sp_layout_name(SP_LAYOUT_NM), "nm");
    ck_assert_str_eq(sp_layout_name(SP_LAYOUT_DENSE), "dense");
}
END_TEST

/* ---- registry ---------------------------------------------------------- */

START_TEST(test_registry)
{
    ck_assert_uint_ge(sp_ukernel_count(), 4);
    ck_assert_ptr_null(sp_ukernel_at(sp_ukernel_count()));
    ck_assert_ptr_null(sp_ukernel_find("no_such_kernel"));
    int refs[4] = {0};
    for (size_t i = 0; i < sp_ukernel_count(); i++) {
        const sp_ukernel_info *k = sp_ukernel_at(i);
        ck_assert_ptr_eq(sp_ukernel_find(k->name), k);
        ck_assert_ptr_nonnull(k->fn);
        /* names end in __<isa> */
        const char *tail = strstr(k->name, "__");
        ck_assert_ptr_nonnull(tail);
        ck_assert_str_eq(tail + 2, sp_isa_name(k->isa));
        if (k->reference) {
            ck_assert_int_eq(k->isa, SP_ISA_SCALAR);
            refs[k->layout]++;
        }
    }
    for (int l = 0; l < 4; l++)
        ck_assert_int_eq(refs[l], 1);
}
END_TEST

/* ---- pack / unpack ----------------------------------------------------- */

static void round_trip(const char *pattern, size_t m, size_t k, double sparsity)
{
    sp_pattern p = {0};
    if (pattern)
        p = pat(pattern);
    float *w = make_weight(m, k, pattern ? &p : NULL, sparsity);
    float *back = malloc(m * k * sizeof(float) + 1);
    sp_spmat *s = NULL;
    sp_error err = {0};
    ck_assert_msg(sp_spmat_pack(&s, w, m, k, pattern ? &p : NULL, &err) == SP_OK, "%s",
                  err.msg);
    size_t nnz = 0;
    for (size_t i = 0; i < m * k; i++)
        nnz += w[i] != 0;
    ck_assert_uint_eq(s->nnz, nnz);
    ck_assert_uint_ge(s->nstored, pattern ? nnz : m * k);
    ck_assert_uint_gt(sp_spmat_bytes(s), 0);
    for (size_t i = 0; i < m * k; i++)
        back[i] = 7;
    sp_spmat_unpack(s, back);
    ck_assert_msg(memcmp(w, back, m * k * sizeof(float)) == 0, "%s %zux%zu: unpack differs",
                  pattern ? pattern : "dense", m, k);
    sp_spmat_free(s);
    free(w);
    free(back);
}

START_TEST(test_pack_round_trip)
{
    const char *pats[] = {NULL, "unstructured", "1x4", "4x1", "4x4", "8x8", "16x16",
                          "2x3", "2:4", "1:4", "4:8", "3:7", "2:16"};
    const size_t shapes[][2] = {{1, 1}, {3, 13}, {37, 70}, {20, 301}, {64, 129}};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
        for (size_t j = 0; j < sizeof shapes / sizeof shapes[0]; j++)
            for (size_t si = 0; si < sizeof sparsities / sizeof sparsities[0]; si++)
                round_trip(pats[i], shapes[j][0], shapes[j][1], sparsities[si]);
}
END_TEST

START_TEST(test_pack_layouts)
{
    sp_error err = {0};
    sp_spmat *s = NULL;
    /* 2x8 with a known pattern */
    const float w[16] = {0, 1, 0, 2, 0, 0, 0, 3,
                         4, 0, 0, 0, 0, 5, 6, 0};
    sp_pattern p = pat("unstructured");
    ck_assert_int_eq(sp_spmat_pack(&s, w, 2, 8, &p, &err), SP_OK);
    ck_assert_int_eq(s->layout, SP_LAYOUT_CSR);
    ck_assert_uint_eq(s->nnz, 6);
    ck_assert_uint_eq(s->npanels, 1);
    ck_assert_uint_eq(s->row_ptr[0], 0);
    ck_assert_uint_eq(s->row_ptr[1], 3);
    ck_assert_uint_eq(s->row_ptr[2], 6);
    ck_assert_uint_eq(s->col_idx[2], 7);
    ck_assert_float_eq(s->values[3], 4);
    sp_spmat_free(s);

    p = pat("2:4");
    ck_assert_int_eq(sp_spmat_pack(&s, w, 2, 8, &p, &err), SP_OK);
    ck_assert_int_eq(s->layout, SP_LAYOUT_NM);
    ck_assert_int_eq(s->nm_bits, 2);
    ck_assert_uint_eq(s->nm_groups, 2);
    ck_assert_uint_eq(s->nm_stride, 1); /* 4 slots x 2 bits: one byte per row */
    /* row 0: group 0 keeps cols 1, 3; group 1 keeps col 7 (slot 2), slot 3 empty */
    ck_assert_float_eq(s->values[0], 1);
    ck_assert_float_eq(s->values[1], 2);
    ck_assert_float_eq(s->values[2], 3);
    ck_assert_float_eq(s->values[3], 0);
    ck_assert_uint_eq(s->nm_idx[0], (1u << 0) | (3u << 2) | (3u << 4) | (0u << 6));
    sp_spmat_free(s);

    p = pat("1:4"); /* group 0 of row 0 has two nonzeros */
    ck_assert_int_eq(sp_spmat_pack(&s, w, 2, 8, &p, &err), SP_ERR_INVALID_ARG);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(err.msg, "row 0"));

    p = pat("2x4");
    ck_assert_int_eq(sp_spmat_pack(&s, w, 2, 8, &p, &err), SP_OK);
    ck_assert_int_eq(s->layout, SP_LAYOUT_BCSR);
    ck_assert_uint_eq(s->nblocks, 2);
    ck_assert_uint_eq(s->nstored, 16);
    sp_spmat_free(s);

    /* more than 65536 columns cannot be indexed with 16 bits */
    float *wide = calloc(65537, sizeof(float));
    p = pat("unstructured");
    ck_assert_int_eq(sp_spmat_pack(&s, wide, 1, 65537, &p, &err), SP_ERR_UNSUPPORTED);
    ck_assert_int_eq(sp_spmat_pack(&s, wide, 1, 65537, NULL, &err), SP_OK);
    sp_spmat_free(s);
    free(wide);
    sp_spmat_free(NULL);
}
END_TEST

/* ---- every kernel against the reference -------------------------------- */

START_TEST(test_kernels_csr)
{
    sweep("unstructured", ms_small, 4, ks_ragged, 4);
}
END_TEST

START_TEST(test_kernels_bcsr)
{
    const char *pats[] = {"1x4", "4x1", "4x4", "8x8", "16x16", "2x3", "5x1"};
    const size_t ms[] = {1, 5, 37};
    const size_t ks[] = {13, 70, 301};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
        sweep(pats[i], ms, 3, ks, 3);
}
END_TEST

START_TEST(test_kernels_nm)
{
    const char *pats[] = {"2:4", "1:4", "4:8", "3:7", "2:16"};
    const size_t ms[] = {1, 5, 37};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
        sweep(pats[i], ms, 3, ks_ragged, 4);
}
END_TEST

START_TEST(test_kernels_dense)
{
    const size_t ms[] = {1, 3, 5, 37};
    const size_t ks[] = {1, 13, 70};
    sweep(NULL, ms, 4, ks, 3);
}
END_TEST

/* ---- plans ------------------------------------------------------------- */

static double plan_max_err(const sp_spmat *s, const float *w, size_t n,
                           const sp_spmm_opts *o, const char **kernel)
{
    const size_t m = s->rows, k = s->cols;
    float *x = malloc(k * n * sizeof(float) + 4), *y = malloc(m * n * sizeof(float) + 4);
    float *bias = malloc(m * sizeof(float) + 4);
    for (size_t i = 0; i < k * n; i++)
        x[i] = rndf();
    for (size_t i = 0; i < m; i++)
        bias[i] = rndf();
    sp_spmm_plan *p = NULL;
    sp_error err = {0};
    ck_assert_msg(sp_spmm_plan_new(&p, s, n, o, &err) == SP_OK, "%s", err.msg);
    *kernel = sp_spmm_plan_kernel(p);
    ck_assert_int_eq(sp_spmm_plan_run(p, x, n, y, n, bias, &err), SP_OK);
    double worst = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t c = 0; c < n; c++) {
            double acc = bias[i], sc = fabs(bias[i]);
            for (size_t j = 0; j < k; j++) {
                acc += (double)w[i * k + j] * x[j * n + c];
                sc += fabs((double)w[i * k + j] * x[j * n + c]);
            }
            const double e = fabs(y[i * n + c] - acc) / (sc + 1e-6);
            if (e > worst)
                worst = e;
        }
    sp_spmm_plan_free(p);
    free(x);
    free(y);
    free(bias);
    return worst;
}

static void fake_dense(void *ctx, size_t m, size_t n, size_t k, const float *w,
                       const float *x, size_t ldx, float *y, size_t ldy, int threads)
{
    (*(int *)ctx)++;
    ck_assert_int_ge(threads, 1);
    for (size_t i = 0; i < m; i++)
        for (size_t c = 0; c < n; c++) {
            float acc = 0;
            for (size_t j = 0; j < k; j++)
                acc += w[i * k + j] * x[j * ldx + c];
            y[i * ldy + c] = acc;
        }
}

START_TEST(test_plan_new)
{
    sp_pattern p = pat("unstructured");
    float *w = make_weight(100, 300, &p, 0.9);
    sp_spmat *s = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_spmat_pack(&s, w, 100, 300, &p, &err), SP_OK);
    sp_spmm_opts o;
    sp_spmm_opts_init(&o);
    ck_assert_int_eq(o.backend, SP_BACKEND_CPU);
    ck_assert_int_eq(o.fallback, SP_FALLBACK_AUTO);
    sp_spmm_plan *plan = NULL;
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 0, &o, &err), SP_ERR_INVALID_ARG);
    o.backend = SP_BACKEND_CUDA;
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 8, &o, &err), SP_ERR_UNSUPPORTED);
    o.backend = SP_BACKEND_CPU;
    o.kernel = "nope";
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 8, &o, &err), SP_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "nope"));
    o.kernel = "sp_f32_spmm_nm_ukernel__scalar";
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 8, &o, &err), SP_ERR_INVALID_ARG);
    o.kernel = NULL;
    o.threads = -1;
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 8, &o, &err), SP_ERR_INVALID_ARG);
    ck_assert_ptr_null(plan);

    /* automatic choice: best ISA; SpMV kernel for n == 1 */
    o.threads = 2;
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 1, &o, &err), SP_OK);
    const sp_ukernel_info *k = sp_ukernel_find(sp_spmm_plan_kernel(plan));
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(k->isa, sp_isa_best());
    if (sp_isa_best() > SP_ISA_SCALAR)
        ck_assert(k->spmv);
    ck_assert(!sp_spmm_plan_is_dense(plan));
    ck_assert_int_eq(sp_spmm_plan_threads(plan), 2);
    sp_spmm_plan_free(plan);
    sp_spmm_plan_free(NULL);

    /* the ISA cap is obeyed */
    o.max_isa = SP_ISA_SCALAR;
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 64, &o, &err), SP_OK);
    ck_assert_str_eq(sp_spmm_plan_kernel(plan), "sp_f32_spmm_csr_ukernel__scalar");
    sp_spmm_plan_free(plan);
    sp_spmat_free(s);
    free(w);

    /* auto fallback: a dense-ish weight goes to the caller's dense product */
    w = make_weight(64, 64, &p, 0.0);
    ck_assert_int_eq(sp_spmat_pack(&s, w, 64, 64, &p, &err), SP_OK);
    int calls = 0;
    sp_spmm_opts_init(&o);
    o.dense = fake_dense;
    o.dense_ctx = &calls;
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 16, &o, &err), SP_OK);
    ck_assert(sp_spmm_plan_is_dense(plan));
    ck_assert_str_eq(sp_spmm_plan_kernel(plan), "dense-fallback");
    sp_spmm_plan_free(plan);
    o.fallback = SP_FALLBACK_NEVER;
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 16, &o, &err), SP_OK);
    ck_assert(!sp_spmm_plan_is_dense(plan));
    sp_spmm_plan_free(plan);
    o.fallback = SP_FALLBACK_MEASURE;
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 16, &o, &err), SP_OK);
    ck_assert_int_gt(calls, 0); /* it timed the dense side */
    sp_spmm_plan_free(plan);
    sp_spmat_free(s);
    free(w);
}
END_TEST

START_TEST(test_plan_run)
{
    const char *pats[] = {"unstructured", "4x1", "8x8", "2:4"};
    const double sps[] = {0.0, 0.9, 1.0};
    const size_t ns[] = {1, 17, 64, 65};
    int calls = 0;
    for (size_t pi = 0; pi < 4; pi++)
        for (size_t si = 0; si < 3; si++)
            for (size_t ni = 0; ni < 4; ni++)
                for (int fb = 0; fb < 3; fb++) {
                    sp_pattern p = pat(pats[pi]);
                    float *w = make_weight(203, 301, &p, sps[si]);
                    sp_spmat *s = NULL;
                    sp_error err = {0};
                    ck_assert_int_eq(sp_spmat_pack(&s, w, 203, 301, &p, &err), SP_OK);
                    sp_spmm_opts o;
                    sp_spmm_opts_init(&o);
                    o.threads = 2;
                    o.fallback = fb == 0 ? SP_FALLBACK_NEVER : SP_FALLBACK_ALWAYS;
                    if (fb == 2) {
                        o.dense = fake_dense;
                        o.dense_ctx = &calls;
                    }
                    const char *kname = NULL;
                    const double e = plan_max_err(s, w, ns[ni], &o, &kname);
                    ck_assert_msg(e < 1e-5, "%s s=%g n=%zu fallback=%d (%s): error %g",
                                  pats[pi], sps[si], ns[ni], fb, kname, e);
                    sp_spmat_free(s);
                    free(w);
                }
    ck_assert_int_gt(calls, 0);

    /* argument checks */
    sp_pattern p = pat("unstructured");
    float *w = make_weight(8, 8, &p, 0.5);
    float x[64] = {0}, y[64];
    sp_spmat *s = NULL;
    sp_spmm_plan *plan = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_spmat_pack(&s, w, 8, 8, &p, &err), SP_OK);
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 8, NULL, &err), SP_OK);
    ck_assert_int_eq(sp_spmm_plan_run(plan, NULL, 8, y, 8, NULL, &err), SP_ERR_INVALID_ARG);
    ck_assert_int_eq(sp_spmm_plan_run(plan, x, 7, y, 8, NULL, &err), SP_ERR_INVALID_ARG);
    ck_assert_int_eq(sp_spmm_plan_run(plan, x, 8, y, 4, NULL, &err), SP_ERR_INVALID_ARG);
    ck_assert_int_eq(sp_spmm_plan_run(plan, x, 8, x, 8, NULL, &err), SP_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "overlap"));
    ck_assert_int_eq(sp_spmm_plan_run(plan, x, 8, y, 8, NULL, &err), SP_OK);
    sp_spmm_plan_free(plan);
    sp_spmat_free(s);
    free(w);
}
END_TEST

START_TEST(test_spmm)
{
    /* every supported ISA through the one-call API, 2 threads, bias */
    const char *pats[] = {"unstructured", "4x4", "2:4"};
    for (int isa = 0; isa < SP_ISA_COUNT; isa++) {
        if (!sp_isa_supported((sp_isa)isa)) {
            printf("spmm: %s not supported here, skipped\n", sp_isa_name((sp_isa)isa));
            continue;
        }
        for (size_t pi = 0; pi < 3; pi++) {
            sp_pattern p = pat(pats[pi]);
            float *w = make_weight(64, 200, &p, 0.8);
            sp_spmat *s = NULL;
            sp_error err = {0};
            ck_assert_int_eq(sp_spmat_pack(&s, w, 64, 200, &p, &err), SP_OK);
            sp_spmm_opts o;
            sp_spmm_opts_init(&o);
            o.threads = 2;
            o.max_isa = (sp_isa)isa;
            o.fallback = SP_FALLBACK_NEVER;
            const size_t n = 33;
            float *x = malloc(200 * n * sizeof(float)), *y = malloc(64 * n * sizeof(float));
            for (size_t i = 0; i < 200 * n; i++)
                x[i] = rndf();
            ck_assert_int_eq(sp_spmm(s, n, x, n, y, n, NULL, &o, &err), SP_OK);
            for (size_t i = 0; i < 64; i++)
                for (size_t c = 0; c < n; c++) {
                    double acc = 0, sc = 0;
                    for (size_t j = 0; j < 200; j++) {
                        acc += (double)w[i * 200 + j] * x[j * n + c];
                        sc += fabs((double)w[i * 200 + j] * x[j * n + c]);
                    }
                    ck_assert(close_to(y[i * n + c], acc, sc));
                }
            ck_assert_int_eq(sp_spmm(s, 0, x, n, y, n, NULL, &o, &err), SP_ERR_INVALID_ARG);
            free(x);
            free(y);
            sp_spmat_free(s);
            free(w);
        }
    }
}
END_TEST

static Suite *kernels_suite(void)
{
    Suite *s = suite_create("kernels");
    struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"sp_isa_supported", test_isa},
        {"sp_layout_name", test_layout_name},
        {"sp_ukernel_find", test_registry},
        {"sp_spmat_unpack", test_pack_round_trip},
        {"sp_spmat_pack", test_pack_layouts},
        {"ukernels_csr", test_kernels_csr},
        {"ukernels_bcsr", test_kernels_bcsr},
        {"ukernels_nm", test_kernels_nm},
        {"ukernels_dense", test_kernels_dense},
        {"sp_spmm_plan_new", test_plan_new},
        {"sp_spmm_plan_run", test_plan_run},
        {"sp_spmm", test_spmm},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    /* Nothing to run only if no kernel at all could run here (never: the
     * scalar references always can), so 77 is unreachable in practice. */
    size_t runnable = 0;
    for (size_t i = 0; i < sp_ukernel_count(); i++)
        runnable += sp_isa_supported(sp_ukernel_at(i)->isa);
    if (!runnable)
        return 77;
    SRunner *sr = srunner_create(kernels_suite());
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
