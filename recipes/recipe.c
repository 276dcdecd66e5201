/*
 * Recipes: JSON lists of pruning modifiers (schema in docs/recipes.md).
 * Validation is strict - unknown fields, wrong types and out-of-range values
 * are errors that name the modifier index and the field - so a typo never
 * silently turns into "prune nothing".
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "recipes/bundled.h"
#include "sparsify/recipe.h"

#define ALL_PRUNABLE "__ALL_PRUNABLE__"
#define ALL "__ALL__"

static const struct {
    const char *cls, *short_name;
    sp_modifier_type type;
} type_names[] = {
    {"MagnitudePruningModifier", "magnitude", SP_MOD_MAGNITUDE},
    {"GMPruningModifier", "gradual_magnitude", SP_MOD_GMP},
    {"GlobalMagnitudePruningModifier", "global_magnitude", SP_MOD_GLOBAL_MAGNITUDE},
    {"MovementPruningModifier", "movement", SP_MOD_MOVEMENT},
    {"ConstantPruningModifier", "constant", SP_MOD_CONSTANT},
    {"DistillationModifier", "distillation", SP_MOD_DISTILLATION},
};
#define NTYPES (sizeof type_names / sizeof type_names[0])

const char *sp_modifier_type_str(sp_modifier_type t)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (type_names[i].type == t)
            return type_names[i].cls;
    return "?";
}

bool sp_modifier_prunes(const sp_modifier *m)
{
    return m->type != SP_MOD_CONSTANT && m->type != SP_MOD_DISTILLATION;
}

/* ---- matching: exact names, "re:" params (Python syntax, anchored at the
 * start like SparseML's re.match; compiled once at parse time),
 * __ALL_PRUNABLE__ and __ALL__ */

/* Does one params entry select this tensor? re: the entry's compiled
 * pattern, NULL unless it is a "re:" entry. */
static sp_status param_matches(const char *p, const sp_regex *re, const char *name,
                               sp_dtype dtype, int ndim, bool *hit, sp_error *err)
{
    *hit = false;
    if (!strcmp(p, ALL_PRUNABLE)) {
        *hit = sp_select_default(name, dtype, ndim);
        return SP_OK;
    }
    if (!sp_dtype_is_float(dtype))
        return SP_OK;
    if (!strcmp(p, ALL)) {
        *hit = true;
        return SP_OK;
    }
    if (re)
        return sp_regex_match(re, name, hit, err);
    *hit = !strcmp(p, name);
    return SP_OK;
}

static sp_status list_matches(char *const *list, sp_regex *const *res, size_t n, const char *name,
                              sp_dtype dtype, int ndim, bool *hit, sp_error *err)
{
    *hit = false;
    for (size_t i = 0; i < n && !*hit; i++) {
        sp_status st = param_matches(list[i], res ? res[i] : NULL, name, dtype, ndim, hit, err);
        if (st)
            return st;
    }
    return SP_OK;
}

sp_status sp_modifier_select(const sp_modifier *m, const char *name, sp_dtype dtype, int ndim,
                             bool *targets, sp_error *err)
{
    bool ignored;
    *targets = false;
    /* ignore entries name tensors outright; their dtype does not matter */
    sp_status st = list_matches(m->ignore, m->ignore_re, m->nignore, name, SP_F32,
                                ndim > 2 ? ndim : 2, &ignored, err);
    if (st || ignored)
        return st;
    if (!m->nparams) {
        *targets = sp_select_default(name, dtype, ndim);
        return SP_OK;
    }
    return list_matches(m->params, m->params_re, m->nparams, name, dtype, ndim, targets, err);
}

bool sp_modifier_targets(const sp_modifier *m, const char *name, sp_dtype dtype, int ndim)
{
    bool t;
    return sp_modifier_select(m, name, dtype, ndim, &t, NULL) == SP_OK && t;
}

sp_status sp_modifier_target_sparsity(const sp_modifier *m, const char *name, double *final,
                                      sp_error *err)
{
    *final = m->final_sparsity;
    for (size_t i = 0; i < m->noverrides; i++) {
        const sp_sparsity_override *o = &m->overrides[i];
        bool hit;
        sp_status st = list_matches(o->params, o->params_re, o->nparams, name, SP_F32, 2, &hit, err);
        if (st)
            return st;
        if (hit) {
            *final = o->sparsity;
            break;
        }
    }
    return SP_OK;
}

double sp_modifier_final_for(const sp_modifier *m, const char *name)
{
    double s;
    sp_modifier_target_sparsity(m, name, &s, NULL);
    return s;
}

double sp_modifier_sparsity_at(const sp_modifier *m, const char *name, double epoch)
{
    if (!sp_modifier_prunes(m))
        return 0.0;
    double final = sp_modifier_final_for(m, name);
    double init = m->init_sparsity;
    if (m->end_epoch <= m->start_epoch)
        init = final;
    return sp_schedule_sparsity(init, final, m->start_epoch, m->end_epoch, m->update_frequency,
                                m->inter_func, epoch);
}

/* ---- freeing */

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

static void free_res(sp_regex **r, size_t n)
{
    for (size_t i = 0; r && i < n; i++)
        sp_regex_free(r[i]);
    free(r);
}

static void modifier_release(sp_modifier *m)
{
    free_list(m->params, m->nparams);
    free_res(m->params_re, m->nparams);
    free_list(m->ignore, m->nignore);
    free_res(m->ignore_re, m->nignore);
    for (size_t i = 0; i < m->noverrides; i++) {
        free_list(m->overrides[i].params, m->overrides[i].nparams);
        free_res(m->overrides[i].params_re, m->overrides[i].nparams);
    }
    free(m->overrides);
    free(m->teacher);
}

void sp_recipe_free(sp_recipe *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nmods; i++)
        modifier_release(&r->mods[i]);
    free(r->mods);
    free(r);
}

/* ---- parsing */

typedef struct ctx {
    sp_error *err;
    size_t idx;
    const char *type_name; /* as written, for messages */
} ctx;

#define FERR(c, field, ...) field_error((c), (field), __VA_ARGS__)

static sp_status field_error(ctx *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sp_status field_error(ctx *c, const char *field, const char *fmt, ...)
{
    char msg[SP_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (field)
        return sp_error_set(c->err, SP_ERR_INVALID_ARG, "modifiers[%zu].%s: %s", c->idx, field, msg);
    return sp_error_set(c->err, SP_ERR_INVALID_ARG, "modifiers[%zu]: %s", c->idx, msg);
}

static const char *json_kind(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "invalid";
}

static sp_status get_number(ctx *c, const cJSON *v, const char *field, double *out)
{
    if (!cJSON_IsNumber(v))
        return FERR(c, field, "expected a number, got %s", json_kind(v));
    if (!isfinite(v->valuedouble))
        return FERR(c, field, "expected a finite number");
    *out = v->valuedouble;
    return SP_OK;
}

static sp_status get_fraction(ctx *c, const cJSON *v, const char *field, double *out)
{
    sp_status st = get_number(c, v, field, out);
    if (st)
        return st;
    if (*out < 0.0 || *out > 1.0)
        return FERR(c, field, "%g is out of range [0, 1]", *out);
    return SP_OK;
}

static sp_status get_bool(ctx *c, const cJSON *v, const char *field, bool *out)
{
    if (!cJSON_IsBool(v))
        return FERR(c, field, "expected true or false, got %s", json_kind(v));
    *out = cJSON_IsTrue(v);
    return SP_OK;
}

static sp_status get_string(ctx *c, const cJSON *v, const char *field, const char **out)
{
    if (!cJSON_IsString(v) || !v->valuestring)
        return FERR(c, field, "expected a string, got %s", json_kind(v));
    *out = v->valuestring;
    return SP_OK;
}

/* Compile the "re:" entries of a name list (the others get NULL). */
static sp_status compile_names(ctx *c, const char *field, char *const *l, size_t n,
                               sp_regex ***out)
{
    sp_regex **r = calloc(n ? n : 1, sizeof *r);
    if (!r)
        return sp_error_set(c->err, SP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        sp_error e = {0};
        if (strncmp(l[i], "re:", 3))
            continue;
        if (sp_regex_new(&r[i], l[i] + 3, true, &e)) {
            free_res(r, i);
            if (e.code == SP_ERR_NOMEM)
                return sp_error_set(c->err, SP_ERR_NOMEM, "out of memory");
            return FERR(c, field, "%s", e.msg);
        }
    }
    *out = r;
    return SP_OK;
}

/* A params-like value: one string or a list of strings; "re:" entries are
 * compiled into *res. */
static sp_status get_name_list(ctx *c, const cJSON *v, const char *field, char ***out,
                               sp_regex ***res, size_t *n)
{
    size_t cnt = cJSON_IsString(v) ? 1 : cJSON_IsArray(v) ? (size_t)cJSON_GetArraySize(v) : 0;
    if (!cJSON_IsString(v) && !cJSON_IsArray(v))
        return FERR(c, field, "expected a string or a list of strings, got %s", json_kind(v));
    if (!cnt)
        return FERR(c, field, "empty list");
    char **l = calloc(cnt, sizeof(char *));
    if (!l)
        return sp_error_set(c->err, SP_ERR_NOMEM, "out of memory");
    size_t i = 0;
    const cJSON *e = cJSON_IsString(v) ? v : v->child;
    for (; i < cnt && e; i++, e = cJSON_IsString(v) ? NULL : e->next) {
        if (!cJSON_IsString(e) || !e->valuestring || !*e->valuestring) {
            free_list(l, i);
            return FERR(c, field, "entry %zu: expected a non-empty string, got %s", i,
                        cJSON_IsString(e) ? "\"\"" : json_kind(e));
        }
        const char *s = e->valuestring;
        if (!strcasecmp(s, ALL_PRUNABLE) || !strcasecmp(s, ALL)) /* SparseML upper-cases */
            l[i] = strdup(!strcasecmp(s, ALL) ? ALL : ALL_PRUNABLE);
        else
            l[i] = strdup(s);
        if (!l[i]) {
            free_list(l, i);
            return sp_error_set(c->err, SP_ERR_NOMEM, "out of memory");
        }
    }
    sp_status st = compile_names(c, field, l, cnt, res);
    if (st) {
        free_list(l, cnt);
        return st;
    }
    *out = l;
    *n = cnt;
    return SP_OK;
}

static sp_status get_mask_type(ctx *c, const cJSON *v, sp_pattern *out)
{
    char text[64];
    sp_error e;
    if (cJSON_IsArray(v)) {
        const cJSON *a = cJSON_GetArrayItem(v, 0), *b = cJSON_GetArrayItem(v, 1);
        if (cJSON_GetArraySize(v) != 2 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
            a->valuedouble != floor(a->valuedouble) || b->valuedouble != floor(b->valuedouble) ||
            a->valuedouble < 1 || b->valuedouble < 1 || a->valuedouble > 1048576 ||
            b->valuedouble > 1048576)
            return FERR(c, "mask_type", "a block must be [rows, cols] of two positive integers");
        snprintf(text, sizeof text, "%.0fx%.0f", a->valuedouble, b->valuedouble);
    } else if (cJSON_IsString(v) && v->valuestring) {
        snprintf(text, sizeof text, "%s", v->valuestring);
    } else {
        return FERR(c, "mask_type", "expected a string or [rows, cols], got %s", json_kind(v));
    }
    if (sp_pattern_parse(out, text, &e))
        return FERR(c, "mask_type", "%s", e.msg);
    return SP_OK;
}

/* final_sparsity as a map {"0.9": [params], "0.8": "re:..."}. */
static sp_status get_overrides(ctx *c, const cJSON *v, sp_modifier *m)
{
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (!n)
        return FERR(c, "final_sparsity", "empty map");
    m->overrides = calloc(n, sizeof(sp_sparsity_override));
    if (!m->overrides)
        return sp_error_set(c->err, SP_ERR_NOMEM, "out of memory");
    double maxs = 0.0;
    for (const cJSON *e = v->child; e; e = e->next) {
        char *end;
        errno = 0;
        double s = strtod(e->string, &end);
        if (errno || end == e->string || *end || !isfinite(s))
            return FERR(c, "final_sparsity", "key '%s' is not a number", e->string);
        if (s < 0.0 || s > 1.0)
            return FERR(c, "final_sparsity", "%g is out of range [0, 1]", s);
        sp_sparsity_override *o = &m->overrides[m->noverrides];
        sp_status st = get_name_list(c, e, "final_sparsity", &o->params, &o->params_re, &o->nparams);
        if (st)
            return st;
        o->sparsity = s;
        m->noverrides++;
        if (s > maxs)
            maxs = s;
    }
    m->final_sparsity = maxs;
    return SP_OK;
}

/* Fields each kind of modifier accepts. */
static const char *const prune_fields[] = {
    "type", "params", "ignore", "init_sparsity", "final_sparsity", "start_epoch", "end_epoch",
    "update_frequency", "inter_func", "mask_type", "leave_enabled", "global_sparsity",
    "block_score", "score", "log_types", NULL};
static const char *const constant_fields[] = {"type", "params", "ignore", "start_epoch",
                                              "end_epoch", "update_frequency", "log_types", NULL};
static const char *const distill_fields[] = {"type", "hardness", "temperature", "teacher",
                                             "start_epoch", "end_epoch", "update_frequency",
                                             "log_types", NULL};
static const char *const all_fields[] = {
    "type", "params", "ignore", "init_sparsity", "final_sparsity", "start_epoch", "end_epoch",
    "update_frequency", "inter_func", "mask_type", "leave_enabled", "global_sparsity",
    "block_score", "score", "log_types", "hardness", "temperature", "teacher", NULL};

static bool in_list(const char *const *l, const char *s)
{
    for (; *l; l++)
        if (!strcmp(*l, s))
            return true;
    return false;
}

static sp_status parse_modifier(ctx *c, const cJSON *obj, sp_modifier *m)
{
    sp_status st;
    memset(m, 0, sizeof *m);
    m->update_frequency = 1.0;
    m->inter_func = SP_INTER_CUBIC;
    m->mask_type = (sp_pattern){SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    m->block_score = SP_BLOCK_SCORE_L1;
    m->leave_enabled = true;
    m->hardness = 0.5;
    m->temperature = 2.0;

    if (!cJSON_IsObject(obj))
        return FERR(c, NULL, "expected an object, got %s", json_kind(obj));
    /* the type: "type": "X", or SparseML's one-key form {"X": {fields}} */
    const cJSON *tv = cJSON_GetObjectItemCaseSensitive(obj, "type");
    const cJSON *fields = obj;
    const char *tname = NULL;
    if (!tv && obj->child && !obj->child->next && cJSON_IsObject(obj->child)) {
        tname = obj->child->string;
        fields = obj->child;
        if (cJSON_GetObjectItemCaseSensitive(fields, "type"))
            return FERR(c, "type", "given twice");
    } else if (!tv) {
        return FERR(c, "type", "missing");
    } else if ((st = get_string(c, tv, "type", &tname))) {
        return st;
    }
    if (*tname == '!')
        tname++;
    size_t ti = 0;
    while (ti < NTYPES && strcmp(tname, type_names[ti].cls) && strcmp(tname, type_names[ti].short_name))
        ti++;
    if (ti == NTYPES)
        return FERR(c, "type", "unknown modifier type '%s' (expected one of MagnitudePruningModifier, "
                               "GMPruningModifier, GlobalMagnitudePruningModifier, "
                               "MovementPruningModifier, ConstantPruningModifier, DistillationModifier)",
                    tname);
    m->type = type_names[ti].type;
    c->type_name = type_names[ti].cls;
    const char *const *allowed = m->type == SP_MOD_CONSTANT       ? constant_fields
                                 : m->type == SP_MOD_DISTILLATION ? distill_fields
                                                                  : prune_fields;
    /* unknown, misplaced and duplicate fields */
    for (const cJSON *f = fields->child; f; f = f->next) {
        if (!in_list(all_fields, f->string))
            return FERR(c, f->string, "unknown field");
        if (!in_list(allowed, f->string))
            return FERR(c, f->string, "not a field of %s", c->type_name);
        for (const cJSON *g = fields->child; g != f; g = g->next)
            if (!strcmp(g->string, f->string))
                return FERR(c, f->string, "given twice");
    }
#define FIELD(name) cJSON_GetObjectItemCaseSensitive(fields, name)
    const cJSON *v;
    bool pruning = sp_modifier_prunes(m);
    bool has_init = false, has_final = false;
    const char *s;

    if ((v = FIELD("params")) && (st = get_name_list(c, v, "params", &m->params, &m->params_re, &m->nparams)))
        return st;
    if ((v = FIELD("ignore")) && (st = get_name_list(c, v, "ignore", &m->ignore, &m->ignore_re, &m->nignore)))
        return st;
    if ((v = FIELD("start_epoch")) && (st = get_number(c, v, "start_epoch", &m->start_epoch)))
        return st;
    bool open_end = false;
    if ((v = FIELD("end_epoch"))) {
        if ((st = get_number(c, v, "end_epoch", &m->end_epoch)))
            return st;
    } else {
        m->end_epoch = m->start_epoch;
    }
    if (!pruning && m->start_epoch == -1.0)
        m->start_epoch = 0.0; /* SparseML: -1 = from the beginning */
    if (!pruning && m->end_epoch == -1.0)
        open_end = true; /* SparseML: -1 = until the end of training */
    if (m->start_epoch < 0.0)
        return FERR(c, "start_epoch", "%g is negative", m->start_epoch);
    if (!open_end && m->end_epoch < m->start_epoch)
        return FERR(c, "end_epoch", "%g is before start_epoch %g", m->end_epoch, m->start_epoch);
    if ((v = FIELD("update_frequency")) &&
        (st = get_number(c, v, "update_frequency", &m->update_frequency)))
        return st;
    if (pruning && m->end_epoch > m->start_epoch && !(m->update_frequency > 0.0))
        return FERR(c, "update_frequency", "%g must be > 0 for a gradual schedule",
                    m->update_frequency);
    if ((v = FIELD("log_types")) && !cJSON_IsString(v) && !cJSON_IsArray(v))
        return FERR(c, "log_types", "expected a string or a list, got %s", json_kind(v));

    if (m->type == SP_MOD_DISTILLATION) {
        if ((v = FIELD("hardness")) && (st = get_fraction(c, v, "hardness", &m->hardness)))
            return st;
        if ((v = FIELD("temperature")) &&
            (st = get_number(c, v, "temperature", &m->temperature)))
            return st;
        if (!(m->temperature > 0.0))
            return FERR(c, "temperature", "%g must be > 0", m->temperature);
        if ((v = FIELD("teacher"))) {
            if ((st = get_string(c, v, "teacher", &s)))
                return st;
            if (!(m->teacher = strdup(s)))
                return sp_error_set(c->err, SP_ERR_NOMEM, "out of memory");
        }
        return SP_OK;
    }
    if (!pruning)
        return SP_OK;

    if ((v = FIELD("mask_type")) && (st = get_mask_type(c, v, &m->mask_type)))
        return st;
    if ((v = FIELD("inter_func"))) {
        sp_error e;
        if ((st = get_string(c, v, "inter_func", &s)))
            return st;
        if (sp_inter_func_parse(&m->inter_func, s, &e))
            return FERR(c, "inter_func", "%s", e.msg);
    }
    if ((v = FIELD("block_score"))) {
        if ((st = get_string(c, v, "block_score", &s)))
            return st;
        if (!strcmp(s, "l1") || !strcmp(s, "L1"))
            m->block_score = SP_BLOCK_SCORE_L1;
        else if (!strcmp(s, "l2") || !strcmp(s, "L2"))
            m->block_score = SP_BLOCK_SCORE_L2;
        else
            return FERR(c, "block_score", "'%s' is not one of l1, l2", s);
    }
    if ((v = FIELD("score"))) {
        /* wanda: |w| times activation norms from calibration data, one-shot */
        if ((st = get_string(c, v, "score", &s)))
            return st;
        if (!strcmp(s, "magnitude"))
            m->score = SP_SCORE_MAGNITUDE;
        else if (!strcmp(s, "wanda"))
            m->score = SP_SCORE_WANDA;
        else
            return FERR(c, "score", "'%s' is not one of magnitude, wanda", s);
        if (m->score == SP_SCORE_WANDA && m->type == SP_MOD_MOVEMENT)
            return FERR(c, "score", "wanda does not apply to %s (its scores are movement)",
                        c->type_name);
        if (m->score == SP_SCORE_WANDA && m->end_epoch > m->start_epoch)
            return FERR(c, "score", "wanda is one-shot (start_epoch %g, end_epoch %g): it needs "
                                    "calibration data, which a training schedule does not have",
                        m->start_epoch, m->end_epoch);
    }
    if ((v = FIELD("leave_enabled")) && (st = get_bool(c, v, "leave_enabled", &m->leave_enabled)))
        return st;
    m->global_sparsity = m->type == SP_MOD_GLOBAL_MAGNITUDE;
    if ((v = FIELD("global_sparsity"))) {
        if ((st = get_bool(c, v, "global_sparsity", &m->global_sparsity)))
            return st;
        if (m->type == SP_MOD_GLOBAL_MAGNITUDE && !m->global_sparsity)
            return FERR(c, "global_sparsity", "must be true for GlobalMagnitudePruningModifier");
    }
    if ((v = FIELD("init_sparsity"))) {
        if ((st = get_fraction(c, v, "init_sparsity", &m->init_sparsity)))
            return st;
        has_init = true;
    }
    if ((v = FIELD("final_sparsity"))) {
        if (cJSON_IsObject(v)) {
            if (m->nparams)
                return FERR(c, "params", "cannot be combined with a map-valued final_sparsity "
                                         "(the map lists the params)");
            if (m->global_sparsity)
                return FERR(c, "final_sparsity", "a per-layer map cannot be used with a global "
                                                 "threshold");
            if ((st = get_overrides(c, v, m)))
                return st;
            /* the map's lists are the params */
            size_t total = 0;
            for (size_t i = 0; i < m->noverrides; i++)
                total += m->overrides[i].nparams;
            m->params = calloc(total, sizeof(char *));
            if (!m->params)
                return sp_error_set(c->err, SP_ERR_NOMEM, "out of memory");
            for (size_t i = 0; i < m->noverrides; i++)
                for (size_t j = 0; j < m->overrides[i].nparams; j++) {
                    if (!(m->params[m->nparams] = strdup(m->overrides[i].params[j])))
                        return sp_error_set(c->err, SP_ERR_NOMEM, "out of memory");
                    m->nparams++;
                }
            if ((st = compile_names(c, "final_sparsity", m->params, m->nparams, &m->params_re)))
                return st;
        } else if (cJSON_IsNumber(v)) {
            if ((st = get_fraction(c, v, "final_sparsity", &m->final_sparsity)))
                return st;
        } else {
            return FERR(c, "final_sparsity", "expected a number or a map, got %s", json_kind(v));
        }
        has_final = true;
    }
    if (m->mask_type.kind == SP_PATTERN_NM) {
        double implied = sp_pattern_implied_sparsity(&m->mask_type);
        char pb[32];
        sp_pattern_str(&m->mask_type, pb, sizeof pb);
        if (m->global_sparsity)
            return FERR(c, "global_sparsity", "N:M patterns (%s) cannot use a global threshold", pb);
        if (has_final && !m->noverrides && fabs(m->final_sparsity - implied) > 1e-9)
            return FERR(c, "final_sparsity", "%g does not match mask_type %s (which implies %g)",
                        m->final_sparsity, pb, implied);
        for (size_t i = 0; i < m->noverrides; i++)
            if (fabs(m->overrides[i].sparsity - implied) > 1e-9)
                return FERR(c, "final_sparsity", "%g does not match mask_type %s (which implies %g)",
                            m->overrides[i].sparsity, pb, implied);
        m->final_sparsity = implied;
        if (!has_init)
            m->init_sparsity = implied;
    } else if (!has_final) {
        return FERR(c, "final_sparsity", "missing (required for %s)", c->type_name);
    }
    if (!has_init && m->end_epoch <= m->start_epoch)
        m->init_sparsity = m->final_sparsity; /* one-shot */
    return SP_OK;
#undef FIELD
}

static void json_position(const char *json, size_t len, const char *at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *p = json; p < at && p < json + len; p++) {
        if (*p == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

sp_status sp_recipe_parse(sp_recipe **out, const char *json, size_t len, sp_error *err)
{
    sp_status st = SP_OK;
    sp_recipe *r = NULL;
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!root) {
        int line, col;
        json_position(json, len, end ? end : json, &line, &col);
        return sp_error_set(err, SP_ERR_INVALID_ARG, "invalid JSON at line %d, column %d", line, col);
    }
    /* trailing garbage after the object */
    for (const char *p = end; p && p < json + len && *p; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            int line, col;
            json_position(json, len, p, &line, &col);
            st = sp_error_set(err, SP_ERR_INVALID_ARG,
                              "invalid JSON at line %d, column %d: text after the recipe", line, col);
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        st = sp_error_set(err, SP_ERR_INVALID_ARG, "a recipe must be a JSON object, got %s",
                          json_kind(root));
        goto out;
    }
    for (const cJSON *f = root->child; f; f = f->next) {
        if (strcmp(f->string, "version") && strcmp(f->string, "modifiers") &&
            strcmp(f->string, "description") && strcmp(f->string, "name")) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG,
                              "%s: unknown field (a recipe has version, modifiers, name, "
                              "description)",
                              f->string);
            goto out;
        }
        for (const cJSON *g = root->child; g != f; g = g->next)
            if (!strcmp(g->string, f->string)) {
                st = sp_error_set(err, SP_ERR_INVALID_ARG, "%s: given twice", f->string);
                goto out;
            }
        if ((!strcmp(f->string, "description") || !strcmp(f->string, "name")) &&
            !cJSON_IsString(f)) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG, "%s: expected a string, got %s", f->string,
                              json_kind(f));
            goto out;
        }
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    r->version = 1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (v) {
        if (!cJSON_IsNumber(v)) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG, "version: expected a number, got %s",
                              json_kind(v));
            goto out;
        }
        if (v->valuedouble != 1.0) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG, "version: %g is not supported (expected 1)",
                              v->valuedouble);
            goto out;
        }
    }
    const cJSON *mods = cJSON_GetObjectItemCaseSensitive(root, "modifiers");
    if (!mods) {
        st = sp_error_set(err, SP_ERR_INVALID_ARG, "modifiers: missing");
        goto out;
    }
    if (!cJSON_IsArray(mods)) {
        st = sp_error_set(err, SP_ERR_INVALID_ARG, "modifiers: expected an array, got %s",
                          json_kind(mods));
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(mods);
    if (!n) {
        st = sp_error_set(err, SP_ERR_INVALID_ARG, "modifiers: empty list");
        goto out;
    }
    r->mods = calloc(n, sizeof(sp_modifier));
    if (!r->mods) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    ctx c = {err, 0, NULL};
    for (const cJSON *m = mods->child; m; m = m->next, c.idx++) {
        st = parse_modifier(&c, m, &r->mods[c.idx]);
        r->nmods = c.idx + 1; /* released on failure too */
        if (st)
            goto out;
    }
    *out = r;
    r = NULL;
out:
    sp_recipe_free(r);
    cJSON_Delete(root);
    return st;
}

sp_status sp_recipe_load(sp_recipe **out, const char *path_or_name, sp_error *err)
{
    *out = NULL;
    size_t len = strlen(path_or_name);
    bool name_like = !strchr(path_or_name, '/') && !(len >= 5 && !strcmp(path_or_name + len - 5, ".json"));
    if (name_like) {
        long i = sp_recipe_bundled_find(path_or_name);
        if (i >= 0) {
            const char *text = sp_recipe_bundled_text((size_t)i);
            sp_status st = sp_recipe_parse(out, text, strlen(text), err);
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
    if (strlen(buf) != n) {
        st = sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': invalid JSON (contains a NUL byte)",
                          path_or_name);
        goto out;
    }
    if ((st = sp_recipe_parse(out, buf, n, err)))
        sp_error_prefix(err, "'%s'", path_or_name);
out:
    free(buf);
    fclose(f);
    return st;
}
