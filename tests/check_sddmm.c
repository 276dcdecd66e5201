/*
 * tests/check_sddmm.c — what the libtorch operator needs from kernels/ to
 * train a packed weight:
 *   sp_spmat_value_map  for every layout (CSR with several K-panels, BCSR
 *                       with ragged edges and zeros inside kept blocks, N:M
 *                       with empty slots, dense): map[k] points at the k-th
 *                       nonzero in row-major order, and scattering new
 *                       values through it gives the matrix unpack expects;
 *   SDDMM ukernels      every one this CPU runs against the scalar reference
 *                       and a double-precision product: n around the vector
 *                       width and the in-register limit (1..300), rows with
 *                       0..9 samples (tails of the 4-position groups), padded
 *                       leading dimensions, row ranges split in two, and
 *                       nothing written outside the sampled range.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparsify/kernels.h"
#include "sparsify/sddmm.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static float rndf(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
static double rndu(void) { return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0); }

/* ---- sp_spmat_value_map ----------------------------------------------- */

/* A weight that fits `text` at about `sparsity`, never an accidental zero
 * among the kept values except `holes` (zeros inside kept blocks). */
static float *masked_weight(size_t m, size_t k, const char *text, double sparsity, bool holes,
                            sp_pattern *p)
{
    sp_error err = {0};
    ck_assert_msg(sp_pattern_parse(p, text, &err) == SP_OK, "%s", err.msg);
    float *w = malloc(m * k * sizeof(float) + 4);
    for (size_t i = 0; i < m * k; i++)
        w[i] = rndf() + (rnd() & 1 ? 2.0f : -2.0f); /* |w| >= 1: nonzero */
    if (p->kind == SP_PATTERN_UNSTRUCTURED) {
        for (size_t i = 0; i < m * k; i++)
            if (rndu() < sparsity)
                w[i] = 0;
    } else if (p->kind == SP_PATTERN_BLOCK) {
        const size_t br = (size_t)p->r, bc = (size_t)p->c;
        for (size_t i = 0; i < m; i += br)
            for (size_t j = 0; j < k; j += bc) {
                const bool drop = rndu() < sparsity;
                for (size_t r = i; r < m && r < i + br; r++)
                    for (size_t c = j; c < k && c < j + bc; c++)
                        if (drop || (holes && rndu() < 0.2))
                            w[r * k + c] = 0;
            }
    } else {
        const size_t g = (size_t)p->m;
        for (size_t r = 0; r < m; r++)
            for (size_t j = 0; j < k; j += g) {
                /* keep at most n of each group; sometimes fewer (empty slots) */
                size_t kept = 0;
                for (size_t c = j; c < k && c < j + g; c++) {
                    if (kept < (size_t)p->n && rndu() < 0.6)
                        kept++;
                    else
                        w[r * k + c] = 0;
                }
            }
    }
    return w;
}

static void check_map(size_t m, size_t k, const char *text, double sparsity, bool holes)
{
    sp_pattern p;
    float *w = masked_weight(m, k, text, sparsity, holes, &p);
    sp_spmat *s = NULL;
    sp_error err = {0};
    ck_assert_msg(sp_spmat_pack(&s, w, m, k, &p, &err) == SP_OK, "%s: %s", text, err.msg);
    uint32_t *map = malloc((s->nnz + 1) * sizeof *map);
    sp_spmat_value_map(s, map);
    /* k-th nonzero in row-major order */
    size_t nz = 0;
    for (size_t i = 0; i < m * k; i++)
        if (w[i] != 0.0f) {
            ck_assert_msg(nz < s->nnz, "%s %zux%zu: more nonzeros than nnz", text, m, k);
            ck_assert_msg(map[nz] < s->nstored, "%s: map[%zu] out of range", text, nz);
            ck_assert_msg(s->values[map[nz]] == w[i], "%s %zux%zu: map[%zu] -> %g, want %g",
                          text, m, k, nz, (double)s->values[map[nz]], (double)w[i]);
            nz++;
        }
    ck_assert_uint_eq(nz, s->nnz);
    /* distinct targets */
    for (size_t a = 1; a < nz; a++)
        ck_assert_msg(map[a] != map[a - 1], "%s: map not one-to-one", text);
    /* refresh through the map: new values land where unpack expects them */
    float *want = malloc(m * k * sizeof(float) + 4), *got = malloc(m * k * sizeof(float) + 4);
    size_t q = 0;
    for (size_t i = 0; i < m * k; i++) {
        want[i] = 0.0f;
        if (w[i] != 0.0f) {
            const float v = (float)(q + 1) * 0.5f;
            want[i] = v;
            s->values[map[q++]] = v;
        }
    }
    sp_spmat_unpack(s, got);
    ck_assert_msg(!memcmp(want, got, m * k * sizeof(float)), "%s %zux%zu: refreshed matrix differs",
                  text, m, k);
    free(want);
    free(got);
    free(map);
    sp_spmat_free(s);
    free(w);
}

START_TEST(test_value_map)
{
    const size_t ms[] = {1, 5, 37}, ks[] = {1, 13, 130, 301};
    const char *pats[] = {"unstructured", "4x1", "1x4", "4x4", "3x5", "2:4", "1:4", "4:8"};
    const double sps[] = {0.0, 0.5, 0.9, 1.0};
    for (size_t a = 0; a < 3; a++)
        for (size_t b = 0; b < 4; b++)
            for (size_t c = 0; c < sizeof pats / sizeof pats[0]; c++)
                for (size_t d = 0; d < 4; d++) {
                    check_map(ms[a], ks[b], pats[c], sps[d], false);
                    if (strchr(pats[c], 'x'))
                        check_map(ms[a], ks[b], pats[c], sps[d], true);
                }
}
END_TEST

START_TEST(test_value_map_dense)
{
    const size_t m = 9, k = 11;
    float w[9 * 11];
    for (size_t i = 0; i < m * k; i++)
        w[i] = rndu() < 0.5 ? 0.0f : rndf() + 3.0f;
    sp_spmat *s = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_spmat_pack(&s, w, m, k, NULL, &err), SP_OK);
    uint32_t map[9 * 11];
    sp_spmat_value_map(s, map);
    size_t nz = 0;
    for (size_t i = 0; i < m * k; i++)
        if (w[i] != 0.0f)
            ck_assert_uint_eq(map[nz++], i);
    ck_assert_uint_eq(nz, s->nnz);
    sp_spmat_free(s);
}
END_TEST

/* ---- SDDMM ------------------------------------------------------------- */

typedef struct pattern {
    size_t rows, cols, nnz;
    uint32_t *rp, *ci;
} pattern;

/* Rows with 0..9 samples (row r has (r * 7) % 10, one row in five empty). */
static pattern make_pattern(size_t rows, size_t cols)
{
    pattern p = {rows, cols, 0, malloc((rows + 1) * sizeof(uint32_t)), NULL};
    p.ci = malloc((rows * 10 + 1) * sizeof(uint32_t));
    p.rp[0] = 0;
    for (size_t r = 0; r < rows; r++) {
        size_t cnt = (r * 7) % 10;
        if (cnt > cols)
            cnt = cols;
        /* distinct, increasing columns */
        size_t c = 0;
        for (size_t q = 0; q < cnt; q++) {
            const size_t room = cols - c - (cnt - q);
            c += room ? rnd() % (room + 1) : 0;
            p.ci[p.nnz++] = (uint32_t)c++;
        }
        p.rp[r + 1] = (uint32_t)p.nnz;
    }
    return p;
}

static void check_sddmm(const sp_sddmm_ukernel_info *uk, size_t rows, size_t cols, size_t n,
                        size_t pad)
{
    const size_t lda = n + pad, ldb = n + 2 * pad;
    pattern p = make_pattern(rows, cols);
    float *a = malloc((rows * lda + 1) * sizeof(float));
    float *b = malloc((cols * ldb + 1) * sizeof(float));
    for (size_t i = 0; i < rows * lda; i++)
        a[i] = rndf();
    for (size_t i = 0; i < cols * ldb; i++)
        b[i] = rndf();
    /* padding holds NaN: a kernel that reads it poisons its result */
    for (size_t r = 0; r < rows; r++)
        for (size_t t = n; t < lda; t++)
            a[r * lda + t] = NAN;
    for (size_t r = 0; r < cols; r++)
        for (size_t t = n; t < ldb; t++)
            b[r * ldb + t] = NAN;
    float *out = malloc((p.nnz + 2) * sizeof(float)), *ref = malloc((p.nnz + 1) * sizeof(float));
    const sp_sddmm_ukernel_info *sref = sp_sddmm_ukernel_find("sp_f32_sddmm_ukernel__scalar");
    ck_assert_ptr_nonnull(sref);
    sref->fn(p.rp, p.ci, 0, rows, n, a, lda, b, ldb, ref);
    for (size_t i = 0; i < p.nnz + 2; i++)
        out[i] = -7.0f; /* canary: out[nnz], out[nnz + 1] must survive */
    /* two ranges, as two threads would run them */
    const size_t mid = rows / 2;
    uk->fn(p.rp, p.ci, 0, mid, n, a, lda, b, ldb, out);
    uk->fn(p.rp, p.ci, mid, rows, n, a, lda, b, ldb, out);
    for (size_t r = 0; r < rows; r++)
        for (size_t j = p.rp[r]; j < p.rp[r + 1]; j++) {
            double exact = 0, mag = 0;
            for (size_t t = 0; t < n; t++) {
                exact += (double)a[r * lda + t] * (double)b[p.ci[j] * ldb + t];
                mag += fabs((double)a[r * lda + t] * (double)b[p.ci[j] * ldb + t]);
            }
            const double tol = 1e-6 * mag + 1e-30;
            ck_assert_msg(fabs((double)out[j] - exact) <= tol && fabs((double)ref[j] - exact) <= tol,
                          "%s rows %zu n %zu pad %zu: out[%zu] = %.9g, reference %.9g, exact %.9g",
                          uk->name, rows, n, pad, j, (double)out[j], (double)ref[j], exact);
        }
    ck_assert_msg(out[p.nnz] == -7.0f && out[p.nnz + 1] == -7.0f,
                  "%s: wrote past the sampled range", uk->name);
    free(a);
    free(b);
    free(out);
    free(ref);
    free(p.rp);
    free(p.ci);
}

START_TEST(test_sddmm_ukernels)
{
    const size_t rows[] = {1, 3, 37}, ns[] = {1, 3, 8, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 100, 300};
    size_t ran = 0;
    for (size_t i = 0; i < sp_sddmm_ukernel_count(); i++) {
        const sp_sddmm_ukernel_info *uk = sp_sddmm_ukernel_at(i);
        if (!sp_isa_supported(uk->isa)) {
            printf("skipped %s: this CPU has no %s\n", uk->name, sp_isa_name(uk->isa));
            continue;
        }
        ran++;
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
                for (size_t pad = 0; pad <= 5; pad += 5)
                    check_sddmm(uk, rows[a], 41, ns[b], pad);
    }
    ck_assert_uint_ge(ran, 1);
}
END_TEST

START_TEST(test_sddmm_registry)
{
    ck_assert_uint_ge(sp_sddmm_ukernel_count(), 1);
    size_t refs = 0;
    for (size_t i = 0; i < sp_sddmm_ukernel_count(); i++) {
        const sp_sddmm_ukernel_info *uk = sp_sddmm_ukernel_at(i);
        ck_assert_ptr_eq(sp_sddmm_ukernel_find(uk->name), uk);
        refs += uk->reference;
    }
    ck_assert_uint_eq(refs, 1);
    ck_assert_ptr_null(sp_sddmm_ukernel_at(sp_sddmm_ukernel_count()));
    ck_assert_ptr_null(sp_sddmm_ukernel_find("no_such_kernel"));
    /* the choice: the best ISA this CPU has, and never above the cap */
    const sp_sddmm_ukernel_info *best = sp_sddmm_ukernel_best(SP_ISA_COUNT);
    ck_assert(sp_isa_supported(best->isa));
    ck_assert_int_eq(sp_sddmm_ukernel_best(SP_ISA_SCALAR)->isa, SP_ISA_SCALAR);
    for (size_t i = 0; i < sp_sddmm_ukernel_count(); i++)
        if (sp_isa_supported(sp_sddmm_ukernel_at(i)->isa))
            ck_assert_int_ge(best->isa, sp_sddmm_ukernel_at(i)->isa);
}
END_TEST

static Suite *sddmm_suite(void)
{
    Suite *s = suite_create("sddmm");
    struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"sp_spmat_value_map", test_value_map},
        {"sp_spmat_value_map_dense", test_value_map_dense},
        {"sp_sddmm_ukernel_best", test_sddmm_registry},
        {"sddmm_ukernels", test_sddmm_ukernels},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sddmm_suite());
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
