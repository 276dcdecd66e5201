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

#endif
