/*
 * Reading a recipe file into a tree of nodes (doc.h): the format from the
 * content, Markdown front matter, libyaml's event parser with anchors,
 * aliases, tags and merge keys, and cJSON for the JSON libyaml refuses.
 *
 * Hostile files: aliases are expanded by copying, under a budget of nodes
 * (a "billion laughs" file stops at RDOC_MAX_NODES); nesting is bounded by
 * RDOC_MAX_DEPTH; the builder keeps its own stack (no recursion over the
 * input), and the recursive helpers (free, clone) only ever see trees
 * within that depth.
 */
#include "recipes/doc.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define RDOC_MAX_NODES 200000
#define RDOC_MAX_DEPTH 64

/* ---- problems */

void rdiag_add(rdiag *d, bool warning, int line, int col, const char *path, const char *fmt, ...)
{
    if (!warning)
        d->errors++;
    if (d->n >= RDIAG_MAX) {
        d->dropped++;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        sp_recipe_problem *v = realloc(d->v, cap * sizeof *v);
        if (!v) {
            d->nomem = true;
            d->dropped++;
            return;
        }
        d->v = v;
        d->cap = cap;
    }
    sp_recipe_problem *p = &d->v[d->n++];
    memset(p, 0, sizeof *p);
    p->warning = warning;
    p->line = line > 0 ? line : 0;
    p->column = line > 0 ? col : 0;
    snprintf(p->path, sizeof p->path, "%s", path ? path : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof p->message, fmt, ap);
    va_end(ap);
}

void rdiag_release(rdiag *d)
{
    free(d->v);
    memset(d, 0, sizeof *d);
}

const char *rformat_name(rformat f)
{
    return f == RF_JSON ? "json" : f == RF_MARKDOWN ? "markdown" : "yaml";
}

/* ---- nodes */

rnode *rnode_new(rkind kind, int line, int col)
{
    rnode *n = calloc(1, sizeof *n);
    if (n) {
        n->kind = kind;
        n->line = line;
        n->col = col;
    }
    return n;
}

rnode *rnode_new_num(double v, bool is_int, int line, int col)
{
    rnode *n = rnode_new(RK_NUM, line, col);
    char buf[64];
    if (!n)
        return NULL;
    n->num = v;
    n->is_int = is_int;
    if (is_int)
        snprintf(buf, sizeof buf, "%.0f", v);
    else
        snprintf(buf, sizeof buf, "%.17g", v);
    if (!(n->text = strdup(buf))) {
        free(n);
        return NULL;
    }
    return n;
}

rnode *rnode_new_str(const char *s, int line, int col)
{
    rnode *n = rnode_new(RK_STR, line, col);
    if (n && !(n->text = strdup(s))) {
        free(n);
        return NULL;
    }
    return n;
}

void rnode_free(rnode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++) {
        rnode_free(n->items[i]);
        if (n->keys)
            rnode_free(n->keys[i]);
    }
    free(n->items);
    free(n->keys);
    free(n->tag);
    free(n->text);
    free(n);
}

rnode *rnode_clone(const rnode *s)
{
    rnode *n = rnode_new(s->kind, s->line, s->col);
    if (!n)
        return NULL;
    *n = *s;
    n->tag = NULL;
    n->text = NULL;
    n->items = NULL;
    n->keys = NULL;
    n->n = 0;
    if ((s->tag && !(n->tag = strdup(s->tag))) || (s->text && !(n->text = strdup(s->text))))
        goto fail;
    if (s->n) {
        n->items = calloc(s->n, sizeof *n->items);
        if (!n->items)
            goto fail;
        if (s->keys && !(n->keys = calloc(s->n, sizeof *n->keys)))
            goto fail;
        for (size_t i = 0; i < s->n; i++) {
            n->n = i + 1;
            if (!(n->items[i] = rnode_clone(s->items[i])))
                goto fail;
            if (s->keys && !(n->keys[i] = rnode_clone(s->keys[i])))
                goto fail;
        }
    }
    return n;
fail:
    rnode_free(n);
    return NULL;
}

rnode *rnode_get(const rnode *m, const char *k)
{
    if (!m || m->kind != RK_MAP)
        return NULL;
    for (size_t i = 0; i < m->n; i++)
        if (m->keys[i]->text && !strcmp(m->keys[i]->text, k))
            return m->items[i];
    return NULL;
}

const char *rnode_kind_name(const rnode *n)
{
    switch (n ? n->kind : RK_NULL) {
    case RK_NULL: return "null";
    case RK_BOOL: return "a boolean";
    case RK_NUM: return "a number";
    case RK_STR: return "a string";
    case RK_SEQ: return "a list";
    case RK_MAP: return "a map";
    case RK_BAD: return "an invalid value";
    }
    return "?";
}

/* Append item (and key, for maps) to a container. */
static bool node_append(rnode *c, rnode *key, rnode *item)
{
    if ((c->n & (c->n - 1)) == 0) { /* grow at powers of two */
        size_t cap = c->n ? c->n * 2 : 4;
        rnode **ni = realloc(c->items, cap * sizeof *ni);
        if (!ni)
            return false;
        c->items = ni;
        if (c->kind == RK_MAP) {
            rnode **nk = realloc(c->keys, cap * sizeof *nk);
            if (!nk)
                return false;
            c->keys = nk;
        }
    }
    if (c->kind == RK_MAP)
        c->keys[c->n] = key;
    c->items[c->n++] = item;
    return true;
}

/* ---- a string -> index map (anchors, the keys of one map): a hostile file
 * with many keys or anchors costs linear time, not quadratic */

typedef struct strmap {
    const char **keys; /* borrowed */
    size_t *vals;
    size_t cap, n;
} strmap;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool strmap_get(const strmap *m, const char *k, size_t *v)
{
    if (!m->cap)
        return false;
    for (size_t i = str_hash(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i])
            return false;
        if (!strcmp(m->keys[i], k)) {
            *v = m->vals[i];
            return true;
        }
    }
}

/* Set k -> v (k borrowed: it must outlive the map). False on out-of-memory. */
static bool strmap_put(strmap *m, const char *k, size_t v)
{
    if (2 * (m->n + 1) > m->cap) {
        strmap g = {0};
        g.cap = m->cap ? 2 * m->cap : 16;
        g.keys = calloc(g.cap, sizeof *g.keys);
        g.vals = calloc(g.cap, sizeof *g.vals);
        if (!g.keys || !g.vals) {
            free(g.keys);
            free(g.vals);
            return false;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i])
                strmap_put(&g, m->keys[i], m->vals[i]); /* fits: no growth */
        free(m->keys);
        free(m->vals);
        *m = g;
    }
    size_t i = str_hash(k) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], k))
        i = (i + 1) & (m->cap - 1);
    if (!m->keys[i])
        m->n++;
    m->keys[i] = k;
    m->vals[i] = v;
    return true;
}

static void strmap_release(strmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- scalar resolution (PyYAML's safe_load, YAML 1.1) */

static bool in_words(const char *s, const char *const *w)
{
    for (; *w; w++)
        if (!strcmp(s, *w))
            return true;
    return false;
}

/* A number written as in YAML or Python: decimal or hex integers, floats
 * with or without a dot or exponent, '_' between digits, .inf/.nan. */
static bool parse_number(const char *s, double *v, bool *is_int)
{
    char buf[128];
    size_t k = 0;
    if (!*s || strlen(s) >= sizeof buf)
        return false;
    static const char *const inf[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", NULL};
    static const char *const ninf[] = {"-.inf", "-.Inf", "-.INF", NULL};
    static const char *const nan_[] = {".nan", ".NaN", ".NAN", NULL};
    if (in_words(s, inf) || in_words(s, ninf) || in_words(s, nan_)) {
        *v = in_words(s, nan_) ? NAN : in_words(s, ninf) ? -INFINITY : INFINITY;
        *is_int = false;
        return true;
    }
    for (const char *p = s; *p; p++) {
        if (*p == '_') {
            if (p == s || !isxdigit((unsigned char)p[-1]) || !isxdigit((unsigned char)p[1]))
                return false;
            continue;
        }
        if (!isxdigit((unsigned char)*p) && !strchr("+-.xXeE", *p))
            return false;
        buf[k++] = *p;
    }
    buf[k] = '\0';
    const char *d = buf + (buf[0] == '+' || buf[0] == '-');
    if (!*d)
        return false;
    char *end;
    errno = 0;
    if (d[0] == '0' && (d[1] == 'x' || d[1] == 'X')) {
        if (!d[2])
            return false;
        unsigned long long u = strtoull(d + 2, &end, 16);
        if (*end || errno || u > (1ull << 53))
            return false;
        *v = buf[0] == '-' ? -(double)u : (double)u;
        *is_int = true;
        return true;
    }
    /* only digits, one dot, one exponent: strtod alone would take "0x", "inf" */
    bool digit = false;
    for (const char *p = d; *p; p++) {
        if (isdigit((unsigned char)*p))
            digit = true;
        else if (*p == 'e' || *p == 'E') {
            if (!digit)
                return false;
            break;
        } else if (*p != '.')
            return false;
    }
    if (!digit)
        return false;
    *v = strtod(buf, &end);
    if (*end || end == buf)
        return false;
    *is_int = !strpbrk(buf, ".eE");
    return true;
}

/* Resolve a plain (unquoted, untagged) scalar. */
static void resolve_plain(rnode *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON",
                                        NULL};
    static const char *const falses[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off",
                                         "OFF", NULL};
    if (in_words(n->text, nulls)) {
        n->kind = RK_NULL;
    } else if (in_words(n->text, trues) || in_words(n->text, falses)) {
        n->kind = RK_BOOL;
        n->b = in_words(n->text, trues);
    } else if (parse_number(n->text, &n->num, &n->is_int)) {
        n->kind = RK_NUM;
    } else {
        n->kind = RK_STR;
    }
}

#define YAML_TAG_PREFIX "tag:yaml.org,2002:"

/* A scalar event into a node: quoted -> string; plain -> resolved; the
 * standard tags force a kind; a local tag is kept. */
static rnode *scalar_node(const yaml_event_t *ev, int line, int col, rdiag *d, bool *bad)
{
    const char *tag = (const char *)ev->data.scalar.tag;
    rnode *n = rnode_new(RK_STR, line, col);
    if (!n)
        return NULL;
    n->text = malloc(ev->data.scalar.length + 1);
    if (!n->text) {
        free(n);
        return NULL;
    }
    memcpy(n->text, ev->data.scalar.value, ev->data.scalar.length);
    n->text[ev->data.scalar.length] = '\0';
    if (strlen(n->text) != ev->data.scalar.length) {
        rdiag_add(d, false, line, col, NULL, "a string contains a NUL character");
        *bad = true;
    }
    bool quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    if (tag && !strncmp(tag, YAML_TAG_PREFIX, strlen(YAML_TAG_PREFIX))) {
        const char *t = tag + strlen(YAML_TAG_PREFIX);
        if (!strcmp(t, "str")) {
            n->quoted = true;
            return n;
        }
        resolve_plain(n);
        bool ok = (!strcmp(t, "int") && n->kind == RK_NUM && n->is_int) ||
                  (!strcmp(t, "float") && n->kind == RK_NUM) ||
                  (!strcmp(t, "bool") && n->kind == RK_BOOL) ||
                  (!strcmp(t, "null") && n->kind == RK_NULL);
        if (!ok) {
            rdiag_add(d, false, line, col, NULL, "'%s' is not a valid !!%s", n->text, t);
            *bad = true;
        }
        return n;
    }
    if (tag && tag[0] == '!') {
        const char *t = strrchr(tag, '.'); /* "!pytorch.GMPruningModifier" */
        if (!(n->tag = strdup(t ? t + 1 : tag + 1))) {
            rnode_free(n);
            return NULL;
        }
    }
    if (quoted)
        n->quoted = true;
    else
        resolve_plain(n);
    return n;
}

/* ---- the event-driven builder */

typedef struct anchor {
    char *name;
    const rnode *node; /* in the tree, complete */
} anchor;

typedef struct frame {
    rnode *node;
    rnode *key;   /* maps: a key waiting for its value */
    char *anchor; /* registered when the node is complete */
} frame;

typedef struct builder {
    rdiag *d;
    frame stack[RDOC_MAX_DEPTH + 1];
    int depth;
    anchor *anchors;
    size_t nanchors;
    strmap anchor_at; /* name -> index in anchors */
    size_t nodes; /* created so far, copies of aliases included */
    rnode *root;
    rnode **dropped; /* nodes left out (duplicate keys, merged maps): freed
                        last, because an anchor may still point into them */
    size_t ndropped;
    int line0;   /* lines above the YAML (Markdown front matter) */
    bool failed; /* a problem that stops the reading */
} builder;

/* Leave a node out of the tree. Returns false on out-of-memory (then the
 * node is freed at once: the parse stops, no alias is read again). */
static bool discard(builder *b, rnode *n)
{
    if (!n)
        return true;
    rnode **nd = realloc(b->dropped, (b->ndropped + 1) * sizeof *nd);
    if (!nd) {
        rnode_free(n);
        return false;
    }
    b->dropped = nd;
    nd[b->ndropped++] = n;
    return true;
}

static size_t count_nodes(const rnode *n, size_t limit)
{
    size_t c = 1;
    for (size_t i = 0; i < n->n && c <= limit; i++) {
        c += count_nodes(n->items[i], limit);
        if (n->keys)
            c += count_nodes(n->keys[i], limit);
    }
    return c;
}

/* The entries of a finished map: a key given twice is a problem (the first
 * stays); YAML 1.1 merge keys ("<<: *base", or a list of maps) then add the
 * entries of the merged maps that the map does not set itself. nframes:
 * the frames above the map, for the paths of problems. */
static void node_path(const builder *b, int nframes, const char *last, char *buf, size_t len);

static bool finish_map(builder *b, rnode *m, int nframes)
{
    strmap seen = {0};
    rnode **merges = NULL;
    size_t nmerges = 0, kept = 0;
    bool ok = true;
    for (size_t i = 0; i < m->n && ok; i++) {
        rnode *k = m->keys[i], *v = m->items[i];
        size_t at;
        if (!k->quoted && k->kind == RK_STR && !strcmp(k->text, "<<")) {
            rnode **nm = realloc(merges, (nmerges + 1) * sizeof *nm);
            ok = nm && discard(b, k);
            if (nm) {
                merges = nm;
                merges[nmerges++] = v;
            }
            continue;
        }
        if (strmap_get(&seen, k->text, &at)) {
            const rnode *first = m->keys[at];
            char path[192];
            node_path(b, nframes, k->text, path, sizeof path);
            rdiag_add(b->d, false, k->line, k->col, path,
                      "given twice (first at line %d, column %d)", first->line, first->col);
            bool kk = discard(b, k);
            ok = discard(b, v) && kk;
            continue;
        }
        m->keys[kept] = k;
        m->items[kept] = v;
        ok = strmap_put(&seen, k->text, kept);
        kept++;
    }
    if (ok)
        m->n = kept;
    for (size_t g = 0; g < nmerges && ok; g++) {
        const rnode *v = merges[g];
        size_t nsrc = v->kind == RK_SEQ ? v->n : 1;
        for (size_t s = 0; s < nsrc && ok; s++) {
            const rnode *src = v->kind == RK_SEQ ? v->items[s] : v;
            if (src->kind != RK_MAP) {
                rdiag_add(b->d, false, v->line, v->col, NULL,
                          "'<<' merges maps, but its value is %s", rnode_kind_name(src));
                b->failed = true;
                break;
            }
            for (size_t e = 0; e < src->n && ok; e++) {
                size_t at;
                if (strmap_get(&seen, src->keys[e]->text, &at))
                    continue;
                rnode *nk = rnode_clone(src->keys[e]), *nv = rnode_clone(src->items[e]);
                if (!nk || !nv || !node_append(m, nk, nv)) {
                    rnode_free(nk);
                    rnode_free(nv);
                    ok = false;
                    break;
                }
                ok = strmap_put(&seen, nk->text, m->n - 1);
            }
        }
    }
    for (size_t g = 0; g < nmerges; g++)
        if (!discard(b, merges[g]))
            ok = false;
    free(merges);
    strmap_release(&seen);
    return ok;
}

/* The path of a key of a map below the first nframes frames:
 * "pruning_modifiers[0].final_sparsity". */
static void node_path(const builder *b, int nframes, const char *last, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < nframes && k < len; i++) {
        const frame *f = &b->stack[i];
        if (f->node->kind == RK_SEQ)
            k += (size_t)snprintf(buf + k, len - k, "[%zu]", f->node->n);
        else if (f->key)
            k += (size_t)snprintf(buf + k, len - k, "%s%s", k ? "." : "", f->key->text);
    }
    if (k < len)
        snprintf(buf + k, len - k, "%s%s", k ? "." : "", last);
}

/* Hand a complete node to its parent (or make it the root). */
static bool attach(builder *b, rnode *n)
{
    if (b->depth == 0) {
        if (b->root)
            return discard(b, n);
        b->root = n;
        return true;
    }
    frame *f = &b->stack[b->depth - 1];
    if (f->node->kind == RK_SEQ) {
        if (!node_append(f->node, NULL, n)) {
            rnode_free(n);
            return false;
        }
        return true;
    }
    if (!f->key) {
        if (n->kind == RK_SEQ || n->kind == RK_MAP) {
            rdiag_add(b->d, false, n->line, n->col, NULL, "a map key must be a plain value, not %s",
                      rnode_kind_name(n));
            b->failed = true;
            return discard(b, n);
        }
        if (!n->text && !(n->text = strdup(""))) {
            rnode_free(n);
            return false;
        }
        f->key = n;
        return true;
    }
    rnode *key = f->key;
    f->key = NULL;
    /* duplicates and merge keys: when the map ends (finish_map) */
    if (!node_append(f->node, key, n)) {
        rnode_free(key);
        rnode_free(n);
        return false;
    }
    return true;
}

static bool count_node(builder *b, int line, int col, size_t k)
{
    b->nodes += k;
    if (b->nodes > RDOC_MAX_NODES) {
        rdiag_add(b->d, false, line, col, NULL,
                  "the recipe has more than %d values (counting what its aliases copy)",
                  RDOC_MAX_NODES);
        b->failed = true;
        return false;
    }
    return true;
}

static bool add_anchor(builder *b, char *name, const rnode *n)
{
    size_t at;
    if (strmap_get(&b->anchor_at, name, &at)) { /* YAML: a later anchor replaces */
        b->anchors[at].node = n;
        free(name);
        return true;
    }
    if ((b->nanchors & (b->nanchors - 1)) == 0) { /* grow at powers of two */
        anchor *na = realloc(b->anchors, (b->nanchors ? 2 * b->nanchors : 8) * sizeof *na);
        if (!na) {
            free(name);
            return false;
        }
        b->anchors = na;
    }
    b->anchors[b->nanchors].name = name;
    b->anchors[b->nanchors].node = n;
    if (!strmap_put(&b->anchor_at, name, b->nanchors)) {
        free(name);
        return false;
    }
    b->nanchors++;
    return true;
}

/* One event. Returns false on out-of-memory; problems set b->failed. */
static bool on_event(builder *b, const yaml_event_t *ev)
{
    int line = b->line0 + (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        if (!count_node(b, line, col, 1))
            return true;
        bool bad = false;
        rnode *n = scalar_node(ev, line, col, b->d, &bad);
        if (!n)
            return false;
        if (bad)
            b->failed = true;
        const rnode *keep = n;
        if (!attach(b, n))
            return false;
        if (ev->data.scalar.anchor) {
            char *a = strdup((const char *)ev->data.scalar.anchor);
            if (!a || !add_anchor(b, a, keep))
                return false;
        }
        return true;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        if (b->depth >= RDOC_MAX_DEPTH) {
            rdiag_add(b->d, false, line, col, NULL, "nested more than %d levels deep",
                      RDOC_MAX_DEPTH);
            b->failed = true;
            return true;
        }
        if (!count_node(b, line, col, 1))
            return true;
        rnode *n = rnode_new(seq ? RK_SEQ : RK_MAP, line, col);
        if (!n)
            return false;
        const char *tag = (const char *)(seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag);
        const char *anc = (const char *)(seq ? ev->data.sequence_start.anchor
                                             : ev->data.mapping_start.anchor);
        if (tag && tag[0] == '!') {
            const char *t = strrchr(tag, '.');
            if (!(n->tag = strdup(t ? t + 1 : tag + 1))) {
                rnode_free(n);
                return false;
            }
        } else if (tag && strcmp(tag, seq ? YAML_TAG_PREFIX "seq" : YAML_TAG_PREFIX "map")) {
            rdiag_add(b->d, false, line, col, NULL, "tag '%s' cannot be used on a %s", tag,
                      seq ? "list" : "map");
            b->failed = true;
        }
        frame *f = &b->stack[b->depth++];
        f->node = n;
        f->key = NULL;
        f->anchor = NULL;
        if (anc && !(f->anchor = strdup(anc)))
            return false;
        return true;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: {
        frame f = b->stack[--b->depth];
        if (!discard(b, f.key)) { /* a map ended on a key (libyaml gives it a null first) */
            rnode_free(f.node);
            free(f.anchor);
            return false;
        }
        if (f.node->kind == RK_MAP && !finish_map(b, f.node, b->depth)) {
            rnode_free(f.node);
            free(f.anchor);
            return false;
        }
        const rnode *keep = f.node;
        if (!attach(b, f.node)) {
            free(f.anchor);
            return false;
        }
        if (f.anchor && !add_anchor(b, f.anchor, keep))
            return false;
        return true;
    }
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        const rnode *src = NULL;
        size_t at;
        if (strmap_get(&b->anchor_at, name, &at))
            src = b->anchors[at].node;
        if (!src) {
            rdiag_add(b->d, false, line, col, NULL, "alias '*%s' names no anchor defined before it",
                      name);
            b->failed = true;
            return true;
        }
        if (!count_node(b, line, col, count_nodes(src, RDOC_MAX_NODES)))
            return true;
        rnode *n = rnode_clone(src);
        if (!n)
            return false;
        return attach(b, n);
    }
    default:
        return true;
    }
}

static void builder_release(builder *b)
{
    while (b->depth > 0) {
        frame *f = &b->stack[--b->depth];
        rnode_free(f->node);
        rnode_free(f->key);
        free(f->anchor);
    }
    for (size_t i = 0; i < b->nanchors; i++)
        free(b->anchors[i].name);
    free(b->anchors);
    strmap_release(&b->anchor_at);
    for (size_t i = 0; i < b->ndropped; i++)
        rnode_free(b->dropped[i]);
    free(b->dropped);
}

/* libyaml's problem, said for people. */
static void yaml_problem(rdiag *d, const yaml_parser_t *p, const char *text, size_t len, int line0)
{
    int line = line0 + (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    size_t at = p->problem_mark.index;
    const char *what = p->problem ? p->problem : "syntax error";
    if (at < len && text[at] == '\t' && strstr(what, "cannot start any token")) {
        rdiag_add(d, false, line, col, NULL,
                  "a tab character: YAML indents with spaces only");
        return;
    }
    if (p->context)
        rdiag_add(d, false, line, col, NULL, "invalid YAML: %s %s (line %d)", what, p->context,
                  line0 + (int)p->context_mark.line + 1);
    else
        rdiag_add(d, false, line, col, NULL, "invalid YAML: %s", what);
}

/* Returns the root, or NULL with a problem (or on out-of-memory: *nomem). */
static rnode *parse_yaml(const char *text, size_t len, int line0, rdiag *d, bool *nomem)
{
    yaml_parser_t p;
    yaml_event_t ev;
    builder b = {.d = d, .line0 = line0};
    int docs = 0;
    bool done = false;
    *nomem = false;
    if (!yaml_parser_initialize(&p)) {
        *nomem = true;
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    while (!done && !b.failed) {
        if (!yaml_parser_parse(&p, &ev)) {
            if (p.error == YAML_MEMORY_ERROR)
                *nomem = true;
            else
                yaml_problem(d, &p, text, len, line0);
            b.failed = true;
            break;
        }
        if (ev.type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            rdiag_add(d, false, line0 + (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1, NULL,
                      "a second YAML document: a recipe is one document (a Markdown recipe "
                      "card has its YAML between the first two '---' lines)");
            b.failed = true;
        } else if (ev.type == YAML_STREAM_END_EVENT) {
            done = true;
        } else if (!on_event(&b, &ev)) {
            *nomem = true;
            b.failed = true;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    builder_release(&b);
    if (b.failed) {
        rnode_free(b.root);
        return NULL;
    }
    if (!b.root && !(b.root = rnode_new(RK_NULL, 1, 1)))
        *nomem = true;
    return b.root;
}

/* ---- JSON through cJSON (no positions) */

static rnode *from_cjson(const cJSON *j, rdiag *d, int depth, bool *nomem)
{
    if (depth > RDOC_MAX_DEPTH) {
        rdiag_add(d, false, 0, 0, NULL, "nested more than %d levels deep", RDOC_MAX_DEPTH);
        return NULL;
    }
    rnode *n = NULL;
    if (cJSON_IsNull(j)) {
        n = rnode_new(RK_NULL, 0, 0);
    } else if (cJSON_IsBool(j)) {
        if ((n = rnode_new(RK_BOOL, 0, 0))) {
            n->b = cJSON_IsTrue(j);
            n->text = strdup(n->b ? "true" : "false");
        }
    } else if (cJSON_IsNumber(j)) {
        double v = j->valuedouble;
        n = rnode_new_num(v, v == floor(v) && fabs(v) < 9007199254740992.0, 0, 0);
    } else if (cJSON_IsString(j)) {
        if ((n = rnode_new_str(j->valuestring, 0, 0)))
            n->quoted = true;
    } else if (cJSON_IsArray(j) || cJSON_IsObject(j)) {
        bool obj = cJSON_IsObject(j);
        if (!(n = rnode_new(obj ? RK_MAP : RK_SEQ, 0, 0))) {
            *nomem = true;
            return NULL;
        }
        strmap seen = {0};
        for (const cJSON *c = j->child; c; c = c->next) {
            rnode *v = from_cjson(c, d, depth + 1, nomem), *k = NULL;
            if (!v) {
                strmap_release(&seen);
                rnode_free(n);
                return NULL;
            }
            if (obj) {
                size_t at;
                if (strmap_get(&seen, c->string, &at)) {
                    rdiag_add(d, false, 0, 0, NULL, "key '%s' is given twice", c->string);
                    rnode_free(v);
                    continue;
                }
                if (!(k = rnode_new_str(c->string, 0, 0)) || !node_append(n, k, v) ||
                    !strmap_put(&seen, k->text, n->n - 1)) {
                    if (!n->n || n->keys[n->n - 1] != k) { /* not in n: free them here */
                        rnode_free(k);
                        rnode_free(v);
                    }
                    strmap_release(&seen);
                    rnode_free(n);
                    *nomem = true;
                    return NULL;
                }
            } else if (!node_append(n, NULL, v)) {
                rnode_free(v);
                rnode_free(n);
                *nomem = true;
                return NULL;
            }
        }
        strmap_release(&seen);
        return n;
    }
    if (!n || ((n->kind == RK_BOOL) && !n->text)) {
        rnode_free(n);
        *nomem = true;
        return NULL;
    }
    return n;
}

static void text_position(const char *text, size_t len, const char *at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at && p < text + len; p++) {
        if (*p == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static rnode *parse_json(const char *text, size_t len, rdiag *d, bool *nomem)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    int line, col;
    if (!root) {
        text_position(text, len, end ? end : text, &line, &col);
        rdiag_add(d, false, line, col, NULL, "invalid JSON");
        return NULL;
    }
    for (const char *p = end; p && p < text + len && *p; p++)
        if (!isspace((unsigned char)*p)) {
            text_position(text, len, p, &line, &col);
            rdiag_add(d, false, line, col, NULL, "invalid JSON: text after the recipe");
            cJSON_Delete(root);
            return NULL;
        }
    rnode *n = from_cjson(root, d, 0, nomem);
    cJSON_Delete(root);
    return n;
}

/* ---- the format from the content */

static const char *skip_blank(const char *p, const char *end)
{
    while (p < end && isspace((unsigned char)*p))
        p++;
    return p;
}

/* Is [p, end) a line that is just a front matter fence ("---", "+++", and
 * "..." when closing), trailing blanks allowed? */
static bool fence_line(const char *p, const char *end, bool closing)
{
    if (end - p < 3)
        return false;
    if (strncmp(p, "---", 3) && strncmp(p, "+++", 3) && !(closing && !strncmp(p, "...", 3)))
        return false;
    for (p += 3; p < end && *p != '\n'; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r')
            return false;
    return true;
}

/* A Markdown recipe card: optional blank lines and HTML comments, a fence
 * line, the YAML, a closing fence line, then anything. Finds the YAML;
 * *body: something follows the closing fence (else it is a YAML document
 * between "---" and "..."). */
static bool front_matter(const char *text, size_t len, size_t *start, size_t *flen, int *line0,
                         bool *body)
{
    const char *end = text + len, *p = text;
    for (;;) {
        p = skip_blank(p, end);
        if (end - p >= 4 && !strncmp(p, "<!--", 4)) {
            const char *c = NULL;
            for (const char *q = p + 4; q + 3 <= end; q++)
                if (!strncmp(q, "-->", 3)) {
                    c = q;
                    break;
                }
            if (!c)
                return false;
            p = c + 3;
            continue;
        }
        break;
    }
    /* back to the start of the line */
    while (p > text && p[-1] != '\n')
        p--;
    if (!fence_line(p, end, false))
        return false;
    const char *y = memchr(p, '\n', (size_t)(end - p));
    if (!y)
        return false;
    y++;
    for (const char *q = y; q < end;) {
        const char *nl = memchr(q, '\n', (size_t)(end - q));
        const char *le = nl ? nl : end;
        if (fence_line(q, le, true)) {
            *start = (size_t)(y - text);
            *flen = (size_t)(q - y);
            int l = 1;
            for (const char *r = text; r < y; r++)
                l += *r == '\n';
            *line0 = l - 1;
            *body = skip_blank(le, end) < end;
            return true;
        }
        if (!nl)
            break;
        q = nl + 1;
    }
    return false;
}

bool rdoc_parse(rnode **out, const char *text, size_t len, rformat *fmt, rdiag *d)
{
    bool nomem = false;
    const char *p = text, *end = text + len;
    *out = NULL;
    if (len >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
        (unsigned char)p[2] == 0xBF)
        p += 3; /* a UTF-8 byte order mark */
    if (memchr(p, '\0', (size_t)(end - p))) {
        rdiag_add(d, false, 0, 0, NULL, "not a text file (it contains a NUL byte)");
        return false;
    }
    const char *first = skip_blank(p, end);
    size_t fstart, flen;
    int line0;
    bool body;
    if (first < end && (*first == '{' || *first == '[')) {
        *fmt = RF_JSON;
        /* libyaml gives positions; a JSON file it refuses goes to cJSON */
        rdiag yd = {0};
        *out = parse_yaml(p, (size_t)(end - p), 0, &yd, &nomem);
        for (size_t i = 0; *out && i < yd.n; i++) /* duplicate keys */
            rdiag_add(d, yd.v[i].warning, yd.v[i].line, yd.v[i].column, yd.v[i].path, "%s",
                      yd.v[i].message);
        rdiag_release(&yd);
        if (!*out && !nomem)
            *out = parse_json(p, (size_t)(end - p), d, &nomem);
    } else if (front_matter(p, (size_t)(end - p), &fstart, &flen, &line0, &body)) {
        *fmt = body || strncmp(first, "---", 3) ? RF_MARKDOWN : RF_YAML;
        *out = parse_yaml(p + fstart, flen, line0, d, &nomem);
    } else {
        *fmt = RF_YAML;
        *out = parse_yaml(p, (size_t)(end - p), 0, d, &nomem);
    }
    if (nomem) {
        rnode_free(*out);
        *out = NULL;
        d->nomem = true;
        return false;
    }
    return *out != NULL;
}
