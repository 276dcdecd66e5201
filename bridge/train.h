/*
 * sparsify — fine-tuning through the libtorch bridge (bridge/, the only C++
 * in sparsify).
 *
 * A C API over a C++ training loop (bridge/train.cpp) that loads a
 * TorchScript model, trains it on CSV or tensor-file data and writes a
 * TorchScript model back, keeping pruning masks fixed (sparse transfer
 * learning) or changing them on a recipe's schedule. Masks and schedules come
 * from the C pruning engine (prune.h, recipe.h). Once the masks are fixed,
 * the sparse Linear layers train through sparsify's own kernels (the sparse
 * operator of bridge/linear.h; `kernels`), otherwise libtorch does the
 * arithmetic.
 *
 * Like the rest of the library this never prints and never exits: progress
 * and per-epoch numbers reach the caller through a callback (sp_train_event),
 * errors through sp_error. Built only when meson finds libtorch
 * (SP_HAVE_TORCH); docs/finetune.md is the user's reference.
 */
#ifndef SPARSIFY_TRAIN_H
#define SPARSIFY_TRAIN_H

#include "bridge/layers.h"
#include "sparsify/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_task {
    SP_TASK_CLASSIFICATION = 0, /* cross-entropy on integer labels 0..K-1 */
    SP_TASK_REGRESSION = 1,     /* mean squared error */
} sp_task;

typedef enum sp_optimizer {
    SP_OPTIM_SGD = 0,   /* with --momentum (and Nesterov off) */
    SP_OPTIM_ADAMW = 1, /* decoupled weight decay */
} sp_optimizer;

/* Which kernels train the masked Linear layers once their masks are fixed. */
typedef enum sp_kernels {
    SP_KERNELS_AUTO = 0,   /* sparse where the dispatcher says it is faster */
    SP_KERNELS_SPARSE = 1, /* sparse for every masked Linear layer with zeros */
    SP_KERNELS_DENSE = 2,  /* libtorch's dense ops with masked gradients */
} sp_kernels;

typedef enum sp_lr_schedule {
    SP_LR_CONSTANT = 0,
    SP_LR_LINEAR = 1, /* linear decay to 0 after the warm-up */
    SP_LR_COSINE = 2, /* half-cosine decay to 0 after the warm-up */
} sp_lr_schedule;

/* Everything a run needs. Initialise with sp_train_opts_init, then set the
 * fields you need; strings are borrowed for the duration of sp_train_run. */
typedef struct sp_train_opts {
    const char *model;        /* TorchScript archive (torch.jit.save) */
    const char *out;          /* TorchScript archive to write; NULL: none */
    const char *data;         /* training data: CSV, .pt or .safetensors */
    const char *val;          /* validation data, or NULL */
    const char *label_column; /* CSV: header name or 0-based index
                                 (negative counts from the end); NULL: last */
    sp_task task;
    int epochs;               /* 0: evaluate only */
    int64_t batch_size;       /* default 32 */
    double lr;                /* default 1e-3 */
    sp_optimizer optimizer;   /* default AdamW */
    double momentum;          /* SGD only; default 0.9 */
    double weight_decay;      /* default 0 */
    sp_lr_schedule lr_schedule; /* default constant */
    double warmup_epochs;     /* linear warm-up from 0 (fractional epochs) */
    int64_t warmup_steps;     /* or in optimizer steps; the larger wins */
    uint64_t seed;            /* shuffling and fresh weights; default 0 */
    const char *device;       /* "cpu" (default), "cuda", "cuda:N" */
    int threads;              /* CPU threads for libtorch; 0: its default */

    /* Masks. recipe NULL: every prunable weight (sp_select_default) keeps
     * its current zeros. Otherwise the recipe's modifiers decide: its
     * pruning modifiers the masks (those of oneshot stages before the first
     * step), and its training modifiers (EpochRangeModifier, the learning
     * rate modifiers, SetWeightDecayModifier) epochs, lr and weight_decay,
     * unless `set` says the caller chose them. */
    const char *recipe;       /* path or bundled template name */
    bool substitute;          /* run the closest modifier for unimplemented
                                 ones (sp_recipe_opts.substitute) */
    unsigned set;             /* SP_TRAIN_SET_*: what the caller gave */
    bool no_masks;            /* train everything dense (benchmark baseline) */
    sp_kernels kernels;       /* default auto (CPU only; CUDA trains dense) */

    /* Distillation from a dense teacher (TorchScript). Negative hardness or
     * temperature: the recipe's DistillationModifier, else 0.5 and 2.0. */
    const char *teacher;
    double distill_hardness;
    double distill_temperature;

    /* Replace the Linear submodule `reset_head` (dotted name) with a fresh
     * one of num_classes outputs (ignored when resuming). */
    const char *reset_head;
    int64_t num_classes;

    /* Checkpoints: every save_every epochs (0: never) into "<out>.ckpt/"
     * (model.pt, state.pt, state.json); resume from such a folder. */
    int save_every;
    const char *resume;

    /* Data parallel on libtorch's c10d (world_size > 1): one process per
     * rank, each with the same options. Each rank trains on its shard of
     * every epoch with batch_size samples per step (global batch
     * world_size x batch_size); gradients are averaged over the ranks, so
     * every rank holds the same weights and masks; only rank 0 writes
     * `out` and checkpoints. Rank 0 serves the rendezvous (c10d's TCPStore)
     * at master_addr:master_port. */
    int rank;                 /* 0 .. world_size - 1 */
    int world_size;           /* default 1: a single process */
    int local_rank;           /* rank on this machine: --device cuda uses cuda:local_rank */
    const char *master_addr;  /* rank 0's address */
    int master_port;
    const char *backend;      /* "gloo", "nccl"; NULL: nccl on CUDA, else gloo */
    double dist_timeout;      /* seconds a collective or the rendezvous may wait
                                 for another rank (default 300) */
} sp_train_opts;

/* sp_train_opts.set: options the caller gave, which a recipe does not
 * override. */
enum {
    SP_TRAIN_SET_EPOCHS = 1u << 0,       /* epochs */
    SP_TRAIN_SET_LR = 1u << 1,           /* lr, lr_schedule, warm-up */
    SP_TRAIN_SET_WEIGHT_DECAY = 1u << 2, /* weight_decay */
};

void sp_train_opts_init(sp_train_opts *o);

typedef enum sp_train_event_kind {
    SP_TRAIN_EV_START = 0, /* data loaded, model checked; sizes known */
    SP_TRAIN_EV_STEP = 1,  /* after each optimizer step */
    SP_TRAIN_EV_EPOCH = 2, /* after each epoch (and its evaluation) */
    SP_TRAIN_EV_MASK = 3,  /* masks changed (recipe schedule) or final report */
    SP_TRAIN_EV_CHECKPOINT = 4, /* a checkpoint folder was written (message) */
    SP_TRAIN_EV_WARNING = 5,    /* something the user should know (message) */
    SP_TRAIN_EV_KERNELS = 6,    /* the masked Linear layers moved to the sparse
                                   operator (layers: which, and why not) */
} sp_train_event_kind;

/* One masked tensor in a MASK event. */
typedef struct sp_train_tensor_info {
    const char *name;
    int64_t numel, zeros;
    double target; /* scheduled sparsity (-1: held, no target) */
} sp_train_tensor_info;

/* What the callback sees; everything is borrowed for the call only. */
typedef struct sp_train_event {
    sp_train_event_kind kind;
    int epoch;            /* 1-based epoch in progress / just finished */
    int epochs;           /* total epochs of the run */
    double epoch_f;       /* fractional position (e.g. 2.5 = half of epoch 3) */
    int64_t step;         /* step within the epoch, 1-based */
    int64_t steps_per_epoch;
    int64_t global_step;
    double lr;
    double train_loss;    /* mean training loss of the epoch so far */
    bool has_val;
    double val_loss, val_accuracy; /* accuracy: classification only, else -1 */
    int64_t train_n, val_n;        /* samples */
    double step_ms;       /* median time of one training step this epoch */
    double sparsity;      /* zeros / numel over the masked tensors */
    int64_t masked_zeros, masked_numel;
    const sp_train_tensor_info *tensors; /* MASK events */
    size_t ntensors;
    bool sparse_kernels;  /* EPOCH: the epoch ended on the sparse operator */
    const sp_layer_report *layers; /* KERNELS events: the Linear layers */
    size_t nlayers, sparse_layers;
    const char *message;  /* CHECKPOINT: folder; WARNING: text; START: device */
    int world_size;       /* START, EPOCH: processes training together */
    int64_t global_batch; /* START, EPOCH: samples per step over all ranks */
    double allreduce_ms;  /* EPOCH (world_size > 1): median per step of the
                             gradient all-reduce, first launch to completion */
    double allreduce_wait_ms; /* ... and of the time the step waited for it */
    const uint64_t *checksums; /* MASK (world_size > 1): every rank's checksum
                                  of its masks, in rank order (all equal) */
    uint32_t mask_checksum;    /* MASK: CRC-32 of the masks (this rank's) */
} sp_train_event;

typedef void (*sp_train_cb)(void *ctx, const sp_train_event *ev);

/* Summary of a finished run. */
typedef struct sp_train_result {
    int epochs_run;       /* epochs trained in this call (after a resume) */
    int64_t steps;
    double train_loss;    /* last epoch's mean */
    bool has_val;
    double val_loss, val_accuracy; /* accuracy -1 for regression */
    int64_t val_n;
    double step_ms;       /* median step time over the run */
    size_t masked_tensors;
    int64_t masked_zeros, masked_numel;
    size_t sparse_layers; /* layers trained on the sparse operator (0: dense) */
    int world_size;
    /* On failure: every rank met this error together (a non-finite loss,
     * ranks that disagree, rank 0 failing to write) and rank 0 reports it;
     * the caller of another rank exits with the status and says nothing. */
    bool reported_by_rank0;
} sp_train_result;

/*
 * Run: load, check the data against the model, train opts->epochs epochs,
 * evaluate on opts->val after each (and before training when epochs is 0),
 * write opts->out atomically (a temporary beside it, named as in ckpt.h's
 * "Outputs", put in place when complete). cb may be NULL; res may be NULL
 * (on failure only reported_by_rank0 is set). Errors: SP_ERR_INVALID_ARG (bad option, data that does not fit
 * the model, missing label column), SP_ERR_FORMAT (ragged or non-numeric CSV,
 * unreadable tensor file), SP_ERR_NOT_FOUND / SP_ERR_IO (files),
 * SP_ERR_UNSUPPORTED (CUDA or NCCL asked of a libtorch without it),
 * SP_ERR_INTERNAL (libtorch failed during training), SP_ERR_IO also when
 * another rank died or did not answer within dist_timeout ("rank 0 of 2:
 * lost contact with the other ranks at epoch 2, step 5: ..."). The message
 * names the file or tensor.
 */
sp_status sp_train_run(const sp_train_opts *opts, sp_train_cb cb, void *ctx,
                       sp_train_result *res, sp_error *err);

/* Whether the libtorch in use sees a CUDA device. */
bool sp_train_cuda_available(void);
/* Whether this build can use the NCCL backend (a CUDA libtorch with it). */
bool sp_train_have_nccl(void);
/* Version of the libtorch linked in ("1.13.1"). */
const char *sp_train_torch_version(void);

#ifdef __cplusplus
}
#endif
#endif
