/*
 * Internal (bridge/ only): training and inference data as dense float
 * arrays, read from a CSV file or a tensor file (.pt / .safetensors holding
 * `inputs` and `labels`). No libtorch here, so it compiles as plain C.
 * `sparsify finetune` and `sparsify run` (and what builds on them) read
 * their data through this one reader.
 *
 * CSV: comma-separated numbers, one sample a row; an optional header row (a
 * first row with any non-numeric field); the label column chosen by header
 * name or index (default: the last column, or none: see sp_label_default);
 * every row must have the same number of fields; blank lines are skipped.
 */
#ifndef SPARSIFY_TRAIN_DATA_H
#define SPARSIFY_TRAIN_DATA_H

#include "sparsify/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_dataset {
    int64_t n;                      /* samples */
    int sample_ndim;                /* rank of one input sample */
    int64_t sample_shape[SP_MAX_DIMS];
    int64_t width;                  /* elements per input sample */
    float *x;                       /* n * width, row-major */
    int label_ndim;                 /* 0: one label per sample */
    int64_t label_shape[SP_MAX_DIMS];
    int64_t label_width;            /* elements per label (1 for CSV) */
    float *y;                       /* n * label_width */
    bool has_labels;                /* false: y is NULL (SP_LABEL_NONE) */
    bool labels_integral;           /* every label a whole number >= 0 */
    int64_t label_max;              /* largest label when integral */
} sp_dataset;

/* Which labels a file has when no label column is named. */
typedef enum sp_label_default {
    SP_LABEL_LAST = 0, /* CSV: the last column; tensor file: 'labels' required */
    SP_LABEL_NONE = 1, /* CSV: none, every column is an input; tensor file:
                          'labels' read when present */
} sp_label_default;

/* Load path into ds (which the caller embeds). label_column: header name or
 * index (CSV only), NULL for the default `def`. Errors: SP_ERR_NOT_FOUND /
 * SP_ERR_IO (cannot open), SP_ERR_FORMAT (ragged row, non-numeric field,
 * empty file; the message gives file:line), SP_ERR_INVALID_ARG (no such
 * label column, missing `inputs`/`labels` tensors, count mismatch). */
sp_status sp_dataset_load(sp_dataset *ds, const char *path, const char *label_column,
                          sp_label_default def, sp_error *err);
void sp_dataset_release(sp_dataset *ds);

#ifdef __cplusplus
}
#endif
#endif
