/*
 * kernels/spmat.c — packing a dense masked weight into the layouts of
 * sp_spmat (include/sparsify/kernels.h documents them) and back, bf16
 * rounding, and the SELL copies the dispatcher derives from other layouts.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/spmat-internal.h"

const char *sp_layout_name(sp_layout l)
{
    switch (l) {
    case SP_LAYOUT_DENSE: return "dense";
    case SP_LAYOUT_CSR: return "csr";
    case SP_LAYOUT_BCSR: return "bcsr";
    case SP_LAYOUT_NM: return "nm";
    case SP_LAYOUT_SELL: return "sell";
    }
    return "?";
}

uint16_t sp_bf16_from_f32(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    if ((u & 0x7f800000u) == 0) /* zero or subnormal: signed zero */
        return (uint16_t)((u >> 16) & 0x8000u);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: quiet, high half kept */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

void sp_spmat_opts_init(sp_spmat_opts *o)
{
    memset(o, 0, sizeof *o);
    o->dtype = SP_F32;
}

void sp_spmat_free(sp_spmat *s)
{
    if (!s)
        return;
    free(s->row_ptr);
    free(s->col_idx);
    free(s->values);
    free(s->bvalues);
    free(s->nm_idx);
    free(s->sell_ptr);
    free(s->sell_steps);
    free(s->sell_idx);
    free(s->sell_rows);
    free(s);
}

size_t sp_spmat_bytes(const sp_spmat *s)
{
    size_t b = s->nstored * (s->dtype == SP_BF16 ? sizeof(uint16_t) : sizeof(float));
    if (s->layout == SP_LAYOUT_CSR)
        b += (s->npanels * s->rows + 1) * sizeof(uint32_t) + s->nstored * sizeof(uint16_t);
    else if (s->layout == SP_LAYOUT_BCSR)
        b += (s->nbrows + 1) * sizeof(uint32_t) + s->nblocks * sizeof(uint16_t);
    else if (s->layout == SP_LAYOUT_NM)
        b += s->rows * s->nm_stride;
    else if (s->layout == SP_LAYOUT_SELL)
        b += s->nstored / (size_t)s->sell_group + (s->sell_slices + 1) * sizeof(uint32_t) +
             s->sell_slices * s->sell_windows + s->sell_slices * SP_SELL_H * sizeof(uint32_t);
    return b;
}

static sp_status pack_dense(sp_spmat *s, const float *w, size_t nnz, sp_error *err)
{
    s->layout = SP_LAYOUT_DENSE;
    s->br = s->bc = 1;
    s->nbrows = s->rows;
    s->nnz = nnz;
    s->nstored = s->rows * s->cols;
    s->values = malloc((s->nstored ? s->nstored : 1) * sizeof(float));
    if (!s->values)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory packing a %zux%zu matrix",
                            s->rows, s->cols);
    memcpy(s->values, w, s->nstored * sizeof(float));
    return SP_OK;
}

static sp_status pack_bcsr(sp_spmat *s, const float *w, size_t br, size_t bc,
                           sp_error *err)
{
    const size_t M = s->rows, K = s->cols;
    if (K > 65536)
        return sp_error_set(err, SP_ERR_UNSUPPORTED,
                            "%zu columns: sparse layouts index columns with 16 bits "
                            "(at most 65536)", K);
    s->br = br;
    s->bc = bc;
    s->nbrows = (M + br - 1) / br;
    const size_t nbc = (K + bc - 1) / bc;
    /* Pass 1: count nonzero blocks. */
    size_t nblocks = 0;
    for (size_t i = 0; i < s->nbrows; i++)
        for (size_t j = 0; j < nbc; j++) {
            bool any = false;
            for (size_t r = i * br; r < M && r < i * br + br && !any; r++)
                for (size_t c = j * bc; c < K && c < j * bc + bc; c++)
                    if (w[r * K + c] != 0.0f) {
                        any = true;
                        break;
                    }
            nblocks += any;
        }
    if (nblocks * br * bc > UINT32_MAX || nblocks > UINT32_MAX)
        return sp_error_set(err, SP_ERR_UNSUPPORTED,
                            "%zu stored values: more than 2^32-1", nblocks * br * bc);
    s->nblocks = nblocks;
    s->nstored = nblocks * br * bc;
    s->row_ptr = malloc((s->nbrows + 1) * sizeof(uint32_t));
    s->col_idx = malloc((nblocks ? nblocks : 1) * sizeof(uint16_t));
    s->values = calloc(s->nstored ? s->nstored : 1, sizeof(float));
    if (!s->row_ptr || !s->col_idx || !s->values)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory packing a %zux%zu matrix",
                            M, K);
    size_t b = 0;
    s->row_ptr[0] = 0;
    for (size_t i = 0; i < s->nbrows; i++) {
        for (size_t j = 0; j < nbc; j++) {
            bool any = false;
            for (size_t r = i * br; r < M && r < i * br + br && !any; r++)
                for (size_t c = j * bc; c < K && c < j * bc + bc; c++)
                    if (w[r * K + c] != 0.0f) {
                        any = true;
                        break;
                    }
            if (!any)
                continue;
            float *blk = s->values + b * br * bc; /* zeroed by calloc */
            for (size_t r = i * br; r < M && r < i * br + br; r++)
                for (size_t c = j * bc; c < K && c < j * bc + bc; c++)
                    blk[(r - i * br) * bc + (c - j * bc)] = w[r * K + c];
            s->col_idx[b++] = (uint16_t)(j * bc);
        }
        s->row_ptr[i + 1] = (uint32_t)b;
    }
    return SP_OK;
}

/* CSR in K-panels of kc columns: panel-major, then row, then column. */
static sp_status pack_csr(sp_spmat *s, const float *w, sp_error *err)
{
    const size_t M = s->rows, K = s->cols;
    if (K > 65536)
        return sp_error_set(err, SP_ERR_UNSUPPORTED,
                            "%zu columns: sparse layouts index columns with 16 bits "
                            "(at most 65536)", K);
    s->br = s->bc = 1;
    s->nbrows = M;
    s->kc = K > SP_CSR_KC ? SP_CSR_KC : (K ? K : 1);
    s->npanels = K ? (K + s->kc - 1) / s->kc : 1;
    size_t nnz = 0;
    for (size_t i = 0; i < M * K; i++)
        nnz += w[i] != 0.0f;
    if (nnz > UINT32_MAX || s->npanels * M + 1 > UINT32_MAX)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "%zu nonzeros: more than 2^32-1", nnz);
    s->nstored = nnz;
    s->row_ptr = malloc((s->npanels * M + 1) * sizeof(uint32_t));
    s->col_idx = malloc((nnz ? nnz : 1) * sizeof(uint16_t));
    s->values = malloc((nnz ? nnz : 1) * sizeof(float));
    if (!s->row_ptr || !s->col_idx || !s->values)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory packing a %zux%zu matrix",
                            M, K);
    size_t j = 0;
    for (size_t p = 0; p < s->npanels; p++) {
        const size_t c0 = p * s->kc, c1 = c0 + s->kc < K ? c0 + s->kc : K;
        for (size_t r = 0; r < M; r++) {
            s->row_ptr[p * M + r] = (uint32_t)j;
            for (size_t c = c0; c < c1; c++) {
                const float v = w[r * K + c];
                if (v != 0.0f) {
                    s->values[j] = v;
                    s->col_idx[j++] = (uint16_t)c;
                }
            }
        }
    }
    s->row_ptr[s->npanels * M] = (uint32_t)j;
    return SP_OK;
}

static sp_status pack_nm(sp_spmat *s, const float *w, int n, int m, sp_error *err)
{
    const size_t M = s->rows, K = s->cols;
    if (m < 2 || m > 16 || n < 1 || n > m)
        return sp_error_set(err, SP_ERR_UNSUPPORTED,
                            "%d:%d: the N:M layout needs 1 <= n <= m and 2 <= m <= 16", n, m);
    int bits = 1;
    while ((1 << bits) < m)
        bits++;
    s->n = n;
    s->m = m;
    s->nm_bits = bits;
    s->nm_groups = (K + (size_t)m - 1) / (size_t)m;
    s->nbrows = M;
    const size_t slots = s->nm_groups * (size_t)n;
    s->nm_stride = (slots * (size_t)bits + 7) / 8;
    s->nstored = M * slots;
    s->values = calloc(s->nstored ? s->nstored : 1, sizeof(float));
    /* +8: kernels read the bit string through 16-, 32- and 64-bit windows. */
    s->nm_idx = calloc(M * s->nm_stride + 8, 1);
    if (!s->values || !s->nm_idx)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory packing a %zux%zu matrix",
                            M, K);
    for (size_t r = 0; r < M; r++) {
        uint8_t *ix = s->nm_idx + r * s->nm_stride;
        for (size_t g = 0; g < s->nm_groups; g++) {
            size_t used = 0;
            for (size_t c = g * (size_t)m; c < K && c < (g + 1) * (size_t)m; c++) {
                const float v = w[r * K + c];
                if (v == 0.0f)
                    continue;
                if (used == (size_t)n)
                    return sp_error_set(err, SP_ERR_INVALID_ARG,
                                        "row %zu, columns %zu..%zu: more than %d nonzeros "
                                        "in a group of %d (not %d:%d sparse)",
                                        r, g * (size_t)m,
                                        (g + 1) * (size_t)m - 1 < K - 1 ? (g + 1) * (size_t)m - 1 : K - 1,
                                        n, m, n, m);
                const size_t slot = g * (size_t)n + used++;
                s->values[r * slots + slot] = v;
                const unsigned off = (unsigned)(c - g * (size_t)m);
                for (int i = 0; i < bits; i++) {
                    const size_t bit = slot * (size_t)bits + (size_t)i;
                    if (off >> i & 1u)
                        ix[bit >> 3] |= (uint8_t)(1u << (bit & 7));
                }
            }
        }
    }
    return SP_OK;
}

/* f32 values -> bf16 values (rounded by sp_bf16_from_f32). */
static sp_status to_bf16(sp_spmat *s, sp_error *err)
{
    s->bvalues = malloc((s->nstored ? s->nstored : 1) * sizeof(uint16_t));
    if (!s->bvalues)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory packing a %zux%zu matrix",
                            s->rows, s->cols);
    for (size_t i = 0; i < s->nstored; i++)
        s->bvalues[i] = sp_bf16_from_f32(s->values[i]);
    free(s->values);
    s->values = NULL;
    s->dtype = SP_BF16;
    return SP_OK;
}

static float value_at(const sp_spmat *s, size_t i)
{
    return s->dtype == SP_BF16 ? sp_bf16_to_f32(s->bvalues[i]) : s->values[i];
}

/* Row r of a dense row-major matrix, nonzeros in column order. */
static size_t dense_row(const void *ctx, size_t r, size_t cols, size_t *col, float *val)
{
    const float *w = (const float *)ctx + r * cols;
    size_t n = 0;
    for (size_t c = 0; c < cols; c++)
        if (w[c] != 0.0f) {
            col[n] = c;
            val[n++] = w[c];
        }
    return n;
}

size_t sp_spmat_row(const sp_spmat *s, size_t r, size_t *col, float *val)
{
    const size_t M = s->rows, K = s->cols;
    size_t n = 0;
    switch (s->layout) {
    case SP_LAYOUT_DENSE:
        return dense_row(s->values, r, K, col, val);
    case SP_LAYOUT_CSR:
        for (size_t p = 0; p < s->npanels; p++)
            for (size_t j = s->row_ptr[p * M + r]; j < s->row_ptr[p * M + r + 1]; j++)
                if (s->values[j] != 0.0f) {
                    col[n] = s->col_idx[j];
                    val[n++] = s->values[j];
                }
        return n;
    case SP_LAYOUT_BCSR: {
        const size_t i = r / s->br, rr = r % s->br;
        for (size_t b = s->row_ptr[i]; b < s->row_ptr[i + 1]; b++) {
            const float *blk = s->values + b * s->br * s->bc + rr * s->bc;
            for (size_t c = 0; c < s->bc && s->col_idx[b] + c < K; c++)
                if (blk[c] != 0.0f) {
                    col[n] = s->col_idx[b] + c;
                    val[n++] = blk[c];
                }
        }
        return n;
    }
    case SP_LAYOUT_NM: {
        const size_t slots = s->nm_groups * (size_t)s->n;
        const uint8_t *ix = s->nm_idx + r * s->nm_stride;
        for (size_t sl = 0; sl < slots; sl++) {
            const float v = value_at(s, r * slots + sl);
            if (v == 0.0f)
                continue;
            col[n] = (sl / (size_t)s->n) * (size_t)s->m + sp_nm_offset(ix, sl, s->nm_bits);
            val[n++] = v;
        }
        return n;
    }
    case SP_LAYOUT_SELL: {
        /* the lane of row r (rows are sorted into slices by the packer) */
        size_t lane = 0;
        while (lane < s->sell_slices * SP_SELL_H && s->sell_rows[lane] != r)
            lane++;
        if (lane == s->sell_slices * SP_SELL_H)
            return 0;
        const size_t P = (size_t)s->sell_slots, sl = lane / SP_SELL_H, l = lane % SP_SELL_H;
        size_t step = s->sell_ptr[sl];
        for (size_t w = 0; w < s->sell_windows; w++) {
            const size_t ns = s->sell_steps[sl * s->sell_windows + w];
            for (size_t j = 0; j < ns; j++)
                for (size_t q = 0; q < P; q++) {
                    const size_t i = (step + j) * SP_SELL_H * P + l * P + q;
                    const float v = value_at(s, i);
                    if (v != 0.0f) {
                        col[n] = w * SP_SELL_W + s->sell_idx[sp_sell_idx_at(s, i)];
                        val[n++] = v;
                    }
                }
            step += ns;
        }
        return n;
    }
    }
    return 0;
}

static size_t spmat_row_fn(const void *ctx, size_t r, size_t cols, size_t *col, float *val)
{
    (void)cols;
    return sp_spmat_row(ctx, r, col, val);
}

typedef size_t (*row_fn)(const void *ctx, size_t r, size_t cols, size_t *col, float *val);

/* The union of the nonzero columns of rows [u*G, u*G + G) (< M), sorted,
 * into ucol; returns how many. stamp[K] marks columns seen for unit u. */
static size_t unit_union(row_fn rows_of, const void *ctx, size_t u, size_t G, size_t M,
                         size_t K, size_t *col, float *val, size_t *ucol, uint32_t *stamp)
{
    size_t n = 0;
    for (size_t r = u * G; r < M && r < u * G + G; r++) {
        const size_t c = rows_of(ctx, r, K, col, val);
        for (size_t i = 0; i < c; i++)
            if (stamp[col[i]] != (uint32_t)u + 1) {
                stamp[col[i]] = (uint32_t)u + 1;
                ucol[n++] = col[i];
            }
    }
    if (G > 1) { /* insertion sort: the rows' lists are sorted runs */
        for (size_t i = 1; i < n; i++) {
            const size_t v = ucol[i];
            size_t j = i;
            for (; j > 0 && ucol[j - 1] > v; j--)
                ucol[j] = ucol[j - 1];
            ucol[j] = v;
        }
    }
    return n;
}

/*
 * SELL from any row source (s->rows, s->cols set). Rows go in units of G
 * consecutive rows (G > 1 for block patterns: the rows of a block row share
 * their columns, so a step stores one index per unit and slot, and a row's
 * slot at a column of the unit that it lacks holds 0). Units are sorted by
 * decreasing number of columns (SELL-C-sigma with sigma = all rows), so that
 * a slice holds rows of similar length and pads less (trained weights: 1.97x
 * -> 1.37x slots per nonzero on a 1024x1024 layer pruned to 90%). Pass 1
 * sizes the steps of each (slice, window) by its widest unit, pass 2 places
 * every value.
 */
static sp_status pack_sell(sp_spmat *s, row_fn rows_of, const void *ctx, sp_dtype dtype,
                           size_t G, sp_error *err)
{
    const size_t M = s->rows, K = s->cols, H = SP_SELL_H, W = SP_SELL_W;
    const size_t P = dtype == SP_BF16 ? 2 : 1;
    sp_status st = SP_OK;
    if (M > UINT32_MAX - 16)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "%zu rows: SELL holds at most 2^32-17", M);
    const size_t units = (M + G - 1) / G, upl = H / G; /* units per slice */
    s->layout = SP_LAYOUT_SELL;
    s->dtype = dtype;
    s->br = s->bc = 1;
    s->sell_slots = (int)P;
    s->sell_group = (int)G;
    s->sell_slices = (units + upl - 1) / upl;
    s->sell_windows = (K + W - 1) / W;
    s->nbrows = s->sell_slices;
    const size_t nsw = s->sell_slices * s->sell_windows, lanes = s->sell_slices * H;
    size_t *col = malloc((K ? K : 1) * sizeof *col), *ucol = malloc((K ? K : 1) * sizeof *ucol);
    float *val = malloc((K ? K : 1) * sizeof *val);
    float *rowval = calloc(K ? K : 1, sizeof *rowval);
    uint32_t *stamp = calloc(K ? K : 1, sizeof *stamp);
    uint32_t *cnt = calloc(s->sell_windows ? s->sell_windows : 1, sizeof *cnt);
    uint32_t *wstart = malloc((s->sell_windows + 1) * sizeof *wstart);
    size_t *order = malloc((units ? units : 1) * sizeof *order);
    uint32_t *ucount = malloc((units ? units : 1) * sizeof *ucount);
    s->sell_steps = calloc(nsw ? nsw : 1, 1);
    s->sell_ptr = malloc((s->sell_slices + 1) * sizeof(uint32_t));
    s->sell_rows = malloc((lanes ? lanes : 1) * sizeof(uint32_t));
    if (!col || !ucol || !val || !rowval || !stamp || !cnt || !wstart || !order || !ucount ||
        !s->sell_steps || !s->sell_ptr || !s->sell_rows) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory packing a %zux%zu matrix", M, K);
        goto out;
    }
    /* Pass 0: units by decreasing columns (counting sort, stable). */
    size_t maxc = 0;
    for (size_t u = 0; u < units; u++) {
        ucount[u] = (uint32_t)unit_union(rows_of, ctx, u, G, M, K, col, val, ucol, stamp);
        if (ucount[u] > maxc)
            maxc = ucount[u];
    }
    {
        size_t *start = calloc(maxc + 2, sizeof *start);
        if (!start) {
            st = sp_error_set(err, SP_ERR_NOMEM, "out of memory packing a %zux%zu matrix", M, K);
            goto out;
        }
        for (size_t u = 0; u < units; u++)
            start[maxc - ucount[u] + 1]++;
        for (size_t c = 1; c <= maxc + 1; c++)
            start[c] += start[c - 1];
        for (size_t u = 0; u < units; u++)
            order[start[maxc - ucount[u]]++] = u;
        free(start);
    }
    for (size_t l = 0; l < lanes; l++) {
        const size_t r = l / G < units ? order[l / G] * G + l % G : M;
        s->sell_rows[l] = r < M ? (uint32_t)r : UINT32_MAX;
    }
    /* Pass 1: steps per (slice, window). The stamps restart (units are
     * numbered again from 1 by unit_union). */
    memset(stamp, 0, (K ? K : 1) * sizeof *stamp);
    size_t steps = 0;
    for (size_t sl = 0; sl < s->sell_slices; sl++) {
        s->sell_ptr[sl] = (uint32_t)steps;
        uint8_t *ns = s->sell_steps + sl * s->sell_windows;
        for (size_t i = sl * upl; i < units && i < sl * upl + upl; i++) {
            memset(cnt, 0, s->sell_windows * sizeof *cnt);
            const size_t n = unit_union(rows_of, ctx, order[i], G, M, K, col, val, ucol, stamp);
            for (size_t j = 0; j < n; j++)
                cnt[ucol[j] / W]++;
            for (size_t w = 0; w < s->sell_windows; w++) {
                const size_t need = (cnt[w] + P - 1) / P;
                if (need > ns[w])
                    ns[w] = (uint8_t)need; /* <= 128 */
            }
        }
        for (size_t w = 0; w < s->sell_windows; w++)
            steps += ns[w];
        if (steps > UINT32_MAX / (H * P)) {
            st = sp_error_set(err, SP_ERR_UNSUPPORTED,
                              "%zux%zu matrix: more than 2^32-1 SELL slots", M, K);
            goto out;
        }
    }
    s->sell_ptr[s->sell_slices] = (uint32_t)steps;
    s->sell_nsteps = steps;
    s->nstored = steps * H * P;
    /* +64: the kernels load whole vectors at the last step. */
    s->sell_idx = calloc(s->nstored / G + 64, 1);
    if (dtype == SP_BF16)
        s->bvalues = calloc(s->nstored + 32, sizeof(uint16_t));
    else
        s->values = calloc(s->nstored + 16, sizeof(float));
    if (!s->sell_idx || (dtype == SP_BF16 ? !s->bvalues : !s->values)) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory packing a %zux%zu matrix", M, K);
        goto out;
    }
    /* Pass 2: place every value; one index per unit and slot. */
    memset(stamp, 0, (K ? K : 1) * sizeof *stamp);
    for (size_t sl = 0; sl < s->sell_slices; sl++) {
        const uint8_t *ns = s->sell_steps + sl * s->sell_windows;
        wstart[0] = s->sell_ptr[sl];
        for (size_t w = 0; w < s->sell_windows; w++)
            wstart[w + 1] = wstart[w] + ns[w];
        for (size_t i = sl * upl; i < units && i < sl * upl + upl; i++) {
            const size_t u = order[i], g = i - sl * upl; /* unit's place in the slice */
            const size_t n = unit_union(rows_of, ctx, u, G, M, K, col, val, ucol, stamp);
            memset(cnt, 0, s->sell_windows * sizeof *cnt);
            for (size_t j = 0; j < n; j++) {
                const size_t w = ucol[j] / W, jj = cnt[w]++;
                const size_t step = wstart[w] + jj / P;
                s->sell_idx[step * (H * P / G) + g * P + jj % P] = (uint8_t)(ucol[j] - w * W);
            }
            for (size_t r = u * G; r < M && r < u * G + G; r++) {
                const size_t l = g * G + (r - u * G);
                const size_t c = rows_of(ctx, r, K, col, val);
                for (size_t k = 0; k < c; k++)
                    rowval[col[k]] = val[k];
                memset(cnt, 0, s->sell_windows * sizeof *cnt);
                for (size_t j = 0; j < n; j++) {
                    const size_t w = ucol[j] / W, jj = cnt[w]++;
                    const size_t at = (wstart[w] + jj / P) * H * P + l * P + jj % P;
                    if (dtype == SP_BF16)
                        s->bvalues[at] = sp_bf16_from_f32(rowval[ucol[j]]);
                    else
                        s->values[at] = rowval[ucol[j]];
                }
                for (size_t k = 0; k < c; k++)
                    rowval[col[k]] = 0.0f;
            }
        }
    }
out:
    free(col);
    free(ucol);
    free(val);
    free(rowval);
    free(stamp);
    free(cnt);
    free(wstart);
    free(order);
    free(ucount);
    return st;
}

/* Rows that share columns in a block pattern: a block's rows, when they
 * divide the 16-row slice. */
static size_t sell_group_of(size_t br)
{
    return br == 2 || br == 4 || br == 8 || br == 16 ? br : 1;
}

sp_status sp_spmat_to_sell(const sp_spmat *src, sp_spmat **out, sp_error *err)
{
    *out = NULL;
    sp_spmat *s = calloc(1, sizeof *s);
    if (!s)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    s->rows = src->rows;
    s->cols = src->cols;
    s->nnz = src->nnz;
    const size_t G = src->layout == SP_LAYOUT_BCSR ? sell_group_of(src->br) : 1;
    sp_status st = pack_sell(s, spmat_row_fn, src, src->dtype, G, err);
    if (st != SP_OK) {
        sp_spmat_free(s);
        return st;
    }
    *out = s;
    return SP_OK;
}

sp_status sp_spmat_pack(sp_spmat **out, const float *w, size_t rows, size_t cols,
                        const sp_pattern *pattern, sp_error *err)
{
    return sp_spmat_pack_ex(out, w, rows, cols, pattern, NULL, err);
}

sp_status sp_spmat_pack_ex(sp_spmat **out, const float *w, size_t rows, size_t cols,
                           const sp_pattern *pattern, const sp_spmat_opts *opts,
                           sp_error *err)
{
    *out = NULL;
    sp_spmat_opts def;
    if (!opts) {
        sp_spmat_opts_init(&def);
        opts = &def;
    }
    if (opts->dtype != SP_F32 && opts->dtype != SP_BF16)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "values of type %s: the kernels take float32 or bfloat16",
                            sp_dtype_name(opts->dtype));
    if (opts->dtype == SP_BF16 && !pattern)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "bfloat16 values need a sparse pattern (the dense layout is "
                            "float32)");
    if (cols && rows > SIZE_MAX / sizeof(float) / cols)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "%zux%zu matrix: too large", rows, cols);
    sp_status st = SP_OK;
    sp_spmat *s = calloc(1, sizeof *s);
    if (!s)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    s->rows = rows;
    s->cols = cols;
    s->dtype = SP_F32;
    size_t nnz = 0;
    for (size_t i = 0; i < rows * cols; i++)
        nnz += w[i] != 0.0f;
    const bool nm = pattern && pattern->kind == SP_PATTERN_NM;
    if (pattern && !nm && (opts->sell || opts->dtype == SP_BF16)) {
        if (pattern->kind != SP_PATTERN_UNSTRUCTURED && pattern->kind != SP_PATTERN_BLOCK) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG, "unknown pattern kind %d",
                              (int)pattern->kind);
            goto out;
        }
        /* the rows of a block share their columns: one index per block row */
        const size_t G = pattern->kind == SP_PATTERN_BLOCK && pattern->r > 0
                             ? sell_group_of((size_t)pattern->r) : 1;
        st = pack_sell(s, dense_row, w, opts->dtype, G, err);
    } else if (!pattern) {
        st = pack_dense(s, w, nnz, err);
    } else if (pattern->kind == SP_PATTERN_UNSTRUCTURED ||
               (pattern->kind == SP_PATTERN_BLOCK && pattern->r == 1 && pattern->c == 1)) {
        s->layout = SP_LAYOUT_CSR;
        st = pack_csr(s, w, err);
    } else if (pattern->kind == SP_PATTERN_BLOCK) {
        if (pattern->r < 1 || pattern->c < 1 || pattern->r > 4096 || pattern->c > 4096) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG, "block %lldx%lld: sizes must be 1..4096",
                              (long long)pattern->r, (long long)pattern->c);
            goto out;
        }
        s->layout = SP_LAYOUT_BCSR;
        st = pack_bcsr(s, w, (size_t)pattern->r, (size_t)pattern->c, err);
    } else if (nm) {
        s->layout = SP_LAYOUT_NM;
        st = pack_nm(s, w, pattern->n, pattern->m, err);
        if (st == SP_OK && opts->dtype == SP_BF16)
            st = to_bf16(s, err);
    } else {
        st = sp_error_set(err, SP_ERR_INVALID_ARG, "unknown pattern kind %d", (int)pattern->kind);
    }
    s->nnz = nnz;
out:
    if (st != SP_OK) {
        sp_spmat_free(s);
        return st;
    }
    *out = s;
    return SP_OK;
}

void sp_spmat_unpack(const sp_spmat *s, float *w)
{
    const size_t M = s->rows, K = s->cols;
    if (s->layout == SP_LAYOUT_DENSE) {
        memcpy(w, s->values, M * K * sizeof(float));
        return;
    }
    memset(w, 0, M * K * sizeof(float));
    if (s->layout == SP_LAYOUT_CSR) {
        for (size_t i = 0; i < s->npanels * M; i++)
            for (size_t j = s->row_ptr[i]; j < s->row_ptr[i + 1]; j++)
                w[(i % M) * K + s->col_idx[j]] = s->values[j];
    } else if (s->layout == SP_LAYOUT_BCSR) {
        const size_t br = s->br, bc = s->bc;
        for (size_t i = 0; i < s->nbrows; i++)
            for (size_t b = s->row_ptr[i]; b < s->row_ptr[i + 1]; b++) {
                const float *blk = s->values + b * br * bc;
                for (size_t r = 0; r < br && i * br + r < M; r++)
                    for (size_t c = 0; c < bc && s->col_idx[b] + c < K; c++)
                        w[(i * br + r) * K + s->col_idx[b] + c] = blk[r * bc + c];
            }
    } else if (s->layout == SP_LAYOUT_NM) {
        const size_t slots = s->nm_groups * (size_t)s->n;
        for (size_t r = 0; r < M; r++) {
            const uint8_t *ix = s->nm_idx + r * s->nm_stride;
            for (size_t sl = 0; sl < slots; sl++) {
                const float v = value_at(s, r * slots + sl);
                if (v != 0.0f)
                    w[r * K + (sl / (size_t)s->n) * (size_t)s->m + sp_nm_offset(ix, sl, s->nm_bits)] = v;
            }
        }
    } else if (s->layout == SP_LAYOUT_SELL) {
        const size_t P = (size_t)s->sell_slots, L = SP_SELL_H * P;
        for (size_t sl = 0; sl < s->sell_slices; sl++) {
            size_t step = s->sell_ptr[sl];
            for (size_t win = 0; win < s->sell_windows; win++) {
                const size_t ns = s->sell_steps[sl * s->sell_windows + win];
                for (size_t i = step * L; i < (step + ns) * L; i++) {
                    const float v = value_at(s, i);
                    const uint32_t r = s->sell_rows[sl * SP_SELL_H + (i % L) / P];
                    if (v != 0.0f && r < M)
                        w[r * K + win * SP_SELL_W + s->sell_idx[sp_sell_idx_at(s, i)]] = v;
                }
                step += ns;
            }
        }
    }
}

/* A stored slot holds a nonzero of the source (f32 or bf16, -0 is zero). */
static bool stored_nonzero(const sp_spmat *s, size_t v)
{
    return s->dtype == SP_BF16 ? (s->bvalues[v] & 0x7fffu) != 0 : s->values[v] != 0.0f;
}

void sp_spmat_value_map(const sp_spmat *s, uint32_t *map)
{
    const size_t M = s->rows, K = s->cols;
    size_t k = 0;
    switch (s->layout) {
    case SP_LAYOUT_DENSE:
        assert(M * K <= UINT32_MAX);
        for (size_t i = 0; i < M * K; i++)
            if (stored_nonzero(s, i))
                map[k++] = (uint32_t)i;
        break;
    case SP_LAYOUT_CSR:
        /* every stored value is a nonzero of the source: row by row, the
         * row's pieces panel by panel (panels are column ranges) */
        for (size_t r = 0; r < M; r++)
            for (size_t p = 0; p < s->npanels; p++)
                for (size_t j = s->row_ptr[p * M + r]; j < s->row_ptr[p * M + r + 1]; j++)
                    map[k++] = (uint32_t)j;
        break;
    case SP_LAYOUT_BCSR: {
        const size_t br = s->br, bc = s->bc;
        for (size_t r = 0; r < M; r++) {
            const size_t i = r / br, rr = r % br;
            for (size_t b = s->row_ptr[i]; b < s->row_ptr[i + 1]; b++)
                for (size_t c = 0; c < bc && s->col_idx[b] + c < K; c++) {
                    const size_t v = b * br * bc + rr * bc + c;
                    if (stored_nonzero(s, v))
                        map[k++] = (uint32_t)v;
                }
        }
        break;
    }
    case SP_LAYOUT_NM: {
        /* a group's slots are filled in column order, empty slots last */
        const size_t slots = s->nm_groups * (size_t)s->n;
        for (size_t r = 0; r < M; r++)
            for (size_t sl = 0; sl < slots; sl++)
                if (stored_nonzero(s, r * slots + sl))
                    map[k++] = (uint32_t)(r * slots + sl);
        break;
    }
    case SP_LAYOUT_SELL: {
        /* a row's lane by search (no allocation here: O(rows^2 / 16) lane
         * reads); its slots window by window, step by step, q by q, which
         * is column order; the unit partners' columns hold stored zeros */
        const size_t P = (size_t)s->sell_slots, lanes = s->sell_slices * SP_SELL_H;
        for (size_t r = 0; r < M; r++) {
            size_t i = 0;
            while (i < lanes && s->sell_rows[i] != r)
                i++;
            if (i == lanes)
                continue;
            const size_t sl = i / SP_SELL_H, l = i % SP_SELL_H;
            size_t t = s->sell_ptr[sl];
            for (size_t w = 0; w < s->sell_windows; w++) {
                const size_t end = t + s->sell_steps[sl * s->sell_windows + w];
                for (; t < end; t++)
                    for (size_t q = 0; q < P; q++) {
                        const size_t v = (t * SP_SELL_H + l) * P + q;
                        if (stored_nonzero(s, v))
                            map[k++] = (uint32_t)v;
                    }
            }
        }
        break;
    }
    }
    assert(k == s->nnz);
    (void)k;
}
