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

#define PAR_MIN 65536

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


/* ---- f32 magnitudes: no key arrays ----
 * The key of an f32 element with absolute bit pattern a (internal.h) is
 * key_f32(a), strictly increasing in a. For a normal float its top HBITS
 * bits are (a >> 15) + GB_OFF: the double's sign flag, exponent (the float's
 * + 896) and top 8 mantissa bits. Zeros and subnormals are computed. */
#define GB_OFF ((1u << 19) + (896u << 8))
#define NB16 65536u

/* f32 cut: element i is pruned iff (|bits| of w[i]) < (i < split ? lo : hi). */
typedef struct cut32 {
    size_t split;
    uint32_t lo, hi; /* exclusive bounds on the absolute bit pattern, <= 2^31 */
} cut32;

static inline uint64_t key_f32(uint32_t a)
{
    if (!a)
        return 0;
    float f;
    memcpy(&f, &a, 4);
    return sp__score_key((double)f);
}

static inline uint64_t gbucket_f32(uint32_t a)
{
    if (a >= 0x00800000u)
        return (uint64_t)(a >> 15) + GB_OFF;
    return key_f32(a) >> HSHIFT;
}

static bool fast_f32(const sp_global *g, sp_dtype dtype, const float *scores, size_t n)
{
    return dtype == SP_F32 && !scores && g->pattern.kind == SP_PATTERN_UNSTRUCTURED &&
           n <= UINT32_MAX;
}

static sp_status add_f32(sp_global *g, int pass, size_t tensor, const uint32_t *w, size_t n,
                         sp_error *err)
{
    const int nt = n > PAR_MIN ? sp__nthreads() : 1;
    const size_t nc = (size_t)nt;
    int nan = 0, nomem = 0;
    if (pass == 1) {
        uint32_t *hist = calloc(nc * NB16, sizeof(uint32_t));
        if (!hist)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        size_t nz = 0, bad = 0;
        uint64_t *gh = g->hist;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static, 1) reduction(+ : nz, bad)
        for (size_t c = 0; c < nc; c++) {
            uint32_t *h = hist + c * NB16;
            size_t z = 0;
            for (size_t i = c * n / nc, e = (c + 1) * n / nc; i < e; i++) {
                uint32_t a = w[i] & 0x7fffffffu;
                h[a >> 15]++;
                z += a == 0;
                if (a < 0x00800000u && a) { /* subnormal: its own bucket */
                    uint64_t b = key_f32(a) >> HSHIFT;
#pragma omp atomic
                    gh[b]++;
                }
            }
            nz += z;
            for (size_t fb = 0x7f800000u >> 15; fb < NB16; fb++)
                bad += h[fb]; /* Inf, NaN */
        }
        if (bad) {
            free(hist);
            for (size_t i = 0; i < n && !nan; i++)
                nan |= (w[i] & 0x7fffffffu) > 0x7f800000u;
            return sp_error_set(err, SP_ERR_INVALID_ARG, "contains %s", nan ? "NaN" : "Inf");
        }
        /* normal floats: bucket = (a >> 15) + GB_OFF */
        for (size_t c = 0; c < nc; c++) {
            const uint32_t *h = hist + c * NB16;
            for (size_t fb = 0x00800000u >> 15; fb < (0x7f800000u >> 15); fb++)
                gh[fb + GB_OFF] += h[fb];
        }
        free(hist);
        gh[0] += nz;
        g->units[tensor] = n;
        g->total += n;
        g->nzero += nz;
        g->seen1++;
        return SP_OK;
    }
    if (n != g->units[tensor])
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "global selection: tensor %zu has %zu units in pass 2, %zu in pass 1",
                            tensor, n, g->units[tensor]);
    if (g->k > 0 && g->k < g->total) {
        cand **loc = calloc(nc, sizeof *loc);
        size_t *cnt = calloc(nc, sizeof *cnt);
        if (!loc || !cnt) {
            free(loc);
            free(cnt);
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        }
        const uint64_t B = g->bucket;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static, 1) reduction(| : nomem)
        for (size_t c = 0; c < nc; c++) {
            size_t m = 0, cap = 0;
            cand *v = NULL;
            for (size_t i = c * n / nc, e = (c + 1) * n / nc; i < e; i++) {
                uint32_t a = w[i] & 0x7fffffffu;
                if (gbucket_f32(a) != B)
                    continue;
                if (m == cap) {
                    size_t nc2 = cap ? 2 * cap : 1024;
                    cand *v2 = realloc(v, nc2 * sizeof(cand));
                    if (!v2) {
                        nomem = 1;
                        break;
                    }
                    v = v2;
                    cap = nc2;
                }
                v[m++] = (cand){key_f32(a), tensor, i};
            }
            loc[c] = v;
            cnt[c] = m;
        }
        size_t add = 0;
        for (size_t c = 0; c < nc; c++)
            add += cnt[c];
        if (!nomem && g->ncands + add > g->cap) {
            size_t cap = g->cap ? g->cap : 1024;
            while (cap < g->ncands + add)
                cap *= 2;
            cand *c2 = realloc(g->cands, cap * sizeof(cand));
            if (c2) {
                g->cands = c2;
                g->cap = cap;
            } else {
                nomem = 1;
            }
        }
        for (size_t c = 0; c < nc; c++) {
            if (!nomem && cnt[c])
                memcpy(g->cands + g->ncands, loc[c], cnt[c] * sizeof(cand));
            if (!nomem)
                g->ncands += cnt[c];
            free(loc[c]);
        }
        free(loc);
        free(cnt);
        if (nomem)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    g->seen2++;
    return SP_OK;
}

/* Smallest a in [0, 0x7f800000] with key_f32(a) >= K (0x7f800000 if none). */
static uint32_t first_ge(uint64_t K)
{
    uint32_t lo = 0, hi = 0x7f800000u;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (key_f32(mid) >= K)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* The cut of tensor `tensor` (n elements) under the final threshold. */
static void cut_f32(const sp_global *g, size_t tensor, size_t n, cut32 *c)
{
    if (g->k == 0) {
        *c = (cut32){n, 0, 0};
        return;
    }
    if (g->k >= g->total) {
        *c = (cut32){n, 0x80000000u, 0x80000000u};
        return;
    }
    const cand t = g->thr;
    uint32_t le = first_ge(t.key + 1), lt = first_ge(t.key);
    if (tensor < t.tensor)
        *c = (cut32){n, le, le};
    else if (tensor > t.tensor)
        *c = (cut32){n, lt, lt};
    else
        *c = (cut32){(size_t)t.index + 1, le, lt};
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

    size_t numel = sp__unit_count(ndim, shape, &g->pattern);
    if (fast_f32(g, dtype, scores, numel)) {
        if ((st = add_f32(g, pass, tensor, data, numel, err)))
            return st;
        g->seen[tensor] |= bit;
        return SP_OK;
    }
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
    size_t numel = sp__unit_count(ndim, shape, &g->pattern);
    if (fast_f32(g, dtype, scores, numel)) {
        if (numel != g->units[tensor])
            return sp_error_set(err, SP_ERR_INVALID_ARG,
                                "global selection: tensor %zu has %zu units, %zu in pass 1",
                                tensor, numel, g->units[tensor]);
        cut32 c;
        cut_f32(g, tensor, numel, &c);
        const uint32_t *w = data;
        const int nt = numel > PAR_MIN ? sp__nthreads() : 1;
#pragma omp parallel for simd num_threads(nt) if (nt > 1) schedule(static)
        for (size_t i = 0; i < numel; i++)
            mask[i] = (w[i] & 0x7fffffffu) >= (i < c.split ? c.lo : c.hi);
        return SP_OK;
    }
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

sp_status sp__global_finish(sp_global *g, sp_error *err)
{
    if (g->state == 1)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: pass 2 has not run");
    return g->state == 2 ? finish_pass2(g, err) : SP_OK;
}

sp_status sp__global_cut(sp_global *g, size_t tensor, const void *data, sp_dtype dtype,
                         size_t numel, uint64_t *split, uint64_t *lo, uint64_t *hi, sp_error *err)
{
    (void)data;
    if (tensor >= g->ntensors || g->state != 3 || !fast_f32(g, dtype, NULL, numel))
        return SP_ERR_UNSUPPORTED;
    if (numel != g->units[tensor])
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "global selection: tensor %zu has %zu units, %zu in pass 1", tensor,
                            numel, g->units[tensor]);
    cut32 c;
    cut_f32(g, tensor, numel, &c);
    *split = c.split;
    *lo = c.lo;
    *hi = c.hi;
    return SP_OK;
}
