/*
 * sparsify — running a TorchScript model on data through the sparse
 * operator (the libtorch bridge; docs/run.md is the user's reference).
 *
 * sp_run loads a TorchScript model and a CSV or tensor data file (read
 * exactly as the fine-tune loop reads it), rewrites the model's sparse
 * Linear layers to run on sparsify's kernels (bridge/rewrite.h), runs it
 * batch by batch in inference mode and measures it: accuracy when the data
 * has labels, median time per batch, throughput, and with `compare` the
 * dense original on the same batches in the same run, alternating, with the
 * largest difference between the two outputs. Like the rest of the library
 * it never prints; the predictions file it may write is written atomically.
 * Built only with libtorch (SP_HAVE_TORCH).
 */
#ifndef SPARSIFY_RUN_H
#define SPARSIFY_RUN_H

#include "bridge/layers.h"
#include "sparsify/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_run_opts {
    const char *model;        /* TorchScript archive (torch.jit.save) */
    const char *data;         /* CSV, .pt or .safetensors (inputs [, labels]) */
    const char *label_column; /* CSV: header name or index; NULL: no labels,
                                 every column is an input */
    int64_t batch_size;       /* default 1 */
    int threads;              /* CPU threads (libtorch and the kernels); 0: libtorch's */
    const char *output;       /* predictions CSV to write (replaced if it
                                 exists: the caller decides), or NULL */
    bool dense;               /* plain libtorch, no rewrite */
    bool compare;             /* sparse and dense on the same batches */
    int warmup;               /* batches run (per model) before timing; default 3 */
    int repeat;               /* timed passes over the data; default 1 */
    const char *const *layers; /* run exactly these layers sparse (names as
                                  reported), or NULL */
    size_t nlayers;
} sp_run_opts;

void sp_run_opts_init(sp_run_opts *o);

typedef struct sp_run_result {
    int64_t samples, batch_size, batches, outputs; /* outputs: values per sample */
    int threads;
    const char *mode;      /* "sparse" or "dense" (what ms_per_batch timed) */
    double ms_per_batch;   /* median over the timed batches */
    double samples_per_s;  /* samples / total timed time */
    bool has_accuracy;     /* labels and outputs [batch, classes] */
    double accuracy;
    bool compared;
    double dense_ms_per_batch, sparse_ms_per_batch, speedup; /* dense / sparse */
    double dense_accuracy;
    double max_abs_diff;   /* max |sparse - dense| over every output */
    double max_rel_diff;   /* max_abs_diff / max |dense| */
    double rss_mb, peak_rss_mb; /* resident set after the run, and its peak */
    size_t nlayers, nsparse;
    sp_layer_report *layers; /* owned; sp_run_result_release frees */
} sp_run_result;

/*
 * Run. Errors: SP_ERR_INVALID_ARG (bad option, data that does not fit the
 * model, a model without Linear layers, an unknown name in `layers`),
 * SP_ERR_FORMAT (unreadable model or data), SP_ERR_NOT_FOUND / SP_ERR_IO
 * (files), SP_ERR_INTERNAL (libtorch failed). The message names the file,
 * layer or option.
 */
sp_status sp_run(const sp_run_opts *opts, sp_run_result *res, sp_error *err);
void sp_run_result_release(sp_run_result *res);

#ifdef __cplusplus
}
#endif
#endif
