/*
 * PyTorch checkpoints: torch.save zip archives (torch >= 1.6), the legacy
 * pre-1.6 stream, and TorchScript archives (torch.jit.save). Read here;
 * rewritten and written by torch_write.c.
 *
 * Zip layout (records of one zip, see zip.h; <p> is the archive's single
 * top folder, any name, "archive" when torch.save writes a file object):
 *   <p>/data.pkl        pickle (protocol 2) of the saved object
 *   <p>/data/<key>      raw little-endian bytes of one storage
 *   <p>/version         "3\n"
 *   <p>/byteorder       "little" (newer torch; "big" is rejected)
 *   TorchScript adds <p>/code/..., <p>/constants.pkl, <p>/.data/..., and its
 *   data.pkl holds __torch__.* module objects (NEWOBJ + BUILD state dict).
 * Tensors in data.pkl are REDUCE calls of torch._utils._rebuild_tensor_v2(
 *   storage, storage_offset, size, stride, requires_grad, hooks[, meta])
 * (possibly wrapped in _rebuild_parameter[_with_state] or
 * torch._tensor._rebuild_from_type_v2) where storage is a persistent id
 *   ('storage', torch.<Dtype>Storage, key, location, numel).
 *
 * Legacy layout (one stream, no container):
 *   pickle MAGIC 0x1950a86a20f9469cfc6c | pickle protocol version 1001 |
 *   pickle sys_info dict (little_endian, type_sizes) | pickle of the object
 *   with persistent ids ('storage', cls, key, location, numel, view_meta) |
 *   pickle list of storage keys | per key: i64 numel, numel * elsize bytes.
 *
 * Naming: dict keys (str or int) joined with '.', list/tuple indices as
 * numbers, object state dicts (TorchScript modules) add their attribute
 * names; a bare tensor is called "tensor". TorchScript modules contribute
 * only the attributes their class lists in __parameters__/__buffers__
 * (from code/), as state_dict() does.
 */
#include "formats/torch_internal.h"
#include "formats/checked.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- storage access ---- */

static sp_status torch_storage_data(sp_ckpt *ck, size_t i, const void **data, sp_error *err)
{
    torch_impl *ti = ck->impl;
    torch_store *st = &ti->st[i];
    if (ti->legacy) {
        static const unsigned char empty[1];
        *data = ck->storages[i].nbytes ? ti->mf.data + st->off : empty;
        return SP_OK;
    }
    if (st->owned) {
        *data = st->owned;
        return SP_OK;
    }
    void *owned;
    sp_status s = sp_zip_entry_data(&ti->zip, (size_t)st->entry, data, &owned, err);
    if (s)
        return s;
    st->owned = owned;
    st->loaded = true;
    return SP_OK;
}

static void torch_storage_release(sp_ckpt *ck, size_t i)
{
    torch_impl *ti = ck->impl;
    torch_store *st = &ti->st[i];
    if (ti->legacy) {
        sp_mapfile_drop(&ti->mf, st->off, ck->storages[i].nbytes);
        return;
    }
    free(st->owned);
    st->owned = NULL;
    st->loaded = false;
    sp_zip_entry_drop(&ti->zip, (size_t)st->entry);
}

static void torch_close(sp_ckpt *ck)
{
    torch_impl *ti = ck->impl;
    if (!ti)
        return;
    if (ti->st)
        for (size_t i = 0; i < ck->nstorages && i < ti->st_cap; i++)
            free(ti->st[i].owned);
    free(ti->st);
    free(ti->ent2st);
    free(ti->order);
    free(ti->prefix);
    if (ti->legacy)
        sp_mapfile_close(&ti->mf);
    else
        sp_zip_close(&ti->zip);
    free(ti);
    ck->impl = NULL;
}

static const sp_ckpt_backend torch_backend = {
    .name = "torch",
    .storage_data = torch_storage_data,
    .storage_release = torch_storage_release,
    .rewrite = sp_torch_rewrite,
    .close = torch_close,
};

/* ---- the walk over the value tree ---- */

/* string -> storage index, open addressing */
typedef struct keymap {
    const char **keys;
    size_t *vals;
    size_t cap, n;
} keymap;

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static long keymap_get(const keymap *m, const char *k)
{
    if (!m->cap)
        return -1;
    for (size_t i = hash_str(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i])
            return -1;
        if (!strcmp(m->keys[i], k))
            return (long)m->vals[i];
    }
}

static bool keymap_put(keymap *m, const char *k, size_t v)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        const char **nk = calloc(cap, sizeof *nk);
        size_t *nv = calloc(cap, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return false;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = hash_str(m->keys[i]) & (cap - 1);
                while (nk[j])
                    j = (j + 1) & (cap - 1);
                nk[j] = m->keys[i];
                nv[j] = m->vals[i];
            }
        free(m->keys);
        free(m->vals);
        m->keys = nk;
        m->vals = nv;
        m->cap = cap;
    }
    size_t i = hash_str(k) & (m->cap - 1);
    while (m->keys[i])
        i = (i + 1) & (m->cap - 1);
    m->keys[i] = k; /* borrowed: the storage's key, owned by ck */
    m->vals[i] = v;
    m->n++;
    return true;
}

/* TorchScript: which attributes of a class are parameters or buffers */
typedef struct script_class {
    char *qualname;  /* "__torch__.torch.nn.modules.linear.Linear" */
    char **names;
    size_t n;
    bool known;      /* found in code/ */
} script_class;

typedef struct walker {
    sp_ckpt *ck;
    torch_impl *ti;
    sp_error *err;
    const char *what;
    char *name;
    size_t nlen, ncap;
    size_t visits, max_visits;
    keymap keys;
    bool script;
    script_class *classes;
    size_t nclasses;
} walker;

static sp_status name_push(walker *w, const char *part, size_t plen, size_t *saved)
{
    *saved = w->nlen;
    size_t need = w->nlen + 1 + plen + 1;
    if (need > w->ncap) {
        size_t cap = w->ncap ? w->ncap : 256;
        while (cap < need)
            cap *= 2;
        char *n = realloc(w->name, cap);
        if (!n)
            return sp_error_set(w->err, SP_ERR_NOMEM, "out of memory");
        w->name = n;
        w->ncap = cap;
    }
    if (w->nlen)
        w->name[w->nlen++] = '.';
    memcpy(w->name + w->nlen, part, plen);
    w->nlen += plen;
    w->name[w->nlen] = '\0';
    return SP_OK;
}

static void name_pop(walker *w, size_t saved)
{
    w->nlen = saved;
    if (w->name)
        w->name[saved] = '\0';
}

static const char *cur_name(const walker *w) { return w->nlen ? w->name : "tensor"; }

static bool is_int(const sp_pk *n) { return n && n->kind == SP_PK_INT; }

/* Unwrap torch.Size((...)) into its tuple. */
static const sp_pk *as_shape(const sp_pk *n)
{
    if (n && n->kind == SP_PK_REDUCE && sp_pk_is_global(n->callable, "torch", "Size"))
        return sp_pk_item(n->args, 0);
    return n;
}

static sp_status bad(walker *w, const char *why)
{
    return sp_error_set(w->err, SP_ERR_FORMAT, "%s: tensor '%s': %s", w->what, cur_name(w), why);
}

/* Resolve a storage persistent id to a storage index (adding it). */
static sp_status storage_of(walker *w, const sp_pk *pid, sp_dtype *dtype, size_t *idx)
{
    if (!pid || pid->kind != SP_PK_PERSID)
        return bad(w, "storage is not a persistent id");
    const sp_pk *t = pid->args;
    const sp_pk *tag = sp_pk_item(t, 0), *cls = sp_pk_item(t, 1), *key = sp_pk_item(t, 2),
                *numel = sp_pk_item(t, 4);
    if (!tag || tag->kind != SP_PK_STR || strcmp(tag->s, "storage") || !cls ||
        cls->kind != SP_PK_GLOBAL || !key || key->kind != SP_PK_STR || !is_int(numel) ||
        numel->i < 0)
        return bad(w, "malformed storage persistent id");
    if (t->n >= 6 && t->items[5]->kind != SP_PK_NONE)
        return sp_error_set(w->err, SP_ERR_UNSUPPORTED,
                            "%s: tensor '%s': legacy storage views are not supported", w->what,
                            cur_name(w));
    sp_dtype dt = SP_DTYPE_INVALID;
    if (!strcmp(cls->s, "torch"))
        dt = !strcmp(cls->s2, "UntypedStorage") ? SP_U8 : sp_dtype_from_storage_class(cls->s2);
    if (dt == SP_DTYPE_INVALID)
        return sp_error_set(w->err, SP_ERR_UNSUPPORTED, "%s: tensor '%s': unsupported storage type %s.%s",
                            w->what, cur_name(w), cls->s, cls->s2);
    uint64_t nbytes;
    if (!sp_numel_bytes(numel->i, sp_dtype_size(dt), &nbytes))
        return bad(w, "absurd storage size");
    long have = keymap_get(&w->keys, key->s);
    if (have >= 0) {
        if (w->ck->storages[have].dtype != dt)
            return sp_error_set(w->err, SP_ERR_UNSUPPORTED,
                                "%s: tensor '%s': storage '%s' is used with two dtypes", w->what,
                                cur_name(w), key->s);
        *idx = (size_t)have;
        *dtype = dt;
        return SP_OK;
    }
    torch_impl *ti = w->ti;
    long entry = -1;
    if (!ti->legacy) {
        size_t need = strlen(ti->prefix) + strlen(key->s) + 16;
        char *rec = malloc(need);
        if (!rec)
            return sp_error_set(w->err, SP_ERR_NOMEM, "out of memory");
        snprintf(rec, need, "%s%sdata/%s", ti->prefix, *ti->prefix ? "/" : "", key->s);
        entry = sp_zip_find(&ti->zip, rec);
        if (entry < 0) {
            sp_status s = sp_error_set(w->err, SP_ERR_FORMAT,
                                       "%s: tensor '%s': storage record '%s' is missing", w->what,
                                       cur_name(w), rec);
            free(rec);
            return s;
        }
        free(rec);
        const sp_zip_entry *ze = &ti->zip.entries[entry];
        if (ze->usize < nbytes)
            return bad(w, "storage record is shorter than its persistent id says");
        /* a stored record may carry slack after the elements (the mapping
         * costs nothing); a deflated one is inflated into memory, so its
         * size must be exactly what the persistent id says */
        if (ze->method != 0 && ze->usize != nbytes)
            return bad(w, "compressed storage record is larger than its persistent id says");
        nbytes = ze->usize;
        if (ti->ent2st[entry] >= 0)
            return bad(w, "two storage keys name one record");
    }
    sp_status s = sp_ckpt_add_storage(w->ck, key->s, dt, nbytes, idx, w->err);
    if (s)
        return s;
    if (*idx >= ti->st_cap) {
        size_t cap = ti->st_cap ? ti->st_cap * 2 : 64;
        torch_store *n = realloc(ti->st, cap * sizeof *n);
        if (!n)
            return sp_error_set(w->err, SP_ERR_NOMEM, "out of memory");
        ti->st = n;
        ti->st_cap = cap;
    }
    memset(&ti->st[*idx], 0, sizeof ti->st[*idx]);
    ti->st[*idx].entry = entry;
    if (entry >= 0)
        ti->ent2st[entry] = (long)*idx;
    if (!keymap_put(&w->keys, w->ck->storages[*idx].key, *idx))
        return sp_error_set(w->err, SP_ERR_NOMEM, "out of memory");
    *dtype = dt;
    return SP_OK;
}

static sp_status add_tensor_v2(walker *w, const sp_pk *args)
{
    const sp_pk *pid = sp_pk_item(args, 0), *off = sp_pk_item(args, 1),
                *size = as_shape(sp_pk_item(args, 2)), *stride = as_shape(sp_pk_item(args, 3));
    if (!is_int(off) || !size || !stride ||
        (size->kind != SP_PK_TUPLE && size->kind != SP_PK_LIST) ||
        (stride->kind != SP_PK_TUPLE && stride->kind != SP_PK_LIST))
        return bad(w, "malformed _rebuild_tensor arguments");
    if (size->n != stride->n || size->n > SP_MAX_DIMS)
        return bad(w, "size and stride disagree or too many dimensions");
    sp_tensor t;
    memset(&t, 0, sizeof t);
    t.name = (char *)cur_name(w);
    t.ndim = (int)size->n;
    t.offset = off->i;
    for (size_t d = 0; d < size->n; d++) {
        if (!is_int(size->items[d]) || !is_int(stride->items[d]))
            return bad(w, "non-integer size or stride");
        t.shape[d] = size->items[d]->i;
        t.stride[d] = stride->items[d]->i;
        if (t.shape[d] < 0)
            return bad(w, "negative size");
    }
    if (!sp_shape_numel(t.ndim, t.shape, &t.numel))
        return bad(w, "absurd shape");
    sp_status s = storage_of(w, pid, &t.dtype, &t.storage);
    if (s)
        return s;
    return sp_ckpt_add_tensor(w->ck, &t, NULL, w->err);
}

/* If n is a tensor we understand, add it and set *is = true. */
static sp_status try_tensor(walker *w, const sp_pk *n, bool *is, int depth)
{
    *is = false;
    if (n->kind != SP_PK_REDUCE || !n->callable || n->callable->kind != SP_PK_GLOBAL)
        return SP_OK;
    const sp_pk *fn = n->callable;
    if (sp_pk_is_global(fn, "torch._utils", "_rebuild_tensor_v2") ||
        sp_pk_is_global(fn, "torch._utils", "_rebuild_tensor")) {
        *is = true;
        return add_tensor_v2(w, n->args);
    }
    if (sp_pk_is_global(fn, "torch._utils", "_rebuild_parameter") ||
        sp_pk_is_global(fn, "torch._utils", "_rebuild_parameter_with_state")) {
        const sp_pk *inner = sp_pk_item(n->args, 0);
        if (!inner || depth > 8)
            return bad(w, "malformed _rebuild_parameter arguments");
        return try_tensor(w, inner, is, depth + 1);
    }
    if (sp_pk_is_global(fn, "torch._tensor", "_rebuild_from_type_v2") ||
        sp_pk_is_global(fn, "torch._tensor", "_rebuild_from_type")) {
        const sp_pk *f = sp_pk_item(n->args, 0), *a = sp_pk_item(n->args, 2);
        if (f && a && (sp_pk_is_global(f, "torch._utils", "_rebuild_tensor_v2") ||
                       sp_pk_is_global(f, "torch._utils", "_rebuild_tensor"))) {
            *is = true;
            return add_tensor_v2(w, a);
        }
    }
    return SP_OK;
}

static sp_status walk(walker *w, const sp_pk *n, int depth);

static sp_status walk_pairs(walker *w, sp_pk *const *items, size_t n, int depth,
                            const script_class *only)
{
    for (size_t i = 0; i + 1 < n; i += 2) {
        const sp_pk *k = items[i], *v = items[i + 1];
        char num[32];
        const char *part;
        size_t plen;
        if (k->kind == SP_PK_STR) {
            part = k->s;
            plen = k->slen;
        } else if (k->kind == SP_PK_INT) {
            plen = (size_t)snprintf(num, sizeof num, "%" PRId64, k->i);
            part = num;
        } else {
            continue; /* no name path through other keys */
        }
        if (only && only->known && !(v->kind == SP_PK_NEWOBJ && v->callable &&
                                     v->callable->kind == SP_PK_GLOBAL &&
                                     !strncmp(v->callable->s, "__torch__", 9))) {
            /* a TorchScript module: submodules, and the attributes its class
             * lists as parameters or buffers (what state_dict() holds) */
            bool listed = false;
            for (size_t j = 0; j < only->n && !listed; j++)
                listed = !strcmp(only->names[j], part);
            if (!listed)
                continue;
        }
        size_t saved;
        sp_status s = name_push(w, part, plen, &saved);
        if (!s)
            s = walk(w, v, depth + 1);
        name_pop(w, saved);
        if (s)
            return s;
    }
    return SP_OK;
}

static const script_class *find_class(const walker *w, const sp_pk *g)
{
    if (!w->script || !g || g->kind != SP_PK_GLOBAL || strncmp(g->s, "__torch__", 9))
        return NULL;
    for (size_t i = 0; i < w->nclasses; i++) {
        const char *q = w->classes[i].qualname;
        size_t ml = strlen(g->s);
        if (!strncmp(q, g->s, ml) && q[ml] == '.' && !strcmp(q + ml + 1, g->s2))
            return &w->classes[i];
    }
    return NULL;
}

static sp_status walk(walker *w, const sp_pk *n, int depth)
{
    if (++w->visits > w->max_visits)
        return sp_error_set(w->err, SP_ERR_FORMAT, "%s: too many shared references in the pickle",
                            w->what);
    if (depth > SP_PICKLE_MAX_DEPTH)
        return sp_error_set(w->err, SP_ERR_FORMAT, "%s: objects nested deeper than %d at '%s'",
                            w->what, SP_PICKLE_MAX_DEPTH, w->nlen ? w->name : "");
    sp_status s = SP_OK;
    switch (n->kind) {
    case SP_PK_DICT:
        return walk_pairs(w, n->items, n->n, depth, NULL);
    case SP_PK_LIST:
    case SP_PK_TUPLE:
        for (size_t i = 0; i < n->n && !s; i++) {
            char num[32];
            size_t saved;
            int l = snprintf(num, sizeof num, "%zu", i);
            if (!(s = name_push(w, num, (size_t)l, &saved)))
                s = walk(w, n->items[i], depth + 1);
            name_pop(w, saved);
        }
        return s;
    case SP_PK_REDUCE:
    case SP_PK_NEWOBJ: {
        bool is;
        if ((s = try_tensor(w, n, &is, 0)) || is)
            return s;
        /* opaque object: follow names through its items and state */
        if (n->n && n->pairs)
            s = walk_pairs(w, n->items, n->n, depth, NULL);
        if (s || !n->state)
            return s;
        const sp_pk *st = n->state;
        if (st->kind == SP_PK_TUPLE && st->n == 2 && st->items[0]->kind == SP_PK_DICT)
            st = st->items[0]; /* (dict, slots) */
        if (st->kind == SP_PK_DICT)
            return walk_pairs(w, st->items, st->n, depth, find_class(w, n->callable));
        return SP_OK;
    }
    default:
        return SP_OK;
    }
}

/* ---- TorchScript class tables from code/ ---- */

static void free_classes(walker *w)
{
    for (size_t i = 0; i < w->nclasses; i++) {
        free(w->classes[i].qualname);
        for (size_t j = 0; j < w->classes[i].n; j++)
            free(w->classes[i].names[j]);
        free(w->classes[i].names);
    }
    free(w->classes);
    w->classes = NULL;
    w->nclasses = 0;
}

/* Parse `name = ["a", "b", ]` list items after p (one line). */
static bool add_list(script_class *c, const char *p, const char *end)
{
    const char *lb = memchr(p, '[', (size_t)(end - p));
    if (!lb)
        return true;
    p = lb + 1;
    while (p < end && *p != ']') {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q)
            break;
        const char *q2 = memchr(q + 1, '"', (size_t)(end - q - 1));
        if (!q2)
            break;
        char **nn = realloc(c->names, (c->n + 1) * sizeof *nn);
        if (!nn)
            return false;
        c->names = nn;
        if (!(c->names[c->n] = strndup(q + 1, (size_t)(q2 - q - 1))))
            return false;
        c->n++;
        p = q2 + 1;
    }
    return true;
}

/* Scan one code file: "class X(Module):" followed by __parameters__ and
 * __buffers__ lines. module is the dotted module of the file. */
static sp_status scan_code(walker *w, const char *module, const char *src, size_t len)
{
    const char *p = src, *end = src + len;
    script_class *cur = NULL;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le - p > 6 && !strncmp(p, "class ", 6)) {
            const char *nm = p + 6, *ne = nm;
            while (ne < le && *ne != '(' && *ne != ':')
                ne++;
            script_class *nc = realloc(w->classes, (w->nclasses + 1) * sizeof *nc);
            if (!nc)
                return sp_error_set(w->err, SP_ERR_NOMEM, "out of memory");
            w->classes = nc;
            cur = &w->classes[w->nclasses++];
            memset(cur, 0, sizeof *cur);
            size_t ql = strlen(module) + 1 + (size_t)(ne - nm) + 1;
            if (!(cur->qualname = malloc(ql)))
                return sp_error_set(w->err, SP_ERR_NOMEM, "out of memory");
            snprintf(cur->qualname, ql, "%s.%.*s", module, (int)(ne - nm), nm);
        } else if (cur) {
            const char *q = p;
            while (q < le && *q == ' ')
                q++;
            if ((le - q > 14 && !strncmp(q, "__parameters__", 14)) ||
                (le - q > 11 && !strncmp(q, "__buffers__", 11))) {
                cur->known = true;
                if (!add_list(cur, q, le))
                    return sp_error_set(w->err, SP_ERR_NOMEM, "out of memory");
            }
        }
        p = le + 1;
    }
    return SP_OK;
}

static sp_status load_classes(walker *w)
{
    sp_zip *z = &w->ti->zip;
    size_t pl = strlen(w->ti->prefix);
    char code[512];
    snprintf(code, sizeof code, "%s%scode/", w->ti->prefix, pl ? "/" : "");
    size_t cl = strlen(code);
    for (size_t i = 0; i < z->n; i++) {
        const char *nm = z->entries[i].name;
        size_t l = strlen(nm);
        if (strncmp(nm, code, cl) || l < cl + 3 || strcmp(nm + l - 3, ".py"))
            continue;
        /* code/__torch__/a/b.py -> module __torch__.a.b */
        char *mod = strndup(nm + cl, l - cl - 3);
        if (!mod)
            return sp_error_set(w->err, SP_ERR_NOMEM, "out of memory");
        for (char *c = mod; *c; c++)
            if (*c == '/')
                *c = '.';
        const void *data;
        void *owned;
        sp_status s = sp_zip_entry_data(z, i, &data, &owned, w->err);
        if (!s)
            s = scan_code(w, mod, data, (size_t)z->entries[i].usize);
        free(owned);
        free(mod);
        if (s)
            return s;
    }
    return SP_OK;
}

/* ---- open ---- */

static sp_status finish_tensors(sp_ckpt *ck, sp_error *err)
{
    for (size_t i = 0; i < ck->ntensors; i++) {
        sp_status s = sp_ckpt_validate_tensor(ck, &ck->tensors[i], err);
        if (s)
            return s;
    }
    return SP_OK;
}

static sp_status walk_root(sp_ckpt *ck, torch_impl *ti, const sp_pickle *pk, const char *what,
                           bool script, sp_error *err)
{
    walker w = {.ck = ck, .ti = ti, .err = err, .what = what, .script = script};
    w.max_visits = 16 * pk->nall + 4096;
    sp_status s = script ? load_classes(&w) : SP_OK;
    if (!s)
        s = walk(&w, pk->root, 0);
    free(w.name);
    free(w.keys.keys);
    free(w.keys.vals);
    free_classes(&w);
    return s;
}

static sp_status open_zip(sp_ckpt *ck, torch_impl *ti, sp_mapfile *mf, sp_error *err)
{
    sp_status s = sp_zip_open_map(&ti->zip, ck->path, mf, err);
    if (s)
        return s;
    sp_zip *z = &ti->zip;
    /* data.pkl in the archive's top folder */
    long pkl = -1;
    for (size_t i = 0; i < z->n; i++) {
        const char *nm = z->entries[i].name;
        const char *sl = strchr(nm, '/');
        if ((sl && !strcmp(sl + 1, "data.pkl")) || !strcmp(nm, "data.pkl")) {
            pkl = (long)i;
            break;
        }
    }
    if (pkl < 0)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': zip file without data.pkl (not a torch checkpoint)",
                            ck->path);
    const char *pn = z->entries[pkl].name;
    ti->prefix = strndup(pn, strlen(pn) - strlen("data.pkl") - (strchr(pn, '/') ? 1 : 0));
    ti->ent2st = malloc((z->n ? z->n : 1) * sizeof *ti->ent2st);
    if (!ti->prefix || !ti->ent2st)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < z->n; i++)
        ti->ent2st[i] = -1;
    char rec[600];
    const char *sep = *ti->prefix ? "/" : "";
    snprintf(rec, sizeof rec, "%s%sbyteorder", ti->prefix, sep);
    long bo = sp_zip_find(z, rec);
    if (bo >= 0) {
        const void *d;
        void *owned;
        if ((s = sp_zip_entry_data(z, (size_t)bo, &d, &owned, err)))
            return s;
        bool big = z->entries[bo].usize == 3 && !memcmp(d, "big", 3);
        free(owned);
        if (big)
            return sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': big-endian checkpoints are not supported",
                                ck->path);
    }
    bool script = false;
    snprintf(rec, sizeof rec, "%s%sconstants.pkl", ti->prefix, sep);
    if (sp_zip_find(z, rec) >= 0)
        script = true;
    snprintf(rec, sizeof rec, "%s%scode/", ti->prefix, sep);
    for (size_t i = 0; i < z->n && !script; i++)
        if (!strncmp(z->entries[i].name, rec, strlen(rec)))
            script = true;
    ck->format = script ? SP_FORMAT_TORCHSCRIPT : SP_FORMAT_TORCH_ZIP;

    const void *data;
    void *owned;
    if ((s = sp_zip_entry_data(z, (size_t)pkl, &data, &owned, err)))
        return s;
    char what[600];
    snprintf(what, sizeof what, "'%s': %s", ck->path, pn);
    sp_pickle pk;
    s = sp_pickle_parse(&pk, data, (size_t)z->entries[pkl].usize, NULL, what, err);
    free(owned);
    if (s)
        return s;
    s = walk_root(ck, ti, &pk, what, script, err);
    sp_pickle_release(&pk);
    if (!s)
        s = finish_tensors(ck, err);
    return s;
}

static sp_status open_legacy(sp_ckpt *ck, torch_impl *ti, sp_mapfile *mf, sp_error *err)
{
    ti->legacy = true;
    ck->format = SP_FORMAT_TORCH_LEGACY;
    ti->mf = *mf;
    sp_status s;
    const unsigned char *d = ti->mf.data;
    size_t size = (size_t)ti->mf.size, pos = 0, used;
    char what[600];
    sp_pickle pk;
    static const unsigned char magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                            0x20, 0x6a, 0xa8, 0x50, 0x19};
    snprintf(what, sizeof what, "'%s': header", ck->path);
    if ((s = sp_pickle_parse(&pk, d, size, &used, what, err)))
        return s;
    bool ok = pk.root->kind == SP_PK_BIGINT && pk.root->slen == 10 &&
              !memcmp(pk.root->s, magic, 10);
    sp_pickle_release(&pk);
    if (!ok)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': pickle without the torch magic number (not a torch checkpoint)",
                            ck->path);
    pos += used;
    if ((s = sp_pickle_parse(&pk, d + pos, size - pos, &used, what, err)))
        return s;
    ok = pk.root->kind == SP_PK_INT && pk.root->i == 1001;
    sp_pickle_release(&pk);
    if (!ok)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': unsupported legacy protocol version",
                            ck->path);
    pos += used;
    if ((s = sp_pickle_parse(&pk, d + pos, size - pos, &used, what, err)))
        return s;
    const sp_pk *si = pk.root;
    for (size_t i = 0; si->kind == SP_PK_DICT && i + 1 < si->n; i += 2)
        if (si->items[i]->kind == SP_PK_STR && !strcmp(si->items[i]->s, "little_endian") &&
            si->items[i + 1]->kind == SP_PK_BOOL && !si->items[i + 1]->b)
            ok = false;
    sp_pickle_release(&pk);
    if (!ok)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': big-endian checkpoints are not supported",
                            ck->path);
    pos += used;
    snprintf(what, sizeof what, "'%s': object pickle", ck->path);
    if ((s = sp_pickle_parse(&pk, d + pos, size - pos, &used, what, err)))
        return s;
    ti->main_off = pos;
    ti->main_len = used;
    s = walk_root(ck, ti, &pk, what, false, err);
    sp_pickle_release(&pk);
    if (s)
        return s;
    pos += used;
    snprintf(what, sizeof what, "'%s': storage key list", ck->path);
    if ((s = sp_pickle_parse(&pk, d + pos, size - pos, &used, what, err)))
        return s;
    pos += used;
    const sp_pk *keys = pk.root;
    if (keys->kind != SP_PK_LIST) {
        sp_pickle_release(&pk);
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': storage key list is not a list", ck->path);
    }
    ti->order = malloc((keys->n ? keys->n : 1) * sizeof *ti->order);
    bool *seen = calloc(ck->nstorages ? ck->nstorages : 1, 1);
    if (!ti->order || !seen) {
        free(seen);
        sp_pickle_release(&pk);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    for (size_t k = 0; k < keys->n && !s; k++) {
        const sp_pk *key = keys->items[k];
        size_t idx = SIZE_MAX;
        for (size_t j = 0; key->kind == SP_PK_STR && j < ck->nstorages; j++)
            if (!strcmp(ck->storages[j].key, key->s)) {
                idx = j;
                break;
            }
        if (idx == SIZE_MAX || seen[idx]) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': storage list names an unknown or repeated key",
                             ck->path);
            break;
        }
        seen[idx] = true;
        if (size - pos < 8) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': truncated (storage '%s')", ck->path, key->s);
            break;
        }
        uint64_t numel = 0;
        for (int b = 7; b >= 0; b--)
            numel = (numel << 8) | d[pos + (size_t)b];
        pos += 8;
        uint64_t nb;
        if (!sp_mul_u64(numel, sp_dtype_size(ck->storages[idx].dtype), &nb) ||
            !sp_range_ok(pos, nb, size)) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': truncated (storage '%s' needs %" PRIu64
                             " elements)", ck->path, key->s, numel);
            break;
        }
        if (nb < ck->storages[idx].nbytes) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': storage '%s' is shorter than its persistent id says",
                             ck->path, key->s);
            break;
        }
        ck->storages[idx].nbytes = nb;
        ti->st[idx].off = pos;
        ti->order[ti->norder++] = idx;
        pos += (size_t)nb;
    }
    for (size_t j = 0; !s && j < ck->nstorages; j++)
        if (!seen[j])
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': storage '%s' has no data", ck->path,
                             ck->storages[j].key);
    free(seen);
    sp_pickle_release(&pk);
    if (!s)
        s = finish_tensors(ck, err);
    return s;
}

sp_status sp_torch_open(sp_ckpt *ck, sp_error *err)
{
    torch_impl *ti = calloc(1, sizeof *ti);
    if (!ti)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    ti->mf.fd = -1;
    ck->impl = ti;
    ck->be = &torch_backend;
    sp_mapfile mf;
    sp_status s = sp_ckpt_map(ck, &mf, err);
    if (s)
        return s;
    bool zip = mf.size >= 4 && mf.data[0] == 'P' && mf.data[1] == 'K';
    if (zip)
        return open_zip(ck, ti, &mf, err); /* the zip owns mf now */
    ti->legacy = true;                     /* close unmaps ti->mf */
    return open_legacy(ck, ti, &mf, err);
}
