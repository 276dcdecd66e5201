/*
 * kernels/spmm.c — the registry of ukernels (from kernels/f32-spmm.inc),
 * run-time ISA detection, and the dispatcher: sp_spmm_plan validates its
 * inputs, chooses a ukernel once (ISA, layout, n), splits the rows into one
 * panel per thread balanced by stored values, and falls back to a dense
 * product when that is estimated (or measured) to be faster.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/pool.h"
#include "kernels/ukernels.h"

/* ---- registry ---------------------------------------------------------- */

static const sp_ukernel_info registry[] = {
#define SP_UKERNEL(name, isa, layout, spmv, ref) \
    {#name, SP_ISA_##isa, SP_LAYOUT_##layout, spmv, ref, name},
#include "kernels/f32-spmm.inc"
#undef SP_UKERNEL
};

size_t sp_ukernel_count(void) { return sizeof registry / sizeof registry[0]; }

const sp_ukernel_info *sp_ukernel_at(size_t i)
{
    return i < sp_ukernel_count() ? &registry[i] : NULL;
}

const sp_ukernel_info *sp_ukernel_find(const char *name)
{
    for (size_t i = 0; i < sp_ukernel_count(); i++)
        if (!strcmp(registry[i].name, name))
            return &registry[i];
    return NULL;
}

/* ---- CPU features ------------------------------------------------------ */

const char *sp_isa_name(sp_isa isa)
{
    switch (isa) {
    case SP_ISA_SCALAR: return "scalar";
    case SP_ISA_AVX2: return "avx2";
    case SP_ISA_AVX512: return "avx512";
    case SP_ISA_COUNT: break;
    }
    return "?";
}

bool sp_isa_supported(sp_isa isa)
{
    switch (isa) {
    case SP_ISA_SCALAR:
        return true;
#if defined(__x86_64__) || defined(__i386__)
    case SP_ISA_AVX2:
        return SP_KERNELS_AVX2 && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
    case SP_ISA_AVX512:
        return SP_KERNELS_AVX512 && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq");
#endif
    default:
        return false;
    }
}

sp_isa sp_isa_best(void)
{
    for (int i = SP_ISA_COUNT - 1; i > 0; i--)
        if (sp_isa_supported((sp_isa)i))
            return (sp_isa)i;
    return SP_ISA_SCALAR;
}

/* ---- plan -------------------------------------------------------------- */

struct sp_spmm_plan {
    const sp_spmat *w;
    size_t n;
    int threads;
    const sp_ukernel_info *uk;  /* the kernel run (sparse or built-in dense) */
    const sp_ukernel_info *alt; /* uk is an SpMV kernel: the one for huge ldx */
    const sp_spmat *mat;        /* what uk runs on: w, or dense_w */
    sp_spmat *dense_w;          /* owned dense copy (fallback) */
    sp_spmat *csr1;             /* owned one-panel CSR copy (SpMV) */
    sp_dense_gemm_fn dense;     /* caller's dense product (fallback) */
    void *dense_ctx;
    bool is_dense;
    sp_pool *pool;              /* threads - 1 workers, owned */
    size_t nchunks;             /* row chunks handed to threads */
    size_t *bounds;             /* nchunks + 1 panel boundaries of mat */
};

void sp_spmm_opts_init(sp_spmm_opts *o)
{
    memset(o, 0, sizeof *o);
    o->backend = SP_BACKEND_CPU;
    o->max_isa = SP_ISA_COUNT;
    o->fallback = SP_FALLBACK_AUTO;
}

/* The preferred ukernel for a layout: the best ISA allowed; at an ISA, an
 * SpMV kernel when n == 1 and there is one, otherwise the first listed. */
static const sp_ukernel_info *pick(sp_layout layout, sp_isa max_isa, size_t n,
                                   bool allow_spmv)
{
    for (int isa = (int)max_isa; isa >= 0; isa--) {
        if (!sp_isa_supported((sp_isa)isa))
            continue;
        const sp_ukernel_info *first = NULL, *spmv = NULL;
        for (size_t i = 0; i < sp_ukernel_count(); i++) {
            const sp_ukernel_info *k = &registry[i];
            if (k->isa != (sp_isa)isa || k->layout != layout)
                continue;
            if (k->spmv && !spmv && allow_spmv)
                spmv = k;
            else if (!k->spmv && !first)
                first = k;
        }
        if (n == 1 && spmv)
            return spmv;
        if (first)
            return first;
    }
    return NULL;
}

static size_t panels(const sp_spmat *m)
{
    return m->layout == SP_LAYOUT_BCSR ? m->nbrows : m->rows;
}

/* Split [0, np) panels into nc chunks of about equal work: stored values
 * plus a fixed cost per row; dense and N:M rows all cost the same. Dense
 * chunks are multiples of 4 rows (the register tile). */
static sp_status split(const sp_spmat *m, size_t np, size_t nc, size_t *b, sp_error *err)
{
    double *cum = malloc((np + 1) * sizeof *cum);
    if (!cum)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    const double row_cost = 8.0;
    cum[0] = 0;
    for (size_t i = 0; i < np; i++) {
        double work = (double)m->cols / 4.0;
        if (m->layout == SP_LAYOUT_CSR) {
            work = 0;
            for (size_t p = 0; p < m->npanels; p++)
                work += (double)(m->row_ptr[p * m->rows + i + 1] - m->row_ptr[p * m->rows + i]);
        } else if (m->layout == SP_LAYOUT_BCSR) {
            work = (double)(m->row_ptr[i + 1] - m->row_ptr[i]) * (double)(m->br * m->bc);
        }
        cum[i + 1] = cum[i] + work + row_cost;
    }
    b[0] = 0;
    size_t r = 0;
    for (size_t t = 1; t < nc; t++) {
        const double target = cum[np] * (double)t / (double)nc;
        while (r < np && cum[r] < target)
            r++;
        if (m->layout == SP_LAYOUT_DENSE)
            r = (r + 3) & ~(size_t)3;
        if (r > np)
            r = np;
        b[t] = r < b[t - 1] ? b[t - 1] : r;
    }
    b[nc] = np;
    free(cum);
    return SP_OK;
}

typedef struct run_ctx {
    const sp_ukernel_info *uk;
    const sp_spmat *mat;
    const size_t *b;
    size_t n, ldx, ldy;
    const float *x, *bias;
    float *y;
} run_ctx;

static void run_chunk(void *arg, size_t c)
{
    const run_ctx *r = arg;
    if (r->b[c] < r->b[c + 1])
        r->uk->fn(r->mat, r->b[c], r->b[c + 1], r->n, r->x, r->ldx, r->y, r->ldy, r->bias);
}

/* Chunks are handed out dynamically by the plan's pool (kernels/pool.h). */
static void run_kernel(sp_pool *pool, const sp_ukernel_info *uk, const sp_spmat *mat,
                       const size_t *b, size_t nc, size_t n, const float *x, size_t ldx,
                       float *y, size_t ldy, const float *bias)
{
    run_ctx r = {uk, mat, b, n, ldx, ldy, x, bias, y};
    sp_pool_run(pool, nc, run_chunk, &r);
}

static size_t at_least_1(size_t v) { return v ? v : 1; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/*
 * Estimated fallback: the sparse kernels do one vector FMA per stored value
 * and X vector, but load X for each (CSR/N:M: one load per FMA; blocks
 * share a load between br rows), while a good dense GEMM reuses every X load
 * across a register tile of rows. Measured on AVX-512 (docs/benchmarks.md):
 * CSR wins below about 55% density at batch 64 and below about 75% at
 * batch 1; br >= 4 blocks below about 70%; N:M 2:4 always at batch >= 16.
 */
static bool dense_is_faster(const sp_spmat *w, size_t n)
{
    const double total = (double)w->rows * (double)w->cols;
    if (total == 0)
        return false;
    const double density = (double)w->nstored / total;
    switch (w->layout) {
    case SP_LAYOUT_DENSE:
        return true;
    case SP_LAYOUT_CSR:
        return density > (n == 1 ? 0.75 : 0.55);
    case SP_LAYOUT_BCSR:
        return density > (w->br >= 4 ? 0.7 : 0.55);
    case SP_LAYOUT_NM:
        return density > 0.8;
    }
    return false;
}

/*
 * CSR with one K-panel. K-panels help the N-vectorised kernel (X stays in
 * L1) but cut an SpMV row into short runs, each ending in a partial gather;
 * an SpMV plan runs on this copy (6 bytes per nonzero, owned by the plan).
 */
static sp_status csr_one_panel(const sp_spmat *w, sp_spmat **out, sp_error *err)
{
    const size_t M = w->rows;
    sp_spmat *s = calloc(1, sizeof *s);
    if (!s)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    *s = *w;
    s->row_ptr = malloc((M + 1) * sizeof(uint32_t));
    s->col_idx = malloc((w->nstored ? w->nstored : 1) * sizeof(uint16_t));
    s->values = malloc((w->nstored ? w->nstored : 1) * sizeof(float));
    s->nm_idx = NULL;
    if (!s->row_ptr || !s->col_idx || !s->values) {
        sp_spmat_free(s);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    s->kc = w->cols ? w->cols : 1;
    s->npanels = 1;
    size_t j = 0;
    for (size_t m = 0; m < M; m++) {
        s->row_ptr[m] = (uint32_t)j;
        for (size_t p = 0; p < w->npanels; p++)
            for (size_t i = w->row_ptr[p * M + m]; i < w->row_ptr[p * M + m + 1]; i++) {
                s->values[j] = w->values[i];
                s->col_idx[j++] = w->col_idx[i];
            }
    }
    s->row_ptr[M] = (uint32_t)j;
    *out = s;
    return SP_OK;
}

static sp_status plan_dense(sp_spmm_plan *p, const sp_spmm_opts *o, sp_isa max_isa,
                            sp_error *err)
{
    float *tmp = malloc(at_least_1(p->w->rows * p->w->cols) * sizeof(float));
    if (!tmp)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory for a dense %zux%zu copy",
                            p->w->rows, p->w->cols);
    sp_spmat_unpack(p->w, tmp);
    sp_status st = sp_spmat_pack(&p->dense_w, tmp, p->w->rows, p->w->cols, NULL, err);
    free(tmp);
    if (st != SP_OK)
        return st;
    p->is_dense = true;
    p->dense = o->dense;
    p->dense_ctx = o->dense_ctx;
    p->mat = p->dense_w;
    p->uk = pick(SP_LAYOUT_DENSE, max_isa, p->n, false);
    p->alt = NULL;
    return split(p->dense_w, p->dense_w->rows, p->nchunks, p->bounds, err);
}

static double time_plan(const sp_spmm_plan *p, const float *x, float *y)
{
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        const double t0 = now_s();
        sp_spmm_plan_run(p, x, p->n, y, p->n, NULL, NULL);
        const double t = now_s() - t0;
        if (r && t < best) /* the first run warms up */
            best = t;
    }
    return best;
}

sp_status sp_spmm_plan_new(sp_spmm_plan **out, const sp_spmat *w, size_t n,
                           const sp_spmm_opts *opts, sp_error *err)
{
    *out = NULL;
    sp_spmm_opts def;
    if (!opts) {
        sp_spmm_opts_init(&def);
        opts = &def;
    }
    if (opts->backend != SP_BACKEND_CPU)
        return sp_error_set(err, SP_ERR_UNSUPPORTED,
                            "backend %d: only the CPU backend is built", (int)opts->backend);
    if (n == 0)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "n (columns of X) must be at least 1");
    if (opts->threads < 0 || opts->threads > 1024)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "threads %d: must be 0..1024",
                            opts->threads);
    sp_isa max_isa = opts->max_isa >= SP_ISA_COUNT ? sp_isa_best() : opts->max_isa;
    if (max_isa > sp_isa_best())
        max_isa = sp_isa_best();

    sp_status st = SP_OK;
    sp_spmm_plan *p = calloc(1, sizeof *p);
    if (!p)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    p->w = w;
    p->n = n;
    if (opts->threads) {
        p->threads = opts->threads;
    } else {
        const long nproc = sysconf(_SC_NPROCESSORS_ONLN);
        p->threads = nproc < 1 ? 1 : nproc > 1024 ? 1024 : (int)nproc;
    }
    st = sp_pool_new(&p->pool, p->threads, err);
    if (st != SP_OK)
        goto out;
    p->nchunks = p->threads > 1 ? (size_t)p->threads * 8 : 1;
    p->bounds = calloc(p->nchunks + 1, sizeof(size_t));
    if (!p->bounds) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }

    if (opts->kernel) {
        const sp_ukernel_info *k = sp_ukernel_find(opts->kernel);
        if (!k) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG, "kernel '%s': no such kernel",
                              opts->kernel);
            goto out;
        }
        if (!sp_isa_supported(k->isa)) {
            st = sp_error_set(err, SP_ERR_UNSUPPORTED,
                              "kernel '%s': this CPU has no %s", k->name, sp_isa_name(k->isa));
            goto out;
        }
        if (k->layout == SP_LAYOUT_DENSE && w->layout != SP_LAYOUT_DENSE) {
            st = plan_dense(p, opts, k->isa, err);
            p->uk = k;
            p->dense = NULL; /* forced: run this kernel, not the caller's */
            goto out;
        }
        if (k->layout != w->layout) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG,
                              "kernel '%s' runs the %s layout, the weights are %s",
                              k->name, sp_layout_name(k->layout), sp_layout_name(w->layout));
            goto out;
        }
        p->uk = k;
    } else {
        p->uk = pick(w->layout, max_isa, n, true);
    }
    p->mat = w;
    if (p->uk->spmv) {
        p->alt = pick(w->layout, p->uk->isa, 2, false);
        if (w->layout == SP_LAYOUT_CSR && w->npanels > 1) {
            st = csr_one_panel(w, &p->csr1, err);
            if (st != SP_OK)
                goto out;
            p->mat = p->csr1;
        }
    }
    p->is_dense = w->layout == SP_LAYOUT_DENSE;
    st = split(w, panels(w), p->nchunks, p->bounds, err);
    if (st != SP_OK || opts->kernel || w->layout == SP_LAYOUT_DENSE)
        goto out;

    switch (opts->fallback) {
    case SP_FALLBACK_NEVER:
        break;
    case SP_FALLBACK_ALWAYS:
        st = plan_dense(p, opts, max_isa, err);
        break;
    case SP_FALLBACK_AUTO:
        if (dense_is_faster(w, n))
            st = plan_dense(p, opts, max_isa, err);
        break;
    case SP_FALLBACK_MEASURE: {
        float *x = malloc(at_least_1(w->cols * n) * sizeof(float));
        float *y = malloc(at_least_1(w->rows * n) * sizeof(float));
        if (!x || !y) {
            free(x);
            free(y);
            st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        for (size_t i = 0; i < w->cols * n; i++)
            x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
        const double ts = time_plan(p, x, y);
        sp_spmm_plan dp = *p;
        dp.dense_w = NULL;
        dp.bounds = calloc(p->nchunks + 1, sizeof(size_t));
        if (!dp.bounds) {
            free(x);
            free(y);
            st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        st = plan_dense(&dp, opts, max_isa, err);
        if (st == SP_OK) {
            const double td = time_plan(&dp, x, y);
            if (td < ts) {
                free(p->bounds);
                *p = dp;
                dp.bounds = NULL;
                dp.dense_w = NULL;
            }
        }
        sp_spmat_free(dp.dense_w);
        free(dp.bounds);
        free(x);
        free(y);
        break;
    }
    }
out:
    if (st != SP_OK) {
        sp_spmm_plan_free(p);
        return st;
    }
    *out = p;
    return SP_OK;
}

const char *sp_spmm_plan_kernel(const sp_spmm_plan *p)
{
    if (p->is_dense && p->dense)
        return "dense-fallback";
    return p->uk->name;
}

bool sp_spmm_plan_is_dense(const sp_spmm_plan *p) { return p->is_dense; }
int sp_spmm_plan_threads(const sp_spmm_plan *p) { return p->threads; }

sp_status sp_spmm_plan_run(const sp_spmm_plan *p, const float *x, size_t ldx, float *y,
                           size_t ldy, const float *bias, sp_error *err)
{
    const sp_spmat *w = p->w;
    const size_t n = p->n;
    if (!x || !y)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "spmm: x and y must not be NULL");
    if (ldx < n || ldy < n)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "spmm: leading dimensions (ldx %zu, ldy %zu) below n %zu",
                            ldx, ldy, n);
    const char *xb = (const char *)x, *xe = (const char *)(x + (w->cols ? (w->cols - 1) * ldx + n : 0));
    const char *yb = (const char *)y, *ye = (const char *)(y + (w->rows ? (w->rows - 1) * ldy + n : 0));
    if (xb < ye && yb < xe)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "spmm: x and y overlap");
    if (w->rows == 0)
        return SP_OK;
    if (p->is_dense && p->dense) {
        p->dense(p->dense_ctx, w->rows, n, w->cols, p->dense_w->values, x, ldx, y, ldy,
                 p->threads);
        if (bias)
            for (size_t m = 0; m < w->rows; m++)
                for (size_t c = 0; c < n; c++)
                    y[m * ldy + c] += bias[m];
        return SP_OK;
    }
    if (p->uk->spmv && (w->cols * ldx >= (size_t)INT32_MAX))
        run_kernel(p->pool, p->alt, p->mat, p->bounds, p->nchunks, n, x, ldx, y, ldy, bias);
    else
        run_kernel(p->pool, p->uk, p->mat, p->bounds, p->nchunks, n, x, ldx, y, ldy, bias);
    return SP_OK;
}

void sp_spmm_plan_free(sp_spmm_plan *p)
{
    if (!p)
        return;
    sp_pool_free(p->pool);
    sp_spmat_free(p->dense_w);
    sp_spmat_free(p->csr1);
    free(p->bounds);
    free(p);
}

sp_status sp_spmm(const sp_spmat *w, size_t n, const float *x, size_t ldx, float *y,
                  size_t ldy, const float *bias, const sp_spmm_opts *opts, sp_error *err)
{
    sp_spmm_plan *p = NULL;
    sp_status st = sp_spmm_plan_new(&p, w, n, opts, err);
    if (st == SP_OK)
        st = sp_spmm_plan_run(p, x, ldx, y, ldy, bias, err);
    sp_spmm_plan_free(p);
    return st;
}
