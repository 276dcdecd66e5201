/*
 * Recipes (docs/recipes.md): the file's structure on top of doc.c's tree.
 *
 * As SparseML reads a recipe: a top-level key with "modifiers" in its name
 * is a group of modifiers (a list of tagged maps, or a map of class name to
 * fields); a top-level map holding such a group is a stage (llm-compressor;
 * its other keys, run_type included, are the stage's variables); every
 * other top-level key is a variable. Variables may be eval(...) expressions
 * over other variables, in any order (evaluated until nothing changes, as
 * SparseML does); eval(...) strings anywhere inside modifiers are evaluated
 * with them, a stage's variables first. Every problem is collected with its
 * line, so `sparsify recipe validate` can list them all.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recipes/bundled.h"
#include "recipes/expr.h"
#include "recipes/internal.h"

static const char *const type_names[] = {
    [SP_MOD_MAGNITUDE] = "MagnitudePruningModifier",
    [SP_MOD_GMP] = "GMPruningModifier",
    [SP_MOD_GLOBAL_MAGNITUDE] = "GlobalMagnitudePruningModifier",
    [SP_MOD_MOVEMENT] = "MovementPruningModifier",
    [SP_MOD_CONSTANT] = "ConstantPruningModifier",
    [SP_MOD_DISTILLATION] = "DistillationModifier",
    [SP_MOD_EPOCH_RANGE] = "EpochRangeModifier",
    [SP_MOD_SET_LR] = "SetLearningRateModifier",
    [SP_MOD_LR_FUNCTION] = "LearningRateFunctionModifier",
    [SP_MOD_LR_SCHEDULE] = "LearningRateModifier",
    [SP_MOD_SET_WEIGHT_DECAY] = "SetWeightDecayModifier",
    [SP_MOD_NOT_APPLIED] = "(not applied)",
};

const char *sp_modifier_type_str(sp_modifier_type t)
{
    if ((size_t)t < sizeof type_names / sizeof type_names[0] && type_names[t])
        return type_names[t];
    return "?";
}

bool sp_modifier_prunes(const sp_modifier *m)
{
    return (SP_MOD_PRUNING_TYPES >> m->type) & 1u;
}

bool sp_modifier_trains(const sp_modifier *m)
{
    return m->type == SP_MOD_EPOCH_RANGE || m->type == SP_MOD_SET_LR ||
           m->type == SP_MOD_LR_FUNCTION || m->type == SP_MOD_LR_SCHEDULE ||
           m->type == SP_MOD_SET_WEIGHT_DECAY;
}

/* ---- problems */

void sp_recipe_problems_release(sp_recipe_problems *p)
{
    if (!p)
        return;
    free(p->v);
    memset(p, 0, sizeof *p);
}

const char *sp_recipe_problem_str(const sp_recipe_problem *p, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = '\0';
    if (p->line > 0 && !p->path[0])
        k += (size_t)snprintf(buf + k, len - k, "line %d, column %d: ", p->line, p->column);
    else if (p->line > 0)
        k += (size_t)snprintf(buf + k, len - k, "line %d: ", p->line);
    if (k < len && p->path[0])
        k += (size_t)snprintf(buf + k, len - k, "%s: ", p->path);
    if (k < len)
        snprintf(buf + k, len - k, "%s", p->message);
    return buf;
}

/* ---- freeing */

void sp_recipe_free(sp_recipe *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nmods; i++)
        rmod_release(&r->mods[i]);
    free(r->mods);
    free(r->warnings);
    free(r->source_version);
    free(r);
}

/* ---- variables */

#define VAR_MAX_DEPTH 64 /* eval() variables referring to variables ... */

typedef struct var {
    const char *name;  /* the key's text (the tree owns it) */
    const rnode *key;
    rnode *val;        /* owned: the evaluated value, or the original */
    int state;         /* 0 pending eval, 1 a value, 2 failed (reported),
                          3 being evaluated (a reference back is a cycle) */
} var;

typedef struct scope {
    var *v;
    size_t n;
    size_t *sorted;    /* v's indices by name, for lookups in log time */
    const struct scope *parent;
    rdiag *d;          /* where evaluation problems go */
    const char *prefix; /* of the variables' paths: "" or "stage." */
} scope;

static int var_cmp(const void *a, const void *b, void *ctx)
{
    const var *v = ctx;
    return strcmp(v[*(const size_t *)a].name, v[*(const size_t *)b].name);
}

static var *scope_find(const scope *s, const char *name)
{
    for (; s; s = s->parent) {
        size_t lo = 0, hi = s->sorted ? s->n : 0;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = strcmp(s->v[s->sorted[mid]].name, name);
            if (c == 0)
                return &s->v[s->sorted[mid]];
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    return NULL;
}

static const rnode *bad_node(void)
{
    static const rnode bad = {.kind = RK_BAD};
    return &bad;
}

/* Where an evaluation is: the scope it reads, how deep in variables. */
typedef struct evalctx {
    const scope *s;
    int depth;
} evalctx;

static void eval_var(const evalctx *c, var *v);

/* A variable's value for expr_eval: evaluated on first use (SparseML's
 * variables may come in any order), NULL when unknown or in a cycle. */
static const rnode *lookup(void *ctx, const char *name)
{
    const evalctx *c = ctx;
    var *v = scope_find(c->s, name);
    if (!v)
        return NULL;
    if (v->state == 0)
        eval_var(c, v);
    if (v->state == 3)
        return NULL;
    return v->state == 2 ? bad_node() : v->val;
}

static void scope_release(scope *s)
{
    for (size_t i = 0; i < s->n; i++)
        rnode_free(s->v[i].val);
    free(s->v);
    free(s->sorted);
    memset(s, 0, sizeof *s);
}

/* A name the expression refers to that no scope has: suggest one. */
static void unknown_var(rdiag *d, const scope *s, const rnode *at, const char *path,
                        const char *expr, const char *name)
{
    const char *names[256];
    size_t n = 0;
    for (const scope *p = s; p; p = p->parent)
        for (size_t i = 0; i < p->n && n < 256; i++)
            names[n++] = p->v[i].name;
    const char *close = sp_closest_name(name, names, n);
    if (close)
        rdiag_add(d, false, at->line, at->col, path,
                  "%s: unknown variable '%s' (did you mean '%s'?)", expr, name, close);
    else
        rdiag_add(d, false, at->line, at->col, path, "%s: unknown variable '%s'", expr, name);
}

static bool is_identifier(const char *s, size_t n)
{
    if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return false;
    return true;
}

/* Evaluate the eval(...) string node *np in place. Returns EXPR_OK (the node
 * replaced), EXPR_UNKNOWN (nothing changed; msg names the variable that is
 * unknown, or part of a cycle) or EXPR_ERROR (msg says why; empty: already
 * reported). */
static expr_status eval_node(rnode **np, const evalctx *c, char *msg, size_t msglen)
{
    rnode *n = *np;
    const char *in;
    size_t inlen;
    if (!expr_is_eval(n->text, &in, &inlen))
        return EXPR_OK;
    char buf[1024];
    if (inlen >= sizeof buf) {
        snprintf(msg, msglen, "the expression is longer than %zu characters", sizeof buf - 1);
        return EXPR_ERROR;
    }
    memcpy(buf, in, inlen);
    buf[inlen] = '\0';
    /* eval(name) of a variable that is not a number: its value (SparseML) */
    const char *t = buf;
    size_t tl = strlen(t);
    while (tl && isspace((unsigned char)t[tl - 1]))
        tl--;
    while (tl && isspace((unsigned char)*t)) {
        t++;
        tl--;
    }
    if (is_identifier(t, tl)) {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)tl, t);
        const rnode *val = lookup((void *)c, name);
        if (val && val->kind != RK_NUM && val->kind != RK_BOOL && val->kind != RK_BAD) {
            rnode *cl = rnode_clone(val);
            if (!cl) {
                snprintf(msg, msglen, "out of memory");
                return EXPR_ERROR;
            }
            cl->line = n->line;
            cl->col = n->col;
            rnode_free(n);
            *np = cl;
            return EXPR_OK;
        }
    }
    expr_value ev;
    expr_status st = expr_eval(buf, lookup, (void *)c, &ev, msg, msglen);
    if (st != EXPR_OK)
        return st;
    rnode *num = ev.is_int ? rnode_new_num((double)ev.i, true, n->line, n->col)
                           : rnode_new_num(ev.f, false, n->line, n->col);
    if (!num) {
        snprintf(msg, msglen, "out of memory");
        return EXPR_ERROR;
    }
    rnode_free(n);
    *np = num;
    return EXPR_OK;
}

/* Report a failed evaluation of node n (its text) and mark it bad. */
static void eval_failed(rdiag *d, const scope *s, rnode *n, const char *path, expr_status st,
                        const char *msg)
{
    char expr[160];
    snprintf(expr, sizeof expr, "%s", n->text);
    if (strlen(n->text) >= sizeof expr)
        memcpy(expr + sizeof expr - 4, "...", 4);
    if (st == EXPR_UNKNOWN) {
        const var *v = scope_find(s, msg);
        if (v)
            rdiag_add(d, false, n->line, n->col, path,
                      "%s: variable '%s' cannot be evaluated (it depends on itself?)", expr, msg);
        else
            unknown_var(d, s, n, path, expr, msg);
    } else if (msg[0]) {
        rdiag_add(d, false, n->line, n->col, path, "%s: %s", expr, msg);
    }
    n->kind = RK_BAD;
}

/* Evaluate one pending variable (and, through lookup, those it uses). */
static void eval_var(const evalctx *c, var *v)
{
    char msg[SP_ERR_MSG_MAX], path[192];
    /* the scope that holds v: a variable sees its own scope and above */
    const scope *own = c->s;
    while (own && !(v >= own->v && v < own->v + own->n))
        own = own->parent;
    snprintf(path, sizeof path, "%s%s", own ? own->prefix : "", v->name);
    if (c->depth >= VAR_MAX_DEPTH) {
        rdiag_add(own->d, false, v->val->line, v->val->col, path,
                  "%s: variables refer to variables more than %d deep", v->val->text,
                  VAR_MAX_DEPTH);
        v->val->kind = RK_BAD;
        v->state = 2;
        return;
    }
    evalctx inner = {own, c->depth + 1};
    v->state = 3;
    expr_status st = eval_node(&v->val, &inner, msg, sizeof msg);
    if (st == EXPR_OK) {
        v->state = 1;
        return;
    }
    eval_failed(own->d, own, v->val, path, st, msg);
    v->state = 2;
}

/* SparseML's _evaluate_container_variables: numbers and other values are
 * known at once; eval() strings are evaluated in any order (each on first
 * use, so a chain of n variables takes n evaluations). */
static void eval_vars(scope *s)
{
    for (size_t i = 0; i < s->n; i++) {
        const char *in;
        size_t inlen;
        var *v = &s->v[i];
        v->state = v->val->kind == RK_BAD ? 2
                   : (v->val->kind == RK_STR && expr_is_eval(v->val->text, &in, &inlen)) ? 0
                                                                                         : 1;
    }
    evalctx c = {s, 0};
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].state == 0)
            eval_var(&c, &s->v[i]);
}

/* eval(...) strings inside a modifier group, in place (its variables are
 * all evaluated by now). */
static void eval_tree(rnode **np, const scope *s, rdiag *d, const char *path)
{
    rnode *n = *np;
    char msg[SP_ERR_MSG_MAX];
    if (n->kind == RK_STR) {
        evalctx c = {s, 0};
        expr_status st = eval_node(np, &c, msg, sizeof msg);
        if (st != EXPR_OK)
            eval_failed(d, s, *np, path, st, msg);
        return;
    }
    for (size_t i = 0; (n->kind == RK_SEQ || n->kind == RK_MAP) && i < n->n; i++) {
        char p[192];
        if (n->kind == RK_SEQ)
            snprintf(p, sizeof p, "%.160s[%zu]", path, i);
        else
            snprintf(p, sizeof p, "%.120s.%.60s", path, n->keys[i]->text);
        eval_tree(&n->items[i], s, d, p);
    }
}

/* Variables of a map: the keys that are not groups (and not stages, at the
 * top). Values are moved out of the tree into the scope. */
static bool is_group_key(const char *k)
{
    return strstr(k, "modifiers") != NULL;
}

static bool is_stage(const rnode *v)
{
    if (!v || v->kind != RK_MAP)
        return false;
    for (size_t i = 0; i < v->n; i++)
        if (is_group_key(v->keys[i]->text))
            return true;
    return false;
}

static bool collect_vars(scope *s, rnode *m, bool top, rdiag *d, const char *prefix)
{
    s->d = d;
    s->prefix = prefix;
    s->v = calloc(m->n ? m->n : 1, sizeof *s->v);
    s->sorted = calloc(m->n ? m->n : 1, sizeof *s->sorted);
    if (!s->v || !s->sorted) {
        d->nomem = true;
        return false;
    }
    for (size_t i = 0; i < m->n; i++) {
        const char *k = m->keys[i]->text;
        if (is_group_key(k) || (top && is_stage(m->items[i])))
            continue;
        var *v = &s->v[s->n++];
        v->name = k;
        v->key = m->keys[i];
        v->val = m->items[i];
        m->items[i] = rnode_new(RK_NULL, 0, 0); /* moved */
        if (!m->items[i]) {
            d->nomem = true;
            return false;
        }
    }
    for (size_t i = 0; i < s->n; i++)
        s->sorted[i] = i;
    qsort_r(s->sorted, s->n, sizeof *s->sorted, var_cmp, s->v);
    return true;
}

/* ---- the recipe */

typedef struct build {
    sp_recipe *r;
    rdiag *d;
    const sp_recipe_opts *opts;
    size_t cap;
    size_t unsupported;
} build;

static bool add_mod(build *b, sp_modifier *m)
{
    if (b->r->nmods == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        sp_modifier *nm = realloc(b->r->mods, cap * sizeof *nm);
        if (!nm) {
            b->d->nomem = true;
            rmod_release(m);
            return false;
        }
        b->r->mods = nm;
        b->cap = cap;
    }
    b->r->mods[b->r->nmods++] = *m;
    return true;
}

static sp_run_type run_type_of(const rnode *v, rdiag *d, const char *path, bool *ok)
{
    *ok = true;
    if (!v || v->kind == RK_NULL)
        return SP_RUN_ANY;
    if (v->kind == RK_STR && !strcmp(v->text, "oneshot"))
        return SP_RUN_ONESHOT;
    if (v->kind == RK_STR && !strcmp(v->text, "train"))
        return SP_RUN_TRAIN;
    if (v->kind != RK_BAD)
        rdiag_add(d, false, v->line, v->col, path, "expected oneshot or train, got %s",
                  v->kind == RK_STR ? v->text : rnode_kind_name(v));
    *ok = false;
    return SP_RUN_ANY;
}

/* One modifier entry of a group. */
static void one_modifier(build *b, const char *where, const char *cls, const rnode *cls_node,
                         const rnode *fields, const rnode *at, const char *stage, sp_run_type run)
{
    rmod_ctx c = {b->d, b->opts, where, at->line, at->col, stage, run, false, 0};
    c.type_field = fields && fields->kind == RK_MAP && cls_node == rnode_get(fields, "type");
    sp_modifier m;
    memset(&m, 0, sizeof m);
    char path[224];
    /* flat recipes (sparsify's JSON) may say which stage a modifier is in */
    const rnode *sv = fields && fields->kind == RK_MAP ? rnode_get(fields, "stage") : NULL;
    const rnode *rv = fields && fields->kind == RK_MAP ? rnode_get(fields, "run_type") : NULL;
    if (sv && !stage) {
        if (sv->kind != RK_STR) {
            snprintf(path, sizeof path, "%s.stage", where);
            if (sv->kind != RK_BAD)
                rdiag_add(b->d, false, sv->line, sv->col, path, "expected a string, got %s",
                          rnode_kind_name(sv));
            return;
        }
        c.stage = sv->text;
    }
    if (rv && run == SP_RUN_ANY) {
        bool ok;
        snprintf(path, sizeof path, "%s.run_type", where);
        c.run = run_type_of(rv, b->d, path, &ok);
        if (!ok)
            return;
    }
    if (rmod_parse(&c, cls, cls_node, fields, &m))
        add_mod(b, &m);
    b->unsupported += c.unsupported;
}

static void parse_group(build *b, const char *path, rnode *g, const char *stage, sp_run_type run)
{
    char where[192];
    if (g->kind == RK_NULL || g->kind == RK_BAD)
        return;
    if (g->kind == RK_MAP) { /* llm-compressor: {ClassName: {fields}} */
        for (size_t i = 0; i < g->n; i++) {
            snprintf(where, sizeof where, "%s.%s", path, g->keys[i]->text);
            one_modifier(b, where, g->keys[i]->text, g->keys[i], g->items[i], g->keys[i], stage,
                         run);
        }
        return;
    }
    if (g->kind != RK_SEQ) {
        rdiag_add(b->d, false, g->line, g->col, path,
                  "expected a list of modifiers (or a map of class name to fields), got %s",
                  rnode_kind_name(g));
        return;
    }
    for (size_t i = 0; i < g->n; i++) {
        rnode *e = g->items[i];
        snprintf(where, sizeof where, "%s[%zu]", path, i);
        if (e->kind == RK_BAD)
            continue;
        if (e->tag && (e->kind == RK_MAP || e->kind == RK_NULL)) { /* - !GMPruningModifier */
            one_modifier(b, where, e->tag, e, e, e, stage, run);
            continue;
        }
        const rnode *t = e->kind == RK_MAP ? rnode_get(e, "type") : NULL;
        if (t && t->kind == RK_BAD)
            continue;
        if (t && t->kind == RK_STR) { /* {"type": "GMPruningModifier", ...} */
            one_modifier(b, where, t->text, t, e, e, stage, run);
            continue;
        }
        if (t) {
            char p[224];
            snprintf(p, sizeof p, "%s.type", where);
            rdiag_add(b->d, false, t->line ? t->line : e->line, t->line ? t->col : e->col, p,
                      "expected a string, got %s", rnode_kind_name(t));
            continue;
        }
        if (e->kind == RK_MAP && e->n == 1 &&
            (e->items[0]->kind == RK_MAP || e->items[0]->kind == RK_NULL)) {
            /* - GMPruningModifier: {fields} */
            snprintf(where, sizeof where, "%s[%zu].%s", path, i, e->keys[0]->text);
            one_modifier(b, where, e->keys[0]->text, e->keys[0], e->items[0], e, stage, run);
            continue;
        }
        if (e->kind == RK_MAP) {
            rdiag_add(b->d, false, e->line, e->col, where,
                      "type: missing (a modifier is a tagged map such as '!GMPruningModifier', "
                      "a map with \"type\", or {ClassName: {fields}})");
            continue;
        }
        rdiag_add(b->d, false, e->line, e->col, where,
                  "expected a modifier (a tagged map such as '!GMPruningModifier', a map with "
                  "\"type\", or {ClassName: {fields}}), got %s",
                  rnode_kind_name(e));
    }
}

/* "version": SparseML writes its own version ("1.1.0"), llm-compressor
 * "1.0", sparsify 1. Anything with major version 0 or 1 reads the same. */
static void check_version(build *b, const scope *s)
{
    const var *v = scope_find(s, "version");
    if (!v || v->state == 2)
        return;
    const rnode *n = v->val;
    if (n->kind != RK_NUM && n->kind != RK_STR) {
        rdiag_add(b->d, false, n->line, n->col, "version", "expected a number or a string, got %s",
                  rnode_kind_name(n));
        return;
    }
    char *end;
    errno = 0;
    long major = strtol(n->text, &end, 10);
    if (end == n->text || errno || (*end && *end != '.')) {
        rdiag_add(b->d, false, n->line, n->col, "version", "'%s' is not a version number",
                  n->text);
        return;
    }
    if (major < 0 || major > 1) {
        rdiag_add(b->d, false, n->line, n->col, "version",
                  "%s is not supported (expected 1, or a SparseML/llm-compressor 1.x version)",
                  n->text);
        return;
    }
    if (!strcmp(n->text, "1"))
        return; /* sparsify's own */
    if (!(b->r->source_version = strdup(n->text)))
        b->d->nomem = true;
}

/* A variable holding what looks like modifiers: its key lacks "modifiers". */
static void check_lost_groups(build *b, const scope *s)
{
    for (size_t i = 0; i < s->n; i++) {
        const rnode *v = s->v[i].val;
        if (v->kind != RK_SEQ || !v->n)
            continue;
        bool mods = true;
        for (size_t k = 0; k < v->n && mods; k++)
            mods = v->items[k]->tag || rnode_get(v->items[k], "type");
        if (mods)
            rdiag_add(b->d, false, s->v[i].key->line, s->v[i].key->col, s->v[i].name,
                      "looks like a list of modifiers, but only keys with 'modifiers' in their "
                      "name hold modifiers (it is read as a variable)");
    }
}

/* One warning per class of modifier that is not applied. */
static void not_applied_warnings(build *b)
{
    sp_recipe *r = b->r;
    for (size_t i = 0; i < r->nmods; i++) {
        const sp_modifier *m = &r->mods[i];
        if (m->type != SP_MOD_NOT_APPLIED || m->substitute_for)
            continue;
        bool seen = false;
        size_t count = 0;
        for (size_t j = 0; j < r->nmods; j++)
            if (r->mods[j].type == SP_MOD_NOT_APPLIED && !strcmp(r->mods[j].cls, m->cls)) {
                seen = seen || j < i;
                count++;
            }
        if (seen)
            continue;
        rdiag_add(b->d, true, m->line, 0, m->where,
                  "%s is not applied: sparsify does not quantize (%zu modifier%s of this type "
                  "left out; the rest of the recipe runs)",
                  m->cls, count, count == 1 ? "" : "s");
    }
}

static void parse_root(build *b, rnode *root)
{
    rdiag *d = b->d;
    scope global = {0};
    if (root->kind != RK_MAP) {
        rdiag_add(d, false, root->line, root->col, NULL,
                  "a recipe is a map of variables and modifier groups (such as "
                  "pruning_modifiers), got %s",
                  rnode_kind_name(root));
        return;
    }
    if (!collect_vars(&global, root, true, d, ""))
        goto out;
    eval_vars(&global);
    check_version(b, &global);
    bool any_group = false;
    for (size_t i = 0; i < root->n; i++) {
        const char *k = root->keys[i]->text;
        if (is_group_key(k)) {
            any_group = true;
            eval_tree(&root->items[i], &global, d, k);
            parse_group(b, k, root->items[i], NULL, SP_RUN_ANY);
            continue;
        }
        if (!is_stage(root->items[i]))
            continue;
        any_group = true;
        rnode *st = root->items[i];
        scope ss = {0};
        ss.parent = &global;
        char prefix[192], path[224];
        snprintf(prefix, sizeof prefix, "%s.", k);
        if (!collect_vars(&ss, st, false, d, prefix)) {
            scope_release(&ss);
            goto out;
        }
        eval_vars(&ss);
        const var *rv = NULL;
        for (size_t j = 0; j < ss.n; j++)
            if (!strcmp(ss.v[j].name, "run_type"))
                rv = &ss.v[j];
        bool ok = true;
        snprintf(path, sizeof path, "%srun_type", prefix);
        sp_run_type run = rv && rv->state == 1 ? run_type_of(rv->val, d, path, &ok) : SP_RUN_ANY;
        for (size_t j = 0; ok && j < st->n; j++) {
            if (!is_group_key(st->keys[j]->text))
                continue;
            snprintf(path, sizeof path, "%s%s", prefix, st->keys[j]->text);
            eval_tree(&st->items[j], &ss, d, path);
            parse_group(b, path, st->items[j], k, run);
        }
        scope_release(&ss);
    }
    check_lost_groups(b, &global);
    if (!any_group)
        rdiag_add(d, false, root->line, root->col, NULL,
                  "no modifiers: a recipe needs a key with 'modifiers' in its name (modifiers, "
                  "pruning_modifiers, ...) or a stage holding one");
    else if (!b->r->nmods && !d->errors)
        rdiag_add(d, false, root->line, root->col, NULL, "no modifiers: every group is empty");
    not_applied_warnings(b);
out:
    scope_release(&global);
}

/* The first error, and how many more, into err. */
static sp_status report(const rdiag *d, size_t unsupported, sp_error *err)
{
    if (d->nomem)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    const sp_recipe_problem *first = NULL;
    for (size_t i = 0; i < d->n && !first; i++)
        if (!d->v[i].warning)
            first = &d->v[i];
    sp_status code = unsupported == d->errors ? SP_ERR_UNSUPPORTED : SP_ERR_INVALID_ARG;
    char buf[SP_ERR_MSG_MAX];
    if (!first)
        return sp_error_set(err, code, "%zu problems", d->errors);
    sp_recipe_problem_str(first, buf, sizeof buf);
    if (d->errors > 1)
        return sp_error_set(err, code, "%s (and %zu more problem%s)", buf, d->errors - 1,
                            d->errors == 2 ? "" : "s");
    return sp_error_set(err, code, "%s", buf);
}

/* Problems in file order (they are found pass by pass): a stable insertion
 * sort by line and column; at most RDIAG_MAX of them. */
static void sort_problems(rdiag *d)
{
    for (size_t i = 1; i < d->n; i++) {
        sp_recipe_problem p = d->v[i];
        size_t j = i;
        while (j > 0 && (d->v[j - 1].line > p.line ||
                         (d->v[j - 1].line == p.line && d->v[j - 1].column > p.column))) {
            d->v[j] = d->v[j - 1];
            j--;
        }
        d->v[j] = p;
    }
}

static void move_problems(rdiag *d, sp_recipe_problems *out)
{
    if (out) {
        out->v = d->v;
        out->n = d->n;
        out->errors = d->errors;
        out->dropped = d->dropped;
        d->v = NULL;
    }
    rdiag_release(d);
}

sp_status sp_recipe_parse_ex(sp_recipe **out, const char *text, size_t len,
                             const sp_recipe_opts *opts, sp_recipe_problems *problems,
                             sp_error *err)
{
    rdiag d = {0};
    rnode *root = NULL;
    rformat fmt = RF_YAML;
    build b = {0};
    sp_status st = SP_OK;
    *out = NULL;
    if (problems)
        memset(problems, 0, sizeof *problems);
    b.d = &d;
    b.opts = opts;
    if (!(b.r = calloc(1, sizeof *b.r))) {
        d.nomem = true;
        goto out;
    }
    b.r->version = 1;
    if (!rdoc_parse(&root, text, len, &fmt, &d))
        goto out;
    b.r->format = rformat_name(fmt);
    parse_root(&b, root);
out:
    rnode_free(root);
    sort_problems(&d);
    if (d.errors || d.nomem || !b.r) {
        st = report(&d, b.unsupported, err);
        sp_recipe_free(b.r);
        move_problems(&d, problems);
        return st;
    }
    /* warnings stay with the recipe too */
    if (d.n) {
        b.r->warnings = malloc(d.n * sizeof *b.r->warnings);
        if (!b.r->warnings) {
            sp_recipe_free(b.r);
            rdiag_release(&d);
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        }
        memcpy(b.r->warnings, d.v, d.n * sizeof *d.v);
        b.r->nwarnings = d.n;
    }
    move_problems(&d, problems);
    *out = b.r;
    return SP_OK;
}

sp_status sp_recipe_parse(sp_recipe **out, const char *text, size_t len, sp_error *err)
{
    return sp_recipe_parse_ex(out, text, len, NULL, NULL, err);
}

/* ---- loading */

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

sp_status sp_recipe_load_ex(sp_recipe **out, const char *path_or_name, const sp_recipe_opts *opts,
                            sp_recipe_problems *problems, sp_error *err)
{
    *out = NULL;
    if (problems)
        memset(problems, 0, sizeof *problems);
    bool name_like = !strchr(path_or_name, '/') && !has_suffix(path_or_name, ".json") &&
                     !has_suffix(path_or_name, ".yaml") && !has_suffix(path_or_name, ".yml") &&
                     !has_suffix(path_or_name, ".md");
    if (name_like) {
        long i = sp_recipe_bundled_find(path_or_name);
        if (i >= 0) {
            const char *text = sp_recipe_bundled_text((size_t)i);
            sp_status st = sp_recipe_parse_ex(out, text, strlen(text), opts, problems, err);
            if (st)
                sp_error_prefix(err, "bundled recipe '%s'", path_or_name);
            return st;
        }
    }
    FILE *f = fopen(path_or_name, "rb");
    if (!f) {
        int e = errno;
        const char *close = name_like ? sp_recipe_bundled_closest(path_or_name) : NULL;
        if (e == ENOENT && close)
            return sp_error_set(err, SP_ERR_NOT_FOUND,
                                "no recipe file or bundled recipe named '%s' (did you mean '%s'?)",
                                path_or_name, close);
        if (e == ENOENT && name_like)
            return sp_error_set(err, SP_ERR_NOT_FOUND,
                                "no recipe file or bundled recipe named '%s' (see 'sparsify recipe "
                                "list')",
                                path_or_name);
        return sp_error_set(err, e == ENOENT ? SP_ERR_NOT_FOUND : SP_ERR_IO,
                            "cannot open '%s': %s", path_or_name, strerror(e));
    }
    sp_status st = SP_OK;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            if (cap >= ((size_t)64 << 20)) {
                st = sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': recipe is larger than 64 MiB",
                                  path_or_name);
                goto out;
            }
            cap = cap ? cap * 2 : 4096;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
                goto out;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                st = sp_error_set(err, SP_ERR_IO, "cannot read '%s': %s", path_or_name,
                                  strerror(errno));
            break;
        }
    }
    if (st)
        goto out;
    buf[n] = '\0';
    if ((st = sp_recipe_parse_ex(out, buf, n, opts, problems, err)))
        sp_error_prefix(err, "'%s'", path_or_name);
out:
    free(buf);
    fclose(f);
    return st;
}

sp_status sp_recipe_load(sp_recipe **out, const char *path_or_name, sp_error *err)
{
    return sp_recipe_load_ex(out, path_or_name, NULL, NULL, err);
}

/* ---- the normalised form */

static cJSON *terms_json(const sp_recipe_terms *t)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < t->n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(t->text[i]));
    return a;
}

static const char *lr_func_str(sp_lr_func f)
{
    return f == SP_LRF_COSINE ? "cosine" : f == SP_LRF_CYCLIC_LINEAR ? "cyclic_linear" : "linear";
}

static const char *lr_class_str(sp_lr_class c)
{
    return c == SP_LRC_MULTISTEP ? "MultiStepLR" : c == SP_LRC_EXPONENTIAL ? "ExponentialLR" : "StepLR";
}

/* cJSON prints numbers to 15 digits when that is close enough: make every
 * number of a parsed tree exact again. */
static void exact_numbers(cJSON *j)
{
    for (cJSON *c = j ? j->child : NULL; c;) {
        cJSON *next = c->next;
        if (cJSON_IsNumber(c)) {
            cJSON *n = rjson_number(c->valuedouble);
            if (n && c->string)
                cJSON_ReplaceItemInObjectCaseSensitive(j, c->string, n);
            else if (n)
                cJSON_ReplaceItemViaPointer(j, c, n);
        } else {
            exact_numbers(c);
        }
        c = next;
    }
}

static cJSON *modifier_json(const sp_modifier *m)
{
    char pb[32];
    cJSON *o;
    o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "type", m->cls ? m->cls : sp_modifier_type_str(m->type));
    if (m->type == SP_MOD_NOT_APPLIED && m->raw_json) { /* its fields as written */
        cJSON *raw = cJSON_Parse(m->raw_json);
        exact_numbers(raw);
        while (raw && raw->child) {
            cJSON *it = cJSON_DetachItemViaPointer(raw, raw->child);
            if (!it->string || !strcmp(it->string, "type") || !strcmp(it->string, "stage") ||
                !strcmp(it->string, "run_type"))
                cJSON_Delete(it);
            else
                cJSON_AddItemToObject(o, it->string, it);
        }
        cJSON_Delete(raw);
    }
    if (!o)
        return NULL;
    if (m->stage)
        cJSON_AddStringToObject(o, "stage", m->stage);
    if (m->run_type != SP_RUN_ANY)
        cJSON_AddStringToObject(o, "run_type", m->run_type == SP_RUN_ONESHOT ? "oneshot" : "train");
    switch (m->type) {
    case SP_MOD_MAGNITUDE:
    case SP_MOD_GMP:
    case SP_MOD_GLOBAL_MAGNITUDE:
    case SP_MOD_MOVEMENT:
        if (m->noverrides) {
            cJSON *map = cJSON_AddObjectToObject(o, "final_sparsity");
            for (size_t i = 0; i < m->noverrides; i++) {
                char k[32];
                snprintf(k, sizeof k, "%.17g", m->overrides[i].sparsity);
                cJSON_AddItemToObject(map, k, terms_json(&m->overrides[i].params));
            }
        } else {
            if (m->params.n)
                cJSON_AddItemToObject(o, "params", terms_json(&m->params));
            else
                cJSON_AddItemToObject(o, "params", cJSON_CreateStringArray(
                                                       (const char *[]){"__ALL_PRUNABLE__"}, 1));
            cJSON_AddItemToObject(o, "final_sparsity", rjson_number(m->final_sparsity));
        }
        if (m->ignore.n)
            cJSON_AddItemToObject(o, "ignore", terms_json(&m->ignore));
        cJSON_AddItemToObject(o, "init_sparsity", rjson_number(m->init_sparsity));
        cJSON_AddItemToObject(o, "start_epoch", rjson_number(m->start_epoch));
        cJSON_AddItemToObject(o, "end_epoch", rjson_number(m->end_epoch));
        cJSON_AddItemToObject(o, "update_frequency", rjson_number(m->update_frequency));
        cJSON_AddStringToObject(o, "inter_func", sp_inter_func_str(m->inter_func));
        cJSON_AddStringToObject(o, "mask_type", sp_pattern_str(&m->mask_type, pb, sizeof pb));
        cJSON_AddStringToObject(o, "block_score", m->block_score == SP_BLOCK_SCORE_L2 ? "l2" : "l1");
        if (m->score == SP_SCORE_WANDA)
            cJSON_AddStringToObject(o, "score", "wanda");
        cJSON_AddBoolToObject(o, "global_sparsity", m->global_sparsity);
        cJSON_AddBoolToObject(o, "leave_enabled", m->leave_enabled);
        if (m->type == SP_MOD_MOVEMENT)
            cJSON_AddStringToObject(o, "mask_mode", m->soft_mask ? "soft" : "hard");
        break;
    case SP_MOD_CONSTANT:
        if (m->params.n)
            cJSON_AddItemToObject(o, "params", terms_json(&m->params));
        if (m->ignore.n)
            cJSON_AddItemToObject(o, "ignore", terms_json(&m->ignore));
        cJSON_AddItemToObject(o, "start_epoch", rjson_number(m->start_epoch));
        cJSON_AddItemToObject(o, "end_epoch", rjson_number(m->end_epoch));
        break;
    case SP_MOD_DISTILLATION:
        cJSON_AddItemToObject(o, "hardness", rjson_number(m->hardness));
        cJSON_AddItemToObject(o, "temperature", rjson_number(m->temperature));
        if (m->teacher)
            cJSON_AddStringToObject(o, "teacher", m->teacher);
        cJSON_AddItemToObject(o, "start_epoch", rjson_number(m->start_epoch));
        cJSON_AddItemToObject(o, "end_epoch", rjson_number(m->end_epoch));
        break;
    case SP_MOD_EPOCH_RANGE:
        cJSON_AddItemToObject(o, "start_epoch", rjson_number(m->start_epoch));
        cJSON_AddItemToObject(o, "end_epoch", rjson_number(m->end_epoch));
        break;
    case SP_MOD_SET_LR:
        cJSON_AddItemToObject(o, "learning_rate", rjson_number(m->learning_rate));
        cJSON_AddItemToObject(o, "start_epoch", rjson_number(m->start_epoch));
        break;
    case SP_MOD_LR_FUNCTION:
        cJSON_AddStringToObject(o, "lr_func", lr_func_str(m->lr_func));
        cJSON_AddItemToObject(o, "init_lr", rjson_number(m->init_lr));
        cJSON_AddItemToObject(o, "final_lr", rjson_number(m->final_lr));
        cJSON_AddItemToObject(o, "start_epoch", rjson_number(m->start_epoch));
        cJSON_AddItemToObject(o, "end_epoch", rjson_number(m->end_epoch));
        if (m->lr_func == SP_LRF_CYCLIC_LINEAR)
            cJSON_AddItemToObject(o, "cycle_epochs", rjson_number(m->cycle_epochs));
        break;
    case SP_MOD_LR_SCHEDULE: {
        cJSON_AddStringToObject(o, "lr_class", lr_class_str(m->lr_class));
        cJSON *kw = cJSON_AddObjectToObject(o, "lr_kwargs");
        if (m->lr_class == SP_LRC_STEP)
            cJSON_AddItemToObject(kw, "step_size", rjson_number(m->step_size));
        if (m->lr_class == SP_LRC_MULTISTEP) {
            cJSON *ms = cJSON_AddArrayToObject(kw, "milestones");
            for (size_t i = 0; i < m->nmilestones; i++)
                cJSON_AddItemToArray(ms, rjson_number(m->milestones[i]));
        }
        cJSON_AddItemToObject(kw, "gamma", rjson_number(m->gamma));
        cJSON_AddItemToObject(o, "init_lr", rjson_number(m->init_lr));
        cJSON_AddItemToObject(o, "start_epoch", rjson_number(m->start_epoch));
        cJSON_AddItemToObject(o, "end_epoch", rjson_number(m->end_epoch));
        break;
    }
    case SP_MOD_SET_WEIGHT_DECAY:
        cJSON_AddItemToObject(o, "weight_decay", rjson_number(m->weight_decay));
        cJSON_AddItemToObject(o, "start_epoch", rjson_number(m->start_epoch));
        break;
    case SP_MOD_NOT_APPLIED:
        break;
    }
    return o;
}

sp_status sp_recipe_to_json(const sp_recipe *r, char **out, sp_error *err)
{
    *out = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    if (r->source_version) /* SparseML's "1.1.0" stays as it was */
        cJSON_AddStringToObject(root, "version", r->source_version);
    else
        cJSON_AddItemToObject(root, "version", rjson_number(1));
    cJSON *mods = cJSON_AddArrayToObject(root, "modifiers");
    bool ok = mods != NULL;
    for (size_t i = 0; ok && i < r->nmods; i++) {
        /* one left out by --substitute stays as it was: reading it back
         * needs --substitute again */
        cJSON *o = modifier_json(&r->mods[i]);
        ok = o != NULL;
        if (o)
            cJSON_AddItemToArray(mods, o);
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    size_t n = strlen(text);
    *out = malloc(n + 2);
    if (!*out) {
        cJSON_free(text);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    memcpy(*out, text, n);
    (*out)[n] = '\n';
    (*out)[n + 1] = '\0';
    cJSON_free(text);
    return SP_OK;
}
