/*
 * Hugging Face folders: a directory of safetensors shards.
 *
 * Layout:
 *   model.safetensors.index.json   optional; {"metadata": {...},
 *                                   "weight_map": {"<tensor>": "<shard file>"}}
 *   <shard>.safetensors            one or more safetensors files (safetensors.c)
 *   config.json, tokenizer files, ...  anything else, carried along untouched
 *
 * With an index, the shards are the distinct files its weight_map names
 * (plain file names inside the folder); each must exist and hold the tensors
 * the index puts in it. Without one, every *.safetensors file in the folder
 * is a shard. Either way shards are read in name order and tensors in each
 * shard's header order; tensor names are the safetensors names and must be
 * unique across shards. If no "model.safetensors.index.json" exists but
 * exactly one other "*.safetensors.index.json" does, that one is used.
 *
 * A folder whose config.json has quantization_config.sparsity_config with a
 * format other than "dense" is a compressed-tensors model whose safetensors
 * hold compressed tensors, not weights: sp_ckpt_open routes the formats
 * ctensors.c decodes there first, and any other one is refused here (the
 * hook in sp_hf_folder_open).
 *
 * Rewriting writes a whole new folder atomically (sp_outdir): every shard
 * rewritten as in safetensors.c, every other entry (files and subfolders,
 * symlinks followed) copied byte for byte.
 */
#include "formats/safetensors_internal.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HF_INDEX "model.safetensors.index.json"
#define HF_MAX_JSON SP_JSON_MAX_BYTES

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct namelist {
    char **v;
    size_t n, cap;
} namelist;

static sp_status nl_add(namelist *l, const char *s, sp_error *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **q = realloc(l->v, cap * sizeof *q);
        if (!q)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        l->v = q;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s)))
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    l->n++;
    return SP_OK;
}

static void nl_free(namelist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Sorted names of the folder's entries (not "." / ".."). */
static sp_status list_dir(const char *dir, namelist *out, sp_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return sp_error_set(err, errno == ENOENT ? SP_ERR_NOT_FOUND : SP_ERR_IO,
                            "cannot open '%s': %s", dir, strerror(errno));
    struct dirent *e;
    sp_status s = SP_OK;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if ((s = nl_add(out, e->d_name, err)))
            break;
    }
    closedir(d);
    if (!s && out->n)
        qsort(out->v, out->n, sizeof *out->v, cmp_cstr);
    return s;
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Parse a small JSON file (size-capped). *out is NULL when the file is
 * missing and *missing set. */
static sp_status read_json(const char *path, cJSON **out, bool *missing, sp_error *err)
{
    sp_mapfile mf;
    *out = NULL;
    *missing = false;
    sp_status s = sp_mapfile_open(&mf, path, err);
    if (s == SP_ERR_NOT_FOUND) {
        *missing = true;
        return SP_OK;
    }
    if (s)
        return s;
    if (mf.size > HF_MAX_JSON)
        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': json file larger than %llu bytes", path,
                         (unsigned long long)HF_MAX_JSON);
    else if (mf.data && !sp_json_cost_ok((const char *)mf.data, (size_t)mf.size, SP_JSON_MAX_VALUES, 32))
        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': json nests deeper than 32 levels or holds more than %llu values",
                         path, (unsigned long long)SP_JSON_MAX_VALUES);
    else if (!mf.data || !(*out = cJSON_ParseWithLength((const char *)mf.data, (size_t)mf.size)))
        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': not valid json", path);
    sp_mapfile_close(&mf);
    return s;
}

/* True when config.json marks a compressed-tensors folder with a sparse
 * format (ckpt.c hands the ones ctensors.c decodes to it before we get
 * here). A config.json we cannot parse is not our business (it is copied,
 * never interpreted). */
static bool is_compressed_tensors(const char *dir)
{
    char *p = join(dir, "config.json");
    cJSON *j = NULL;
    bool missing, yes = false;
    if (p && read_json(p, &j, &missing, NULL) == SP_OK && j) {
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "quantization_config");
        const cJSON *sc = q ? cJSON_GetObjectItemCaseSensitive(q, "sparsity_config") : NULL;
        const cJSON *fmt = cJSON_IsObject(sc) ? cJSON_GetObjectItemCaseSensitive(sc, "format") : NULL;
        /* "dense" means the tensors are stored as plain weights */
        yes = cJSON_IsObject(sc) && !(cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "dense"));
    }
    cJSON_Delete(j);
    free(p);
    return yes;
}

static bool plain_file_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static sp_status hf_rewrite_par(sp_ckpt *ck, const char *out_path, const sp_rewrite_ops *ops,
                                sp_error *err);

static const sp_ckpt_backend hf_backend = {
    .name = "hf-folder",
    .storage_data = sp_st_storage_data,
    .storage_release = sp_st_storage_release,
    .storage_file = sp_st_storage_file,
    .rewrite_par = hf_rewrite_par,
    .close = sp_st_close,
};

/* The shard files an index names: its weight_map (*wm, borrowed from index)
 * must map every tensor to a plain file name; the distinct names, sorted,
 * are appended to shards. */
static sp_status index_shards(const char *dir, const char *index_name, const cJSON *index,
                              const cJSON **wm, namelist *shards, sp_error *err)
{
    *wm = index ? cJSON_GetObjectItemCaseSensitive(index, "weight_map") : NULL;
    if (!cJSON_IsObject(index) || !cJSON_IsObject(*wm))
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': %s has no 'weight_map' object", dir, index_name);
    /* distinct names through a sorted copy: a quadratic scan would let a
     * large index cost seconds */
    namelist all = {0};
    sp_status s = SP_OK;
    const cJSON *e;
    cJSON_ArrayForEach(e, *wm) {
        if (!cJSON_IsString(e) || !plain_file_name(e->valuestring)) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': %s: tensor '%s' is not mapped to a file name",
                             dir, index_name, e->string ? e->string : "?");
            break;
        }
        if ((s = nl_add(&all, e->valuestring, err)))
            break;
    }
    if (!s && all.n)
        qsort(all.v, all.n, sizeof *all.v, cmp_cstr);
    for (size_t k = 0; k < all.n && !s; k++)
        if (k == 0 || strcmp(all.v[k], all.v[k - 1]))
            s = nl_add(shards, all.v[k], err);
    nl_free(&all);
    return s;
}

sp_status sp_hf_index_parse(const char *dir, const void *json, size_t len, size_t *nshards,
                            sp_error *err)
{
    namelist shards = {0};
    const cJSON *wm;
    *nshards = 0;
    if (len > HF_MAX_JSON || !sp_json_cost_ok(json, len, SP_JSON_MAX_VALUES, 32))
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': %s is too large", dir, HF_INDEX);
    cJSON *index = cJSON_ParseWithLength(json, len);
    if (!index)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': %s is not valid json", dir, HF_INDEX);
    sp_status s = index_shards(dir, HF_INDEX, index, &wm, &shards, err);
    *nshards = shards.n;
    nl_free(&shards);
    cJSON_Delete(index);
    return s;
}

typedef struct name_shard {
    const char *name;
    size_t shard;
} name_shard;

static int cmp_ns(const void *a, const void *b)
{
    return strcmp(((const name_shard *)a)->name, ((const name_shard *)b)->name);
}

/* Every weight_map entry must be a tensor of the shard it names. */
static sp_status check_weight_map(sp_ckpt *ck, sp_st_impl *im, const cJSON *wm,
                                  const char *index_name, sp_error *err)
{
    name_shard *v = malloc((ck->ntensors ? ck->ntensors : 1) * sizeof *v);
    if (!v)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ck->ntensors; i++) {
        v[i].name = ck->tensors[i].name;
        v[i].shard = im->slots[ck->tensors[i].storage].shard;
    }
    qsort(v, ck->ntensors, sizeof *v, cmp_ns);
    sp_status s = SP_OK;
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        name_shard key = {e->string, 0};
        name_shard *hit = bsearch(&key, v, ck->ntensors, sizeof *v, cmp_ns);
        if (!hit || strcmp(im->shards[hit->shard].name, e->valuestring)) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s' is mapped to '%s' by %s but is not in it",
                             ck->path, e->string, e->valuestring, index_name);
            break;
        }
    }
    free(v);
    return s;
}

sp_status sp_hf_folder_open(sp_ckpt *ck, sp_error *err)
{
    namelist entries = {0}, shards = {0};
    cJSON *index = NULL;
    char *index_path = NULL;
    const char *index_name = NULL;
    sp_status s;

    /* Hook for the compressed-tensors backend: such folders hold compressed
     * tensors (bitmask + values), not weights, and are decoded elsewhere. */
    if (is_compressed_tensors(ck->path))
        return sp_error_set(err, SP_ERR_UNSUPPORTED,
                            "'%s': unsupported compressed-tensors sparsity format (config.json "
                            "quantization_config.sparsity_config)",
                            ck->path);

    sp_st_impl *im = calloc(1, sizeof *im);
    if (!im)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    ck->format = SP_FORMAT_HF_FOLDER;
    ck->be = &hf_backend;
    ck->impl = im;

    if ((s = list_dir(ck->path, &entries, err)))
        goto out;
    /* the index: the standard name, else a single other *.safetensors.index.json */
    for (size_t i = 0; i < entries.n; i++)
        if (!strcmp(entries.v[i], HF_INDEX))
            index_name = entries.v[i];
    if (!index_name) {
        size_t cnt = 0;
        for (size_t i = 0; i < entries.n; i++)
            if (has_suffix(entries.v[i], ".safetensors.index.json")) {
                cnt++;
                index_name = entries.v[i];
            }
        if (cnt > 1) {
            s = sp_error_set(err, SP_ERR_UNSUPPORTED,
                             "'%s': several *.safetensors.index.json files and no %s", ck->path, HF_INDEX);
            goto out;
        }
    }

    const cJSON *wm = NULL;
    if (index_name) {
        bool missing;
        if (!(index_path = join(ck->path, index_name))) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            goto out;
        }
        if ((s = read_json(index_path, &index, &missing, err)))
            goto out;
        if ((s = index_shards(ck->path, index_name, index, &wm, &shards, err)))
            goto out;
        for (size_t k = 0; k < shards.n; k++) {
            char *p = join(ck->path, shards.v[k]);
            struct stat st;
            bool ok = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
            free(p);
            if (!ok) {
                s = sp_error_set(err, SP_ERR_FORMAT, "'%s': shard '%s' named in %s is missing", ck->path,
                                 shards.v[k], index_name);
                goto out;
            }
        }
    } else {
        for (size_t i = 0; i < entries.n; i++)
            if (has_suffix(entries.v[i], ".safetensors") && (s = nl_add(&shards, entries.v[i], err)))
                goto out;
    }
    if (shards.n == 0) {
        bool bin = false;
        for (size_t i = 0; i < entries.n; i++)
            bin = bin || has_suffix(entries.v[i], ".bin");
        s = sp_error_set(err, bin ? SP_ERR_UNSUPPORTED : SP_ERR_FORMAT,
                         bin ? "'%s': only folders of .safetensors shards are supported (found .bin files)"
                             : "'%s': no .safetensors files in this folder",
                         ck->path);
        goto out;
    }
    for (size_t k = 0; k < shards.n; k++) {
        char *p = join(ck->path, shards.v[k]);
        size_t idx;
        if (!p) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            goto out;
        }
        s = sp_st_add_shard(im, p, shards.v[k], &idx, err);
        free(p);
        if (s || (s = sp_st_shard_load(ck, im, idx, err)))
            goto out;
    }
    if ((s = sp_st_check_unique(ck, err)))
        goto out;
    if (wm)
        s = check_weight_map(ck, im, wm, index_name, err);
out:
    cJSON_Delete(index);
    free(index_path);
    nl_free(&entries);
    nl_free(&shards);
    return s; /* on failure sp_ckpt_open calls close, which frees im */
}

/* Copy a file byte for byte (following symlinks). */
static sp_status copy_file(const char *src, const char *dst, sp_error *err)
{
    sp_status s = SP_OK;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return sp_error_set(err, SP_ERR_IO, "cannot open '%s': %s", src, strerror(errno));
    int outfd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (outfd < 0) {
        s = sp_error_set(err, SP_ERR_IO, "cannot create '%s': %s", dst, strerror(errno));
        close(in);
        return s;
    }
    char *buf = NULL;
    /* in the kernel where the file system allows (no user-space copy) */
    for (;;) {
        ssize_t n = copy_file_range(in, NULL, outfd, NULL, (size_t)1 << 30, 0);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            goto out; /* done */
        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP &&
            errno != EPERM && errno != ETXTBSY && errno != EBADF) {
            s = sp_error_set(err, SP_ERR_IO, "cannot copy '%s' to '%s': %s", src, dst, strerror(errno));
            goto out;
        }
        /* nothing was copied by the failing call; the file offsets say how
         * far earlier calls got, and read/write go on from there */
        break;
    }
    enum { BUF = 1 << 20 };
    buf = malloc(BUF);
    if (!buf) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t n = read(in, buf, BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            s = sp_error_set(err, SP_ERR_IO, "cannot read '%s': %s", src, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(outfd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                s = sp_error_set(err, SP_ERR_IO, "cannot write '%s': %s", dst, strerror(errno));
                goto out;
            }
            off += w;
        }
    }
out:
    free(buf);
    close(in);
    if (close(outfd) != 0 && !s)
        s = sp_error_set(err, SP_ERR_IO, "cannot write '%s': %s", dst, strerror(errno));
    return s;
}

/* Copy a folder tree (files and subfolders; symlinks followed). */
static sp_status copy_tree(const char *src, const char *dst, int depth, sp_error *err)
{
    namelist l = {0};
    sp_status s;
    if (depth > 32)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': folders nested too deeply", src);
    if ((s = list_dir(src, &l, err)))
        return s;
    for (size_t i = 0; i < l.n && !s; i++) {
        char *a = join(src, l.v[i]), *b = join(dst, l.v[i]);
        struct stat st;
        if (!a || !b)
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        else if (stat(a, &st) != 0)
            s = SP_OK; /* dangling symlink: nothing to copy */
        else if (S_ISDIR(st.st_mode)) {
            if (mkdir(b, 0755) != 0)
                s = sp_error_set(err, SP_ERR_IO, "cannot create '%s': %s", b, strerror(errno));
            else
                s = copy_tree(a, b, depth + 1, err);
        } else if (S_ISREG(st.st_mode))
            s = copy_file(a, b, err);
        free(a);
        free(b);
    }
    nl_free(&l);
    return s;
}

/* Copy the folder entry name of dir (a file or a folder tree; symlinks
 * followed, dangling ones skipped) to dst. */
static sp_status copy_entry(const char *dir, const char *name, const char *dst, sp_error *err)
{
    char *src = join(dir, name);
    struct stat st;
    sp_status s = SP_OK;
    if (!src)
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    else if (stat(src, &st) != 0)
        s = SP_OK; /* dangling symlink */
    else if (S_ISDIR(st.st_mode)) {
        if (mkdir(dst, 0755) != 0)
            s = sp_error_set(err, SP_ERR_IO, "cannot create '%s': %s", dst, strerror(errno));
        else
            s = copy_tree(src, dst, 1, err);
    } else if (S_ISREG(st.st_mode))
        s = copy_file(src, dst, err);
    free(src);
    return s;
}

/* The folder in parallel: the other entries copied first (by the kernel),
 * then every shard through one parallel run (sp_st_rewrite_par), so the
 * threads work across shard boundaries. */
static sp_status hf_rewrite_par(sp_ckpt *ck, const char *out_path, const sp_rewrite_ops *ops,
                                sp_error *err)
{
    sp_st_impl *im = ck->impl;
    sp_outdir od;
    namelist l = {0};
    char buf[PATH_MAX];
    size_t *shards = malloc((im->nshards ? im->nshards : 1) * sizeof *shards);
    char **paths = calloc(im->nshards ? im->nshards : 1, sizeof *paths);
    size_t nsh = 0;
    sp_status s = SP_OK;
    if (!shards || !paths) {
        free(shards);
        free(paths);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    if ((s = sp_outdir_open(&od, out_path, err))) {
        free(shards);
        free(paths);
        return s;
    }
    if ((s = list_dir(ck->path, &l, err)))
        goto out;
    for (size_t i = 0; i < l.n && !s; i++) {
        const char *dst = sp_outdir_file(&od, l.v[i], buf, sizeof buf);
        size_t shard = im->nshards;
        for (size_t k = 0; k < im->nshards; k++)
            if (!strcmp(im->shards[k].name, l.v[i]))
                shard = k;
        if (shard < im->nshards) {
            shards[nsh] = shard;
            if (!(paths[nsh++] = strdup(dst)))
                s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            continue;
        }
        s = copy_entry(ck->path, l.v[i], dst, err);
    }
    if (!s)
        s = sp_st_rewrite_par(ck, im, shards, (const char *const *)paths, nsh, ops, err);
    if (!s)
        s = sp_outdir_commit(&od, err);
out:
    nl_free(&l);
    for (size_t k = 0; k < nsh; k++)
        free(paths[k]);
    free(paths);
    free(shards);
    if (s)
        sp_outdir_abort(&od);
    return s;
}
