/*
 * prune/ internals shared by mask.c, global.c and check: unit keys.
 *
 * A "unit" is an element (unstructured) or a block. Every unit gets a 64-bit
 * key whose unsigned order is the pruning order of its score: key 0 for a
 * unit whose elements are all zero (already pruned, so pruned first), and
 * otherwise 1 + the order-preserving bit pattern of the score as a double.
 * Ties between equal keys are broken by the unit's flat index (and, in
 * global scope, by the tensor's index before that).
 */
#ifndef SPARSIFY_PRUNE_INTERNAL_H
#define SPARSIFY_PRUNE_INTERNAL_H

#include <string.h>

#include "sparsify/prune.h"

/* Order-preserving map of a finite double onto uint64, shifted by one so
 * that 0 stays free for all-zero units. */
static inline uint64_t sp__score_key(double s)
{
    uint64_t u;
    memcpy(&u, &s, 8);
    u = (u >> 63) ? ~u : (u | 0x8000000000000000ull);
    return u + 1;
}

/* Number of units of a tensor under a pattern (elements, or blocks). */
size_t sp__unit_count(int ndim, const int64_t *shape, const sp_pattern *p);

/* Compute the key of every unit into keys (unit_count entries, allocated by
 * the caller); *nzero gets the number of all-zero units. Unstructured units
 * are flat element indices; block units are numbered (matrix, block row,
 * block col). Errors: SP_ERR_INVALID_ARG for NaN/Inf, SP_ERR_UNSUPPORTED for
 * a non-floating dtype. */
sp_status sp__unit_keys(uint64_t *keys, size_t *nzero, sp_dtype dtype, const void *data,
                        const float *scores, int ndim, const int64_t *shape,
                        const sp_pattern *p, sp_block_score bscore, sp_error *err);

/* Expand a per-block keep mask (one byte per block) to the elements. */
void sp__block_mask_expand(uint8_t *mask, const uint8_t *bkeep, int ndim,
                           const int64_t *shape, const sp_pattern *p);

/* Clamp-free exact count: floor(s * n + 0.5). */
size_t sp__round_count(double s, size_t n);

/* Threads for the parallel passes: OMP_NUM_THREADS when set, else at most
 * 2. Results never depend on it. */
int sp__nthreads(void);

/* Clamp-checked arguments of a selection (dtype floating, sparsity in
 * [0, 1] unless N:M, sane block/N:M sizes). */
sp_status sp__check_select_args(sp_dtype dtype, const sp_pattern *pattern, double sparsity,
                                sp_error *err);

/* keep[i] = 0 for the k units with the smallest (key, index), else 1: the
 * radix select of mask.c. */
sp_status sp__select_units64(uint8_t *keep, const uint64_t *keys, size_t n, size_t k,
                             sp_error *err);

typedef struct sp__gmag sp__gmag; /* global magnitude selection, below */

/* ---- pruning one tensor in pieces (prune/tensor.c) ---- */

/* What pruning one piece did. */
typedef struct sp__prune_stats {
    uint64_t zeros_before, zeros_after; /* +0 and -0 */
    bool changed;                       /* some byte of dst differs from src */
} sp__prune_stats;

enum { SP__TP_CUT = 1, SP__TP_NM = 2, SP__TP_BLOCK = 3, SP__TP_MASK = 4 };

/* Below this many elements an unstructured selection builds a mask (its
 * key array is small) instead of a histogram. */
#define SP__CUT_MIN 4096

/* A plan for pruning one dense row-major tensor by magnitude (tensor.c
 * says how each mode works). Read-only once made: chunks may be applied
 * from several threads at once. */
typedef struct sp__tplan {
    int mode;
    sp_dtype dtype;
    size_t es, numel;
    int ndim;
    int64_t shape[SP_MAX_DIMS];
    sp_wgeom g;
    const struct sp_mask_ukernels *uk;
    uint64_t split, lo, hi; /* CUT: element i pruned iff key < (i < split ? lo : hi) */
    int n, m;               /* NM */
    int64_t R, C;           /* BLOCK */
    uint8_t *bkeep;         /* BLOCK: keep byte per block, (matrix, block row, block col) */
    uint8_t *mask;          /* MASK: keep byte per element */
} sp__tplan;

/* Plan a per-layer selection of src (all numel elements): exactly the mask
 * sp_mask_select computes for magnitudes. Errors as sp_mask_select (NaN,
 * Inf: "contains NaN"). Release with sp__tplan_release. */
sp_status sp__tplan_init(sp__tplan *p, const void *src, sp_dtype dtype, int ndim,
                         const int64_t *shape, const sp_pattern *pat, double sparsity,
                         sp_block_score bscore, sp_error *err);
/* Plan tensor `tensor` of a finished global magnitude selection. */
sp_status sp__tplan_gmag(sp__tplan *p, const sp__gmag *g, size_t tensor, const void *src,
                         sp_dtype dtype, int ndim, const int64_t *shape, sp_error *err);
/* Plan tensor `tensor` of a finished global selection (sp__global_finish). */
sp_status sp__tplan_global(sp__tplan *p, sp_global *g, size_t tensor, const void *src,
                           sp_dtype dtype, int ndim, const int64_t *shape, sp_error *err);
/* Chunks are multiples of this many elements (a row for N:M, a block row
 * for blocks, else 1). */
size_t sp__tplan_unit(const sp__tplan *p);
/* Elements [e0, e1) (multiples of the unit, or e1 = numel): dst and src
 * point at element e0 of the output and of the original tensor; dst may be
 * src. Fills st. Errors: N:M finds NaN/Inf as it goes ("contains NaN"). */
sp_status sp__tplan_apply(const sp__tplan *p, void *dst, const void *src, size_t e0, size_t e1,
                          sp__prune_stats *st, sp_error *err);
/* The keep-mask of a CUT plan (numel bytes). */
void sp__tplan_mask(const sp__tplan *p, const void *src, uint8_t *mask);
void sp__tplan_release(sp__tplan *p);

/* A whole tensor in one piece (tests and small callers). */
sp_status sp__prune_tensor(void *dst, const void *src, sp_dtype dtype, int ndim,
                           const int64_t *shape, const sp_pattern *p, double sparsity,
                           sp_block_score bscore, sp__prune_stats *st, sp_error *err);

/* dst = src with a per-element keep-mask applied; fills all of st. */
void sp__apply_mask(void *dst, const void *src, sp_dtype dtype, size_t n, const uint8_t *mask,
                    sp__prune_stats *st);

/* h[k] += the number of elements of w[0, n) with 15-bit magnitude key k
 * (h: 32768 counters; any n). Errors: SP_ERR_NOMEM. */
sp_status sp__hist16(const uint16_t *w, size_t n, uint64_t *h, sp_error *err);
/* Index of the need-th element (1-based, need <= their count) of w[0, n)
 * (es 2 or 4 bytes) whose magnitude key is T. */
size_t sp__nth_equal(const struct sp_mask_ukernels *uk, const void *w, size_t es, size_t n,
                     uint32_t T, uint64_t need);

/* ---- global magnitude selection (global_mag.c) ----
 * The exact global threshold for unstructured magnitudes of f32, f16 and
 * bf16 tensors: pass 1 and pass 2 take each tensor once, from any thread
 * (worker: the caller's slot in [0, nworkers), for per-thread counts);
 * end1/end2 run on one thread between the passes. Then sp__gmag_cut gives
 * each tensor's cut in its own keys (read-only, any thread). Errors name
 * what is wrong ("contains NaN"); the caller names the tensor. */
sp_status sp__gmag_new(sp__gmag **out, double sparsity, size_t ntensors, int nworkers,
                       sp_error *err);
sp_status sp__gmag_pass1(sp__gmag *g, size_t i, int worker, sp_dtype dt, const void *data,
                         size_t n, sp_error *err);
sp_status sp__gmag_end1(sp__gmag *g, sp_error *err);
sp_status sp__gmag_pass2(sp__gmag *g, size_t i, int worker, sp_dtype dt, const void *data,
                         size_t n, sp_error *err);
sp_status sp__gmag_end2(sp__gmag *g, sp_error *err);
/* data: the tensor (scanned only for the one holding the last pruned tie) */
sp_status sp__gmag_cut(const sp__gmag *g, size_t i, sp_dtype dt, const void *data, size_t n,
                       uint64_t *split, uint64_t *lo, uint64_t *hi, sp_error *err);
void sp__gmag_free(sp__gmag *g); /* accepts NULL */

/* ---- global scope (global.c) ---- */

/* Close pass 2: the threshold is final and g is only read from now on, so
 * sp_global_mask and sp__global_cut may run on several threads at once. */
sp_status sp__global_finish(sp_global *g, sp_error *err);
/* The cut of tensor `tensor` when its selection has one (unstructured
 * magnitudes of f32/f16/bf16): element i pruned iff key < (i < split ?
 * lo : hi). SP_ERR_UNSUPPORTED (no message) when it has none. */
sp_status sp__global_cut(sp_global *g, size_t tensor, const void *data, sp_dtype dtype,
                         size_t numel, uint64_t *split, uint64_t *lo, uint64_t *hi, sp_error *err);

/* Global scope in one call: dst = src pruned by g's threshold. */
sp_status sp__global_apply(sp_global *g, size_t tensor, void *dst, const void *src,
                           sp_dtype dtype, int ndim, const int64_t *shape, sp__prune_stats *st,
                           sp_error *err);

#endif
