/*
 * sp_ckpt: format sniffing, the shared tensor/storage tables and the
 * accessors. The backends (torch.c, safetensors.c, ...) fill the tables.
 */
#include "formats/ckpt_internal.h"
#include "formats/checked.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *sp_format_name(sp_format f)
{
    switch (f) {
    case SP_FORMAT_TORCH_ZIP: return "torch-zip";
    case SP_FORMAT_TORCH_LEGACY: return "torch-legacy";
    case SP_FORMAT_TORCHSCRIPT: return "torchscript";
    case SP_FORMAT_SAFETENSORS: return "safetensors";
    case SP_FORMAT_HF_FOLDER: return "hf-folder";
    case SP_FORMAT_SPZ: return "spz";
    case SP_FORMAT_COMPRESSED_TENSORS: return "compressed-tensors";
    case SP_FORMAT_UNKNOWN: break;
    }
    return "unknown";
}

/* Pick the backend from the first bytes (n of them, at most 9). */
static sp_status open_sniffed(sp_ckpt *ck, const unsigned char *head, size_t n, sp_error *err)
{
    if (n == 0)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': empty file", ck->path);
    /* safetensors first: a small u64 header length (whose low byte may
     * be 0x80, like a pickle's) followed by the header's '{' */
    if (n == 9 && head[7] == 0 && head[6] == 0 && head[5] == 0 && head[8] == '{')
        return sp_safetensors_open(ck, err);
    /* zip (torch >= 1.6, TorchScript) or pickle protocol 2 (legacy) */
    if ((n >= 4 && !memcmp(head, "PK\x03\x04", 4)) || (n >= 4 && !memcmp(head, "PK\x05\x06", 4)) ||
        head[0] == 0x80)
        return sp_torch_open(ck, err);
    if (n >= 8 && !memcmp(head, "SPZ", 3))
        return sp_spz_open(ck, err);
    if (n >= 8 && head[7] == 0 && head[6] == 0 && head[5] == 0)
        return sp_safetensors_open(ck, err); /* u64 header length, small */
    return sp_error_set(err, SP_ERR_FORMAT,
                        "'%s': not a checkpoint (no zip, pickle or safetensors header)", ck->path);
}

static sp_ckpt *ckpt_new(const char *path, sp_error *err)
{
    sp_ckpt *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->path = strdup(path))) {
        free(ck);
        sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < SP_CKPT_LOCKS; i++)
        pthread_mutex_init(&ck->locks[i], NULL);
    return ck;
}

/* The per-storage table of aligned copies, made once when the checkpoint
 * is open: sp_ckpt_storage_data then only writes its own slot (under its
 * storage's lock), so threads may load storages at once. */
static sp_status aligned_table(sp_ckpt *ck, sp_error *err)
{
    ck->aligned = calloc(ck->nstorages ? ck->nstorages : 1, sizeof *ck->aligned);
    if (!ck->aligned)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    ck->aligned_n = ck->nstorages;
    return SP_OK;
}

sp_status sp_ckpt_open(sp_ckpt **out, const char *path, sp_error *err)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return sp_error_set(err, errno == ENOENT ? SP_ERR_NOT_FOUND : SP_ERR_IO,
                            "cannot open '%s': %s", path, strerror(errno));
    sp_ckpt *ck = ckpt_new(path, err);
    if (!ck)
        return SP_ERR_NOMEM;
    sp_status s;
    if (S_ISDIR(st.st_mode)) {
        s = sp_ct_folder_detect(path) ? sp_ct_folder_open(ck, err) : sp_hf_folder_open(ck, err);
    } else {
        unsigned char head[9] = {0}; /* safetensors: u64 length + '{' */
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            s = sp_error_set(err, SP_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
            goto out;
        }
        ssize_t n = read(fd, head, sizeof head);
        close(fd);
        if (n < 0)
            s = sp_error_set(err, SP_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
        else
            s = open_sniffed(ck, head, (size_t)n, err);
    }
out:
    if (!s)
        s = aligned_table(ck, err);
    if (s) {
        sp_ckpt_close(ck);
        return s;
    }
    *out = ck;
    return SP_OK;
}

sp_status sp_ckpt_open_mem(sp_ckpt **out, const char *name, const void *data, size_t size,
                           sp_error *err)
{
    *out = NULL;
    sp_ckpt *ck = ckpt_new(name, err);
    if (!ck)
        return SP_ERR_NOMEM;
    ck->in_mem = true;
    ck->mem = data;
    ck->mem_size = size;
    sp_status s = open_sniffed(ck, data, size < 9 ? size : 9, err);
    if (!s)
        s = aligned_table(ck, err);
    if (s) {
        sp_ckpt_close(ck);
        return s;
    }
    *out = ck;
    return SP_OK;
}

void sp_ckpt_close(sp_ckpt *ck)
{
    if (!ck)
        return;
    if (ck->be && ck->be->close)
        ck->be->close(ck);
    for (size_t i = 0; i < ck->ntensors; i++)
        free(ck->tensors[i].name);
    for (size_t i = 0; i < ck->nstorages; i++)
        free(ck->storages[i].key);
    for (size_t i = 0; i < ck->aligned_n; i++)
        free(ck->aligned[i]);
    free(ck->aligned);
    free(ck->tensors);
    free(ck->storages);
    free(ck->path);
    for (int i = 0; i < SP_CKPT_LOCKS; i++)
        pthread_mutex_destroy(&ck->locks[i]);
    free(ck);
}

sp_format sp_ckpt_format(const sp_ckpt *ck) { return ck->format; }
const char *sp_ckpt_path(const sp_ckpt *ck) { return ck->path; }
size_t sp_ckpt_num_tensors(const sp_ckpt *ck) { return ck->ntensors; }
size_t sp_ckpt_num_storages(const sp_ckpt *ck) { return ck->nstorages; }

const sp_tensor *sp_ckpt_tensor(const sp_ckpt *ck, size_t i)
{
    return i < ck->ntensors ? &ck->tensors[i] : NULL;
}

const sp_storage *sp_ckpt_storage(const sp_ckpt *ck, size_t i)
{
    return i < ck->nstorages ? &ck->storages[i] : NULL;
}

long sp_ckpt_find(const sp_ckpt *ck, const char *name)
{
    for (size_t i = 0; i < ck->ntensors; i++)
        if (!strcmp(ck->tensors[i].name, name))
            return (long)i;
    return -1;
}

static sp_status storage_data_locked(sp_ckpt *ck, size_t i, const void **data, sp_error *err);

sp_status sp_ckpt_storage_data(sp_ckpt *ck, size_t i, const void **data, sp_error *err)
{
    if (i >= ck->nstorages)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': no storage %zu", ck->path, i);
    pthread_mutex_lock(&ck->locks[i % SP_CKPT_LOCKS]);
    sp_status s = storage_data_locked(ck, i, data, err);
    pthread_mutex_unlock(&ck->locks[i % SP_CKPT_LOCKS]);
    return s;
}

static sp_status storage_data_locked(sp_ckpt *ck, size_t i, const void **data, sp_error *err)
{
    if (i < ck->aligned_n && ck->aligned[i]) {
        *data = ck->aligned[i];
        return SP_OK;
    }
    sp_status s = ck->be->storage_data(ck, i, data, err);
    uint64_t nb = ck->storages[i].nbytes;
    size_t es = sp_dtype_size(ck->storages[i].dtype);
    if (s || !nb || es <= 1 || (uintptr_t)*data % es == 0)
        return s;
    /* A mapped file can hold a storage at any offset (legacy torch, a
     * safetensors tensor after an odd-sized one): callers get a copy that
     * is aligned for its elements, until release. */
    if (i >= ck->aligned_n)
        return sp_error_set(err, SP_ERR_INTERNAL, "'%s': storage %zu has no slot", ck->path, i);
    if (nb > SIZE_MAX || !(ck->aligned[i] = malloc((size_t)nb)))
        return sp_error_set(err, SP_ERR_NOMEM, "'%s': out of memory for storage '%s'", ck->path,
                            ck->storages[i].key);
    memcpy(ck->aligned[i], *data, (size_t)nb);
    if (ck->be->storage_release)
        ck->be->storage_release(ck, i);
    *data = ck->aligned[i];
    return SP_OK;
}

void sp_ckpt_storage_release(sp_ckpt *ck, size_t i)
{
    if (i >= ck->nstorages)
        return;
    pthread_mutex_lock(&ck->locks[i % SP_CKPT_LOCKS]);
    if (i < ck->aligned_n && ck->aligned[i]) {
        free(ck->aligned[i]);
        ck->aligned[i] = NULL;
    }
    if (ck->be->storage_release)
        ck->be->storage_release(ck, i);
    pthread_mutex_unlock(&ck->locks[i % SP_CKPT_LOCKS]);
}

bool sp_ckpt_storage_file(const sp_ckpt *ck, size_t i, const sp_mapfile **mf, uint64_t *off)
{
    return i < ck->nstorages && ck->be->storage_file && ck->be->storage_file(ck, i, mf, off);
}

sp_status sp_ckpt_tensor_data(sp_ckpt *ck, size_t t, const void **data, sp_error *err)
{
    if (t >= ck->ntensors)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': no tensor %zu", ck->path, t);
    const sp_tensor *tt = &ck->tensors[t];
    const void *base;
    sp_status s = sp_ckpt_storage_data(ck, tt->storage, &base, err);
    if (s)
        return s;
    *data = (const unsigned char *)base + (size_t)tt->offset * sp_dtype_size(tt->dtype);
    return SP_OK;
}

sp_status sp_ckpt_tensors_by_storage(const sp_ckpt *ck, size_t **order, size_t **start,
                                     sp_error *err)
{
    size_t nt = ck->ntensors, ns = ck->nstorages;
    size_t *o = malloc((nt ? nt : 1) * sizeof *o), *st = calloc(ns + 2, sizeof *st);
    *order = *start = NULL;
    if (!o || !st) {
        free(o);
        free(st);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    /* counting sort: st[s + 2] counts storage s, then st[s + 1] is where its
     * run starts while filling, and finally st[s] is where it starts */
    for (size_t i = 0; i < nt; i++)
        st[ck->tensors[i].storage + 2]++;
    for (size_t s = 0; s < ns; s++)
        st[s + 2] += st[s + 1];
    for (size_t i = 0; i < nt; i++)
        o[st[ck->tensors[i].storage + 1]++] = i;
    *order = o;
    *start = st;
    return SP_OK;
}

/* sp_ckpt_rewrite through a backend's parallel rewrite: fn sees each
 * storage whole, one at a time, in file order (one thread). */
typedef struct fn_adapter {
    sp_ckpt *ck;
    sp_rewrite_fn fn;
    void *ctx;
} fn_adapter;

static bool adapter_touches(void *ctx, size_t storage)
{
    (void)storage;
    return ((fn_adapter *)ctx)->fn != NULL;
}

static sp_status adapter_emit(void *ctx, size_t storage, const void *orig, uint64_t off,
                              uint64_t len, void *out, sp_error *err)
{
    fn_adapter *a = ctx;
    bool changed = false;
    (void)off;
    sp_status s = a->fn(a->ctx, a->ck, storage, orig, out, &changed, err);
    if (!s && !changed)
        memcpy(out, orig, (size_t)len);
    return s;
}

sp_status sp_ckpt_rewrite(sp_ckpt *ck, const char *out_path, sp_rewrite_fn fn, void *ctx,
                          sp_error *err)
{
    if (ck->be->rewrite_par) {
        fn_adapter a = {ck, fn, ctx};
        sp_rewrite_ops ops = {.ctx = &a, .touches = adapter_touches, .emit = adapter_emit, .threads = 1};
        return ck->be->rewrite_par(ck, out_path, &ops, err);
    }
    if (!ck->be->rewrite)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': %s files cannot be rewritten",
                            ck->path, sp_format_name(ck->format));
    return ck->be->rewrite(ck, out_path, fn, ctx, err);
}

/* ---- parallel rewrite: the fallback for formats without their own ----
 * One storage at a time through sp_ckpt_rewrite: a touched storage is
 * prepared, emitted in one piece and finished. */
typedef struct seq_rw {
    const sp_rewrite_ops *ops;
    uint64_t done, total;
} seq_rw;

static sp_status seq_cb(void *ctx, sp_ckpt *ck, size_t storage, const void *orig, void *out,
                        bool *changed, sp_error *err)
{
    seq_rw *r = ctx;
    const sp_rewrite_ops *o = r->ops;
    uint64_t nb = ck->storages[storage].nbytes;
    sp_status s = SP_OK;
    if (o->touches(o->ctx, storage)) {
        if (o->prepare)
            s = o->prepare(o->ctx, storage, orig, err);
        if (!s)
            s = o->emit(o->ctx, storage, orig, 0, nb, out, err);
        if (!s && o->finish)
            s = o->finish(o->ctx, storage, err);
        *changed = !s && memcmp(out, orig, (size_t)nb) != 0;
    }
    r->done += nb;
    if (!s && o->progress)
        o->progress(o->progress_ctx, r->done, r->total);
    return s;
}

sp_status sp_ckpt_rewrite_par(sp_ckpt *ck, const char *out_path, const sp_rewrite_ops *ops,
                              sp_error *err)
{
    if (ck->be->rewrite_par)
        return ck->be->rewrite_par(ck, out_path, ops, err);
    if (!ck->be->rewrite)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': %s files cannot be rewritten",
                            ck->path, sp_format_name(ck->format));
    seq_rw r = {ops, 0, 0};
    for (size_t i = 0; i < ck->nstorages; i++)
        r.total += ck->storages[i].nbytes;
    return sp_ckpt_rewrite(ck, out_path, seq_cb, &r, err);
}

sp_status sp_ckpt_add_tensor(sp_ckpt *ck, const sp_tensor *t, size_t *idx, sp_error *err)
{
    if (ck->ntensors == ck->tensors_cap) {
        size_t cap = ck->tensors_cap ? ck->tensors_cap * 2 : 64;
        sp_tensor *n = realloc(ck->tensors, cap * sizeof *n);
        if (!n)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        ck->tensors = n;
        ck->tensors_cap = cap;
    }
    sp_tensor *dst = &ck->tensors[ck->ntensors];
    *dst = *t;
    dst->name = strdup(t->name ? t->name : "");
    if (!dst->name)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    if (idx)
        *idx = ck->ntensors;
    ck->ntensors++;
    return SP_OK;
}

sp_status sp_ckpt_add_storage(sp_ckpt *ck, const char *key, sp_dtype dtype, uint64_t nbytes,
                              size_t *idx, sp_error *err)
{
    if (ck->nstorages == ck->storages_cap) {
        size_t cap = ck->storages_cap ? ck->storages_cap * 2 : 64;
        sp_storage *n = realloc(ck->storages, cap * sizeof *n);
        if (!n)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        ck->storages = n;
        ck->storages_cap = cap;
    }
    sp_storage *dst = &ck->storages[ck->nstorages];
    dst->key = strdup(key ? key : "");
    dst->dtype = dtype;
    dst->nbytes = nbytes;
    if (!dst->key)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    if (idx)
        *idx = ck->nstorages;
    ck->nstorages++;
    return SP_OK;
}

sp_status sp_ckpt_validate_tensor(const sp_ckpt *ck, const sp_tensor *t, sp_error *err)
{
    const char *nm = t->name ? t->name : "?";
    if (t->storage >= ck->nstorages)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s' refers to a missing storage",
                            ck->path, nm);
    size_t es = sp_dtype_size(t->dtype);
    if (es == 0)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s' has an unknown dtype", ck->path, nm);
    if (t->ndim < 0 || t->ndim > SP_MAX_DIMS || t->offset < 0)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s' has a bad shape or offset",
                            ck->path, nm);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || t->stride[d] < 0)
            return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s' has a negative size or stride",
                                ck->path, nm);
    int64_t numel;
    uint64_t dense;
    if (!sp_shape_numel(t->ndim, t->shape, &numel) || !sp_numel_bytes(numel, es, &dense))
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s' has an absurd shape", ck->path, nm);
    if (numel != t->numel)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': numel does not match its shape",
                            ck->path, nm);
    uint64_t nbytes = ck->storages[t->storage].nbytes, cap = nbytes / es;
    if (numel == 0) {
        /* empty: no element is ever read, but its data pointer must exist */
        if ((uint64_t)t->offset > cap)
            return sp_error_set(err, SP_ERR_FORMAT,
                                "'%s': tensor '%s' starts past the end of its storage", ck->path, nm);
        return SP_OK;
    }
    uint64_t last;
    if (!sp_view_last(t, &last))
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s' has absurd strides", ck->path, nm);
    if (last >= cap)
        return sp_error_set(err, SP_ERR_FORMAT,
                            "'%s': tensor '%s' reaches past the end of its storage (%llu of %llu elements)",
                            ck->path, nm, (unsigned long long)last + 1, (unsigned long long)cap);
    if (!sp_view_bound_ok(dense, nbytes))
        return sp_error_set(err, SP_ERR_FORMAT,
                            "'%s': tensor '%s' is a view of %llu bytes over a storage of %llu bytes "
                            "(more than %dx + %llu MiB: refused as hostile)",
                            ck->path, nm, (unsigned long long)dense, (unsigned long long)nbytes,
                            SP_VIEW_MAX_EXPANSION, (unsigned long long)(SP_VIEW_SLACK >> 20));
    return SP_OK;
}
