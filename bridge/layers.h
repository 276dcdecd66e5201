/*
 * sparsify — what the libtorch bridge did with each weight of a model: the
 * report shared by `run` (run.h) and the sparse fine-tune (train.h).
 */
#ifndef SPARSIFY_BRIDGE_LAYERS_H
#define SPARSIFY_BRIDGE_LAYERS_H

#include "sparsify/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One 2-D weight the model's forward reads. Strings are never NULL. */
typedef struct sp_layer_report {
    const char *name;   /* "blocks.0.fc1" (the weight's path less ".weight") */
    bool linear;        /* feeds a Linear product */
    bool sparse;        /* runs on the sparse operator */
    const char *reason; /* why it stays dense ("" when sparse) */
    int64_t rows, cols;
    double sparsity;    /* pruned / numel */
    const char *layout; /* sparse: "csr", "bcsr 4x1", "nm 2:4" */
    const char *kernel; /* sparse: the forward ukernel at the batch size */
} sp_layer_report;

#ifdef __cplusplus
}
#endif
#endif
