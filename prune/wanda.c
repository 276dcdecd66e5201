/*
 * Activation-aware scores (Wanda) and per-row selection, its comparison
 * groups (prune.h). The activation norms themselves come from a forward
 * pass over calibration data in the libtorch bridge (bridge/calibrate.h);
 * here they are plain numbers, one per input feature.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune/internal.h"

#define PAR_MIN 65536 /* as mask.c: below this many elements threads do not pay */

static inline float abs_val(sp_dtype t, const void *data, size_t i, int *finite)
{
    double v;
    switch (t) {
    case SP_F32: v = ((const float *)data)[i]; break;
    case SP_F64: v = ((const double *)data)[i]; break;
    case SP_F16: v = sp_f16_to_f32(((const uint16_t *)data)[i]); break;
    case SP_BF16: v = sp_bf16_to_f32(((const uint16_t *)data)[i]); break;
    default: v = 0.0; break;
    }
    *finite = isfinite(v);
    return *finite ? (float)fabs(v) : 0.0f;
}

sp_status sp_wanda_scores(float *scores, sp_dtype dtype, const void *data, int ndim,
                          const int64_t *shape, const float *norms, size_t nnorms, sp_error *err)
{
    if (dtype != SP_F32 && dtype != SP_F64 && dtype != SP_F16 && dtype != SP_BF16)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "cannot prune dtype %s (floating point only)",
                            sp_dtype_name(dtype));
    sp_wgeom g;
    sp_wgeom_init(&g, ndim, shape);
    const size_t cols = (size_t)g.cols, rows = (size_t)g.rows;
    const bool per_row = nnorms != cols && nnorms == rows * cols;
    if (nnorms != cols && !per_row)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "activation norms have %zu values, expected %zu (one per input "
                            "feature) or %zu (rows x input features)",
                            nnorms, cols, rows * cols);
    for (size_t i = 0; i < nnorms; i++)
        if (!(norms[i] >= 0.0f) || isinf(norms[i]))
            return sp_error_set(err, SP_ERR_INVALID_ARG,
                                "activation norm %zu is %g (norms are finite and >= 0)", i,
                                (double)norms[i]);
    const int64_t nrowjobs = g.nmat * g.rows;
    const size_t numel = (size_t)(nrowjobs * g.cols);
#pragma omp parallel for if (numel > PAR_MIN) schedule(static)
    for (int64_t job = 0; job < nrowjobs; job++) {
        const int64_t m = job / g.rows, r = job % g.rows;
        const float *nr = norms + (per_row ? (size_t)r * cols : 0);
        const size_t base = (size_t)(m * g.mat_stride + r * g.row_stride);
        for (size_t c = 0; c < cols; c++) {
            const size_t i = base + c * (size_t)g.col_stride;
            int finite;
            const float a = abs_val(dtype, data, i, &finite);
            scores[i] = a * nr[c];
        }
    }
    return SP_OK;
}

sp_status sp_mask_select_rows(uint8_t *mask, sp_dtype dtype, const void *data,
                              const float *scores, int ndim, const int64_t *shape,
                              double sparsity, sp_error *err)
{
    const sp_pattern unstructured = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    size_t numel = 1;
    for (int d = 0; d < ndim; d++)
        numel *= (size_t)shape[d];
    if (numel == 0)
        return sp_mask_select(mask, dtype, data, scores, ndim, shape, &unstructured, sparsity,
                              SP_BLOCK_SCORE_L1, err);
    if (!(sparsity >= 0.0 && sparsity <= 1.0))
        return sp_error_set(err, SP_ERR_INVALID_ARG, "sparsity %g is out of range [0, 1]", sparsity);
    const int64_t nrows = ndim >= 2 ? shape[0] : 1;
    const int64_t len = (int64_t)(numel / (size_t)nrows);
    const size_t es = sp_dtype_size(dtype);
    /* the tensor's exact count, spread over the rows: the first k % rows
     * rows prune one more than the others */
    const size_t k = sp__round_count(sparsity, numel);
    const size_t base = k / (size_t)nrows, extra = k % (size_t)nrows;
    sp_status first = SP_OK;
    int64_t first_row = nrows;
    sp_error first_err = {0};
#pragma omp parallel for if (numel > PAR_MIN) schedule(dynamic, 8)
    for (int64_t r = 0; r < nrows; r++) {
        sp_error e = {0};
        const size_t off = (size_t)r * (size_t)len;
        /* k_r / len rounds back to exactly k_r in sp_mask_select */
        const size_t kr = base + ((size_t)r < extra);
        sp_status st = sp_mask_select(mask + off, dtype, (const unsigned char *)data + off * es,
                                      scores ? scores + off : NULL, 1, &len, &unstructured,
                                      (double)kr / (double)len, SP_BLOCK_SCORE_L1, &e);
        if (st) {
#pragma omp critical(sp_rows_error)
            if (r < first_row) { /* the same error whatever the threads */
                first_row = r;
                first = st;
                first_err = e;
            }
        }
    }
    if (first) {
        if (err)
            *err = first_err;
        if (nrows > 1)
            sp_error_prefix(err, "row %lld", (long long)first_row);
    }
    return first;
}
