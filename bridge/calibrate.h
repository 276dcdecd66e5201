/*
 * sparsify — the calibration pass of activation-aware pruning (Wanda): run a
 * TorchScript model forward on calibration data and record, for every
 * weight that a Linear product or a convolution of forward reads, the L2
 * norm of each input feature over all calibration rows (docs/pruning.md,
 * "Wanda").
 *
 *   Linear  y = x W^T + b, W [out, in]: norm_j = sqrt(sum over every row of
 *           x (all leading dimensions: batch, tokens) of x_j^2), j < in.
 *   Conv    W [O, I/groups, k...]: per input channel c, over the batch and
 *           every position. groups == 1: the norms are [I]; grouped: [O, I/g],
 *           row o holding the channels of o's group, so each weight finds the
 *           channel it multiplies.
 *
 * The forward runs on a clone of the model (tensors shared, nothing
 * written) in eval mode without gradients; an observing operator,
 * sparsify::observe, sits before each such product and reads its input
 * without touching it, so the model's outputs are those of the original.
 * Sums of squares accumulate in float64 over batches of SP_CALIB_BATCH rows.
 * A weight read by several products (a shared weight) accumulates all of
 * its inputs. Like the rest of the bridge it never prints.
 */
#ifndef SPARSIFY_BRIDGE_CALIBRATE_H
#define SPARSIFY_BRIDGE_CALIBRATE_H

#include "sparsify/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_CALIB_BATCH 128    /* rows per forward */
#define SP_CALIB_SAMPLES 128  /* default number of calibration rows */

typedef struct sp_calib_opts {
    const char *model;        /* TorchScript archive */
    const char *data;         /* CSV, .pt or .safetensors, read as `run` reads it */
    const char *label_column; /* CSV: a column to leave out; NULL: every
                                 column is an input */
    int64_t samples;          /* the first N rows (default SP_CALIB_SAMPLES) */
    int threads;              /* 0: libtorch's */
} sp_calib_opts;

void sp_calib_opts_init(sp_calib_opts *o);

/* The norms of one weight. */
typedef struct sp_calib_norms {
    char *name;        /* the weight's state_dict name, "blocks.0.fc1.weight" */
    const char *op;    /* "linear" or "conv" (static) */
    int ndim;          /* 1: [in]; 2: [out, in] (grouped convolution) */
    int64_t shape[2];
    float *norms;      /* shape[0] (* shape[1]) values */
} sp_calib_norms;

typedef struct sp_calib_result {
    int64_t samples;   /* rows used */
    sp_calib_norms *layers; /* in the order forward reads the weights */
    size_t n;
} sp_calib_result;

/*
 * Run the calibration pass. Errors (the message names the file): SP_ERR_NOT_FOUND /
 * SP_ERR_IO (cannot open), SP_ERR_FORMAT (malformed data or model, an empty
 * data file, NaN or Inf in it: the data reader refuses them),
 * SP_ERR_INVALID_ARG (rows the model does not take: wrong width;
 * activations that overflow; a model whose forward reads no Linear or
 * convolution weight), SP_ERR_INTERNAL (libtorch failed).
 */
sp_status sp_calibrate(const sp_calib_opts *o, sp_calib_result *res, sp_error *err);
void sp_calib_result_release(sp_calib_result *res);

/* The norms as a checkpoint that torch.load reads and sp_ckpt_open_mem
 * opens: a dict of float32 tensors named as the weights. Written to `fd`
 * when fd >= 0 (a descriptor the caller owns), else to `path` (atomic, like
 * every output). Errors: SP_ERR_IO, SP_ERR_NOMEM. */
sp_status sp_calib_save(const sp_calib_result *res, const char *path, int fd, sp_error *err);

#ifdef __cplusplus
}

#include <torch/script.h>

#include <string>
#include <vector>

namespace sp_bridge {

/* The pass itself, on a loaded model and its calibration inputs x [n, ...]
 * (already checked): one entry per observed weight. data_path names the
 * data in messages. Throws Failed. */
struct WeightNorms {
    std::string name; /* state_dict name */
    std::string op;   /* "linear" | "conv" */
    at::Tensor norms; /* float32 [in] or [out, in] */
};
std::vector<WeightNorms> activation_norms(torch::jit::Module &m, const at::Tensor &x,
                                          const char *model_path, const char *data_path,
                                          sp_error *err);

} // namespace sp_bridge
#endif

#endif
