/*
 * safetensors: one file of named dense tensors (Hugging Face).
 *
 * Layout (all integers little-endian):
 *
 *   offset 0      u64  N: length of the header in bytes
 *   offset 8      N bytes of UTF-8 JSON, an object:
 *                   { "__metadata__": { "key": "string value", ... },   optional
 *                     "<tensor name>": { "dtype": "F32",
 *                                        "shape": [d0, d1, ...],
 *                                        "data_offsets": [begin, end] }, ... }
 *                 the reference writer pads the JSON with spaces so that
 *                 N is a multiple of 8
 *   offset 8 + N  the data region; tensor bytes lie at [begin, end) relative
 *                 to its start, dense row-major, little-endian elements
 *
 * dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL C64 (others, e.g. F8_E4M3
 * or U32, are refused as unsupported). No magic and no version: a file is
 * recognised by a small N whose header starts with '{'.
 *
 * Reading checks, before any tensor byte is touched: N against the file size
 * and SP_ST_MAX_HEADER (16 MiB, lower than the reference's 100 MB: see
 * safetensors_internal.h); before cJSON parses it, at most 3 levels of
 * nesting and SP_JSON_MAX_VALUES values (so parsing costs a bounded amount
 * of memory and time); well-formed JSON with only whitespace after it; every
 * dtype known; shape entries non-negative integers whose product does not
 * overflow; end - begin == numel * element size; [begin, end) inside the data
 * region; no two tensors overlapping; no duplicate names. Each tensor becomes
 * one storage (key = tensor name), in header order, mapped from the file.
 *
 * Rewriting (sp_st_rewrite_par) copies the 8 + N header bytes unchanged and
 * every tensor's bytes (or the transform's replacement) at its original
 * offset, so a file whose tensors are untouched comes out byte-identical.
 */
#include "formats/safetensors_internal.h"
#include "formats/checked.h"
#include "formats/outplan.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* ---- shared implementation (single file and hf folders) ---- */

sp_status sp_st_add_shard(sp_st_impl *im, const char *path, const char *name, size_t *idx,
                          sp_error *err)
{
    sp_st_shard *n = realloc(im->shards, (im->nshards + 1) * sizeof *n);
    if (!n)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    im->shards = n;
    sp_st_shard *sh = &im->shards[im->nshards];
    memset(sh, 0, sizeof *sh);
    sh->mf.fd = -1;
    sh->path = strdup(path);
    sh->name = name ? strdup(name) : NULL;
    if (!sh->path || (name && !sh->name)) {
        free(sh->path);
        free(sh->name);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    if (idx)
        *idx = im->nshards;
    im->nshards++;
    return SP_OK;
}

static sp_status add_slot(sp_st_impl *im, size_t shard, uint64_t begin, sp_error *err)
{
    if (im->nslots == im->slots_cap) {
        size_t cap = im->slots_cap ? im->slots_cap * 2 : 64;
        sp_st_slot *n = realloc(im->slots, cap * sizeof *n);
        if (!n)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        im->slots = n;
        im->slots_cap = cap;
    }
    im->slots[im->nslots].shard = shard;
    im->slots[im->nslots].begin = begin;
    im->nslots++;
    return SP_OK;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static bool json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return false;
    double v = j->valuedouble;
    if (!(v >= 0.0) || v > 9007199254740992.0 || v != (double)(uint64_t)v)
        return false;
    *out = (uint64_t)v;
    return true;
}

/* Parse one tensor entry of shard sh and append it to ck. */
static sp_status load_entry(sp_ckpt *ck, sp_st_impl *im, size_t shard, const cJSON *e,
                            uint64_t data_len, sp_error *err)
{
    const char *path = im->shards[shard].path;
    const char *nm = e->string;
    if (!cJSON_IsObject(e))
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': header entry is not an object",
                            path, nm);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd))
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': missing or non-string 'dtype'",
                            path, nm);
    sp_dtype dt = sp_dtype_from_safetensors(jd->valuestring);
    if (dt == SP_DTYPE_INVALID)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': tensor '%s': unsupported dtype '%s'",
                            path, nm, jd->valuestring);
    if (!cJSON_IsArray(js))
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': missing or non-array 'shape'",
                            path, nm);
    int nd = cJSON_GetArraySize(js);
    if (nd > SP_MAX_DIMS)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': tensor '%s': %d dimensions (at most %d)",
                            path, nm, nd, SP_MAX_DIMS);
    sp_tensor t;
    memset(&t, 0, sizeof t);
    t.name = (char *)nm;
    t.dtype = dt;
    t.ndim = nd;
    int d = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, js) {
        uint64_t v;
        if (!json_uint(x, &v))
            return sp_error_set(err, SP_ERR_FORMAT,
                                "'%s': tensor '%s': shape entry %d is not a non-negative integer",
                                path, nm, d);
        t.shape[d++] = (int64_t)v;
    }
    uint64_t nbytes;
    if (!sp_shape_numel(nd, t.shape, &t.numel) || !sp_shape_strides(nd, t.shape, t.stride) ||
        !sp_numel_bytes(t.numel, sp_dtype_size(dt), &nbytes))
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': shape overflows", path, nm);
    uint64_t numel = (uint64_t)t.numel;
    uint64_t b, en;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || !json_uint(jo->child, &b) ||
        !json_uint(jo->child->next, &en))
        return sp_error_set(err, SP_ERR_FORMAT,
                            "'%s': tensor '%s': 'data_offsets' is not a pair of integers", path, nm);
    if (b > en || en > data_len)
        return sp_error_set(err, SP_ERR_FORMAT,
                            "'%s': tensor '%s': data offsets [%llu, %llu] lie outside the data region "
                            "(%llu bytes)",
                            path, nm, (unsigned long long)b, (unsigned long long)en,
                            (unsigned long long)data_len);
    if (en - b != nbytes)
        return sp_error_set(err, SP_ERR_FORMAT,
                            "'%s': tensor '%s': %llu data bytes for %llu elements of %s", path, nm,
                            (unsigned long long)(en - b), (unsigned long long)numel,
                            jd->valuestring);
    size_t si;
    sp_status s = sp_ckpt_add_storage(ck, nm, dt, nbytes, &si, err);
    if (s)
        return s;
    t.storage = si;
    if ((s = add_slot(im, shard, b, err)))
        return s;
    if ((s = sp_ckpt_add_tensor(ck, &t, NULL, err)))
        return s;
    return sp_ckpt_validate_tensor(ck, &ck->tensors[ck->ntensors - 1], err);
}

typedef struct slot_key {
    uint64_t begin, nbytes;
    size_t idx;
} slot_key;

static int cmp_slot(const void *a, const void *b)
{
    const slot_key *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The storage indices of one shard sorted by offset; caller frees *out. */
static sp_status sorted_storages(const sp_ckpt *ck, const sp_st_impl *im, size_t shard,
                                 size_t **out, size_t *n, sp_error *err)
{
    size_t cnt = 0;
    for (size_t i = 0; i < im->nslots; i++)
        cnt += im->slots[i].shard == shard;
    size_t *ix = malloc((cnt ? cnt : 1) * sizeof *ix);
    slot_key *keys = malloc((cnt ? cnt : 1) * sizeof *keys);
    if (!ix || !keys) {
        free(ix);
        free(keys);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < im->nslots; i++)
        if (im->slots[i].shard == shard)
            keys[k++] = (slot_key){im->slots[i].begin, ck->storages[i].nbytes, i};
    qsort(keys, cnt, sizeof *keys, cmp_slot);
    for (k = 0; k < cnt; k++)
        ix[k] = keys[k].idx;
    free(keys);
    *out = ix;
    *n = cnt;
    return SP_OK;
}

sp_status sp_st_shard_load(sp_ckpt *ck, sp_st_impl *im, size_t shard, sp_error *err)
{
    sp_st_shard *sh = &im->shards[shard];
    cJSON *root = NULL;
    size_t *ix = NULL;
    sp_status s = sh->mapped ? SP_OK : sp_mapfile_open(&sh->mf, sh->path, err);
    if (s)
        return s;
    sh->mapped = true;
    const unsigned char *p = sh->mf.data;
    uint64_t size = sh->mf.size;
    if (size < 8) {
        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': truncated safetensors file (%llu bytes)", sh->path,
                         (unsigned long long)size);
        goto out;
    }
    uint64_t n = le64(p);
    if (n > SP_ST_MAX_HEADER) {
        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': safetensors header length %llu exceeds the limit of %llu bytes",
                         sh->path, (unsigned long long)n, (unsigned long long)SP_ST_MAX_HEADER);
        goto out;
    }
    if (n > size - 8) {
        s = sp_error_set(err, SP_ERR_FORMAT,
                         "'%s': safetensors header length %llu runs past the end of the file (%llu bytes)",
                         sh->path, (unsigned long long)n, (unsigned long long)size);
        goto out;
    }
    if (n < 2 || p[8] != '{') {
        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': safetensors header is not a json object", sh->path);
        goto out;
    }
    sh->data_start = 8 + n;
    /* 3 levels: the object, a tensor entry, its shape/data_offsets */
    if (!sp_json_cost_ok((const char *)p + 8, (size_t)n, SP_JSON_MAX_VALUES, 3)) {
        s = sp_error_set(err, SP_ERR_FORMAT,
                         "'%s': safetensors header nests deeper than 3 levels or holds more than %llu values",
                         sh->path, (unsigned long long)SP_JSON_MAX_VALUES);
        goto out;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts((const char *)p + 8, (size_t)n, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': safetensors header is not valid json (near byte %llu)",
                         sh->path,
                         (unsigned long long)(8 + (end && end >= (const char *)p + 8
                                                       ? (uint64_t)(end - ((const char *)p + 8))
                                                       : 0)));
        goto out;
    }
    for (const char *q = end; q < (const char *)p + 8 + n; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': trailing bytes after the safetensors header json",
                             sh->path);
            goto out;
        }
    }
    uint64_t data_len = size - sh->data_start;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!e->string) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': safetensors header entry without a name", sh->path);
            goto out;
        }
        if (!strcmp(e->string, "__metadata__")) {
            const cJSON *m;
            if (!cJSON_IsObject(e)) {
                s = sp_error_set(err, SP_ERR_FORMAT, "'%s': '__metadata__' is not an object", sh->path);
                goto out;
            }
            cJSON_ArrayForEach(m, e) {
                if (!cJSON_IsString(m)) {
                    s = sp_error_set(err, SP_ERR_FORMAT, "'%s': '__metadata__' value '%s' is not a string",
                                     sh->path, m->string ? m->string : "?");
                    goto out;
                }
            }
            continue;
        }
        if ((s = load_entry(ck, im, shard, e, data_len, err)))
            goto out;
    }
    /* no two tensors may overlap */
    size_t cnt;
    if ((s = sorted_storages(ck, im, shard, &ix, &cnt, err)))
        goto out;
    uint64_t prev_end = 0;
    const char *prev = NULL;
    for (size_t k = 0; k < cnt; k++) {
        size_t i = ix[k];
        uint64_t b = im->slots[i].begin, nb = ck->storages[i].nbytes;
        if (nb == 0)
            continue;
        if (prev && b < prev_end) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': tensors '%s' and '%s' overlap in the data region",
                             sh->path, prev, ck->storages[i].key);
            goto out;
        }
        prev = ck->storages[i].key;
        prev_end = b + nb;
    }
out:
    free(ix);
    cJSON_Delete(root);
    return s;
}

static int cmp_name(const void *a, const void *b)
{
    const sp_tensor *x = *(const sp_tensor *const *)a, *y = *(const sp_tensor *const *)b;
    return strcmp(x->name, y->name);
}

sp_status sp_st_check_unique(const sp_ckpt *ck, sp_error *err)
{
    if (ck->ntensors < 2)
        return SP_OK;
    const sp_tensor **v = malloc(ck->ntensors * sizeof *v);
    if (!v)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ck->ntensors; i++)
        v[i] = &ck->tensors[i];
    qsort(v, ck->ntensors, sizeof *v, cmp_name);
    sp_status s = SP_OK;
    for (size_t i = 1; i < ck->ntensors; i++)
        if (!strcmp(v[i - 1]->name, v[i]->name)) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s' appears twice", ck->path,
                             v[i]->name);
            break;
        }
    free(v);
    return s;
}

sp_status sp_st_storage_data(sp_ckpt *ck, size_t i, const void **data, sp_error *err)
{
    sp_st_impl *im = ck->impl;
    if (i >= im->nslots)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': no storage %zu", ck->path, i);
    const sp_st_shard *sh = &im->shards[im->slots[i].shard];
    /* An empty storage of an empty file region still gets a valid pointer. */
    static const unsigned char none[1];
    *data = sh->mf.data ? sh->mf.data + sh->data_start + im->slots[i].begin : none;
    return SP_OK;
}

bool sp_st_storage_file(const sp_ckpt *ck, size_t i, const sp_mapfile **mf, uint64_t *off)
{
    const sp_st_impl *im = ck->impl;
    if (i >= im->nslots)
        return false;
    const sp_st_shard *sh = &im->shards[im->slots[i].shard];
    *mf = &sh->mf;
    *off = sh->data_start + im->slots[i].begin;
    return true;
}

void sp_st_storage_release(sp_ckpt *ck, size_t i)
{
    sp_st_impl *im = ck->impl;
    if (i >= im->nslots)
        return;
    const sp_st_shard *sh = &im->shards[im->slots[i].shard];
    sp_mapfile_drop(&sh->mf, sh->data_start + im->slots[i].begin, ck->storages[i].nbytes);
}

void sp_st_close(sp_ckpt *ck)
{
    sp_st_impl *im = ck->impl;
    if (!im)
        return;
    for (size_t i = 0; i < im->nshards; i++) {
        if (im->shards[i].mf.fd >= 0 || im->shards[i].mf.data)
            sp_mapfile_close(&im->shards[i].mf);
        free(im->shards[i].path);
        free(im->shards[i].name);
    }
    free(im->shards);
    free(im->slots);
    free(im);
    ck->impl = NULL;
}

/* ---- parallel rewrite (sp_ckpt_rewrite_par) ----
 *
 * The output of a shard has the input's layout: its header, gaps and
 * untouched storages are copied pieces, every touched storage a generated
 * piece (formats/outplan.h) whose group is the storage: prepare loads it
 * and runs ops->prepare, each chunk is ops->emit (the chunk's input pages
 * dropped after), finish runs ops->finish and releases the storage. */

typedef struct rwpar {
    sp_ckpt *ck;
    sp_st_impl *im;
    const sp_rewrite_ops *ops;
    const void **orig; /* per storage, from prepare */
} rwpar;

static sp_status rw_prepare(void *ctx, size_t storage, sp_error *err)
{
    rwpar *r = ctx;
    sp_status s = sp_ckpt_storage_data(r->ck, storage, &r->orig[storage], err);
    if (!s && r->ops->prepare)
        s = r->ops->prepare(r->ops->ctx, storage, r->orig[storage], err);
    return s;
}

static sp_status rw_emit(void *ctx, size_t storage, uint64_t tag, uint64_t off, uint64_t len,
                         void *out, sp_error *err)
{
    rwpar *r = ctx;
    const sp_st_shard *sh = &r->im->shards[r->im->slots[storage].shard];
    const unsigned char *at = sh->mf.data ? sh->mf.data + sh->data_start + r->im->slots[storage].begin : NULL;
    (void)tag;
    sp_status s = r->ops->emit(r->ops->ctx, storage, r->orig[storage], off, len, out, err);
    /* the chunk's input pages are done with (those it shares with a
     * neighbour stay until the storage is released) */
    if (!s && at && (const unsigned char *)r->orig[storage] == at)
        sp_mapfile_drop(&sh->mf, (uint64_t)(at - sh->mf.data) + off, len);
    return s;
}

static sp_status rw_finish(void *ctx, size_t storage, sp_error *err)
{
    rwpar *r = ctx;
    sp_status s = r->ops->finish ? r->ops->finish(r->ops->ctx, storage, err) : SP_OK;
    sp_ckpt_storage_release(r->ck, storage);
    return s;
}

/* Shard im->shards[shard] into file f of the plan: copied and generated
 * pieces in file order. */
static sp_status plan_shard(rwpar *r, sp_outplan *pl, size_t f, size_t shard, sp_error *err)
{
    const sp_st_shard *sh = &r->im->shards[shard];
    size_t *ix = NULL, cnt = 0;
    sp_status s = sorted_storages(r->ck, r->im, shard, &ix, &cnt, err);
    uint64_t pos = 0;
    for (size_t k = 0; k < cnt && !s; k++) {
        size_t i = ix[k];
        uint64_t b = sh->data_start + r->im->slots[i].begin, nb = r->ck->storages[i].nbytes;
        if (nb && r->ops->touches(r->ops->ctx, i)) {
            uint64_t unit = r->ops->chunk_unit ? r->ops->chunk_unit(r->ops->ctx, i) : 0;
            s = sp_outplan_copy(pl, f, pos, &sh->mf, pos, b - pos, err);
            if (!s)
                s = sp_outplan_gen(pl, f, b, i, 0, nb, unit, err);
            pos = b + nb;
        } else if (b + nb > pos) {
            s = sp_outplan_copy(pl, f, pos, &sh->mf, pos, b + nb - pos, err);
            pos = b + nb;
        }
    }
    if (!s && pos < sh->mf.size)
        s = sp_outplan_copy(pl, f, pos, &sh->mf, pos, sh->mf.size - pos, err);
    free(ix);
    return s;
}

sp_status sp_st_rewrite_par(sp_ckpt *ck, sp_st_impl *im, const size_t *shards,
                            const char *const *out_paths, size_t nout, const sp_rewrite_ops *ops,
                            sp_error *err)
{
    rwpar r = {ck, im, ops, calloc(ck->nstorages ? ck->nstorages : 1, sizeof(void *))};
    sp_outplan *pl = NULL;
    sp_outplan_ops po = {&r, rw_prepare, rw_emit, rw_finish};
    sp_status s = r.orig ? sp_outplan_new(&pl, &po, ck->nstorages, err)
                         : sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t o = 0; o < nout && !s; o++) {
        size_t f;
        if (!(s = sp_outplan_file(pl, out_paths[o], &f, err)))
            s = plan_shard(&r, pl, f, shards[o], err);
    }
    if (!s)
        s = sp_outplan_run(pl, ops->threads, ops->progress, ops->progress_ctx, err);
    sp_outplan_free(pl);
    free(r.orig);
    return s;
}

/* ---- single file backend ---- */

static sp_status st_rewrite_par(sp_ckpt *ck, const char *out_path, const sp_rewrite_ops *ops,
                                sp_error *err)
{
    size_t shard = 0;
    return sp_st_rewrite_par(ck, ck->impl, &shard, &out_path, 1, ops, err);
}

static const sp_ckpt_backend st_backend = {
    .name = "safetensors",
    .storage_data = sp_st_storage_data,
    .storage_release = sp_st_storage_release,
    .storage_file = sp_st_storage_file,
    .rewrite_par = st_rewrite_par,
    .close = sp_st_close,
};

sp_status sp_safetensors_open(sp_ckpt *ck, sp_error *err)
{
    sp_st_impl *im = calloc(1, sizeof *im);
    if (!im)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    ck->format = SP_FORMAT_SAFETENSORS;
    ck->be = &st_backend;
    ck->impl = im;
    sp_status s = sp_st_add_shard(im, ck->path, NULL, NULL, err);
    if (!s && !(s = sp_ckpt_map(ck, &im->shards[0].mf, err))) {
        im->shards[0].mapped = true;
        s = sp_st_shard_load(ck, im, 0, err);
    }
    if (!s)
        s = sp_st_check_unique(ck, err);
    return s; /* on failure sp_ckpt_open calls close, which frees im */
}

/* ---- writer ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(sbuf *b, uint64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    sb_put(b, tmp, (size_t)n);
}

/* A JSON string literal, escaped as serde_json does. */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        char esc[8];
        switch (*q) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        default:
            if (*q < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *q);
                sb_put(b, esc, 6);
            } else {
                sb_put(b, (const char *)q, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

sp_status sp_safetensors_save(const char *path, const sp_tensor_data *tensors, size_t n,
                              const char *metadata_json, sp_error *err)
{
    sbuf hb = {0};
    cJSON *meta = NULL;
    const char **names = NULL;
    uint64_t *sizes = NULL;
    sp_outfile of = {.fd = -1};
    sp_status s = SP_OK;

    if (metadata_json) {
        meta = cJSON_Parse(metadata_json);
        if (!meta || !cJSON_IsObject(meta)) {
            s = sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': metadata is not a json object", path);
            goto out;
        }
        const cJSON *m;
        cJSON_ArrayForEach(m, meta) {
            if (!cJSON_IsString(m)) {
                s = sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': metadata value '%s' is not a string",
                                 path, m->string);
                goto out;
            }
        }
    }
    names = malloc((n ? n : 1) * sizeof *names);
    sizes = malloc((n ? n : 1) * sizeof *sizes);
    if (!names || !sizes) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const sp_tensor_data *t = &tensors[i];
        const char *nm = t->name ? t->name : "";
        if (!*nm || !strcmp(nm, "__metadata__")) {
            s = sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': tensor %zu has an invalid name '%s'", path, i, nm);
            goto out;
        }
        if (!*sp_dtype_safetensors_name(t->dtype)) {
            s = sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': tensor '%s' has an invalid dtype", path, nm);
            goto out;
        }
        if (t->ndim < 0 || t->ndim > SP_MAX_DIMS) {
            s = sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': tensor '%s' has %d dimensions", path, nm, t->ndim);
            goto out;
        }
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || (t->shape[d] && numel > (uint64_t)INT64_MAX / (uint64_t)t->shape[d])) {
                s = sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': tensor '%s' has a bad shape", path, nm);
                goto out;
            }
            numel *= (uint64_t)t->shape[d];
        }
        sizes[i] = numel * sp_dtype_size(t->dtype);
        if (sizes[i] && !t->data) {
            s = sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': tensor '%s' has no data", path, nm);
            goto out;
        }
        names[i] = nm;
    }
    qsort(names, n, sizeof *names, cmp_cstr);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) {
            s = sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': tensor '%s' appears twice", path, names[i]);
            goto out;
        }

    /* header: __metadata__ first (as the reference writer), then tensors in
     * the given order with contiguous offsets */
    sb_put(&hb, "{", 1);
    bool first = true;
    if (meta) {
        sb_str(&hb, "\"__metadata__\":{");
        const cJSON *m;
        bool mf = true;
        cJSON_ArrayForEach(m, meta) {
            if (!mf)
                sb_put(&hb, ",", 1);
            mf = false;
            sb_json_str(&hb, m->string);
            sb_put(&hb, ":", 1);
            sb_json_str(&hb, m->valuestring);
        }
        sb_put(&hb, "}", 1);
        first = false;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const sp_tensor_data *t = &tensors[i];
        if (!first)
            sb_put(&hb, ",", 1);
        first = false;
        sb_json_str(&hb, t->name);
        sb_str(&hb, ":{\"dtype\":\"");
        sb_str(&hb, sp_dtype_safetensors_name(t->dtype));
        sb_str(&hb, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d)
                sb_put(&hb, ",", 1);
            sb_u64(&hb, (uint64_t)t->shape[d]);
        }
        sb_str(&hb, "],\"data_offsets\":[");
        sb_u64(&hb, off);
        sb_put(&hb, ",", 1);
        sb_u64(&hb, off + sizes[i]);
        sb_str(&hb, "]}");
        off += sizes[i];
    }
    sb_put(&hb, "}", 1);
    while (!hb.oom && hb.len % 8)
        sb_put(&hb, " ", 1);
    if (hb.oom) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    unsigned char len8[8];
    put_le64(len8, hb.len);
    if ((s = sp_outfile_open(&of, path, err)))
        goto out;
    if ((s = sp_outfile_write(&of, len8, 8, err)) || (s = sp_outfile_write(&of, hb.p, hb.len, err)))
        goto out;
    for (size_t i = 0; i < n; i++)
        if (sizes[i] && (s = sp_outfile_write(&of, tensors[i].data, (size_t)sizes[i], err)))
            goto out;
    s = sp_outfile_commit(&of, err);
out:
    if (s)
        sp_outfile_abort(&of);
    cJSON_Delete(meta);
    free(hb.p);
    free(names);
    free(sizes);
    return s;
}
