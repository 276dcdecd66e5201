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
#include "sparsify/recipe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One pruning rule: which tensors, what pattern, what sparsity. A tensor is
 * pruned by the first rule that targets it. Exactly one of `selector` /
 * `modifier` decides the targets. */
typedef struct sp_prune_rule {
    const sp_selector *selector;   /* CLI --include/--exclude (borrowed) */
    const sp_modifier *modifier;   /* recipe modifier (borrowed) */
    sp_pattern pattern;
    double sparsity;               /* ignored with a modifier (final_for) */
    bool global;                   /* one threshold across the rule's tensors */
    sp_block_score bscore;
} sp_prune_rule;

/* Per-tensor outcome, in checkpoint order (targeted tensors only). */
typedef struct sp_prune_entry {
    const char *name;      /* borrowed from the checkpoint */
    size_t tensor;         /* index in the checkpoint */
    char pattern[32];
    double target;         /* requested sparsity (N:M: implied) */
    uint64_t numel;
    uint64_t zeros_before, zeros_after;
    bool shared;           /* shares its storage with an earlier target */
    /* check only */
    bool ok;
    char violation[160];
} sp_prune_entry;

typedef struct sp_prune_report {
    sp_prune_entry *entries;
    size_t n;
    uint64_t total_params;     /* all floating tensors in the checkpoint */
    uint64_t targeted_params;
    uint64_t zeros_before, zeros_after; /* over targeted tensors */
} sp_prune_report;

void sp_prune_report_release(sp_prune_report *r);

/* Build rules from a recipe: one rule per pruning modifier (distillation is
 * skipped), its final sparsity and mask type. rules must hold r->nmods
 * entries; *nrules gets the count. */
size_t sp_prune_rules_from_recipe(const sp_recipe *r, sp_prune_rule *rules);

/* Prune ck into out_path (same format; atomic). The report is filled on
 * success. Errors: SP_ERR_INVALID_ARG (NaN/Inf in a target: the message
 * names the tensor; sparsity out of range; N:M with a different sparsity),
 * SP_ERR_NOT_FOUND (no tensor matched any rule), I/O and format errors. */
sp_status sp_prune_ckpt(sp_ckpt *ck, const char *out_path, const sp_prune_rule *rules,
                        size_t nrules, sp_prune_report *rep, sp_error *err);

/* Check every targeted tensor of ck against its rule's pattern and sparsity.
 * Returns SP_OK when all pass, SP_ERR_CHECK when any fails (the report says
 * which), or another error for bad input. */
sp_status sp_prune_check(sp_ckpt *ck, const sp_prune_rule *rules, size_t nrules,
                         sp_prune_report *rep, sp_error *err);

#ifdef __cplusplus
}
#endif
#endif
