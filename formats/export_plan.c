/*
 * The per-tensor export planner (formats/export_internal.h), shared by the
 * .spz and compressed-tensors exporters: what each tensor holds (measured
 * on all threads with the scanning ukernels), the .spz encoding of a tensor
 * and the compressed-tensors format of a model and of each of its weights.
 */
#include "formats/export_internal.h"

#include "formats/jobs.h"
#include "formats/scan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- .spz: the cheapest exact encoding ---- */

/* Entropy in bits of a Bernoulli(p) source, per symbol. */
static double h2(double p)
{
    if (p <= 0 || p >= 1)
        return 0;
    return -(p * log2(p) + (1 - p) * log2(1 - p));
}

/* Max nonzeros over groups of m along cols; early exit above limit. */
static int nm_max(const uint8_t *nz, const sp__spz_geom *g, int m, int limit)
{
    int mx = 0;
    for (int64_t k = 0; k < g->nmat; k++)
        for (int64_t r = 0; r < g->rows; r++) {
            const uint8_t *row = nz + k * g->mat_stride + r * g->row_stride;
            for (int64_t c0 = 0; c0 < g->cols; c0 += m) {
                int cnt = 0;
                for (int j = 0; j < m; j++)
                    cnt += row[(c0 + j) * g->col_stride];
                if (cnt > mx) {
                    mx = cnt;
                    if (mx > limit)
                        return mx;
                }
            }
        }
    return mx;
}

/* Kept blocks of r x c (ragged edges included) and their element count;
 * stops early (returns false) when the element count passes limit. */
bool sp__spz_block_count(const uint8_t *nz, const sp__spz_geom *g, int64_t br, int64_t bc, uint64_t limit,
                        uint64_t *kept, uint64_t *elems, uint8_t *bmap)
{
    uint64_t kb = 0, ke = 0, idx = 0, strips = 0;
    uint64_t nstrips = (uint64_t)g->nmat * (uint64_t)((g->rows + br - 1) / br);
    for (int64_t k = 0; k < g->nmat; k++)
        for (int64_t r0 = 0; r0 < g->rows; r0 += br) {
            for (int64_t c0 = 0; c0 < g->cols; c0 += bc, idx++) {
                int64_t rh = g->rows - r0 < br ? g->rows - r0 : br;
                int64_t cw = g->cols - c0 < bc ? g->cols - c0 : bc;
                bool any = false;
                for (int64_t r = 0; r < rh && !any; r++) {
                    const uint8_t *row = nz + k * g->mat_stride + (r0 + r) * g->row_stride;
                    for (int64_t c = 0; c < cw; c++)
                        if (row[(c0 + c) * g->col_stride]) {
                            any = true;
                            break;
                        }
                }
                if (bmap)
                    bmap[idx] = any;
                if (any) {
                    kb++;
                    ke += (uint64_t)(rh * cw);
                    if (ke > limit)
                        return false;
                }
            }
            /* a candidate already far over its share of the budget after
             * a few strips will not come back: stop early (estimate only;
             * the exact count is redone for the chosen size) */
            strips++;
            if (!bmap && limit != UINT64_MAX && strips >= 4 && strips * 8 <= nstrips &&
                (double)ke > 1.5 * (double)limit * (double)strips / (double)nstrips)
                return false;
        }
    *kept = kb;
    *elems = ke;
    return true;
}

static const int64_t block_sizes[][2] = {
    {1, 2}, {2, 1}, {1, 4}, {4, 1}, {2, 2}, {1, 8}, {8, 1}, {2, 4}, {4, 2}, {4, 4},
    {1, 16}, {16, 1}, {8, 4}, {4, 8}, {8, 8}, {1, 32}, {32, 1}, {16, 16}, {32, 32},
};

void sp__spz_choose(const sp_spz_options *o, const uint8_t *nz, uint64_t nnz, uint64_t numel,
                   size_t es, int ndim, const int64_t *shape, sp__spz_plan *out)
{
    sp__spz_geom g;
    sp__spz_geom_init(&g, ndim, shape);
    double bits_e = 8.0 * (double)es;
    double dense = (double)numel * bits_e;
    double p = numel ? (double)nnz / (double)numel : 0;
    double bm = (double)nnz * bits_e + (double)numel * h2(p) + 64 * 8;
    memset(out, 0, sizeof *out);
    out->enc = SP_SPZ_DENSE;
    double best = dense;
    bool forced = o->encoding != SP_SPZ_AUTO;
    if (numel == 0 || nnz == numel) {
        if (!(forced && o->encoding == SP_SPZ_BITMASK && numel))
            return;
    }
    if (bm < best || (forced && o->encoding == SP_SPZ_BITMASK)) {
        best = bm;
        out->enc = SP_SPZ_BITMASK;
        if (forced && o->encoding == SP_SPZ_BITMASK)
            return;
    }
    if (forced && o->encoding == SP_SPZ_DENSE) {
        out->enc = SP_SPZ_DENSE;
        return;
    }
    if (ndim >= 1 && (!forced || o->encoding == SP_SPZ_NM)) {
        static const int ms[] = {2, 4, 8, 16, 32};
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
            int m = ms[i];
            if (forced && o->nm_m && o->nm_m != m)
                continue;
            if (g.cols % m)
                continue;
            /* most nonzeros per group that could still beat `best` */
            double per_group = best / (double)(numel / (uint64_t)m);
            int limit = (int)(per_group / bits_e);
            if (forced)
                limit = o->nm_n ? o->nm_n : m - 1;
            if (limit >= m)
                limit = m - 1;
            int mx = nm_max(nz, &g, m, limit);
            if (mx > limit)
                continue;
            int nn = forced && o->nm_n ? o->nm_n : mx;
            double cost = (double)(numel / (uint64_t)m) * (nn * bits_e + sp__spz_rank_bits(nn, m)) + 64 * 8;
            if (cost < best || forced) {
                best = cost;
                out->enc = SP_SPZ_NM;
                out->n = nn;
                out->m = m;
                if (forced)
                    return;
            }
        }
    }
    if (ndim >= 1 && (!forced || o->encoding == SP_SPZ_BLOCK)) {
        for (size_t i = 0; i < sizeof block_sizes / sizeof block_sizes[0] + 1; i++) {
            int64_t br, bc;
            if (i == sizeof block_sizes / sizeof block_sizes[0]) {
                if (!(forced && o->block_r > 0 && o->block_c > 0))
                    break;
                br = o->block_r;
                bc = o->block_c;
            } else {
                br = block_sizes[i][0];
                bc = block_sizes[i][1];
                if (forced && o->block_r > 0 && o->block_c > 0)
                    continue;
            }
            if (br > g.rows || bc > g.cols)
                continue;
            uint64_t nb = sp__spz_nblocks(&g, br, bc), kept = 0, elems = 0;
            double idx_floor = (double)nb * 0.05;
            uint64_t limit = forced ? UINT64_MAX
                                    : (uint64_t)fmax(0, (best - idx_floor) / bits_e);
            if (!sp__spz_block_count(nz, &g, br, bc, limit, &kept, &elems, NULL))
                continue;
            double cost = (double)elems * bits_e + (double)nb * h2((double)kept / (double)nb) + 64 * 8;
            if (cost < best || (forced && out->enc != SP_SPZ_BLOCK)) {
                best = cost;
                out->enc = SP_SPZ_BLOCK;
                out->r = br;
                out->c = bc;
            }
        }
    }
    if (forced && out->enc != o->encoding && o->encoding != SP_SPZ_DENSE) {
        /* forced encoding impossible: keep the automatic choice */
        sp_spz_options a = *o;
        a.encoding = SP_SPZ_AUTO;
        sp__spz_choose(&a, nz, nnz, numel, es, ndim, shape, out);
    }
}


/* ---- what each tensor holds ---- */

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

bool sp__ct_candidate(const sp_tensor *t)
{
    return t->ndim == 2 && t->numel > 0 && sp_dtype_is_float(t->dtype) &&
           ends_with(t->name, ".weight") && strlen(t->name) > strlen(".weight");
}

typedef struct scan_run {
    sp_ckpt *ck;
    size_t *order, *start, *storages;
    sp__xstat *out;
} scan_run;

/* One candidate's nonzeros per row (its dense copy, rows of shape[1]). */
static sp_status row_counts(sp_ckpt *ck, size_t ti, sp__xstat *x, sp_error *err)
{
    const sp_tensor *t = sp_ckpt_tensor(ck, ti);
    const void *data;
    void *owned;
    sp_status s = sp_ckpt_tensor_dense(ck, ti, &data, &owned, err);
    if (s)
        return s;
    size_t R = (size_t)t->shape[0], C = (size_t)t->shape[1], es = sp_dtype_size(t->dtype);
    uint64_t zm = sp_scan_zmask(t->dtype);
    const sp_scan_ukernels *uk = sp_scan_ukernels_get();
    if (!(x->row_nnz = malloc((R ? R : 1) * sizeof *x->row_nnz)))
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t r = 0; !s && r < R; r++)
        x->row_nnz[r] = C - uk->zeros((const unsigned char *)data + r * C * es, C, es, zm);
    free(owned);
    return s;
}

static sp_status scan_job(void *ctx, sp_jobs *jr, size_t jn, int worker, sp_error *err)
{
    scan_run *r = ctx;
    size_t s = r->storages[jn];
    const void *data;
    (void)worker;
    sp_status st = sp_ckpt_storage_data(r->ck, s, &data, err);
    uint64_t bytes = 0;
    for (size_t k = r->start[s]; !st && k < r->start[s + 1]; k++) {
        size_t ti = r->order[k];
        const sp_tensor *t = sp_ckpt_tensor(r->ck, ti);
        sp__xstat *x = &r->out[ti];
        bytes += (uint64_t)t->numel * sp_dtype_size(t->dtype);
        if (!sp_dtype_is_float(t->dtype))
            continue;
        sp_view_stats vs;
        x->candidate = sp__ct_candidate(t);
        sp_tensor_view_stats(t, (const unsigned char *)data + (size_t)t->offset * sp_dtype_size(t->dtype),
                             x->candidate, &vs);
        x->zeros = vs.zeros;
        x->is_24 = x->candidate && vs.is_24;
        x->pruned = x->candidate && (double)vs.zeros >= SP_CT_PRUNED_MIN * (double)t->numel;
    }
    sp_ckpt_storage_release(r->ck, s);
    sp_jobs_progress(jr, bytes);
    return st;
}

sp_status sp__export_scan(sp_ckpt *ck, int threads, sp_progress_fn progress, void *pctx,
                          uint64_t total, sp__xstat *out, sp_error *err)
{
    scan_run r = {ck, NULL, NULL, NULL, out};
    size_t ns = sp_ckpt_num_storages(ck), n = 0;
    memset(out, 0, sp_ckpt_num_tensors(ck) * sizeof *out);
    sp_status s = sp_ckpt_tensors_by_storage(ck, &r.order, &r.start, err);
    if (!s && !(r.storages = malloc((ns ? ns : 1) * sizeof *r.storages)))
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !s && i < ns; i++)
        if (r.start[i + 1] > r.start[i])
            r.storages[n++] = i;
    if (!s)
        s = sp_jobs_run(n, threads, scan_job, &r, progress, pctx, total, err);
    free(r.order);
    free(r.start);
    free(r.storages);
    if (s)
        sp__xstat_release(out, sp_ckpt_num_tensors(ck));
    return s;
}

typedef struct rows_run {
    sp_ckpt *ck;
    const size_t *which;
    sp__xstat *out;
} rows_run;

static sp_status rows_job(void *ctx, sp_jobs *jr, size_t jn, int worker, sp_error *err)
{
    rows_run *r = ctx;
    size_t ti = r->which[jn];
    const sp_tensor *t = sp_ckpt_tensor(r->ck, ti);
    (void)worker;
    sp_status s = row_counts(r->ck, ti, &r->out[ti], err);
    /* storages shared with another tensor stay for the caller to release */
    bool shared = false;
    for (size_t i = 0; i < sp_ckpt_num_tensors(r->ck) && !shared; i++)
        shared = i != ti && sp_ckpt_tensor(r->ck, i)->storage == t->storage;
    if (!shared)
        sp_ckpt_storage_release(r->ck, t->storage);
    sp_jobs_progress(jr, (uint64_t)t->numel * sp_dtype_size(t->dtype));
    return s;
}

sp_status sp__export_rows(sp_ckpt *ck, const size_t *which, size_t n, int threads, sp__xstat *out,
                          sp_error *err)
{
    rows_run r = {ck, which, out};
    return sp_jobs_run(n, threads, rows_job, &r, NULL, NULL, 0, err);
}

void sp__xstat_release(sp__xstat *x, size_t n)
{
    for (size_t i = 0; x && i < n; i++) {
        free(x[i].row_nnz);
        x[i].row_nnz = NULL;
    }
}

/* ---- compressed-tensors: the format and each weight's form ---- */

sp_status sp__ct_plan_make(const sp_ckpt *ck, const sp__xstat *xs, const char *want,
                           sp__ct_plan *out, sp_error *err)
{
    size_t nt = sp_ckpt_num_tensors(ck), npruned = 0, n24 = 0;
    memset(out, 0, sizeof *out);
    if (want && strcmp(want, "sparse-bitmask") && strcmp(want, "sparse-24-bitmask") &&
        strcmp(want, "dense"))
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "compressed-tensors format '%s' (expected sparse-bitmask, "
                            "sparse-24-bitmask or dense)", want);
    out->comp = calloc(nt ? nt : 1, 1);
    out->target = calloc(nt ? nt : 1, sizeof *out->target);
    if (!out->comp || !out->target) {
        sp__ct_plan_release(out);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    /* which weights were pruned (stray zeros elsewhere do not count), which
     * of them are 2:4 (the predicate inspect uses), and where
     * sparse-bitmask pays off */
    for (size_t i = 0; i < nt; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        if (!sp_dtype_is_float(t->dtype))
            continue;
        out->params_all += (uint64_t)t->numel;
        out->zeros_all += xs[i].zeros;
        if (!xs[i].pruned)
            continue;
        npruned++;
        n24 += xs[i].is_24;
        uint64_t es = sp_dtype_size(t->dtype), R = (uint64_t)t->shape[0], C = (uint64_t)t->shape[1];
        uint64_t bm = ((uint64_t)t->numel - xs[i].zeros) * es + R * ((C + 7) / 8) + R * 8 + 16;
        if (bm < (uint64_t)t->numel * es)
            out->comp[i] = SP__CT_BITMASK;
    }
    /* the model is 2:4 when most of its pruned layers are; the others are
     * stored dense (listed in "ignore") rather than downgrading the model */
    out->model24 = npruned && 2 * n24 > npruned;
    if (want)
        out->format = !strcmp(want, "sparse-24-bitmask") ? SP__CT_24
                      : !strcmp(want, "sparse-bitmask") ? SP__CT_BITMASK
                                                        : SP__CT_DENSE;
    else
        out->format = out->model24 ? SP__CT_24 : npruned ? SP__CT_BITMASK : SP__CT_DENSE;
    /* how each weight is stored, and whether the config lists it in
     * "targets" (dense keeps the targets the sparse format would have) */
    for (size_t i = 0; i < nt; i++) {
        bool p24 = xs[i].pruned && xs[i].is_24;
        if (out->format == SP__CT_24) {
            out->comp[i] = p24 ? SP__CT_24 : SP__CT_DENSE;
            out->target[i] = p24;
        } else if (out->format == SP__CT_BITMASK) {
            out->target[i] = out->comp[i] != SP__CT_DENSE;
        } else {
            out->comp[i] = SP__CT_DENSE;
            out->target[i] = out->model24 ? p24 : xs[i].pruned;
        }
    }
    return SP_OK;
}

void sp__ct_plan_release(sp__ct_plan *p)
{
    free(p->comp);
    free(p->target);
    p->comp = NULL;
    p->target = NULL;
}
