/*
 * sparsify — pruning sensitivity analysis (docs/pruning.md, "Sensitivity"):
 * how much each layer of a TorchScript model can be pruned before the loss
 * moves, and per-layer sparsities that reach an overall target where it
 * moves least.
 *
 * sp_sensitivity prunes one weight at a time to each sparsity of a list (in
 * memory: the model file is only read), runs the model on labelled data and
 * measures the loss (cross-entropy for class labels, else mean squared
 * error) and the accuracy. A Linear weight runs pruned through the sparse
 * operator (bridge/linear.h; the layer is rewritten once, each sparsity
 * swaps in its packed weight), so the analysis itself runs on the sparse
 * kernels; another weight (a convolution) is masked in place and restored.
 * Masks are sparsify's own (prune.h: magnitude, exact counts), so a layer
 * pruned later by `sparsify prune` is the layer measured here.
 *
 * sp_sparsity_allocate turns the measured curves into per-layer sparsities
 * (plain C, no libtorch): see its comment for the rule.
 */
#ifndef SPARSIFY_BRIDGE_SENSITIVITY_H
#define SPARSIFY_BRIDGE_SENSITIVITY_H

#include "sparsify/prune.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_sens_opts {
    const char *model;          /* TorchScript archive */
    const char *data;           /* CSV, .pt or .safetensors with labels */
    const char *label_column;   /* CSV: header name or index; NULL: the last column */
    const double *sparsities;   /* ascending in (0, 1]; NULL: SP_SENS_DEFAULT */
    size_t nsparsities;
    sp_pattern pattern;         /* N:M: its one sparsity, 1 - N/M */
    sp_block_score bscore;
    const sp_selector *selector; /* which weights; NULL: the defaults of prune */
    int64_t batch_size;         /* rows per forward; default 256 */
    int threads;                /* 0: libtorch's */
} sp_sens_opts;

/* 0.5, 0.7, 0.8, 0.9, 0.95, 0.98 */
#define SP_SENS_NDEFAULT 6
extern const double sp_sens_default_sparsities[SP_SENS_NDEFAULT];

void sp_sens_opts_init(sp_sens_opts *o);

typedef struct sp_sens_point {
    double target;   /* the sparsity asked */
    double sparsity; /* zeros / numel after pruning */
    double loss;
    double accuracy; /* -1 without class labels */
} sp_sens_point;

typedef struct sp_sens_layer {
    char *name;         /* the weight, "fc1.weight" */
    char **aliases;     /* other names of the same tensor (a shared weight) */
    size_t naliases;
    int ndim;
    int64_t shape[SP_MAX_DIMS];
    int64_t numel;
    bool sparse_op;     /* measured through the sparse operator */
    sp_sens_point *points; /* one per sparsity */
    size_t npoints;
} sp_sens_layer;

typedef struct sp_sens_result {
    int64_t samples;
    bool classification; /* loss: cross-entropy, accuracy known; else MSE */
    double base_loss, base_accuracy;
    sp_sens_layer *layers; /* in the order the model lists its parameters */
    size_t n;
    size_t runs;           /* forward passes over the data */
    double seconds;        /* wall time of the analysis (the pruned runs) */
} sp_sens_result;

/* Run the analysis. Errors (naming the file, layer or option):
 * SP_ERR_NOT_FOUND / SP_ERR_IO / SP_ERR_FORMAT (files), SP_ERR_INVALID_ARG
 * (data without labels or that does not fit the model, no weight selected,
 * bad sparsities), SP_ERR_INTERNAL (libtorch failed). */
sp_status sp_sensitivity(const sp_sens_opts *o, sp_sens_result *res, sp_error *err);
void sp_sens_result_release(sp_sens_result *res);

/*
 * Per-layer sparsities for an overall target. Layer l has numel[l] weights
 * and a damage curve: damage d at sparsity s for each measured point (the
 * metric's change from the dense model: loss - loss0, or accuracy0 -
 * accuracy), plus (0, 0). The rule:
 *
 *   1. each curve is replaced by its lower convex hull (piecewise linear
 *      between measured points, convex: the cheapest damage reachable by
 *      mixing measured sparsities);
 *   2. the hull's segments are prices: damage per pruned weight,
 *      (d1 - d0) / ((s1 - s0) * numel);
 *   3. segments are bought cheapest first across all layers (ties: the
 *      earlier layer) until round(target * sum numel) weights are pruned;
 *      the last segment is bought in part.
 *
 * This minimises the summed (convexified) damage under the weight budget,
 * the additive model a one-layer-at-a-time analysis supports. No layer
 * goes beyond its largest measured sparsity. out[l] = k_l / numel[l] with
 * integer k_l summing exactly to the budget (largest remainders). Errors:
 * SP_ERR_INVALID_ARG (target out of [0, 1] or above what the measured
 * sparsities reach; points not ascending in (0, 1]; non-finite damage).
 */
typedef struct sp_alloc_curve {
    int64_t numel;
    size_t n;               /* points, ascending sparsity */
    const double *sparsity;
    const double *damage;
} sp_alloc_curve;
sp_status sp_sparsity_allocate(const sp_alloc_curve *layers, size_t n, double target, double *out,
                               sp_error *err);

#ifdef __cplusplus
}
#endif
#endif
