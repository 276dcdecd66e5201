/*
 * PyTorch checkpoint writers: sp_ckpt_rewrite for torch zip, TorchScript
 * and legacy checkpoints, and sp_torch_save. Layouts: see torch.c, zip.h.
 *
 * Rewrite of a zip: records are copied in file order byte for byte (local
 * header, data, data descriptor); a storage the callback changed gets its
 * new bytes and CRC-32 in place, so a stored record keeps its size, its
 * offset and its 64-byte alignment. A changed deflated record is written
 * stored (aligned). The central directory is regenerated from the original
 * entries with the new offsets. Memory: one storage (plus a scratch copy).
 *
 * Rewrite of a legacy stream writes a zip checkpoint: the object pickle is
 * re-emitted with zip-style persistent ids ('storage', cls, key, location,
 * numel), each storage becomes archive/data/<key>, plus archive/version.
 */
#include "formats/torch_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COPY_CHUNK (64u << 20)

/* Copy file bytes [a, b) to the output, dropping source pages as we go. */
static sp_status copy_range(sp_outfile *of, const sp_mapfile *mf, uint64_t a, uint64_t b,
                            sp_error *err)
{
    while (a < b) {
        uint64_t n = b - a > COPY_CHUNK ? COPY_CHUNK : b - a;
        sp_status s = sp_outfile_write(of, mf->data + a, (size_t)n, err);
        if (s)
            return s;
        sp_mapfile_drop(mf, a, n);
        a += n;
    }
    return SP_OK;
}

/* Copy [a, b) but write crc (little-endian) over the 4 bytes at p (no
 * patch when p is outside, e.g. UINT64_MAX). */
static sp_status copy_patched(sp_outfile *of, const sp_mapfile *mf, uint64_t a, uint64_t b,
                              uint64_t p, uint32_t crc, sp_error *err)
{
    if (p < a || p > b || b - p < 4)
        return copy_range(of, mf, a, b, err);
    unsigned char c[4] = {(unsigned char)crc, (unsigned char)(crc >> 8),
                          (unsigned char)(crc >> 16), (unsigned char)(crc >> 24)};
    sp_status s = copy_range(of, mf, a, p, err);
    if (!s)
        s = sp_outfile_write(of, c, 4, err);
    if (!s)
        s = copy_range(of, mf, p + 4, b, err);
    return s;
}

static int cmp_u64(const void *a, const void *b, void *ctx)
{
    const sp_zip *z = ctx;
    uint64_t x = z->entries[*(const size_t *)a].lho, y = z->entries[*(const size_t *)b].lho;
    return x < y ? -1 : x > y;
}

/* Ask fn about storage si; on *changed, *scratch holds the new bytes. */
static sp_status call_fn(sp_ckpt *ck, size_t si, sp_rewrite_fn fn, void *ctx,
                         const void **orig, unsigned char **scratch, bool *changed,
                         sp_error *err)
{
    *changed = false;
    *scratch = NULL;
    sp_status s = sp_ckpt_storage_data(ck, si, orig, err);
    if (s || !fn)
        return s;
    uint64_t nb = ck->storages[si].nbytes;
    if (nb > SIZE_MAX)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    *scratch = malloc(nb ? (size_t)nb : 1);
    if (!*scratch)
        return sp_error_set(err, SP_ERR_NOMEM, "'%s': out of memory for storage '%s'", ck->path,
                            ck->storages[si].key);
    return fn(ctx, ck, si, *orig, *scratch, changed, err);
}

static sp_status rewrite_zip(sp_ckpt *ck, const char *out_path, sp_rewrite_fn fn, void *ctx,
                             sp_error *err)
{
    torch_impl *ti = ck->impl;
    sp_zip *z = &ti->zip;
    sp_outfile of;
    sp_zipw w;
    sp_zipw_init(&w, &of);
    w.force_zip64 = z->zip64;
    w.z64_made_by = z->z64_made_by;
    w.z64_needed = z->z64_needed;
    size_t *order = malloc((z->n ? z->n : 1) * sizeof *order);
    if (!order)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < z->n; i++)
        order[i] = i;
    qsort_r(order, z->n, sizeof *order, cmp_u64, z);
    sp_status s = sp_outfile_open(&of, out_path, err);
    if (s) {
        free(order);
        return s;
    }
    for (size_t k = 0; k < z->n && !s; k++) {
        size_t i = order[k];
        const sp_zip_entry *e = &z->entries[i];
        uint64_t end = k + 1 < z->n ? z->entries[order[k + 1]].lho : z->cd_off;
        uint64_t data_end = e->data_off + e->csize;
        if (end < data_end) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': zip entries '%s' and '%s' overlap", ck->path,
                             e->name, z->entries[order[k + 1]].name);
            break;
        }
        sp_zipw_entry rec;
        if ((s = sp_zip_entry_record(z, i, &rec, err)))
            break;
        rec.lho = of.pos;
        long si = ti->ent2st[i];
        bool changed = false, added = false;
        const void *orig = NULL;
        unsigned char *scratch = NULL;
        if (si >= 0)
            s = call_fn(ck, (size_t)si, fn, ctx, &orig, &scratch, &changed, err);
        if (!s && changed && e->method == 0) {
            uint32_t crc = sp_crc32(0, scratch, e->usize);
            /* descriptor crc sits after an optional signature */
            uint64_t dp = data_end;
            if ((e->flags & 8) && end - data_end >= 4 && !memcmp(z->mf.data + dp, "PK\x07\x08", 4))
                dp += 4;
            s = copy_patched(&of, &z->mf, e->lho, e->data_off,
                             (e->flags & 8) ? UINT64_MAX : e->lho + 14, crc, err);
            if (!s)
                s = sp_outfile_write(&of, scratch, (size_t)e->usize, err);
            if (!s)
                s = copy_patched(&of, &z->mf, data_end, end, (e->flags & 8) ? dp : UINT64_MAX,
                                 crc, err);
            rec.crc = crc;
        } else if (!s && changed) {
            s = sp_zipw_add_stored(&w, e->name, scratch, e->usize, err);
            added = true;
        } else if (!s) {
            s = copy_range(&of, &z->mf, e->lho, end, err);
        }
        if (!s && !added)
            s = sp_zipw_add_record(&w, &rec, err);
        sp_zipw_entry_release(&rec);
        free(scratch);
        if (si >= 0)
            sp_ckpt_storage_release(ck, (size_t)si);
        sp_mapfile_drop(&z->mf, e->lho, end - e->lho);
    }
    free(order);
    if (!s)
        s = sp_zipw_finish(&w, err);
    if (!s)
        s = sp_outfile_commit(&of, err);
    if (s)
        sp_outfile_abort(&of);
    sp_zipw_release(&w);
    return s;
}

static sp_status rewrite_legacy(sp_ckpt *ck, const char *out_path, sp_rewrite_fn fn, void *ctx,
                                sp_error *err)
{
    torch_impl *ti = ck->impl;
    sp_pickle pk;
    char what[600];
    snprintf(what, sizeof what, "'%s': object pickle", ck->path);
    sp_status s = sp_pickle_parse(&pk, ti->mf.data + ti->main_off, (size_t)ti->main_len, NULL,
                                  what, err);
    if (s)
        return s;
    /* zip persistent ids have no view metadata: drop the 6th field */
    for (size_t i = 0; i < pk.nall; i++) {
        sp_pk *p = pk.all[i];
        if (p->kind == SP_PK_PERSID && p->args && p->args->kind == SP_PK_TUPLE &&
            p->args->n == 6 && p->args->items[0]->kind == SP_PK_STR &&
            !strcmp(p->args->items[0]->s, "storage"))
            p->args->n = 5;
    }
    unsigned char *pkl = NULL;
    size_t pkl_len = 0;
    s = sp_pickle_write(pk.root, &pkl, &pkl_len, err);
    sp_pickle_release(&pk);
    if (s)
        return s;
    sp_outfile of;
    sp_zipw w;
    sp_zipw_init(&w, &of);
    if ((s = sp_outfile_open(&of, out_path, err))) {
        free(pkl);
        return s;
    }
    s = sp_zipw_add_stored(&w, "archive/data.pkl", pkl, pkl_len, err);
    free(pkl);
    for (size_t k = 0; k < ti->norder && !s; k++) {
        size_t si = ti->order[k];
        const void *orig;
        unsigned char *scratch;
        bool changed;
        s = call_fn(ck, si, fn, ctx, &orig, &scratch, &changed, err);
        if (!s) {
            const char *key = ck->storages[si].key;
            size_t nl = strlen(key) + 16;
            char *name = malloc(nl);
            if (!name) {
                s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            } else {
                snprintf(name, nl, "archive/data/%s", key);
                s = sp_zipw_add_stored(&w, name, changed ? scratch : orig,
                                       ck->storages[si].nbytes, err);
                free(name);
            }
        }
        free(scratch);
        sp_ckpt_storage_release(ck, si);
    }
    if (!s)
        s = sp_zipw_add_stored(&w, "archive/version", "3\n", 2, err);
    if (!s)
        s = sp_zipw_finish(&w, err);
    if (!s)
        s = sp_outfile_commit(&of, err);
    if (s)
        sp_outfile_abort(&of);
    sp_zipw_release(&w);
    return s;
}

sp_status sp_torch_rewrite(sp_ckpt *ck, const char *out_path, sp_rewrite_fn fn, void *ctx,
                           sp_error *err)
{
    torch_impl *ti = ck->impl;
    return ti->legacy ? rewrite_legacy(ck, out_path, fn, ctx, err)
                      : rewrite_zip(ck, out_path, fn, ctx, err);
}

/* ---- sp_torch_save ---- */

static sp_pk *tuple_of(sp_pickle *pk, const int64_t *v, int n)
{
    sp_pk *t = sp_pk_new(pk, SP_PK_TUPLE);
    for (int i = 0; t && i < n; i++)
        if (!sp_pk_push(t, sp_pk_int(pk, v[i])))
            return NULL;
    return t;
}

/* The tree torch.save(OrderedDict) writes:
 *   OrderedDict([(name, _rebuild_tensor_v2(pid, 0, size, stride, False,
 *                                          OrderedDict())), ...]) */
static sp_status build_tree(sp_pickle *pk, const sp_tensor_data *tensors, size_t n,
                            sp_error *err)
{
    sp_pk *root = sp_pk_new(pk, SP_PK_DICT);
    sp_pk *rebuild = sp_pk_global(pk, "torch._utils", "_rebuild_tensor_v2");
    sp_pk *tag = sp_pk_str(pk, "storage"), *cpu = sp_pk_str(pk, "cpu");
    if (!root || !rebuild || !tag || !cpu)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    root->ordered = true;
    pk->root = root;
    sp_pk *cls[SP_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < n; i++) {
        const sp_tensor_data *t = &tensors[i];
        if (sp_dtype_size(t->dtype) == 0)
            return sp_error_set(err, SP_ERR_INVALID_ARG, "tensor '%s': invalid dtype", t->name);
        if (t->ndim < 0 || t->ndim > SP_MAX_DIMS)
            return sp_error_set(err, SP_ERR_INVALID_ARG, "tensor '%s': bad rank %d", t->name,
                                t->ndim);
        /* contiguous strides as torch computes them (size-0 and size-1
         * dims count as 1) */
        int64_t stride[SP_MAX_DIMS], numel = 1, acc = 1;
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (t->shape[d] < 0)
                return sp_error_set(err, SP_ERR_INVALID_ARG, "tensor '%s': negative size",
                                    t->name);
            stride[d] = acc;
            acc *= t->shape[d] > 1 ? t->shape[d] : 1;
            numel *= t->shape[d];
        }
        if (!cls[t->dtype])
            cls[t->dtype] = sp_pk_global(pk, "torch", sp_dtype_storage_class(t->dtype));
        char key[32];
        snprintf(key, sizeof key, "%zu", i);
        sp_pk *pid_t = sp_pk_new(pk, SP_PK_TUPLE), *pid = sp_pk_new(pk, SP_PK_PERSID);
        sp_pk *args = sp_pk_new(pk, SP_PK_TUPLE), *call = sp_pk_new(pk, SP_PK_REDUCE);
        sp_pk *hooks = sp_pk_new(pk, SP_PK_DICT), *rg = sp_pk_new(pk, SP_PK_BOOL);
        if (!pid_t || !pid || !args || !call || !hooks || !rg || !cls[t->dtype])
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        hooks->ordered = true;
        bool ok = sp_pk_push(pid_t, tag) && sp_pk_push(pid_t, cls[t->dtype]) &&
                  sp_pk_push(pid_t, sp_pk_str(pk, key)) && sp_pk_push(pid_t, cpu) &&
                  sp_pk_push(pid_t, sp_pk_int(pk, numel));
        pid->args = pid_t;
        ok = ok && sp_pk_push(args, pid) && sp_pk_push(args, sp_pk_int(pk, 0)) &&
             sp_pk_push(args, tuple_of(pk, t->shape, t->ndim)) &&
             sp_pk_push(args, tuple_of(pk, stride, t->ndim)) && sp_pk_push(args, rg) &&
             sp_pk_push(args, hooks);
        call->callable = rebuild;
        call->args = args;
        ok = ok && sp_pk_push(root, sp_pk_str(pk, t->name)) && sp_pk_push(root, call);
        if (!ok)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    return SP_OK;
}

sp_status sp_torch_save(const char *path, const sp_tensor_data *tensors, size_t n,
                        sp_error *err)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(tensors[i].name, tensors[j].name))
                return sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': tensor name '%s' appears twice",
                                    path, tensors[i].name);
    sp_pickle pk;
    memset(&pk, 0, sizeof pk);
    unsigned char *pkl = NULL;
    size_t pkl_len = 0;
    sp_status s = build_tree(&pk, tensors, n, err);
    if (!s)
        s = sp_pickle_write(pk.root, &pkl, &pkl_len, err);
    sp_pickle_release(&pk);
    if (s) {
        free(pkl);
        return s;
    }
    sp_outfile of;
    sp_zipw w;
    sp_zipw_init(&w, &of);
    if ((s = sp_outfile_open(&of, path, err))) {
        free(pkl);
        return s;
    }
    s = sp_zipw_add_stored(&w, "archive/data.pkl", pkl, pkl_len, err);
    free(pkl);
    for (size_t i = 0; i < n && !s; i++) {
        const sp_tensor_data *t = &tensors[i];
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++)
            numel *= (uint64_t)t->shape[d];
        char name[48];
        snprintf(name, sizeof name, "archive/data/%zu", i);
        s = sp_zipw_add_stored(&w, name, numel ? t->data : "", numel * sp_dtype_size(t->dtype),
                               err);
    }
    if (!s)
        s = sp_zipw_add_stored(&w, "archive/version", "3\n", 2, err);
    if (!s)
        s = sp_zipw_finish(&w, err);
    if (!s)
        s = sp_outfile_commit(&of, err);
    if (s) {
        sp_outfile_abort(&of);
        sp_error_prefix(err, "cannot save '%s'", path);
    }
    sp_zipw_release(&w);
    return s;
}
