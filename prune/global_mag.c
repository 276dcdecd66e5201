/*
 * Global magnitude selection over f32, f16 and bf16 tensors
 * (prune/internal.h, sp__gmag): the exact global threshold of
 * sp_global_* for unstructured magnitudes, in two passes whose per-tensor
 * work runs on any thread, without key arrays or sorting.
 *
 * Every element's magnitude is compared as its f32 absolute bit pattern
 * a32 (f16 and bf16 widen exactly; the order of a32 is the order of |w|).
 * Pass 1 counts a32 >> 15 into 2^16 buckets (one histogram per worker,
 * summed at the end), which gives the boundary bucket b holding the k-th
 * smallest magnitude. Pass 2 counts, per tensor, the low 15 bits of the
 * elements in bucket b, which gives the exact threshold T and how many
 * elements equal to T are pruned; walking the tensors in order with their
 * counts of T finds the tensor holding the last pruned tie, in which one
 * scan finds its index. Ties therefore go as everywhere else: the earlier
 * tensor first, then the lower index. Per tensor, the result is a cut in
 * the tensor's own keys (prune/tensor.c).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "prune/internal.h"
#include "prune/mask_ukernels.h"

#define NB 65536u
#define NL 32768u

typedef struct tcount {
    uint16_t low; /* low 15 bits of a32 */
    uint64_t n;
} tcount;

typedef struct tinfo {
    size_t numel;
    uint64_t zeros;
    tcount *in_b; /* pass 2: the tensor's elements in bucket b, by low bits */
    size_t nin_b;
    uint64_t ties; /* its elements equal to T */
    bool seen1, seen2;
} tinfo;

struct sp__gmag {
    double sparsity;
    size_t ntensors;
    int nworkers;
    uint64_t **whist; /* per worker: NB buckets (pass 1) */
    uint64_t **wlow;  /* per worker: NL low-bit counts (pass 2 scratch) */
    uint32_t *f16;    /* a16 -> a32 of f16 */
    tinfo *t;
    uint64_t total, k;
    uint32_t b, T;     /* boundary bucket, threshold a32 */
    size_t tstar;      /* the tensor holding the last pruned tie */
    uint64_t kstar;    /* ... which is its kstar-th element equal to T */
    int state;         /* 1 pass 1, 2 pass 2, 3 done; 0 nothing pruned or all */
    bool all;          /* k >= total: everything pruned */
};

static inline uint32_t f16_a32(uint16_t a)
{
    float f = sp_f16_to_f32(a);
    uint32_t u;
    memcpy(&u, &f, 4);
    return u & 0x7fffffffu;
}

sp_status sp__gmag_new(sp__gmag **out, double sparsity, size_t ntensors, int nworkers,
                       sp_error *err)
{
    *out = NULL;
    if (!(sparsity >= 0.0 && sparsity <= 1.0))
        return sp_error_set(err, SP_ERR_INVALID_ARG, "sparsity %g is out of range [0, 1]", sparsity);
    sp__gmag *g = calloc(1, sizeof *g);
    if (!g)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    g->sparsity = sparsity;
    g->ntensors = ntensors;
    g->nworkers = nworkers < 1 ? 1 : nworkers;
    g->state = 1;
    g->whist = calloc((size_t)g->nworkers, sizeof *g->whist);
    g->wlow = calloc((size_t)g->nworkers, sizeof *g->wlow);
    g->t = calloc(ntensors ? ntensors : 1, sizeof *g->t);
    g->f16 = malloc(NL * sizeof *g->f16);
    if (!g->whist || !g->wlow || !g->t || !g->f16) {
        sp__gmag_free(g);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    for (uint32_t a = 0; a < NL; a++)
        g->f16[a] = f16_a32((uint16_t)a);
    *out = g;
    return SP_OK;
}

void sp__gmag_free(sp__gmag *g)
{
    if (!g)
        return;
    for (int w = 0; g->whist && w < g->nworkers; w++)
        free(g->whist[w]);
    for (int w = 0; g->wlow && w < g->nworkers; w++)
        free(g->wlow[w]);
    for (size_t i = 0; g->t && i < g->ntensors; i++)
        free(g->t[i].in_b);
    free(g->whist);
    free(g->wlow);
    free(g->t);
    free(g->f16);
    free(g);
}

static sp_status bad_value(sp_error *err, bool nan)
{
    return sp_error_set(err, SP_ERR_INVALID_ARG, "contains %s", nan ? "NaN" : "Inf");
}

sp_status sp__gmag_pass1(sp__gmag *g, size_t i, int worker, sp_dtype dt, const void *data,
                         size_t n, sp_error *err)
{
    if (i >= g->ntensors || worker < 0 || worker >= g->nworkers || g->state != 1 || g->t[i].seen1)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: bad pass 1 call");
    if (!g->whist[worker] && !(g->whist[worker] = calloc(NB, sizeof **g->whist)))
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    uint64_t *H = g->whist[worker], zeros = 0;
    if (dt == SP_F32) {
        const uint32_t *w = data;
        uint32_t *t = calloc(NB, sizeof *t);
        if (!t)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        uint64_t bad = 0;
        for (size_t c0 = 0; c0 < n; c0 += (size_t)1 << 30) {
            size_t c1 = n - c0 > ((size_t)1 << 30) ? c0 + ((size_t)1 << 30) : n;
            for (size_t j = c0; j < c1; j++) {
                uint32_t a = w[j] & 0x7fffffffu;
                t[a >> 15]++;
                zeros += a == 0;
            }
            for (size_t b = 0x7f800000u >> 15; b < NB; b++)
                bad += t[b];
            for (size_t b = 0; b < NB; b++) {
                H[b] += t[b];
                t[b] = 0;
            }
        }
        free(t);
        if (bad) {
            bool nan = false;
            for (size_t j = 0; j < n && !nan; j++)
                nan = (w[j] & 0x7fffffffu) > 0x7f800000u;
            return bad_value(err, nan);
        }
    } else {
        uint64_t *h = calloc(NL, sizeof *h);
        if (!h)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        sp_status s = sp__hist16(data, n, h, err);
        uint32_t expm = dt == SP_F16 ? 0x7c00u : 0x7f80u;
        uint64_t nan = 0;
        for (uint32_t a = expm + 1; a < NL; a++)
            nan += h[a];
        if (!s && (nan || h[expm]))
            s = bad_value(err, nan != 0);
        if (s) {
            free(h);
            return s;
        }
        for (uint32_t a = 0; a < NL; a++)
            if (h[a])
                H[(dt == SP_F16 ? g->f16[a] : a << 16) >> 15] += h[a];
        zeros = h[0];
        free(h);
    }
    g->t[i].numel = n;
    g->t[i].zeros = zeros;
    g->t[i].seen1 = true;
    return SP_OK;
}

sp_status sp__gmag_end1(sp__gmag *g, sp_error *err)
{
    uint64_t nz = 0;
    g->total = 0;
    for (size_t i = 0; i < g->ntensors; i++) {
        if (!g->t[i].seen1)
            return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: pass 1 missed tensor %zu", i);
        g->total += g->t[i].numel;
        nz += g->t[i].zeros;
    }
    g->k = sp__round_count(g->sparsity, g->total);
    if (g->k < nz)
        g->k = nz; /* elements that are already zero stay zero */
    if (g->k == 0 || g->k >= g->total) {
        g->all = g->k >= g->total && g->total;
        g->state = 0;
        return SP_OK;
    }
    uint64_t cum = 0;
    uint32_t b = 0;
    for (;; b++) {
        uint64_t hb = 0;
        for (int w = 0; w < g->nworkers; w++)
            hb += g->whist[w] ? g->whist[w][b] : 0;
        if (cum + hb >= g->k || b + 1 == NB)
            break;
        cum += hb;
    }
    g->b = b;
    g->kstar = g->k - cum; /* of bucket b, how many are pruned (for now) */
    for (int w = 0; w < g->nworkers; w++) {
        free(g->whist[w]);
        g->whist[w] = NULL;
    }
    g->state = 2;
    return SP_OK;
}

sp_status sp__gmag_pass2(sp__gmag *g, size_t i, int worker, sp_dtype dt, const void *data,
                         size_t n, sp_error *err)
{
    if (g->state == 0)
        return SP_OK;
    if (i >= g->ntensors || worker < 0 || worker >= g->nworkers || g->state != 2 ||
        g->t[i].seen2 || n != g->t[i].numel)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: bad pass 2 call");
    if (!g->wlow[worker] && !(g->wlow[worker] = calloc(NL, sizeof **g->wlow)))
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    uint64_t *L = g->wlow[worker];
    const uint32_t b = g->b;
    if (dt == SP_F32) {
        const uint32_t *w = data;
        for (size_t j = 0; j < n; j++) {
            uint32_t a = w[j] & 0x7fffffffu;
            if ((a >> 15) == b)
                L[a & 0x7fffu]++;
        }
    } else if (dt == SP_BF16) {
        /* a32 = a16 << 16: bucket b holds one a16 (b even), low bits 0 */
        if (!(b & 1))
            L[0] += sp_mask_ukernels_get()->count_eq16(data, n, (uint16_t)(b >> 1));
    } else {
        const uint16_t *w = data;
        for (size_t j = 0; j < n; j++) {
            uint32_t a = g->f16[w[j] & 0x7fffu];
            if ((a >> 15) == b)
                L[a & 0x7fffu]++;
        }
    }
    /* keep the nonzero counts (few: bucket b is narrow) */
    size_t nv = 0;
    for (uint32_t lo = 0; lo < NL; lo++)
        nv += L[lo] != 0;
    tcount *v = malloc((nv ? nv : 1) * sizeof *v);
    if (!v)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    nv = 0;
    for (uint32_t lo = 0; lo < NL; lo++)
        if (L[lo]) {
            v[nv++] = (tcount){(uint16_t)lo, L[lo]};
            L[lo] = 0;
        }
    g->t[i].in_b = v;
    g->t[i].nin_b = nv;
    g->t[i].seen2 = true;
    return SP_OK;
}

sp_status sp__gmag_end2(sp__gmag *g, sp_error *err)
{
    if (g->state == 0) {
        g->state = 3;
        return SP_OK;
    }
    uint64_t *h = calloc(NL, sizeof *h);
    if (!h)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->ntensors; i++) {
        if (!g->t[i].seen2) {
            free(h);
            return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: pass 2 missed tensor %zu", i);
        }
        for (size_t k = 0; k < g->t[i].nin_b; k++)
            h[g->t[i].in_b[k].low] += g->t[i].in_b[k].n;
    }
    uint64_t cum = 0, need = g->kstar;
    uint32_t lo = 0;
    while (lo + 1 < NL && cum + h[lo] < need)
        cum += h[lo++];
    free(h);
    g->T = (g->b << 15) | lo;
    need -= cum; /* ties at T that are pruned, earlier tensors first */
    g->tstar = g->ntensors;
    for (size_t i = 0; i < g->ntensors; i++) {
        for (size_t k = 0; k < g->t[i].nin_b; k++)
            if (g->t[i].in_b[k].low == lo)
                g->t[i].ties = g->t[i].in_b[k].n;
        free(g->t[i].in_b);
        g->t[i].in_b = NULL;
        if (g->tstar == g->ntensors) {
            if (g->t[i].ties >= need) {
                g->tstar = i;
                g->kstar = need;
            } else {
                need -= g->t[i].ties;
            }
        }
    }
    if (g->tstar == g->ntensors)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: tensors changed between passes");
    g->state = 3;
    return SP_OK;
}

/* The smallest key of dtype dt whose a32 is >= lim (lim <= 2^31). */
static uint64_t own_limit(const sp__gmag *g, sp_dtype dt, uint64_t lim)
{
    if (dt == SP_F32)
        return lim;
    if (dt == SP_BF16)
        return (lim + 0xffffu) >> 16;
    uint32_t lo = 0, hi = NL; /* f16: a32 grows with a16 */
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (g->f16[mid] >= lim)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

sp_status sp__gmag_cut(const sp__gmag *g, size_t i, sp_dtype dt, const void *data, size_t n,
                       uint64_t *split, uint64_t *lo, uint64_t *hi, sp_error *err)
{
    if (g->state != 3 || i >= g->ntensors || n != g->t[i].numel)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "global selection: tensor %zu is not ready", i);
    *split = n;
    if (g->k == 0) {
        *lo = *hi = 0;
        return SP_OK;
    }
    if (g->all) {
        *lo = *hi = dt == SP_F32 ? 0x80000000u : 0x8000u;
        return SP_OK;
    }
    uint64_t le = own_limit(g, dt, (uint64_t)g->T + 1), lt = own_limit(g, dt, g->T);
    if (i < g->tstar) {
        *lo = *hi = le;
    } else if (i > g->tstar) {
        *lo = *hi = lt;
    } else {
        /* own key of T: every a32 == T here came from one own key */
        uint32_t Town = (uint32_t)lt;
        *split = sp__nth_equal(sp_mask_ukernels_get(), data, dt == SP_F32 ? 4 : 2, n, Town,
                               g->kstar) + 1;
        *lo = le;
        *hi = lt;
    }
    return SP_OK;
}
