/*
 * Safe pickle reader (a stack machine that records calls instead of making
 * them) and a protocol-2 writer; see pickle.h for the opcode set.
 */
#include "formats/pickle.h"
#include "formats/checked.h"

#include <stdlib.h>
#include <string.h>

/* ---- nodes ---- */

sp_pk *sp_pk_new(sp_pickle *pk, sp_pk_kind kind)
{
    if (pk->nall == pk->capall) {
        size_t cap = pk->capall ? pk->capall * 2 : 256;
        sp_pk **n = realloc(pk->all, cap * sizeof *n);
        if (!n)
            return NULL;
        pk->all = n;
        pk->capall = cap;
    }
    sp_pk *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->kind = kind;
    pk->all[pk->nall++] = p;
    return p;
}

void sp_pickle_release(sp_pickle *pk)
{
    for (size_t i = 0; i < pk->nall; i++) {
        sp_pk *p = pk->all[i];
        free(p->s);
        free(p->s2);
        free(p->items);
        free(p);
    }
    free(pk->all);
    memset(pk, 0, sizeof *pk);
}

static char *dupn(const void *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

sp_pk *sp_pk_int(sp_pickle *pk, int64_t v)
{
    sp_pk *p = sp_pk_new(pk, SP_PK_INT);
    if (p)
        p->i = v;
    return p;
}

sp_pk *sp_pk_str(sp_pickle *pk, const char *s)
{
    sp_pk *p = sp_pk_new(pk, SP_PK_STR);
    if (p) {
        p->slen = strlen(s);
        if (!(p->s = dupn(s, p->slen)))
            return NULL;
    }
    return p;
}

sp_pk *sp_pk_global(sp_pickle *pk, const char *module, const char *name)
{
    sp_pk *p = sp_pk_new(pk, SP_PK_GLOBAL);
    if (p) {
        p->s = strdup(module);
        p->s2 = strdup(name);
        if (!p->s || !p->s2)
            return NULL;
    }
    return p;
}

bool sp_pk_push(sp_pk *node, sp_pk *child)
{
    if (!child)
        return false;
    if (node->n == node->cap) {
        size_t cap = node->cap ? node->cap * 2 : 4;
        sp_pk **n = realloc(node->items, cap * sizeof *n);
        if (!n)
            return false;
        node->items = n;
        node->cap = cap;
    }
    node->items[node->n++] = child;
    if (child->depth + 1 > node->depth)
        node->depth = child->depth + 1;
    return true;
}

bool sp_pk_is_global(const sp_pk *n, const char *module, const char *name)
{
    return n && n->kind == SP_PK_GLOBAL && !strcmp(n->s, module) && !strcmp(n->s2, name);
}

const sp_pk *sp_pk_item(const sp_pk *n, size_t i)
{
    if (!n || (n->kind != SP_PK_TUPLE && n->kind != SP_PK_LIST) || i >= n->n)
        return NULL;
    return n->items[i];
}

/* ---- reader ---- */

typedef struct vm {
    sp_pickle *pk;
    const unsigned char *p;
    size_t len, pos;
    const char *what;
    sp_error *err;
    sp_pk **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    sp_pk **memo;
    size_t memo_cap, memo_count;
} vm;

#define FAIL(...) sp_error_set(v->err, SP_ERR_FORMAT, __VA_ARGS__)
#define NOMEM() sp_error_set(v->err, SP_ERR_NOMEM, "out of memory parsing %s", v->what)

static sp_status need(vm *v, uint64_t n, size_t at)
{
    if (!sp_range_ok(v->pos, n, v->len))
        return FAIL("%s: truncated pickle (opcode at offset %zu needs %llu more bytes)", v->what,
                    at, (unsigned long long)n);
    return SP_OK;
}

static sp_status push(vm *v, sp_pk *n)
{
    if (!n)
        return NOMEM();
    if (v->sp == v->scap) {
        size_t cap = v->scap ? v->scap * 2 : 64;
        sp_pk **s = realloc(v->stack, cap * sizeof *s);
        if (!s)
            return NOMEM();
        v->stack = s;
        v->scap = cap;
    }
    v->stack[v->sp++] = n;
    return SP_OK;
}

static size_t floor_(const vm *v) { return v->nmarks ? v->marks[v->nmarks - 1] : 0; }

static sp_status pop(vm *v, sp_pk **out, size_t at)
{
    if (v->sp <= floor_(v))
        return FAIL("%s: stack underflow at offset %zu", v->what, at);
    *out = v->stack[--v->sp];
    return SP_OK;
}

static sp_status top(vm *v, sp_pk **out, size_t at)
{
    if (v->sp <= floor_(v))
        return FAIL("%s: stack underflow at offset %zu", v->what, at);
    *out = v->stack[v->sp - 1];
    return SP_OK;
}

/* Pop the topmost mark; *from = first stack slot above it. */
static sp_status pop_mark(vm *v, size_t *from, size_t at)
{
    if (!v->nmarks)
        return FAIL("%s: no mark for the opcode at offset %zu", v->what, at);
    *from = v->marks[--v->nmarks];
    return SP_OK;
}

static sp_status depth_ok(vm *v, const sp_pk *n, size_t at)
{
    if (n->depth > SP_PICKLE_MAX_DEPTH)
        return FAIL("%s: nesting deeper than %d at offset %zu", v->what, SP_PICKLE_MAX_DEPTH, at);
    return SP_OK;
}

static sp_status add_child(vm *v, sp_pk *parent, sp_pk *child, size_t at)
{
    if (!sp_pk_push(parent, child))
        return NOMEM();
    return depth_ok(v, parent, at);
}

static void raise_depth(sp_pk *n, const sp_pk *child)
{
    if (child && child->depth + 1 > n->depth)
        n->depth = child->depth + 1;
}

static sp_status memo_put(vm *v, uint64_t idx, size_t at)
{
    sp_pk *t = NULL;
    sp_status s = top(v, &t, at);
    if (s)
        return s;
    /* a real pickle numbers its memo densely; an index beyond the input
     * length is hostile and would make us allocate for nothing */
    if (idx > v->len)
        return FAIL("%s: memo index %llu out of range at offset %zu", v->what,
                    (unsigned long long)idx, at);
    if (idx >= v->memo_cap) {
        size_t cap = v->memo_cap ? v->memo_cap : 64;
        while (cap <= idx)
            cap *= 2;
        size_t bytes;
        sp_pk **m = NULL;
        if (!sp_mul_size(cap, sizeof *m, &bytes) || !(m = realloc(v->memo, bytes)))
            return NOMEM();
        memset(m + v->memo_cap, 0, (cap - v->memo_cap) * sizeof *m);
        v->memo = m;
        v->memo_cap = cap;
    }
    if (!v->memo[idx])
        v->memo_count++;
    v->memo[idx] = t;
    return SP_OK;
}

static sp_status memo_get(vm *v, uint64_t idx, size_t at)
{
    if (idx >= v->memo_cap || !v->memo[idx])
        return FAIL("%s: memo index %llu is not defined (offset %zu)", v->what,
                    (unsigned long long)idx, at);
    return push(v, v->memo[idx]);
}

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t r = 0;
    for (int i = n - 1; i >= 0; i--)
        r = (r << 8) | p[i];
    return r;
}

static sp_status push_bytes(vm *v, sp_pk_kind kind, uint64_t n, size_t at)
{
    sp_status s = need(v, n, at);
    if (s)
        return s;
    sp_pk *node = sp_pk_new(v->pk, kind);
    if (!node || !(node->s = dupn(v->p + v->pos, (size_t)n)))
        return NOMEM();
    node->slen = (size_t)n;
    v->pos += (size_t)n;
    return push(v, node);
}

static sp_status push_long(vm *v, uint64_t n, size_t at)
{
    sp_status s = need(v, n, at);
    if (s)
        return s;
    const unsigned char *b = v->p + v->pos;
    /* fits in int64 when every byte past the 8th repeats the sign */
    bool fits = true;
    if (n > 8) {
        unsigned char ext = (b[7] & 0x80) ? 0xff : 0x00;
        for (uint64_t i = 8; i < n; i++)
            if (b[i] != ext) {
                fits = false;
                break;
            }
    }
    sp_pk *node;
    if (fits) {
        int w = n > 8 ? 8 : (int)n;
        uint64_t u = le(b, w);
        if (w > 0 && w < 8 && (b[w - 1] & 0x80))
            u |= ~UINT64_C(0) << (8 * w);
        if (!(node = sp_pk_int(v->pk, (int64_t)u)))
            return NOMEM();
    } else {
        node = sp_pk_new(v->pk, SP_PK_BIGINT);
        if (!node || !(node->s = dupn(b, (size_t)n)))
            return NOMEM();
        node->slen = (size_t)n;
    }
    v->pos += (size_t)n;
    return push(v, node);
}

/* Read a '\n'-terminated line (GLOBAL, PERSID); no NUL allowed. */
static sp_status line(vm *v, const char **s, size_t *n, size_t at)
{
    const unsigned char *start = v->p + v->pos;
    const unsigned char *nl = memchr(start, '\n', v->len - v->pos);
    if (!nl)
        return FAIL("%s: truncated pickle (unterminated line at offset %zu)", v->what, at);
    *s = (const char *)start;
    *n = (size_t)(nl - start);
    if (memchr(start, '\0', *n))
        return FAIL("%s: NUL byte in a text argument at offset %zu", v->what, at);
    v->pos += *n + 1;
    return SP_OK;
}

/* Build a tuple from stack[from..sp) and leave it on the stack. */
static sp_status make_tuple(vm *v, size_t from, sp_pk_kind kind, size_t at)
{
    sp_pk *t = sp_pk_new(v->pk, kind);
    if (!t)
        return NOMEM();
    for (size_t i = from; i < v->sp; i++) {
        sp_status s = add_child(v, t, v->stack[i], at);
        if (s)
            return s;
    }
    v->sp = from;
    return push(v, t);
}

static sp_status do_reduce(vm *v, sp_pk_kind kind, size_t at)
{
    sp_pk *args = NULL, *fn = NULL;
    sp_status s = pop(v, &args, at);
    if (!s)
        s = pop(v, &fn, at);
    if (s)
        return s;
    if (kind == SP_PK_REDUCE && sp_pk_is_global(fn, "collections", "OrderedDict") &&
        args->kind == SP_PK_TUPLE && args->n == 0) {
        sp_pk *d = sp_pk_new(v->pk, SP_PK_DICT);
        if (!d)
            return NOMEM();
        d->ordered = true;
        return push(v, d);
    }
    sp_pk *r = sp_pk_new(v->pk, kind);
    if (!r)
        return NOMEM();
    r->callable = fn;
    r->args = args;
    raise_depth(r, fn);
    raise_depth(r, args);
    if ((s = depth_ok(v, r, at)))
        return s;
    return push(v, r);
}

/* APPEND(S)/SETITEM(S)/ADDITEMS: add stack[from..sp) to the object below. */
static sp_status add_items(vm *v, size_t from, int what, size_t at)
{
    /* what: 0 list items, 1 dict pairs, 2 set items */
    if (from == 0 || from - 1 < (v->nmarks ? v->marks[v->nmarks - 1] : 0))
        return FAIL("%s: stack underflow at offset %zu", v->what, at);
    sp_pk *obj = v->stack[from - 1];
    size_t cnt = v->sp - from;
    if (what == 1 && cnt % 2)
        return FAIL("%s: odd number of items for SETITEMS at offset %zu", v->what, at);
    bool ok;
    switch (obj->kind) {
    case SP_PK_LIST: ok = what == 0; break;
    case SP_PK_DICT: ok = what == 1; break;
    case SP_PK_SET: ok = what == 2; break;
    case SP_PK_REDUCE:
    case SP_PK_NEWOBJ:
        ok = what != 2 && (obj->n == 0 || obj->pairs == (what == 1));
        obj->pairs = what == 1;
        break;
    default: ok = false;
    }
    if (!ok)
        return FAIL("%s: cannot add items to this object at offset %zu", v->what, at);
    for (size_t i = from; i < v->sp; i++) {
        sp_status s = add_child(v, obj, v->stack[i], at);
        if (s)
            return s;
    }
    v->sp = from;
    return SP_OK;
}

static sp_status run(vm *v, size_t *consumed)
{
    sp_status s = SP_OK;
    while (!s) {
        size_t at = v->pos;
        if (v->pos >= v->len)
            return FAIL("%s: truncated pickle (no STOP opcode)", v->what);
        unsigned char op = v->p[v->pos++];
        sp_pk *a = NULL, *b = NULL, *n;
        size_t from = 0;
        const char *t1, *t2;
        size_t l1, l2;
        switch (op) {
        case 0x80: /* PROTO */
            if (!(s = need(v, 1, at))) {
                if (v->p[v->pos] > 5)
                    return FAIL("%s: unsupported pickle protocol %u", v->what, v->p[v->pos]);
                v->pos++;
            }
            break;
        case 0x95: /* FRAME */
            if (!(s = need(v, 8, at))) {
                uint64_t fl = le(v->p + v->pos, 8);
                v->pos += 8;
                s = need(v, fl, at);
            }
            break;
        case '(':
            if (v->nmarks >= SP_PICKLE_MAX_DEPTH)
                return FAIL("%s: marks nested deeper than %d at offset %zu", v->what,
                            SP_PICKLE_MAX_DEPTH, at);
            if (v->nmarks == v->mcap) {
                size_t cap = v->mcap ? v->mcap * 2 : 16;
                size_t *m = realloc(v->marks, cap * sizeof *m);
                if (!m)
                    return NOMEM();
                v->marks = m;
                v->mcap = cap;
            }
            v->marks[v->nmarks++] = v->sp;
            break;
        case '.': /* STOP */
            if (v->sp != 1 || v->nmarks)
                return FAIL("%s: STOP with %zu values on the stack at offset %zu", v->what,
                            v->sp, at);
            v->pk->root = v->stack[0];
            if (consumed)
                *consumed = v->pos;
            return SP_OK;
        case '0': /* POP */
            if (v->sp == floor_(v) && v->nmarks)
                v->nmarks--;
            else
                s = pop(v, &a, at);
            break;
        case '1': /* POP_MARK */
            if (!(s = pop_mark(v, &from, at)))
                v->sp = from;
            break;
        case '2': /* DUP */
            if (!(s = top(v, &a, at)))
                s = push(v, a);
            break;
        case 'J':
            if (!(s = need(v, 4, at))) {
                s = push(v, sp_pk_int(v->pk, (int32_t)(uint32_t)le(v->p + v->pos, 4)));
                v->pos += 4;
            }
            break;
        case 'K':
            if (!(s = need(v, 1, at)))
                s = push(v, sp_pk_int(v->pk, v->p[v->pos++]));
            break;
        case 'M':
            if (!(s = need(v, 2, at))) {
                s = push(v, sp_pk_int(v->pk, (int64_t)le(v->p + v->pos, 2)));
                v->pos += 2;
            }
            break;
        case 0x8a: /* LONG1 */
            if (!(s = need(v, 1, at)))
                s = push_long(v, v->p[v->pos++], at);
            break;
        case 0x8b: /* LONG4 */
            if (!(s = need(v, 4, at))) {
                int32_t nn = (int32_t)(uint32_t)le(v->p + v->pos, 4);
                v->pos += 4;
                if (nn < 0)
                    return FAIL("%s: negative LONG4 length at offset %zu", v->what, at);
                s = push_long(v, (uint64_t)nn, at);
            }
            break;
        case 'G': /* BINFLOAT, big-endian */
            if (!(s = need(v, 8, at))) {
                uint64_t u = 0;
                for (int i = 0; i < 8; i++)
                    u = (u << 8) | v->p[v->pos + i];
                v->pos += 8;
                if (!(n = sp_pk_new(v->pk, SP_PK_FLOAT)))
                    return NOMEM();
                memcpy(&n->f, &u, 8);
                s = push(v, n);
            }
            break;
        case 0x8c: /* SHORT_BINUNICODE */
        case 'C':  /* SHORT_BINBYTES */
        case 'U':  /* SHORT_BINSTRING */
            if (!(s = need(v, 1, at))) {
                uint64_t ln = v->p[v->pos++];
                s = push_bytes(v, op == 'C' ? SP_PK_BYTES : SP_PK_STR, ln, at);
            }
            break;
        case 'X': /* BINUNICODE */
        case 'B': /* BINBYTES */
        case 'T': /* BINSTRING (signed) */
            if (!(s = need(v, 4, at))) {
                uint64_t ln = le(v->p + v->pos, 4);
                v->pos += 4;
                if (op == 'T' && (ln & 0x80000000u))
                    return FAIL("%s: negative BINSTRING length at offset %zu", v->what, at);
                s = push_bytes(v, op == 'B' ? SP_PK_BYTES : SP_PK_STR, ln, at);
            }
            break;
        case 0x8d: /* BINUNICODE8 */
        case 0x8e: /* BINBYTES8 */
            if (!(s = need(v, 8, at))) {
                uint64_t ln = le(v->p + v->pos, 8);
                v->pos += 8;
                s = push_bytes(v, op == 0x8e ? SP_PK_BYTES : SP_PK_STR, ln, at);
            }
            break;
        case 'N':
            s = push(v, sp_pk_new(v->pk, SP_PK_NONE));
            break;
        case 0x88:
        case 0x89:
            if (!(n = sp_pk_new(v->pk, SP_PK_BOOL)))
                return NOMEM();
            n->b = op == 0x88;
            s = push(v, n);
            break;
        case ']':
            s = push(v, sp_pk_new(v->pk, SP_PK_LIST));
            break;
        case ')':
            s = push(v, sp_pk_new(v->pk, SP_PK_TUPLE));
            break;
        case '}':
            s = push(v, sp_pk_new(v->pk, SP_PK_DICT));
            break;
        case 0x8f: /* EMPTY_SET */
            s = push(v, sp_pk_new(v->pk, SP_PK_SET));
            break;
        case 'a': /* APPEND */
            if (v->sp < floor_(v) + 2)
                return FAIL("%s: stack underflow at offset %zu", v->what, at);
            s = add_items(v, v->sp - 1, 0, at);
            break;
        case 's': /* SETITEM */
            if (v->sp < floor_(v) + 3)
                return FAIL("%s: stack underflow at offset %zu", v->what, at);
            s = add_items(v, v->sp - 2, 1, at);
            break;
        case 'e': /* APPENDS */
        case 'u': /* SETITEMS */
        case 0x90: /* ADDITEMS */
            if (!(s = pop_mark(v, &from, at)))
                s = add_items(v, from, op == 'e' ? 0 : op == 'u' ? 1 : 2, at);
            break;
        case 't':
        case 0x91: /* FROZENSET */
            if (!(s = pop_mark(v, &from, at)))
                s = make_tuple(v, from, op == 't' ? SP_PK_TUPLE : SP_PK_FROZENSET, at);
            break;
        case 0x85:
        case 0x86:
        case 0x87: {
            size_t k = (size_t)(op - 0x84);
            if (v->sp < floor_(v) + k)
                return FAIL("%s: stack underflow at offset %zu", v->what, at);
            s = make_tuple(v, v->sp - k, SP_PK_TUPLE, at);
            break;
        }
        case 'c': /* GLOBAL */
            if (!(s = line(v, &t1, &l1, at)) && !(s = line(v, &t2, &l2, at))) {
                if (!(n = sp_pk_new(v->pk, SP_PK_GLOBAL)) || !(n->s = dupn(t1, l1)) ||
                    !(n->s2 = dupn(t2, l2)))
                    return NOMEM();
                s = push(v, n);
            }
            break;
        case 0x93: /* STACK_GLOBAL */
            if (!(s = pop(v, &b, at)) && !(s = pop(v, &a, at))) {
                if (a->kind != SP_PK_STR || b->kind != SP_PK_STR)
                    return FAIL("%s: STACK_GLOBAL needs two strings at offset %zu", v->what, at);
                if (!(n = sp_pk_new(v->pk, SP_PK_GLOBAL)) || !(n->s = dupn(a->s, a->slen)) ||
                    !(n->s2 = dupn(b->s, b->slen)))
                    return NOMEM();
                s = push(v, n);
            }
            break;
        case 'R':
            s = do_reduce(v, SP_PK_REDUCE, at);
            break;
        case 0x81:
            s = do_reduce(v, SP_PK_NEWOBJ, at);
            break;
        case 'b': /* BUILD */
            if (!(s = pop(v, &a, at)) && !(s = top(v, &b, at))) {
                b->state = a;
                raise_depth(b, a);
                s = depth_ok(v, b, at);
            }
            break;
        case 'q':
            if (!(s = need(v, 1, at)))
                s = memo_put(v, v->p[v->pos++], at);
            break;
        case 'r':
            if (!(s = need(v, 4, at))) {
                uint64_t idx = le(v->p + v->pos, 4);
                v->pos += 4;
                s = memo_put(v, idx, at);
            }
            break;
        case 0x94: /* MEMOIZE */
            s = memo_put(v, v->memo_count, at);
            break;
        case 'h':
            if (!(s = need(v, 1, at)))
                s = memo_get(v, v->p[v->pos++], at);
            break;
        case 'j':
            if (!(s = need(v, 4, at))) {
                uint64_t idx = le(v->p + v->pos, 4);
                v->pos += 4;
                s = memo_get(v, idx, at);
            }
            break;
        case 'Q': /* BINPERSID */
            if (!(s = pop(v, &a, at))) {
                if (!(n = sp_pk_new(v->pk, SP_PK_PERSID)))
                    return NOMEM();
                n->args = a;
                raise_depth(n, a);
                s = push(v, n);
            }
            break;
        case 'P': /* PERSID */
            if (!(s = line(v, &t1, &l1, at))) {
                if (!(a = sp_pk_new(v->pk, SP_PK_STR)) || !(a->s = dupn(t1, l1)) ||
                    !(n = sp_pk_new(v->pk, SP_PK_PERSID)))
                    return NOMEM();
                a->slen = l1;
                n->args = a;
                s = push(v, n);
            }
            break;
        default:
            return FAIL("%s: unsupported pickle opcode 0x%02x at offset %zu", v->what, op, at);
        }
    }
    return s;
}

sp_status sp_pickle_parse(sp_pickle *pk, const void *buf, size_t len, size_t *consumed,
                          const char *what, sp_error *err)
{
    memset(pk, 0, sizeof *pk);
    vm v = {.pk = pk, .p = buf, .len = len, .what = what ? what : "pickle", .err = err};
    sp_status s = run(&v, consumed);
    free(v.stack);
    free(v.marks);
    free(v.memo);
    if (s)
        sp_pickle_release(pk);
    return s;
}

/* ---- writer ---- */

typedef struct wslot {
    const sp_pk *key;
    uint32_t refs;
    int32_t memo; /* -1 until memoized */
    bool busy;    /* on the current path (cycle check) */
} wslot;

typedef struct wr {
    unsigned char *buf;
    size_t len, cap;
    wslot *tab;
    size_t tcap; /* power of two */
    size_t tn;
    int32_t next_memo;
    sp_error *err;
    bool nomem;
} wr;

static wslot *slot(wr *w, const sp_pk *k)
{
    size_t h = ((uintptr_t)k >> 4) * 0x9E3779B97F4A7C15ull;
    for (size_t i = h & (w->tcap - 1);; i = (i + 1) & (w->tcap - 1)) {
        if (w->tab[i].key == k)
            return &w->tab[i];
        if (!w->tab[i].key) {
            if ((w->tn + 1) * 2 > w->tcap)
                return NULL; /* caller grows */
            w->tab[i].key = k;
            w->tab[i].memo = -1;
            w->tn++;
            return &w->tab[i];
        }
    }
}

static bool grow_tab(wr *w)
{
    size_t ncap = w->tcap ? w->tcap * 2 : 1024;
    wslot *old = w->tab;
    size_t ocap = w->tcap;
    w->tab = calloc(ncap, sizeof *w->tab);
    if (!w->tab) {
        w->tab = old;
        return false;
    }
    w->tcap = ncap;
    w->tn = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].key) {
            wslot *s = slot(w, old[i].key);
            *s = old[i];
        }
    free(old);
    return true;
}

static wslot *get_slot(wr *w, const sp_pk *k)
{
    wslot *s;
    while (!(s = slot(w, k)))
        if (!grow_tab(w))
            return NULL;
    return s;
}

static sp_status count_refs(wr *w, const sp_pk *n, int depth)
{
    if (!n)
        return SP_OK;
    if (depth > 4 * SP_PICKLE_MAX_DEPTH)
        return sp_error_set(w->err, SP_ERR_FORMAT, "pickle tree nested too deeply to write");
    wslot *s = get_slot(w, n);
    if (!s)
        return sp_error_set(w->err, SP_ERR_NOMEM, "out of memory");
    if (s->busy)
        return sp_error_set(w->err, SP_ERR_UNSUPPORTED, "cannot write a self-referencing pickle");
    if (s->refs++)
        return SP_OK;
    s->busy = true;
    sp_status st = SP_OK;
    for (size_t i = 0; i < n->n && !st; i++)
        st = count_refs(w, n->items[i], depth + 1);
    if (!st)
        st = count_refs(w, n->callable, depth + 1);
    if (!st)
        st = count_refs(w, n->args, depth + 1);
    if (!st)
        st = count_refs(w, n->state, depth + 1);
    s = get_slot(w, n); /* the table may have moved */
    if (s)
        s->busy = false;
    return st;
}

static void put(wr *w, const void *p, size_t n)
{
    if (w->nomem)
        return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n)
            cap *= 2;
        unsigned char *b = realloc(w->buf, cap);
        if (!b) {
            w->nomem = true;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void op1(wr *w, unsigned char op) { put(w, &op, 1); }

static void put_le(wr *w, uint64_t v, int n)
{
    unsigned char b[8];
    for (int i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, (size_t)n);
}

static void put_int(wr *w, int64_t v)
{
    if (v >= 0 && v < 256) {
        op1(w, 'K');
        put_le(w, (uint64_t)v, 1);
    } else if (v >= 0 && v < 65536) {
        op1(w, 'M');
        put_le(w, (uint64_t)v, 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        op1(w, 'J');
        put_le(w, (uint64_t)v, 4);
    } else {
        /* LONG1 with the shortest two's complement encoding */
        int nb = 8;
        while (nb > 1) {
            int64_t lo = -((int64_t)1 << (8 * (nb - 1) - 1));
            int64_t hi = ((int64_t)1 << (8 * (nb - 1) - 1)) - 1;
            if (v < lo || v > hi)
                break;
            nb--;
        }
        op1(w, 0x8a);
        put_le(w, (uint64_t)nb, 1);
        put_le(w, (uint64_t)v, nb);
    }
}

static sp_status emit(wr *w, const sp_pk *n);

static sp_status emit_items(wr *w, const sp_pk *n, unsigned char close_op, size_t step)
{
    for (size_t i = 0; i < n->n; i += 1000 * step) {
        op1(w, '(');
        size_t end = i + 1000 * step < n->n ? i + 1000 * step : n->n;
        for (size_t j = i; j < end; j++) {
            sp_status s = emit(w, n->items[j]);
            if (s)
                return s;
        }
        op1(w, close_op);
    }
    return SP_OK;
}

static void put_global(wr *w, const char *m, const char *nm)
{
    op1(w, 'c');
    put(w, m, strlen(m));
    op1(w, '\n');
    put(w, nm, strlen(nm));
    op1(w, '\n');
}

static sp_status emit(wr *w, const sp_pk *n)
{
    wslot *sl = get_slot(w, n);
    if (!sl)
        return sp_error_set(w->err, SP_ERR_NOMEM, "out of memory");
    if (sl->memo >= 0) {
        if (sl->memo < 256) {
            op1(w, 'h');
            put_le(w, (uint64_t)sl->memo, 1);
        } else {
            op1(w, 'j');
            put_le(w, (uint64_t)sl->memo, 4);
        }
        return SP_OK;
    }
    bool shared = sl->refs > 1;
    sp_status s = SP_OK;
    switch (n->kind) {
    case SP_PK_NONE: op1(w, 'N'); break;
    case SP_PK_BOOL: op1(w, n->b ? 0x88 : 0x89); break;
    case SP_PK_INT: put_int(w, n->i); break;
    case SP_PK_BIGINT:
        if (n->slen < 256) {
            op1(w, 0x8a);
            put_le(w, n->slen, 1);
        } else {
            op1(w, 0x8b);
            put_le(w, n->slen, 4);
        }
        put(w, n->s, n->slen);
        break;
    case SP_PK_FLOAT: {
        uint64_t u;
        memcpy(&u, &n->f, 8);
        unsigned char b[8];
        for (int i = 0; i < 8; i++)
            b[i] = (unsigned char)(u >> (56 - 8 * i));
        op1(w, 'G');
        put(w, b, 8);
        break;
    }
    case SP_PK_STR:
    case SP_PK_BYTES:
        if (n->kind == SP_PK_BYTES && n->slen < 256) {
            op1(w, 'C');
            put_le(w, n->slen, 1);
        } else if ((uint64_t)n->slen <= 0xffffffffu) {
            op1(w, n->kind == SP_PK_STR ? 'X' : 'B');
            put_le(w, n->slen, 4);
        } else {
            op1(w, n->kind == SP_PK_STR ? 0x8d : 0x8e);
            put_le(w, n->slen, 8);
        }
        put(w, n->s, n->slen);
        break;
    case SP_PK_LIST:
        op1(w, ']');
        s = emit_items(w, n, 'e', 1);
        break;
    case SP_PK_TUPLE:
        if (n->n == 0) {
            op1(w, ')');
        } else if (n->n <= 3) {
            for (size_t i = 0; i < n->n && !s; i++)
                s = emit(w, n->items[i]);
            op1(w, (unsigned char)(0x84 + n->n));
        } else {
            op1(w, '(');
            for (size_t i = 0; i < n->n && !s; i++)
                s = emit(w, n->items[i]);
            op1(w, 't');
        }
        break;
    case SP_PK_DICT:
        if (n->ordered) {
            put_global(w, "collections", "OrderedDict");
            op1(w, ')');
            op1(w, 'R');
        } else {
            op1(w, '}');
        }
        s = emit_items(w, n, 'u', 2);
        break;
    case SP_PK_SET:
    case SP_PK_FROZENSET:
        put_global(w, "builtins", n->kind == SP_PK_SET ? "set" : "frozenset");
        op1(w, ']');
        s = emit_items(w, n, 'e', 1);
        op1(w, 0x85);
        op1(w, 'R');
        break;
    case SP_PK_GLOBAL: put_global(w, n->s, n->s2); break;
    case SP_PK_REDUCE:
    case SP_PK_NEWOBJ:
        if (!(s = emit(w, n->callable)) && !(s = emit(w, n->args))) {
            op1(w, n->kind == SP_PK_REDUCE ? 'R' : 0x81);
            if (n->n)
                s = emit_items(w, n, n->pairs ? 'u' : 'e', n->pairs ? 2 : 1);
        }
        break;
    case SP_PK_PERSID:
        if (!(s = emit(w, n->args)))
            op1(w, 'Q');
        break;
    }
    if (!s && n->state) {
        if (!(s = emit(w, n->state)))
            op1(w, 'b');
    }
    if (s)
        return s;
    if (shared) {
        sl = get_slot(w, n);
        if (!sl)
            return sp_error_set(w->err, SP_ERR_NOMEM, "out of memory");
        sl->memo = w->next_memo++;
        if (sl->memo < 256) {
            op1(w, 'q');
            put_le(w, (uint64_t)sl->memo, 1);
        } else {
            op1(w, 'r');
            put_le(w, (uint64_t)sl->memo, 4);
        }
    }
    return w->nomem ? sp_error_set(w->err, SP_ERR_NOMEM, "out of memory") : SP_OK;
}

sp_status sp_pickle_write(const sp_pk *root, unsigned char **out, size_t *len, sp_error *err)
{
    wr w = {.err = err};
    *out = NULL;
    *len = 0;
    sp_status s = grow_tab(&w) ? count_refs(&w, root, 0)
                               : sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    if (!s) {
        op1(&w, 0x80);
        op1(&w, 2);
        s = emit(&w, root);
        op1(&w, '.');
        if (!s && w.nomem)
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    free(w.tab);
    if (s) {
        free(w.buf);
        return s;
    }
    *out = w.buf;
    *len = w.len;
    return SP_OK;
}
