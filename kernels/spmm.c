/*
 * kernels/spmm.c — the registry of ukernels (from kernels/f32-spmm.inc and
 * kernels/bf16-spmm.inc), run-time ISA detection, and the dispatcher:
 * sp_spmm_plan validates its inputs, chooses a ukernel once (ISA, layout,
 * dtype, n), derives the layout that kernel runs on when it differs from the
 * weights' (SELL or one-panel CSR for n == 1), splits the rows into chunks
 * balanced by stored values, and falls back to a dense product when that is
 * estimated (or measured, once per case and kept in the caller's cache) to be
 * faster. Also the caller-owned thread pool and decision cache.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/pool.h"
#include "kernels/spmat-internal.h"
#include "kernels/ukernels.h"

/* ---- registry ---------------------------------------------------------- */

static const sp_ukernel_info registry[] = {
#define SP_UKERNEL(name, isa, layout, dtype, spmv, ref) \
    {#name, SP_ISA_##isa, SP_LAYOUT_##layout, SP_##dtype, spmv, ref, name},
#include "kernels/f32-spmm.inc"
#include "kernels/bf16-spmm.inc"
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
    case SP_ISA_AVX512BF16: return "avx512bf16";
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
    case SP_ISA_AVX512BF16:
        return SP_KERNELS_AVX512BF16 && sp_isa_supported(SP_ISA_AVX512) &&
               __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vbmi");
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

/* ---- thread pool and decision cache ----------------------------------- */

struct sp_threadpool {
    sp_pool *pool;
    int threads;
};

sp_status sp_threadpool_new(sp_threadpool **out, int threads, sp_error *err)
{
    *out = NULL;
    if (threads < 1 || threads > 1024)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "threads %d: must be 1..1024", threads);
    sp_threadpool *p = calloc(1, sizeof *p);
    if (!p)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    p->threads = threads;
    sp_status st = sp_pool_new(&p->pool, threads, err);
    if (st != SP_OK) {
        free(p);
        return st;
    }
    *out = p;
    return SP_OK;
}

int sp_threadpool_threads(const sp_threadpool *p) { return p->threads; }

void sp_threadpool_free(sp_threadpool *p)
{
    if (!p)
        return;
    sp_pool_free(p->pool);
    free(p);
}

typedef struct cache_key {
    int layout, dtype, nm_n, nm_m, threads, max_isa, density_pct;
    size_t br, bc, rows, cols, n;
    sp_dense_gemm_fn dense;
} cache_key;

typedef struct cache_entry {
    cache_key key;
    bool dense_faster;
} cache_entry;

struct sp_spmm_cache {
    cache_entry *e;
    size_t n, cap;
    double dense_at; /* now_s() when measure() last ran the caller's dense */
};

sp_status sp_spmm_cache_new(sp_spmm_cache **out, sp_error *err)
{
    *out = calloc(1, sizeof **out);
    return *out ? SP_OK : sp_error_set(err, SP_ERR_NOMEM, "out of memory");
}

size_t sp_spmm_cache_size(const sp_spmm_cache *c) { return c->n; }

void sp_spmm_cache_free(sp_spmm_cache *c)
{
    if (!c)
        return;
    free(c->e);
    free(c);
}

static bool key_eq(const cache_key *a, const cache_key *b)
{
    return a->layout == b->layout && a->dtype == b->dtype && a->nm_n == b->nm_n &&
           a->nm_m == b->nm_m && a->threads == b->threads && a->max_isa == b->max_isa &&
           a->density_pct == b->density_pct && a->br == b->br && a->bc == b->bc &&
           a->rows == b->rows && a->cols == b->cols && a->n == b->n && a->dense == b->dense;
}

static const cache_entry *cache_find(const sp_spmm_cache *c, const cache_key *k)
{
    for (size_t i = 0; c && i < c->n; i++)
        if (key_eq(&c->e[i].key, k))
            return &c->e[i];
    return NULL;
}

/* A failure to grow the cache only costs a later re-measurement. */
static void cache_put(sp_spmm_cache *c, const cache_key *k, bool dense_faster)
{
    if (!c)
        return;
    if (c->n == c->cap) {
        const size_t cap = c->cap ? 2 * c->cap : 16;
        cache_entry *e = realloc(c->e, cap * sizeof *e);
        if (!e)
            return;
        c->e = e;
        c->cap = cap;
    }
    c->e[c->n].key = *k;
    c->e[c->n++].dense_faster = dense_faster;
}

/* ---- plan -------------------------------------------------------------- */

struct sp_spmm_plan {
    const sp_spmat *w;
    size_t n;
    int threads;
    const sp_ukernel_info *uk;  /* the kernel run (sparse or built-in dense) */
    const sp_ukernel_info *alt; /* uk is a gather kernel: the one for huge ldx */
    const sp_spmat *mat;        /* what uk runs on: w, derived or dense_w */
    sp_spmat *dense_w;          /* owned dense copy (fallback) */
    sp_spmat *derived;          /* owned one-panel CSR or SELL copy */
    sp_dense_gemm_fn dense;     /* caller's dense product (fallback) */
    void *dense_ctx;
    bool is_dense;
    sp_pool *pool;              /* threads - 1 workers */
    sp_threadpool *own_pool;    /* set when the plan started them */
    float *xt;                  /* K * n: X as contiguous columns, for
                                   batch-1 kernels on other X */
    bool rows;                  /* X [n, K] and Y [n, M] (opts.rows) */
    float *ys;                  /* M * n: Y [M, n] before it goes to [n, M] */
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

/* Weights a SELL copy can be derived from (the batch-1 layout). */
static bool sell_derivable(const sp_spmat *w)
{
    return w->dtype == SP_F32 && (w->layout == SP_LAYOUT_CSR || w->layout == SP_LAYOUT_BCSR);
}

/*
 * The preferred ukernel for w at n columns: the best ISA allowed; at an ISA,
 * for n == 1 the first spmv kernel of w's layout or of SELL when derivable,
 * otherwise the first non-spmv kernel of the layout, or any of it.
 */
static const sp_ukernel_info *pick(const sp_spmat *w, sp_layout layout, sp_isa max_isa,
                                   size_t n)
{
    for (int isa = (int)max_isa; isa >= 0; isa--) {
        if (!sp_isa_supported((sp_isa)isa))
            continue;
        const sp_ukernel_info *other = NULL, *any = NULL;
        for (size_t i = 0; i < sp_ukernel_count(); i++) {
            const sp_ukernel_info *k = &registry[i];
            if (k->isa != (sp_isa)isa || k->dtype != w->dtype)
                continue;
            if (n == 1 && k->spmv &&
                (k->layout == layout ||
                 (k->layout == SP_LAYOUT_SELL && layout == w->layout && sell_derivable(w))))
                return k;
            if (k->layout != layout)
                continue;
            if (!k->spmv && !other)
                other = k;
            if (!any)
                any = k;
        }
        if (other)
            return other;
        if (any)
            return any;
    }
    return NULL;
}

static size_t panels(const sp_spmat *m)
{
    return m->layout == SP_LAYOUT_BCSR || m->layout == SP_LAYOUT_SELL ? m->nbrows : m->rows;
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
        } else if (m->layout == SP_LAYOUT_SELL) {
            work = (double)(m->sell_ptr[i + 1] - m->sell_ptr[i]) * SP_SELL_H;
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

/*
 * Batch-1 kernels on several (or strided) columns: each chunk is one
 * (column, row range) pair, so a call is still one hand-out of work to the
 * threads. Column j of X is xc + j*xstride (contiguous), column j of Y is
 * y + j*ystride with row stride kldy.
 */
typedef struct cols_ctx {
    const sp_ukernel_info *uk;
    const sp_spmat *mat;
    const size_t *b;
    size_t nc, xstride, ystride, kldy;
    const float *xc, *bias;
    float *y;
} cols_ctx;

static void column_chunk(void *arg, size_t c)
{
    const cols_ctx *r = arg;
    const size_t j = c / r->nc, i = c % r->nc;
    if (r->b[i] < r->b[i + 1])
        r->uk->fn(r->mat, r->b[i], r->b[i + 1], 1, r->xc + j * r->xstride, 1,
                  r->y + j * r->ystride, r->kldy, r->bias);
}

static void run_columns(sp_pool *pool, const sp_ukernel_info *uk, const sp_spmat *mat,
                        const size_t *b, size_t nc, size_t n, const float *xc, size_t xstride,
                        float *y, size_t ystride, size_t kldy, const float *bias)
{
    cols_ctx r = {uk, mat, b, nc, xstride, ystride, kldy, xc, bias, y};
    sp_pool_run(pool, nc * n, column_chunk, &r);
}

/* dst[j*ldd + i] = src[i*lds + j] for i < rows, j < cols, by the pool in
 * ranges of source rows. */
typedef struct transpose_ctx {
    const float *src;
    float *dst;
    size_t rows, cols, lds, ldd, nc;
} transpose_ctx;

static void transpose_chunk(void *arg, size_t c)
{
    const transpose_ctx *t = arg;
    const size_t i0 = t->rows * c / t->nc, i1 = t->rows * (c + 1) / t->nc;
    for (size_t i = i0; i < i1; i++)
        for (size_t j = 0; j < t->cols; j++)
            t->dst[j * t->ldd + i] = t->src[i * t->lds + j];
}

static void transpose(sp_pool *pool, size_t nc, const float *src, size_t rows, size_t cols,
                      size_t lds, float *dst, size_t ldd)
{
    transpose_ctx t = {src, dst, rows, cols, lds, ldd, nc};
    sp_pool_run(pool, nc, transpose_chunk, &t);
}

static size_t at_least_1(size_t v) { return v ? v : 1; }

/* rows x cols floats (at least 1) on a 64-byte boundary, as activations
 * from PyTorch are: the kernels' X rows are whole vectors, and from a
 * buffer malloc aligns to 16 bytes every one of them straddles two cache
 * lines (2:4 at batch 64 ran 1.4x slower, enough to lose to dense). NULL
 * when out of memory or the size overflows. Freed with free(). */
static float *alloc_floats(size_t rows, size_t cols)
{
    if (cols && rows > (SIZE_MAX - 63) / sizeof(float) / cols)
        return NULL;
    const size_t bytes = (at_least_1(rows * cols) * sizeof(float) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/*
 * Estimated fallback, from the measurements in docs/benchmarks.md (AVX-512,
 * native OpenBLAS: sgemv at n == 1, sgemm above). The sparse N-vectorised
 * kernels do one X load per FMA (CSR, N:M) or share it between br rows
 * (blocks), where a dense GEMM reuses X loads across a register tile; at
 * n == 1 the SELL and 2:4 kernels move fewer bytes than sgemv and need no
 * horizontal sums, so they win to higher densities (SELL up to 0.6); bf16
 * values (and weights packed as SELL) at n > 1 run the batch-1 kernels
 * column by column.
 */
/* Density above which dense sgemv beats the SELL kernel at n == 1 (the
 * crossover measured at 3072x768 and 768x3072 is 0.6). */
#define SP_AUTO_SELL_DENSITY 0.55

static bool dense_is_faster(const sp_spmat *w, size_t n)
{
    const double total = (double)w->rows * (double)w->cols;
    if (total == 0)
        return false;
    const double density = (double)w->nnz / total;
    /* bf16 at n > 1: the batch-1 kernels column by column (3072x768: at 90%
     * sparse 1.7x dense at n = 64, 5x at n = 8; 0.6x at 60%) */
    if (w->dtype == SP_BF16)
        return n == 1 ? false : density > (n <= 8 ? 0.5 : 0.2);
    switch (w->layout) {
    case SP_LAYOUT_DENSE:
        return true;
    case SP_LAYOUT_CSR:
        return density > (n == 1 ? SP_AUTO_SELL_DENSITY : 0.55);
    case SP_LAYOUT_BCSR:
        if (n == 1)
            return density > SP_AUTO_SELL_DENSITY;
        return density > (w->br >= 4 ? 0.7 : 0.55);
    case SP_LAYOUT_NM:
        return density > 0.8;
    case SP_LAYOUT_SELL: /* packed as SELL: f32 column by column at n > 1 */
        return density > (n == 1 ? SP_AUTO_SELL_DENSITY : n <= 8 ? 0.4 : 0.08);
    }
    return false;
}

/*
 * CSR with one K-panel. K-panels help the N-vectorised kernel (X stays in
 * L1) but cut a gather kernel's rows into short runs, each ending in a
 * partial gather; a gather plan runs on this copy (6 bytes per nonzero).
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

/* The copy of w that uk runs on, or NULL when it runs on w itself. */
static sp_status derive(const sp_spmat *w, const sp_ukernel_info *uk, sp_spmat **out,
                        sp_error *err)
{
    *out = NULL;
    if (uk->layout == SP_LAYOUT_SELL && w->layout != SP_LAYOUT_SELL)
        return sp_spmat_to_sell(w, out, err);
    if (uk->spmv && uk->layout == SP_LAYOUT_CSR && w->npanels > 1)
        return csr_one_panel(w, out, err);
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
    p->uk = pick(p->dense_w, SP_LAYOUT_DENSE, max_isa, p->n);
    p->alt = NULL;
    return split(p->dense_w, p->dense_w->rows, p->nchunks, p->bounds, err);
}

static void run_product(const sp_spmm_plan *p, const float *x, size_t ldx, float *y,
                        size_t ldy, const float *bias);

/*
 * Best of 5 timed runs of p, after untimed runs for at least MEASURE_WARM_S:
 * after idle the cores run slowly for several milliseconds (clock and
 * memory path wake up; a 3072x768 product at 90% took 0.115 ms first,
 * 0.051 ms from about 4 ms on; 2:4 at batch 64 1.2 ms first, 0.6 ms after
 * 5-10 ms), and a fixed number of warm-up runs would leave the faster side,
 * whose runs all fall in that ramp, looking slower.
 */
#define MEASURE_WARM_S 0.01
static double time_plan(const sp_spmm_plan *p, const float *x, float *y)
{
    const double w0 = now_s();
    do
        run_product(p, x, p->n, y, p->n, NULL);
    while (now_s() - w0 < MEASURE_WARM_S);
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        const double t0 = now_s();
        run_product(p, x, p->n, y, p->n, NULL);
        const double t = now_s() - t0;
        if (t < best)
            best = t;
    }
    return best;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    const struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Idle workers spin before they sleep: ours about 0.2 ms (kernels/pool.c),
 * OpenBLAS's for 2^28 cycles (about 0.1 s, also after the library starts
 * its threads). Whatever is timed while the other side's workers spin runs
 * on fewer cores. */
#define SPIN_OURS_S 0.002
#define SPIN_DENSE_S 0.15

/* Before timing sparse: the caller's dense workers asleep (the cache knows
 * when its last measurement ran them; without one, or before the first,
 * they may be spinning since the library started). */
static void wait_dense_idle(const sp_spmm_plan *dp, const sp_spmm_opts *opts)
{
    if (!dp->dense)
        return;
    if (opts->cache && opts->cache->dense_at > 0)
        sleep_s(opts->cache->dense_at + SPIN_DENSE_S - now_s());
    else
        sleep_s(SPIN_DENSE_S);
}

/*
 * Time the sparse plan p and its dense fallback (each warm, best of 5 after
 * a warm-up; see time_plan); on a win of dense, p becomes the dense plan.
 * Sparse is timed before dense, never right after it: the caller's dense
 * (OpenBLAS) leaves its workers spinning for about 0.1 s, which halved the
 * sparse side on a 2-core machine. Unless sparse wins clearly (by 1.3x), a
 * second round after those workers sleep again, each side's best of both:
 * one round let a burst of load on the other core make 2:4 at batch 64
 * (1.4-1.8x faster than dense) lose 1 in 3-6 measurements.
 */
static sp_status measure(sp_spmm_plan *p, const sp_spmm_opts *opts, sp_isa max_isa,
                         bool *dense_won, sp_error *err)
{
    const sp_spmat *w = p->w;
    const size_t n = p->n;
    sp_status st = SP_OK;
    float *x = alloc_floats(w->cols, n);
    float *y = alloc_floats(w->rows, n);
    sp_spmm_plan dp = *p;
    dp.dense_w = NULL;
    dp.derived = NULL;
    dp.own_pool = NULL;
    dp.xt = NULL;
    dp.ys = NULL;
    dp.rows = false;
    dp.bounds = calloc(p->nchunks + 1, sizeof(size_t));
    if (!x || !y || !dp.bounds) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < w->cols * n; i++)
        x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    st = plan_dense(&dp, opts, max_isa, err);
    if (st != SP_OK)
        goto out;
    double ts = 1e30, td = 1e30;
    for (int round = 0; round < 2 && !(ts * 1.3 < td); round++) {
        if (round)
            sleep_s(dp.dense ? SPIN_DENSE_S : SPIN_OURS_S);
        else
            wait_dense_idle(&dp, opts);
        const double a = time_plan(p, x, y);
        sleep_s(SPIN_OURS_S);
        const double b = time_plan(&dp, x, y);
        ts = a < ts ? a : ts;
        td = b < td ? b : td;
    }
    if (dp.dense && opts->cache)
        opts->cache->dense_at = now_s();
    *dense_won = td < ts;
    if (*dense_won) {
        sp_spmat_free(p->derived);
        p->derived = NULL;
        free(p->bounds);
        p->bounds = dp.bounds;
        p->dense_w = dp.dense_w;
        p->is_dense = true;
        p->dense = dp.dense;
        p->dense_ctx = dp.dense_ctx;
        p->mat = dp.mat;
        p->uk = dp.uk;
        p->alt = NULL;
        dp.bounds = NULL;
        dp.dense_w = NULL;
    }
out:
    sp_spmat_free(dp.dense_w);
    free(dp.bounds);
    free(x);
    free(y);
    return st;
}

static cache_key make_key(const sp_spmm_plan *p, const sp_spmm_opts *o, sp_isa max_isa)
{
    const sp_spmat *w = p->w;
    cache_key k;
    memset(&k, 0, sizeof k);
    k.layout = (int)w->layout;
    k.dtype = (int)w->dtype;
    k.nm_n = w->n;
    k.nm_m = w->m;
    k.br = w->br;
    k.bc = w->bc;
    k.rows = w->rows;
    k.cols = w->cols;
    const double total = (double)w->rows * (double)w->cols;
    k.density_pct = total > 0 ? (int)lround(100.0 * (double)w->nnz / total) : 0;
    k.n = p->n;
    k.threads = p->threads;
    k.max_isa = (int)max_isa;
    k.dense = o->dense;
    return k;
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
    if (opts->pool && opts->threads && opts->threads != opts->pool->threads)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "threads %d: the shared pool has %d", opts->threads,
                            opts->pool->threads);
    sp_isa max_isa = opts->max_isa >= SP_ISA_COUNT ? sp_isa_best() : opts->max_isa;
    if (max_isa > sp_isa_best())
        max_isa = sp_isa_best();

    sp_status st = SP_OK;
    sp_spmm_plan *p = calloc(1, sizeof *p);
    if (!p)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    p->w = w;
    p->n = n;
    if (opts->pool) {
        p->threads = opts->pool->threads;
        p->pool = opts->pool->pool;
    } else {
        if (opts->threads) {
            p->threads = opts->threads;
        } else {
            const long nproc = sysconf(_SC_NPROCESSORS_ONLN);
            p->threads = nproc < 1 ? 1 : nproc > 1024 ? 1024 : (int)nproc;
        }
        st = sp_threadpool_new(&p->own_pool, p->threads, err);
        if (st != SP_OK)
            goto out;
        p->pool = p->own_pool->pool;
    }
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
        if (k->dtype != w->dtype) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG,
                              "kernel '%s' takes %s values, the weights are %s", k->name,
                              sp_dtype_name(k->dtype), sp_dtype_name(w->dtype));
            goto out;
        }
        if (k->layout != w->layout &&
            !(k->layout == SP_LAYOUT_SELL && sell_derivable(w))) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG,
                              "kernel '%s' runs the %s layout, the weights are %s",
                              k->name, sp_layout_name(k->layout), sp_layout_name(w->layout));
            goto out;
        }
        p->uk = k;
    } else {
        p->uk = pick(w, w->layout, max_isa, n);
        if (!p->uk) {
            st = sp_error_set(err, SP_ERR_UNSUPPORTED, "no kernel for the %s layout with %s "
                              "values", sp_layout_name(w->layout), sp_dtype_name(w->dtype));
            goto out;
        }
    }
    st = derive(w, p->uk, &p->derived, err);
    if (st != SP_OK)
        goto out;
    p->mat = p->derived ? p->derived : w;
    if (p->uk->spmv && p->uk->layout == SP_LAYOUT_CSR)
        p->alt = pick(w, w->layout, p->uk->isa, 2);
    if (p->uk->spmv && p->uk->layout != SP_LAYOUT_CSR) {
        /* the SELL and 2:4 kernels are fast on one contiguous column */
        if (w->cols > SIZE_MAX / sizeof(float) / n) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG, "%zu x %zu activations: too large",
                              w->cols, n);
            goto out;
        }
        p->xt = alloc_floats(w->cols, n);
        if (!p->xt) {
            st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    p->rows = opts->rows;
    if (p->rows && n > 1) {
        /* other kernels and the dense path take X [K, n]: copies both ways */
        if (w->cols > SIZE_MAX / sizeof(float) / n || w->rows > SIZE_MAX / sizeof(float) / n) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG, "%zu x %zu activations: too large",
                              w->cols > w->rows ? w->cols : w->rows, n);
            goto out;
        }
        if (!p->xt)
            p->xt = alloc_floats(w->cols, n);
        p->ys = alloc_floats(w->rows, n);
        if (!p->xt || !p->ys) {
            st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    p->is_dense = w->layout == SP_LAYOUT_DENSE;
    /* A batch-1 product streams its weights once: two chunks per thread
     * keep each thread's stream long (every chunk restarts the hardware
     * prefetchers and overshoots its end by the kernel's prefetch
     * distance); 8 per thread cost 5-30% with cold weights (3072x768, 90%:
     * 0.045 -> 0.035-0.040 ms in paired runs). */
    if (p->uk->spmv && p->threads > 1)
        p->nchunks = (size_t)p->threads * 2;
    st = split(p->mat, panels(p->mat), p->nchunks, p->bounds, err);
    if (st != SP_OK || opts->kernel || w->layout == SP_LAYOUT_DENSE)
        goto out;

    switch (opts->fallback) {
    case SP_FALLBACK_NEVER:
        break;
    case SP_FALLBACK_ALWAYS:
        sp_spmat_free(p->derived);
        p->derived = NULL;
        st = plan_dense(p, opts, max_isa, err);
        break;
    case SP_FALLBACK_AUTO:
        if (dense_is_faster(w, n)) {
            sp_spmat_free(p->derived);
            p->derived = NULL;
            st = plan_dense(p, opts, max_isa, err);
        }
        break;
    case SP_FALLBACK_MEASURE: {
        const cache_key key = make_key(p, opts, max_isa);
        const cache_entry *hit = cache_find(opts->cache, &key);
        if (hit) {
            if (hit->dense_faster) {
                sp_spmat_free(p->derived);
                p->derived = NULL;
                st = plan_dense(p, opts, max_isa, err);
            }
        } else {
            bool dense_won = false;
            st = measure(p, opts, max_isa, &dense_won, err);
            if (st == SP_OK)
                cache_put(opts->cache, &key, dense_won);
        }
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
sp_layout sp_spmm_plan_layout(const sp_spmm_plan *p) { return p->mat->layout; }
size_t sp_spmm_plan_weight_bytes(const sp_spmm_plan *p) { return sp_spmat_bytes(p->mat); }

sp_status sp_spmm_plan_update(sp_spmm_plan *p, sp_error *err)
{
    if (p->dense_w) {
        sp_spmat_unpack(p->w, p->dense_w->values);
        return SP_OK;
    }
    if (!p->derived)
        return SP_OK;
    sp_spmat *d = NULL;
    size_t *b = calloc(p->nchunks + 1, sizeof *b);
    if (!b)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    sp_status st = derive(p->w, p->uk, &d, err);
    if (st == SP_OK && d)
        st = split(d, panels(d), p->nchunks, b, err);
    if (st != SP_OK) {
        sp_spmat_free(d);
        free(b);
        return st;
    }
    sp_spmat_free(p->derived);
    free(p->bounds);
    p->derived = d;
    p->bounds = b;
    p->mat = d;
    return SP_OK;
}

/* Y [M, n] = W . X [K, n] (+ bias) by the plan's kernel or dense path. */
static void run_product(const sp_spmm_plan *p, const float *x, size_t ldx, float *y,
                        size_t ldy, const float *bias)
{
    const sp_spmat *w = p->w;
    const size_t n = p->n;
    if (p->is_dense && p->dense) {
        p->dense(p->dense_ctx, w->rows, n, w->cols, p->dense_w->values, x, ldx, y, ldy,
                 p->threads);
        if (bias)
            for (size_t m = 0; m < w->rows; m++)
                for (size_t c = 0; c < n; c++)
                    y[m * ldy + c] += bias[m];
    } else if (p->alt && (w->cols * ldx >= (size_t)INT32_MAX)) {
        run_kernel(p->pool, p->alt, w, p->bounds, p->nchunks, n, x, ldx, y, ldy, bias);
    } else if (p->uk->spmv && p->xt && (n > 1 || ldx != 1)) {
        /* the batch-1 kernels want contiguous columns */
        transpose(p->pool, p->nchunks, x, w->cols, n, ldx, p->xt, w->cols);
        run_columns(p->pool, p->uk, p->mat, p->bounds, p->nchunks, n, p->xt, w->cols, y, 1,
                    ldy, bias);
    } else {
        run_kernel(p->pool, p->uk, p->mat, p->bounds, p->nchunks, n, x, ldx, y, ldy, bias);
    }
}

sp_status sp_spmm_plan_run(const sp_spmm_plan *p, const float *x, size_t ldx, float *y,
                           size_t ldy, const float *bias, sp_error *err)
{
    const sp_spmat *w = p->w;
    const size_t n = p->n, K = w->cols, M = w->rows;
    if (!x || !y)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "spmm: x and y must not be NULL");
    /* extents of X and Y in floats: [K, n] / [M, n], or [n, K] / [n, M] */
    size_t xn, yn;
    if (p->rows) {
        if (ldx < K || ldy < M)
            return sp_error_set(err, SP_ERR_INVALID_ARG,
                                "spmm: row strides (ldx %zu, ldy %zu) below K %zu, M %zu",
                                ldx, ldy, K, M);
        xn = K ? (n - 1) * ldx + K : 0;
        yn = M ? (n - 1) * ldy + M : 0;
    } else {
        if (ldx < n || ldy < n)
            return sp_error_set(err, SP_ERR_INVALID_ARG,
                                "spmm: leading dimensions (ldx %zu, ldy %zu) below n %zu",
                                ldx, ldy, n);
        xn = K ? (K - 1) * ldx + n : 0;
        yn = M ? (M - 1) * ldy + n : 0;
    }
    const char *xb = (const char *)x, *xe = (const char *)(x + xn);
    const char *yb = (const char *)y, *ye = (const char *)(y + yn);
    if (xb < ye && yb < xe)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "spmm: x and y overlap");
    if (M == 0)
        return SP_OK;
    if (!p->rows || n == 1) {
        /* one row of [1, K] is one column of [K, 1] */
        run_product(p, x, p->rows ? 1 : ldx, y, p->rows ? 1 : ldy, bias);
    } else if (p->uk->spmv && !p->is_dense) {
        /* batch-1 kernels take the rows of X and Y as they are */
        run_columns(p->pool, p->uk, p->mat, p->bounds, p->nchunks, n, x, ldx, y, ldy, 1, bias);
    } else {
        transpose(p->pool, p->nchunks, x, n, K, ldx, p->xt, n);
        run_product(p, p->xt, n, p->ys, n, bias);
        transpose(p->pool, p->nchunks, p->ys, M, n, n, y, ldy);
    }
    return SP_OK;
}

void sp_spmm_plan_free(sp_spmm_plan *p)
{
    if (!p)
        return;
    sp_threadpool_free(p->own_pool);
    sp_spmat_free(p->dense_w);
    sp_spmat_free(p->derived);
    free(p->bounds);
    free(p->xt);
    free(p->ys);
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
