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

/* ---- fused select + apply (the checkpoint pruner's hot path) ---- */

/* What a fused prune did to one tensor. */
typedef struct sp__prune_stats {
    uint64_t zeros_before, zeros_after; /* +0 and -0 */
    bool changed;                       /* some byte of dst differs from src */
} sp__prune_stats;

/* Per-layer prune of one dense row-major tensor: reads src and writes all of
 * dst (which may alias src): pruned elements +0.0, kept elements copied
 * bit-identical. Exactly the mask sp_mask_select computes (magnitudes, no
 * scores); streams the data instead of building key arrays where it can
 * (f32 unstructured: a histogram select, 3 passes; f32 N:M: 1 pass). Errors
 * as sp_mask_select. */
sp_status sp__prune_tensor(void *dst, const void *src, sp_dtype dtype, int ndim,
                           const int64_t *shape, const sp_pattern *p, double sparsity,
                           sp_block_score bscore, sp__prune_stats *st, sp_error *err);

/* f32 cut: element i is pruned iff (|bits| of w[i]) < (i < split ? lo : hi). */
typedef struct sp__cut32 {
    size_t split;
    uint32_t lo, hi; /* exclusive bounds on the absolute bit pattern, <= 2^31 */
} sp__cut32;

/* dst = src with the cut applied (f32); stats as above (zeros_before not
 * touched). dst may alias src. */
void sp__apply_cut32(uint32_t *dst, const uint32_t *src, size_t n, const sp__cut32 *c,
                     sp__prune_stats *st);
/* dst = src with a per-element keep-mask applied; fills all of st. */
void sp__apply_mask(void *dst, const void *src, sp_dtype dtype, size_t n, const uint8_t *mask,
                    sp__prune_stats *st);

/* Global scope: dst = src pruned by g's threshold (as sp_global_mask). */
sp_status sp__global_apply(sp_global *g, size_t tensor, void *dst, const void *src,
                           sp_dtype dtype, int ndim, const int64_t *shape, sp__prune_stats *st,
                           sp_error *err);

#endif
