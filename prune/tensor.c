/*
 * Pruning one dense tensor in pieces (prune/internal.h, sp__tplan): the
 * checkpoint pruner plans a tensor once, then applies the plan to chunks
 * of it on any thread. Every plan gives exactly the mask sp_mask_select
 * computes (magnitudes; the lower flat index pruned first among equal
 * magnitudes); what differs is how little is built to get there:
 *
 *  CUT    unstructured f16, bf16, f32: an exact histogram of the magnitude
 *         keys (15 bits for 16-bit floats: one counting pass; f32: the top
 *         16 of its 31 bits, then the low 15 bits of the boundary bucket)
 *         gives the threshold key T and how many elements equal to T are
 *         pruned; one scan finds where the last of those lies. An element
 *         is pruned iff key < T, or key == T at or before that index. No
 *         sort, no key array, no mask.
 *  NM     N:M on contiguous rows: nothing to plan; the ukernel ranks each
 *         group as it goes.
 *  BLOCK  RxC blocks on contiguous rows: block scores (ukernel), radix
 *         select of the block keys, one keep byte per block.
 *  MASK   anything else (f64 magnitudes, strided conv groups, small
 *         tensors, a global selection without a fast path): the element
 *         mask of sp_mask_select / sp_global_mask.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune/internal.h"
#include "prune/mask_ukernels.h"

#define H16 32768u              /* 15-bit keys */
#define CUT_MIN 4096            /* below this many elements a mask is cheaper */
#define SUB_CHUNK ((size_t)1 << 30) /* elements per uint32 sub-histogram */

static bool contiguous_rows(const sp_wgeom *g)
{
    return g->col_stride == 1 && g->row_stride == g->cols &&
           (g->nmat == 1 || g->mat_stride == g->rows * g->cols);
}

static sp_status nonfinite(sp_error *err, bool nan)
{
    return sp_error_set(err, SP_ERR_INVALID_ARG, "contains %s", nan ? "NaN" : "Inf");
}

/* h[key] += count of each 15-bit key of w[0, n) (internal.h). Two interleaved uint32
 * tables (independent increment chains), emptied into h every SUB_CHUNK
 * elements so no count overflows, whatever n. */
sp_status sp__hist16(const uint16_t *w, size_t n, uint64_t *h, sp_error *err)
{
    uint32_t *t = calloc(2 * H16, sizeof *t);
    if (!t)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    uint32_t *t0 = t, *t1 = t + H16;
    for (size_t c0 = 0; c0 < n; c0 += SUB_CHUNK) {
        size_t c1 = n - c0 > SUB_CHUNK ? c0 + SUB_CHUNK : n, i = c0;
        for (; i + 4 <= c1; i += 4) {
            t0[w[i] & 0x7fffu]++;
            t1[w[i + 1] & 0x7fffu]++;
            t0[w[i + 2] & 0x7fffu]++;
            t1[w[i + 3] & 0x7fffu]++;
        }
        for (; i < c1; i++)
            t0[w[i] & 0x7fffu]++;
        for (size_t b = 0; b < H16; b++) {
            h[b] += (uint64_t)t0[b] + t1[b];
            t0[b] = t1[b] = 0;
        }
    }
    free(t);
    return SP_OK;
}

/* The boundary: the smallest bin b where the running count reaches k;
 * *need = how many of bin b are pruned (>= 1). */
static size_t boundary(const uint64_t *h, size_t nbins, uint64_t k, uint64_t *need)
{
    uint64_t cum = 0;
    size_t b = 0;
    while (b + 1 < nbins && cum + h[b] < k)
        cum += h[b++];
    *need = k - cum;
    return b;
}

/* Index of the need-th element (1-based) whose key equals T: counted a
 * block at a time with the ukernel, then found in its block. */
size_t sp__nth_equal(const sp_mask_ukernels *uk, const void *w, size_t es, size_t n, uint32_t T,
                        uint64_t need)
{
    const size_t blk = 65536;
    size_t i = 0;
    for (; i < n; i += blk) {
        size_t e = n - i < blk ? n - i : blk;
        size_t c = es == 2 ? uk->count_eq16((const uint16_t *)w + i, e, (uint16_t)T)
                           : uk->count_eq32((const uint32_t *)w + i, e, T);
        if (c >= need)
            break;
        need -= c;
    }
    for (; i < n; i++) {
        uint32_t a = es == 2 ? (uint32_t)(((const uint16_t *)w)[i] & 0x7fffu)
                             : ((const uint32_t *)w)[i] & 0x7fffffffu;
        if (a == T && --need == 0)
            return i;
    }
    return n - 1; /* not reached: the histogram counted need of them */
}

/* Unstructured cut of a 16-bit tensor (expm: its exponent mask). */
static sp_status cut16(sp__tplan *p, const uint16_t *w, double sparsity, uint16_t expm,
                       sp_error *err)
{
    uint64_t *h = calloc(H16, sizeof *h);
    if (!h)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    sp_status s = sp__hist16(w, p->numel, h, err);
    if (!s) {
        uint64_t bad_inf = h[expm], bad_nan = 0;
        for (size_t b = (size_t)expm + 1; b < H16; b++)
            bad_nan += h[b];
        if (bad_nan || bad_inf)
            s = nonfinite(err, bad_nan != 0);
    }
    if (!s) {
        uint64_t k = sp__round_count(sparsity, p->numel), need;
        if (k < h[0])
            k = h[0]; /* elements that are already zero stay zero */
        if (k == 0) {
            p->split = p->numel;
            p->lo = p->hi = 0;
        } else if (k >= p->numel) {
            p->split = p->numel;
            p->lo = p->hi = 0x8000;
        } else {
            uint32_t T = (uint32_t)boundary(h, H16, k, &need);
            p->split = sp__nth_equal(p->uk, w, 2, p->numel, T, need) + 1;
            p->lo = T + 1;
            p->hi = T;
        }
    }
    free(h);
    return s;
}

/* Unstructured cut of an f32 tensor: the top 16 bits of the 31-bit key,
 * then the low 15 bits of the elements in the boundary bucket. */
static sp_status cut32(sp__tplan *p, const uint32_t *w, double sparsity, sp_error *err)
{
    const size_t NB = 65536, n = p->numel;
    uint64_t *h = calloc(NB, sizeof *h), zeros = 0;
    uint32_t *t = calloc(NB, sizeof *t);
    sp_status s = SP_OK;
    if (!h || !t) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t c0 = 0; c0 < n; c0 += SUB_CHUNK) {
        size_t c1 = n - c0 > SUB_CHUNK ? c0 + SUB_CHUNK : n;
        for (size_t i = c0; i < c1; i++) {
            uint32_t a = w[i] & 0x7fffffffu;
            t[a >> 15]++;
            zeros += a == 0;
        }
        for (size_t b = 0; b < NB; b++) {
            h[b] += t[b];
            t[b] = 0;
        }
    }
    uint64_t bad = 0;
    for (size_t b = 0x7f800000u >> 15; b < NB; b++)
        bad += h[b];
    if (bad) {
        bool nan = false;
        for (size_t i = 0; i < n && !nan; i++)
            nan = (w[i] & 0x7fffffffu) > 0x7f800000u;
        s = nonfinite(err, nan);
        goto out;
    }
    uint64_t k = sp__round_count(sparsity, n), need;
    if (k < zeros)
        k = zeros;
    if (k == 0) {
        p->split = n;
        p->lo = p->hi = 0;
        goto out;
    }
    if (k >= n) {
        p->split = n;
        p->lo = p->hi = 0x80000000u;
        goto out;
    }
    uint32_t b = (uint32_t)boundary(h, NB, k, &need);
    /* second level: the low 15 bits within bucket b */
    memset(h, 0, H16 * sizeof *h);
    for (size_t i = 0; i < n; i++) {
        uint32_t a = w[i] & 0x7fffffffu;
        if ((a >> 15) == b)
            h[a & 0x7fffu]++;
    }
    uint64_t need2;
    uint32_t T = (b << 15) | (uint32_t)boundary(h, H16, need, &need2);
    p->split = sp__nth_equal(p->uk, w, 4, n, T, need2) + 1;
    p->lo = (uint64_t)T + 1;
    p->hi = T;
out:
    free(h);
    free(t);
    return s;
}

/* Block keep bytes for contiguous rows: scores by the ukernel, keys as
 * sp_mask_select's (internal.h), radix select. */
static sp_status plan_blocks(sp__tplan *p, const void *src, double sparsity, sp_block_score bscore,
                             sp_error *err)
{
    const sp_wgeom *g = &p->g;
    const int64_t R = p->R, C = p->C;
    const int64_t nbr = (g->rows + R - 1) / R, nbc = (g->cols + C - 1) / C;
    const size_t nunits = (size_t)(g->nmat * nbr * nbc);
    uint64_t *keys = malloc(sizeof *keys * (nunits ? nunits : 1));
    double *sum = malloc(sizeof *sum * (size_t)(nbc ? nbc : 1));
    uint64_t *nnz = malloc(sizeof *nnz * (size_t)(nbc ? nbc : 1));
    p->bkeep = malloc(nunits ? nunits : 1);
    sp_status s = SP_OK;
    if (!keys || !sum || !nnz || !p->bkeep) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory (%zu blocks)", nunits);
        goto out;
    }
    sp_kcount kc = {0};
    size_t nz = 0;
    const bool l2 = bscore == SP_BLOCK_SCORE_L2;
    for (int64_t m = 0; m < g->nmat; m++)
        for (int64_t br = 0; br < nbr; br++) {
            int64_t r0 = br * R, r1 = r0 + R < g->rows ? r0 + R : g->rows;
            memset(sum, 0, sizeof *sum * (size_t)nbc);
            memset(nnz, 0, sizeof *nnz * (size_t)nbc);
            for (int64_t r = r0; r < r1; r++)
                p->uk->blockscore((const unsigned char *)src +
                                      (size_t)(m * g->mat_stride + r * g->row_stride) * p->es,
                                  (int)p->dtype, (size_t)g->cols, (size_t)C, l2, sum, nnz, &kc);
            for (int64_t bc = 0; bc < nbc; bc++) {
                int64_t c0 = bc * C, c1 = c0 + C < g->cols ? c0 + C : g->cols;
                size_t u = (size_t)((m * nbr + br) * nbc + bc);
                if (!nnz[bc]) {
                    keys[u] = 0;
                    nz++;
                    continue;
                }
                double sc = sum[bc] / (double)((r1 - r0) * (c1 - c0));
                if (l2)
                    sc = sqrt(sc);
                keys[u] = sp__score_key(sc);
            }
        }
    if (kc.nan || kc.inf) {
        s = nonfinite(err, kc.nan != 0);
        goto out;
    }
    size_t k = sp__round_count(sparsity, nunits);
    if (k < nz)
        k = nz;
    s = sp__select_units64(p->bkeep, keys, nunits, k, err);
out:
    free(keys);
    free(sum);
    free(nnz);
    return s;
}

static sp_status plan_mask(sp__tplan *p, sp_global *gl, size_t gslot, const void *src,
                           const sp_pattern *pat, double sparsity, sp_block_score bscore,
                           sp_error *err)
{
    p->mode = SP__TP_MASK;
    p->mask = malloc(p->numel ? p->numel : 1);
    if (!p->mask)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory (%zu elements)", p->numel);
    if (gl)
        return sp_global_mask(gl, gslot, p->mask, p->dtype, src, NULL, p->ndim, p->shape, err);
    return sp_mask_select(p->mask, p->dtype, src, NULL, p->ndim, p->shape, pat, sparsity, bscore,
                          err);
}

static sp_status tplan_begin(sp__tplan *p, sp_dtype dtype, int ndim, const int64_t *shape)
{
    memset(p, 0, sizeof *p);
    p->dtype = dtype;
    p->es = sp_dtype_size(dtype);
    p->ndim = ndim;
    memcpy(p->shape, shape, sizeof(int64_t) * (size_t)ndim);
    sp_wgeom_init(&p->g, ndim, shape);
    p->numel = (size_t)(p->g.nmat * p->g.rows * p->g.cols);
    p->uk = sp_mask_ukernels_get();
    return SP_OK;
}

sp_status sp__tplan_init(sp__tplan *p, const void *src, sp_dtype dtype, int ndim,
                         const int64_t *shape, const sp_pattern *pat, double sparsity,
                         sp_block_score bscore, sp_error *err)
{
    tplan_begin(p, dtype, ndim, shape);
    sp_status s = sp__check_select_args(dtype, pat, sparsity, err);
    if (s)
        return s;
    const bool rows_ok = contiguous_rows(&p->g);
    if (p->numel == 0) {
        p->mode = SP__TP_CUT;
        return SP_OK;
    }
    if (pat->kind == SP_PATTERN_NM && rows_ok && pat->m <= 256) {
        p->mode = SP__TP_NM;
        p->n = pat->n;
        p->m = pat->m;
        return SP_OK;
    }
    if (pat->kind == SP_PATTERN_BLOCK && rows_ok) {
        p->mode = SP__TP_BLOCK;
        p->R = pat->r;
        p->C = pat->c;
        return plan_blocks(p, src, sparsity, bscore, err);
    }
    if (pat->kind == SP_PATTERN_UNSTRUCTURED && p->numel >= CUT_MIN && dtype != SP_F64) {
        p->mode = SP__TP_CUT;
        if (dtype == SP_F32)
            return cut32(p, src, sparsity, err);
        return cut16(p, src, sparsity, dtype == SP_F16 ? 0x7c00 : 0x7f80, err);
    }
    return plan_mask(p, NULL, 0, src, pat, sparsity, bscore, err);
}

sp_status sp__tplan_global(sp__tplan *p, sp_global *g, size_t gslot, const void *src,
                           sp_dtype dtype, int ndim, const int64_t *shape, sp_error *err)
{
    tplan_begin(p, dtype, ndim, shape);
    if (p->numel == 0) {
        p->mode = SP__TP_CUT;
        return SP_OK;
    }
    uint64_t split, lo, hi;
    sp_status s = sp__global_cut(g, gslot, src, dtype, p->numel, &split, &lo, &hi, err);
    if (s == SP_OK) {
        p->mode = SP__TP_CUT;
        p->split = split;
        p->lo = lo;
        p->hi = hi;
        return SP_OK;
    }
    if (s != SP_ERR_UNSUPPORTED)
        return s;
    sp_error_clear(err);
    return plan_mask(p, g, gslot, src, NULL, 0, 0, err);
}

sp_status sp__tplan_gmag(sp__tplan *p, const sp__gmag *g, size_t tensor, const void *src,
                         sp_dtype dtype, int ndim, const int64_t *shape, sp_error *err)
{
    tplan_begin(p, dtype, ndim, shape);
    p->mode = SP__TP_CUT;
    if (p->numel == 0)
        return SP_OK;
    return sp__gmag_cut(g, tensor, dtype, src, p->numel, &p->split, &p->lo, &p->hi, err);
}

size_t sp__tplan_unit(const sp__tplan *p)
{
    switch (p->mode) {
    case SP__TP_NM: return (size_t)p->g.cols;
    case SP__TP_BLOCK: return (size_t)(p->R < p->g.rows ? p->R : p->g.rows) * (size_t)p->g.cols;
    default: return 1;
    }
}

sp_status sp__tplan_apply(const sp__tplan *p, void *dst, const void *src, size_t e0, size_t e1,
                          sp__prune_stats *st, sp_error *err)
{
    sp_kcount kc = {0};
    const size_t cnt = e1 - e0;
    switch (p->mode) {
    case SP__TP_CUT: {
        size_t split = p->split > e0 ? p->split - e0 : 0;
        if (p->es == 2)
            p->uk->cut16(dst, src, cnt, split, (uint32_t)p->lo, (uint32_t)p->hi, &kc);
        else if (p->es == 4)
            p->uk->cut32(dst, src, cnt, split, p->lo, p->hi, &kc);
        else
            p->uk->cut64(dst, src, cnt, split, p->lo, p->hi, &kc);
        break;
    }
    case SP__TP_NM: {
        size_t cols = (size_t)p->g.cols, rows = cnt / cols;
        if (p->es == 2)
            p->uk->nm16(dst, src, rows, cols, p->n, p->m, p->dtype == SP_F16 ? 0x7c00 : 0x7f80, &kc);
        else if (p->es == 4)
            p->uk->nm32(dst, src, rows, cols, p->n, p->m, 0x7f800000u, &kc);
        else
            p->uk->nm64(dst, src, rows, cols, p->n, p->m, 0x7ff0000000000000ull, &kc);
        if (kc.nan || kc.inf)
            return nonfinite(err, kc.nan != 0);
        break;
    }
    case SP__TP_BLOCK: {
        const size_t cols = (size_t)p->g.cols, rows = (size_t)p->g.rows;
        const size_t nbr = (rows + (size_t)p->R - 1) / (size_t)p->R;
        const size_t nbc = (cols + (size_t)p->C - 1) / (size_t)p->C;
        for (size_t r = e0 / cols; r < e1 / cols; r++) {
            size_t m = r / rows, rr = r % rows;
            const uint8_t *bk = p->bkeep + (m * nbr + rr / (size_t)p->R) * nbc;
            size_t at = (r * cols - e0) * p->es;
            p->uk->blockapply((unsigned char *)dst + at, (const unsigned char *)src + at, p->es,
                              cols, (size_t)p->C, bk, &kc);
        }
        break;
    }
    default:
        sp__apply_mask(dst, src, p->dtype, cnt, p->mask + e0, st);
        return SP_OK;
    }
    st->zeros_before = kc.zeros_before;
    st->zeros_after = kc.zeros_after;
    st->changed = kc.changed != 0;
    return SP_OK;
}

void sp__tplan_mask(const sp__tplan *p, const void *src, uint8_t *mask)
{
    const size_t n = p->numel, split = p->split < n ? p->split : n;
    if (p->es == 2) {
        const uint16_t *w = src;
        for (size_t i = 0; i < n; i++)
            mask[i] = (uint32_t)(w[i] & 0x7fffu) >= (i < split ? p->lo : p->hi);
    } else {
        const uint32_t *w = src;
        for (size_t i = 0; i < n; i++)
            mask[i] = (uint64_t)(w[i] & 0x7fffffffu) >= (i < split ? p->lo : p->hi);
    }
}

void sp__tplan_release(sp__tplan *p)
{
    free(p->bkeep);
    free(p->mask);
    p->bkeep = p->mask = NULL;
}

sp_status sp__prune_tensor(void *dst, const void *src, sp_dtype dtype, int ndim,
                           const int64_t *shape, const sp_pattern *pat, double sparsity,
                           sp_block_score bscore, sp__prune_stats *st, sp_error *err)
{
    sp__tplan p;
    memset(st, 0, sizeof *st);
    sp_status s = sp__tplan_init(&p, src, dtype, ndim, shape, pat, sparsity, bscore, err);
    if (!s)
        s = sp__tplan_apply(&p, dst, src, 0, p.numel, st, err);
    sp__tplan_release(&p);
    return s;
}

sp_status sp__global_apply(sp_global *g, size_t tensor, void *dst, const void *src,
                           sp_dtype dtype, int ndim, const int64_t *shape, sp__prune_stats *st,
                           sp_error *err)
{
    sp__tplan p;
    memset(st, 0, sizeof *st);
    sp_status s = sp__tplan_global(&p, g, tensor, src, dtype, ndim, shape, err);
    if (!s)
        s = sp__tplan_apply(&p, dst, src, 0, p.numel, st, err);
    sp__tplan_release(&p);
    return s;
}
