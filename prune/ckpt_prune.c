/*
 * Pruning whole checkpoints (prune_ckpt.h): resolve rules to target tensors,
 * run global selections in two streaming passes, then rewrite the checkpoint
 * storage by storage, masking each target through its (possibly strided)
 * view. Tied tensors (same storage, same view) share one mask.
 */
#include "sparsify/prune_ckpt.h"

#include "prune/internal.h"
#include "formats/checked.h"
#include "formats/jobs.h"
#include "sparsify/spz.h" /* sp_ckpt_tensor_dense */

#include <math.h>
#include <stdatomic.h>
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

/* How one storage is rewritten (see "the rewrite" below). */
typedef struct splan {
    size_t first;        /* its first target (index in targets), or SIZE_MAX */
    bool fused;          /* one distinct target with a contiguous view */
    uint64_t off, len;   /* fused: the target's bytes within the storage */
    sp__tplan tp;        /* fused: the plan, from prepare */
    unsigned char *whole; /* otherwise: the storage's new bytes */
    _Atomic uint64_t zeros_before, zeros_after; /* fused: summed over chunks */
} splan;

typedef struct job {
    sp_ckpt *ck;
    const sp_prune_rule *rules;
    size_t nrules;
    size_t **by_name; /* per rule with tensors: its entries sorted by name */
    target *targets;
    size_t ntargets;
    sp_global **globals; /* per rule, NULL unless global (and not below) */
    sp__gmag **gmags;    /* per rule: global magnitudes of f32/f16/bf16 */
    sp_prune_report *rep;
    sp_progress_fn progress;
    void *pctx;
    uint64_t done, total; /* progress, bytes */
    splan *plans;         /* per storage */
    int threads;
    sp_ckpt *norms;       /* activation norms for wanda rules, or NULL */
} job;

void sp_prune_report_release(sp_prune_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; r->entries && i < r->n; i++)
        free(r->entries[i].aliases);
    free(r->entries);
    free(r->skipped);
    memset(r, 0, sizeof *r);
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

static int cmp_name(const void *a, const void *b, void *ctx)
{
    const sp_prune_tensor *t = ctx;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

/* Index the explicit tensor lists by name (binary search in resolve). */
static sp_status index_rules(job *j, sp_error *err)
{
    j->by_name = calloc(j->nrules ? j->nrules : 1, sizeof *j->by_name);
    if (!j->by_name)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t r = 0; r < j->nrules; r++) {
        const sp_prune_rule *ru = &j->rules[r];
        if (ru->selector || !ru->ntensors)
            continue;
        size_t *ix = malloc(ru->ntensors * sizeof *ix);
        if (!ix)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < ru->ntensors; i++)
            ix[i] = i;
        qsort_r(ix, ru->ntensors, sizeof *ix, cmp_name, (void *)ru->tensors);
        j->by_name[r] = ix;
    }
    return SP_OK;
}

/* Does rule r target t? *sparsity: its sparsity for t. */
static sp_status rule_targets(const job *j, size_t r, const sp_tensor *t, bool *hit,
                              double *sparsity, sp_error *err)
{
    const sp_prune_rule *ru = &j->rules[r];
    *hit = false;
    *sparsity = ru->sparsity;
    if (ru->selector)
        return sp_selector_match(ru->selector, t->name, t->dtype, t->ndim, hit, err);
    const size_t *ix = j->by_name[r];
    size_t lo = 0, hi = ix ? ru->ntensors : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ru->tensors[ix[mid]].name, t->name);
        if (c == 0) {
            *hit = true;
            *sparsity = ru->tensors[ix[mid]].sparsity;
            return SP_OK;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SP_OK;
}

/* The bytes [lo, hi) of its storage that a view can touch (its extent; the
 * view may skip some of them). Empty views touch nothing. */
static void view_extent(const sp_tensor *t, uint64_t *lo, uint64_t *hi)
{
    uint64_t es = sp_dtype_size(t->dtype), last = (uint64_t)t->offset;
    *lo = *hi = 0;
    if (t->numel <= 0)
        return;
    for (int d = 0; d < t->ndim; d++)
        last += (uint64_t)t->stride[d] * (uint64_t)(t->shape[d] - 1);
    *lo = (uint64_t)t->offset * es;
    *hi = (last + 1) * es;
}

static bool views_overlap(const sp_tensor *a, const sp_tensor *b)
{
    uint64_t alo, ahi, blo, bhi;
    if (a->storage != b->storage)
        return false;
    view_extent(a, &alo, &ahi);
    view_extent(b, &blo, &bhi);
    return alo < ahi && blo < bhi && alo < bhi && blo < ahi;
}

/* Leave dense every candidate whose bytes overlap a tensor that is not
 * pruned (repeated until nothing changes: dropping one candidate can expose
 * another that overlaps it). rule[i] is SIZE_MAX for a non-candidate. */
static sp_status drop_shared(job *j, size_t *rule, sp_error *err)
{
    sp_ckpt *ck = j->ck;
    size_t ns = sp_ckpt_num_storages(ck), *order, *start;
    sp_status st = sp_ckpt_tensors_by_storage(ck, &order, &start, err);
    if (st)
        return st;
    for (size_t s = 0; s < ns; s++) {
        size_t k = start[s], end = start[s + 1];
        bool changed = end - k > 1;
        while (changed) {
            changed = false;
            for (size_t a = k; a < end; a++) {
                size_t ia = order[a];
                if (rule[ia] == SIZE_MAX)
                    continue;
                for (size_t b = k; b < end; b++) {
                    size_t ib = order[b];
                    if (ib == ia || rule[ib] != SIZE_MAX ||
                        !views_overlap(sp_ckpt_tensor(ck, ia), sp_ckpt_tensor(ck, ib)))
                        continue;
                    sp_prune_skip *ns_ = realloc(j->rep->skipped,
                                                 (j->rep->nskipped + 1) * sizeof *ns_);
                    if (!ns_) {
                        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
                        goto out;
                    }
                    j->rep->skipped = ns_;
                    ns_[j->rep->nskipped].name = sp_ckpt_tensor(ck, ia)->name;
                    ns_[j->rep->nskipped].alias = sp_ckpt_tensor(ck, ib)->name;
                    j->rep->nskipped++;
                    rule[ia] = SIZE_MAX;
                    changed = true;
                    break;
                }
            }
        }
    }
out:
    free(start);
    free(order);
    return st;
}

/* Every target's aliases: the other targets whose bytes overlap its own.
 * entry[i]: the report entry of tensor i, or SIZE_MAX. */
static sp_status list_aliases(job *j, const size_t *entry, sp_error *err)
{
    size_t ns = sp_ckpt_num_storages(j->ck), *order, *start;
    sp_status st = sp_ckpt_tensors_by_storage(j->ck, &order, &start, err);
    for (size_t s = 0; !st && s < ns; s++)
        for (size_t a = start[s]; !st && start[s + 1] - start[s] > 1 && a < start[s + 1]; a++) {
            if (entry[order[a]] == SIZE_MAX)
                continue;
            sp_prune_entry *e = &j->rep->entries[entry[order[a]]];
            for (size_t b = start[s]; b < start[s + 1]; b++) {
                const sp_tensor *tb = sp_ckpt_tensor(j->ck, order[b]);
                if (a == b || entry[order[b]] == SIZE_MAX ||
                    !views_overlap(sp_ckpt_tensor(j->ck, order[a]), tb))
                    continue;
                const char **na = realloc(e->aliases, (e->naliases + 1) * sizeof *na);
                if (!na) {
                    st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
                    break;
                }
                e->aliases = na;
                na[e->naliases++] = tb->name;
            }
        }
    free(order);
    free(start);
    return st;
}

static sp_status resolve(job *j, sp_error *err)
{
    sp_ckpt *ck = j->ck;
    size_t nt = sp_ckpt_num_tensors(ck);
    sp_status st = SP_OK;
    size_t *rule = malloc((nt ? nt : 1) * sizeof *rule);
    double *sparsity = malloc((nt ? nt : 1) * sizeof *sparsity);
    j->targets = calloc(nt ? nt : 1, sizeof *j->targets);
    j->rep->entries = calloc(nt ? nt : 1, sizeof *j->rep->entries);
    if (!rule || !sparsity || !j->targets || !j->rep->entries) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = index_rules(j, err)))
        goto out;
    /* candidates: the first rule that targets each tensor */
    for (size_t i = 0; i < nt; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        rule[i] = SIZE_MAX;
        if (sp_dtype_is_float(t->dtype))
            j->rep->total_params += (uint64_t)t->numel;
        if (!sp_dtype_is_float(t->dtype) || t->numel == 0)
            continue;
        for (size_t r = 0; r < j->nrules && rule[i] == SIZE_MAX; r++) {
            const sp_prune_rule *ru = &j->rules[r];
            bool hit;
            double s;
            if ((st = rule_targets(j, r, t, &hit, &s, err)))
                goto out;
            if (!hit)
                continue;
            double implied = sp_pattern_implied_sparsity(&ru->pattern);
            if (implied >= 0)
                s = implied;
            if (!(s >= 0.0 && s <= 1.0)) {
                st = sp_error_set(err, SP_ERR_INVALID_ARG,
                                  "tensor '%s': sparsity %g is out of range [0, 1]", t->name, s);
                goto out;
            }
            rule[i] = r;
            sparsity[i] = s;
        }
    }
    if ((st = drop_shared(j, rule, err)))
        goto out;
    for (size_t i = 0; i < nt; i++) {
        if (rule[i] == SIZE_MAX)
            continue; /* rule[i] becomes the report entry of tensor i below */
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        target *tg = &j->targets[j->ntargets];
        tg->tensor = i;
        tg->rule = rule[i];
        tg->sparsity = sparsity[i];
        tg->entry = j->rep->n;
        for (size_t k = 0; k < j->ntargets; k++)
            if (same_view(sp_ckpt_tensor(ck, j->targets[k].tensor), t)) {
                tg->dup = true;
                break;
            }
        sp_prune_entry *e = &j->rep->entries[j->rep->n++];
        e->name = t->name;
        e->tensor = i;
        sp_pattern_str(&j->rules[rule[i]].pattern, e->pattern, sizeof e->pattern);
        e->target = sparsity[i];
        e->numel = (uint64_t)t->numel;
        e->shared = tg->dup;
        j->rep->targeted_params += (uint64_t)t->numel;
        j->ntargets++;
        rule[i] = tg->entry;
    }
    if ((st = list_aliases(j, rule, err)))
        goto out;
    if (j->ntargets == 0) {
        if (j->rep->nskipped)
            st = sp_error_set(err, SP_ERR_NOT_FOUND,
                              "'%s': no tensor left to prune: '%s' shares its storage with '%s', "
                              "which is not targeted (target both to prune them together)",
                              sp_ckpt_path(ck), j->rep->skipped[0].name,
                              j->rep->skipped[0].alias);
        else
            st = sp_error_set(err, SP_ERR_NOT_FOUND, "'%s': no tensor matches the selection",
                              sp_ckpt_path(ck));
    }
out:
    free(rule);
    free(sparsity);
    return st;
}

/* The activation norms of tensor t: a new contiguous float32 copy or a
 * borrowed pointer (*owned says which) and their count. */
static sp_status target_norms(job *j, const sp_tensor *t, const float **norms, void **owned,
                              size_t *n, sp_error *err)
{
    long k = j->norms ? sp_ckpt_find(j->norms, t->name) : -1;
    *owned = NULL;
    if (k < 0)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "tensor '%s': no activation norms for wanda scores (the calibration "
                            "pass saw no Linear or convolution reading it)",
                            t->name);
    const sp_tensor *nt = sp_ckpt_tensor(j->norms, (size_t)k);
    if (nt->dtype != SP_F32)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "tensor '%s': activation norms are %s, expected float32", t->name,
                            sp_dtype_name(nt->dtype));
    sp_wgeom g;
    sp_wgeom_init(&g, t->ndim, t->shape);
    if (nt->numel != g.cols && nt->numel != g.rows * g.cols)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "tensor '%s': %lld activation norms, expected %lld (one per input "
                            "feature)",
                            t->name, (long long)nt->numel, (long long)g.cols);
    const void *p;
    sp_status s = sp_ckpt_tensor_dense(j->norms, (size_t)k, &p, owned, err);
    if (s)
        return s;
    *norms = p;
    *n = (size_t)nt->numel;
    return SP_OK;
}

/* Wanda scores of target t (data: its dense row-major elements) into a new
 * array (*scores, caller frees); NULL for magnitude rules. */
static sp_status target_scores(job *j, const sp_prune_rule *rule, const sp_tensor *t,
                               const void *data, float **scores, sp_error *err)
{
    *scores = NULL;
    if (rule->score != SP_SCORE_WANDA)
        return SP_OK;
    const float *norms = NULL;
    void *owned = NULL;
    size_t n = 0;
    sp_status s = target_norms(j, t, &norms, &owned, &n, err);
    if (s)
        return s;
    *scores = malloc((size_t)t->numel * sizeof(float) + 1);
    if (!*scores)
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    else if ((s = sp_wanda_scores(*scores, t->dtype, data, t->ndim, t->shape, norms, n, err)))
        sp_error_prefix(err, "tensor '%s'", t->name);
    free(owned);
    if (s) {
        free(*scores);
        *scores = NULL;
    }
    return s;
}

/* Before anything is written: every target of a wanda rule has norms of a
 * size that fits it. */
static sp_status check_norms(job *j, sp_error *err)
{
    for (size_t k = 0; k < j->ntargets; k++) {
        const float *norms;
        void *owned = NULL;
        size_t n;
        const sp_tensor *t = sp_ckpt_tensor(j->ck, j->targets[k].tensor);
        sp_status s = j->rules[j->targets[k].rule].score != SP_SCORE_WANDA
                          ? SP_OK
                          : target_norms(j, t, &norms, &owned, &n, err);
        free(owned);
        if (s)
            return s;
    }
    return SP_OK;
}

/* ---- visiting targets storage by storage, on several threads ----
 * One job per storage that holds a wanted target (a storage is loaded by
 * one thread only); fn sees each wanted target's view, contiguous. */
typedef struct visit {
    job *j;
    bool (*want)(const job *j, const target *tg, const void *arg);
    sp_status (*fn)(job *j, target *tg, const sp_tensor *t, const void *view, int worker,
                    void *arg, sp_error *err);
    void *arg;
    size_t *storages; /* in file order */
    size_t *first;    /* per storage job: its first target */
} visit;

static sp_status visit_job(void *ctx, sp_jobs *jr, size_t jn, int worker, sp_error *err)
{
    visit *v = ctx;
    job *j = v->j;
    size_t storage = v->storages[jn];
    const void *sd;
    sp_status s = sp_ckpt_storage_data(j->ck, storage, &sd, err);
    for (size_t k = v->first[jn]; !s && k < j->ntargets; k++) {
        target *tg = &j->targets[k];
        const sp_tensor *t = sp_ckpt_tensor(j->ck, tg->tensor);
        if (t->storage != storage || !v->want(j, tg, v->arg))
            continue;
        void *owned = NULL;
        const void *p = view_gather(t, sd, &owned);
        if (!p) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        s = v->fn(j, tg, t, p, worker, v->arg, err);
        free(owned);
        if (s)
            sp_error_prefix(err, "tensor '%s'", t->name);
        else
            sp_jobs_progress(jr, (uint64_t)t->numel * sp_dtype_size(t->dtype));
    }
    sp_ckpt_storage_release(j->ck, storage);
    return s;
}

static void phase_progress(void *ctx, uint64_t done, uint64_t total)
{
    job *j = ctx;
    (void)total;
    if (j->progress)
        j->progress(j->pctx, j->done + done, j->total);
}

static sp_status each_target(job *j, int threads,
                             bool (*want)(const job *j, const target *tg, const void *arg),
                             sp_status (*fn)(job *j, target *tg, const sp_tensor *t,
                                             const void *view, int worker, void *arg,
                                             sp_error *err),
                             void *arg, sp_error *err)
{
    size_t ns = sp_ckpt_num_storages(j->ck), n = 0;
    visit v = {j, want, fn, arg, NULL, NULL};
    size_t *seen = malloc((ns ? ns : 1) * sizeof *seen);
    v.storages = malloc((j->ntargets ? j->ntargets : 1) * sizeof *v.storages);
    v.first = malloc((j->ntargets ? j->ntargets : 1) * sizeof *v.first);
    if (!seen || !v.storages || !v.first) {
        free(seen);
        free(v.storages);
        free(v.first);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < ns; i++)
        seen[i] = SIZE_MAX;
    uint64_t bytes = 0;
    for (size_t k = 0; k < j->ntargets; k++) {
        if (!want(j, &j->targets[k], arg))
            continue;
        const sp_tensor *t = sp_ckpt_tensor(j->ck, j->targets[k].tensor);
        bytes += (uint64_t)t->numel * sp_dtype_size(t->dtype);
        if (seen[t->storage] != SIZE_MAX)
            continue;
        seen[t->storage] = n;
        v.storages[n] = t->storage;
        v.first[n++] = k;
    }
    sp_status s = sp_jobs_run(n, threads, visit_job, &v, phase_progress, j, bytes, err);
    if (!s)
        j->done += bytes;
    free(seen);
    free(v.storages);
    free(v.first);
    return s;
}

static bool want_any(const job *j, const target *tg, const void *arg)
{
    (void)j;
    (void)tg;
    (void)arg;
    return true;
}

/* ---- global scope ---- */

typedef struct gpass {
    size_t rule;
    int pass;
} gpass;

static bool want_global(const job *j, const target *tg, const void *arg)
{
    const gpass *g = arg;
    return tg->rule == g->rule && !tg->dup;
}

/* f32/f16/bf16 magnitudes: sp__gmag, any thread */
static sp_status gmag_fn(job *j, target *tg, const sp_tensor *t, const void *view, int worker,
                         void *arg, sp_error *err)
{
    const gpass *g = arg;
    sp__gmag *gm = j->gmags[g->rule];
    return g->pass == 1 ? sp__gmag_pass1(gm, tg->gslot, worker, t->dtype, view, (size_t)t->numel, err)
                        : sp__gmag_pass2(gm, tg->gslot, worker, t->dtype, view, (size_t)t->numel, err);
}

/* anything else: sp_global_add, one thread */
static sp_status global_fn(job *j, target *tg, const sp_tensor *t, const void *view, int worker,
                           void *arg, sp_error *err)
{
    const gpass *g = arg;
    (void)worker;
    float *scores = NULL;
    sp_status s = target_scores(j, &j->rules[g->rule], t, view, &scores, err);
    if (!s)
        s = sp_global_add(j->globals[g->rule], g->pass, tg->gslot, t->dtype, view, scores, t->ndim,
                          t->shape, err);
    free(scores);
    return s;
}

static sp_status run_globals(job *j, sp_error *err)
{
    sp_status s = SP_OK;
    j->globals = calloc(j->nrules, sizeof *j->globals);
    j->gmags = calloc(j->nrules, sizeof *j->gmags);
    if (!j->globals || !j->gmags)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    const int nt = sp_threads_default(j->threads);
    for (size_t r = 0; r < j->nrules; r++) {
        const sp_prune_rule *rule = &j->rules[r];
        if (!rule->global)
            continue;
        size_t count = 0;
        /* magnitudes of f32/f16/bf16: the exact histogram passes */
        bool mag = rule->pattern.kind == SP_PATTERN_UNSTRUCTURED && rule->score == SP_SCORE_MAGNITUDE;
        double sparsity = rule->sparsity;
        for (size_t k = 0; k < j->ntargets; k++)
            if (j->targets[k].rule == r && !j->targets[k].dup) {
                j->targets[k].gslot = count++;
                sp_dtype dt = sp_ckpt_tensor(j->ck, j->targets[k].tensor)->dtype;
                mag = mag && (dt == SP_F32 || dt == SP_F16 || dt == SP_BF16);
            }
        if (count == 0)
            continue;
        if (mag) {
            if ((s = sp__gmag_new(&j->gmags[r], sparsity, count, nt, err)))
                return s;
        } else if ((s = sp_global_new(&j->globals[r], &rule->pattern, sparsity, rule->bscore, count,
                                      err))) {
            return s;
        }
        for (int pass = 1; pass <= 2 && !s; pass++) {
            gpass g = {r, pass};
            s = each_target(j, mag ? nt : 1, want_global, mag ? gmag_fn : global_fn, &g, err);
            if (!s && mag)
                s = pass == 1 ? sp__gmag_end1(j->gmags[r], err) : sp__gmag_end2(j->gmags[r], err);
        }
        /* from here on the selection is only read, from any thread */
        if (!s && !mag)
            s = sp__global_finish(j->globals[r], err);
        if (s)
            return s;
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
    float *scores = NULL;
    sp_status s = SP_OK;
    *mask = malloc((size_t)t->numel);
    const void *p = view_gather(t, storage, &owned);
    if (!*mask || !p) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((s = target_scores(j, rule, t, p, &scores, err)))
        goto out; /* the message names the tensor */
    if (rule->global && j->gmags[tg->rule]) {
        sp__tplan tp;
        s = sp__tplan_gmag(&tp, j->gmags[tg->rule], tg->gslot, p, t->dtype, t->ndim, t->shape, err);
        if (!s)
            sp__tplan_mask(&tp, p, *mask);
        sp__tplan_release(&tp);
    } else if (rule->global && j->globals[tg->rule])
        s = sp_global_mask(j->globals[tg->rule], tg->gslot, *mask, t->dtype, p, scores, t->ndim,
                           t->shape, err);
    else if (scores && rule->pattern.kind == SP_PATTERN_UNSTRUCTURED &&
             rule->group == SP_SCORE_GROUP_ROW)
        s = sp_mask_select_rows(*mask, t->dtype, p, scores, t->ndim, t->shape, tg->sparsity, err);
    else
        s = sp_mask_select(*mask, t->dtype, p, scores, t->ndim, t->shape, &rule->pattern,
                           tg->sparsity, rule->bscore, err);
    if (s)
        sp_error_prefix(err, "tensor '%s'", t->name);
out:
    free(scores);
    free(owned);
    if (s) {
        free(*mask);
        *mask = NULL;
    }
    return s;
}

/* ---- the rewrite: sp_ckpt_rewrite_par callbacks ----
 *
 * A storage with one distinct target whose view is contiguous (every
 * weight of a safetensors file or a Hugging Face folder, most torch
 * storages) is "fused": prepare plans the target (prune/tensor.c: a
 * histogram cut, N:M, blocks or a mask), and each chunk is pruned straight
 * from the input into the output, the storage's other bytes copied. Any
 * other touched storage (several targets, strided views) is computed whole
 * in prepare, and its chunks are copied from that. */

static bool rw_touches(void *ctx, size_t storage)
{
    job *j = ctx;
    return j->plans[storage].first != SIZE_MAX;
}

static uint64_t rw_chunk_unit(void *ctx, size_t storage)
{
    job *j = ctx;
    const splan *sp = &j->plans[storage];
    if (!sp->fused)
        return 0;
    const target *tg = &j->targets[sp->first];
    const sp_tensor *t = sp_ckpt_tensor(j->ck, tg->tensor);
    const sp_pattern *pat = &j->rules[tg->rule].pattern;
    uint64_t es = sp_dtype_size(t->dtype), unit = es;
    sp_wgeom g;
    sp_wgeom_init(&g, t->ndim, t->shape);
    if (!j->rules[tg->rule].global && pat->kind == SP_PATTERN_NM)
        unit = (uint64_t)g.cols * es;
    else if (!j->rules[tg->rule].global && pat->kind == SP_PATTERN_BLOCK)
        unit = (uint64_t)(pat->r < g.rows ? pat->r : g.rows) * (uint64_t)g.cols * es;
    /* chunks are cut from the storage's start: they must fall on units */
    return unit && sp->off % unit == 0 ? unit : 0;
}

static sp_status rw_prepare(void *ctx, size_t storage, const void *orig, sp_error *err)
{
    job *j = ctx;
    splan *sp = &j->plans[storage];
    sp_ckpt *ck = j->ck;
    sp_status s = SP_OK;
    if (sp->fused) {
        const target *tg = &j->targets[sp->first];
        const sp_tensor *t = sp_ckpt_tensor(ck, tg->tensor);
        const sp_prune_rule *rule = &j->rules[tg->rule];
        const unsigned char *src = (const unsigned char *)orig + sp->off;
        if (rule->global && j->gmags[tg->rule])
            s = sp__tplan_gmag(&sp->tp, j->gmags[tg->rule], tg->gslot, src, t->dtype, t->ndim,
                               t->shape, err);
        else if (rule->global && j->globals[tg->rule])
            s = sp__tplan_global(&sp->tp, j->globals[tg->rule], tg->gslot, src, t->dtype, t->ndim,
                                 t->shape, err);
        else
            s = sp__tplan_init(&sp->tp, src, t->dtype, t->ndim, t->shape, &rule->pattern,
                               tg->sparsity, rule->bscore, err);
        if (s)
            sp_error_prefix(err, "tensor '%s'", t->name);
        return s;
    }
    /* several targets, or strided views: the whole storage, here */
    uint64_t nb = sp_ckpt_storage(ck, storage)->nbytes;
    if (!(sp->whole = malloc((size_t)nb ? (size_t)nb : 1)))
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory (%llu bytes)", (unsigned long long)nb);
    memcpy(sp->whole, orig, (size_t)nb);
    for (size_t k = sp->first; k < j->ntargets && !s; k++) {
        target *tg = &j->targets[k];
        const sp_tensor *t = sp_ckpt_tensor(ck, tg->tensor);
        if (t->storage != storage)
            continue;
        sp_prune_entry *e = &j->rep->entries[tg->entry];
        e->zeros_before = view_zeros(t, orig);
        if (!tg->dup) {
            uint8_t *mask;
            if ((s = target_mask(j, tg, sp->whole, &mask, err)))
                break;
            view_apply(t, sp->whole, mask);
            free(mask);
        }
        e->zeros_after = view_zeros(t, sp->whole);
    }
    return s;
}

static sp_status rw_emit(void *ctx, size_t storage, const void *orig, uint64_t off, uint64_t len,
                         void *out, sp_error *err)
{
    job *j = ctx;
    splan *sp = &j->plans[storage];
    if (!sp->fused) {
        memcpy(out, sp->whole + off, (size_t)len);
        return SP_OK;
    }
    const unsigned char *in = orig;
    unsigned char *o = out;
    /* the target's part of [off, off + len); the rest is copied */
    uint64_t a = off > sp->off ? off : sp->off;
    uint64_t b = off + len < sp->off + sp->len ? off + len : sp->off + sp->len;
    if (a >= b) {
        memcpy(o, in + off, (size_t)len);
        return SP_OK;
    }
    if (a > off)
        memcpy(o, in + off, (size_t)(a - off));
    if (b < off + len)
        memcpy(o + (b - off), in + b, (size_t)(off + len - b));
    const size_t es = sp->tp.es;
    sp__prune_stats ps = {0};
    sp_status s = sp__tplan_apply(&sp->tp, o + (a - off), in + a, (size_t)((a - sp->off) / es),
                                  (size_t)((b - sp->off) / es), &ps, err);
    if (s) {
        sp_error_prefix(err, "tensor '%s'",
                        sp_ckpt_tensor(j->ck, j->targets[sp->first].tensor)->name);
        return s;
    }
    atomic_fetch_add(&sp->zeros_before, ps.zeros_before);
    atomic_fetch_add(&sp->zeros_after, ps.zeros_after);
    return SP_OK;
}

static sp_status rw_finish(void *ctx, size_t storage, sp_error *err)
{
    job *j = ctx;
    splan *sp = &j->plans[storage];
    (void)err;
    if (sp->fused) {
        /* the target and its tied copies (same view) */
        for (size_t k = sp->first; k < j->ntargets; k++) {
            const target *o = &j->targets[k];
            if (sp_ckpt_tensor(j->ck, o->tensor)->storage != storage)
                continue;
            sp_prune_entry *e = &j->rep->entries[o->entry];
            e->zeros_before = atomic_load(&sp->zeros_before);
            e->zeros_after = atomic_load(&sp->zeros_after);
        }
        sp__tplan_release(&sp->tp);
    }
    free(sp->whole);
    sp->whole = NULL;
    return SP_OK;
}

/* Which storages are touched, and how (see above). */
static sp_status plan_storages(job *j, sp_error *err)
{
    sp_ckpt *ck = j->ck;
    size_t ns = sp_ckpt_num_storages(ck);
    j->plans = calloc(ns ? ns : 1, sizeof *j->plans);
    if (!j->plans)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t s = 0; s < ns; s++)
        j->plans[s].first = SIZE_MAX;
    size_t *nprimary = calloc(ns ? ns : 1, sizeof *nprimary);
    if (!nprimary)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < j->ntargets; k++) {
        size_t s = sp_ckpt_tensor(ck, j->targets[k].tensor)->storage;
        if (j->plans[s].first == SIZE_MAX)
            j->plans[s].first = k;
        nprimary[s] += !j->targets[k].dup;
    }
    for (size_t s = 0; s < ns; s++) {
        splan *sp = &j->plans[s];
        if (sp->first == SIZE_MAX)
            continue;
        const sp_tensor *t = sp_ckpt_tensor(ck, j->targets[sp->first].tensor);
        /* (magnitudes only: the plans compute no other scores) */
        sp->fused = nprimary[s] == 1 && !j->targets[sp->first].dup && sp_tensor_is_contiguous(t) &&
                    j->rules[j->targets[sp->first].rule].score == SP_SCORE_MAGNITUDE;
        sp->off = (uint64_t)t->offset * sp_dtype_size(t->dtype);
        sp->len = (uint64_t)t->numel * sp_dtype_size(t->dtype);
        atomic_init(&sp->zeros_before, 0);
        atomic_init(&sp->zeros_after, 0);
    }
    free(nprimary);
    return SP_OK;
}

/* The rewrite's progress on top of what the global passes did. */
static void rw_progress(void *ctx, uint64_t done, uint64_t total)
{
    job *j = ctx;
    if (j->progress)
        j->progress(j->pctx, j->done + done, j->done + total);
}

/* Dry run: the zeros each target has now. */
static sp_status zeros_fn(job *j, target *tg, const sp_tensor *t, const void *view, int worker,
                          void *arg, sp_error *err)
{
    sp_prune_entry *e = &j->rep->entries[tg->entry];
    (void)worker;
    (void)arg;
    (void)err;
    e->zeros_before = e->zeros_after = sp_count_zeros(t->dtype, view, (size_t)t->numel);
    return SP_OK;
}

static sp_status count_zeros(job *j, sp_error *err)
{
    return each_target(j, j->threads, want_any, zeros_fn, NULL, err);
}

static void job_release(job *j)
{
    if (j->plans)
        for (size_t s = 0; s < sp_ckpt_num_storages(j->ck); s++) {
            sp__tplan_release(&j->plans[s].tp);
            free(j->plans[s].whole);
        }
    free(j->plans);
    for (size_t r = 0; j->by_name && r < j->nrules; r++)
        free(j->by_name[r]);
    free(j->by_name);
    if (j->globals)
        for (size_t r = 0; r < j->nrules; r++)
            sp_global_free(j->globals[r]);
    if (j->gmags)
        for (size_t r = 0; r < j->nrules; r++)
            sp__gmag_free(j->gmags[r]);
    free(j->globals);
    free(j->gmags);
    free(j->targets);
}

sp_status sp_prune_ckpt(sp_ckpt *ck, const char *out_path, const sp_prune_rule *rules,
                        size_t nrules, const sp_prune_options *opt, sp_prune_report *rep,
                        sp_error *err)
{
    job j = {.ck = ck, .rules = rules, .nrules = nrules, .rep = rep};
    bool dry = opt && opt->dry_run;
    if (opt) {
        j.progress = opt->progress;
        j.pctx = opt->progress_ctx;
        j.threads = opt->threads;
        j.norms = opt->norms;
    }
    memset(rep, 0, sizeof *rep);
    sp_status s = resolve(&j, err);
    if (!s) {
        for (size_t k = 0; k < j.ntargets; k++) {
            const sp_tensor *t = sp_ckpt_tensor(ck, j.targets[k].tensor);
            uint64_t b = (uint64_t)t->numel * sp_dtype_size(t->dtype);
            j.total += dry ? b : rules[j.targets[k].rule].global && !j.targets[k].dup ? 2 * b : 0;
        }
        for (size_t i = 0; !dry && i < sp_ckpt_num_storages(ck); i++)
            j.total += sp_ckpt_storage(ck, i)->nbytes;
    }
    if (!s && !dry)
        s = check_norms(&j, err);
    if (!s && dry)
        s = count_zeros(&j, err);
    if (!s && !dry)
        s = run_globals(&j, err);
    if (!s && !dry)
        s = plan_storages(&j, err);
    if (!s && !dry) {
        sp_rewrite_ops ops = {
            .ctx = &j,
            .touches = rw_touches,
            .chunk_unit = rw_chunk_unit,
            .prepare = rw_prepare,
            .emit = rw_emit,
            .finish = rw_finish,
            .threads = j.threads,
            .progress = rw_progress,
            .progress_ctx = &j,
        };
        s = sp_ckpt_rewrite_par(ck, out_path, &ops, err);
    }
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

static sp_status check_fn(job *j, target *tg, const sp_tensor *t, const void *view, int worker,
                          void *arg, sp_error *err)
{
    sp_prune_entry *e = &j->rep->entries[tg->entry];
    double measured = 0;
    (void)worker;
    (void)arg;
    (void)err;
    e->zeros_before = e->zeros_after = sp_count_zeros(t->dtype, view, (size_t)t->numel);
    e->ok = sp_mask_check(t->dtype, view, t->ndim, t->shape, &j->rules[tg->rule].pattern,
                          tg->sparsity, &measured, e->violation, sizeof e->violation);
    return SP_OK;
}

sp_status sp_prune_check(sp_ckpt *ck, const sp_prune_rule *rules, size_t nrules,
                         const sp_prune_options *opt, sp_prune_report *rep, sp_error *err)
{
    job j = {.ck = ck, .rules = rules, .nrules = nrules, .rep = rep};
    if (opt) {
        j.progress = opt->progress;
        j.pctx = opt->progress_ctx;
        j.threads = opt->threads;
    }
    memset(rep, 0, sizeof *rep);
    sp_status s = resolve(&j, err);
    for (size_t k = 0; !s && k < j.ntargets; k++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, j.targets[k].tensor);
        j.total += (uint64_t)t->numel * sp_dtype_size(t->dtype);
    }
    if (!s)
        s = each_target(&j, j.threads, want_any, check_fn, NULL, err);
    bool all_ok = true;
    for (size_t k = 0; !s && k < rep->n; k++) {
        all_ok = all_ok && rep->entries[k].ok;
        rep->zeros_before += rep->entries[k].zeros_before;
        rep->zeros_after += rep->entries[k].zeros_after;
    }
    job_release(&j);
    if (s) {
        sp_prune_report_release(rep);
        return s;
    }
    return all_ok ? SP_OK : SP_ERR_CHECK;
}
