/*
 * Global scope: one threshold across many tensors with an exact count.
 *
 * Units are ordered by (key, tensor index, unit index) - see internal.h.
 * Pass 1 builds a histogram of the top 20 bits of every unit's key, which
 * tells the bucket that holds the k-th unit. Pass 2 collects only that
 * bucket's units (key, tensor, index); sorting those few gives the exact
 * threshold triple. A unit is pruned iff its triple is <= the threshold.
 * Memory: the 2^20-bin histogram, the boundary bucket, and one tensor's keys
 * at a time.
 */
#include <stdlib.h>
#include <string.h>

#include "prune/internal.h"

#define HBITS 20
#define HSHIFT (64 - HBITS)

typedef struct cand {
    uint64_t key;
    uint64_t tensor;
    uint64_t index;
} cand;

struct sp_global {
    sp_pattern pattern;
    double sparsity;
    sp_block_score bscore;
    size_t ntensors;
    int state;           /* 1: pass 1, 2: pass 2, 3: threshold known */
    size_t *units;       /* per tensor, from pass 1 */
    uint8_t *seen;       /* per tensor: pass bits seen */
    size_t seen1, seen2; /* tensors seen in pass 1 / 2 */
    size_t total, nzero, k;
    uint64_t *hist;
    uint64_t bucket; /* boundary bucket */
    size_t need;     /* how many of the bucket's units are pruned */
    cand *cands;
    size_t ncands, cap;
    cand thr; /* pruned iff (key, tensor, index) <= thr (when 0 < k < total) */
};

sp_status sp_global_new(sp_global **out, const sp_pattern *pattern, double sparsity,
                        sp_block_score bscore, size_t ntensors, sp_error *err)
{
    *out = NULL;
    if (pattern->kind == SP_PATTERN_NM)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "N:M patterns are per group, they cannot use a global threshold");
    if (!(sparsity >= 0.0 && sparsity <= 1.0))
        return sp_error_set(err, SP_ERR_INVALID_ARG, "sparsity %g is out of range [0, 1]", sparsity);
    sp_global *g = calloc(1, sizeof *g);
    if (!g)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    g->pattern = *pattern;
    g->sparsity = sparsity;
    g->bscore = bscore;
    g->ntensors = ntensors;
    g->state = 1;
    g->units = calloc(ntensors ? ntensors : 1, sizeof(size_t));
    g->seen = calloc(ntensors ? ntensors : 1, 1);
    g->hist = calloc((size_t)1 << HBITS, sizeof(uint64_t));
    if (!g->units || !g->seen || !g->hist) {
        sp_global_free(g);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    *out = g;
    return SP_OK;
}

void sp_global_free(sp_global *g)
{
    if (!g)
        return;
    free(g->units);
    free(g->seen);
    free(g->hist);
    free(g->cands);
    free(g);
}

/* End of pass 1: the exact count and the boundary bucket. */
static sp_status finish_pass1(sp_global *g, sp_error *err)
{
    if (g->seen1 != g->ntensors)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "global selection: pass 1 saw %zu of %zu tensors", g->seen1,
                            g->ntensors);
    g->k = sp__round_count(g->sparsity, g->total);
    if (g->k < g->nzero)
        g->k = g->nzero;
    if (g->k > 0 && g->k < g->total) {
        size_t cum = 0, b = 0;
        while (cum + g->hist[b] < g->k)
            cum += g->hist[b++];
        g->bucket = b;
        g->need = g->k - cum;
    }
    free(g->hist);
    g->hist = NULL;
    g->state = 2;
    return SP_OK;
}

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->tensor != y->tensor)
        return x->tensor < y->tensor ? -1 : 1;
    if (x->index != y->index)
        return x->index < y->index ? -1 : 1;
    return 0;
}

static sp_status finish_pass2(sp_global *g, sp_error *err)
{
    if (g->seen2 != g->ntensors)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "global selection: pass 2 saw %zu of %zu tensors", g->seen2,
                            g->ntensors);
    if (g->k > 0 && g->k < g->total) {
        if (g->ncands < g->need)
            return sp_error_set(err, SP_ERR_INVALID_ARG,
                                "global selection: tensors changed between passes");
        qsort(g->cands, g->ncands, sizeof(cand), cand_cmp);
        g->thr = g->cands[g->need - 1];
    }
    free(g->cands);
    g->cands = NULL;
    g->state = 3;
    return SP_OK;
}

static sp_status tensor_keys(sp_global *g, size_t tensor, uint64_t **keys, size_t *nunits,
                             size_t *nzero, sp_dtype dtype, const void *data, const float *scores,
                             int ndim, const int64_t *shape, sp_error *err)
{
    *nunits = sp__unit_count(ndim, shape, &g->pattern);
    *keys = malloc(sizeof(uint64_t) * (*nunits ? *nunits : 1));
    if (!*keys)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory (%zu units)", *nunits);
    if (!*nunits)
        return SP_OK;
    sp_status st = sp__unit_keys(*keys, nzero, dtype, data, scores, ndim, shape, &g->pattern,
                                 g->bscore, err);
    if (st) {
        free(*keys);
        *keys = NULL;
    }
    (void)tensor;
    return st;
}

sp_status sp_global_add(sp_global *g, int pass, size_t tensor, sp_dtype dtype, const void *data,
                        const float *scores, int ndim, const int64_t *shape, sp_error *err)
{
    sp_status st;
    if (tensor >= g->ntensors)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: tensor %zu of %zu",
                            tensor, g->ntensors);
    if (pass != 1 && pass != 2)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: pass %d", pass);
    if (pass == 1 && g->state != 1)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: pass 1 is over");
    if (pass == 2 && g->state == 1 && (st = finish_pass1(g, err)))
        return st;
    if (pass == 2 && g->state != 2)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: pass 2 is over");
    uint8_t bit = (uint8_t)pass;
    if (g->seen[tensor] & bit)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "global selection: tensor %zu added twice in pass %d", tensor, pass);

    uint64_t *keys;
    size_t n, nzero = 0;
    if ((st = tensor_keys(g, tensor, &keys, &n, &nzero, dtype, data, scores, ndim, shape, err)))
        return st;
    if (pass == 1) {
        g->units[tensor] = n;
        g->total += n;
        g->nzero += nzero;
        for (size_t i = 0; i < n; i++)
            g->hist[keys[i] >> HSHIFT]++;
        g->seen1++;
    } else {
        if (n != g->units[tensor]) {
            free(keys);
            return sp_error_set(err, SP_ERR_INVALID_ARG,
                                "global selection: tensor %zu has %zu units in pass 2, %zu in pass 1",
                                tensor, n, g->units[tensor]);
        }
        if (g->k > 0 && g->k < g->total) {
            for (size_t i = 0; i < n; i++) {
                if ((keys[i] >> HSHIFT) != g->bucket)
                    continue;
                if (g->ncands == g->cap) {
                    size_t nc = g->cap ? 2 * g->cap : 1024;
                    cand *c = realloc(g->cands, nc * sizeof(cand));
                    if (!c) {
                        free(keys);
                        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
                    }
                    g->cands = c;
                    g->cap = nc;
                }
                g->cands[g->ncands++] = (cand){keys[i], tensor, i};
            }
        }
        g->seen2++;
    }
    g->seen[tensor] |= bit;
    free(keys);
    return SP_OK;
}

sp_status sp_global_mask(sp_global *g, size_t tensor, uint8_t *mask, sp_dtype dtype,
                         const void *data, const float *scores, int ndim, const int64_t *shape,
                         sp_error *err)
{
    sp_status st;
    if (tensor >= g->ntensors)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: tensor %zu of %zu",
                            tensor, g->ntensors);
    if (g->state == 1)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: pass 2 has not run");
    if (g->state == 2 && (st = finish_pass2(g, err)))
        return st;
    uint64_t *keys;
    size_t n, nzero = 0;
    if ((st = tensor_keys(g, tensor, &keys, &n, &nzero, dtype, data, scores, ndim, shape, err)))
        return st;
    if (n != g->units[tensor]) {
        free(keys);
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "global selection: tensor %zu has %zu units, %zu in pass 1", tensor, n,
                            g->units[tensor]);
    }
    uint8_t *keep = mask;
    if (g->pattern.kind == SP_PATTERN_BLOCK && !(keep = malloc(n ? n : 1))) {
        free(keys);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    if (g->k == 0) {
        memset(keep, 1, n);
    } else if (g->k >= g->total) {
        memset(keep, 0, n);
    } else {
        const cand t = g->thr;
        for (size_t i = 0; i < n; i++) {
            uint64_t k = keys[i];
            bool pruned = k < t.key ||
                          (k == t.key && (tensor < t.tensor || (tensor == t.tensor && i <= t.index)));
            keep[i] = !pruned;
        }
    }
    if (keep != mask) {
        sp__block_mask_expand(mask, keep, ndim, shape, &g->pattern);
        free(keep);
    }
    free(keys);
    return SP_OK;
}
