/*
 * sparsify bench — time our sparse kernels against dense BLAS (OpenBLAS
 * cblas_sgemm) on the same data, in the same run, with the same threads.
 *
 *   sparsify bench --shape MxK --batch N --pattern P --sparsity S
 *                  [--threads T] [--json] [--kernel NAME] [--isa ISA]
 *                  [--fallback auto|never|measure] [--reps R] [--seed S]
 *   sparsify bench MODEL [--batch N] [--pattern P] [--sparsity S] ...
 *
 * Method (docs/benchmarks.md): weights uniform in [-1, 1] pruned by
 * magnitude to the pattern and sparsity (sp_mask_select), activations
 * uniform in [-1, 1] in 64-byte aligned buffers. Dense and sparse runs are timed in three alternating
 * rounds, each a 150 ms pause (idle_pause), 2 warm-up runs, then timed runs
 * (so neither side's idle threads spin against the other); each run is timed alone with
 * CLOCK_MONOTONIC and the median of all timed runs is reported. The sparse
 * result is checked against the dense product: max_rel_error is
 * max |y - y_ref| / max |y_ref|; above 1e-4 the bench fails (exit 1).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/report.h"

#ifdef SP_HAVE_BLAS
#include <cblas.h>
#endif

static const char usage_text[] =
    "usage: sparsify bench --shape MxK --batch N --pattern P --sparsity S [options]\n"
    "       sparsify bench MODEL [--batch N] [--pattern P] [--sparsity S] [options]\n"
    "\n"
    "Time Y[MxN] = W[MxK] . X[KxN] with our sparse kernels and with dense BLAS\n"
    "(OpenBLAS cblas_sgemm) on the same data in the same run, check our result\n"
    "against the dense product and print a table (median of the timed runs).\n"
    "\n"
    "With MODEL (a checkpoint file or folder), every prunable weight (rank 2,\n"
    "or a 1x1 convolution) is timed, per layer and in total; its zeros are\n"
    "used as they are unless --sparsity is given (then it is pruned to it).\n"
    "\n"
    "options:\n"
    "  --shape MxK        weight shape: M outputs, K inputs (synthetic mode)\n"
    "  --batch N[,N...]   columns of X (tokens); several give several rows (64)\n"
    "  --pattern P        unstructured, RxC blocks (4x1, 1x4, 8x8, ...), N:M (2:4)\n"
    "                     (default unstructured)\n"
    "  --sparsity S       fraction of zeros, 0..1 (synthetic default 0.9;\n"
    "                     ignored for N:M, which prunes to n of every m)\n"
    "  --threads T        threads for both sides (default: every core)\n"
    "  --kernel NAME      force a ukernel (see --list)\n"
    "  --isa ISA          cap the ISA: scalar, avx2, avx512\n"
    "  --fallback F       auto (estimate), never, measure (time both once)\n"
    "  --reps R           timed runs per side (default 30, at least 3)\n"
    "  --seed S           random seed (default 1)\n"
    "  --list             list the ukernels and whether this CPU runs them\n"
    "  --json             print JSON (an object, or a list for several rows)\n"
    "  --report-html FILE\n"
    "                     with MODEL: also write an HTML page, a sparsity bar\n"
    "                     and a speedup bar per layer\n"
    "  --force            replace an existing --report-html file\n"
    "  -h, --help         show this help\n"
    "\n"
    "JSON fields: shape, batch, pattern, sparsity, threads, kernel, isa,\n"
    "baseline, dense_ms, sparse_ms, dense_gflops, sparse_gflops (useful\n"
    "2*nnz*N / time), effective_gflops (2*M*K*N / time), speedup\n"
    "(dense_ms / sparse_ms), max_rel_error.\n"
    "\n"
    "exit codes: 0 ok, 1 a result check failed, 2 usage or bad input\n";

typedef struct bench_opts {
    long threads;
    long reps;
    unsigned long seed;
    const char *kernel;
    sp_isa max_isa;
    sp_fallback fallback;
    sp_pattern pattern;
    bool pattern_set;
    double sparsity;
    bool sparsity_set;
    bool json;
    const char *html; /* --report-html */
} bench_opts;

typedef struct bench_result {
    char name[256]; /* layer name in model mode */
    size_t m, k, n;
    size_t nnz;
    double sparsity;
    char kernel[96];
    const char *isa;
    double dense_ms, sparse_ms; /* dense_ms < 0: no baseline */
    double max_rel_error;
} bench_result;

/* ---- helpers ----------------------------------------------------------- */

static size_t at_least_1(size_t v) { return v ? v : 1; }

static float *alloc64(size_t nfloats)
{
    const size_t bytes = (at_least_1(nfloats) * sizeof(float) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/*
 * Idle worker threads spin before they sleep: OpenBLAS's for 2^28 TSC ticks
 * (about 0.1 s here) after every call, libgomp's briefly. On a machine with
 * as many cores as threads, a spinning pool of one side halves the other
 * side's speed, so each timed block starts after a pause long enough for the
 * other side's workers to go to sleep — each side is timed as if alone.
 */
static void idle_pause(void)
{
    const struct timespec ts = {0, 150 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Uniform in [-1, 1), never exactly 0. */
static float rng_float(uint64_t *s)
{
    float v = (float)((rng_next(s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    return v == 0.0f ? 0.5f : v;
}

#ifdef SP_HAVE_BLAS
static void blas_gemm(void *ctx, size_t m, size_t n, size_t k, const float *w,
                      const float *x, size_t ldx, float *y, size_t ldy, int threads)
{
    (void)ctx;
#ifdef OPENBLAS_VERSION
    openblas_set_num_threads(threads);
#else
    (void)threads;
#endif
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, w,
                (int)k, x, (int)ldx, 0.0f, y, (int)ldy);
}
#endif

#ifndef SP_HAVE_BLAS
/* Reference product in double precision (used when there is no BLAS). */
static void ref_gemm(size_t m, size_t n, size_t k, const float *w, const float *x, float *y)
{
    double *acc = malloc(n * sizeof *acc);
    if (!acc)
        return;
    for (size_t i = 0; i < m; i++) {
        for (size_t c = 0; c < n; c++)
            acc[c] = 0;
        for (size_t j = 0; j < k; j++) {
            const double v = w[i * k + j];
            if (v != 0)
                for (size_t c = 0; c < n; c++)
                    acc[c] += v * x[j * n + c];
        }
        for (size_t c = 0; c < n; c++)
            y[i * n + c] = (float)acc[c];
    }
    free(acc);
}
#endif

/* ---- one benchmark ----------------------------------------------------- */

/* Time and check W (dense masked, m x k) at batch n. */
static sp_status bench_one(const bench_opts *o, const float *w, size_t m, size_t k,
                           size_t n, bench_result *r, sp_error *err)
{
    sp_status st = SP_OK;
    sp_spmat *sm = NULL;
    sp_spmm_plan *plan = NULL;
    /* 64-byte aligned, as PyTorch's CPU allocator aligns activations. */
    float *x = alloc64(k * n), *yd = alloc64(m * n), *ys = alloc64(m * n);
    const size_t reps = (size_t)o->reps;
    double *td = malloc(reps * sizeof(double)), *ts = malloc(reps * sizeof(double));
    if (!x || !yd || !ys || !td || !ts) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    uint64_t seed = o->seed * 0x9E3779B97F4A7C15ull + 7;
    for (size_t i = 0; i < k * n; i++)
        x[i] = rng_float(&seed);

    r->m = m;
    r->k = k;
    r->n = n;
    st = sp_spmat_pack(&sm, w, m, k, &o->pattern, err);
    if (st != SP_OK)
        goto out;
    r->nnz = sm->nnz;
    r->sparsity = m && k ? 1.0 - (double)sm->nnz / ((double)m * (double)k) : 0;

    sp_spmm_opts so;
    sp_spmm_opts_init(&so);
    so.threads = (int)o->threads;
    so.kernel = o->kernel;
    so.max_isa = o->max_isa;
    so.fallback = o->fallback;
#ifdef SP_HAVE_BLAS
    so.dense = blas_gemm;
#endif
    st = sp_spmm_plan_new(&plan, sm, n, &so, err);
    if (st != SP_OK)
        goto out;
    snprintf(r->kernel, sizeof r->kernel, "%s", sp_spmm_plan_kernel(plan));
    {
        const sp_ukernel_info *ui = sp_ukernel_find(r->kernel);
        r->isa = ui ? sp_isa_name(ui->isa) : "blas";
    }

    /* Three rounds of [dense block, sparse block]; 2 warm-up runs each, and
     * a pause before each block (see idle_pause). */
    size_t nd = 0, ns = 0;
    (void)nd; /* unused without BLAS */
    r->dense_ms = -1;
    for (int round = 0; round < 3; round++) {
        const size_t cnt = reps / 3 + ((size_t)round < reps % 3);
#ifdef SP_HAVE_BLAS
        idle_pause();
        for (size_t i = 0; i < cnt + 2; i++) {
            const double t0 = now_ms();
            blas_gemm(NULL, m, n, k, w, x, n, yd, n, (int)o->threads);
            const double t = now_ms() - t0;
            if (i >= 2)
                td[nd++] = t;
        }
#endif
        idle_pause();
        for (size_t i = 0; i < cnt + 2; i++) {
            const double t0 = now_ms();
            st = sp_spmm_plan_run(plan, x, n, ys, n, NULL, err);
            const double t = now_ms() - t0;
            if (st != SP_OK)
                goto out;
            if (i >= 2)
                ts[ns++] = t;
        }
    }
#ifdef SP_HAVE_BLAS
    r->dense_ms = median(td, nd);
#else
    ref_gemm(m, n, k, w, x, yd);
#endif
    r->sparse_ms = median(ts, ns);

    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < m * n; i++) {
        const double a = fabs((double)yd[i]), d = fabs((double)ys[i] - (double)yd[i]);
        if (a > maxref)
            maxref = a;
        if (d > maxdiff || isnan(d))
            maxdiff = isnan(d) ? INFINITY : d;
    }
    r->max_rel_error = maxref > 0 ? maxdiff / maxref : maxdiff;
out:
    sp_spmm_plan_free(plan);
    sp_spmat_free(sm);
    free(x);
    free(yd);
    free(ys);
    free(td);
    free(ts);
    return st;
}

/* ---- output ------------------------------------------------------------ */

static double gflops(double flops, double ms) { return ms > 0 ? flops / (ms * 1e6) : 0; }

static cJSON *result_json(const bench_opts *o, const bench_result *r)
{
    char buf[64];
    cJSON *j = cJSON_CreateObject();
    if (r->name[0])
        cJSON_AddStringToObject(j, "layer", r->name);
    snprintf(buf, sizeof buf, "%zux%zu", r->m, r->k);
    cJSON_AddStringToObject(j, "shape", buf);
    cJSON_AddNumberToObject(j, "batch", (double)r->n);
    cJSON_AddStringToObject(j, "pattern", sp_pattern_str(&o->pattern, buf, sizeof buf));
    cJSON_AddNumberToObject(j, "sparsity", r->sparsity);
    cJSON_AddNumberToObject(j, "nnz", (double)r->nnz);
    cJSON_AddNumberToObject(j, "threads", (double)o->threads);
    cJSON_AddStringToObject(j, "kernel", r->kernel);
    cJSON_AddStringToObject(j, "isa", r->isa);
    const double dflops = 2.0 * (double)r->m * (double)r->k * (double)r->n;
    const double uflops = 2.0 * (double)r->nnz * (double)r->n;
    if (r->dense_ms >= 0) {
        cJSON_AddStringToObject(j, "baseline", "openblas cblas_sgemm");
        cJSON_AddNumberToObject(j, "dense_ms", r->dense_ms);
        cJSON_AddNumberToObject(j, "dense_gflops", gflops(dflops, r->dense_ms));
    } else {
        cJSON_AddStringToObject(j, "baseline", "unavailable");
        cJSON_AddNullToObject(j, "dense_ms");
        cJSON_AddNullToObject(j, "dense_gflops");
    }
    cJSON_AddNumberToObject(j, "sparse_ms", r->sparse_ms);
    cJSON_AddNumberToObject(j, "sparse_gflops", gflops(uflops, r->sparse_ms));
    cJSON_AddNumberToObject(j, "effective_gflops", gflops(dflops, r->sparse_ms));
    if (r->dense_ms >= 0)
        cJSON_AddNumberToObject(j, "speedup", r->sparse_ms > 0 ? r->dense_ms / r->sparse_ms : 0);
    else
        cJSON_AddNullToObject(j, "speedup");
    cJSON_AddNumberToObject(j, "max_rel_error", r->max_rel_error);
    return j;
}

static void table_header(bool model)
{
    printf("%-*s %-11s %5s %-12s %8s %3s %-40s %9s %9s %8s %8s %8s %9s\n", model ? 28 : 0,
           model ? "layer" : "", "shape", "batch", "pattern", "sparsity", "thr", "kernel",
           "dense_ms", "sparse_ms", "dense_GF", "sparse_GF", "speedup", "max_rel");
}

static void table_row(const bench_opts *o, const bench_result *r, bool model)
{
    char shape[48], pat[32], sp[16];
    snprintf(shape, sizeof shape, "%zux%zu", r->m, r->k);
    const double dflops = 2.0 * (double)r->m * (double)r->k * (double)r->n;
    const double uflops = 2.0 * (double)r->nnz * (double)r->n;
    if (r->dense_ms >= 0)
        snprintf(sp, sizeof sp, "%.2fx", r->dense_ms / r->sparse_ms);
    else
        snprintf(sp, sizeof sp, "n/a");
    char dms[16], dgf[16];
    if (r->dense_ms >= 0) {
        snprintf(dms, sizeof dms, "%.3f", r->dense_ms);
        snprintf(dgf, sizeof dgf, "%.1f", gflops(dflops, r->dense_ms));
    } else {
        snprintf(dms, sizeof dms, "n/a");
        snprintf(dgf, sizeof dgf, "n/a");
    }
    printf("%-*s %-11s %5zu %-12s %8.4f %3ld %-40s %9s %9.3f %8s %8.1f %8s %9.1e\n",
           model ? 28 : 0, model ? r->name : "", shape, r->n,
           sp_pattern_str(&o->pattern, pat, sizeof pat), r->sparsity, o->threads, r->kernel,
           dms, r->sparse_ms, dgf, gflops(uflops, r->sparse_ms), sp, r->max_rel_error);
}

/* ---- modes ------------------------------------------------------------- */

static sp_status make_weights(const bench_opts *o, size_t m, size_t k, float **out,
                              sp_error *err)
{
    *out = NULL;
    float *w = malloc(at_least_1(m * k) * sizeof(float));
    uint8_t *mask = malloc(at_least_1(m * k));
    if (!w || !mask) {
        free(w);
        free(mask);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory for a %zux%zu weight", m, k);
    }
    uint64_t seed = o->seed * 0xD1B54A32D192ED03ull + 3;
    for (size_t i = 0; i < m * k; i++)
        w[i] = rng_float(&seed);
    const int64_t shape[2] = {(int64_t)m, (int64_t)k};
    sp_status st = sp_mask_select(mask, SP_F32, w, NULL, 2, shape, &o->pattern, o->sparsity,
                                  SP_BLOCK_SCORE_L1, err);
    if (st == SP_OK)
        sp_mask_apply(w, SP_F32, m * k, mask);
    free(mask);
    if (st != SP_OK) {
        free(w);
        return st;
    }
    *out = w;
    return SP_OK;
}

static int check_errors(const bench_result *r, size_t n)
{
    int rc = EXIT_OK;
    for (size_t i = 0; i < n; i++)
        if (!(r[i].max_rel_error <= 1e-4)) {
            cli_error("%s%s%zux%zu batch %zu: result differs from the dense product "
                      "(max relative error %.3g)", r[i].name, r[i].name[0] ? ": " : "",
                      r[i].m, r[i].k, r[i].n, r[i].max_rel_error);
            rc = EXIT_FAILED;
        }
    return rc;
}

static void print_results(const bench_opts *o, const bench_result *r, size_t nr, bool model)
{
    if (o->json) {
        cJSON *root;
        if (!model && nr == 1) {
            root = result_json(o, &r[0]);
        } else if (!model) {
            root = cJSON_CreateArray();
            for (size_t i = 0; i < nr; i++)
                cJSON_AddItemToArray(root, result_json(o, &r[i]));
        } else {
            root = cJSON_CreateObject();
            cJSON *layers = cJSON_AddArrayToObject(root, "layers");
            double d = 0, s = 0, fl = 0, ufl = 0;
            bool have_dense = true;
            for (size_t i = 0; i < nr; i++) {
                cJSON_AddItemToArray(layers, result_json(o, &r[i]));
                d += r[i].dense_ms;
                s += r[i].sparse_ms;
                fl += 2.0 * (double)r[i].m * (double)r[i].k * (double)r[i].n;
                ufl += 2.0 * (double)r[i].nnz * (double)r[i].n;
                have_dense = have_dense && r[i].dense_ms >= 0;
            }
            cJSON *t = cJSON_AddObjectToObject(root, "total");
            cJSON_AddNumberToObject(t, "layers", (double)nr);
            if (have_dense) {
                cJSON_AddNumberToObject(t, "dense_ms", d);
                cJSON_AddNumberToObject(t, "dense_gflops", gflops(fl, d));
                cJSON_AddNumberToObject(t, "speedup", s > 0 ? d / s : 0);
            } else {
                cJSON_AddNullToObject(t, "dense_ms");
                cJSON_AddNullToObject(t, "speedup");
            }
            cJSON_AddNumberToObject(t, "sparse_ms", s);
            cJSON_AddNumberToObject(t, "sparse_gflops", gflops(ufl, s));
        }
        char *txt = cJSON_Print(root);
        if (txt)
            puts(txt);
        free(txt);
        cJSON_Delete(root);
        return;
    }
#ifndef SP_HAVE_BLAS
    printf("dense baseline unavailable: built without BLAS (checked against a scalar "
           "double-precision product)\n");
#endif
    table_header(model);
    double d = 0, s = 0;
    for (size_t i = 0; i < nr; i++) {
        table_row(o, &r[i], model);
        d += r[i].dense_ms;
        s += r[i].sparse_ms;
    }
    if (model) {
        if (nr && r[0].dense_ms >= 0)
            printf("total: %zu layers, dense %.3f ms, sparse %.3f ms, speedup %.2fx\n", nr, d,
                   s, s > 0 ? d / s : 0);
        else
            printf("total: %zu layers, sparse %.3f ms\n", nr, s);
    }
}

static int bench_synthetic(const bench_opts *o, size_t m, size_t k, const size_t *batches,
                           size_t nb)
{
    sp_error err = {0};
    float *w = NULL;
    bench_result *res = calloc(nb, sizeof *res);
    int rc = EXIT_OK;
    if (!res)
        return cli_error("out of memory"), EXIT_FAILED;
    sp_status st = make_weights(o, m, k, &w, &err);
    for (size_t i = 0; st == SP_OK && i < nb; i++)
        st = bench_one(o, w, m, k, batches[i], &res[i], &err);
    if (st != SP_OK) {
        rc = cli_fail(&err);
        goto out;
    }
    print_results(o, res, nb, false);
    rc = check_errors(res, nb);
out:
    free(w);
    free(res);
    return rc;
}

/* A weight we can time: floating, selected by the default rule, and a
 * matrix ([out, in] or a 1x1 convolution [out, in, 1, 1]). */
static bool prunable_matrix(const sp_tensor *t, size_t *m, size_t *k)
{
    if (!sp_dtype_is_float(t->dtype) || !sp_select_default(t->name, t->dtype, t->ndim))
        return false;
    if (t->ndim == 2 || (t->ndim == 4 && t->shape[2] == 1 && t->shape[3] == 1)) {
        *m = (size_t)t->shape[0];
        *k = (size_t)t->shape[1];
        return *m > 0 && *k > 0;
    }
    return false;
}

/* --report-html: one row per layer (and batch), sparsity and speedup. */
static int write_html(const bench_opts *o, const char *path, const sp_ckpt *ck,
                      const bench_result *r, size_t nr, size_t nb)
{
    cli_report rp;
    cli_report_init(&rp, "bench", path);
    rp.format = sp_format_name(sp_ckpt_format(ck));
    rp.input_bytes = cli_path_bytes(path);
    cli_report_row *rows = calloc(nr, sizeof *rows);
    char (*names)[300] = calloc(nr, sizeof *names);
    char (*shapes)[48] = calloc(nr, sizeof *shapes);
    char pattern[32];
    char *text = NULL;
    double d = 0, s = 0;
    if (rows && names && shapes) {
        sp_pattern_str(&o->pattern, pattern, sizeof pattern);
        for (size_t i = 0; i < nr; i++) {
            cli_report_row *w = &rows[i];
            if (nb > 1)
                snprintf(names[i], sizeof names[i], "%s @ batch %zu", r[i].name, r[i].n);
            else
                snprintf(names[i], sizeof names[i], "%s", r[i].name);
            cli_report_row_init(w, names[i]);
            snprintf(shapes[i], sizeof shapes[i], "[%zu, %zu]", r[i].m, r[i].k);
            w->shape = shapes[i];
            w->pattern = o->sparsity_set || o->pattern.kind == SP_PATTERN_NM ? pattern : NULL;
            w->numel = (uint64_t)r[i].m * r[i].k;
            w->sparsity = r[i].sparsity;
            w->note = r[i].kernel;
            if (r[i].dense_ms > 0 && r[i].sparse_ms > 0)
                w->speedup = r[i].dense_ms / r[i].sparse_ms;
            d += r[i].dense_ms;
            s += r[i].sparse_ms;
        }
        if (nr && r[0].dense_ms >= 0 && s > 0)
            rp.speedup = d / s;
        rp.rows = rows;
        rp.nrows = nr;
        text = cli_report_html(&rp);
    }
    free(rows);
    free(names);
    free(shapes);
    return cli_report_write(o->html, text);
}

static int bench_model(const bench_opts *o, const char *path, const size_t *batches,
                       size_t nb)
{
    sp_error err = {0};
    sp_ckpt *ck = NULL;
    bench_result *res = NULL;
    float *w = NULL;
    uint8_t *mask = NULL;
    size_t nr = 0, cap = 0;
    int rc = EXIT_OK;
    sp_status st = sp_ckpt_open(&ck, path, &err);
    if (st != SP_OK)
        return cli_fail(&err);
    for (size_t ti = 0; ti < sp_ckpt_num_tensors(ck); ti++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, ti);
        size_t m, k;
        if (!prunable_matrix(t, &m, &k))
            continue;
        if (!sp_tensor_is_contiguous(t)) {
            cli_warn("'%s': skipped (not a contiguous view)", t->name);
            continue;
        }
        const void *data;
        st = sp_ckpt_tensor_data(ck, ti, &data, &err);
        if (st != SP_OK) {
            sp_error_prefix(&err, "tensor '%s'", t->name);
            goto fail;
        }
        free(w);
        free(mask);
        w = malloc(m * k * sizeof(float));
        mask = malloc(m * k);
        if (!w || !mask) {
            st = sp_error_set(&err, SP_ERR_NOMEM, "out of memory for '%s'", t->name);
            goto fail;
        }
        for (size_t i = 0; i < m * k; i++)
            w[i] = (float)sp_dtype_load(t->dtype, data, i);
        sp_ckpt_storage_release(ck, t->storage);
        if (o->sparsity_set || o->pattern.kind == SP_PATTERN_NM) {
            const int64_t shape[2] = {(int64_t)m, (int64_t)k};
            st = sp_mask_select(mask, SP_F32, w, NULL, 2, shape, &o->pattern,
                                o->sparsity_set ? o->sparsity : 0.0, SP_BLOCK_SCORE_L1, &err);
            if (st != SP_OK) {
                sp_error_prefix(&err, "tensor '%s'", t->name);
                goto fail;
            }
            /* Keep zeros already there: prune = mask AND nonzero. */
            sp_mask_apply(w, SP_F32, m * k, mask);
        }
        for (size_t b = 0; b < nb; b++) {
            if (nr == cap) {
                cap = cap ? 2 * cap : 16;
                bench_result *nres = realloc(res, cap * sizeof *res);
                if (!nres) {
                    st = sp_error_set(&err, SP_ERR_NOMEM, "out of memory");
                    goto fail;
                }
                res = nres;
            }
            memset(&res[nr], 0, sizeof res[nr]);
            snprintf(res[nr].name, sizeof res[nr].name, "%s", t->name);
            st = bench_one(o, w, m, k, batches[b], &res[nr], &err);
            if (st != SP_OK) {
                sp_error_prefix(&err, "tensor '%s'", t->name);
                goto fail;
            }
            nr++;
        }
    }
    if (nr == 0) {
        cli_error("'%s': no prunable weight matrices", path);
        rc = EXIT_USAGE;
        goto out;
    }
    print_results(o, res, nr, true);
    rc = check_errors(res, nr);
    if (o->html && rc == EXIT_OK)
        rc = write_html(o, path, ck, res, nr, nb);
    goto out;
fail:
    rc = cli_fail(&err);
out:
    free(w);
    free(mask);
    free(res);
    sp_ckpt_close(ck);
    return rc;
}

/* ---- argv -------------------------------------------------------------- */

static int list_kernels(void)
{
    printf("%-44s %-7s %-6s %s\n", "kernel", "isa", "layout", "this cpu");
    for (size_t i = 0; i < sp_ukernel_count(); i++) {
        const sp_ukernel_info *k = sp_ukernel_at(i);
        printf("%-44s %-7s %-6s %s\n", k->name, sp_isa_name(k->isa), sp_layout_name(k->layout),
               sp_isa_supported(k->isa) ? "yes" : "no (skipped)");
    }
    return EXIT_OK;
}

static bool parse_shape(const char *s, size_t *m, size_t *k)
{
    char *end;
    unsigned long long a = strtoull(s, &end, 10);
    if (end == s || (*end != 'x' && *end != 'X'))
        return false;
    const char *p = end + 1;
    unsigned long long b = strtoull(p, &end, 10);
    if (end == p || *end || a == 0 || b == 0 || a > (1u << 20) || b > (1u << 20) ||
        a * b > (1ull << 30))
        return false;
    *m = (size_t)a;
    *k = (size_t)b;
    return true;
}

int cmd_bench(int argc, char **argv)
{
    bench_opts o = {0};
    o.threads = sysconf(_SC_NPROCESSORS_ONLN);
    if (o.threads < 1)
        o.threads = 1;
    o.reps = 30;
    o.seed = 1;
    o.max_isa = SP_ISA_COUNT;
    o.fallback = SP_FALLBACK_AUTO;
    o.sparsity = 0.9;
    o.pattern.kind = SP_PATTERN_UNSTRUCTURED;
    const char *shape = NULL, *model = NULL;
    size_t batches[16] = {64};
    size_t nb = 1;
    sp_error err = {0};
    bool force = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                           \
    do {                                                                       \
        if (!v)                                                                \
            return cli_usage_error("bench", "option '%s' needs a value", a); \
        i++;                                                                   \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "--list")) {
            return list_kernels();
        } else if (!strcmp(a, "--json")) {
            o.json = true;
        } else if (!strcmp(a, "--force")) {
            force = true;
        } else if (!strcmp(a, "--report-html")) {
            NEED_VALUE();
            o.html = v;
        } else if (!strcmp(a, "--shape")) {
            NEED_VALUE();
            shape = v;
        } else if (!strcmp(a, "--batch")) {
            NEED_VALUE();
            nb = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
                 tok = strtok_r(NULL, ",", &save)) {
                long b;
                if (!cli_parse_long("--batch", tok, &b))
                    return EXIT_USAGE;
                if (b < 1 || b > 1000000 || nb == 16)
                    return cli_usage_error("bench", "option '--batch': '%s' must be 1..1000000 "
                                           "(at most 16 values)", tok);
                batches[nb++] = (size_t)b;
            }
            if (nb == 0)
                return cli_usage_error("bench", "option '--batch': empty list");
        } else if (!strcmp(a, "--pattern")) {
            NEED_VALUE();
            if (sp_pattern_parse(&o.pattern, v, &err) != SP_OK)
                return cli_usage_error("bench", "option '--pattern': %s", err.msg);
            o.pattern_set = true;
        } else if (!strcmp(a, "--sparsity")) {
            NEED_VALUE();
            if (!cli_parse_double("--sparsity", v, &o.sparsity))
                return EXIT_USAGE;
            if (!(o.sparsity >= 0 && o.sparsity <= 1))
                return cli_usage_error("bench", "option '--sparsity': %s is not in 0..1", v);
            o.sparsity_set = true;
        } else if (!strcmp(a, "--threads")) {
            NEED_VALUE();
            if (!cli_parse_long("--threads", v, &o.threads))
                return EXIT_USAGE;
            if (o.threads < 1 || o.threads > 1024)
                return cli_usage_error("bench", "option '--threads': %s is not in 1..1024", v);
        } else if (!strcmp(a, "--reps")) {
            NEED_VALUE();
            if (!cli_parse_long("--reps", v, &o.reps))
                return EXIT_USAGE;
            if (o.reps < 3 || o.reps > 100000)
                return cli_usage_error("bench", "option '--reps': %s is not in 3..100000", v);
        } else if (!strcmp(a, "--seed")) {
            NEED_VALUE();
            long s;
            if (!cli_parse_long("--seed", v, &s))
                return EXIT_USAGE;
            o.seed = (unsigned long)s;
        } else if (!strcmp(a, "--kernel")) {
            NEED_VALUE();
            const sp_ukernel_info *k = sp_ukernel_find(v);
            if (!k)
                return cli_usage_error("bench", "option '--kernel': no kernel '%s' "
                                       "(see 'sparsify bench --list')", v);
            if (!sp_isa_supported(k->isa))
                return cli_usage_error("bench", "option '--kernel': this cpu cannot run "
                                       "'%s' (%s)", v, sp_isa_name(k->isa));
            o.kernel = k->name;
        } else if (!strcmp(a, "--isa")) {
            NEED_VALUE();
            int found = -1;
            for (int j = 0; j < SP_ISA_COUNT; j++)
                if (!strcmp(v, sp_isa_name((sp_isa)j)))
                    found = j;
            if (found < 0)
                return cli_usage_error("bench", "option '--isa': '%s' is not scalar, avx2 "
                                       "or avx512", v);
            if (!sp_isa_supported((sp_isa)found))
                return cli_usage_error("bench", "option '--isa': this cpu has no %s", v);
            o.max_isa = (sp_isa)found;
        } else if (!strcmp(a, "--fallback")) {
            NEED_VALUE();
            if (!strcmp(v, "auto"))
                o.fallback = SP_FALLBACK_AUTO;
            else if (!strcmp(v, "never"))
                o.fallback = SP_FALLBACK_NEVER;
            else if (!strcmp(v, "measure"))
                o.fallback = SP_FALLBACK_MEASURE;
            else
                return cli_usage_error("bench", "option '--fallback': '%s' is not auto, never "
                                       "or measure", v);
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("bench", "unknown option '%s'", a);
        } else if (!model) {
            model = a;
        } else {
            return cli_usage_error("bench", "unexpected argument '%s'", a);
        }
#undef NEED_VALUE
    }
    if (model && shape)
        return cli_usage_error("bench", "give either MODEL or --shape, not both");
    if (!model && !shape)
        return cli_usage_error("bench", "give MODEL or --shape MxK");
    if (o.html && !model)
        return cli_usage_error("bench", "--report-html needs MODEL (its layers are the rows)");
    int orc;
    if (o.html && (orc = cli_output_check(model, o.html, (force ? CLI_OUT_FORCE : 0) |
                                                            CLI_OUT_NEVER_IN_PLACE)))
        return orc;
    if (model)
        return bench_model(&o, model, batches, nb);
    size_t m, k;
    if (!parse_shape(shape, &m, &k))
        return cli_usage_error("bench", "option '--shape': '%s' is not MxK (e.g. 3072x768)",
                               shape);
    return bench_synthetic(&o, m, k, batches, nb);
}
