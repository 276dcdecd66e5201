/*
 * kernels/spmat-internal.h — what packing offers the dispatcher (internal
 * to kernels/ and its tests).
 */
#ifndef SPARSIFY_KERNELS_SPMAT_INTERNAL_H
#define SPARSIFY_KERNELS_SPMAT_INTERNAL_H

#include "sparsify/kernels.h"

/* In-group offset of N:M slot `slot` from a row's bit string (nm_bits bits
 * at bit slot*bits, LSB first). */
static inline unsigned sp_nm_offset(const uint8_t *ix, size_t slot, int bits)
{
    unsigned off = 0;
    for (int i = 0; i < bits; i++) {
        const size_t bit = slot * (size_t)bits + (size_t)i;
        off |= (unsigned)((ix[bit >> 3] >> (bit & 7)) & 1u) << i;
    }
    return off;
}

/* Where in sell_idx the index of value slot i (of values/bvalues) is: the
 * lanes of a unit of sell_group rows share one index per slot. */
static inline size_t sp_sell_idx_at(const sp_spmat *s, size_t i)
{
    const size_t L = (size_t)SP_SELL_H * (size_t)s->sell_slots, G = (size_t)s->sell_group;
    const size_t step = i / L, l = (i % L) / (size_t)s->sell_slots, q = i % (size_t)s->sell_slots;
    return step * (L / G) + (l / G) * (size_t)s->sell_slots + q;
}

/* The nonzeros of row r in column order: columns into col, values (bf16
 * widened) into val, each with room for s->cols entries; returns how many.
 * Stored zeros (padding, empty slots) are skipped. */
size_t sp_spmat_row(const sp_spmat *s, size_t r, size_t *col, float *val);

/* A SELL copy of src (same dtype; any layout): a new object in *out, freed
 * with sp_spmat_free. Errors: SP_ERR_NOMEM, SP_ERR_UNSUPPORTED (too many
 * slots). */
sp_status sp_spmat_to_sell(const sp_spmat *src, sp_spmat **out, sp_error *err);

#endif
