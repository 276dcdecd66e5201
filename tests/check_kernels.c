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

/* The value each kernel multiplies by: bf16-valued weights round X. */
static float x_eff(const sp_spmat *s, float v)
{
    return s->dtype == SP_BF16 ? sp_bf16_to_f32(sp_bf16_from_f32(v)) : v;
}

/*
 * Run every ukernel of s's layout and dtype on (m, k, n): Y against the
 * scalar reference and the double-precision dense product of the stored
 * weights (bf16 widened) and X (rounded to bf16 for bf16 weights); padding
 * columns of Y must stay untouched; the row range is also run split in two.
 * xpad/ypad pad the leading dimensions (0: contiguous, the batch-1 fast
 * path of the SpMV kernels).
 */
static void check_all_kernels(const sp_spmat *s, size_t n, bool bias_on, size_t xpad,
                              size_t ypad, counts *cnt)
{
    const size_t m = s->rows, k = s->cols, ldx = n + xpad, ldy = n + ypad;
    float *w = malloc((m * k + 1) * sizeof(float));
    float *x = malloc((k * ldx + 1) * sizeof(float));
    float *y = malloc((m * ldy + 1) * sizeof(float));
    float *yref = malloc((m * ldy + 1) * sizeof(float));
    double *dref = malloc((m * n + 1) * sizeof(double));
    double *scale = malloc((m * n + 1) * sizeof(double));
    float *bias = malloc((m + 1) * sizeof(float));
    sp_spmat_unpack(s, w);
    for (size_t i = 0; i < k * ldx; i++)
        x[i] = rndf();
    for (size_t i = 0; i < m; i++)
        bias[i] = rndf();
    const float *b = bias_on ? bias : NULL;
    for (size_t i = 0; i < m; i++)
        for (size_t c = 0; c < n; c++) {
            double acc = b ? b[i] : 0, sc = b ? fabs(b[i]) : 0;
            for (size_t j = 0; j < k; j++) {
                const double p = (double)w[i * k + j] * x_eff(s, x[j * ldx + c]);
                acc += p;
                sc += fabs(p);
            }
            dref[i * n + c] = acc;
            scale[i * n + c] = sc;
        }
    const size_t np = s->layout == SP_LAYOUT_BCSR || s->layout == SP_LAYOUT_SELL ? s->nbrows
                                                                                 : s->rows;
    const sp_ukernel_info *ref = NULL;
    for (size_t i = 0; i < sp_ukernel_count(); i++)
        if (sp_ukernel_at(i)->layout == s->layout && sp_ukernel_at(i)->dtype == s->dtype &&
            sp_ukernel_at(i)->reference)
            ref = sp_ukernel_at(i);
    ck_assert_ptr_nonnull(ref);
    for (size_t i = 0; i < m * ldy; i++)
        yref[i] = NAN;
    ref->fn(s, 0, np, n, x, ldx, yref, ldy, b);

    for (size_t ki = 0; ki < sp_ukernel_count(); ki++) {
        const sp_ukernel_info *uk = sp_ukernel_at(ki);
        if (uk->layout != s->layout || uk->dtype != s->dtype)
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
                                  "%s: %zux%zu n=%zu ldx=%zu bias=%d y[%zu,%zu] = %g, dense %g",
                                  uk->name, m, k, n, ldx, bias_on, i, c, got, dref[i * n + c]);
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
    free(w);
    free(x);
    free(y);
    free(yref);
    free(dref);
    free(scale);
    free(bias);
}

/* Every kernel of the packed layout over n, bias and the leading
 * dimensions (contiguous too when n == 1). */
static void check_packed(const sp_spmat *s, counts *cnt)
{
    for (size_t ni = 0; ni < sizeof nvals / sizeof nvals[0]; ni++)
        for (int bias_on = 0; bias_on < 2; bias_on++) {
            check_all_kernels(s, (size_t)nvals[ni], bias_on, 3, 5, cnt);
            if (nvals[ni] == 1)
                check_all_kernels(s, 1, bias_on, 0, 0, cnt);
        }
}

static void sweep_ex(const char *pattern, const size_t *ms, size_t nm, const size_t *ks,
                     size_t nk, const sp_spmat_opts *po)
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
                ck_assert_msg(sp_spmat_pack_ex(&s, w, m, k, pp, po, &err) == SP_OK, "%s",
                              err.msg);
                check_packed(s, &cnt);
                sp_spmat_free(s);
                free(w);
            }
    ck_assert_uint_gt(cnt.runs, 0);
    if (cnt.skipped_isa)
        printf("%s: %zu runs of kernels for ISAs this CPU lacks were skipped\n",
               pattern ? pattern : "dense", cnt.skipped_isa);
}

static void sweep(const char *pattern, const size_t *ms, size_t nm, const size_t *ks,
                  size_t nk)
{
    sweep_ex(pattern, ms, nm, ks, nk, NULL);
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
    ck_assert_str_eq(sp_isa_name(SP_ISA_AVX512BF16), "avx512bf16");
    if (sp_isa_supported(SP_ISA_AVX512BF16))
        ck_assert(sp_isa_supported(SP_ISA_AVX512));
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
    ck_assert_str_eq(sp_layout_name(SP_LAYOUT_SELL), "sell");
}
END_TEST

/* ---- registry ---------------------------------------------------------- */

START_TEST(test_registry)
{
    ck_assert_uint_ge(sp_ukernel_count(), 4);
    ck_assert_ptr_null(sp_ukernel_at(sp_ukernel_count()));
    ck_assert_ptr_null(sp_ukernel_find("no_such_kernel"));
    int refs[5][2] = {{0}}, kernels[5][2] = {{0}};
    for (size_t i = 0; i < sp_ukernel_count(); i++) {
        const sp_ukernel_info *k = sp_ukernel_at(i);
        ck_assert_ptr_eq(sp_ukernel_find(k->name), k);
        ck_assert_ptr_nonnull(k->fn);
        ck_assert(k->dtype == SP_F32 || k->dtype == SP_BF16);
        ck_assert_int_le(k->layout, SP_LAYOUT_SELL);
        /* names say dtype first and end in __<isa> */
        ck_assert_ptr_nonnull(strstr(k->name, k->dtype == SP_BF16 ? "sp_bf16_" : "sp_f32_"));
        const char *tail = strstr(k->name, "__");
        ck_assert_ptr_nonnull(tail);
        ck_assert_str_eq(tail + 2, sp_isa_name(k->isa));
        kernels[k->layout][k->dtype == SP_BF16]++;
        if (k->reference) {
            ck_assert_int_eq(k->isa, SP_ISA_SCALAR);
            refs[k->layout][k->dtype == SP_BF16]++;
        }
    }
    /* exactly one reference for every layout and dtype that has kernels */
    for (int l = 0; l < 5; l++)
        for (int d = 0; d < 2; d++)
            ck_assert_int_eq(refs[l][d], kernels[l][d] ? 1 : 0);
    ck_assert_int_eq(refs[SP_LAYOUT_SELL][1], 1);
    ck_assert_int_eq(refs[SP_LAYOUT_NM][1], 1);
}
END_TEST

/* ---- pack / unpack ----------------------------------------------------- */

/* pack (with opts) -> unpack gives the weights back: exactly for f32, and
 * as sp_bf16_from_f32 rounds them for bf16 values. */
static void round_trip(const char *pattern, size_t m, size_t k, double sparsity,
                       const sp_spmat_opts *po)
{
    sp_pattern p = {0};
    if (pattern)
        p = pat(pattern);
    float *w = make_weight(m, k, pattern ? &p : NULL, sparsity);
    float *back = malloc(m * k * sizeof(float) + 1);
    sp_spmat *s = NULL;
    sp_error err = {0};
    ck_assert_msg(sp_spmat_pack_ex(&s, w, m, k, pattern ? &p : NULL, po, &err) == SP_OK, "%s",
                  err.msg);
    const bool bf16 = po && po->dtype == SP_BF16;
    ck_assert_int_eq(s->dtype, bf16 ? SP_BF16 : SP_F32);
    ck_assert(bf16 ? s->bvalues && !s->values : s->values && !s->bvalues);
    if (po && (po->sell || bf16) && pattern && p.kind != SP_PATTERN_NM)
        ck_assert_int_eq(s->layout, SP_LAYOUT_SELL);
    size_t nnz = 0;
    for (size_t i = 0; i < m * k; i++) {
        nnz += w[i] != 0;
        if (bf16)
            w[i] = sp_bf16_to_f32(sp_bf16_from_f32(w[i]));
    }
    ck_assert_uint_eq(s->nnz, nnz);
    ck_assert_uint_ge(s->nstored, pattern ? nnz : m * k);
    ck_assert_uint_gt(sp_spmat_bytes(s), 0);
    for (size_t i = 0; i < m * k; i++)
        back[i] = 7;
    sp_spmat_unpack(s, back);
    ck_assert_msg(memcmp(w, back, m * k * sizeof(float)) == 0, "%s %zux%zu: unpack differs",
                  pattern ? pattern : "dense", m, k);
    /* sp_spmat_value_map: the k-th nonzero in row-major order, each slot once */
    uint32_t *map = malloc((nnz ? nnz : 1) * sizeof *map);
    unsigned char *seen = calloc(s->nstored + 1, 1);
    sp_spmat_value_map(s, map);
    for (size_t i = 0, j = 0; i < m * k; i++) {
        if (w[i] == 0)
            continue;
        ck_assert_uint_lt(map[j], s->nstored);
        ck_assert_msg(!seen[map[j]], "%s %zux%zu: slot %u mapped twice",
                      pattern ? pattern : "dense", m, k, (unsigned)map[j]);
        seen[map[j]] = 1;
        const float got = bf16 ? sp_bf16_to_f32(s->bvalues[map[j]]) : s->values[map[j]];
        ck_assert_msg(got == w[i], "%s %zux%zu layout %s: nonzero %zu maps to %g, not %g",
                      pattern ? pattern : "dense", m, k, sp_layout_name(s->layout), j,
                      (double)got, (double)w[i]);
        j++;
    }
    free(map);
    free(seen);
    sp_spmat_free(s);
    free(w);
    free(back);
}

START_TEST(test_pack_round_trip)
{
    const char *pats[] = {NULL, "unstructured", "1x4", "4x1", "4x4", "8x8", "16x16",
                          "2x3", "2:4", "1:4", "4:8", "3:7", "2:16"};
    const size_t shapes[][2] = {{1, 1}, {3, 13}, {37, 70}, {20, 301}, {64, 129}, {17, 257}};
    sp_spmat_opts sell, bf16;
    sp_spmat_opts_init(&sell);
    sp_spmat_opts_init(&bf16);
    sell.sell = true;
    bf16.dtype = SP_BF16;
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
        for (size_t j = 0; j < sizeof shapes / sizeof shapes[0]; j++)
            for (size_t si = 0; si < sizeof sparsities / sizeof sparsities[0]; si++) {
                round_trip(pats[i], shapes[j][0], shapes[j][1], sparsities[si], NULL);
                round_trip(pats[i], shapes[j][0], shapes[j][1], sparsities[si], &sell);
                if (pats[i])
                    round_trip(pats[i], shapes[j][0], shapes[j][1], sparsities[si], &bf16);
            }
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
    /* SELL indexes columns within 128-column windows: no such limit */
    sp_spmat_opts po;
    sp_spmat_opts_init(&po);
    po.sell = true;
    wide[65536] = 3;
    ck_assert_int_eq(sp_spmat_pack_ex(&s, wide, 1, 65537, &p, &po, &err), SP_OK);
    ck_assert_int_eq(s->layout, SP_LAYOUT_SELL);
    ck_assert_uint_eq(s->sell_windows, 513);
    ck_assert_uint_eq(s->sell_nsteps, 1);
    ck_assert_uint_eq(s->sell_steps[512], 1);
    ck_assert_uint_eq(s->sell_idx[0], 0); /* 65536 = window 512, offset 0 */
    ck_assert_float_eq(s->values[0], 3);
    sp_spmat_free(s);
    free(wide);
    sp_spmat_free(NULL);

    /* SELL of the 2x8 matrix: one slice, one window; row 0 has 3 nonzeros
     * (cols 1, 3, 7), row 1 has 3 (0, 5, 6): 3 steps of 16 lanes */
    ck_assert_int_eq(sp_spmat_pack_ex(&s, w, 2, 8, &p, &po, &err), SP_OK);
    ck_assert_uint_eq(s->sell_slices, 1);
    ck_assert_uint_eq(s->sell_nsteps, 3);
    ck_assert_uint_eq(s->nstored, 48);
    ck_assert_uint_eq(s->nnz, 6);
    ck_assert_int_eq(s->sell_slots, 1);
    /* step j, lane l at j*16 + l */
    ck_assert_float_eq(s->values[0], 1);
    ck_assert_uint_eq(s->sell_idx[0], 1);
    ck_assert_float_eq(s->values[1], 4);
    ck_assert_uint_eq(s->sell_idx[1], 0);
    ck_assert_float_eq(s->values[2], 0); /* lane 2: no row */
    ck_assert_float_eq(s->values[2 * 16], 3);
    ck_assert_uint_eq(s->sell_idx[2 * 16], 7);
    ck_assert_float_eq(s->values[2 * 16 + 1], 6);
    sp_spmat_free(s);

    /* rows are sorted by decreasing nonzeros into the lanes (ties in row
     * order): a slice holds rows of similar length and pads less */
    {
        const float w3[24] = {0, 1, 0, 0, 0, 0, 0, 0,
                              1, 1, 1, 1, 0, 0, 0, 0,
                              0, 0, 0, 0, 2, 0, 0, 2};
        ck_assert_int_eq(sp_spmat_pack_ex(&s, w3, 3, 8, &p, &po, &err), SP_OK);
        ck_assert_uint_eq(s->sell_rows[0], 1);
        ck_assert_uint_eq(s->sell_rows[1], 2);
        ck_assert_uint_eq(s->sell_rows[2], 0);
        ck_assert_uint_eq(s->sell_rows[3], UINT32_MAX);
        ck_assert_uint_eq(s->sell_nsteps, 4);
        ck_assert_float_eq(s->values[2], 1); /* lane 2 (row 0), step 0 */
        ck_assert_uint_eq(s->sell_idx[2], 1);
        ck_assert_float_eq(s->values[16 + 1], 2); /* lane 1 (row 2), step 1: col 7 */
        ck_assert_uint_eq(s->sell_idx[16 + 1], 7);
        float back[24];
        sp_spmat_unpack(s, back);
        ck_assert(memcmp(back, w3, sizeof back) == 0);
        sp_spmat_free(s);
    }

    /* 2x1 blocks: the two rows of a block share one index per slot; a row
     * holds 0 where only its partner has a value */
    {
        const float w4[32] = {1, 0, 0, 3, 0, 0, 0, 0,
                              2, 0, 0, 0, 0, 0, 0, 4,
                              0, 0, 0, 0, 0, 0, 0, 0,
                              0, 5, 0, 0, 0, 0, 0, 0};
        sp_pattern b21 = pat("2x1");
        ck_assert_int_eq(sp_spmat_pack_ex(&s, w4, 4, 8, &b21, &po, &err), SP_OK);
        ck_assert_int_eq(s->sell_group, 2);
        ck_assert_uint_eq(s->sell_nsteps, 3); /* block row 0: columns 0, 3, 7 */
        ck_assert_uint_eq(s->sell_rows[0], 0);
        ck_assert_uint_eq(s->sell_rows[1], 1);
        ck_assert_uint_eq(s->sell_rows[2], 2);
        ck_assert_uint_eq(s->sell_rows[3], 3);
        ck_assert_uint_eq(s->sell_idx[0], 0);      /* step 0, unit 0 */
        ck_assert_uint_eq(s->sell_idx[1], 1);      /* step 0, unit 1 */
        ck_assert_uint_eq(s->sell_idx[8], 3);      /* step 1, unit 0 (8 per step) */
        ck_assert_float_eq(s->values[16 + 0], 3);  /* row 0 at column 3 */
        ck_assert_float_eq(s->values[16 + 1], 0);  /* row 1 lacks it */
        ck_assert_float_eq(s->values[2 * 16 + 1], 4);
        ck_assert_uint_eq(sp_spmat_bytes(s), 48 * 4 + 48 / 2 + 2 * 4 + 1 + 16 * 4);
        float back[32];
        sp_spmat_unpack(s, back);
        ck_assert(memcmp(back, w4, sizeof back) == 0);
        sp_spmat_free(s);
    }

    /* bf16 values: pairs of slots per lane, rounded */
    po.sell = false;
    po.dtype = SP_BF16;
    ck_assert_int_eq(sp_spmat_pack_ex(&s, w, 2, 8, &p, &po, &err), SP_OK);
    ck_assert_int_eq(s->layout, SP_LAYOUT_SELL);
    ck_assert_int_eq(s->sell_slots, 2);
    ck_assert_uint_eq(s->sell_nsteps, 2);       /* ceil(3 / 2) */
    ck_assert_uint_eq(s->bvalues[0], 0x3f80);   /* row 0: 1 */
    ck_assert_uint_eq(s->bvalues[1], 0x4000);   /* 2 */
    ck_assert_uint_eq(s->bvalues[2], 0x4080);   /* row 1: 4 */
    ck_assert_uint_eq(s->bvalues[32], 0x4040);  /* row 0, step 1: 3 */
    ck_assert_uint_eq(s->bvalues[33], 0);       /* padding */
    sp_spmat_free(s);
    p = pat("2:4");
    ck_assert_int_eq(sp_spmat_pack_ex(&s, w, 2, 8, &p, &po, &err), SP_OK);
    ck_assert_int_eq(s->layout, SP_LAYOUT_NM);
    ck_assert_uint_eq(s->bvalues[2], 0x4040);
    sp_spmat_free(s);

    /* options that cannot be packed */
    ck_assert_int_eq(sp_spmat_pack_ex(&s, w, 2, 8, NULL, &po, &err), SP_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "bfloat16"));
    po.dtype = SP_F16;
    ck_assert_int_eq(sp_spmat_pack_ex(&s, w, 2, 8, &p, &po, &err), SP_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "float16"));
    ck_assert_ptr_null(s);
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

/* m around the 16-row slice, k around the 128-column window. */
static const size_t ms_sell[] = {1, 15, 16, 17, 37};
static const size_t ks_sell[] = {1, 13, 127, 128, 129, 301};

START_TEST(test_kernels_sell)
{
    sp_spmat_opts po;
    sp_spmat_opts_init(&po);
    po.sell = true;
    sweep_ex("unstructured", ms_sell, 5, ks_sell, 6, &po);
    const size_t ms[] = {5, 17};
    const size_t ks[] = {13, 129};
    sweep_ex("4x1", ms, 2, ks, 2, &po);
    sweep_ex("2x3", ms, 2, ks, 2, &po);
    sweep_ex("16x16", ms, 2, ks, 2, &po);
    sweep_ex("5x1", ms, 2, ks, 2, &po); /* 5 does not divide 16: no groups */
}
END_TEST

/* 2:4 batch-1 kernels: m around their 4-row group, k around the 32- and
 * 64-column windows and ragged, and rows longer than the prefetch distance
 * (the prefetch cursor then stays in the same rows: 1100, 2113). */
START_TEST(test_kernels_nm24)
{
    const size_t ms[] = {1, 3, 4, 5, 37};
    const size_t ks[] = {1, 4, 13, 31, 32, 33, 64, 65, 129, 301, 1100, 2113};
    sweep("2:4", ms, 5, ks, 12);
}
END_TEST

START_TEST(test_kernels_bf16)
{
    sp_spmat_opts po;
    sp_spmat_opts_init(&po);
    po.dtype = SP_BF16;
    const size_t ms_s[] = {1, 16, 17, 37};
    const size_t ks_s[] = {1, 13, 128, 129, 301};
    sweep_ex("unstructured", ms_s, 4, ks_s, 5, &po);
    const size_t ms_b[] = {5, 17};
    const size_t ks_b[] = {13, 129};
    sweep_ex("4x1", ms_b, 2, ks_b, 2, &po);
    const size_t ms[] = {1, 3, 4, 5, 37};
    const size_t ks[] = {1, 13, 32, 33, 64, 65, 301};
    sweep_ex("2:4", ms, 5, ks, 7, &po);
    const char *nm_pats[] = {"1:4", "4:8", "3:7"};
    for (size_t i = 0; i < 3; i++)
        sweep_ex(nm_pats[i], ms + 2, 2, ks_ragged, 4, &po);
}
END_TEST

/* ---- bf16 rounding ----------------------------------------------------- */

static float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

START_TEST(test_bf16_from_f32)
{
    /* nearest, ties to even */
    ck_assert_uint_eq(sp_bf16_from_f32(1.0f), 0x3f80);
    ck_assert_uint_eq(sp_bf16_from_f32(bits_f(0x3f808000u)), 0x3f80); /* tie, even below */
    ck_assert_uint_eq(sp_bf16_from_f32(bits_f(0x3f818000u)), 0x3f82); /* tie, even above */
    ck_assert_uint_eq(sp_bf16_from_f32(bits_f(0x3f808001u)), 0x3f81); /* above the tie */
    ck_assert_uint_eq(sp_bf16_from_f32(bits_f(0x3f807fffu)), 0x3f80); /* below it */
    ck_assert_uint_eq(sp_bf16_from_f32(-2.0f), 0xc000);
    /* overflow to infinity, infinities and NaN kept (quiet) */
    ck_assert_uint_eq(sp_bf16_from_f32(bits_f(0x7f7fffffu)), 0x7f80);
    ck_assert_uint_eq(sp_bf16_from_f32(INFINITY), 0x7f80);
    ck_assert_uint_eq(sp_bf16_from_f32(-INFINITY), 0xff80);
    ck_assert_uint_eq(sp_bf16_from_f32(bits_f(0x7f800001u)), 0x7fc0);
    ck_assert_uint_eq(sp_bf16_from_f32(bits_f(0xffc12345u)), 0xffc1);
    /* subnormals flush to a signed zero (as vcvtne2ps2bf16 reads them) */
    ck_assert_uint_eq(sp_bf16_from_f32(bits_f(0x000ae398u)), 0x0000);
    ck_assert_uint_eq(sp_bf16_from_f32(bits_f(0x807fffffu)), 0x8000);
    ck_assert_uint_eq(sp_bf16_from_f32(bits_f(0x00800000u)), 0x0080); /* smallest normal */
    ck_assert_uint_eq(sp_bf16_from_f32(-0.0f), 0x8000);
}
END_TEST

/*
 * Bit-exactness where the order of a sum cannot matter: weights and X are
 * dyadic with few bits, so every partial sum is exact in f32 and each bf16
 * kernel must equal its scalar reference bit for bit. X holds values that
 * rounding to bf16 changes (ties to even, just above and below a tie), so a
 * kernel that skipped or mis-rounded X would differ.
 */
START_TEST(test_bf16_exact)
{
    const uint32_t xbits[] = {0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu,
                              0xbfc08000u, 0x40a18000u, 0x3e000000u, 0xc0a0c000u};
    const size_t m = 37, k = 301;
    const char *pats[] = {"unstructured", "2:4"};
    sp_spmat_opts po;
    sp_spmat_opts_init(&po);
    po.dtype = SP_BF16;
    size_t runs = 0;
    for (size_t pi = 0; pi < 2; pi++) {
        sp_pattern p = pat(pats[pi]);
        float *w = make_weight(m, k, &p, 0.5);
        for (size_t i = 0; i < m * k; i++)
            if (w[i] != 0.0f)
                w[i] = (float)((int)(rnd() % 15) - 7) * 0.25f + (w[i] > 0 ? 4.0f : -4.0f);
        float x[301], bias[37];
        for (size_t j = 0; j < k; j++)
            x[j] = bits_f(xbits[rnd() % 8]);
        for (size_t i = 0; i < m; i++)
            bias[i] = (float)((int)(rnd() % 9) - 4);
        sp_spmat *s = NULL;
        sp_error err = {0};
        ck_assert_int_eq(sp_spmat_pack_ex(&s, w, m, k, &p, &po, &err), SP_OK);
        const size_t np = s->layout == SP_LAYOUT_SELL ? s->nbrows : s->rows;
        float yref[37], y[37];
        const sp_ukernel_info *ref = NULL;
        for (size_t i = 0; i < sp_ukernel_count(); i++)
            if (sp_ukernel_at(i)->reference && sp_ukernel_at(i)->layout == s->layout &&
                sp_ukernel_at(i)->dtype == SP_BF16)
                ref = sp_ukernel_at(i);
        ck_assert_ptr_nonnull(ref);
        ref->fn(s, 0, np, 1, x, 1, yref, 1, bias);
        /* every sum is exact: the reference equals it, and it is a sum over
         * X rounded to bf16 (with X as given, some rows differ) */
        size_t differ = 0;
        for (size_t i = 0; i < m; i++) {
            double exact = bias[i], plain = bias[i];
            for (size_t j = 0; j < k; j++) {
                exact += (double)w[i * k + j] * sp_bf16_to_f32(sp_bf16_from_f32(x[j]));
                plain += (double)w[i * k + j] * x[j];
            }
            ck_assert_msg(yref[i] == (float)exact, "%s row %zu: %g, exact %g", ref->name, i,
                          yref[i], exact);
            differ += plain != exact;
        }
        ck_assert_uint_gt(differ, m / 2);
        for (size_t ki = 0; ki < sp_ukernel_count(); ki++) {
            const sp_ukernel_info *uk = sp_ukernel_at(ki);
            if (uk->layout != s->layout || uk->dtype != SP_BF16 || !sp_isa_supported(uk->isa))
                continue;
            uk->fn(s, 0, np, 1, x, 1, y, 1, bias);
            ck_assert_msg(memcmp(y, yref, sizeof y) == 0, "%s differs from %s", uk->name,
                          ref->name);
            runs++;
        }
        sp_spmat_free(s);
        free(w);
    }
    ck_assert_uint_ge(runs, 2);
}
END_TEST

/* Where the CPU has AVX512-BF16, its conversion is the oracle of
 * sp_bf16_from_f32: a 1 x k matrix of ones times X gives bf16(x) summed
 * with zeros, i.e. the hardware's rounding of each x on its own row. */
START_TEST(test_bf16_hardware)
{
    const sp_ukernel_info *uk = sp_ukernel_find("sp_bf16_spmv_sell_ukernel_16x128__avx512bf16");
    if (!uk || !sp_isa_supported(SP_ISA_AVX512BF16)) {
        printf("bf16 hardware rounding: no AVX512-BF16 here, skipped\n");
        return;
    }
    /* 16 rows, row r has one nonzero 1.0 at column r: y[r] = bf16(x[r]) */
    const size_t m = 16, k = 16;
    float w[256] = {0};
    for (size_t r = 0; r < m; r++)
        w[r * k + r] = 1.0f;
    sp_pattern p = pat("unstructured");
    sp_spmat_opts po;
    sp_spmat_opts_init(&po);
    po.dtype = SP_BF16;
    sp_spmat *s = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_spmat_pack_ex(&s, w, m, k, &p, &po, &err), SP_OK);
    size_t checked = 0;
    for (int round = 0; round < 4000; round++) {
        float x[16], y[16];
        for (size_t i = 0; i < k; i++) {
            uint32_t u = (uint32_t)rnd();
            if (i == 0)
                u = (u & 0xbfff0000u) | 0x8000u; /* a finite tie (padding reads x[0]) */
            else if (i == 1)
                u &= 0x807fffffu; /* a subnormal */
            x[i] = bits_f(u);
        }
        uk->fn(s, 0, 1, 1, x, 1, y, 1, NULL);
        for (size_t i = 0; i < k; i++) {
            const float want = sp_bf16_to_f32(sp_bf16_from_f32(x[i]));
            if (isnan(want)) {
                ck_assert(isnan(y[i]));
            } else {
                ck_assert_msg(memcmp(&want, &y[i], 4) == 0 || (want == 0 && y[i] == 0),
                              "x %08x: hardware %08x, sp_bf16_from_f32 %08x",
                              *(uint32_t *)&x[i], *(uint32_t *)&y[i], *(const uint32_t *)&want);
            }
            checked++;
        }
    }
    ck_assert_uint_eq(checked, 64000);
    sp_spmat_free(s);
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
    /* f32 kernels go up to AVX-512 (AVX512-BF16 adds bf16 ones only) */
    ck_assert_int_eq(k->isa, sp_isa_best() > SP_ISA_AVX512 ? SP_ISA_AVX512 : sp_isa_best());
    if (sp_isa_best() > SP_ISA_SCALAR)
        ck_assert(k->spmv);
    ck_assert(!sp_spmm_plan_is_dense(plan));
    ck_assert_int_eq(sp_spmm_plan_threads(plan), 2);
    /* on AVX-512 the batch-1 plan runs its own SELL copy of the CSR */
    if (sp_isa_supported(SP_ISA_AVX512)) {
        ck_assert_str_eq(k->name, "sp_f32_spmv_sell_ukernel_16x128__avx512");
        ck_assert_int_eq(sp_spmm_plan_layout(plan), SP_LAYOUT_SELL);
        ck_assert_uint_ne(sp_spmm_plan_weight_bytes(plan), sp_spmat_bytes(s));
    }
    sp_spmm_plan_free(plan);
    sp_spmm_plan_free(NULL);
    /* n > 1: the CSR kernel on the weights themselves */
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 64, &o, &err), SP_OK);
    ck_assert_int_eq(sp_spmm_plan_layout(plan), SP_LAYOUT_CSR);
    ck_assert_uint_eq(sp_spmm_plan_weight_bytes(plan), sp_spmat_bytes(s));
    sp_spmm_plan_free(plan);
    /* a forced kernel of another dtype, or a layout that cannot be derived */
    o.kernel = "sp_bf16_spmm_sell_ukernel__scalar";
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 1, &o, &err), SP_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "bfloat16"));
    o.kernel = "sp_f32_spmm_sell_ukernel__scalar"; /* derivable from CSR */
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 1, &o, &err), SP_OK);
    ck_assert_int_eq(sp_spmm_plan_layout(plan), SP_LAYOUT_SELL);
    sp_spmm_plan_free(plan);
    o.kernel = NULL;

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

/*
 * The dispatcher falls back to dense where dense wins, measured: a fully
 * dense 512x512 weight packed as CSR at n = 64 (one X load per FMA) against
 * the built-in dense GEMM (each X load serves 4 rows). The decision lands in
 * the caller's cache, and a second plan of the same case takes it from
 * there without timing anything.
 */
START_TEST(test_plan_measure)
{
    sp_pattern p = pat("unstructured");
    const size_t m = 512, k = 512, n = 64;
    float *w = make_weight(m, k, &p, 0.0);
    for (size_t i = 0; i < m * k; i++)
        if (w[i] == 0.0f)
            w[i] = 0.5f; /* no empty rows either: every weight kept */
    sp_spmat *s = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_spmat_pack(&s, w, m, k, &p, &err), SP_OK);
    ck_assert_uint_eq(s->nnz, m * k);
    sp_spmm_cache *cache = NULL;
    ck_assert_int_eq(sp_spmm_cache_new(&cache, &err), SP_OK);
    sp_spmm_opts o;
    sp_spmm_opts_init(&o);
    o.threads = 2;
    o.fallback = SP_FALLBACK_MEASURE;
    o.cache = cache;
    sp_spmm_plan *plan = NULL;
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, n, &o, &err), SP_OK);
    ck_assert_msg(sp_spmm_plan_is_dense(plan), "measured: %s", sp_spmm_plan_kernel(plan));
    ck_assert_ptr_nonnull(strstr(sp_spmm_plan_kernel(plan), "sp_f32_gemm_"));
    ck_assert_int_eq(sp_spmm_plan_layout(plan), SP_LAYOUT_DENSE);
    sp_spmm_plan_free(plan);
    ck_assert_uint_eq(sp_spmm_cache_size(cache), 1);
    /* the same case again: from the cache */
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, n, &o, &err), SP_OK);
    ck_assert(sp_spmm_plan_is_dense(plan));
    sp_spmm_plan_free(plan);
    ck_assert_uint_eq(sp_spmm_cache_size(cache), 1);
    /* the estimate says the same without timing */
    o.fallback = SP_FALLBACK_AUTO;
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, n, &o, &err), SP_OK);
    ck_assert(sp_spmm_plan_is_dense(plan));
    sp_spmm_plan_free(plan);
    sp_spmat_free(s);
    free(w);

    /* A 99%-sparse weight with a slow caller's dense: sparse is kept; the
     * dense side was timed once, then the cache answers (no more calls). */
    w = make_weight(200, 300, &p, 0.99);
    ck_assert_int_eq(sp_spmat_pack(&s, w, 200, 300, &p, &err), SP_OK);
    int calls = 0;
    o.fallback = SP_FALLBACK_MEASURE;
    o.dense = fake_dense;
    o.dense_ctx = &calls;
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 16, &o, &err), SP_OK);
    ck_assert(!sp_spmm_plan_is_dense(plan));
    sp_spmm_plan_free(plan);
    ck_assert_int_gt(calls, 0);
    ck_assert_uint_eq(sp_spmm_cache_size(cache), 2);
    const int seen = calls;
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 16, &o, &err), SP_OK);
    ck_assert(!sp_spmm_plan_is_dense(plan));
    sp_spmm_plan_free(plan);
    ck_assert_int_eq(calls, seen);
    /* another batch is another case */
    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 17, &o, &err), SP_OK);
    sp_spmm_plan_free(plan);
    ck_assert_uint_eq(sp_spmm_cache_size(cache), 3);
    sp_spmm_cache_free(cache);
    sp_spmm_cache_free(NULL);
    sp_spmat_free(s);
    free(w);
}
END_TEST

/* Several plans on one caller-owned pool, run one after another. */
START_TEST(test_threadpool)
{
    sp_error err = {0};
    sp_threadpool *pool = NULL;
    ck_assert_int_eq(sp_threadpool_new(&pool, 0, &err), SP_ERR_INVALID_ARG);
    ck_assert_int_eq(sp_threadpool_new(&pool, 3, &err), SP_OK);
    ck_assert_int_eq(sp_threadpool_threads(pool), 3);
    const char *pats[] = {"unstructured", "4x1", "2:4"};
    sp_spmat *s[3];
    sp_spmm_plan *plans[3][2];
    float *w[3];
    sp_spmm_opts o;
    sp_spmm_opts_init(&o);
    o.pool = pool;
    o.fallback = SP_FALLBACK_NEVER;
    for (int i = 0; i < 3; i++) {
        sp_pattern p = pat(pats[i]);
        w[i] = make_weight(96, 200, &p, 0.8);
        ck_assert_int_eq(sp_spmat_pack(&s[i], w[i], 96, 200, &p, &err), SP_OK);
        ck_assert_int_eq(sp_spmm_plan_new(&plans[i][0], s[i], 1, &o, &err), SP_OK);
        ck_assert_int_eq(sp_spmm_plan_new(&plans[i][1], s[i], 33, &o, &err), SP_OK);
        ck_assert_int_eq(sp_spmm_plan_threads(plans[i][0]), 3);
    }
    o.threads = 2; /* not the pool's */
    sp_spmm_plan *bad = NULL;
    ck_assert_int_eq(sp_spmm_plan_new(&bad, s[0], 1, &o, &err), SP_ERR_INVALID_ARG);
    ck_assert_ptr_null(bad);
    float x[200 * 33], y[96 * 33];
    for (size_t i = 0; i < 200 * 33; i++)
        x[i] = rndf();
    for (int rep = 0; rep < 20; rep++)
        for (int i = 0; i < 3; i++)
            for (int b = 0; b < 2; b++) {
                const size_t n = b ? 33 : 1;
                ck_assert_int_eq(sp_spmm_plan_run(plans[i][b], x, n, y, n, NULL, &err), SP_OK);
                for (size_t r = 0; r < 96; r += 7)
                    for (size_t c = 0; c < n; c++) {
                        double acc = 0, sc = 0;
                        for (size_t j = 0; j < 200; j++) {
                            acc += (double)w[i][r * 200 + j] * x[j * n + c];
                            sc += fabs((double)w[i][r * 200 + j] * x[j * n + c]);
                        }
                        ck_assert(close_to(y[r * n + c], acc, sc));
                    }
            }
    for (int i = 0; i < 3; i++) {
        sp_spmm_plan_free(plans[i][0]);
        sp_spmm_plan_free(plans[i][1]);
        sp_spmat_free(s[i]);
        free(w[i]);
    }
    sp_threadpool_free(pool);
    sp_threadpool_free(NULL);
}
END_TEST

/* After the values of w change in place, sp_spmm_plan_update refreshes the
 * plan's own copies (SELL for n == 1, one-panel CSR, dense fallback). */
START_TEST(test_plan_update)
{
    sp_pattern p = pat("unstructured");
    const size_t m = 40, k = 300;
    float *w = make_weight(m, k, &p, 0.9);
    sp_spmat *s = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_spmat_pack(&s, w, m, k, &p, &err), SP_OK);
    const sp_fallback modes[] = {SP_FALLBACK_NEVER, SP_FALLBACK_ALWAYS};
    const char *kernels[] = {NULL, "sp_f32_spmv_csr_ukernel_16__avx512",
                             "sp_f32_spmm_sell_ukernel__scalar"};
    float x[300], y[40];
    for (size_t j = 0; j < k; j++)
        x[j] = rndf();
    for (size_t mi = 0; mi < 2; mi++)
        for (size_t ki = 0; ki < 3; ki++) {
            if (kernels[ki] && (!sp_ukernel_find(kernels[ki]) ||
                                !sp_isa_supported(sp_ukernel_find(kernels[ki])->isa)))
                continue;
            sp_spmm_opts o;
            sp_spmm_opts_init(&o);
            o.threads = 2;
            o.fallback = modes[mi];
            o.kernel = mi ? NULL : kernels[ki];
            sp_spmm_plan *plan = NULL;
            ck_assert_int_eq(sp_spmm_plan_new(&plan, s, 1, &o, &err), SP_OK);
            for (int round = 0; round < 2; round++) {
                /* new values, same positions */
                for (size_t i = 0; i < s->nstored; i++)
                    s->values[i] *= -1.5f;
                for (size_t i = 0; i < m * k; i++)
                    w[i] *= -1.5f;
                ck_assert_int_eq(sp_spmm_plan_update(plan, &err), SP_OK);
                ck_assert_int_eq(sp_spmm_plan_run(plan, x, 1, y, 1, NULL, &err), SP_OK);
                for (size_t r = 0; r < m; r++) {
                    double acc = 0, sc = 0;
                    for (size_t j = 0; j < k; j++) {
                        acc += (double)w[r * k + j] * x[j];
                        sc += fabs((double)w[r * k + j] * x[j]);
                    }
                    ck_assert_msg(close_to(y[r], acc, sc), "%s: row %zu %g, want %g",
                                  sp_spmm_plan_kernel(plan), r, y[r], acc);
                }
            }
            sp_spmm_plan_free(plan);
        }
    sp_spmat_free(s);
    free(w);
}
END_TEST

/* bf16 weights through plans: the batch-1 kernel of the best ISA, any n,
 * and the dense fallback (bf16 weights widened, X as given). */
START_TEST(test_plan_bf16)
{
    const char *pats[] = {"unstructured", "2:4", "8x1"};
    sp_spmat_opts po;
    sp_spmat_opts_init(&po);
    po.dtype = SP_BF16;
    for (size_t pi = 0; pi < 3; pi++) {
        sp_pattern p = pat(pats[pi]);
        float *w = make_weight(70, 260, &p, 0.9);
        sp_spmat *s = NULL;
        sp_error err = {0};
        ck_assert_int_eq(sp_spmat_pack_ex(&s, w, 70, 260, &p, &po, &err), SP_OK);
        for (size_t i = 0; i < 70 * 260; i++)
            w[i] = sp_bf16_to_f32(sp_bf16_from_f32(w[i]));
        const size_t ns[] = {1, 5, 64};
        for (size_t ni = 0; ni < 3; ni++)
            for (int fb = 0; fb < 2; fb++) {
                const size_t n = ns[ni];
                sp_spmm_opts o;
                sp_spmm_opts_init(&o);
                o.threads = 2;
                o.fallback = fb ? SP_FALLBACK_ALWAYS : SP_FALLBACK_NEVER;
                sp_spmm_plan *plan = NULL;
                ck_assert_int_eq(sp_spmm_plan_new(&plan, s, n, &o, &err), SP_OK);
                const sp_ukernel_info *k = sp_ukernel_find(sp_spmm_plan_kernel(plan));
                ck_assert_ptr_nonnull(k);
                if (!fb) {
                    ck_assert_int_eq(k->dtype, SP_BF16);
                    if (n == 1 && sp_isa_supported(SP_ISA_AVX512))
                        ck_assert(k->spmv);
                    if (n == 1 && sp_isa_supported(SP_ISA_AVX512BF16))
                        ck_assert_int_eq(k->isa, SP_ISA_AVX512BF16);
                }
                float *x = malloc(260 * n * sizeof(float)), *y = malloc(70 * n * sizeof(float));
                for (size_t i = 0; i < 260 * n; i++)
                    x[i] = rndf();
                ck_assert_int_eq(sp_spmm_plan_run(plan, x, n, y, n, NULL, &err), SP_OK);
                for (size_t r = 0; r < 70; r++)
                    for (size_t c = 0; c < n; c++) {
                        double acc = 0, sc = 0;
                        for (size_t j = 0; j < 260; j++) {
                            const float xv = fb ? x[j * n + c]
                                                : sp_bf16_to_f32(sp_bf16_from_f32(x[j * n + c]));
                            acc += (double)w[r * 260 + j] * xv;
                            sc += fabs((double)w[r * 260 + j] * xv);
                        }
                        ck_assert_msg(close_to(y[r * n + c], acc, sc), "%s %s n=%zu: %g, want %g",
                                      pats[pi], k->name, n, y[r * n + c], acc);
                    }
                free(x);
                free(y);
                sp_spmm_plan_free(plan);
            }
        sp_spmat_free(s);
        free(w);
    }
}
END_TEST

/* Batch-1 kernels given several or strided columns: the plan copies X into
 * contiguous columns first (padded ldx and ldy, n = 1 and n = 3). */
START_TEST(test_plan_columns)
{
    const char *pats[] = {"unstructured", "2:4"};
    for (int bf = 0; bf < 2; bf++)
        for (size_t pi = 0; pi < 2; pi++) {
            sp_pattern p = pat(pats[pi]);
            const size_t m = 45, k = 200;
            float *w = make_weight(m, k, &p, 0.8);
            sp_spmat_opts po;
            sp_spmat_opts_init(&po);
            po.dtype = bf ? SP_BF16 : SP_F32;
            po.sell = true;
            sp_spmat *s = NULL;
            sp_error err = {0};
            ck_assert_int_eq(sp_spmat_pack_ex(&s, w, m, k, &p, &po, &err), SP_OK);
            sp_spmat_unpack(s, w);
            const size_t ns[] = {1, 3};
            for (size_t ni = 0; ni < 2; ni++) {
                const size_t n = ns[ni], ldx = n + 4, ldy = n + 2;
                sp_spmm_opts o;
                sp_spmm_opts_init(&o);
                o.threads = 2;
                o.fallback = SP_FALLBACK_NEVER;
                sp_spmm_plan *plan = NULL;
                ck_assert_int_eq(sp_spmm_plan_new(&plan, s, n, &o, &err), SP_OK);
                float x[200 * 7], y[45 * 5];
                for (size_t i = 0; i < k * ldx; i++)
                    x[i] = rndf();
                for (size_t i = 0; i < m * ldy; i++)
                    y[i] = NAN;
                ck_assert_int_eq(sp_spmm_plan_run(plan, x, ldx, y, ldy, NULL, &err), SP_OK);
                for (size_t r = 0; r < m; r++) {
                    for (size_t c = 0; c < n; c++) {
                        double acc = 0, sc = 0;
                        for (size_t j = 0; j < k; j++) {
                            const double t = (double)w[r * k + j] * x_eff(s, x[j * ldx + c]);
                            acc += t;
                            sc += fabs(t);
                        }
                        ck_assert_msg(close_to(y[r * ldy + c], acc, sc), "%s %s n=%zu: %g, want %g",
                                      pats[pi], sp_spmm_plan_kernel(plan), n, y[r * ldy + c], acc);
                    }
                    for (size_t c = n; c < ldy; c++)
                        ck_assert(isnan(y[r * ldy + c]));
                }
                sp_spmm_plan_free(plan);
            }
            sp_spmat_free(s);
            free(w);
        }
}
END_TEST

/* opts.rows: X [n, K] and Y [n, M] with row strides, every path (batch-1
 * kernels in place, N-vectorised kernels and the dense fallback through
 * transposed copies), f32 and bf16. */
START_TEST(test_plan_rows)
{
    const char *pats[] = {"unstructured", "4x1", "2:4"};
    const size_t m = 37, k = 150;
    int calls = 0;
    for (int bf = 0; bf < 2; bf++)
        for (size_t pi = 0; pi < 3; pi++)
            for (int fb = 0; fb < 3; fb++) {
                sp_pattern p = pat(pats[pi]);
                float *w = make_weight(m, k, &p, 0.8);
                sp_spmat_opts po;
                sp_spmat_opts_init(&po);
                po.dtype = bf ? SP_BF16 : SP_F32;
                sp_spmat *s = NULL;
                sp_error err = {0};
                ck_assert_int_eq(sp_spmat_pack_ex(&s, w, m, k, &p, &po, &err), SP_OK);
                sp_spmat_unpack(s, w);
                const size_t ns[] = {1, 2, 17, 64};
                for (size_t ni = 0; ni < 4; ni++) {
                    const size_t n = ns[ni], ldx = k + 3, ldy = m + 2;
                    sp_spmm_opts o;
                    sp_spmm_opts_init(&o);
                    o.threads = 2;
                    o.rows = true;
                    o.fallback = fb ? SP_FALLBACK_ALWAYS : SP_FALLBACK_NEVER;
                    if (fb == 2) {
                        o.dense = fake_dense;
                        o.dense_ctx = &calls;
                    }
                    sp_spmm_plan *plan = NULL;
                    ck_assert_int_eq(sp_spmm_plan_new(&plan, s, n, &o, &err), SP_OK);
                    float *x = malloc(n * ldx * sizeof(float)), *y = malloc(n * ldy * sizeof(float));
                    float bias[37];
                    for (size_t i = 0; i < n * ldx; i++)
                        x[i] = rndf();
                    for (size_t i = 0; i < n * ldy; i++)
                        y[i] = NAN;
                    for (size_t i = 0; i < m; i++)
                        bias[i] = rndf();
                    ck_assert_int_eq(sp_spmm_plan_run(plan, x, k - 1, y, ldy, bias, &err),
                                     SP_ERR_INVALID_ARG); /* row stride below K */
                    ck_assert_int_eq(sp_spmm_plan_run(plan, x, ldx, y, m - 1, bias, &err),
                                     SP_ERR_INVALID_ARG);
                    ck_assert_int_eq(sp_spmm_plan_run(plan, x, ldx, y, ldy, bias, &err), SP_OK);
                    const bool rounds = bf && !sp_spmm_plan_is_dense(plan);
                    for (size_t c = 0; c < n; c++) {
                        for (size_t r = 0; r < m; r++) {
                            double acc = bias[r], sc = fabs(bias[r]);
                            for (size_t j = 0; j < k; j++) {
                                const float xv = rounds ? sp_bf16_to_f32(sp_bf16_from_f32(x[c * ldx + j]))
                                                        : x[c * ldx + j];
                                acc += (double)w[r * k + j] * xv;
                                sc += fabs((double)w[r * k + j] * xv);
                            }
                            ck_assert_msg(close_to(y[c * ldy + r], acc, sc),
                                          "%s bf16=%d fb=%d n=%zu (%s): y[%zu,%zu] %g, want %g",
                                          pats[pi], bf, fb, n, sp_spmm_plan_kernel(plan), c, r,
                                          y[c * ldy + r], acc);
                        }
                        for (size_t r = m; r < ldy; r++)
                            ck_assert(isnan(y[c * ldy + r]));
                    }
                    free(x);
                    free(y);
                    sp_spmm_plan_free(plan);
                }
                sp_spmat_free(s);
                free(w);
            }
    ck_assert_int_gt(calls, 0);
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
        {"ukernels_sell", test_kernels_sell},
        {"ukernels_nm24", test_kernels_nm24},
        {"ukernels_bf16", test_kernels_bf16},
        {"sp_bf16_from_f32", test_bf16_from_f32},
        {"bf16_exact", test_bf16_exact},
        {"bf16_hardware", test_bf16_hardware},
        {"sp_spmm_plan_measure", test_plan_measure},
        {"sp_threadpool", test_threadpool},
        {"sp_spmm_plan_update", test_plan_update},
        {"sp_spmm_plan_bf16", test_plan_bf16},
        {"sp_spmm_plan_columns", test_plan_columns},
        {"sp_spmm_plan_rows", test_plan_rows},
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
