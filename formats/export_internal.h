/*
 * Internal: the per-tensor export planner (formats/export_plan.c), shared
 * by both exporters: what each tensor holds (zeros, 2:4, nonzeros per row,
 * measured on all threads) and how each is stored: its .spz encoding
 * (sp__spz_choose) or its compressed-tensors form (sp__ct_plan_make).
 * Also the report helpers both exporters fill (formats/export.c). Not
 * installed.
 */
#ifndef SPARSIFY_FORMATS_EXPORT_INTERNAL_H
#define SPARSIFY_FORMATS_EXPORT_INTERNAL_H

#include "formats/spz_internal.h"

/* ---- .spz: the cheapest exact encoding of one tensor ---- */

typedef struct sp__spz_plan {
    sp_spz_encoding enc;
    int n, m;     /* NM */
    int64_t r, c; /* BLOCK */
} sp__spz_plan;

/* The encoding of a tensor from its nonzero map nz (numel bytes, nnz ones),
 * by estimated size (mask costs at their entropy, which the Rice coder
 * approaches closely); a forced encoding in o wins when it can hold the
 * tensor exactly. */
void sp__spz_choose(const sp_spz_options *o, const uint8_t *nz, uint64_t nnz, uint64_t numel,
                    size_t es, int ndim, const int64_t *shape, sp__spz_plan *out);
/* Kept blocks of br x bc (ragged edges included) and their element count,
 * each block's keep byte into bmap (may be NULL); false (estimate only)
 * when the element count passes limit. */
bool sp__spz_block_count(const uint8_t *nz, const sp__spz_geom *g, int64_t br, int64_t bc,
                         uint64_t limit, uint64_t *kept, uint64_t *elems, uint8_t *bmap);

/* ---- what each tensor holds ---- */

/* A weight with at least this fraction of zeros was pruned; fewer are stray
 * zeros of a dense weight and do not make it a target. */
#define SP_CT_PRUNED_MIN 0.05

typedef struct sp__xstat {
    uint64_t zeros;     /* +0 and -0 for floats */
    bool is_24;         /* floating: 2:4 along the input dimension */
    bool candidate;     /* a 2-D floating "<module>.weight" compressed-tensors may compress */
    bool pruned;        /* a candidate with at least SP_CT_PRUNED_MIN zeros */
    uint64_t *row_nnz;  /* after sp__export_rows: nonzeros per row (shape[0]) */
} sp__xstat;

/* A weight compressed-tensors may compress: "<module>.weight", 2-D,
 * floating, not empty. */
bool sp__ct_candidate(const sp_tensor *t);

/* Stats of every tensor of ck (out: ntensors entries; row_nnz not yet),
 * storage by storage on `threads` threads. progress: bytes scanned. Free
 * with sp__xstat_release. */
sp_status sp__export_scan(sp_ckpt *ck, int threads, sp_progress_fn progress, void *pctx,
                          uint64_t total, sp__xstat *out, sp_error *err);
/* The nonzeros per row (row_nnz) of the 2-D tensors which[0, n), one
 * tensor per job. */
sp_status sp__export_rows(sp_ckpt *ck, const size_t *which, size_t n, int threads, sp__xstat *out,
                          sp_error *err);
void sp__xstat_release(sp__xstat *x, size_t n);

/* ---- compressed-tensors: the format and how each tensor is stored ---- */

enum { SP__CT_DENSE = 0, SP__CT_BITMASK = 1, SP__CT_24 = 2 };

typedef struct sp__ct_plan {
    int format;     /* the model's: SP__CT_BITMASK, SP__CT_24 or SP__CT_DENSE */
    bool model24;   /* most pruned weights are 2:4 */
    uint8_t *comp;  /* per tensor: SP__CT_DENSE (stored as it is), _BITMASK or _24 */
    bool *target;   /* per tensor: listed in "targets" (else a candidate goes to "ignore") */
    uint64_t zeros_all, params_all; /* floating tensors */
} sp__ct_plan;

/* The plan of a compressed-tensors export (want: "sparse-bitmask",
 * "sparse-24-bitmask", "dense" or NULL for automatic; docs in ctensors.c).
 * Errors: SP_ERR_INVALID_ARG for an unknown want, SP_ERR_NOMEM. */
sp_status sp__ct_plan_make(const sp_ckpt *ck, const sp__xstat *xs, const char *want,
                           sp__ct_plan *out, sp_error *err);
void sp__ct_plan_release(sp__ct_plan *p);

/* ---- reports (export.c) ---- */

/* Append t's entry to r (NULL: nothing). */
sp_status sp__export_report_add(sp_export_report *r, const sp_tensor *t,
                                const sp_spz_tensor_info *info, sp_error *err);

#endif
