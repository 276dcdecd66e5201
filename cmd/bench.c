/*
 * sparsify bench — time our sparse kernels against OpenBLAS's best dense
 * routine for the shape (cblas_sgemv at batch 1, cblas_sgemm above) on the
 * same data, in the same run, with the same threads; warm, or cold (weights
 * read from memory as in a real forward pass).
 *
 *   sparsify bench --shape MxK --batch N --pattern P --sparsity S
 *                  [--threads T] [--json] [--kernel NAME] [--isa ISA]
 *                  [--dtype float32|bfloat16] [--cold] [--cold-mib MIB]
 *                  [--fallback auto|never|measure] [--reps R] [--seed S]
 *   sparsify bench MODEL [--batch N] [--pattern P] [--sparsity S] ...
 *
 * Method (docs/benchmarks.md): weights uniform in [-1, 1] pruned by
 * magnitude to the pattern and sparsity (sp_mask_select), activations
 * uniform in [-1, 1] in 64-byte aligned buffers. The sparse kernel (the
 * dispatcher's choice without dense fallback, or --kernel) and the dense
 * routine are timed in five alternating rounds, each a 150 ms pause
 * (idle_pause), untimed runs for 20 ms (at least 2), then timed runs; each
 * run is timed alone with CLOCK_MONOTONIC and the median of all timed runs
 * is reported.
 * --cold gives each side enough copies of W and X that cycling through them
 * reads more than 4x the last-level cache (--cold-mib overrides), so every
 * product streams its weights from memory. The dispatcher's decision (dense
 * fallback or not, --fallback) is reported next to both times. The sparse
 * result is checked against a dense product of the same (for bf16: rounded)
 * operands: max_rel_error = max |y - y_ref| / max |y_ref|; above 1e-4 the
 * bench fails (exit 1).
 */
#include <cjson/cJSON.h>
#include <dlfcn.h>
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
    "Time Y[MxN] = W[MxK] . X[KxN] with our sparse kernels and with OpenBLAS's\n"
    "dense routine for the shape (cblas_sgemv when N = 1, cblas_sgemm above) on\n"
    "the same data in the same run, check our result against the dense product\n"
    "and print a table (median of the timed runs) with the dispatcher's choice.\n"
    "\n"
    "With MODEL (a checkpoint file or folder), every prunable weight (rank 2,\n"
    "or a 1x1 convolution) is timed, per layer (warm unless --cold), and a\n"
    "whole forward sweep of all layers (each once, in order, as the dispatcher\n"
    "runs them) is timed cold for the total, at the first batch; zeros are\n"
    "used as they are unless --sparsity is given (then it is pruned to it).\n"
    "\n"
    "options:\n"
    "  --shape MxK        weight shape: M outputs, K inputs (synthetic mode)\n"
    "  --batch N[,N...]   columns of X (tokens); several give several rows (64)\n"
    "  --pattern P        unstructured, RxC blocks (4x1, 1x4, 8x8, ...), N:M (2:4)\n"
    "                     (default unstructured)\n"
    "  --sparsity S       fraction of zeros, 0..1 (synthetic default 0.9;\n"
    "                     ignored for N:M, which prunes to n of every m)\n"
    "  --dtype D          sparse weight values: float32 (default) or bfloat16\n"
    "                     (X rounded to bf16, f32 accumulation; the dense\n"
    "                     baseline stays float32)\n"
    "  --cold             weights and X read from memory for every product:\n"
    "                     cycle through copies totalling 4x the last-level cache\n"
    "  --cold-mib MIB     total size of those copies instead (per side; also\n"
    "                     sizes the cold sweep of MODEL)\n"
    "  --threads T        threads for both sides (default: every core)\n"
    "  --kernel NAME      force a ukernel (see --list)\n"
    "  --isa ISA          cap the ISA: scalar, avx2, avx512, avx512bf16\n"
    "  --fallback F       how the dispatcher decides on dense fallback: measure\n"
    "                     (time both once, default), auto (estimate), never\n"
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
    "JSON fields: shape, batch, pattern, sparsity, nnz, dtype, threads, kernel,\n"
    "isa, layout, cold, copies_dense, copies_sparse, weight_bytes_dense,\n"
    "weight_bytes_sparse, baseline, dense_routine (cblas_sgemv, cblas_sgemm),\n"
    "dense_core (OpenBLAS core), dense_ms, sparse_ms, dense_gflops,\n"
    "sparse_gflops (useful 2*nnz*N / time), effective_gflops (2*M*K*N / time),\n"
    "dense_gbps, sparse_gbps (weight bytes / time), speedup (dense_ms /\n"
    "sparse_ms), dispatch (sparse or dense), dispatch_kernel, bf16_dense_routine,\n"
    "bf16_dense_ms, max_rel_error. MODEL: {layers: [...], total: {...},\n"
    "sweep: {dense_ms, sparse_ms, speedup, cold, copies_dense, copies_sparse,\n"
    "bytes_dense, bytes_sparse}}.\n"
    "\n"
    "Benchmarks mean the native OpenBLAS core: a warning says when\n"
    "OPENBLAS_CORETYPE forces an older one (unset it and OPENBLAS_L2_SIZE).\n"
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
    sp_dtype dtype;
    bool cold;
    double cold_mib; /* 0: 4x the last-level cache */
    bool json;
    const char *html; /* --report-html */
} bench_opts;

/* What the dense side is, and what the run shares. */
typedef void (*sbgemm_fn)(int, int, int, int, int, int, float, const uint16_t *, int,
                          const uint16_t *, int, float, float *, int);
typedef void (*sbgemv_fn)(int, int, int, int, float, const uint16_t *, int,
                          const uint16_t *, int, float, float *, int);

typedef struct bench_env {
    const char *core;     /* OpenBLAS core, NULL without BLAS */
    sbgemm_fn sbgemm;     /* OpenBLAS bf16 routines, when built with them */
    sbgemv_fn sbgemv;
    size_t llc;           /* bytes of the last-level cache */
    sp_threadpool *pool;  /* every plan's workers */
    sp_spmm_cache *cache; /* the dispatcher's measured decisions */
} bench_env;

typedef struct bench_result {
    char name[256]; /* layer name in model mode */
    size_t m, k, n;
    size_t nnz;
    double sparsity;
    char kernel[96];
    const char *isa;
    const char *layout;
    char dispatch_kernel[96];
    bool dispatch_dense;
    size_t copies_dense, copies_sparse;
    size_t bytes_dense, bytes_sparse; /* weights read per product */
    double dense_ms, sparse_ms;       /* dense_ms < 0: no baseline */
    double bf16_dense_ms;             /* < 0: not available */
    double max_rel_error;
} bench_result;

typedef struct sweep_result {
    bool have;
    double dense_ms, sparse_ms;
    size_t copies_dense, copies_sparse, bytes_dense, bytes_sparse;
    bool cold;
} sweep_result;

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
 * (about 0.1 s here) after every call, ours briefly. On a machine with as
 * many cores as threads, a spinning pool of one side halves the other
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

static float bf16_round(float v) { return sp_bf16_to_f32(sp_bf16_from_f32(v)); }

/*
 * The last-level cache this CPU uses: sysfs (what the kernel reports for
 * cpu0, e.g. one CCD's 32 MiB in a VM on a larger part), else sysconf (which
 * may count the whole package), else 32 MiB.
 */
static size_t llc_bytes(void)
{
    for (int i = 0; i < 8; i++) {
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        int level = 0;
        if (!f)
            break;
        const int got = fscanf(f, "%d", &level);
        fclose(f);
        if (got != 1 || level != 3)
            continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        f = fopen(path, "r");
        if (!f)
            break;
        unsigned long v = 0;
        char unit = 0;
        const int n = fscanf(f, "%lu%c", &v, &unit);
        fclose(f);
        if (n >= 1 && v > 0)
            return (size_t)v * (unit == 'M' ? 1024 * 1024 : unit == 'K' ? 1024 : 1);
    }
    const long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return v > 0 ? (size_t)v : (size_t)32 << 20;
}

#ifdef SP_HAVE_BLAS
/* The best dense routine for the shape: sgemv for one column, else sgemm. */
static void blas_product(size_t m, size_t n, size_t k, const float *w, const float *x,
                         size_t ldx, float *y, size_t ldy, int threads)
{
#ifdef OPENBLAS_VERSION
    openblas_set_num_threads(threads);
#else
    (void)threads;
#endif
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)k, 1.0f, w, (int)k, x, (int)ldx,
                    0.0f, y, (int)ldy);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, w,
                    (int)k, x, (int)ldx, 0.0f, y, (int)ldy);
}

/* The dispatcher's dense path (sp_dense_gemm_fn). */
static void blas_gemm(void *ctx, size_t m, size_t n, size_t k, const float *w,
                      const float *x, size_t ldx, float *y, size_t ldy, int threads)
{
    (void)ctx;
    blas_product(m, n, k, w, x, ldx, y, ldy, threads);
}
#endif

static const char *dense_routine(size_t n)
{
#ifdef SP_HAVE_BLAS
    return n == 1 ? "cblas_sgemv" : "cblas_sgemm";
#else
    (void)n;
    return "none";
#endif
}

#ifndef SP_HAVE_BLAS
/* Reference product in double precision (when there is no BLAS). */
static void ref_gemm(size_t m, size_t n, size_t k, const float *w, const float *x, float *y)
{
    double *acc = malloc(at_least_1(n) * sizeof *acc);
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

/* y = w . x with whatever dense product this build has (not timed). */
static void check_product(size_t m, size_t n, size_t k, const float *w, const float *x,
                          float *y, int threads)
{
#ifdef SP_HAVE_BLAS
    blas_product(m, n, k, w, x, n, y, n, threads);
#else
    (void)threads;
    ref_gemm(m, n, k, w, x, y);
#endif
}

/*
 * OpenBLAS's rank of a core by vector ISA: 3 AVX-512 with BF16, 2 AVX-512,
 * 1 AVX2, 0 older or unknown.
 */
static int core_level(const char *core)
{
    if (!core)
        return -1;
    if (strstr(core, "Cooperlake") || strstr(core, "SapphireRapids"))
        return 3;
    if (strstr(core, "SkylakeX"))
        return 2;
    if (strstr(core, "Haswell") || strstr(core, "Zen") || strstr(core, "Excavator"))
        return 1;
    return 0;
}

static int cpu_level(void)
{
    return sp_isa_supported(SP_ISA_AVX512BF16) ? 3
           : sp_isa_supported(SP_ISA_AVX512)   ? 2
           : sp_isa_supported(SP_ISA_AVX2)     ? 1
                                               : 0;
}

static void env_init(bench_env *e)
{
    memset(e, 0, sizeof *e);
    e->llc = llc_bytes();
#ifdef SP_HAVE_BLAS
#ifdef OPENBLAS_VERSION
    e->core = openblas_get_corename();
#else
    e->core = "unknown";
#endif
    /* bf16 routines exist only in OpenBLAS builds with BUILD_BFLOAT16. */
    e->sbgemm = (sbgemm_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "cblas_sbgemm");
    e->sbgemv = (sbgemv_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "cblas_sbgemv");
    const char *forced = getenv("OPENBLAS_CORETYPE");
    if (forced && *forced && core_level(e->core) < cpu_level())
        cli_warn("OPENBLAS_CORETYPE=%s runs OpenBLAS's %s core, older than this CPU "
                 "supports: dense times are not the native baseline (unset "
                 "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE)", forced, e->core);
#endif
}

static void env_release(bench_env *e)
{
    sp_spmm_cache_free(e->cache);
    sp_threadpool_free(e->pool);
}

/* Bytes that cycling through copies must exceed to be cold. */
static double cold_bytes(const bench_opts *o, const bench_env *e)
{
    return o->cold_mib > 0 ? o->cold_mib * 1048576.0 : 4.0 * (double)e->llc;
}

/* Copies cycled through so that they total at least the cold size (cold
 * or forced), at most cap. */
static size_t copies_for(const bench_opts *o, const bench_env *e, size_t bytes, size_t cap,
                         bool force)
{
    if (!o->cold && !force)
        return 1;
    double c = ceil(cold_bytes(o, e) / (double)at_least_1(bytes));
    if (c < 1)
        c = 1;
    return c > (double)cap ? cap : (size_t)c;
}

/* ---- one benchmark ----------------------------------------------------- */

typedef struct dense_side {
    size_t copies;
    float **w, **x, **y;
} dense_side;

typedef struct sparse_side {
    size_t copies;
    sp_spmat **mat;
    sp_spmm_plan **plan;
    float **x, **y;
} sparse_side;

static void dense_side_free(dense_side *d)
{
    for (size_t i = 0; d->w && i < d->copies; i++) {
        free(d->w[i]);
        free(d->x[i]);
        free(d->y[i]);
    }
    free(d->w);
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

static void sparse_side_free(sparse_side *s)
{
    for (size_t i = 0; s->mat && i < s->copies; i++) {
        sp_spmm_plan_free(s->plan[i]);
        sp_spmat_free(s->mat[i]);
        free(s->x[i]);
        free(s->y[i]);
    }
    free(s->mat);
    free(s->plan);
    free(s->x);
    free(s->y);
    memset(s, 0, sizeof *s);
}

/* Alternating blocks per side and measurement. */
#define BENCH_ROUNDS 5
/*
 * The untimed start of each block. After the pause the cores run slowly for
 * a few milliseconds (their clock and the memory path wake up): a 3072x768
 * product at 90% took 0.115 ms first, 0.07 ms by the 3rd, 0.051 ms from
 * about the 80th (4 ms) on. Fixed warm-up counts then penalise the faster
 * side, whose runs all fall in that ramp; a fixed time puts both sides at
 * the steady speed that back-to-back layers of a model run at.
 */
#define BENCH_WARM_MS 20.0

/* A side of a comparison: run(ctx, i) does product i of its sequence. */
typedef sp_status (*run_fn)(void *ctx, size_t i, sp_error *err);
typedef struct timed_side {
    run_fn run;
    void *ctx;
    double ms; /* out: median of the timed runs */
} timed_side;

/*
 * BENCH_ROUNDS rounds of one block per side, the sides alternating: a pause
 * (see idle_pause), untimed runs (at least `warm` and BENCH_WARM_MS), then
 * about reps/rounds runs each timed alone; each side's median. Many short
 * rounds keep a burst of load from other processes from landing on one side
 * only. The run index keeps counting across blocks, so sides that cycle
 * through copies never reuse one right away.
 */
static sp_status time_sides(timed_side *sides, size_t nsides, size_t reps, size_t warm,
                            sp_error *err)
{
    double *t = malloc(nsides * reps * sizeof *t);
    size_t *nt = calloc(nsides, sizeof *nt), *next = calloc(nsides, sizeof *next);
    sp_status st = SP_OK;
    if (!t || !nt || !next) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    const size_t rounds = reps < BENCH_ROUNDS ? reps : BENCH_ROUNDS;
    for (size_t round = 0; round < rounds; round++) {
        const size_t cnt = reps / rounds + (round < reps % rounds);
        for (size_t s = 0; s < nsides; s++) {
            idle_pause();
            /* untimed: at least `warm` runs and BENCH_WARM_MS */
            const double w0 = now_ms();
            for (size_t i = 0; i < warm || now_ms() - w0 < BENCH_WARM_MS; i++) {
                st = sides[s].run(sides[s].ctx, next[s]++, err);
                if (st != SP_OK)
                    goto out;
            }
            for (size_t i = 0; i < cnt; i++) {
                const double t0 = now_ms();
                st = sides[s].run(sides[s].ctx, next[s]++, err);
                const double dt = now_ms() - t0;
                if (st != SP_OK)
                    goto out;
                t[s * reps + nt[s]++] = dt;
            }
        }
    }
    for (size_t s = 0; s < nsides; s++)
        sides[s].ms = median(t + s * reps, nt[s]);
out:
    free(t);
    free(nt);
    free(next);
    return st;
}

/* Product i of one layer: copy i % copies of the dense or sparse side. */
typedef struct layer_run {
    const dense_side *d;
    sparse_side *s;
    size_t m, n, k, nl; /* nl: layers per copy (sweeps) */
    const size_t *ms, *ks;
    int threads;
} layer_run;

#ifdef SP_HAVE_BLAS
static sp_status run_dense(void *ctx, size_t i, sp_error *err)
{
    const layer_run *r = ctx;
    (void)err;
    const size_t c = i % r->d->copies;
    blas_product(r->m, r->n, r->k, r->d->w[c], r->d->x[c], r->n, r->d->y[c], r->n, r->threads);
    return SP_OK;
}

/* One forward sweep: every layer of copy i once, in order. */
static sp_status run_dense_sweep(void *ctx, size_t i, sp_error *err)
{
    const layer_run *r = ctx;
    (void)err;
    const size_t c = i % (r->d->copies / r->nl);
    for (size_t l = 0; l < r->nl; l++) {
        const size_t j = c * r->nl + l;
        blas_product(r->ms[l], r->n, r->ks[l], r->d->w[j], r->d->x[j], r->n, r->d->y[j], r->n,
                     r->threads);
    }
    return SP_OK;
}
#endif

static sp_status run_sparse(void *ctx, size_t i, sp_error *err)
{
    const layer_run *r = ctx;
    const size_t c = i % r->s->copies;
    return sp_spmm_plan_run(r->s->plan[c], r->s->x[c], r->n, r->s->y[c], r->n, NULL, err);
}

static sp_status run_sparse_sweep(void *ctx, size_t i, sp_error *err)
{
    const layer_run *r = ctx;
    const size_t c = i % (r->s->copies / r->nl);
    sp_status st = SP_OK;
    for (size_t l = 0; l < r->nl && st == SP_OK; l++) {
        const size_t j = c * r->nl + l;
        st = sp_spmm_plan_run(r->s->plan[j], r->s->x[j], r->n, r->s->y[j], r->n, NULL, err);
    }
    return st;
}

/* OpenBLAS's own bf16 product (sbgemv at batch 1 when it has one). */
typedef struct bf16_run {
    const bench_env *e;
    const uint16_t *w, *x;
    float *y;
    size_t m, n, k;
    int threads;
} bf16_run;

static sp_status run_bf16_dense(void *ctx, size_t i, sp_error *err)
{
    const bf16_run *r = ctx;
    (void)i;
    (void)err;
#ifdef SP_HAVE_BLAS
#ifdef OPENBLAS_VERSION
    openblas_set_num_threads(r->threads);
#endif
    if (r->n == 1 && r->e->sbgemv)
        r->e->sbgemv(CblasRowMajor, CblasNoTrans, (int)r->m, (int)r->k, 1.0f, r->w, (int)r->k,
                     r->x, 1, 0.0f, r->y, 1);
    else
        r->e->sbgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)r->m, (int)r->n,
                     (int)r->k, 1.0f, r->w, (int)r->k, r->x, (int)r->n, 0.0f, r->y, (int)r->n);
#else
    (void)r;
#endif
    return SP_OK;
}

static sp_status pack_opts(const bench_opts *o, sp_spmat_opts *po)
{
    sp_spmat_opts_init(po);
    po->dtype = o->dtype;
    return SP_OK;
}

static void sparse_opts(const bench_opts *o, const bench_env *e, sp_spmm_opts *so,
                        sp_fallback fb)
{
    sp_spmm_opts_init(so);
    so->threads = (int)o->threads;
    so->kernel = o->kernel;
    so->max_isa = o->max_isa;
    so->fallback = fb;
    so->pool = e->pool;
    so->cache = e->cache;
#ifdef SP_HAVE_BLAS
    so->dense = blas_gemm;
#endif
}

/* Sparse copy i: packed W, its plan, and X (a copy of x0) and Y. */
static sp_status sparse_copy(const bench_opts *o, const bench_env *e, sparse_side *s,
                             size_t i, const float *w, size_t m, size_t k, size_t n,
                             const float *x0, sp_error *err)
{
    sp_spmat_opts po;
    pack_opts(o, &po);
    sp_status st = sp_spmat_pack_ex(&s->mat[i], w, m, k, &o->pattern, &po, err);
    if (st != SP_OK)
        return st;
    sp_spmm_opts so;
    sparse_opts(o, e, &so, SP_FALLBACK_NEVER);
    st = sp_spmm_plan_new(&s->plan[i], s->mat[i], n, &so, err);
    if (st != SP_OK)
        return st;
    s->x[i] = alloc64(k * n);
    s->y[i] = alloc64(m * n);
    if (!s->x[i] || !s->y[i])
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory for copy %zu", i);
    memcpy(s->x[i], x0, k * n * sizeof(float));
    return SP_OK;
}

static sp_status alloc_ptrs(void ***p, size_t n, sp_error *err)
{
    *p = calloc(n, sizeof(void *));
    return *p ? SP_OK : sp_error_set(err, SP_ERR_NOMEM, "out of memory");
}

/* Time and check W (dense masked, m x k) at batch n. */
static sp_status bench_one(const bench_opts *o, const bench_env *e, const float *w,
                           size_t m, size_t k, size_t n, bench_result *r, sp_error *err)
{
    sp_status st = SP_OK;
    dense_side d = {0};
    sparse_side s = {0};
    sp_spmm_plan *dplan = NULL;
    float *x0 = alloc64(k * n), *yref = alloc64(m * n), *wref = NULL, *xref = NULL;
    uint16_t *wb = NULL, *xb = NULL;
    float *yb = NULL;
    const size_t reps = (size_t)o->reps;
    if (!x0 || !yref) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    uint64_t seed = o->seed * 0x9E3779B97F4A7C15ull + 7;
    for (size_t i = 0; i < k * n; i++)
        x0[i] = rng_float(&seed);
    r->m = m;
    r->k = k;
    r->n = n;
    r->dense_ms = r->bf16_dense_ms = -1;

    /* The sparse side: copy 0 first, to learn the bytes one product reads. */
    s.copies = 1;
    if ((st = alloc_ptrs((void ***)&s.mat, 1, err)) || (st = alloc_ptrs((void ***)&s.plan, 1, err)) ||
        (st = alloc_ptrs((void ***)&s.x, 1, err)) || (st = alloc_ptrs((void ***)&s.y, 1, err)))
        goto out;
    st = sparse_copy(o, e, &s, 0, w, m, k, n, x0, err);
    if (st != SP_OK)
        goto out;
    r->nnz = s.mat[0]->nnz;
    r->sparsity = m && k ? 1.0 - (double)r->nnz / ((double)m * (double)k) : 0;
    snprintf(r->kernel, sizeof r->kernel, "%s", sp_spmm_plan_kernel(s.plan[0]));
    {
        const sp_ukernel_info *ui = sp_ukernel_find(r->kernel);
        r->isa = ui ? sp_isa_name(ui->isa) : "blas";
        r->layout = sp_layout_name(sp_spmm_plan_layout(s.plan[0]));
    }
    r->bytes_sparse = sp_spmm_plan_weight_bytes(s.plan[0]);
    r->bytes_dense = m * k * sizeof(float);

    /* The dispatcher's decision for this case (unless a kernel is forced). */
    if (o->kernel) {
        snprintf(r->dispatch_kernel, sizeof r->dispatch_kernel, "%s", r->kernel);
    } else {
        sp_spmm_opts so;
        sparse_opts(o, e, &so, o->fallback);
        st = sp_spmm_plan_new(&dplan, s.mat[0], n, &so, err);
        if (st != SP_OK)
            goto out;
        r->dispatch_dense = sp_spmm_plan_is_dense(dplan);
        snprintf(r->dispatch_kernel, sizeof r->dispatch_kernel, "%s",
                 sp_spmm_plan_kernel(dplan));
        sp_spmm_plan_free(dplan);
        dplan = NULL;
    }

    /* Cold copies: W (and X, Y) per copy, each side cycling its own. */
    const size_t xy = (k * n + m * n) * sizeof(float);
    const size_t cs = copies_for(o, e, r->bytes_sparse + xy, 100000, false);
    if (cs > 1) {
        sp_spmat **mat = calloc(cs, sizeof *mat);
        sp_spmm_plan **plan = calloc(cs, sizeof *plan);
        float **xs = calloc(cs, sizeof *xs), **ys = calloc(cs, sizeof *ys);
        if (!mat || !plan || !xs || !ys) {
            free(mat);
            free(plan);
            free(xs);
            free(ys);
            st = sp_error_set(err, SP_ERR_NOMEM, "out of memory for %zu copies", cs);
            goto out;
        }
        mat[0] = s.mat[0];
        plan[0] = s.plan[0];
        xs[0] = s.x[0];
        ys[0] = s.y[0];
        free(s.mat);
        free(s.plan);
        free(s.x);
        free(s.y);
        s = (sparse_side){cs, mat, plan, xs, ys};
        for (size_t i = 1; i < cs; i++) {
            st = sparse_copy(o, e, &s, i, w, m, k, n, x0, err);
            if (st != SP_OK)
                goto out;
        }
    }
    r->copies_sparse = s.copies;
#ifdef SP_HAVE_BLAS
    d.copies = copies_for(o, e, r->bytes_dense + xy, 100000, false);
    if ((st = alloc_ptrs((void ***)&d.w, d.copies, err)) ||
        (st = alloc_ptrs((void ***)&d.x, d.copies, err)) ||
        (st = alloc_ptrs((void ***)&d.y, d.copies, err)))
        goto out;
    for (size_t i = 0; i < d.copies; i++) {
        d.w[i] = alloc64(m * k);
        d.x[i] = alloc64(k * n);
        d.y[i] = alloc64(m * n);
        if (!d.w[i] || !d.x[i] || !d.y[i]) {
            st = sp_error_set(err, SP_ERR_NOMEM, "out of memory for dense copy %zu", i);
            goto out;
        }
        memcpy(d.w[i], w, m * k * sizeof(float));
        memcpy(d.x[i], x0, k * n * sizeof(float));
    }
    r->copies_dense = d.copies;
    /* OpenBLAS's own bf16 product, where this build has it (one copy). */
    const bool have_bf16 = o->dtype == SP_BF16 && (n == 1 ? e->sbgemv || e->sbgemm : e->sbgemm != NULL);
    if (have_bf16) {
        wb = malloc(at_least_1(m * k) * sizeof *wb);
        xb = malloc(at_least_1(k * n) * sizeof *xb);
        yb = alloc64(m * n);
        if (!wb || !xb || !yb) {
            st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < m * k; i++)
            wb[i] = sp_bf16_from_f32(w[i]);
        for (size_t i = 0; i < k * n; i++)
            xb[i] = sp_bf16_from_f32(x0[i]);
    }
#else
    const bool have_bf16 = false;
#endif

    /* Dense, (OpenBLAS bf16,) sparse: at least 2 warm-up runs per block. */
    {
        layer_run lr = {&d, &s, m, n, k, 1, NULL, NULL, (int)o->threads};
        bf16_run br = {e, wb, xb, yb, m, n, k, (int)o->threads};
        timed_side sides[3];
        size_t nsides = 0;
#ifdef SP_HAVE_BLAS
        sides[nsides++] = (timed_side){run_dense, &lr, 0};
#endif
        if (have_bf16)
            sides[nsides++] = (timed_side){run_bf16_dense, &br, 0};
        sides[nsides++] = (timed_side){run_sparse, &lr, 0};
        st = time_sides(sides, nsides, reps, 2, err);
        if (st != SP_OK)
            goto out;
        r->sparse_ms = sides[nsides - 1].ms;
#ifdef SP_HAVE_BLAS
        r->dense_ms = sides[0].ms;
#endif
        if (have_bf16)
            r->bf16_dense_ms = sides[1].ms;
    }

    /* The check: copy 0 against a dense product of the same operands (bf16
     * weights and X rounded as the bf16 kernels define them). */
    const float *wc = w, *xc = x0;
    const sp_ukernel_info *ran = sp_ukernel_find(r->kernel);
    if (o->dtype == SP_BF16) {
        wref = alloc64(m * k);
        xref = alloc64(k * n);
        if (!wref || !xref) {
            st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < m * k; i++)
            wref[i] = bf16_round(w[i]);
        /* bf16 kernels round X; a forced dense kernel takes it as it is */
        for (size_t i = 0; i < k * n; i++)
            xref[i] = ran && ran->dtype == SP_BF16 ? bf16_round(x0[i]) : x0[i];
        wc = wref;
        xc = xref;
    }
    st = sp_spmm_plan_run(s.plan[0], s.x[0], n, s.y[0], n, NULL, err);
    if (st != SP_OK)
        goto out;
    check_product(m, n, k, wc, xc, yref, (int)o->threads);
    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < m * n; i++) {
        const double a = fabs((double)yref[i]), df = fabs((double)s.y[0][i] - (double)yref[i]);
        if (a > maxref)
            maxref = a;
        if (df > maxdiff || isnan(df))
            maxdiff = isnan(df) ? INFINITY : df;
    }
    r->max_rel_error = maxref > 0 ? maxdiff / maxref : maxdiff;
out:
    sp_spmm_plan_free(dplan);
    sparse_side_free(&s);
    dense_side_free(&d);
    free(x0);
    free(yref);
    free(wref);
    free(xref);
    free(wb);
    free(xb);
    free(yb);
    return st;
}

/* ---- output ------------------------------------------------------------ */

static double gflops(double flops, double ms) { return ms > 0 ? flops / (ms * 1e6) : 0; }
static double gbps(size_t bytes, double ms) { return ms > 0 ? (double)bytes / (ms * 1e6) : 0; }

static const char *dtype_text(sp_dtype t) { return t == SP_BF16 ? "bfloat16" : "float32"; }

static cJSON *result_json(const bench_opts *o, const bench_env *e, const bench_result *r)
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
    cJSON_AddStringToObject(j, "dtype", dtype_text(o->dtype));
    cJSON_AddNumberToObject(j, "threads", (double)o->threads);
    cJSON_AddStringToObject(j, "kernel", r->kernel);
    cJSON_AddStringToObject(j, "isa", r->isa);
    cJSON_AddStringToObject(j, "layout", r->layout);
    cJSON_AddBoolToObject(j, "cold", o->cold);
    cJSON_AddNumberToObject(j, "copies_dense", (double)r->copies_dense);
    cJSON_AddNumberToObject(j, "copies_sparse", (double)r->copies_sparse);
    cJSON_AddNumberToObject(j, "weight_bytes_dense", (double)r->bytes_dense);
    cJSON_AddNumberToObject(j, "weight_bytes_sparse", (double)r->bytes_sparse);
    const double dflops = 2.0 * (double)r->m * (double)r->k * (double)r->n;
    const double uflops = 2.0 * (double)r->nnz * (double)r->n;
    if (r->dense_ms >= 0) {
        snprintf(buf, sizeof buf, "openblas %s", dense_routine(r->n));
        cJSON_AddStringToObject(j, "baseline", buf);
        cJSON_AddStringToObject(j, "dense_routine", dense_routine(r->n));
        cJSON_AddStringToObject(j, "dense_core", e->core ? e->core : "unknown");
        cJSON_AddNumberToObject(j, "dense_ms", r->dense_ms);
        cJSON_AddNumberToObject(j, "dense_gflops", gflops(dflops, r->dense_ms));
        cJSON_AddNumberToObject(j, "dense_gbps", gbps(r->bytes_dense, r->dense_ms));
    } else {
        cJSON_AddStringToObject(j, "baseline", "unavailable");
        cJSON_AddNullToObject(j, "dense_routine");
        cJSON_AddNullToObject(j, "dense_core");
        cJSON_AddNullToObject(j, "dense_ms");
        cJSON_AddNullToObject(j, "dense_gflops");
        cJSON_AddNullToObject(j, "dense_gbps");
    }
    cJSON_AddNumberToObject(j, "sparse_ms", r->sparse_ms);
    cJSON_AddNumberToObject(j, "sparse_gflops", gflops(uflops, r->sparse_ms));
    cJSON_AddNumberToObject(j, "effective_gflops", gflops(dflops, r->sparse_ms));
    cJSON_AddNumberToObject(j, "sparse_gbps", gbps(r->bytes_sparse, r->sparse_ms));
    if (r->dense_ms >= 0)
        cJSON_AddNumberToObject(j, "speedup", r->sparse_ms > 0 ? r->dense_ms / r->sparse_ms : 0);
    else
        cJSON_AddNullToObject(j, "speedup");
    cJSON_AddStringToObject(j, "dispatch", r->dispatch_dense ? "dense" : "sparse");
    cJSON_AddStringToObject(j, "dispatch_kernel", r->dispatch_kernel);
    if (o->dtype == SP_BF16) {
        if (r->bf16_dense_ms >= 0) {
            cJSON_AddStringToObject(j, "bf16_dense_routine",
                                    r->n == 1 && e->sbgemv ? "cblas_sbgemv" : "cblas_sbgemm");
            cJSON_AddNumberToObject(j, "bf16_dense_ms", r->bf16_dense_ms);
        } else {
            cJSON_AddStringToObject(j, "bf16_dense_routine",
                                    "unavailable (this OpenBLAS has no cblas_sbgemm/sbgemv)");
            cJSON_AddNullToObject(j, "bf16_dense_ms");
        }
    }
    cJSON_AddNumberToObject(j, "max_rel_error", r->max_rel_error);
    return j;
}

static void table_header(bool model)
{
    printf("%-*s %-11s %5s %-12s %8s %-40s %-11s %9s %9s %8s %8s %8s %-6s %9s\n",
           model ? 28 : 0, model ? "layer" : "", "shape", "batch", "pattern", "sparsity",
           "kernel", "dense", "dense_ms", "sparse_ms", "dense_GF", "sparse_GF", "speedup",
           "picks", "max_rel");
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
        snprintf(dms, sizeof dms, "%.4f", r->dense_ms);
        snprintf(dgf, sizeof dgf, "%.1f", gflops(dflops, r->dense_ms));
    } else {
        snprintf(dms, sizeof dms, "n/a");
        snprintf(dgf, sizeof dgf, "n/a");
    }
    printf("%-*s %-11s %5zu %-12s %8.4f %-40s %-11s %9s %9.4f %8s %8.1f %8s %-6s %9.1e\n",
           model ? 28 : 0, model ? r->name : "", shape, r->n,
           sp_pattern_str(&o->pattern, pat, sizeof pat), r->sparsity, r->kernel,
           r->dense_ms >= 0 ? dense_routine(r->n) + 6 : "none", dms, r->sparse_ms, dgf,
           gflops(uflops, r->sparse_ms), sp, r->dispatch_dense ? "dense" : "sparse",
           r->max_rel_error);
}

static void print_header(const bench_opts *o, const bench_env *e)
{
    char mib[32];
    if (o->cold_mib > 0)
        snprintf(mib, sizeof mib, "%.0f MiB", o->cold_mib);
    else
        snprintf(mib, sizeof mib, "4x LLC = %zu MiB", 4 * e->llc >> 20);
    printf("dense: %s, core %s, cblas_sgemv at batch 1, cblas_sgemm above; %ld threads; "
           "values %s; %s\n",
#ifdef SP_HAVE_BLAS
           "OpenBLAS",
#else
           "no BLAS (checked against a scalar double-precision product)",
#endif
           e->core ? e->core : "-", o->threads, dtype_text(o->dtype),
           o->cold ? "cold (copies of W and X cycled)" : "warm");
    if (o->cold)
        printf("cold: each side cycles through copies totalling %s\n", mib);
}

static void print_results(const bench_opts *o, const bench_env *e, const bench_result *r,
                          size_t nr, bool model, const sweep_result *sw)
{
    if (o->json) {
        cJSON *root;
        if (!model && nr == 1) {
            root = result_json(o, e, &r[0]);
        } else if (!model) {
            root = cJSON_CreateArray();
            for (size_t i = 0; i < nr; i++)
                cJSON_AddItemToArray(root, result_json(o, e, &r[i]));
        } else {
            root = cJSON_CreateObject();
            cJSON *layers = cJSON_AddArrayToObject(root, "layers");
            double d = 0, s = 0, fl = 0, ufl = 0;
            bool have_dense = true;
            for (size_t i = 0; i < nr; i++) {
                cJSON_AddItemToArray(layers, result_json(o, e, &r[i]));
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
            if (sw->have) {
                cJSON *w = cJSON_AddObjectToObject(root, "sweep");
                cJSON_AddBoolToObject(w, "cold", sw->cold);
                cJSON_AddNumberToObject(w, "batch", nr ? (double)r[0].n : 0);
                cJSON_AddNumberToObject(w, "copies_dense", (double)sw->copies_dense);
                cJSON_AddNumberToObject(w, "copies_sparse", (double)sw->copies_sparse);
                cJSON_AddNumberToObject(w, "bytes_dense", (double)sw->bytes_dense);
                cJSON_AddNumberToObject(w, "bytes_sparse", (double)sw->bytes_sparse);
                if (sw->dense_ms >= 0) {
                    cJSON_AddNumberToObject(w, "dense_ms", sw->dense_ms);
                    cJSON_AddNumberToObject(w, "speedup",
                                            sw->sparse_ms > 0 ? sw->dense_ms / sw->sparse_ms : 0);
                } else {
                    cJSON_AddNullToObject(w, "dense_ms");
                    cJSON_AddNullToObject(w, "speedup");
                }
                cJSON_AddNumberToObject(w, "sparse_ms", sw->sparse_ms);
            }
        }
        char *txt = cJSON_Print(root);
        if (txt)
            puts(txt);
        free(txt);
        cJSON_Delete(root);
        return;
    }
    print_header(o, e);
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
        if (sw->have && sw->dense_ms >= 0)
            printf("sweep (%s, %zu/%zu copies): dense %.3f ms, sparse %.3f ms, speedup %.2fx\n",
                   sw->cold ? "cold" : "warm", sw->copies_dense, sw->copies_sparse,
                   sw->dense_ms, sw->sparse_ms, sw->sparse_ms > 0 ? sw->dense_ms / sw->sparse_ms : 0);
        else if (sw->have)
            printf("sweep (%s): sparse %.3f ms\n", sw->cold ? "cold" : "warm", sw->sparse_ms);
    }
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

static sp_status env_start(const bench_opts *o, bench_env *e, sp_error *err)
{
    sp_status st = sp_threadpool_new(&e->pool, (int)o->threads, err);
    if (st == SP_OK)
        st = sp_spmm_cache_new(&e->cache, err);
    return st;
}

static int bench_synthetic(const bench_opts *o, size_t m, size_t k, const size_t *batches,
                           size_t nb)
{
    sp_error err = {0};
    float *w = NULL;
    bench_env e;
    env_init(&e);
    bench_result *res = calloc(nb, sizeof *res);
    int rc = EXIT_OK;
    sp_status st = res ? env_start(o, &e, &err)
                       : sp_error_set(&err, SP_ERR_NOMEM, "out of memory");
    if (st == SP_OK)
        st = make_weights(o, m, k, &w, &err);
    for (size_t i = 0; st == SP_OK && i < nb; i++)
        st = bench_one(o, &e, w, m, k, batches[i], &res[i], &err);
    if (st != SP_OK) {
        rc = cli_fail(&err);
        goto out;
    }
    const sweep_result none = {0};
    print_results(o, &e, res, nb, false, &none);
    rc = check_errors(res, nb);
out:
    env_release(&e);
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

/* The weights of a model, kept for the sweep. */
typedef struct model_layer {
    float *w;
    size_t m, k;
} model_layer;

/*
 * One forward sweep: every layer once, in order, on each side, as a model's
 * forward pass does (the layers' inputs are not chained: shapes need not
 * match). Cold: both sides cycle through copies of the whole model.
 */
static sp_status bench_sweep(const bench_opts *o, const bench_env *e, const model_layer *L,
                             size_t nl, size_t n, sweep_result *sw, sp_error *err)
{
    sp_status st = SP_OK;
    size_t bytes_d = 0, bytes_s = 0, xy = 0;
    sweep_result out = {0};
    out.have = true;
    out.dense_ms = -1;
    /* copies * nl entries of each */
    sparse_side s = {0};
    dense_side d = {0};
    const size_t reps = (size_t)(o->reps < 9 ? 9 : o->reps);
    float *x0 = NULL;
    size_t maxk = 1;
    size_t *ms = malloc(at_least_1(nl) * sizeof *ms), *ks = malloc(at_least_1(nl) * sizeof *ks);
    for (size_t l = 0; ms && ks && l < nl; l++) {
        bytes_d += L[l].m * L[l].k * sizeof(float);
        xy += (L[l].k + L[l].m) * n * sizeof(float);
        if (L[l].k > maxk)
            maxk = L[l].k;
        ms[l] = L[l].m;
        ks[l] = L[l].k;
    }
    x0 = alloc64(maxk * n);
    if (!ms || !ks || !x0) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    uint64_t seed = o->seed * 0x9E3779B97F4A7C15ull + 11;
    for (size_t i = 0; i < maxk * n; i++)
        x0[i] = rng_float(&seed);
    /* Sparse copy 0 of every layer first (its bytes size the copies). */
    const size_t cap = 4096;
    if ((st = alloc_ptrs((void ***)&s.mat, nl * cap, err)) ||
        (st = alloc_ptrs((void ***)&s.plan, nl * cap, err)) ||
        (st = alloc_ptrs((void ***)&s.x, nl * cap, err)) ||
        (st = alloc_ptrs((void ***)&s.y, nl * cap, err)))
        goto out;
    s.copies = 0;
    for (size_t c = 0; c == 0 || c < out.copies_sparse; c++) {
        for (size_t l = 0; l < nl; l++) {
            sp_spmat_opts po;
            pack_opts(o, &po);
            const size_t i = c * nl + l;
            s.copies = i + 1; /* for sparse_side_free */
            st = sp_spmat_pack_ex(&s.mat[i], L[l].w, L[l].m, L[l].k, &o->pattern, &po, err);
            if (st != SP_OK)
                goto out;
            sp_spmm_opts so;
            sparse_opts(o, e, &so, o->fallback); /* what sparsify would run */
            st = sp_spmm_plan_new(&s.plan[i], s.mat[i], n, &so, err);
            if (st != SP_OK)
                goto out;
            s.x[i] = alloc64(L[l].k * n);
            s.y[i] = alloc64(L[l].m * n);
            if (!s.x[i] || !s.y[i]) {
                st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
                goto out;
            }
            memcpy(s.x[i], x0, L[l].k * n * sizeof(float));
            if (c == 0)
                bytes_s += sp_spmm_plan_weight_bytes(s.plan[i]);
        }
        if (c == 0)
            out.copies_sparse = copies_for(o, e, bytes_s + xy, cap, true);
    }
    out.bytes_sparse = bytes_s;
    out.bytes_dense = bytes_d;
#ifdef SP_HAVE_BLAS
    out.copies_dense = copies_for(o, e, bytes_d + xy, cap, true);
    d.copies = out.copies_dense * nl;
    if ((st = alloc_ptrs((void ***)&d.w, d.copies, err)) ||
        (st = alloc_ptrs((void ***)&d.x, d.copies, err)) ||
        (st = alloc_ptrs((void ***)&d.y, d.copies, err)))
        goto out;
    for (size_t i = 0; i < d.copies; i++) {
        const model_layer *ly = &L[i % nl];
        d.w[i] = alloc64(ly->m * ly->k);
        d.x[i] = alloc64(ly->k * n);
        d.y[i] = alloc64(ly->m * n);
        if (!d.w[i] || !d.x[i] || !d.y[i]) {
            st = sp_error_set(err, SP_ERR_NOMEM, "out of memory for the dense sweep");
            goto out;
        }
        memcpy(d.w[i], ly->w, ly->m * ly->k * sizeof(float));
        memcpy(d.x[i], x0, ly->k * n * sizeof(float));
    }
#endif
    {
        layer_run lr = {&d, &s, 0, n, 0, nl, ms, ks, (int)o->threads};
        timed_side sides[2];
        size_t nsides = 0;
#ifdef SP_HAVE_BLAS
        sides[nsides++] = (timed_side){run_dense_sweep, &lr, 0};
#endif
        sides[nsides++] = (timed_side){run_sparse_sweep, &lr, 0};
        st = time_sides(sides, nsides, reps, 1, err);
        if (st != SP_OK)
            goto out;
        out.sparse_ms = sides[nsides - 1].ms;
        if (nsides == 2)
            out.dense_ms = sides[0].ms;
    }
    /* cold when each side cycles through more than the cold size */
    out.cold = (double)out.copies_sparse * (double)(bytes_s + xy) >= cold_bytes(o, e) &&
               (out.dense_ms < 0 ||
                (double)out.copies_dense * (double)(bytes_d + xy) >= cold_bytes(o, e));
    *sw = out;
out:
    sparse_side_free(&s);
    dense_side_free(&d);
    free(ms);
    free(ks);
    free(x0);
    return st;
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
    model_layer *L = NULL;
    size_t nl = 0, lcap = 0;
    float *w = NULL;
    uint8_t *mask = NULL;
    size_t nr = 0, cap = 0;
    int rc = EXIT_OK;
    sweep_result sw = {0};
    bench_env e;
    env_init(&e);
    sp_status st = env_start(o, &e, &err);
    if (st != SP_OK) {
        env_release(&e);
        return cli_fail(&err);
    }
    st = sp_ckpt_open(&ck, path, &err);
    if (st != SP_OK) {
        env_release(&e);
        return cli_fail(&err);
    }
    for (size_t ti = 0; ti < sp_ckpt_num_tensors(ck); ti++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, ti);
        size_t m, k;
        if (!prunable_matrix(t, &m, &k))
            continue;
        if (!sp_tensor_is_contiguous(t)) {
            cli_warn("'%s': skipped (not a contiguous view)", t->name);
            continue;
        }
        if (m > SIZE_MAX / sizeof(float) / k) {
            st = sp_error_set(&err, SP_ERR_FORMAT, "tensor '%s': %zux%zu is too large", t->name,
                              m, k);
            goto fail;
        }
        const void *data;
        st = sp_ckpt_tensor_data(ck, ti, &data, &err);
        if (st != SP_OK) {
            sp_error_prefix(&err, "tensor '%s'", t->name);
            goto fail;
        }
        w = malloc(m * k * sizeof(float));
        free(mask);
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
            st = bench_one(o, &e, w, m, k, batches[b], &res[nr], &err);
            if (st != SP_OK) {
                sp_error_prefix(&err, "tensor '%s'", t->name);
                goto fail;
            }
            nr++;
        }
        if (nl == lcap) {
            lcap = lcap ? 2 * lcap : 16;
            model_layer *nL = realloc(L, lcap * sizeof *L);
            if (!nL) {
                st = sp_error_set(&err, SP_ERR_NOMEM, "out of memory");
                goto fail;
            }
            L = nL;
        }
        L[nl++] = (model_layer){w, m, k};
        w = NULL;
    }
    if (nr == 0) {
        cli_error("'%s': no prunable weight matrices", path);
        rc = EXIT_USAGE;
        goto out;
    }
    st = bench_sweep(o, &e, L, nl, batches[0], &sw, &err);
    if (st != SP_OK)
        goto fail;
    print_results(o, &e, res, nr, true, &sw);
    rc = check_errors(res, nr);
    if (o->html && rc == EXIT_OK)
        rc = write_html(o, path, ck, res, nr, nb);
    goto out;
fail:
    rc = cli_fail(&err);
out:
    for (size_t l = 0; l < nl; l++)
        free(L[l].w);
    free(L);
    free(w);
    free(mask);
    free(res);
    sp_ckpt_close(ck);
    env_release(&e);
    return rc;
}

/* ---- argv -------------------------------------------------------------- */

static int list_kernels(void)
{
    printf("%-48s %-10s %-6s %-8s %s\n", "kernel", "isa", "layout", "values", "this cpu");
    for (size_t i = 0; i < sp_ukernel_count(); i++) {
        const sp_ukernel_info *k = sp_ukernel_at(i);
        printf("%-48s %-10s %-6s %-8s %s\n", k->name, sp_isa_name(k->isa),
               sp_layout_name(k->layout), dtype_text(k->dtype),
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
    if (o.threads > 1024)
        o.threads = 1024;
    o.reps = 30;
    o.seed = 1;
    o.max_isa = SP_ISA_COUNT;
    o.fallback = SP_FALLBACK_MEASURE;
    o.sparsity = 0.9;
    o.dtype = SP_F32;
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
        } else if (!strcmp(a, "--cold")) {
            o.cold = true;
        } else if (!strcmp(a, "--cold-mib")) {
            NEED_VALUE();
            if (!cli_parse_double("--cold-mib", v, &o.cold_mib))
                return EXIT_USAGE;
            if (!(o.cold_mib > 0 && o.cold_mib <= 65536))
                return cli_usage_error("bench", "option '--cold-mib': %s is not in (0, 65536]", v);
            o.cold = true;
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
        } else if (!strcmp(a, "--dtype")) {
            NEED_VALUE();
            const sp_dtype t = sp_dtype_from_name(v);
            if (t != SP_F32 && t != SP_BF16)
                return cli_usage_error("bench", "option '--dtype': '%s' is not float32 or "
                                       "bfloat16", v);
            o.dtype = t;
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
                return cli_usage_error("bench", "option '--isa': '%s' is not scalar, avx2, "
                                       "avx512 or avx512bf16", v);
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
    if (o.kernel) {
        const sp_ukernel_info *k = sp_ukernel_find(o.kernel);
        if (k->dtype != o.dtype && k->layout != SP_LAYOUT_DENSE)
            return cli_usage_error("bench", "option '--kernel': '%s' takes %s values "
                                   "(see '--dtype')", o.kernel, dtype_text(k->dtype));
    }
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
