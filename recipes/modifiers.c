/*
 * One modifier: its class, its fields (SparseML's names, llm-compressor's
 * aliases), their checks and defaults (schema in docs/recipes.md).
 *
 * Validation is strict - unknown fields, wrong types and out-of-range
 * values are problems naming the field and its line - so a typo never
 * silently turns into "prune nothing"; every problem of a modifier is
 * reported, not only the first.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "recipes/internal.h"

/* ---- classes */

typedef enum mkind {
    MK_PRUNE,     /* magnitude, GMP, global magnitude, movement */
    MK_CONSTANT,
    MK_DISTILL,
    MK_EPOCH,
    MK_SET_LR,
    MK_LR_FUNC,
    MK_LR_SCHED,
    MK_SET_WD,
    MK_NOT_APPLIED, /* quantization: read, reported, not applied */
} mkind;

static const struct mclass {
    const char *name, *short_name;
    mkind kind;
    sp_modifier_type type;
} classes[] = {
    {"MagnitudePruningModifier", "magnitude", MK_PRUNE, SP_MOD_MAGNITUDE},
    /* llm-compressor's Wanda: one-shot magnitude pruning scored by wanda */
    {"WandaPruningModifier", NULL, MK_PRUNE, SP_MOD_MAGNITUDE},
    {"GMPruningModifier", "gradual_magnitude", MK_PRUNE, SP_MOD_GMP},
    {"GlobalMagnitudePruningModifier", "global_magnitude", MK_PRUNE, SP_MOD_GLOBAL_MAGNITUDE},
    {"MovementPruningModifier", "movement", MK_PRUNE, SP_MOD_MOVEMENT},
    {"ConstantPruningModifier", "constant", MK_CONSTANT, SP_MOD_CONSTANT},
    {"DistillationModifier", "distillation", MK_DISTILL, SP_MOD_DISTILLATION},
    {"EpochRangeModifier", "epoch_range", MK_EPOCH, SP_MOD_EPOCH_RANGE},
    {"SetLearningRateModifier", "set_learning_rate", MK_SET_LR, SP_MOD_SET_LR},
    {"LearningRateFunctionModifier", "learning_rate_function", MK_LR_FUNC, SP_MOD_LR_FUNCTION},
    {"LearningRateModifier", "learning_rate", MK_LR_SCHED, SP_MOD_LR_SCHEDULE},
    {"SetWeightDecayModifier", "set_weight_decay", MK_SET_WD, SP_MOD_SET_WEIGHT_DECAY},
    /* quantization (SparseML, llm-compressor): sparsify does not quantize */
    {"QuantizationModifier", NULL, MK_NOT_APPLIED, SP_MOD_NOT_APPLIED},
    {"LegacyQuantizationModifier", NULL, MK_NOT_APPLIED, SP_MOD_NOT_APPLIED},
    {"GPTQModifier", NULL, MK_NOT_APPLIED, SP_MOD_NOT_APPLIED},
    {"SmoothQuantModifier", NULL, MK_NOT_APPLIED, SP_MOD_NOT_APPLIED},
    {"LogarithmicEqualizationModifier", NULL, MK_NOT_APPLIED, SP_MOD_NOT_APPLIED},
    {"AWQModifier", NULL, MK_NOT_APPLIED, SP_MOD_NOT_APPLIED},
    {"AutoRoundModifier", NULL, MK_NOT_APPLIED, SP_MOD_NOT_APPLIED},
    {"QuIPModifier", NULL, MK_NOT_APPLIED, SP_MOD_NOT_APPLIED},
    {"SpinQuantModifier", NULL, MK_NOT_APPLIED, SP_MOD_NOT_APPLIED},
};
#define NCLASSES (sizeof classes / sizeof classes[0])

/*
 * Pruning algorithms sparsify does not implement, and the closest one it
 * has. Without --substitute a recipe naming one of these is refused (exit
 * 2) with this row's class and note; with it, the closest class runs in its
 * place (its fields read the same way; the algorithm's own fields, such as
 * num_grads or block_size, are ignored) and a warning says so.
 *   closest: a class above; "" = left out (nothing to run: the zeros stay as
 *   they are); NULL = nothing close, refused even with --substitute.
 *   from, to: a field of that algorithm spelt differently from ours.
 * Once sparsify implements one of these, move it to `classes` above.
 */
static const struct closest {
    const char *name, *closest, *note, *from, *to;
} closest_table[] = {
    {"SparseGPTModifier", "MagnitudePruningModifier",
     "one-shot magnitude pruning to the same sparsity and mask_structure, without calibration data "
     "or SparseGPT's weight updates", NULL, NULL},
    {"OBSPruningModifier", "GMPruningModifier",
     "gradual magnitude pruning on the same schedule: magnitude scores instead of the Optimal Brain "
     "Surgeon's second-order ones", NULL, NULL},
    {"MFACPruningModifier", "GMPruningModifier",
     "gradual magnitude pruning on the same schedule: magnitude scores instead of M-FAC's "
     "second-order ones", NULL, NULL},
    {"ACDCPruningModifier", "GMPruningModifier",
     "gradual magnitude pruning to compression_sparsity, without AC/DC's dense phases",
     "compression_sparsity", "final_sparsity"},
    {"LayerThinningModifier", "",
     "layer thinning removes pruned channels from the model; sparsify keeps every shape, so the "
     "zeros stay in place", NULL, NULL},
    {"StructuredPruningModifier", NULL,
     "it prunes whole filters or channels; sparsify prunes weights, blocks and N:M groups", NULL,
     NULL},
    {"LayerPruningModifier", NULL, "it removes whole layers; sparsify keeps every layer", NULL, NULL},
};
#define NCLOSEST (sizeof closest_table / sizeof closest_table[0])

static const char *strip_tag(const char *w)
{
    return w[0] == '!' ? w + 1 : w;
}

static const struct mclass *find_class(const char *written)
{
    const char *w = strip_tag(written);
    for (size_t i = 0; i < NCLASSES; i++)
        if (!strcmp(w, classes[i].name) || (classes[i].short_name && !strcmp(w, classes[i].short_name)))
            return &classes[i];
    return NULL;
}

const char *rmod_class_name(const char *written)
{
    const struct mclass *k = find_class(written);
    return k ? k->name : NULL;
}

/* ---- fields */

/* llm-compressor's names for SparseML's fields */
static const char *const aliases[][2] = {
    {"targets", "params"},         {"start", "start_epoch"},
    {"end", "end_epoch"},          {"update", "update_frequency"},
    {"sparsity", "final_sparsity"}, {"mask_structure", "mask_type"},
    {"update_scheduler", "inter_func"}, {"apply_globally", "global_sparsity"},
};

#define MAXF 64

typedef struct field {
    const char *name;    /* canonical */
    const char *written; /* as in the file */
    const rnode *key, *val;
    bool used;
} field;

typedef struct mctx {
    rmod_ctx *rc;
    const char *cls;     /* canonical class, for messages */
    field f[MAXF];
    size_t nf;
    bool bad;
    bool lenient;        /* a substitute: unknown fields are the algorithm's */
} mctx;

static void perr(mctx *c, const field *f, const char *name, const rnode *at, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void perr(mctx *c, const field *f, const char *name, const rnode *at, const char *fmt, ...)
{
    char msg[SP_ERR_MSG_MAX], path[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *fname = f ? f->written : name;
    if (fname)
        snprintf(path, sizeof path, "%s.%s", c->rc->where, fname);
    else
        snprintf(path, sizeof path, "%s", c->rc->where);
    if (!at && f)
        at = f->val->line ? f->val : f->key;
    int line = at && at->line ? at->line : c->rc->line;
    int col = at && at->line ? at->col : c->rc->col;
    rdiag_add(c->rc->d, false, line, col, path, "%s", msg);
    c->bad = true;
}

static field *take(mctx *c, const char *name)
{
    for (size_t i = 0; i < c->nf; i++)
        if (!strcmp(c->f[i].name, name)) {
            c->f[i].used = true;
            return &c->f[i];
        }
    return NULL;
}

/* Present and usable (an evaluation that failed was already reported). */
static const rnode *val_of(mctx *c, field *f)
{
    if (!f)
        return NULL;
    if (f->val->kind == RK_BAD) {
        c->bad = true;
        return NULL;
    }
    return f->val;
}

/* The field's value when it is of kind k. 1: read (*out); 0: absent; -1:
 * bad (reported: "expected <expected>, got a list"). */
static int get_typed(mctx *c, const char *name, rkind k, const char *expected, const rnode **out)
{
    field *f = take(c, name);
    const rnode *v = val_of(c, f);
    if (!f)
        return 0;
    if (!v)
        return -1;
    if (v->kind != k) {
        perr(c, f, NULL, NULL, "expected %s, got %s", expected, rnode_kind_name(v));
        return -1;
    }
    *out = v;
    return 1;
}

static int get_num(mctx *c, const char *name, double *out)
{
    const rnode *v;
    int r = get_typed(c, name, RK_NUM, "a number", &v);
    if (r != 1)
        return r;
    if (!isfinite(v->num)) {
        perr(c, take(c, name), NULL, NULL, "expected a finite number");
        return -1;
    }
    *out = v->num;
    return 1;
}

static int get_fraction(mctx *c, const char *name, double *out)
{
    int r = get_num(c, name, out);
    if (r == 1 && (*out < 0.0 || *out > 1.0)) {
        perr(c, take(c, name), NULL, NULL, "%g is out of range [0, 1]", *out);
        return -1;
    }
    return r;
}

static int get_bool(mctx *c, const char *name, bool *out)
{
    const rnode *v;
    int r = get_typed(c, name, RK_BOOL, "true or false", &v);
    if (r == 1)
        *out = v->b;
    return r;
}

static int get_string(mctx *c, const char *name, const char **out)
{
    const rnode *v;
    int r = get_typed(c, name, RK_STR, "a string", &v);
    if (r == 1)
        *out = v->text;
    return r;
}

/* A string field that takes one of names: *out gets its index. 1: read;
 * 0: absent (a problem when required); -1: bad (reported). */
static int get_choice(mctx *c, const char *name, const char *const *names, int *out,
                      bool required)
{
    const char *s;
    int r = get_string(c, name, &s);
    if (r == 0 && required && !take(c, name))
        perr(c, NULL, name, NULL, "missing (required for %s)", c->cls);
    if (r != 1)
        return r;
    char list[256];
    size_t k = 0;
    list[0] = '\0';
    for (int i = 0; names[i]; i++) {
        if (!strcmp(s, names[i])) {
            *out = i;
            return 1;
        }
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", names[i]);
        if (k >= sizeof list)
            k = sizeof list - 1;
    }
    perr(c, take(c, name), NULL, NULL, "'%s' is not one of %s", s, list);
    return -1;
}

/* A field SparseML accepts that changes nothing here. */
static void ignore_field(mctx *c, const char *name)
{
    take(c, name);
}

/* Collect fields, resolving aliases; duplicates are problems. from/to: a
 * substitute's own spelling of one field. */
static void collect(mctx *c, const rnode *fields, const char *from, const char *to)
{
    for (size_t i = 0; fields && i < fields->n; i++) {
        const char *w = fields->keys[i]->text, *name = w;
        for (size_t a = 0; a < sizeof aliases / sizeof aliases[0]; a++)
            if (!strcmp(w, aliases[a][0]))
                name = aliases[a][1];
        if (from && !strcmp(w, from))
            name = to;
        bool dup = false;
        for (size_t j = 0; j < c->nf; j++)
            if (!strcmp(c->f[j].name, name)) {
                field tmp = {name, w, fields->keys[i], fields->items[i], true};
                if (strcmp(c->f[j].written, w))
                    perr(c, &tmp, NULL, fields->keys[i], "given twice (as '%s' and '%s')",
                         c->f[j].written, w);
                else
                    perr(c, &tmp, NULL, fields->keys[i], "given twice");
                dup = true;
            }
        if (dup)
            continue;
        if (c->nf == MAXF) {
            perr(c, NULL, NULL, fields->keys[i], "more than %d fields", MAXF);
            return;
        }
        c->f[c->nf++] = (field){name, w, fields->keys[i], fields->items[i], false};
    }
}

/* Fields a kind reads, for "unknown field" messages and suggestions. */
static const char *const prune_fields[] = {
    "params", "ignore", "init_sparsity", "final_sparsity", "start_epoch", "end_epoch",
    "update_frequency", "inter_func", "mask_type", "leave_enabled", "global_sparsity",
    "block_score", "score", "mask_mode", "phased", "score_type", "scheduler_args", NULL};
static const char *const constant_fields[] = {"params", "ignore", "start_epoch", "end_epoch",
                                              "update_frequency", NULL};
static const char *const distill_fields[] = {"hardness", "temperature", "teacher", "start_epoch",
                                             "end_epoch", "update_frequency", "distill_output_keys",
                                             "teacher_input_keys", NULL};
static const char *const epoch_fields[] = {"start_epoch", "end_epoch", NULL};
static const char *const set_lr_fields[] = {"learning_rate", "start_epoch", "end_epoch",
                                            "param_groups", "constant_logging", NULL};
static const char *const lr_func_fields[] = {"lr_func", "init_lr", "final_lr", "start_epoch",
                                             "end_epoch", "cycle_epochs", "param_groups",
                                             "update_frequency", NULL};
static const char *const lr_sched_fields[] = {"lr_class", "lr_kwargs", "init_lr", "start_epoch",
                                              "end_epoch", "update_frequency", "constant_logging",
                                              NULL};
static const char *const set_wd_fields[] = {"weight_decay", "start_epoch", "end_epoch",
                                            "param_groups", "constant_logging", NULL};
/* every modifier: ours, SparseML's logging, llm-compressor's bookkeeping */
static const char *const common_fields[] = {"stage", "run_type", "log_types", "index", "group",
                                            NULL};

static const char *const *fields_of(mkind k)
{
    switch (k) {
    case MK_PRUNE: return prune_fields;
    case MK_CONSTANT: return constant_fields;
    case MK_DISTILL: return distill_fields;
    case MK_EPOCH: return epoch_fields;
    case MK_SET_LR: return set_lr_fields;
    case MK_LR_FUNC: return lr_func_fields;
    case MK_LR_SCHED: return lr_sched_fields;
    case MK_SET_WD: return set_wd_fields;
    case MK_NOT_APPLIED: return NULL;
    }
    return NULL;
}

static bool in_list(const char *const *l, const char *s)
{
    for (; l && *l; l++)
        if (!strcmp(*l, s))
            return true;
    return false;
}

/* Everything not read is unknown (or belongs to another kind). */
static void unknown_fields(mctx *c, mkind k)
{
    if (c->lenient)
        return;
    const char *const *own = fields_of(k);
    const char *all[128];
    size_t n = 0;
    for (const char *const *l = own; l && *l; l++)
        all[n++] = *l;
    for (const char *const *l = common_fields; *l; l++)
        all[n++] = *l;
    for (size_t i = 0; i < c->nf; i++) {
        field *f = &c->f[i];
        if (f->used)
            continue;
        bool elsewhere = in_list(prune_fields, f->name) || in_list(constant_fields, f->name) ||
                         in_list(distill_fields, f->name) || in_list(lr_func_fields, f->name) ||
                         in_list(lr_sched_fields, f->name) || in_list(set_lr_fields, f->name) ||
                         in_list(set_wd_fields, f->name);
        const char *close = sp_closest_name(f->written, all, n);
        if (elsewhere)
            perr(c, f, NULL, f->key, "not a field of %s", c->cls);
        else if (close)
            perr(c, f, NULL, f->key, "unknown field (did you mean '%s'?)", close);
        else
            perr(c, f, NULL, f->key, "unknown field");
    }
}

/* ---- terms */

void rterms_release(sp_recipe_terms *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->text[i]);
        if (t->re)
            sp_regex_free(t->re[i]);
    }
    free(t->text);
    free(t->re);
    memset(t, 0, sizeof *t);
}

bool rterms_parse(sp_recipe_terms *t, const rnode *v, bool allow_empty, rdiag *d, const char *path)
{
    memset(t, 0, sizeof *t);
    if (v->kind != RK_STR && v->kind != RK_SEQ) {
        rdiag_add(d, false, v->line, v->col, path,
                  "expected a string or a list of strings, got %s", rnode_kind_name(v));
        return false;
    }
    size_t n = v->kind == RK_STR ? 1 : v->n;
    if (!n) {
        if (allow_empty)
            return true;
        rdiag_add(d, false, v->line, v->col, path, "empty list");
        return false;
    }
    t->text = calloc(n, sizeof *t->text);
    t->re = calloc(n, sizeof *t->re);
    if (!t->text || !t->re) {
        d->nomem = true;
        rterms_release(t);
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        const rnode *e = v->kind == RK_STR ? v : v->items[i];
        if (e->kind == RK_BAD) {
            ok = false;
            continue;
        }
        if (e->kind != RK_STR || !*e->text) {
            rdiag_add(d, false, e->line ? e->line : v->line, e->line ? e->col : v->col, path,
                      "entry %zu: expected a non-empty string, got %s", i,
                      e->kind == RK_STR ? "\"\"" : rnode_kind_name(e));
            ok = false;
            continue;
        }
        const char *s = e->text;
        /* SparseML upper-cases these */
        if (!strcasecmp(s, "__ALL_PRUNABLE__"))
            s = "__ALL_PRUNABLE__";
        else if (!strcasecmp(s, "__ALL__"))
            s = "__ALL__";
        if (!(t->text[t->n] = strdup(s))) {
            d->nomem = true;
            ok = false;
            break;
        }
        if (!strncmp(s, "re:", 3)) {
            sp_error e2 = {0};
            if (sp_regex_new(&t->re[t->n], s + 3, true, &e2)) {
                if (e2.code == SP_ERR_NOMEM)
                    d->nomem = true;
                rdiag_add(d, false, e->line ? e->line : v->line, e->line ? e->col : v->col, path,
                          "%s", e2.msg);
                free(t->text[t->n]);
                t->text[t->n] = NULL;
                ok = false;
                continue;
            }
        }
        t->n++;
    }
    if (!ok)
        rterms_release(t);
    return ok;
}

static bool terms_field(mctx *c, const char *name, sp_recipe_terms *t, bool allow_empty)
{
    field *f = take(c, name);
    const rnode *v = val_of(c, f);
    if (!v)
        return true;
    char path[192];
    snprintf(path, sizeof path, "%s.%s", c->rc->where, f->written);
    if (!rterms_parse(t, v, allow_empty, c->rc->d, path)) {
        c->bad = true;
        return false;
    }
    return true;
}

/* ---- pruning fields */

static void mask_type_field(mctx *c, sp_modifier *m)
{
    field *f = take(c, "mask_type");
    const rnode *v = val_of(c, f);
    char text[64];
    if (!v)
        return;
    if (v->kind == RK_SEQ) {
        const rnode *a = v->n == 2 ? v->items[0] : NULL, *b = v->n == 2 ? v->items[1] : NULL;
        if (!a || a->kind != RK_NUM || b->kind != RK_NUM || a->num != floor(a->num) ||
            b->num != floor(b->num) || a->num < 1 || b->num < 1 || a->num > 1048576 ||
            b->num > 1048576) {
            perr(c, f, NULL, NULL, "a block must be [rows, cols] of two positive integers");
            return;
        }
        snprintf(text, sizeof text, "%.0fx%.0f", a->num, b->num);
    } else if (v->kind == RK_STR) {
        snprintf(text, sizeof text, "%s", v->text);
        if (!strcmp(text, "0:0")) /* llm-compressor: unstructured */
            snprintf(text, sizeof text, "unstructured");
    } else {
        perr(c, f, NULL, NULL, "expected a string or [rows, cols], got %s", rnode_kind_name(v));
        return;
    }
    sp_error e = {0};
    if (sp_pattern_parse(&m->mask_type, text, &e))
        perr(c, f, NULL, NULL, "%s", e.msg);
}

/* final_sparsity as a map {0.9: [params], 0.8: "re:..."}. */
static bool overrides_field(mctx *c, field *f, sp_modifier *m)
{
    const rnode *v = f->val;
    if (!v->n) {
        perr(c, f, NULL, NULL, "empty map");
        return false;
    }
    m->overrides = calloc(v->n, sizeof *m->overrides);
    if (!m->overrides) {
        c->rc->d->nomem = true;
        return false;
    }
    double maxs = 0.0;
    bool ok = true;
    for (size_t i = 0; i < v->n; i++) {
        const char *k = v->keys[i]->text;
        char *end;
        errno = 0;
        double s = strtod(k, &end);
        if (errno || end == k || *end || !isfinite(s)) {
            perr(c, f, NULL, v->keys[i], "key '%s' is not a number", k);
            ok = false;
            continue;
        }
        if (s < 0.0 || s > 1.0) {
            perr(c, f, NULL, v->keys[i], "%g is out of range [0, 1]", s);
            ok = false;
            continue;
        }
        sp_sparsity_override *o = &m->overrides[m->noverrides];
        char path[192];
        snprintf(path, sizeof path, "%s.%s", c->rc->where, f->written);
        if (v->items[i]->kind == RK_BAD || !rterms_parse(&o->params, v->items[i], false, c->rc->d, path)) {
            c->bad = true;
            ok = false;
            continue;
        }
        o->sparsity = s;
        m->noverrides++;
        if (s > maxs)
            maxs = s;
    }
    m->final_sparsity = maxs;
    if (!ok)
        return false;
    /* the map's lists are the params */
    size_t total = 0;
    for (size_t i = 0; i < m->noverrides; i++)
        total += m->overrides[i].params.n;
    m->params.text = calloc(total, sizeof(char *));
    m->params.re = calloc(total, sizeof(sp_regex *));
    if (!m->params.text || !m->params.re) {
        c->rc->d->nomem = true;
        return false;
    }
    for (size_t i = 0; i < m->noverrides; i++)
        for (size_t j = 0; j < m->overrides[i].params.n; j++) {
            const char *s = m->overrides[i].params.text[j];
            sp_error e = {0};
            if (!(m->params.text[m->params.n] = strdup(s)) ||
                (!strncmp(s, "re:", 3) && sp_regex_new(&m->params.re[m->params.n], s + 3, true, &e))) {
                free(m->params.text[m->params.n]);
                c->rc->d->nomem = true;
                return false;
            }
            m->params.n++;
        }
    return true;
}

/* "score": magnitude | wanda (|w| times the activation norm of its input
 * feature over calibration data: one-shot only). WandaPruningModifier
 * scores by wanda; its fields that decide only the order of llm-compressor's
 * layer-by-layer pass (sequential_update, sequential_targets) change
 * nothing here, and its OWL layer profile is not implemented. */
static void score_field(mctx *c, sp_modifier *m, bool gradual)
{
    static const char *const scores[] = {"magnitude", "wanda", NULL};
    const bool wanda_class = !strcmp(c->cls, "WandaPruningModifier");
    int k;
    if (wanda_class) {
        m->score = SP_SCORE_WANDA;
        ignore_field(c, "sequential_update");
        ignore_field(c, "sequential_targets");
        ignore_field(c, "owl_m");     /* OWL's, read only with a profile */
        ignore_field(c, "owl_lmbda");
        field *f = take(c, "sparsity_profile");
        if (val_of(c, f) && f->val->kind != RK_NULL)
            perr(c, f, NULL, NULL, "OWL layer profiles are not supported (use null; 'sparsify "
                                   "sensitivity --recipe-out' gives per-layer sparsities)");
    }
    if (get_choice(c, "score", scores, &k, false) == 1) {
        if (wanda_class && k != 1)
            perr(c, take(c, "score"), NULL, NULL, "WandaPruningModifier scores by wanda");
        m->score = k == 1 ? SP_SCORE_WANDA : SP_SCORE_MAGNITUDE;
    }
    if (m->score != SP_SCORE_WANDA)
        return;
    const char *at = wanda_class ? NULL : "score";
    if (m->type == SP_MOD_MOVEMENT)
        perr(c, at ? take(c, at) : NULL, NULL, NULL,
             "wanda does not apply to %s (its scores are movement)", c->cls);
    else if (gradual)
        perr(c, at ? take(c, at) : NULL, NULL, NULL,
             "wanda is one-shot (start_epoch %g, end_epoch %g): it needs calibration data, which "
             "a training schedule does not have",
             m->start_epoch, m->end_epoch);
}

static void parse_prune(mctx *c, sp_modifier *m)
{
    double v;
    int r;
    bool has_init = false, has_final = false, gradual;
    const char *s;
    field *f;

    terms_field(c, "params", &m->params, true);
    bool params_given = take(c, "params") != NULL;
    terms_field(c, "ignore", &m->ignore, false);
    if (get_num(c, "start_epoch", &m->start_epoch) == 1 && m->start_epoch == -1.0)
        m->start_epoch = 0.0; /* SparseML: -1 = from the start */
    if (m->start_epoch < 0.0)
        perr(c, take(c, "start_epoch"), NULL, NULL, "%g is negative", m->start_epoch);
    r = get_num(c, "end_epoch", &m->end_epoch);
    if (r == 0)
        m->end_epoch = m->start_epoch;
    else if (r == 1 && m->end_epoch < m->start_epoch)
        perr(c, take(c, "end_epoch"), NULL, NULL, "%g is before start_epoch %g", m->end_epoch,
             m->start_epoch);
    gradual = m->end_epoch > m->start_epoch;
    if (get_num(c, "update_frequency", &m->update_frequency) == 1 && gradual &&
        !(m->update_frequency > 0.0))
        perr(c, take(c, "update_frequency"), NULL, NULL, "%g must be > 0 for a gradual schedule",
             m->update_frequency);
    mask_type_field(c, m);
    if (get_string(c, "inter_func", &s) == 1) {
        sp_error e = {0};
        if (sp_inter_func_parse(&m->inter_func, s, &e))
            perr(c, take(c, "inter_func"), NULL, NULL, "%s", e.msg);
    }
    if (get_string(c, "block_score", &s) == 1) {
        if (!strcasecmp(s, "l1"))
            m->block_score = SP_BLOCK_SCORE_L1;
        else if (!strcasecmp(s, "l2"))
            m->block_score = SP_BLOCK_SCORE_L2;
        else
            perr(c, take(c, "block_score"), NULL, NULL, "'%s' is not one of l1, l2", s);
    }
    get_bool(c, "leave_enabled", &m->leave_enabled);
    m->global_sparsity = m->type == SP_MOD_GLOBAL_MAGNITUDE;
    if (get_bool(c, "global_sparsity", &m->global_sparsity) == 1 &&
        m->type == SP_MOD_GLOBAL_MAGNITUDE && !m->global_sparsity)
        perr(c, take(c, "global_sparsity"), NULL, NULL,
             "must be true for GlobalMagnitudePruningModifier");
    bool phased = false;
    if (get_bool(c, "phased", &phased) == 1 && phased)
        perr(c, take(c, "phased"), NULL, NULL, "phased pruning is not supported (use false)");
    if (get_string(c, "score_type", &s) == 1 && strcmp(s, "magnitude"))
        perr(c, take(c, "score_type"), NULL, NULL, "'%s' is not supported (only magnitude)", s);
    ignore_field(c, "scheduler_args");
    score_field(c, m, gradual);
    static const char *const modes[] = {"hard", "soft", NULL};
    int mode;
    if (get_choice(c, "mask_mode", modes, &mode, false) == 1) {
        if (m->type != SP_MOD_MOVEMENT)
            perr(c, take(c, "mask_mode"), NULL, NULL, "only MovementPruningModifier has mask_mode");
        m->soft_mask = mode == 1;
    }
    if ((r = get_fraction(c, "init_sparsity", &v)) == 1) {
        m->init_sparsity = v;
        has_init = true;
    }
    if ((f = take(c, "final_sparsity")) && val_of(c, f)) {
        if (f->val->kind == RK_MAP) {
            if (m->params.n)
                perr(c, take(c, "params"), NULL, NULL,
                     "cannot be combined with a map-valued final_sparsity (the map lists the "
                     "params)");
            else if (m->global_sparsity)
                perr(c, f, NULL, NULL, "a per-layer map cannot be used with a global threshold");
            else
                overrides_field(c, f, m);
        } else if (f->val->kind == RK_NUM) {
            if (get_fraction(c, "final_sparsity", &m->final_sparsity) == 1 && params_given &&
                !m->params.n && !c->bad)
                perr(c, take(c, "params"), NULL, NULL, "empty list (it selects nothing)");
        } else {
            perr(c, f, NULL, NULL, "expected a number or a map, got %s", rnode_kind_name(f->val));
        }
        has_final = true;
    } else if (f) {
        has_final = true; /* reported */
    }
    if (m->mask_type.kind == SP_PATTERN_NM) {
        double implied = sp_pattern_implied_sparsity(&m->mask_type);
        char pb[32];
        sp_pattern_str(&m->mask_type, pb, sizeof pb);
        if (m->global_sparsity)
            perr(c, take(c, "global_sparsity"), "global_sparsity", NULL,
                 "N:M patterns (%s) cannot use a global threshold", pb);
        if (has_final && !m->noverrides && !c->bad && fabs(m->final_sparsity - implied) > 1e-9)
            perr(c, take(c, "final_sparsity"), NULL, NULL,
                 "%g does not match mask_type %s (which implies %g)", m->final_sparsity, pb, implied);
        for (size_t i = 0; i < m->noverrides; i++)
            if (fabs(m->overrides[i].sparsity - implied) > 1e-9)
                perr(c, take(c, "final_sparsity"), NULL, NULL,
                     "%g does not match mask_type %s (which implies %g)", m->overrides[i].sparsity,
                     pb, implied);
        m->final_sparsity = implied;
        if (!has_init)
            m->init_sparsity = implied;
    } else if (!has_final) {
        perr(c, NULL, "final_sparsity", NULL, "missing (required for %s)", c->cls);
    }
    if (!has_init && !gradual)
        m->init_sparsity = m->final_sparsity; /* one-shot */
}

/* start_epoch/end_epoch of the modifiers that accept SparseML's -1 for
 * both (from the start, until the end of training). */
static void open_epochs(mctx *c, sp_modifier *m, double start_default)
{
    m->start_epoch = start_default;
    int r = get_num(c, "start_epoch", &m->start_epoch);
    if (r == 1 && m->start_epoch == -1.0)
        m->start_epoch = 0.0;
    if (m->start_epoch < 0.0)
        perr(c, take(c, "start_epoch"), NULL, NULL, "%g is negative", m->start_epoch);
    m->end_epoch = -1.0;
    if (get_num(c, "end_epoch", &m->end_epoch) == 1 && m->end_epoch != -1.0 &&
        m->end_epoch < m->start_epoch)
        perr(c, take(c, "end_epoch"), NULL, NULL, "%g is before start_epoch %g", m->end_epoch,
             m->start_epoch);
}

/* update_frequency of the LR modifiers: SparseML requires -1 */
static void lr_update_frequency(mctx *c)
{
    double v;
    if (get_num(c, "update_frequency", &v) == 1 && v != -1.0)
        perr(c, take(c, "update_frequency"), NULL, NULL, "must be -1 (updates every step)");
}

/* param_groups: sparsify trains one group, so only "all" makes sense */
static void param_groups(mctx *c)
{
    field *f = take(c, "param_groups");
    const rnode *v = val_of(c, f);
    if (!v || v->kind == RK_NULL)
        return;
    if (v->kind == RK_SEQ && v->n == 1 && v->items[0]->kind == RK_NUM && v->items[0]->num == 0)
        return;
    perr(c, f, NULL, NULL, "sparsify trains one parameter group: leave it out (or [0])");
}

static void lr_value(mctx *c, const char *name, double *out, bool required)
{
    int r = get_num(c, name, out);
    if (r == 0 && required)
        perr(c, NULL, name, NULL, "missing (required for %s)", c->cls);
    else if (r == 1 && *out < 0.0)
        perr(c, take(c, name), NULL, NULL, "%g must be >= 0", *out);
}

static void parse_lr_schedule(mctx *c, sp_modifier *m)
{
    static const char *const lr_classes[] = {"StepLR", "MultiStepLR", "ExponentialLR", NULL};
    field *f;
    int cls;
    if (get_choice(c, "lr_class", lr_classes, &cls, true) == 1)
        m->lr_class = (sp_lr_class)cls; /* the order of sp_lr_class */
    lr_value(c, "init_lr", &m->init_lr, true);
    open_epochs(c, m, 0.0);
    lr_update_frequency(c);
    ignore_field(c, "constant_logging");
    m->gamma = 0.1;
    m->step_size = 0;
    f = take(c, "lr_kwargs");
    const rnode *kw = val_of(c, f);
    if (kw && kw->kind != RK_MAP) {
        perr(c, f, NULL, NULL, "expected a map, got %s", rnode_kind_name(kw));
        return;
    }
    char path[192];
    snprintf(path, sizeof path, "%s.%s", c->rc->where, f ? f->written : "lr_kwargs");
    bool have_step = false, have_miles = false;
    for (size_t i = 0; kw && i < kw->n; i++) {
        const char *k = kw->keys[i]->text;
        const rnode *v = kw->items[i];
        char p2[224];
        snprintf(p2, sizeof p2, "%s.%s", path, k);
        if (v->kind == RK_BAD) {
            c->bad = true;
            continue;
        }
        if (!strcmp(k, "gamma") || !strcmp(k, "step_size")) {
            if (v->kind != RK_NUM || !(v->num > 0) || !isfinite(v->num)) {
                rdiag_add(c->rc->d, false, v->line, v->col, p2, "expected a number > 0, got %s",
                          v->kind == RK_NUM ? v->text : rnode_kind_name(v));
                c->bad = true;
            } else if (k[0] == 'g') {
                m->gamma = v->num;
            } else {
                m->step_size = v->num;
                have_step = true;
            }
        } else if (!strcmp(k, "milestones")) {
            if (v->kind != RK_SEQ || !v->n) {
                rdiag_add(c->rc->d, false, v->line, v->col, p2, "expected a list of epochs");
                c->bad = true;
                continue;
            }
            free(m->milestones);
            m->milestones = calloc(v->n, sizeof *m->milestones);
            if (!m->milestones) {
                c->rc->d->nomem = true;
                return;
            }
            m->nmilestones = 0;
            for (size_t j = 0; j < v->n; j++) {
                const rnode *e = v->items[j];
                if (e->kind != RK_NUM || !isfinite(e->num) ||
                    (j && e->num <= m->milestones[j - 1])) {
                    rdiag_add(c->rc->d, false, e->line ? e->line : v->line, e->col, p2,
                              "entry %zu: expected increasing epochs", j);
                    c->bad = true;
                    break;
                }
                m->milestones[m->nmilestones++] = e->num;
            }
            have_miles = true;
        } else if (!strcmp(k, "last_epoch") || !strcmp(k, "verbose")) {
            /* torch scheduler bookkeeping */
        } else {
            rdiag_add(c->rc->d, false, kw->keys[i]->line, kw->keys[i]->col, p2,
                      "not an argument of %s", m->lr_class == SP_LRC_STEP ? "StepLR"
                                               : m->lr_class == SP_LRC_MULTISTEP ? "MultiStepLR"
                                                                                 : "ExponentialLR");
            c->bad = true;
        }
    }
    if (c->bad)
        return;
    if (m->lr_class == SP_LRC_STEP && !have_step)
        perr(c, f, "lr_kwargs", NULL, "StepLR needs step_size");
    if (m->lr_class == SP_LRC_MULTISTEP && !have_miles)
        perr(c, f, "lr_kwargs", NULL, "MultiStepLR needs milestones");
    for (size_t j = 0; m->lr_class == SP_LRC_MULTISTEP && j < m->nmilestones; j++)
        if (m->milestones[j] <= m->start_epoch ||
            (m->end_epoch >= 0 && m->milestones[j] >= m->end_epoch)) {
            perr(c, f, "lr_kwargs", NULL, "milestone %g is not between start_epoch and end_epoch",
                 m->milestones[j]);
            break;
        }
}

static void parse_kind(mctx *c, mkind kind, sp_modifier *m)
{
    static const char *const lr_funcs[] = {"linear", "cosine", "cyclic_linear", NULL};
    double v;
    const char *s;
    int k;
    switch (kind) {
    case MK_PRUNE:
        parse_prune(c, m);
        break;
    case MK_CONSTANT:
        terms_field(c, "params", &m->params, false);
        terms_field(c, "ignore", &m->ignore, false);
        open_epochs(c, m, 0.0);
        ignore_field(c, "update_frequency");
        break;
    case MK_DISTILL:
        get_fraction(c, "hardness", &m->hardness);
        if (get_num(c, "temperature", &m->temperature) == 1 && !(m->temperature > 0.0))
            perr(c, take(c, "temperature"), NULL, NULL, "%g must be > 0", m->temperature);
        if (get_string(c, "teacher", &s) == 1 && !(m->teacher = strdup(s)))
            c->rc->d->nomem = true;
        open_epochs(c, m, 0.0);
        ignore_field(c, "update_frequency");
        ignore_field(c, "distill_output_keys"); /* one output: the logits */
        ignore_field(c, "teacher_input_keys");
        break;
    case MK_EPOCH:
        if (get_num(c, "start_epoch", &m->start_epoch) == 1 && m->start_epoch == -1.0)
            m->start_epoch = 0.0;
        if (m->start_epoch < 0.0)
            perr(c, take(c, "start_epoch"), NULL, NULL, "%g is negative", m->start_epoch);
        if (get_num(c, "end_epoch", &m->end_epoch) == 0)
            perr(c, NULL, "end_epoch", NULL, "missing (required for %s)", c->cls);
        else if (!(m->end_epoch > m->start_epoch) && !c->bad)
            perr(c, take(c, "end_epoch"), NULL, NULL, "%g must be after start_epoch %g",
                 m->end_epoch, m->start_epoch);
        break;
    case MK_SET_LR:
        lr_value(c, "learning_rate", &m->learning_rate, true);
        open_epochs(c, m, 0.0);
        param_groups(c);
        ignore_field(c, "constant_logging");
        break;
    case MK_LR_FUNC:
        if (get_choice(c, "lr_func", lr_funcs, &k, true) == 1)
            m->lr_func = (sp_lr_func)k; /* the order of sp_lr_func */
        lr_value(c, "init_lr", &m->init_lr, true);
        lr_value(c, "final_lr", &m->final_lr, true);
        open_epochs(c, m, 0.0);
        if (!take(c, "end_epoch"))
            perr(c, NULL, "end_epoch", NULL, "missing (required for %s)", c->cls);
        else if (!(m->end_epoch > m->start_epoch) && !c->bad)
            perr(c, take(c, "end_epoch"), NULL, NULL, "%g must be after start_epoch %g",
                 m->end_epoch, m->start_epoch);
        m->cycle_epochs = 1.0;
        if (get_num(c, "cycle_epochs", &v) == 1) {
            if (!(v > 0))
                perr(c, take(c, "cycle_epochs"), NULL, NULL, "%g must be > 0", v);
            m->cycle_epochs = v;
        }
        param_groups(c);
        lr_update_frequency(c);
        break;
    case MK_LR_SCHED:
        parse_lr_schedule(c, m);
        break;
    case MK_SET_WD:
        if (get_num(c, "weight_decay", &m->weight_decay) == 0)
            perr(c, NULL, "weight_decay", NULL, "missing (required for %s)", c->cls);
        else if (m->weight_decay < 0)
            perr(c, take(c, "weight_decay"), NULL, NULL, "%g must be >= 0", m->weight_decay);
        open_epochs(c, m, 0.0);
        param_groups(c);
        ignore_field(c, "constant_logging");
        break;
    case MK_NOT_APPLIED:
        break;
    }
}

/* ---- JSON of a node (raw fields of a modifier that is not applied) */

cJSON *rjson_number(double v)
{
    char buf[40];
    if (!isfinite(v))
        return cJSON_CreateNull();
    for (int digits = 15; digits <= 17; digits++) { /* the shortest exact one */
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return cJSON_CreateRaw(buf);
}

static cJSON *to_cjson(const rnode *n)
{
    switch (n->kind) {
    case RK_NULL:
    case RK_BAD: return cJSON_CreateNull();
    case RK_BOOL: return cJSON_CreateBool(n->b);
    case RK_NUM: return rjson_number(n->num);
    case RK_STR: return cJSON_CreateString(n->text);
    case RK_SEQ:
    case RK_MAP: {
        cJSON *j = n->kind == RK_SEQ ? cJSON_CreateArray() : cJSON_CreateObject();
        for (size_t i = 0; j && i < n->n; i++) {
            cJSON *e = to_cjson(n->items[i]);
            if (!e) {
                cJSON_Delete(j);
                return NULL;
            }
            if (n->kind == RK_SEQ)
                cJSON_AddItemToArray(j, e);
            else
                cJSON_AddItemToObject(j, n->keys[i]->text, e);
        }
        return j;
    }
    }
    return NULL;
}

/* The fields of a modifier that is not applied, as written, without what
 * placed it (its "type", "stage", "run_type"). Returns false on
 * out-of-memory. */
static bool keep_raw(const rmod_ctx *rc, const rnode *fields, sp_modifier *m)
{
    if (!fields || fields->kind != RK_MAP)
        return true;
    cJSON *j = cJSON_CreateObject();
    for (size_t i = 0; j && i < fields->n; i++) {
        const char *k = fields->keys[i]->text;
        if ((rc->type_field && !strcmp(k, "type")) || !strcmp(k, "stage") || !strcmp(k, "run_type"))
            continue;
        cJSON *v = to_cjson(fields->items[i]);
        if (!v) {
            cJSON_Delete(j);
            return false;
        }
        cJSON_AddItemToObject(j, k, v);
    }
    if (j && !j->child) {
        cJSON_Delete(j);
        return true;
    }
    m->raw_json = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return m->raw_json != NULL;
}

/* ---- one modifier */

void rmod_release(sp_modifier *m)
{
    rterms_release(&m->params);
    rterms_release(&m->ignore);
    for (size_t i = 0; i < m->noverrides; i++)
        rterms_release(&m->overrides[i].params);
    free(m->overrides);
    free(m->teacher);
    free(m->milestones);
    free(m->where);
    free(m->stage);
    free(m->raw_json);
    memset(m, 0, sizeof *m);
}

static void defaults(sp_modifier *m)
{
    m->update_frequency = 1.0;
    m->inter_func = SP_INTER_CUBIC;
    m->mask_type = (sp_pattern){SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    m->block_score = SP_BLOCK_SCORE_L1;
    m->leave_enabled = true;
    m->hardness = 0.5;
    m->temperature = 2.0;
    m->cycle_epochs = 1.0;
    m->gamma = 0.1;
}

/* The list of class names, for "did you mean". */
static const char *closest_class(const char *w)
{
    const char *names[2 * NCLASSES + NCLOSEST];
    size_t n = 0;
    for (size_t i = 0; i < NCLASSES; i++) {
        names[n++] = classes[i].name;
        if (classes[i].short_name)
            names[n++] = classes[i].short_name;
    }
    for (size_t i = 0; i < NCLOSEST; i++)
        names[n++] = closest_table[i].name;
    return sp_closest_name(w, names, n);
}

bool rmod_parse(rmod_ctx *rc, const char *written, const rnode *cls_node, const rnode *fields,
                sp_modifier *m)
{
    mctx *c = calloc(1, sizeof *c);
    if (!c) {
        rc->d->nomem = true;
        return false;
    }
    c->rc = rc;
    defaults(m);
    const char *w = strip_tag(written);
    const struct mclass *k = find_class(w);
    const struct closest *cl = NULL;
    int line = cls_node && cls_node->line ? cls_node->line : rc->line;
    int col = cls_node && cls_node->line ? cls_node->col : rc->col;
    char path[192];
    snprintf(path, sizeof path, "%s", rc->where);
    if (!k) {
        for (size_t i = 0; i < NCLOSEST; i++)
            if (!strcmp(w, closest_table[i].name))
                cl = &closest_table[i];
        if (!cl) {
            const char *close = closest_class(w);
            if (close)
                rdiag_add(rc->d, false, line, col, path,
                          "unknown modifier type '%s' (did you mean '%s'?)", w, close);
            else
                rdiag_add(rc->d, false, line, col, path,
                          "unknown modifier type '%s' (see docs/recipes.md for the ones sparsify "
                          "reads)",
                          w);
            free(c);
            return false;
        }
        bool can = cl->closest != NULL;
        if (!rc->opts || !rc->opts->substitute || !can) {
            if (!can)
                rdiag_add(rc->d, false, line, col, path,
                          "%s is not implemented by sparsify, and nothing it has is close: %s", w,
                          cl->note);
            else if (!*cl->closest)
                rdiag_add(rc->d, false, line, col, path,
                          "%s is not implemented by sparsify (%s); --substitute leaves it out", w,
                          cl->note);
            else
                rdiag_add(rc->d, false, line, col, path,
                          "%s is not implemented by sparsify; the closest it has is %s (%s); "
                          "--substitute runs that instead",
                          w, cl->closest, cl->note);
            rc->unsupported++;
            free(c);
            return false;
        }
        if (!*cl->closest) {
            rdiag_add(rc->d, true, line, col, path, "%s is left out (--substitute): %s", w, cl->note);
            m->type = SP_MOD_NOT_APPLIED;
            m->cls = cl->name;
            m->substitute_for = cl->name;
            if (!keep_raw(rc, fields, m))
                rc->d->nomem = true;
            free(c);
            goto place;
        }
        k = find_class(cl->closest);
        m->substitute_for = cl->name;
        c->lenient = true;
        rdiag_add(rc->d, true, line, col, path, "%s runs as %s (--substitute): %s", w, k->name,
                  cl->note);
    }
    m->type = k->type;
    m->cls = k->name;
    c->cls = k->name;
    if (fields && fields->kind != RK_MAP && fields->kind != RK_NULL) {
        rdiag_add(rc->d, false, fields->line ? fields->line : line, fields->col, path,
                  "the fields of %s must be a map, got %s", k->name, rnode_kind_name(fields));
        free(c);
        rmod_release(m);
        return false;
    }
    if (fields && fields->kind == RK_NULL)
        fields = NULL;
    if (k->kind == MK_NOT_APPLIED) {
        if (!keep_raw(rc, fields, m))
            rc->d->nomem = true;
        free(c);
        goto place;
    }
    collect(c, fields, cl ? cl->from : NULL, cl ? cl->to : NULL);
    parse_kind(c, k->kind, m);
    if (rc->type_field)
        ignore_field(c, "type");
    ignore_field(c, "log_types");
    ignore_field(c, "index");
    ignore_field(c, "group");
    ignore_field(c, "stage");    /* read by the caller */
    ignore_field(c, "run_type"); /* read by the caller */
    unknown_fields(c, k->kind);
    bool bad = c->bad;
    free(c);
    if (bad) {
        rmod_release(m);
        return false;
    }
place:
    if (!(m->where = strdup(rc->where)) || (rc->stage && !(m->stage = strdup(rc->stage)))) {
        rc->d->nomem = true;
        rmod_release(m);
        return false;
    }
    m->line = line;
    m->run_type = rc->run;
    return true;
}
