/*
 * The export drivers (include/sparsify/spz.h): a whole checkpoint to an
 * .spz, the dense copy of a tensor every exporter starts from, and the
 * export report. The compressed-tensors and dense safetensors exports are
 * formats/ctensors.c; the per-tensor planning both exporters share is
 * formats/export_plan.c.
 */
#include "formats/export_internal.h"
#include "formats/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sp_status sp_ckpt_tensor_dense(sp_ckpt *ck, size_t ti, const void **data, void **owned,
                               sp_error *err)
{
    *owned = NULL;
    const sp_tensor *t = sp_ckpt_tensor(ck, ti);
    if (!t)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': no tensor %zu", sp_ckpt_path(ck), ti);
    const void *base;
    sp_status s = sp_ckpt_storage_data(ck, t->storage, &base, err);
    if (s)
        return s;
    size_t es = sp_dtype_size(t->dtype);
    if (sp_tensor_is_contiguous(t) || t->numel <= 1) {
        *data = (const unsigned char *)base + (size_t)t->offset * es;
        return SP_OK;
    }
    /* the view passed sp_ckpt_validate_tensor: its dense size is bounded
     * by the storage it reads (formats/checked.h) */
    size_t bytes;
    unsigned char *buf = NULL;
    if (!sp_mul_size((uint64_t)t->numel, es, &bytes) || !(buf = malloc(bytes + 1)))
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory copying tensor '%s'", t->name);
    int64_t idx[SP_MAX_DIMS] = {0};
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t off = t->offset;
        for (int d = 0; d < t->ndim; d++)
            off += idx[d] * t->stride[d];
        memcpy(buf + (size_t)i * es, (const unsigned char *)base + (size_t)off * es, es);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
    *data = buf;
    *owned = buf;
    return SP_OK;
}

typedef struct dense_run {
    sp_ckpt *ck;
    const void **data;
    void **owned;
} dense_run;

static sp_status dense_job(void *ctx, sp_jobs *jr, size_t i, int worker, sp_error *err)
{
    dense_run *r = ctx;
    const sp_tensor *t = sp_ckpt_tensor(r->ck, i);
    (void)worker;
    sp_status s = sp_ckpt_tensor_dense(r->ck, i, &r->data[i], &r->owned[i], err);
    if (!s)
        sp_jobs_progress(jr, (uint64_t)t->numel * sp_dtype_size(t->dtype));
    return s;
}

sp_status sp_ckpt_dense_all(sp_ckpt *ck, int threads, sp_progress_fn progress, void *pctx,
                            const void **data, void **owned, sp_error *err)
{
    size_t n = sp_ckpt_num_tensors(ck);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        total += (uint64_t)t->numel * sp_dtype_size(t->dtype);
        data[i] = NULL;
        owned[i] = NULL;
    }
    dense_run r = {ck, data, owned};
    return sp_jobs_run(n, threads, dense_job, &r, progress, pctx, total, err);
}

void sp_export_report_release(sp_export_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nentries; i++)
        free(r->entries[i].name);
    free(r->entries);
    memset(r, 0, sizeof *r);
}

sp_status sp__export_report_add(sp_export_report *r, const sp_tensor *t, const sp_spz_tensor_info *info,
                            sp_error *err)
{
    if (!r)
        return SP_OK;
    sp_export_entry *ne = realloc(r->entries, (r->nentries + 1) * sizeof *ne);
    if (!ne)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    r->entries = ne;
    sp_export_entry *e = &ne[r->nentries];
    memset(e, 0, sizeof *e);
    e->name = strdup(t->name);
    if (!e->name)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    e->dtype = t->dtype;
    e->ndim = t->ndim;
    memcpy(e->shape, t->shape, sizeof e->shape);
    e->info = *info;
    r->nentries++;
    r->dense_bytes += info->dense_bytes;
    return SP_OK;
}

/* .spz export of a whole checkpoint                                   */

static bool same_view(const sp_tensor *a, const sp_tensor *b)
{
    if (a->storage != b->storage || a->offset != b->offset || a->dtype != b->dtype ||
        a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d] || (a->shape[d] > 1 && a->stride[d] != b->stride[d]))
            return false;
    return true;
}

typedef struct spz_run {
    sp_ckpt *ck;
    sp_spz_writer *w;
    sp_export_report *report;
} spz_run;

/* Job i: tensor i encoded in memory on any thread, then, once tensor i - 1
 * is in the file, appended (or added as an alias of an earlier tensor with
 * the same view). The file is the same bytes whatever the thread count. */
static sp_status spz_job(void *ctx, sp_jobs *jr, size_t i, int worker, sp_error *err)
{
    (void)worker;
    spz_run *r = ctx;
    sp_ckpt *ck = r->ck;
    size_t nt = sp_ckpt_num_tensors(ck);
    const sp_tensor *t = sp_ckpt_tensor(ck, i);
    sp_spz_tensor_info info;
    memset(&info, 0, sizeof info);
    long tied = -1;
    for (size_t j = 0; j < i && t->numel > 0; j++)
        if (same_view(sp_ckpt_tensor(ck, j), t)) {
            tied = (long)j;
            break;
        }
    sp__spz_staged *st = NULL;
    sp_status s = SP_OK;
    if (tied < 0) {
        const void *data;
        void *owned;
        s = sp_ckpt_tensor_dense(ck, i, &data, &owned, err);
        if (s)
            return s;
        sp_tensor_data td;
        memset(&td, 0, sizeof td);
        td.name = t->name;
        td.dtype = t->dtype;
        td.ndim = t->ndim;
        memcpy(td.shape, t->shape, sizeof td.shape);
        td.data = data;
        s = sp__spz_stage(r->w, &td, &st, err);
        free(owned);
    }
    if (!s && i > 0 && !sp_jobs_wait(jr, i - 1)) {
        sp__spz_staged_free(st);
        return SP_OK; /* an earlier tensor failed: its error is the one */
    }
    if (!s && tied >= 0) {
        s = sp_spz_writer_add_alias(r->w, t->name, sp_ckpt_tensor(ck, (size_t)tied)->name, err);
        info.encoding = SP_SPZ_ALIAS;
        info.numel = (uint64_t)t->numel;
        info.dense_bytes = (uint64_t)t->numel * sp_dtype_size(t->dtype);
    } else if (!s) {
        s = sp__spz_commit(r->w, t->name, st, &info, err);
        /* every earlier tensor is done: release the storage unless a later
         * one shares it */
        bool later = false;
        for (size_t j = i + 1; j < nt && !later; j++)
            later = sp_ckpt_tensor(ck, j)->storage == t->storage;
        if (!later)
            sp_ckpt_storage_release(ck, t->storage);
    }
    sp__spz_staged_free(st);
    if (!s)
        s = sp__export_report_add(r->report, t, &info, err);
    if (!s)
        sp_jobs_progress(jr, (uint64_t)t->numel * sp_dtype_size(t->dtype));
    return s;
}

sp_status sp_spz_export(sp_ckpt *ck, const char *path, const sp_spz_options *opt,
                        sp_progress_fn progress, void *pctx, sp_export_report *report,
                        sp_error *err)
{
    sp_spz_writer *w = NULL;
    char meta[1024];
    snprintf(meta, sizeof meta, "{\"producer\":\"sparsify\",\"source_format\":\"%s\"}",
             sp_format_name(sp_ckpt_format(ck)));
    size_t nt = sp_ckpt_num_tensors(ck);
    uint64_t total = 0;
    for (size_t i = 0; i < nt; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        total += (uint64_t)t->numel * sp_dtype_size(t->dtype);
    }
    if (report) {
        memset(report, 0, sizeof *report);
        snprintf(report->format, sizeof report->format, "spz");
    }
    sp_status s = sp_spz_writer_new(&w, path, opt, meta, err);
    if (!s) {
        spz_run r = {ck, w, report};
        s = sp_jobs_run(nt, opt ? opt->threads : 0, spz_job, &r, progress, pctx, total, err);
    }
    uint64_t size = 0;
    if (!s)
        s = sp_spz_writer_finish(w, &size, err);
    sp_spz_writer_free(w);
    if (report) {
        report->output_bytes = size;
        if (s)
            sp_export_report_release(report);
        else {
            report->dense_bytes = 0;
            for (size_t i = 0; i < report->nentries; i++)
                report->dense_bytes += report->entries[i].info.dense_bytes;
        }
    }
    return s;
}
