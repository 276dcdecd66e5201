/*
 * Per-layer sparsities from sensitivity curves (sensitivity.h,
 * sp_sparsity_allocate): lower convex hulls, then the cheapest damage per
 * pruned weight first. Plain C, no libtorch.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/sensitivity.h"

typedef struct seg {
    double price;  /* damage per pruned weight */
    double weights; /* weights the segment prunes */
    size_t layer, idx;
} seg;

static int seg_cmp(const void *a, const void *b)
{
    const seg *x = a, *y = b;
    if (x->price != y->price)
        return x->price < y->price ? -1 : 1;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* Is b on or above the segment a-c (so not a vertex of the lower hull)? */
static bool above(double ax, double ay, double bx, double by, double cx, double cy)
{
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax) <= 0.0;
}

sp_status sp_sparsity_allocate(const sp_alloc_curve *layers, size_t n, double target, double *out,
                               sp_error *err)
{
    if (!(target >= 0.0 && target <= 1.0))
        return sp_error_set(err, SP_ERR_INVALID_ARG, "target sparsity %g is out of range [0, 1]",
                            target);
    double total = 0.0, reach = 0.0;
    size_t maxseg = 0;
    for (size_t l = 0; l < n; l++) {
        const sp_alloc_curve *c = &layers[l];
        if (c->numel <= 0 || c->n == 0)
            return sp_error_set(err, SP_ERR_INVALID_ARG, "layer %zu: no weights or no points", l);
        for (size_t i = 0; i < c->n; i++) {
            double s = c->sparsity[i], prev = i ? c->sparsity[i - 1] : 0.0;
            if (!(s > prev && s <= 1.0))
                return sp_error_set(err, SP_ERR_INVALID_ARG,
                                    "layer %zu: sparsities must ascend in (0, 1] (%g after %g)", l,
                                    s, prev);
            if (!isfinite(c->damage[i]))
                return sp_error_set(err, SP_ERR_INVALID_ARG,
                                    "layer %zu: the metric at sparsity %g is not finite", l, s);
        }
        total += (double)c->numel;
        reach += c->sparsity[c->n - 1] * (double)c->numel;
        maxseg += c->n;
    }
    const double budget = floor(target * total + 0.5);
    if (budget > reach + 1e-6)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "target sparsity %g is above what the measured sparsities reach "
                            "(%.4f overall: every layer at its largest)",
                            target, total > 0 ? reach / total : 0.0);
    seg *segs = malloc((maxseg ? maxseg : 1) * sizeof *segs);
    size_t *hull = malloc((maxseg + n + 1) * sizeof *hull);
    double *x = calloc(n ? n : 1, sizeof *x);
    if (!segs || !hull || !x) {
        free(segs);
        free(hull);
        free(x);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    size_t nseg = 0;
    for (size_t l = 0; l < n; l++) {
        const sp_alloc_curve *c = &layers[l];
        /* point 0 is (0, 0); point i + 1 is measured point i */
#define PX(i) ((i) ? c->sparsity[(i) - 1] : 0.0)
#define PY(i) ((i) ? c->damage[(i) - 1] : 0.0)
        size_t h = 0;
        for (size_t i = 0; i <= c->n; i++) {
            while (h >= 2 && above(PX(hull[h - 2]), PY(hull[h - 2]), PX(hull[h - 1]),
                                   PY(hull[h - 1]), PX(i), PY(i)))
                h--;
            hull[h++] = i;
        }
        for (size_t k = 0; k + 1 < h; k++) {
            const double w = (PX(hull[k + 1]) - PX(hull[k])) * (double)c->numel;
            segs[nseg++] = (seg){(PY(hull[k + 1]) - PY(hull[k])) / w, w, l, k};
        }
#undef PX
#undef PY
    }
    qsort(segs, nseg, sizeof *segs, seg_cmp);
    /* convex hulls: each layer's prices rise, so its segments come in order */
    double left = budget;
    for (size_t i = 0; i < nseg && left > 0.0; i++) {
        const double take = segs[i].weights < left ? segs[i].weights : left;
        x[segs[i].layer] += take;
        left -= take;
    }
    /* whole weights summing to the budget: floors, then the largest
     * remainders (ties: the earlier layer) */
    double assigned = 0.0;
    for (size_t l = 0; l < n; l++) {
        double f = floor(x[l] + 1e-9);
        if (f > (double)layers[l].numel)
            f = (double)layers[l].numel;
        out[l] = f;
        x[l] -= f; /* the remainder */
        assigned += f;
    }
    for (double deficit = budget - assigned; deficit >= 0.5;) {
        size_t best = n;
        for (size_t l = 0; l < n; l++)
            if (out[l] < (double)layers[l].numel && x[l] > 1e-12 &&
                (best == n || x[l] > x[best]))
                best = l;
        if (best == n)
            break;
        out[best] += 1.0;
        x[best] = 0.0;
        deficit -= 1.0;
    }
    for (size_t l = 0; l < n; l++)
        out[l] /= (double)layers[l].numel;
    free(segs);
    free(hull);
    free(x);
    return SP_OK;
}
