/*
 * Pruning whole checkpoints (prune_ckpt.h): resolve rules to target tensors,
 * run global selections in two streaming passes, then rewrite the checkpoint
 * storage by storage, masking each target through its (possibly strided)
 * view. Tied tensors (same storage, same view) share one mask.
 */
#include "sparsify/prune_ckpt.h"

#include "prune/internal.h"
#include "formats/checked.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct target {
    size_t tensor;
    size_t rule;
    double sparsity;
    size_t entry;  /* index in the report */
    bool dup;      /* same view as an earlier target: nothing to do */
    size_t gslot;  /* index within its global rule */
} target;

typedef struct job {
    sp_ckpt *ck;
    const sp_prune_rule *rules;
    size_t nrules;
    target *targets;
    size_t ntargets;
    sp_global **globals; /* per rule, NULL unless global */
    sp_prune_report *rep;
} job;

void sp_prune_report_release(sp_prune_report *r)
{
    if (!r)
        return;
    free(r->entries);
    memset(r, 0, sizeof *r);
}

size_t sp_prune_rules_from_recipe(const sp_recipe *r, sp_prune_rule *rules)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nmods; i++) {
        const sp_modifier *m = &r->mods[i];
        if (!sp_modifier_prunes(m))
            continue;
        memset(&rules[n], 0, sizeof rules[n]);
        rules[n].modifier = m;
        rules[n].pattern = m->mask_type;
        rules[n].sparsity = m->final_sparsity;
        rules[n].global = m->global_sparsity;
        rules[n].bscore = m->block_score;
        n++;
    }
    return n;
}

static bool same_view(const sp_tensor *a, const sp_tensor *b)
{
    if (a->storage != b->storage || a->offset != b->offset || a->ndim != b->ndim ||
        a->dtype != b->dtype)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d] || a->stride[d] != b->stride[d])
            return false;
    return true;
}

/* Walk the elements of t's view in row-major order: calls back with the
 * element's byte offset inside the storage. */
#define VIEW_FOR_EACH(t, es, OFFVAR, BODY)                                          \
    do {                                                                            \
        int64_t idx_[SP_MAX_DIMS] = {0};                                            \
        uint64_t OFFVAR = (uint64_t)(t)->offset * (es);                             \
        for (int64_t n_ = 0; n_ < (t)->numel; n_++) {                               \
            BODY;                                                                   \
            for (int d_ = (t)->ndim - 1; d_ >= 0; d_--) {                           \
                idx_[d_]++;                                                         \
                OFFVAR += (uint64_t)(t)->stride[d_] * (es);                         \
                if (idx_[d_] < (t)->shape[d_])                                      \
                    break;                                                          \
                OFFVAR -= (uint64_t)(t)->stride[d_] * (es) * (uint64_t)(t)->shape[d_]; \
                idx_[d_] = 0;                                                       \
            }                                                                       \
        }                                                                           \
    } while (0)

/* Contiguous copy of a tensor's view: returns a pointer into the storage when
 * the view is already contiguous (*owned = NULL), else a new buffer. */
static const void *view_gather(const sp_tensor *t, const void *storage, void **owned)
{
    size_t es = sp_dtype_size(t->dtype);
    *owned = NULL;
    if (sp_tensor_is_contiguous(t))
        return (const unsigned char *)storage + (size_t)t->offset * es;
    size_t bytes;
    unsigned char *buf = NULL;
    if (!sp_mul_size((uint64_t)t->numel, es, &bytes) || !(buf = malloc(bytes ? bytes : 1)))
        return NULL;
    const unsigned char *src = storage;
    size_t k = 0;
    VIEW_FOR_EACH(t, es, off, { memcpy(buf + k * es, src + off, es); k++; });
    *owned = buf;
    return buf;
}

/* Zero (all bits) the view's elements whose mask byte is 0. */
static void view_apply(const sp_tensor *t, void *storage, const uint8_t *mask)
{
    size_t es = sp_dtype_size(t->dtype);
    if (sp_tensor_is_contiguous(t)) {
        sp_mask_apply((unsigned char *)storage + (size_t)t->offset * es, t->dtype,
                      (size_t)t->numel, mask);
        return;
    }
    unsigned char *dst = storage;
    size_t k = 0;
    VIEW_FOR_EACH(t, es, off, {
        if (!mask[k])
            memset(dst + off, 0, es);
        k++;
    });
}

static uint64_t view_zeros(const sp_tensor *t, const void *storage)
{
    void *owned;
    const void *p = view_gather(t, storage, &owned);
    if (!p)
        return 0;
    uint64_t z = sp_count_zeros(t->dtype, p, (size_t)t->numel);
    free(owned);
    return z;
}

static bool rule_targets(const sp_prune_rule *r, const sp_tensor *t)
{
    if (r->selector)
        return sp_selector_match(r->selector, t->name, t->dtype, t->ndim);
    if (r->modifier)
        return sp_modifier_targets(r->modifier, t->name, t->dtype, t->ndim);
    return false;
}

static sp_status resolve(job *j, sp_error *err)
{
    sp_ckpt *ck = j->ck;
    size_t nt = sp_ckpt_num_tensors(ck);
    j->targets = calloc(nt ? nt : 1, sizeof *j->targets);
    j->rep->entries = calloc(nt ? nt : 1, sizeof *j->rep->entries);
    if (!j->targets || !j->rep->entries)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nt; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        if (sp_dtype_is_float(t->dtype))
            j->rep->total_params += (uint64_t)t->numel;
        if (!sp_dtype_is_float(t->dtype) || t->numel == 0)
            continue;
        for (size_t r = 0; r < j->nrules; r++) {
            const sp_prune_rule *rule = &j->rules[r];
            if (!rule_targets(rule, t))
                continue;
            double s = rule->modifier ? sp_modifier_final_for(rule->modifier, t->name)
                                      : rule->sparsity;
            double implied = sp_pattern_implied_sparsity(&rule->pattern);
            if (implied >= 0)
                s = implied;
            if (!(s >= 0.0 && s <= 1.0))
                return sp_error_set(err, SP_ERR_INVALID_ARG,
                                    "tensor '%s': sparsity %g is out of range [0, 1]", t->name, s);
            target *tg = &j->targets[j->ntargets];
            tg->tensor = i;
            tg->rule = r;
            tg->sparsity = s;
            tg->entry = j->rep->n;
            for (size_t k = 0; k < j->ntargets; k++)
                if (same_view(sp_ckpt_tensor(ck, j->targets[k].tensor), t)) {
                    tg->dup = true;
                    break;
                }
            sp_prune_entry *e = &j->rep->entries[j->rep->n++];
            e->name = t->name;
            e->tensor = i;
            sp_pattern_str(&rule->pattern, e->pattern, sizeof e->pattern);
            e->target = s;
            e->numel = (uint64_t)t->numel;
            e->shared = tg->dup;
            j->rep->targeted_params += (uint64_t)t->numel;
            j->ntargets++;
            break;
        }
    }
    if (j->ntargets == 0)
        return sp_error_set(err, SP_ERR_NOT_FOUND, "'%s': no tensor matches the selection",
                            sp_ckpt_path(ck));
    return SP_OK;
}

static sp_status run_globals(job *j, sp_error *err)
{
    sp_status s = SP_OK;
    j->globals = calloc(j->nrules, sizeof *j->globals);
    if (!j->globals)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t r = 0; r < j->nrules; r++) {
        const sp_prune_rule *rule = &j->rules[r];
        if (!rule->global)
            continue;
        size_t count = 0;
        double sparsity = rule->modifier ? rule->modifier->final_sparsity : rule->sparsity;
        for (size_t k = 0; k < j->ntargets; k++)
            if (j->targets[k].rule == r && !j->targets[k].dup)
                j->targets[k].gslot = count++;
        if (count == 0)
            continue;
        s = sp_global_new(&j->globals[r], &rule->pattern, sparsity, rule->bscore, count, err);
        if (s)
            return s;
        for (int pass = 1; pass <= 2; pass++) {
            for (size_t k = 0; k < j->ntargets; k++) {
                target *tg = &j->targets[k];
                if (tg->rule != r || tg->dup)
                    continue;
                const sp_tensor *t = sp_ckpt_tensor(j->ck, tg->tensor);
                const void *sd;
                void *owned = NULL;
                s = sp_ckpt_storage_data(j->ck, t->storage, &sd, err);
                if (s)
                    return s;
                const void *p = view_gather(t, sd, &owned);
                if (!p)
                    return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
                s = sp_global_add(j->globals[r], pass, tg->gslot, t->dtype, p, NULL, t->ndim,
                                  t->shape, err);
                free(owned);
                sp_ckpt_storage_release(j->ck, t->storage);
                if (s) {
                    sp_error_prefix(err, "tensor '%s'", t->name);
                    return s;
                }
            }
        }
    }
    return SP_OK;
}

/* Compute the mask of target tg from the current bytes of its storage. */
static sp_status target_mask(job *j, const target *tg, const void *storage, uint8_t **mask,
                             sp_error *err)
{
    const sp_tensor *t = sp_ckpt_tensor(j->ck, tg->tensor);
    const sp_prune_rule *rule = &j->rules[tg->rule];
    void *owned = NULL;
    sp_status s = SP_OK;
    *mask = malloc((size_t)t->numel);
    const void *p = view_gather(t, storage, &owned);
    if (!*mask || !p) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (rule->global && j->globals[tg->rule])
        s = sp_global_mask(j->globals[tg->rule], tg->gslot, *mask, t->dtype, p, NULL, t->ndim,
                           t->shape, err);
    else
        s = sp_mask_select(*mask, t->dtype, p, NULL, t->ndim, t->shape, &rule->pattern,
                           tg->sparsity, rule->bscore, err);
    if (s)
        sp_error_prefix(err, "tensor '%s'", t->name);
out:
    free(owned);
    if (s) {
        free(*mask);
        *mask = NULL;
    }
    return s;
}

/* The common case, fused: a storage with one distinct target whose view is
 * contiguous. The target's bytes are pruned straight from orig into out in
 * one streaming step (select, write, count); the storage's other bytes are
 * copied. No mask is built for f32 unstructured/N:M and nothing is compared
 * afterwards: the pruner says whether a byte changed. */
static sp_status fused_storage(job *j, size_t first, const void *orig, void *out, uint64_t nb,
                               bool *changed, sp_error *err)
{
    const target *tg = &j->targets[first];
    const sp_tensor *t = sp_ckpt_tensor(j->ck, tg->tensor);
    const sp_prune_rule *rule = &j->rules[tg->rule];
    const size_t es = sp_dtype_size(t->dtype);
    const size_t off = (size_t)t->offset * es, len = (size_t)t->numel * es;
    const unsigned char *src = (const unsigned char *)orig + off;
    unsigned char *dst = (unsigned char *)out + off;
    sp__prune_stats ps;
    sp_status s;
    if (off)
        memcpy(out, orig, off);
    if (off + len < nb)
        memcpy(dst + len, src + len, (size_t)nb - off - len);
    if (rule->global && j->globals[tg->rule])
        s = sp__global_apply(j->globals[tg->rule], tg->gslot, dst, src, t->dtype, t->ndim,
                             t->shape, &ps, err);
    else
        s = sp__prune_tensor(dst, src, t->dtype, t->ndim, t->shape, &rule->pattern,
                             tg->sparsity, rule->bscore, &ps, err);
    if (s) {
        sp_error_prefix(err, "tensor '%s'", t->name);
        return s;
    }
    /* the target and its tied copies (same view) */
    for (size_t k = first; k < j->ntargets; k++) {
        const target *o = &j->targets[k];
        if (sp_ckpt_tensor(j->ck, o->tensor)->storage != t->storage)
            continue;
        sp_prune_entry *e = &j->rep->entries[o->entry];
        e->zeros_before = ps.zeros_before;
        e->zeros_after = ps.zeros_after;
    }
    *changed = ps.changed;
    return SP_OK;
}

static sp_status rewrite_cb(void *ctx, sp_ckpt *ck, size_t storage, const void *orig, void *out,
                            bool *changed, sp_error *err)
{
    job *j = ctx;
    size_t first = SIZE_MAX, nprimary = 0;
    for (size_t k = 0; k < j->ntargets; k++) {
        if (sp_ckpt_tensor(ck, j->targets[k].tensor)->storage != storage)
            continue;
        if (first == SIZE_MAX)
            first = k;
        nprimary += !j->targets[k].dup;
    }
    if (first == SIZE_MAX)
        return SP_OK;
    if (nprimary == 1 && !j->targets[first].dup &&
        sp_tensor_is_contiguous(sp_ckpt_tensor(ck, j->targets[first].tensor)))
        return fused_storage(j, first, orig, out, sp_ckpt_storage(ck, storage)->nbytes, changed,
                             err);
    /* general case: several targets on one storage, or strided views */
    memcpy(out, orig, sp_ckpt_storage(ck, storage)->nbytes);
    for (size_t k = first; k < j->ntargets; k++) {
        target *tg = &j->targets[k];
        const sp_tensor *t = sp_ckpt_tensor(ck, tg->tensor);
        if (t->storage != storage)
            continue;
        sp_prune_entry *e = &j->rep->entries[tg->entry];
        e->zeros_before = view_zeros(t, orig);
        if (!tg->dup) {
            uint8_t *mask;
            sp_status s = target_mask(j, tg, out, &mask, err);
            if (s)
                return s;
            view_apply(t, out, mask);
            free(mask);
        }
        e->zeros_after = view_zeros(t, out);
    }
    *changed = memcmp(out, orig, sp_ckpt_storage(ck, storage)->nbytes) != 0;
    return SP_OK;
}

static void job_release(job *j)
{
    if (j->globals)
        for (size_t r = 0; r < j->nrules; r++)
            sp_global_free(j->globals[r]);
    free(j->globals);
    free(j->targets);
}

sp_status sp_prune_ckpt(sp_ckpt *ck, const char *out_path, const sp_prune_rule *rules,
                        size_t nrules, sp_prune_report *rep, sp_error *err)
{
    job j = {.ck = ck, .rules = rules, .nrules = nrules, .rep = rep};
    memset(rep, 0, sizeof *rep);
    sp_status s = resolve(&j, err);
    if (!s)
        s = run_globals(&j, err);
    if (!s)
        s = sp_ckpt_rewrite(ck, out_path, rewrite_cb, &j, err);
    if (!s)
        for (size_t i = 0; i < rep->n; i++) {
            rep->zeros_before += rep->entries[i].zeros_before;
            rep->zeros_after += rep->entries[i].zeros_after;
        }
    job_release(&j);
    if (s)
        sp_prune_report_release(rep);
    return s;
}

sp_status sp_prune_check(sp_ckpt *ck, const sp_prune_rule *rules, size_t nrules,
                         sp_prune_report *rep, sp_error *err)
{
    job j = {.ck = ck, .rules = rules, .nrules = nrules, .rep = rep};
    memset(rep, 0, sizeof *rep);
    sp_status s = resolve(&j, err);
    bool all_ok = true;
    for (size_t k = 0; !s && k < j.ntargets; k++) {
        target *tg = &j.targets[k];
        const sp_tensor *t = sp_ckpt_tensor(ck, tg->tensor);
        sp_prune_entry *e = &rep->entries[tg->entry];
        const void *sd;
        void *owned = NULL;
        s = sp_ckpt_storage_data(ck, t->storage, &sd, err);
        if (s)
            break;
        const void *p = view_gather(t, sd, &owned);
        if (!p) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        double measured = 0;
        e->zeros_before = e->zeros_after = sp_count_zeros(t->dtype, p, (size_t)t->numel);
        e->ok = sp_mask_check(t->dtype, p, t->ndim, t->shape, &rules[tg->rule].pattern,
                              tg->sparsity, &measured, e->violation, sizeof e->violation);
        all_ok = all_ok && e->ok;
        free(owned);
        sp_ckpt_storage_release(ck, t->storage);
        rep->zeros_before += e->zeros_before;
        rep->zeros_after += e->zeros_after;
    }
    job_release(&j);
    if (s) {
        sp_prune_report_release(rep);
        return s;
    }
    return all_ok ? SP_OK : SP_ERR_CHECK;
}
