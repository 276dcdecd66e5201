/*
 * compressed-tensors interop (Hugging Face safetensors folders with a
 * sparsity_config), byte-compatible with compressed-tensors 0.9-0.14.
 *
 * Folder: model.safetensors (or model-0000k-of-0000n.safetensors shards plus
 * model.safetensors.index.json) and config.json whose quantization_config is
 *   {"quant_method": "compressed-tensors", "version": "0.9.0",
 *    "sparsity_config": {"format": "<fmt>", "sparsity_structure": "...",
 *      "global_sparsity": x, "targets": [module names], "ignore": [...],
 *      "registry_requires_subclass": false}}
 *
 * sparse-bitmask, for a weight "<m>.weight" of shape [R, C] (higher ranks:
 * R = product of all but the last dimension):
 *   <m>.compressed   [nnz]          kept values, row-major, original dtype
 *   <m>.bitmask      U8 [R, ceil(C/8)]  column j = bit j%8 of byte j/8
 *                    (numpy.packbits(mask, axis=-1, bitorder="little"))
 *   <m>.row_offsets  I64 [R]        exclusive prefix sum of per-row counts
 *   <m>.shape        I64 [ndim]     (BitmaskTensor.dict)
 * Kept = nonzero; +0 and -0 are both dropped.
 * sparse-24-bitmask, for 2:4 weights [R, C], C % 4 == 0:
 *   <m>.compressed   [R, C/2]       two values per aligned group of four
 *   <m>.bitmask      U8 [R, ceil(C/8)]  exactly two bits per group
 *   <m>.shape        I64 [ndim, 1]  (Sparse24BitMaskTensor.dict reshapes
 *                                   it to (-1, 1))
 * Every other tensor is stored unchanged. The reader also accepts the older
 * "<m>.weight.compressed" key style, I32 shapes and [ndim] or [ndim, 1].
 *
 * Export: the weights that were pruned (2-D floating "<m>.weight" with at
 * least CT_PRUNED_MIN zeros; stray zeros of a dense weight do not count)
 * decide the format: sparse-24-bitmask when most of them are 2:4
 * (sp_tensor_view_stats, the predicate inspect uses), else sparse-bitmask.
 * A weight the format cannot hold (a pruned layer that is not 2:4, or whose
 * input size is not a multiple of 4, in a 2:4 model) is stored dense and
 * listed in "ignore"; it never downgrades the whole model. "targets" lists
 * the compressed modules (for "dense", the ones the sparse format would
 * compress), and sparsity_structure says "2:4" for a 2:4 model in every
 * format.
 *
 * safetensors: u64 header length, JSON header (padded with spaces to a
 * multiple of 8), then the tensors back to back in header order.
 */
#include "sparsify/spz.h"

#include "formats/ckpt_internal.h"
#include "formats/checked.h"
#include "formats/export_internal.h"
#include "formats/outplan.h"
#include "formats/scan.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CT_DEFAULT_SHARD ((uint64_t)5 * 1000 * 1000 * 1000)
#define CT_MAX_HEADER SP_JSON_MAX_BYTES
/* A weight with at least this fraction of zeros was pruned; fewer are stray
 * zeros of a dense weight and do not make it a target. */
#define CT_PRUNED_MIN 0.05

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

static cJSON *read_json_file(const char *path)
{
    sp_mapfile mf;
    if (sp_mapfile_open(&mf, path, NULL) != SP_OK)
        return NULL;
    cJSON *j = NULL;
    if (mf.data && mf.size < CT_MAX_HEADER &&
        sp_json_cost_ok((const char *)mf.data, (size_t)mf.size, SP_JSON_MAX_VALUES, 32))
        j = cJSON_ParseWithLength((const char *)mf.data, (size_t)mf.size);
    sp_mapfile_close(&mf);
    return j;
}

static const cJSON *find_sparsity_config(const cJSON *cfg)
{
    static const char *holders[] = {"quantization_config", "compression_config"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(cfg, holders[i]);
        const cJSON *sc = q ? cJSON_GetObjectItemCaseSensitive(q, "sparsity_config") : NULL;
        if (cJSON_IsObject(sc))
            return sc;
    }
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(cfg, "sparsity_config");
    return cJSON_IsObject(sc) ? sc : NULL;
}

bool sp_ct_folder_detect(const char *path)
{
    char *p = path_join(path, "config.json");
    cJSON *j = p ? read_json_file(p) : NULL;
    bool yes = j && find_sparsity_config(j);
    cJSON_Delete(j);
    free(p);
    return yes;
}

/* ------------------------------------------------------------------ */
/* safetensors header reading                                          */

typedef struct st_item {
    char *key;
    sp_dtype dtype;
    int ndim;
    int64_t shape[SP_MAX_DIMS];
    uint64_t numel;
    size_t file;
    uint64_t off, len; /* absolute offset in the file, bytes */
} st_item;

typedef struct ct_part {
    long compressed, bitmask, shape, row_offsets; /* item indices or -1 */
} ct_part;

typedef struct ct_impl {
    sp_mapfile *files;
    size_t nfiles;
    st_item *items;
    size_t nitems;
    /* per storage */
    long *item_of;  /* passthrough item, or -1 */
    ct_part *parts; /* compressed group */
    int *kind;      /* 0 passthrough, 1 bitmask, 2 24-bitmask */
    void **buf;
} ct_impl;

static void ct_close(sp_ckpt *ck)
{
    ct_impl *im = ck->impl;
    if (!im)
        return;
    for (size_t i = 0; i < ck->nstorages && im->buf; i++)
        free(im->buf[i]);
    for (size_t i = 0; i < im->nfiles; i++)
        sp_mapfile_close(&im->files[i]);
    for (size_t i = 0; i < im->nitems; i++)
        free(im->items[i].key);
    free(im->files);
    free(im->items);
    free(im->item_of);
    free(im->parts);
    free(im->kind);
    free(im->buf);
    free(im);
    ck->impl = NULL;
}

static sp_status parse_shard(ct_impl *im, size_t fi, const char *fname, sp_error *err)
{
    const sp_mapfile *mf = &im->files[fi];
    if (mf->size < 8)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': shorter than a safetensors header", fname);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++)
        hl |= (uint64_t)mf->data[i] << (8 * i);
    if (hl > CT_MAX_HEADER || hl > mf->size - 8)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': safetensors header length %llu is past the end",
                            fname, (unsigned long long)hl);
    if (!sp_json_cost_ok((const char *)mf->data + 8, (size_t)hl, SP_JSON_MAX_VALUES, 3))
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': safetensors header nests too deep or holds too many values",
                            fname);
    cJSON *j = cJSON_ParseWithLength((const char *)mf->data + 8, (size_t)hl);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': safetensors header is not a json object", fname);
    }
    uint64_t base = 8 + hl, datalen = mf->size - base;
    sp_status s = SP_OK;
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        if (!strcmp(e->string, "__metadata__"))
            continue;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        st_item it;
        memset(&it, 0, sizeof it);
        it.dtype = cJSON_IsString(dt) ? sp_dtype_from_safetensors(dt->valuestring) : SP_DTYPE_INVALID;
        if (!it.dtype || !cJSON_IsArray(sh) || !cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 ||
            cJSON_GetArraySize(sh) > SP_MAX_DIMS) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s' has a malformed header entry", fname,
                             e->string);
            break;
        }
        it.ndim = cJSON_GetArraySize(sh);
        it.numel = 1;
        bool bad = false;
        for (int d = 0; d < it.ndim; d++) {
            const cJSON *v = cJSON_GetArrayItem(sh, d);
            if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9.0e15) {
                bad = true;
                break;
            }
            it.shape[d] = (int64_t)v->valuedouble;
        }
        int64_t numel = 0;
        uint64_t nbytes = 0;
        if (!bad && (!sp_shape_numel(it.ndim, it.shape, &numel) ||
                     !sp_numel_bytes(numel, sp_dtype_size(it.dtype), &nbytes)))
            bad = true;
        it.numel = (uint64_t)numel;
        const cJSON *a = cJSON_GetArrayItem(of, 0), *b = cJSON_GetArrayItem(of, 1);
        if (bad || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valuedouble < 0 ||
            b->valuedouble < a->valuedouble || b->valuedouble > (double)datalen ||
            (uint64_t)(b->valuedouble - a->valuedouble) != nbytes) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': shape or data_offsets do not fit the file",
                             fname, e->string);
            break;
        }
        it.off = base + (uint64_t)a->valuedouble;
        it.len = (uint64_t)(b->valuedouble - a->valuedouble);
        it.file = fi;
        it.key = strdup(e->string);
        st_item *ni = realloc(im->items, (im->nitems + 1) * sizeof *ni);
        if (!it.key || !ni) {
            free(it.key);
            if (ni)
                im->items = ni;
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        im->items = ni;
        im->items[im->nitems++] = it;
    }
    cJSON_Delete(j);
    return s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_item_pos(const void *a, const void *b)
{
    const st_item *x = a, *y = b;
    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

static long find_item(const ct_impl *im, const char *key)
{
    for (size_t i = 0; i < im->nitems; i++)
        if (!strcmp(im->items[i].key, key))
            return (long)i;
    return -1;
}

static const void *item_data(const ct_impl *im, const st_item *it)
{
    return im->files[it->file].data + it->off;
}

/* Decode a compressed group into out (numel * es bytes). */
static sp_status ct_decode(sp_ckpt *ck, ct_impl *im, size_t si, unsigned char *out, sp_error *err)
{
    const sp_tensor *t = NULL;
    for (size_t i = 0; i < ck->ntensors; i++)
        if (ck->tensors[i].storage == si) {
            t = &ck->tensors[i];
            break;
        }
    const ct_part *p = &im->parts[si];
    const st_item *vi = &im->items[p->compressed], *bi = &im->items[p->bitmask];
    size_t es = sp_dtype_size(t->dtype);
    uint64_t C = t->ndim ? (uint64_t)t->shape[t->ndim - 1] : 1;
    uint64_t R = C ? (uint64_t)t->numel / C : 0, rb = (C + 7) / 8;
    const unsigned char *bits = item_data(im, bi), *vals = item_data(im, vi);
    uint64_t nv = vi->numel;
    memset(out, 0, (size_t)t->numel * es);
    /* count first: the values must match the mask exactly */
    uint64_t cnt = 0;
    for (uint64_t r = 0; r < R; r++)
        for (uint64_t c = 0; c < C; c++)
            cnt += (bits[r * rb + c / 8] >> (c % 8)) & 1;
    if (cnt != nv)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': bitmask has %llu bits set but %llu values",
                            ck->path, t->name, (unsigned long long)cnt, (unsigned long long)nv);
    uint64_t j = 0;
    for (uint64_t r = 0; r < R; r++) {
        if (p->row_offsets >= 0) {
            int64_t want;
            memcpy(&want, (const unsigned char *)item_data(im, &im->items[p->row_offsets]) + r * 8, 8);
            if ((uint64_t)want != j)
                return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': row_offsets[%llu] is %lld, expected %llu",
                                    ck->path, t->name, (unsigned long long)r, (long long)want,
                                    (unsigned long long)j);
        }
        for (uint64_t c = 0; c < C; c++)
            if ((bits[r * rb + c / 8] >> (c % 8)) & 1) {
                memcpy(out + (r * C + c) * es, vals + j * es, es);
                j++;
            }
        if (im->kind[si] == 2)
            for (uint64_t g = 0; g < C; g += 4) {
                int k = 0;
                for (int q = 0; q < 4; q++)
                    k += (bits[r * rb + (g + q) / 8] >> ((g + q) % 8)) & 1;
                if (k != 2)
                    return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': a 2:4 group has %d bits set",
                                        ck->path, t->name, k);
            }
    }
    return SP_OK;
}

static sp_status ct_storage_data(sp_ckpt *ck, size_t i, const void **data, sp_error *err)
{
    ct_impl *im = ck->impl;
    if (im->buf[i]) {
        *data = im->buf[i];
        return SP_OK;
    }
    uint64_t nb = ck->storages[i].nbytes;
    unsigned char *out = malloc(nb ? nb : 1);
    if (!out)
        return sp_error_set(err, SP_ERR_NOMEM, "'%s': out of memory", ck->path);
    sp_status s = SP_OK;
    if (im->kind[i] == 0)
        memcpy(out, item_data(im, &im->items[im->item_of[i]]), nb);
    else
        s = ct_decode(ck, im, i, out, err);
    if (s) {
        free(out);
        return s;
    }
    im->buf[i] = out;
    *data = out;
    return SP_OK;
}

static void ct_storage_release(sp_ckpt *ck, size_t i)
{
    ct_impl *im = ck->impl;
    free(im->buf[i]);
    im->buf[i] = NULL;
}

static const sp_ckpt_backend ct_backend = {
    .name = "compressed-tensors",
    .storage_data = ct_storage_data,
    .storage_release = ct_storage_release,
    .rewrite = NULL,
    .close = ct_close,
};

static sp_status add_plain(sp_ckpt *ck, ct_impl *im, const char *name, const st_item *it, int kind,
                           long item, const ct_part *part, const int64_t *shape, int ndim,
                           sp_dtype dtype, sp_error *err)
{
    size_t si;
    sp_tensor t;
    memset(&t, 0, sizeof t);
    uint64_t nbytes;
    (void)it;
    memcpy(t.shape, shape, (size_t)ndim * sizeof *shape);
    if (!sp_shape_numel(ndim, t.shape, &t.numel) || !sp_shape_strides(ndim, t.shape, t.stride) ||
        !sp_numel_bytes(t.numel, sp_dtype_size(dtype), &nbytes))
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s' has an absurd shape", ck->path, name);
    sp_status s = sp_ckpt_add_storage(ck, name, dtype, nbytes, &si, err);
    if (s)
        return s;
    long *a = realloc(im->item_of, (si + 1) * sizeof *a);
    if (a)
        im->item_of = a;
    ct_part *b = realloc(im->parts, (si + 1) * sizeof *b);
    if (b)
        im->parts = b;
    int *c = realloc(im->kind, (si + 1) * sizeof *c);
    if (c)
        im->kind = c;
    if (!a || !b || !c)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    im->item_of[si] = item;
    im->kind[si] = kind;
    if (part)
        im->parts[si] = *part;
    t.name = (char *)name;
    t.dtype = dtype;
    t.ndim = ndim;
    t.storage = si;
    if (sp_ckpt_find(ck, name) >= 0)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s' appears twice", ck->path, name);
    return sp_ckpt_add_tensor(ck, &t, NULL, err);
}

sp_status sp_ct_folder_open(sp_ckpt *ck, sp_error *err)
{
    ct_impl *im = calloc(1, sizeof *im);
    if (!im)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    ck->impl = im;
    ck->be = &ct_backend;
    ck->format = SP_FORMAT_COMPRESSED_TENSORS;
    sp_status s = SP_OK;
    char **names = NULL;
    size_t nnames = 0;
    bool *used = NULL;
    char *cfgp = path_join(ck->path, "config.json");
    cJSON *cfg = cfgp ? read_json_file(cfgp) : NULL;
    free(cfgp);
    const cJSON *sc = cfg ? find_sparsity_config(cfg) : NULL;
    const cJSON *fmt = sc ? cJSON_GetObjectItemCaseSensitive(sc, "format") : NULL;
    int kind = 1;
    if (!cJSON_IsString(fmt)) {
        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': config.json sparsity_config has no format", ck->path);
        goto out;
    }
    if (!strcmp(fmt->valuestring, "sparse-bitmask"))
        kind = 1;
    else if (!strcmp(fmt->valuestring, "sparse-24-bitmask"))
        kind = 2;
    else if (!strcmp(fmt->valuestring, "dense"))
        kind = 0;
    else {
        s = sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': compressed-tensors format '%s' is not supported "
                         "(sparse-bitmask, sparse-24-bitmask, dense)", ck->path, fmt->valuestring);
        goto out;
    }
    DIR *d = opendir(ck->path);
    if (!d) {
        s = sp_error_set(err, SP_ERR_IO, "cannot open folder '%s'", ck->path);
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!ends_with(de->d_name, ".safetensors") || de->d_name[0] == '.')
            continue;
        char **nn = realloc(names, (nnames + 1) * sizeof *nn);
        if (!nn || !(nn[nnames] = strdup(de->d_name))) {
            if (nn)
                names = nn;
            closedir(d);
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            goto out;
        }
        names = nn;
        nnames++;
    }
    closedir(d);
    if (!nnames) {
        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': no .safetensors files in the folder", ck->path);
        goto out;
    }
    qsort(names, nnames, sizeof *names, cmp_str);
    im->files = calloc(nnames, sizeof *im->files);
    if (!im->files) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nnames; i++) {
        char *fp = path_join(ck->path, names[i]);
        if (!fp) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            goto out;
        }
        im->files[i].fd = -1;
        s = sp_mapfile_open(&im->files[i], fp, err);
        if (!s) {
            im->nfiles = i + 1;
            s = parse_shard(im, i, fp, err);
        }
        free(fp);
        if (s)
            goto out;
    }
    qsort(im->items, im->nitems, sizeof *im->items, cmp_item_pos);
    used = calloc(im->nitems ? im->nitems : 1, sizeof *used);
    if (!used) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* mark the parts of every compressed group */
    for (size_t i = 0; i < im->nitems && kind; i++) {
        const char *k = im->items[i].key;
        if (!ends_with(k, ".compressed"))
            continue;
        size_t pl = strlen(k) - strlen(".compressed");
        char *pre = strndup(k, pl), *kb = malloc(pl + 16);
        if (!pre || !kb) {
            free(pre);
            free(kb);
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            goto out;
        }
        ct_part part = {(long)i, -1, -1, -1};
        snprintf(kb, pl + 16, "%s.bitmask", pre);
        part.bitmask = find_item(im, kb);
        snprintf(kb, pl + 16, "%s.shape", pre);
        part.shape = find_item(im, kb);
        snprintf(kb, pl + 16, "%s.row_offsets", pre);
        part.row_offsets = find_item(im, kb);
        free(kb);
        used[i] = true;
        if (part.bitmask >= 0)
            used[part.bitmask] = true;
        if (part.shape >= 0)
            used[part.shape] = true;
        if (part.row_offsets >= 0)
            used[part.row_offsets] = true;
        free(pre);
    }
    for (size_t i = 0; i < im->nitems; i++) {
        const st_item *it = &im->items[i];
        const char *k = it->key;
        if (!used[i]) {
            s = add_plain(ck, im, k, it, 0, (long)i, NULL, it->shape, it->ndim, it->dtype, err);
            if (s)
                goto out;
            continue;
        }
        if (!ends_with(k, ".compressed"))
            continue;
        size_t pl = strlen(k) - strlen(".compressed");
        char *name = malloc(pl + 8);
        if (!name) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            goto out;
        }
        memcpy(name, k, pl);
        name[pl] = 0;
        if (!ends_with(name, ".weight"))
            strcat(name, ".weight"); /* new style "<m>.compressed" */
        ct_part part = {(long)i, -1, -1, -1};
        char kb[1024];
        snprintf(kb, sizeof kb, "%.*s.bitmask", (int)pl, k);
        part.bitmask = find_item(im, kb);
        snprintf(kb, sizeof kb, "%.*s.shape", (int)pl, k);
        part.shape = find_item(im, kb);
        snprintf(kb, sizeof kb, "%.*s.row_offsets", (int)pl, k);
        part.row_offsets = find_item(im, kb);
        /* validate the group */
        int64_t shape[SP_MAX_DIMS];
        int ndim = 0;
        const st_item *shp = part.shape >= 0 ? &im->items[part.shape] : NULL;
        const st_item *bm = part.bitmask >= 0 ? &im->items[part.bitmask] : NULL;
        bool ok = shp && bm && (shp->dtype == SP_I64 || shp->dtype == SP_I32) &&
                  (shp->ndim == 1 || (shp->ndim == 2 && shp->shape[1] == 1)) && shp->shape[0] >= 1 &&
                  shp->shape[0] <= SP_MAX_DIMS && bm->dtype == SP_U8 &&
                  (kind == 2 || part.row_offsets >= 0);
        uint64_t numel = 1;
        if (ok) {
            ndim = (int)shp->shape[0];
            const unsigned char *sd = item_data(im, shp);
            for (int dd = 0; dd < ndim && ok; dd++) {
                int64_t v;
                if (shp->dtype == SP_I64) {
                    memcpy(&v, sd + 8 * dd, 8);
                } else {
                    int32_t v32;
                    memcpy(&v32, sd + 4 * dd, 4);
                    v = v32;
                }
                if (v < 0 || v > ((int64_t)1 << 40) || (v && numel > ((uint64_t)1 << 44) / (uint64_t)v))
                    ok = false;
                else {
                    shape[dd] = v;
                    numel *= (uint64_t)v;
                }
            }
        }
        if (ok) {
            uint64_t C = (uint64_t)shape[ndim - 1], R = C ? numel / C : 0;
            ok = bm->ndim == 2 && (uint64_t)bm->shape[0] == R && (uint64_t)bm->shape[1] == (C + 7) / 8;
            if (ok && part.row_offsets >= 0) {
                const st_item *ro = &im->items[part.row_offsets];
                ok = ro->dtype == SP_I64 && ro->ndim == 1 && (uint64_t)ro->shape[0] == R;
            }
            if (ok && kind == 2)
                ok = C % 4 == 0 && it->numel * 2 == numel;
            if (ok)
                ok = it->numel <= numel;
        }
        if (!ok) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': compressed tensor '%s': its bitmask, shape or "
                             "row_offsets are missing or do not agree", ck->path, name);
            free(name);
            goto out;
        }
        s = add_plain(ck, im, name, it, kind, -1, &part, shape, ndim, it->dtype, err);
        free(name);
        if (s)
            goto out;
    }
    im->buf = calloc(ck->nstorages ? ck->nstorages : 1, sizeof *im->buf);
    if (!im->buf)
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
out:
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    free(used);
    cJSON_Delete(cfg);
    return s;
}

/* ------------------------------------------------------------------ */
/* writing                                                             */

/* One output tensor of a safetensors plan. */
typedef struct out_item {
    char *key;
    sp_dtype dtype;
    int ndim;
    int64_t shape[SP_MAX_DIMS];
    uint64_t nbytes;
    size_t src;     /* checkpoint tensor */
    int role;       /* 0 plain, 1 compressed, 2 bitmask, 3 row_offsets, 4 shape */
    int ct;         /* 1 bitmask, 2 24-bitmask */
    size_t shard;
    uint64_t off;   /* in its shard, once laid out */
} out_item;

typedef struct out_plan {
    out_item *v;
    size_t n, cap;
} out_plan;

static sp_status plan_add(out_plan *p, const char *key, sp_dtype dt, int ndim, const int64_t *shape,
                          size_t src, int role, int ct, sp_error *err)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        out_item *nv = realloc(p->v, cap * sizeof *nv);
        if (!nv)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        p->v = nv;
        p->cap = cap;
    }
    out_item *o = &p->v[p->n];
    memset(o, 0, sizeof *o);
    o->key = strdup(key);
    if (!o->key)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    o->dtype = dt;
    o->ndim = ndim;
    memcpy(o->shape, shape, sizeof(int64_t) * (size_t)ndim);
    o->nbytes = sp_dtype_size(dt);
    for (int d = 0; d < ndim; d++)
        o->nbytes *= (uint64_t)shape[d];
    o->src = src;
    o->role = role;
    o->ct = ct;
    p->n++;
    return SP_OK;
}

static void plan_free(out_plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].key);
    free(p->v);
}

/* ---- generating the items (formats/outplan.h) ----
 * Groups are checkpoint tensors: prepare loads a tensor's dense bytes,
 * emit produces a chunk of one of its items, finish lets the tensor go.
 * Tags: the item's role, and for sparse-bitmask values the first row of
 * their stretch (tag >> 8; the values of a row range have no fixed size). */

typedef struct ct_writer {
    sp_ckpt *ck;
    const out_plan *p;
    const sp__ct_plan *cp;
    const sp__xstat *xs;
    uint64_t **prefix;     /* per tensor: values before each row (sparse-bitmask) */
    const void **data;     /* per tensor, from prepare */
    void **owned;
    uint8_t *shared;       /* per storage: more than one tensor (released at the end) */
} ct_writer;

static sp_status ctw_prepare(void *ctx, size_t t, sp_error *err)
{
    ct_writer *w = ctx;
    return sp_ckpt_tensor_dense(w->ck, t, &w->data[t], &w->owned[t], err);
}

static sp_status ctw_finish(void *ctx, size_t t, sp_error *err)
{
    ct_writer *w = ctx;
    (void)err;
    free(w->owned[t]);
    w->owned[t] = NULL;
    size_t st = sp_ckpt_tensor(w->ck, t)->storage;
    if (!w->shared[st])
        sp_ckpt_storage_release(w->ck, st);
    return SP_OK;
}

static sp_status ctw_emit(void *ctx, size_t ti, uint64_t tag, uint64_t off, uint64_t len, void *out,
                          sp_error *err)
{
    ct_writer *w = ctx;
    const sp_tensor *t = sp_ckpt_tensor(w->ck, ti);
    const unsigned char *d = w->data[ti];
    const size_t es = sp_dtype_size(t->dtype);
    const int role = (int)(tag & 0xff);
    unsigned char *o = out;
    if (role == 0) {
        memcpy(o, d + off, (size_t)len);
        return SP_OK;
    }
    const sp_scan_ukernels *uk = sp_scan_ukernels_get();
    const uint64_t zm = sp_scan_zmask(t->dtype);
    const size_t C = (size_t)t->shape[1], rb = (C + 7) / 8;
    const bool b24 = w->cp->comp[ti] == SP__CT_24;
    unsigned char *tmp = malloc((b24 ? C / 2 * es : 0) + rb + 1);
    if (!tmp)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    if (role == 1 && b24) {
        for (size_t r = off / (C / 2 * es), k = 0; k < len; r++, k += C / 2 * es)
            uk->pack24(o + k, tmp, d + r * C * es, C, es, zm);
    } else if (role == 1) {
        const uint64_t *pre = w->prefix[ti];
        size_t r = (size_t)(tag >> 8), k = 0;
        for (; k < len; r++) {
            uk->bitmask(tmp, d + r * C * es, C, es, zm);
            k += uk->compress(o + k, d + r * C * es, tmp, C, es) * es;
        }
        (void)pre;
    } else if (role == 2) {
        for (size_t r = off / rb, k = 0; k < len; r++, k += rb) {
            if (b24)
                uk->pack24(NULL, o + k, d + r * C * es, C, es, zm);
            else
                uk->bitmask(o + k, d + r * C * es, C, es, zm);
        }
    } else { /* row_offsets: int64, little-endian */
        const uint64_t *pre = w->prefix[ti];
        for (size_t r = off / 8, k = 0; k < len; r++, k += 8) {
            int64_t v = (int64_t)pre[r];
            memcpy(o + k, &v, 8);
        }
    }
    free(tmp);
    return SP_OK;
}

/* A stretch of progress in a run of several phases. */
typedef struct phase {
    sp_progress_fn fn;
    void *ctx;
    uint64_t base, total;
} phase;

static void phase_progress(void *ctx, uint64_t done, uint64_t total)
{
    phase *ph = ctx;
    (void)total;
    if (ph->fn)
        ph->fn(ph->ctx, ph->base + done, ph->total);
}

/* The safetensors header of shard k into a new buffer (u64 length + JSON
 * padded with spaces to 8); item offsets are set as they are laid out. */
static sp_status shard_header(out_plan *p, size_t k, unsigned char **hdr, size_t *hlen, sp_error *err)
{
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (size_t i = 0; i < p->n; i++) {
        out_item *o = &p->v[i];
        if (o->shard != k)
            continue;
        cJSON *e = cJSON_AddObjectToObject(h, o->key);
        cJSON_AddStringToObject(e, "dtype", sp_dtype_safetensors_name(o->dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < o->ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)o->shape[d]));
        cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + o->nbytes)));
        o->off = off;
        off += o->nbytes;
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!js)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    size_t jl = strlen(js), padded = (jl + 7) & ~(size_t)7;
    if (!(*hdr = malloc(8 + padded))) {
        free(js);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < 8; i++)
        (*hdr)[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(*hdr + 8, js, jl);
    memset(*hdr + 8 + jl, ' ', padded - jl);
    free(js);
    *hlen = 8 + padded;
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].shard == k)
            p->v[i].off += *hlen;
    return SP_OK;
}

/* The pieces of shard k into file f of the plan. */
static sp_status shard_pieces(ct_writer *w, sp_outplan *pl, size_t f, size_t k, sp_error *err)
{
    const out_plan *p = w->p;
    sp_status s = SP_OK;
    for (size_t i = 0; i < p->n && !s; i++) {
        const out_item *o = &p->v[i];
        if (o->shard != k)
            continue;
        const sp_tensor *t = sp_ckpt_tensor(w->ck, o->src);
        size_t es = sp_dtype_size(t->dtype);
        if (o->role == 4) { /* the shape: known now */
            unsigned char b[8 * SP_MAX_DIMS];
            for (int d = 0; d < t->ndim; d++) {
                int64_t v = t->shape[d];
                memcpy(b + 8 * d, &v, 8);
            }
            s = sp_outplan_put(pl, f, o->off, b, 8 * (size_t)t->ndim, err);
            continue;
        }
        const sp_mapfile *mf;
        uint64_t at;
        if (o->role == 0 && sp_tensor_is_contiguous(t) && sp_ckpt_storage_file(w->ck, t->storage, &mf, &at)) {
            s = sp_outplan_copy(pl, f, o->off, mf, at + (uint64_t)t->offset * es, o->nbytes, err);
            continue;
        }
        if (o->role == 1 && w->cp->comp[o->src] == SP__CT_BITMASK) {
            /* stretches of rows of about 4 MiB of values each */
            const uint64_t *pre = w->prefix[o->src];
            size_t R = (size_t)t->shape[0], r0 = 0;
            while (r0 < R && !s) {
                size_t r1 = r0 + 1;
                while (r1 < R && (pre[r1 + 1] - pre[r0]) * es <= ((uint64_t)4 << 20))
                    r1++;
                s = sp_outplan_gen(pl, f, o->off + pre[r0] * es, o->src, 1 | ((uint64_t)r0 << 8),
                                   (pre[r1] - pre[r0]) * es, 0, err);
                r0 = r1;
            }
            continue;
        }
        uint64_t C = t->ndim == 2 ? (uint64_t)t->shape[1] : 1;
        uint64_t unit = o->role == 0 ? es : o->role == 1 ? C / 2 * es : o->role == 2 ? (C + 7) / 8 : 8;
        s = sp_outplan_gen(pl, f, o->off, o->src, (uint64_t)o->role, o->nbytes, unit, err);
    }
    return s;
}

/* Plan and write a safetensors folder or file. ct_mode: 0 dense file at
 * path, else a compressed-tensors folder. */
static sp_status st_export(sp_ckpt *ck, const char *path, int ct_mode, const sp_ct_options *opt,
                           sp_progress_fn progress, void *pctx, sp_export_report *report,
                           sp_error *err)
{
    out_plan p = {0};
    sp_outdir od = {0};
    sp_outplan *pl = NULL;
    cJSON *cfg = NULL;
    char *js = NULL;
    sp_status s = SP_OK;
    size_t nt = sp_ckpt_num_tensors(ck), ns = sp_ckpt_num_storages(ck);
    sp__ct_plan cp = {0};
    sp__xstat *xs = calloc(nt ? nt : 1, sizeof *xs);
    ct_writer w = {ck, &p, &cp, xs, calloc(nt ? nt : 1, sizeof(uint64_t *)),
                   calloc(nt ? nt : 1, sizeof(void *)), calloc(nt ? nt : 1, sizeof(void *)),
                   calloc(ns ? ns : 1, 1)};
    uint64_t total = 0, written = 0;
    int threads = opt ? opt->threads : 0;
    if (report) {
        memset(report, 0, sizeof *report);
        snprintf(report->format, sizeof report->format, "%s", ct_mode ? "compressed-tensors" : "safetensors");
    }
    if (!xs || !w.prefix || !w.data || !w.owned || !w.shared) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nt; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        total += (uint64_t)t->numel * sp_dtype_size(t->dtype);
        for (size_t j = 0; j < i && !w.shared[t->storage]; j++)
            w.shared[t->storage] = sp_ckpt_tensor(ck, j)->storage == t->storage;
    }
    /* pass 1 (the planner, on all threads): zeros, 2:4, nonzeros per row of
     * the pruned weights; then the format and each weight's form */
    phase ph = {progress, pctx, 0, 2 * total};
    if ((s = sp__export_scan(ck, threads, phase_progress, &ph, total, xs, err)))
        goto out;
    ph.base = total;
    const char *want = opt && opt->format ? opt->format : NULL;
    if (ct_mode)
        s = sp__ct_plan_make(ck, xs, want, &cp, err);
    else if (!(cp.comp = calloc(nt ? nt : 1, 1)) || !(cp.target = calloc(nt ? nt : 1, 1)))
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    if (s)
        goto out;
    /* sparse-bitmask values have rows of their own sizes: count them */
    size_t nrows = 0, *which = malloc((nt ? nt : 1) * sizeof *which);
    if (!which) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nt; i++)
        if (cp.comp[i] == SP__CT_BITMASK)
            which[nrows++] = i;
    s = sp__export_rows(ck, which, nrows, threads, xs, err);
    free(which);
    for (size_t i = 0; i < nt && !s; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        if (cp.comp[i] != SP__CT_BITMASK)
            continue;
        size_t R = (size_t)t->shape[0];
        if (!(w.prefix[i] = malloc((R + 1) * sizeof **w.prefix))) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        w.prefix[i][0] = 0;
        for (size_t r = 0; r < R; r++)
            w.prefix[i][r + 1] = w.prefix[i][r] + xs[i].row_nnz[r];
    }
    const uint8_t *comp = cp.comp;
    const bool *target = cp.target;
    /* plan */
    for (size_t i = 0; i < nt && !s; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        size_t es = sp_dtype_size(t->dtype);
        sp_spz_tensor_info info;
        memset(&info, 0, sizeof info);
        info.numel = (uint64_t)t->numel;
        info.dense_bytes = (uint64_t)t->numel * es;
        const uint64_t nnz = sp_dtype_is_float(t->dtype) ? (uint64_t)t->numel - xs[i].zeros : 0;
        info.nnz = nnz;
        if (!comp[i]) {
            s = plan_add(&p, t->name, t->dtype, t->ndim, t->shape, i, 0, 0, err);
            info.encoding = SP_SPZ_DENSE;
            info.stored_bytes = info.raw_bytes = info.dense_bytes;
        } else {
            size_t plen = strlen(t->name) - strlen(".weight");
            char *key = malloc(plen + 16);
            if (!key) {
                s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
                break;
            }
            int64_t R = t->shape[0], C = t->shape[1];
            int64_t cshape[2] = {comp[i] == 2 ? R : (int64_t)nnz, C / 2};
            int64_t bshape[2] = {R, (C + 7) / 8};
            /* as compressed-tensors writes them: [ndim] for sparse-bitmask,
             * [ndim, 1] for sparse-24-bitmask (Sparse24BitMaskTensor.dict
             * reshapes it to (-1, 1)) */
            int64_t sshape[2] = {2, 1};
            snprintf(key, plen + 16, "%.*s.shape", (int)plen, t->name);
            s = plan_add(&p, key, SP_I64, comp[i] == 2 ? 2 : 1, sshape, i, 4, comp[i], err);
            snprintf(key, plen + 16, "%.*s.compressed", (int)plen, t->name);
            if (!s) {
                if (comp[i] == 2)
                    s = plan_add(&p, key, t->dtype, 2, cshape, i, 1, 2, err);
                else
                    s = plan_add(&p, key, t->dtype, 1, cshape, i, 1, 1, err);
            }
            snprintf(key, plen + 16, "%.*s.bitmask", (int)plen, t->name);
            if (!s)
                s = plan_add(&p, key, SP_U8, 2, bshape, i, 2, comp[i], err);
            if (!s && comp[i] == 1) {
                snprintf(key, plen + 16, "%.*s.row_offsets", (int)plen, t->name);
                s = plan_add(&p, key, SP_I64, 1, &R, i, 3, 1, err);
            }
            free(key);
            info.encoding = comp[i] == 2 ? SP_SPZ_NM : SP_SPZ_BITMASK;
            if (comp[i] == 2) {
                info.n = 2;
                info.m = 4;
                info.nnz = (uint64_t)(R * C / 2);
            }
            uint64_t vals = (comp[i] == 2 ? (uint64_t)(R * C / 2) : nnz) * es;
            info.stored_bytes = info.raw_bytes =
                vals + (uint64_t)R * (uint64_t)((C + 7) / 8) + (comp[i] == 1 ? (uint64_t)R * 8 : 0) + 16;
        }
        if (!s)
            s = sp__export_report_add(report, t, &info, err);
    }
    if (s)
        goto out;
    /* shards */
    uint64_t maxs = opt && opt->max_shard_bytes ? opt->max_shard_bytes : CT_DEFAULT_SHARD;
    size_t nshards = 1;
    uint64_t acc = 0;
    for (size_t i = 0; i < p.n; i++) {
        /* a tensor's parts stay together: split only at tensor boundaries */
        bool first = i == 0 || p.v[i].src != p.v[i - 1].src;
        if (ct_mode && first && acc > 0) {
            uint64_t tsz = 0;
            for (size_t j = i; j < p.n && p.v[j].src == p.v[i].src; j++)
                tsz += p.v[j].nbytes;
            if (acc + tsz > maxs) {
                nshards++;
                acc = 0;
            }
        }
        p.v[i].shard = nshards - 1;
        acc += p.v[i].nbytes;
    }
    /* the files: headers now, every item's bytes by the output plan */
    char fp[4096], fname[64];
    if (ct_mode && (s = sp_outdir_open(&od, path, err)))
        goto out;
    sp_outplan_ops po = {&w, ctw_prepare, ctw_emit, ctw_finish};
    if ((s = sp_outplan_new(&pl, &po, nt, err)))
        goto out;
    cJSON *wm = nshards > 1 ? cJSON_CreateObject() : NULL;
    for (size_t k = 0; k < nshards && !s; k++) {
        if (nshards == 1)
            snprintf(fname, sizeof fname, "model.safetensors");
        else
            snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", k + 1, nshards);
        unsigned char *hdr = NULL;
        size_t hlen = 0, f = 0;
        s = shard_header(&p, k, &hdr, &hlen, err);
        if (!s)
            s = sp_outplan_file(pl, ct_mode ? sp_outdir_file(&od, fname, fp, sizeof fp) : path, &f, err);
        if (!s)
            s = sp_outplan_put(pl, f, 0, hdr, hlen, err);
        free(hdr);
        written += hlen;
        if (!s)
            s = shard_pieces(&w, pl, f, k, err);
        for (size_t i = 0; i < p.n; i++)
            if (p.v[i].shard == k) {
                written += p.v[i].nbytes;
                if (wm)
                    cJSON_AddStringToObject(wm, p.v[i].key, fname);
            }
    }
    if (!s)
        s = sp_outplan_run(pl, threads, phase_progress, &ph, err);
    if (!s && !ct_mode) {
        cJSON_Delete(wm);
        goto out;
    }
    if (!s && wm) {
        cJSON *idx = cJSON_CreateObject();
        cJSON *m = cJSON_AddObjectToObject(idx, "metadata");
        uint64_t tot = 0;
        for (size_t i = 0; i < p.n; i++)
            tot += p.v[i].nbytes;
        cJSON_AddNumberToObject(m, "total_size", (double)tot);
        cJSON_AddItemToObject(idx, "weight_map", wm);
        wm = NULL;
        char *ij = cJSON_Print(idx);
        cJSON_Delete(idx);
        sp_outfile of;
        if (!ij)
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        else if (!(s = sp_outfile_open(&of, sp_outdir_file(&od, "model.safetensors.index.json", fp, sizeof fp), err))) {
            s = sp_outfile_write(&of, ij, strlen(ij), err);
            written += of.pos;
            if (!s)
                s = sp_outfile_commit(&of, err);
            else
                sp_outfile_abort(&of);
        }
        free(ij);
    }
    cJSON_Delete(wm);
    if (s)
        goto out;
    /* config.json: the input folder's, with quantization_config set */
    {
        struct stat stt;
        char *src = NULL;
        if (stat(sp_ckpt_path(ck), &stt) == 0 && S_ISDIR(stt.st_mode))
            src = path_join(sp_ckpt_path(ck), "config.json");
        cfg = src ? read_json_file(src) : NULL;
        free(src);
        if (!cJSON_IsObject(cfg)) {
            cJSON_Delete(cfg);
            cfg = cJSON_CreateObject();
        }
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, "compression_config");
        cJSON *q = cJSON_AddObjectToObject(cfg, "quantization_config");
        const char *fmt = cp.format == SP__CT_24        ? "sparse-24-bitmask"
                          : cp.format == SP__CT_BITMASK ? "sparse-bitmask"
                                                        : "dense";
        /* the fields compressed-tensors' SparsityCompressionConfig writes,
         * keys in its (sorted) order */
        cJSON_AddStringToObject(q, "quant_method", "compressed-tensors");
        cJSON *sc = cJSON_AddObjectToObject(q, "sparsity_config");
        cJSON_AddStringToObject(q, "version", "0.9.0");
        cJSON_AddStringToObject(sc, "format", fmt);
        double gs = cp.params_all ? (double)cp.zeros_all / (double)cp.params_all : 0;
        cJSON_AddNumberToObject(sc, "global_sparsity", gs);
        cJSON *ig = cJSON_AddArrayToObject(sc, "ignore");
        cJSON_AddFalseToObject(sc, "registry_requires_subclass");
        cJSON_AddStringToObject(sc, "sparsity_structure",
                                cp.format == SP__CT_24 || cp.model24 ? "2:4" : "unstructured");
        cJSON *tg = cJSON_AddArrayToObject(sc, "targets");
        for (size_t i = 0; i < nt; i++) {
            const sp_tensor *t = sp_ckpt_tensor(ck, i);
            if (!sp__ct_candidate(t))
                continue;
            char *mod = strndup(t->name, strlen(t->name) - strlen(".weight"));
            if (mod)
                cJSON_AddItemToArray(target[i] ? tg : ig, cJSON_CreateString(mod));
            free(mod);
        }
        if (report)
            snprintf(report->ct_format, sizeof report->ct_format, "%s", fmt);
        js = cJSON_Print(cfg);
        sp_outfile of;
        if (!js)
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        else if (!(s = sp_outfile_open(&of, sp_outdir_file(&od, "config.json", fp, sizeof fp), err))) {
            s = sp_outfile_write(&of, js, strlen(js), err);
            if (!s)
                s = sp_outfile_write(&of, "\n", 1, err);
            written += of.pos;
            if (!s)
                s = sp_outfile_commit(&of, err);
            else
                sp_outfile_abort(&of);
        }
    }
    if (!s)
        s = sp_outdir_commit(&od, err);
out:
    if (s && od.tmp_path)
        sp_outdir_abort(&od);
    if (report) {
        report->output_bytes = written;
        if (s)
            sp_export_report_release(report);
    }
    cJSON_Delete(cfg);
    free(js);
    sp_outplan_free(pl);
    for (size_t i = 0; i < nt; i++) {
        if (w.owned)
            free(w.owned[i]);
        if (w.prefix)
            free(w.prefix[i]);
    }
    /* shared storages stay loaded until every tensor over them is done */
    for (size_t i = 0; w.shared && i < ns; i++)
        if (w.shared[i])
            sp_ckpt_storage_release(ck, i);
    free(w.prefix);
    free(w.data);
    free(w.owned);
    free((void *)w.shared);
    sp__ct_plan_release(&cp);
    sp__xstat_release(xs, nt);
    free(xs);
    plan_free(&p);
    return s;
}

sp_status sp_ct_export(sp_ckpt *ck, const char *out_dir, const sp_ct_options *opt,
                       sp_progress_fn progress, void *pctx, sp_export_report *report,
                       sp_error *err)
{
    return st_export(ck, out_dir, 1, opt, progress, pctx, report, err);
}

sp_status sp_dense_safetensors_export(sp_ckpt *ck, const char *path, int threads,
                                      sp_progress_fn progress, void *pctx,
                                      sp_export_report *report, sp_error *err)
{
    sp_ct_options o = {.threads = threads};
    return st_export(ck, path, 0, &o, progress, pctx, report, err);
}

