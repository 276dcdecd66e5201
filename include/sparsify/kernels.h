/*
 * sparsify — sparse x dense matrix products on the CPU (docs/kernels.md).
 *
 *   Y[M x N] = W[M x K] . X[K x N] (+ bias[M] broadcast along N)
 *
 * W is sparse (packed once into an sp_spmat), X and Y are dense fp32,
 * row-major with leading dimensions ldx >= N and ldy >= N. This is the
 * product of a pruned Linear layer (W = weight [out, in], X = activations
 * transposed, one column per token) or a 1x1 convolution (X = [C_in, H*W]).
 *
 * Layers:
 *   sp_spmat           packed weights: CSR (unstructured), BCSR (RxC blocks),
 *                      N:M (values + packed in-group offsets), SELL (16-row
 *                      slices x 128-column windows, the batch-1 layout), or
 *                      dense; values f32, or bf16 for N:M and SELL.
 *   ukernels           one function per (dtype, layout, tile, ISA), listed in
 *                      kernels/f32-spmm.inc and kernels/bf16-spmm.inc; they
 *                      never allocate, print or fail; preconditions are
 *                      asserts.
 *   sp_spmm_plan       the dispatcher: validates, picks a ukernel from cpuid,
 *                      N, the layout and dtype, derives the layout it runs on
 *                      (SELL for N = 1), splits rows over threads (balanced by
 *                      nonzeros; its own or a caller's sp_threadpool) and
 *                      falls back to a dense product when that is faster
 *                      (estimated, or measured once per case into a caller's
 *                      sp_spmm_cache). Backends: CPU now; a CUDA slot is
 *                      reserved.
 */
#ifndef SPARSIFY_KERNELS_H
#define SPARSIFY_KERNELS_H

#include "sparsify/common.h"
#include "sparsify/prune.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a product runs. Only SP_BACKEND_CPU is implemented; a plan asked for
 * CUDA fails with SP_ERR_UNSUPPORTED until that backend lands. */
typedef enum sp_backend {
    SP_BACKEND_CPU = 0,
    SP_BACKEND_CUDA = 1,
} sp_backend;

/* Instruction sets, in increasing order of preference. */
typedef enum sp_isa {
    SP_ISA_SCALAR = 0,
    SP_ISA_AVX2 = 1,       /* AVX2 + FMA */
    SP_ISA_AVX512 = 2,     /* AVX-512 F + BW + VL + DQ */
    SP_ISA_AVX512BF16 = 3, /* AVX-512 as above + BF16 + VBMI (Zen 4+, Cooper Lake+) */
    SP_ISA_COUNT
} sp_isa;

/* "scalar", "avx2", "avx512", "avx512bf16"; "?" when out of range. */
const char *sp_isa_name(sp_isa isa);
/* True when this CPU (and OS) can run code compiled for isa (cpuid). */
bool sp_isa_supported(sp_isa isa);
/* The best supported ISA of this machine. */
sp_isa sp_isa_best(void);

typedef enum sp_layout {
    SP_LAYOUT_DENSE = 0, /* row-major M x K values */
    SP_LAYOUT_CSR = 1,   /* unstructured */
    SP_LAYOUT_BCSR = 2,  /* r x c blocks */
    SP_LAYOUT_NM = 3,    /* at most n nonzeros in every m along K */
    SP_LAYOUT_SELL = 4,  /* any pattern, for n == 1: 16-row slices x column windows */
} sp_layout;

/* "dense", "csr", "bcsr", "nm", "sell". */
const char *sp_layout_name(sp_layout l);

/*
 * Packed weights. Read-only after sp_spmat_pack; kernels read the arrays
 * directly, so the layout is the contract (docs/kernels.md):
 *
 *  CSR   columns are cut into npanels K-panels of kc columns (kc =
 *        SP_CSR_KC, or cols when smaller); nonzeros are stored panel by
 *        panel, row by row, column by column. Row m of panel p is
 *        [row_ptr[p*rows + m], row_ptr[p*rows + m + 1]) of values[] and
 *        col_idx[] (the column, uint16, so cols <= 65536). With one panel
 *        this is plain CSR. Panels let a kernel keep kc rows of X in L1.
 *  BCSR  block row i covers rows [i*br, i*br + br); row_ptr[nbrows + 1]
 *        indexes blocks; col_idx[b] is the first column of block b (a
 *        multiple of bc); values[b*br*bc ...] is the block, row-major.
 *        Edge blocks (ragged rows/cols) are zero-padded; kernels never read
 *        X rows >= cols nor write Y rows >= rows.
 *  NM    groups = ceil(cols / m) per row, each with exactly n slots: value
 *        values[(row*groups + g)*n + s] at column g*m + off, where off is
 *        stored in nm_bits bits (ceil(log2 m), 1..4) at bit position
 *        (g*n + s)*nm_bits of the row's bit string nm_idx + row*nm_stride
 *        (LSB first). Empty slots hold value 0 and off 0. 2:4 is one byte per
 *        two groups: values + 2-bit indices.
 *  DENSE values[rows*cols], row-major.
 *  SELL  (sliced ELLPACK in column windows, for n == 1) rows go in units
 *        of G = sell_group consecutive rows (G = the block height of 2, 4,
 *        8 or 16 row blocks, else 1), sorted by decreasing number of columns
 *        (ties in row order), and are cut into sell_slices slices of
 *        SP_SELL_H = 16 lanes (lane l of slice s is row sell_rows[s*16 + l];
 *        UINT32_MAX: no row), columns into sell_windows windows of
 *        SP_SELL_W = 128 (window w is columns [w*128, w*128 + 128)). Slice s,
 *        window w has sell_steps[s*sell_windows + w] steps (0..128/P); the
 *        steps of slice s start at step sell_ptr[s] (sell_ptr[sell_slices]
 *        = all steps), window after window. A step holds SP_SELL_H*P value
 *        slots, slot (l, q) at position l*P + q: P = sell_slots (1 for f32
 *        values, 2 for bf16 values: a pair per 32-bit lane). The j-th column
 *        of a unit within window w (in column order: the union of its rows'
 *        nonzero columns) is slot (l, j % P) of step j / P of that window for
 *        each lane l of the unit: its value values[step*16*P + l*P + q] (or
 *        bvalues[...]; 0 where the row has none), its column minus w*128
 *        sell_idx[step*16*P/G + (l/G)*P + q]. Empty slots hold value 0 and
 *        index 0. Bytes per stored slot: 4 + 1/G (f32) or 2 + 1/G (bf16); a
 *        step costs the widest unit of the slice in that window, so the
 *        layout pads, but every step is one vector operation with the
 *        window of X in registers and no horizontal sum.
 *
 * Values are f32 (values[]) or bf16 (bvalues[], dtype SP_BF16: CSR, BCSR and
 * DENSE are f32 only; NM and SELL may be either). The order of the stored
 * values of every layout is described in docs/kernels.md.
 */
/* Columns per CSR K-panel: 128 rows of a 64-float X tile are 32 KiB (L1). */
#define SP_CSR_KC 128
/* SELL: rows per slice (vector lanes) and columns per window (X in 8 zmm). */
#define SP_SELL_H 16
#define SP_SELL_W 128

typedef struct sp_spmat {
    sp_layout layout;
    size_t rows, cols;   /* M, K */
    size_t br, bc;       /* BCSR block shape (CSR: 1x1) */
    int n, m;            /* NM */
    size_t nnz;          /* nonzeros of the source (the useful FLOPs / 2N) */
    size_t nstored;      /* stored values, padding included */
    size_t nbrows;       /* CSR, NM: rows; BCSR: ceil(rows/br); SELL: slices */
    size_t kc, npanels;  /* CSR K-panels */
    size_t nblocks;      /* BCSR */
    uint32_t *row_ptr;   /* CSR (npanels*rows + 1), BCSR (nbrows + 1) */
    uint16_t *col_idx;   /* CSR, BCSR */
    float *values;       /* f32 values (NULL when dtype is SP_BF16) */
    uint8_t *nm_idx;     /* NM */
    size_t nm_groups, nm_stride;
    int nm_bits;
    sp_dtype dtype;      /* of the values: SP_F32 or SP_BF16 */
    uint16_t *bvalues;   /* bf16 values (bit patterns) when dtype is SP_BF16 */
    size_t sell_slices, sell_windows, sell_nsteps;
    int sell_slots;      /* P: slots per lane and step (1 f32, 2 bf16) */
    uint32_t *sell_ptr;  /* sell_slices + 1 */
    uint8_t *sell_steps; /* sell_slices * sell_windows */
    uint8_t *sell_idx;   /* sell_nsteps * 16 * P */
    uint32_t *sell_rows; /* sell_slices * 16: the row of each lane
                            (UINT32_MAX: no row) */
    int sell_group;      /* G: lanes (rows of one block) sharing indices */
} sp_spmat;

/*
 * bfloat16 from float, as AVX512-BF16 (vcvtne2ps2bf16) rounds: nearest,
 * ties to even; a subnormal input gives a signed zero; NaN stays a quiet NaN
 * (the high half with the quiet bit set); large values round to infinity.
 * This is the rounding of packed bf16 weights and of X in bf16 products.
 */
uint16_t sp_bf16_from_f32(float v);

typedef struct sp_spmat_opts {
    sp_dtype dtype; /* SP_F32 (default) or SP_BF16: values rounded by
                       sp_bf16_from_f32; unstructured and block patterns are
                       then packed as SELL, N:M as NM */
    bool sell;      /* pack unstructured and block patterns as SELL (the
                       batch-1 layout) instead of CSR/BCSR */
} sp_spmat_opts;

/* Defaults: f32, layout by pattern. */
void sp_spmat_opts_init(sp_spmat_opts *o);

/*
 * Pack a dense, masked, row-major rows x cols weight: zeros are pruned.
 * pattern: NULL for the dense layout; unstructured -> CSR; RxC -> BCSR
 * (any block containing a nonzero is stored whole); N:M -> NM (m <= 16).
 * Returns a new object in *out; caller frees with sp_spmat_free.
 * Errors: SP_ERR_INVALID_ARG (a group of an N:M pattern holds more than n
 * nonzeros: the message names the row and group; NaN/Inf is not checked),
 * SP_ERR_UNSUPPORTED (cols > 65536 for CSR/BCSR, m > 16, more than 2^32-1
 * stored values), SP_ERR_NOMEM.
 */
sp_status sp_spmat_pack(sp_spmat **out, const float *w, size_t rows, size_t cols,
                        const sp_pattern *pattern, sp_error *err);
/* The same with options (value type, SELL); opts NULL: defaults. Errors as
 * sp_spmat_pack, and SP_ERR_INVALID_ARG for a dtype other than f32/bf16 or
 * bf16 without a pattern (the dense layout is f32). SELL needs no column
 * limit beyond size_t; more than 2^32-1 steps is SP_ERR_UNSUPPORTED. */
sp_status sp_spmat_pack_ex(sp_spmat **out, const float *w, size_t rows, size_t cols,
                           const sp_pattern *pattern, const sp_spmat_opts *opts,
                           sp_error *err);
/* Write the dense rows x cols matrix back (pruned entries as +0; bf16 values
 * widened exactly). */
void sp_spmat_unpack(const sp_spmat *s, float *w);
/*
 * Where the kept values live: map[k] = index in s->values (s->bvalues for
 * bf16 values) of the k-th nonzero of the packed source in row-major order,
 * for k < s->nnz (map has s->nnz entries), for every layout (SELL: lanes
 * are looked up by search, O(rows^2 / 16)). With it a caller that keeps the
 * kept values in row-major order (e.g. as a trainable vector) refreshes the
 * packed matrix in O(nnz):
 * s->values[map[k]] = v[k]; padding (BCSR, empty N:M or SELL slots, a SELL
 * unit partner's columns) is never mapped.
 * Call it on a freshly packed s: the source's nonzeros are told apart from
 * padding by their value (nonzero), so s->values must not have changed.
 * The dense layout maps at most 2^32 - 1 positions (asserted).
 */
void sp_spmat_value_map(const sp_spmat *s, uint32_t *map);
/* Bytes of the packed arrays. */
size_t sp_spmat_bytes(const sp_spmat *s);
/* Accepts NULL. */
void sp_spmat_free(sp_spmat *s);

/*
 * A ukernel computes Y rows of the panels [p0, p1) for all n columns:
 * panels are rows (CSR, NM, dense) or block rows (BCSR). Y is overwritten
 * (bias[row] added when bias is not NULL). It never allocates or fails.
 */
typedef void (*sp_f32_spmm_ukernel_fn)(const sp_spmat *restrict w, size_t p0,
                                       size_t p1, size_t n,
                                       const float *restrict x, size_t ldx,
                                       float *restrict y, size_t ldy,
                                       const float *restrict bias);

/* The registry (kernels/f32-spmm.inc, kernels/bf16-spmm.inc): every
 * compiled ukernel. */
typedef struct sp_ukernel_info {
    const char *name;   /* "sp_f32_spmm_csr_ukernel_1x64__avx512" */
    sp_isa isa;
    sp_layout layout;
    sp_dtype dtype;     /* of the weight values: SP_F32 or SP_BF16 */
    bool spmv;          /* tuned for n == 1 (correct for any n) */
    bool reference;     /* the scalar reference of its layout and dtype */
    sp_f32_spmm_ukernel_fn fn;
} sp_ukernel_info;

size_t sp_ukernel_count(void);
/* Borrowed, static; NULL when i is out of range. */
const sp_ukernel_info *sp_ukernel_at(size_t i);
/* By name; NULL when unknown. */
const sp_ukernel_info *sp_ukernel_find(const char *name);

/* Dense product supplied by the caller (e.g. cblas_sgemm), so that the
 * library itself does not depend on a BLAS: y[m x n] = w[m x k] . x[k x n]. */
typedef void (*sp_dense_gemm_fn)(void *ctx, size_t m, size_t n, size_t k,
                                 const float *w, const float *x, size_t ldx,
                                 float *y, size_t ldy, int threads);

typedef enum sp_fallback {
    SP_FALLBACK_AUTO = 0,    /* estimate from layout, density and n */
    SP_FALLBACK_NEVER = 1,   /* always the sparse kernel */
    SP_FALLBACK_ALWAYS = 2,  /* always dense */
    SP_FALLBACK_MEASURE = 3, /* time both once in sp_spmm_plan_new */
} sp_fallback;

/*
 * Worker threads that several plans can share (e.g. every layer of a model),
 * so that idle workers of one plan never spin against the next plan's on a
 * machine with as many cores as threads. threads counts the caller: threads
 * - 1 workers are started. A pool runs one product at a time: plans sharing
 * a pool must not run concurrently. Errors: SP_ERR_INVALID_ARG (threads not
 * 1..1024), SP_ERR_NOMEM, SP_ERR_INTERNAL (a thread could not start).
 */
typedef struct sp_threadpool sp_threadpool;
sp_status sp_threadpool_new(sp_threadpool **out, int threads, sp_error *err);
int sp_threadpool_threads(const sp_threadpool *p);
void sp_threadpool_free(sp_threadpool *p); /* accepts NULL; joins the workers */

/*
 * What SP_FALLBACK_MEASURE found, kept by the caller so that each
 * (layout, dtype, block or N:M shape, rows, cols, density in 1% steps, n,
 * threads, ISA cap) is timed once — e.g. the twelve identical layers of a
 * transformer. The library keeps no state of its own. Not thread-safe: use
 * a cache from one thread at a time. Errors: SP_ERR_NOMEM.
 */
typedef struct sp_spmm_cache sp_spmm_cache;
sp_status sp_spmm_cache_new(sp_spmm_cache **out, sp_error *err);
size_t sp_spmm_cache_size(const sp_spmm_cache *c); /* entries */
void sp_spmm_cache_free(sp_spmm_cache *c);          /* accepts NULL */

typedef struct sp_spmm_opts {
    sp_backend backend;     /* SP_BACKEND_CPU */
    int threads;            /* 0: every online core (or the pool's count) */
    sp_isa max_isa;         /* cap (SP_ISA_COUNT: the best supported) */
    const char *kernel;     /* force a ukernel by name (NULL: choose) */
    sp_fallback fallback;
    sp_dense_gemm_fn dense; /* dense path; NULL: the built-in dense ukernel */
    void *dense_ctx;
    sp_threadpool *pool;    /* borrowed; NULL: the plan starts its own */
    sp_spmm_cache *cache;   /* borrowed; SP_FALLBACK_MEASURE looks up and
                               stores its decisions here (NULL: none) */
    bool rows;              /* X is [n, K] and Y [n, M], row-major with row
                               strides ldx >= K and ldy >= M: a Linear
                               layer's activations [B, in] -> [B, out] as
                               PyTorch holds them. Batch-1 kernels read and
                               write the rows in place; the others go through
                               transposed copies the plan keeps. */
} sp_spmm_opts;

/* Defaults: CPU, all threads, best ISA, auto fallback, built-in dense, own
 * pool, no cache. */
void sp_spmm_opts_init(sp_spmm_opts *o);

typedef struct sp_spmm_plan sp_spmm_plan;

/*
 * Choose how to run w . X for X with n columns. w is borrowed until
 * sp_spmm_plan_free. The plan may keep copies derived from w: a dense copy
 * (dense fallback), a one-panel CSR or a SELL copy (n == 1 kernels); after
 * changing w's values in place, call sp_spmm_plan_update.
 * Errors: SP_ERR_INVALID_ARG (n == 0, threads < 0, unknown or unsupported
 * forced kernel, kernel of another layout or dtype, threads differing from
 * the pool's), SP_ERR_UNSUPPORTED (backend), SP_ERR_NOMEM.
 */
sp_status sp_spmm_plan_new(sp_spmm_plan **out, const sp_spmat *w, size_t n,
                           const sp_spmm_opts *opts, sp_error *err);
/* Name of the ukernel that runs (a sp_f32_gemm_* one when the built-in
 * dense path was chosen), or "dense-fallback" for the caller's dense. */
const char *sp_spmm_plan_kernel(const sp_spmm_plan *p);
bool sp_spmm_plan_is_dense(const sp_spmm_plan *p);
int sp_spmm_plan_threads(const sp_spmm_plan *p);
/* Layout the kernel runs on: w's own, or the one the plan derived (SELL,
 * or DENSE for the fallback). */
sp_layout sp_spmm_plan_layout(const sp_spmm_plan *p);
/* Bytes of the weights one product reads: w's packed arrays, or the copy
 * the plan runs on. */
size_t sp_spmm_plan_weight_bytes(const sp_spmm_plan *p);
/* Rebuild the plan's copies of w after w->values (or bvalues) changed in
 * place, e.g. after an optimizer step (the choice of kernel is kept).
 * Errors: SP_ERR_NOMEM (the plan keeps its old copies). */
sp_status sp_spmm_plan_update(sp_spmm_plan *p, sp_error *err);
/* Y = W . X (+ bias). A plan runs one product at a time: do not call this
 * on the same plan (or plans sharing a pool) from two threads at once.
 * Errors: SP_ERR_INVALID_ARG (NULL x/y, ldx or ldy < n (opts.rows: < K, M),
 * aliasing x and y). */
sp_status sp_spmm_plan_run(const sp_spmm_plan *p, const float *x, size_t ldx,
                           float *y, size_t ldy, const float *bias, sp_error *err);
void sp_spmm_plan_free(sp_spmm_plan *p); /* accepts NULL */

/* One call: plan, run, free. */
sp_status sp_spmm(const sp_spmat *w, size_t n, const float *x, size_t ldx,
                  float *y, size_t ldy, const float *bias,
                  const sp_spmm_opts *opts, sp_error *err);

#ifdef __cplusplus
}
#endif
#endif
