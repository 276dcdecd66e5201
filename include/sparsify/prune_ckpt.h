/*
 * sparsify — pruning whole checkpoints: the engine behind `sparsify prune`
 * and `sparsify check`. It walks a checkpoint storage by storage (memory stays
 * near one storage), selects target tensors by rules, computes masks with the
 * pruning engine (prune.h) and writes the result in the input's own format
 * through sp_ckpt_rewrite (everything not pruned stays byte-identical).
 */
#ifndef SPARSIFY_PRUNE_CKPT_H
#define SPARSIFY_PRUNE_CKPT_H

#include "sparsify/ckpt.h"
#include "sparsify/prune.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A tensor named by the caller, with its own sparsity. */
typedef struct sp_prune_tensor {
    const char *name; /* borrowed */
    double sparsity;  /* in [0, 1]; ignored for N:M (implied) */
} sp_prune_tensor;

/* One pruning rule: which tensors, what pattern, what sparsity. A tensor is
 * pruned by the first rule that targets it. Exactly one of `selector` /
 * `tensors` decides the targets: a selector of name patterns, or the
 * tensors a caller has already chosen, each with its sparsity.
 *
 * Shared storage: a target whose bytes overlap those of a tensor that no
 * rule targets (a tied lm_head and embedding, a view of a buffer) is left
 * dense and listed in the report's `skipped`, because pruning it would
 * silently change the other tensor. Pruning shared bytes needs every name
 * over them targeted; each entry then lists its aliases. */
typedef struct sp_prune_rule {
    const sp_selector *selector;    /* CLI --include/--exclude (borrowed), or */
    const sp_prune_tensor *tensors; /* exactly these tensors (borrowed); names
                                       that are not in the checkpoint, or not
                                       floating, are not targets */
    size_t ntensors;
    sp_pattern pattern;
    double sparsity;                /* with a selector: every target's; a
                                       global rule: the global target */
    bool global;                    /* one threshold across the rule's tensors */
    sp_block_score bscore;
    sp_score_kind score;           /* magnitude (default) or wanda: |w| times
                                      the activation norm of its input
                                      feature, from sp_prune_options.norms */
    sp_score_group group;          /* wanda, unstructured, layer scope:
                                      per output row (default) or per layer */
} sp_prune_rule;

/* Per-tensor outcome, in checkpoint order (targeted tensors only). */
typedef struct sp_prune_entry {
    const char *name;      /* borrowed from the checkpoint */
    size_t tensor;         /* index in the checkpoint */
    char pattern[32];
    double target;         /* requested sparsity (N:M: implied) */
    uint64_t numel;
    uint64_t zeros_before, zeros_after;
    bool shared;           /* same view as an earlier target (one mask) */
    const char **aliases;  /* the other targets whose bytes overlap this
                              one's (names borrowed from the checkpoint);
                              they change together */
    size_t naliases;
    /* check only */
    bool ok;
    char violation[160];
} sp_prune_entry;

/* A tensor a rule targets that was left dense (see sp_prune_rule). */
typedef struct sp_prune_skip {
    const char *name;  /* the tensor (borrowed from the checkpoint) */
    const char *alias; /* an untargeted tensor sharing its bytes */
} sp_prune_skip;

typedef struct sp_prune_report {
    sp_prune_entry *entries;
    size_t n;
    sp_prune_skip *skipped;
    size_t nskipped;
    uint64_t total_params;     /* all floating tensors in the checkpoint */
    uint64_t targeted_params;
    uint64_t zeros_before, zeros_after; /* over targeted tensors */
} sp_prune_report;

void sp_prune_report_release(sp_prune_report *r);

typedef struct sp_prune_options {
    bool dry_run;            /* resolve targets and count their zeros (the
                                report's zeros_before); write nothing */
    sp_progress_fn progress; /* bytes processed of the checkpoint, or NULL */
    void *progress_ctx;
    int threads;             /* 0: every CPU (sp_threads_default); the
                                output is the same bytes whatever it is */
    sp_ckpt *norms;          /* rules scored by wanda: the activation norms,
                                a float32 tensor per target named as the
                                target, [in] or [out, in] (sp_wanda_scores);
                                borrowed. Not needed for a dry run */
} sp_prune_options;

/* Prune ck into out_path (same format; atomic). opt may be NULL (no
 * progress, not a dry run); with opt->dry_run out_path may be NULL. The
 * report is filled on success. Errors: SP_ERR_INVALID_ARG (NaN/Inf in a
 * target: the message names the tensor; sparsity out of range; N:M with a
 * different sparsity; a regex that backtracks too much; a wanda rule
 * without norms for a target, or norms of the wrong size), SP_ERR_NOT_FOUND
 * (no tensor matched any rule, or every match shares bytes with an
 * untargeted tensor), I/O and format errors. */
sp_status sp_prune_ckpt(sp_ckpt *ck, const char *out_path, const sp_prune_rule *rules,
                        size_t nrules, const sp_prune_options *opt, sp_prune_report *rep,
                        sp_error *err);

/* Check every targeted tensor of ck against its rule's pattern and sparsity
 * (the targets sp_prune_ckpt would prune, skips included). opt may be NULL;
 * only its progress and threads are used. Returns SP_OK when all pass,
 * SP_ERR_CHECK when any fails (the report says which), or another error
 * for bad input. */
sp_status sp_prune_check(sp_ckpt *ck, const sp_prune_rule *rules, size_t nrules,
                         const sp_prune_options *opt, sp_prune_report *rep, sp_error *err);

#ifdef __cplusplus
}
#endif
#endif
