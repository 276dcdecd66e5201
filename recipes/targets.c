/*
 * Which tensors a modifier targets, and which modifier owns each tensor of
 * a model; the translation of a recipe into the pruning engine's rules.
 *
 * An entry of params/targets/ignore is read, in this order, as
 *   - "__ALL_PRUNABLE__": the engine's default rule (sp_select_default);
 *   - "__ALL__": every floating tensor;
 *   - a layer class, "Linear" / "Conv1d" / "Conv2d" / "Conv3d"
 *     (llm-compressor): the prunable weights of that rank (2, 3, 4, 5);
 *   - "re:REGEX" or an exact name, matched against tensor names (SparseML's
 *     params name parameters: re.match, anchored at the start only);
 *   - and when it matches no tensor name of the model, against module names
 *     (every dotted prefix of a tensor's name): then it selects the
 *     prunable weights inside those modules (llm-compressor's
 *     "re:model.layers.\d+$"), or, in an ignore list, everything inside.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recipes/internal.h"

#define ALL_PRUNABLE "__ALL_PRUNABLE__"
#define ALL "__ALL__"

/* Layer classes llm-compressor names in targets (PRUNABLE_LAYER_TYPES), by
 * the rank of their weight. */
static int class_rank(const char *s)
{
    static const struct {
        const char *name;
        int rank;
    } cls[] = {{"Linear", 2}, {"Conv1d", 3}, {"Conv2d", 4}, {"Conv3d", 5}};
    for (size_t i = 0; i < sizeof cls / sizeof cls[0]; i++)
        if (!strcmp(s, cls[i].name))
            return cls[i].rank;
    return 0;
}

/* Does entry k of t match text (a tensor or module name) by name? */
static sp_status name_match(const sp_recipe_terms *t, size_t k, const char *text, bool *hit,
                            sp_error *err)
{
    if (t->re && t->re[k])
        return sp_regex_match(t->re[k], text, hit, err);
    *hit = !strcmp(t->text[k], text);
    return SP_OK;
}

/* Entry k against one tensor. modules: the entry names modules (it matched
 * no tensor name); inside_any: an ignore list (everything inside a module,
 * not just its prunable weights). */
static sp_status term_match(const sp_recipe_terms *t, size_t k, bool modules, bool inside_any,
                            const char *name, sp_dtype dtype, int ndim, bool *hit, sp_error *err)
{
    const char *s = t->text[k];
    *hit = false;
    if (!strcmp(s, ALL_PRUNABLE)) {
        *hit = sp_select_default(name, dtype, ndim);
        return SP_OK;
    }
    if (!sp_dtype_is_float(dtype))
        return SP_OK;
    if (!strcmp(s, ALL)) {
        *hit = true;
        return SP_OK;
    }
    int rank = class_rank(s);
    if (rank) {
        *hit = ndim == rank && sp_select_default(name, dtype, ndim);
        return SP_OK;
    }
    if (!modules)
        return name_match(t, k, name, hit, err);
    if (!inside_any && !sp_select_default(name, dtype, ndim))
        return SP_OK;
    /* every proper dotted prefix: "a.b.c.weight" -> "a", "a.b", "a.b.c" */
    char buf[1024];
    size_t len = strlen(name);
    if (len >= sizeof buf)
        return SP_OK;
    memcpy(buf, name, len + 1);
    for (size_t i = 0; i < len && !*hit; i++) {
        if (buf[i] != '.')
            continue;
        buf[i] = '\0';
        sp_status st = name_match(t, k, buf, hit, err);
        buf[i] = '.';
        if (st)
            return st;
    }
    return SP_OK;
}

/* ---- single-name queries (entries read as tensor names) */

static sp_status list_match(const sp_recipe_terms *t, bool inside_any, const char *name,
                            sp_dtype dtype, int ndim, bool *hit, sp_error *err)
{
    *hit = false;
    for (size_t k = 0; k < t->n && !*hit; k++) {
        sp_status st = term_match(t, k, false, inside_any, name, dtype, ndim, hit, err);
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
    if (!sp_modifier_prunes(m) && m->type != SP_MOD_CONSTANT)
        return SP_OK; /* training, distillation: no tensors of their own */
    /* ignore entries name tensors outright; their dtype and rank do not matter */
    sp_status st = list_match(&m->ignore, true, name, SP_F32, ndim > 2 ? ndim : 2, &ignored, err);
    if (st || ignored)
        return st;
    if (!m->params.n) {
        *targets = sp_select_default(name, dtype, ndim);
        return SP_OK;
    }
    return list_match(&m->params, false, name, dtype, ndim, targets, err);
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
        bool hit;
        sp_status st = list_match(&m->overrides[i].params, false, name, SP_F32, 2, &hit, err);
        if (st)
            return st;
        if (hit) {
            *final = m->overrides[i].sparsity;
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

/* ---- a whole model */

/* Per entry of a list: does it name modules (match no tensor name)? */
static sp_status modules_flags(const sp_recipe_terms *t, const sp_recipe_tensor *ts, size_t n,
                               bool **out, sp_error *err)
{
    *out = calloc(t->n ? t->n : 1, sizeof **out);
    if (!*out)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < t->n; k++) {
        const char *s = t->text[k];
        if (!strcmp(s, ALL_PRUNABLE) || !strcmp(s, ALL) || class_rank(s))
            continue;
        bool named = false;
        for (size_t i = 0; i < n && !named; i++) {
            sp_status st = name_match(t, k, ts[i].name, &named, err);
            if (st)
                return st;
        }
        (*out)[k] = !named;
    }
    return SP_OK;
}

typedef struct mod_sel {
    bool *pmod, *imod;  /* per params / ignore entry: names modules */
    bool **omod;        /* per override list */
    bool *phit;         /* per params entry: selected something */
} mod_sel;

static void sel_release(mod_sel *s, const sp_modifier *m)
{
    free(s->pmod);
    free(s->imod);
    free(s->phit);
    for (size_t i = 0; s->omod && i < m->noverrides; i++)
        free(s->omod[i]);
    free(s->omod);
}

static sp_status sel_init(mod_sel *s, const sp_modifier *m, const sp_recipe_tensor *t, size_t n,
                          sp_error *err)
{
    memset(s, 0, sizeof *s);
    sp_status st;
    if ((st = modules_flags(&m->params, t, n, &s->pmod, err)) ||
        (st = modules_flags(&m->ignore, t, n, &s->imod, err)))
        return st;
    s->phit = calloc(m->params.n ? m->params.n : 1, sizeof *s->phit);
    s->omod = calloc(m->noverrides ? m->noverrides : 1, sizeof *s->omod);
    if (!s->phit || !s->omod)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->noverrides; i++)
        if ((st = modules_flags(&m->overrides[i].params, t, n, &s->omod[i], err)))
            return st;
    return SP_OK;
}

/* Does m target tensor t (module entries resolved by s)? */
static sp_status sel_match(mod_sel *s, const sp_modifier *m, const sp_recipe_tensor *t, bool *hit,
                           sp_error *err)
{
    bool ig = false;
    sp_status st;
    *hit = false;
    for (size_t k = 0; k < m->ignore.n && !ig; k++)
        if ((st = term_match(&m->ignore, k, s->imod[k], true, t->name, SP_F32,
                             t->ndim > 2 ? t->ndim : 2, &ig, err)))
            return st;
    if (ig)
        return SP_OK;
    if (!m->params.n) {
        *hit = sp_select_default(t->name, t->dtype, t->ndim);
        return SP_OK;
    }
    for (size_t k = 0; k < m->params.n; k++) {
        bool h;
        if ((st = term_match(&m->params, k, s->pmod[k], false, t->name, t->dtype, t->ndim, &h, err)))
            return st;
        if (h) {
            s->phit[k] = true;
            *hit = true; /* go on: phit records every entry that selects */
        }
    }
    return SP_OK;
}

static sp_status sel_final(const mod_sel *s, const sp_modifier *m, const sp_recipe_tensor *t,
                           double *final, sp_error *err)
{
    *final = m->final_sparsity;
    for (size_t i = 0; i < m->noverrides; i++) {
        const sp_recipe_terms *o = &m->overrides[i].params;
        for (size_t k = 0; k < o->n; k++) {
            bool h;
            sp_status st = term_match(o, k, s->omod[i][k], false, t->name, t->dtype, t->ndim, &h, err);
            if (st)
                return st;
            if (h) {
                *final = m->overrides[i].sparsity;
                return SP_OK;
            }
        }
    }
    return SP_OK;
}

static bool takes_part(const sp_modifier *m, unsigned types, sp_run_type run)
{
    if (!((types >> m->type) & 1u))
        return false;
    if (run == SP_RUN_ONESHOT)
        return m->run_type == SP_RUN_ONESHOT;
    if (run == SP_RUN_TRAIN)
        return m->run_type != SP_RUN_ONESHOT;
    return true;
}

static void add_warning(sp_recipe_problems *p, int line, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_warning(sp_recipe_problems *p, int line, const char *path, const char *fmt, ...)
{
    if (!p || p->n >= 1000)
        return;
    sp_recipe_problem *nv = realloc(p->v, (p->n + 1) * sizeof *nv);
    if (!nv)
        return;
    p->v = nv;
    sp_recipe_problem *e = &nv[p->n++];
    memset(e, 0, sizeof *e);
    e->warning = true;
    e->line = line;
    snprintf(e->path, sizeof e->path, "%s", path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

sp_status sp_recipe_assign(const sp_recipe *r, const sp_recipe_tensor *t, size_t n, unsigned types,
                           sp_run_type run, long *owner, double *final,
                           sp_recipe_problems *problems, sp_error *err)
{
    sp_status st = SP_OK;
    size_t *stage_of = calloc(r->nmods ? r->nmods : 1, sizeof *stage_of);
    size_t *owner_stage = calloc(n ? n : 1, sizeof *owner_stage);
    if (!stage_of || !owner_stage) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* stages numbered in order of appearance; no stage = 0 */
    for (size_t j = 0, next = 1; j < r->nmods; j++) {
        if (!r->mods[j].stage)
            continue;
        for (size_t k = 0; k < j && !stage_of[j]; k++)
            if (r->mods[k].stage && !strcmp(r->mods[k].stage, r->mods[j].stage))
                stage_of[j] = stage_of[k];
        if (!stage_of[j])
            stage_of[j] = next++;
    }
    for (size_t i = 0; i < n; i++)
        owner[i] = -1;
    for (size_t j = 0; j < r->nmods && !st; j++) {
        const sp_modifier *m = &r->mods[j];
        if (!takes_part(m, types, run))
            continue;
        mod_sel s;
        if (!(st = sel_init(&s, m, t, n, err))) {
            for (size_t i = 0; i < n && !st; i++) {
                bool hit;
                if ((st = sel_match(&s, m, &t[i], &hit, err)) || !hit)
                    continue;
                if (owner[i] >= 0 && stage_of[j] <= owner_stage[i])
                    continue; /* the first in a stage; a later stage wins */
                owner[i] = (long)j;
                owner_stage[i] = stage_of[j];
                if (final)
                    st = sel_final(&s, m, &t[i], &final[i], err);
            }
            for (size_t k = 0; !st && k < m->params.n; k++)
                if (!s.phit[k])
                    add_warning(problems, m->line, m->where, "'%s' selects no tensor of the model",
                                m->params.text[k]);
        }
        sel_release(&s, m);
    }
out:
    free(stage_of);
    free(owner_stage);
    return st;
}

void sp_recipe_rules_release(sp_recipe_rules *rr)
{
    free(rr->rules);
    free(rr->mods);
    free(rr->tensors);
    memset(rr, 0, sizeof *rr);
}

sp_status sp_recipe_prune_rules(sp_recipe_rules *out, const sp_recipe *r, const sp_recipe_tensor *t,
                                size_t n, sp_recipe_problems *problems, sp_error *err)
{
    memset(out, 0, sizeof *out);
    long *owner = malloc((n ? n : 1) * sizeof *owner);
    double *final = malloc((n ? n : 1) * sizeof *final);
    size_t *count = calloc(r->nmods ? r->nmods : 1, sizeof *count);
    out->rules = calloc(r->nmods ? r->nmods : 1, sizeof *out->rules);
    out->mods = calloc(r->nmods ? r->nmods : 1, sizeof *out->mods);
    out->tensors = calloc(n ? n : 1, sizeof *out->tensors);
    sp_status st = SP_OK;
    if (!owner || !final || !count || !out->rules || !out->mods || !out->tensors) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    st = sp_recipe_assign(r, t, n, SP_MOD_PRUNING_TYPES, SP_RUN_ANY, owner, final, problems, err);
    if (st)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (owner[i] >= 0)
            count[owner[i]]++;
    /* one rule per owning modifier, its tensors contiguous, in model order */
    size_t at = 0;
    for (size_t j = 0; j < r->nmods; j++) {
        if (!count[j])
            continue;
        const sp_modifier *m = &r->mods[j];
        sp_prune_rule *ru = &out->rules[out->n];
        ru->pattern = m->mask_type;
        ru->sparsity = m->final_sparsity;
        ru->global = m->global_sparsity && m->mask_type.kind != SP_PATTERN_NM;
        ru->bscore = m->block_score;
        ru->score = m->score; /* wanda: the caller brings the norms */
        ru->tensors = &out->tensors[at];
        for (size_t i = 0; i < n; i++)
            if (owner[i] == (long)j) {
                out->tensors[at].name = t[i].name;
                out->tensors[at].sparsity = final[i];
                at++;
            }
        ru->ntensors = count[j];
        out->mods[out->n++] = m;
    }
out:
    free(owner);
    free(final);
    free(count);
    if (st)
        sp_recipe_rules_release(out);
    return st;
}
