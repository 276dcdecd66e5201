/*
 * sparsify — recipes: the files SparseML and llm-compressor users already
 * have, read as they are (docs/recipes.md).
 *
 *   - YAML (anchors, aliases, "!GMPruningModifier" tags), the YAML front
 *     matter of a Markdown recipe card, or JSON; found from the content;
 *   - top-level variables and eval(...) expressions (a small arithmetic
 *     evaluator: nothing is executed);
 *   - modifier groups ("pruning_modifiers", any "*_modifiers") and
 *     llm-compressor stages ("*_stage" with "run_type");
 *   - SparseML and llm-compressor class and field names.
 *
 * Pruning and training modifiers are parsed into sp_modifier; quantization
 * modifiers are read and reported as not applied; pruning algorithms
 * sparsify does not implement (OBS, SparseGPT, M-FAC, ...) are
 * refused with the closest one it has, or run as that one on request
 * (sp_recipe_opts.substitute). Bundled templates ("unstructured-90", "2:4",
 * ...) are compiled into the library and usable by name wherever a recipe
 * path is accepted.
 *
 * recipes/ sits above prune/: it translates a recipe into the pruning
 * engine's own rules (sp_recipe_prune_rules); the engine does not know
 * recipes exist.
 */
#ifndef SPARSIFY_RECIPE_H
#define SPARSIFY_RECIPE_H

#include "sparsify/common.h"
#include "sparsify/prune.h"
#include "sparsify/prune_ckpt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_modifier_type {
    SP_MOD_MAGNITUDE = 0,        /* MagnitudePruningModifier / "magnitude" */
    SP_MOD_GMP = 1,              /* GMPruningModifier / "gradual_magnitude" */
    SP_MOD_GLOBAL_MAGNITUDE = 2, /* GlobalMagnitudePruningModifier / "global_magnitude" */
    SP_MOD_MOVEMENT = 3,         /* MovementPruningModifier / "movement" */
    SP_MOD_CONSTANT = 4,         /* ConstantPruningModifier / "constant" */
    SP_MOD_DISTILLATION = 5,     /* DistillationModifier / "distillation" */
    SP_MOD_EPOCH_RANGE = 6,      /* EpochRangeModifier: the number of epochs */
    SP_MOD_SET_LR = 7,           /* SetLearningRateModifier */
    SP_MOD_LR_FUNCTION = 8,      /* LearningRateFunctionModifier */
    SP_MOD_LR_SCHEDULE = 9,      /* LearningRateModifier (a torch LR scheduler) */
    SP_MOD_SET_WEIGHT_DECAY = 10, /* SetWeightDecayModifier */
    SP_MOD_NOT_APPLIED = 11,     /* read but not applied (quantization, ...):
                                    cls names it; the recipe's warnings say so */
} sp_modifier_type;

typedef enum sp_lr_func {
    SP_LRF_LINEAR = 0,
    SP_LRF_COSINE = 1,
    SP_LRF_CYCLIC_LINEAR = 2,
} sp_lr_func;

typedef enum sp_lr_class {
    SP_LRC_STEP = 0,        /* StepLR: gamma every step_size epochs */
    SP_LRC_MULTISTEP = 1,   /* MultiStepLR: gamma at each milestone epoch */
    SP_LRC_EXPONENTIAL = 2, /* ExponentialLR: gamma every epoch */
} sp_lr_class;

/* llm-compressor stages say how they run; flat recipes have none. */
typedef enum sp_run_type {
    SP_RUN_ANY = 0,     /* no stage, or a stage without run_type */
    SP_RUN_ONESHOT = 1, /* run_type: oneshot */
    SP_RUN_TRAIN = 2,   /* run_type: train */
} sp_run_type;

/* A params/targets/ignore list: exact tensor or module names, "re:REGEX"
 * (Python syntax, see sp_regex_new; matched at the start like SparseML's
 * re.match), "__ALL_PRUNABLE__", "__ALL__", or a layer class ("Linear",
 * "Conv2d"). An entry that names no tensor of a model names modules: it
 * selects the prunable weights inside them (llm-compressor's
 * "re:model.layers.\d+$"). */
typedef struct sp_recipe_terms {
    char **text;    /* as written ("__ALL__" and "__ALL_PRUNABLE__" upper-cased) */
    sp_regex **re;  /* compiled "re:" entries, NULL for the others */
    size_t n;
} sp_recipe_terms;

/* A per-layer sparsity from a map-valued final_sparsity. */
typedef struct sp_sparsity_override {
    double sparsity;
    sp_recipe_terms params;
} sp_sparsity_override;

typedef struct sp_modifier {
    sp_modifier_type type;
    const char *cls;            /* class name ("GMPruningModifier"; for
                                   SP_MOD_NOT_APPLIED the one written) */
    const char *substitute_for; /* with opts.substitute: the class the recipe
                                   named, that this one stands in for; NULL */
    char *where;                /* where it is in the file:
                                   "pruning_modifiers[0]",
                                   "sparsity_stage.sparsity_modifiers.SparseGPTModifier" */
    int line;                   /* its line in the file, 0 when unknown */
    char *stage;                /* its stage, NULL outside stages */
    sp_run_type run_type;

    /* pruning (and constant: params, ignore, epochs) */
    sp_recipe_terms params;     /* empty = __ALL_PRUNABLE__ */
    sp_recipe_terms ignore;     /* wins over params */
    double init_sparsity;       /* default 0 (gradual), = final for one-shot */
    double final_sparsity;      /* for N:M mask types: 1 - N/M */
    sp_sparsity_override *overrides; /* from a map-valued final_sparsity */
    size_t noverrides;
    double start_epoch, end_epoch; /* default 0, start (one-shot); -1 for
                                      end_epoch = until the end of training */
    double update_frequency;       /* epochs; default 1 */
    sp_inter_func inter_func;      /* default cubic */
    sp_pattern mask_type;          /* default unstructured */
    sp_block_score block_score;    /* "block_score": "l1" (default) | "l2" */
    sp_score_kind score;           /* "score": "magnitude" (default) | "wanda"
                                      (one-shot only; needs calibration data) */
    bool leave_enabled;            /* default true */
    bool global_sparsity;          /* true for GlobalMagnitudePruningModifier */
    bool soft_mask;                /* movement, mask_mode "soft" (Sanh et al.):
                                      dense weights kept, the mask applied in
                                      the forward pass only; default false
                                      (SparseML's hard masks) */
    /* distillation */
    double hardness;    /* default 0.5 */
    double temperature; /* default 2.0 */
    char *teacher;      /* "teacher" string as given, NULL when absent */
    /* learning rate and weight decay */
    double learning_rate;      /* SetLearningRateModifier */
    double init_lr, final_lr;  /* LearningRateFunctionModifier; init_lr also
                                  LearningRateModifier's (<= 0: unset) */
    sp_lr_func lr_func;
    double cycle_epochs;       /* cyclic_linear, default 1 */
    sp_lr_class lr_class;      /* LearningRateModifier */
    double step_size, gamma;   /* lr_kwargs */
    double *milestones;        /* MultiStepLR, in epochs */
    size_t nmilestones;
    double weight_decay;       /* SetWeightDecayModifier */
    /* SP_MOD_NOT_APPLIED: the evaluated fields as JSON text (for convert) */
    char *raw_json;
} sp_modifier;

/* A problem found in a recipe: an error, or a warning about something that
 * runs differently from what the recipe says (a modifier not applied, a
 * substitute, an entry that matches no tensor). */
typedef struct sp_recipe_problem {
    bool warning;
    int line, column;  /* 1-based position in the file; 0 when unknown */
    char path[192];    /* "pruning_modifiers[1].final_sparsity"; "" for the
                          whole file */
    char message[SP_ERR_MSG_MAX];
} sp_recipe_problem;

typedef struct sp_recipe_problems {
    sp_recipe_problem *v;
    size_t n;
    size_t errors;  /* how many of v are errors */
    size_t dropped; /* problems past the first 1000, not stored */
} sp_recipe_problems;

void sp_recipe_problems_release(sp_recipe_problems *p);
/* One line: "line 12: pruning_modifiers[1].final_sparsity: 1.5 is out of
 * range [0, 1]" (parts that are unknown are left out). Returns buf. */
const char *sp_recipe_problem_str(const sp_recipe_problem *p, char *buf, size_t len);

typedef struct sp_recipe {
    int version;          /* the schema, 1 */
    char *source_version; /* "version" as the file wrote it ("1.1.0"), or NULL */
    const char *format;   /* "json", "yaml" or "markdown" */
    sp_modifier *mods;
    size_t nmods;
    sp_recipe_problem *warnings; /* see sp_recipe_problem */
    size_t nwarnings;
} sp_recipe;

typedef struct sp_recipe_opts {
    bool substitute; /* run the closest modifier sparsify has in place of a
                        pruning algorithm it does not implement (each one
                        gets a warning and sp_modifier.substitute_for) */
} sp_recipe_opts;

/* Parse a recipe's text (YAML, Markdown front matter or JSON). Returns a new
 * recipe in *out (free with sp_recipe_free). Every problem goes to
 * *problems when it is not NULL (release with sp_recipe_problems_release;
 * warnings of a good recipe are also in r->warnings). err gets the first
 * error, and how many more there are: "line 7: modifiers[1].final_sparsity:
 * 1.5 is out of range [0, 1] (and 2 more problems)". opts may be NULL.
 * Errors: SP_ERR_INVALID_ARG (a bad recipe), SP_ERR_UNSUPPORTED (only
 * modifiers sparsify does not implement were wrong: the message names the
 * closest one), SP_ERR_NOMEM. */
sp_status sp_recipe_parse_ex(sp_recipe **out, const char *text, size_t len,
                             const sp_recipe_opts *opts, sp_recipe_problems *problems,
                             sp_error *err);
sp_status sp_recipe_parse(sp_recipe **out, const char *text, size_t len, sp_error *err);
/* Load from a file path, or from a bundled template when `name` has no '/'
 * and no .json/.yaml/.yml/.md suffix and names one. Messages are prefixed
 * with the path. Errors: SP_ERR_NOT_FOUND, SP_ERR_IO, and those of
 * sp_recipe_parse_ex. */
sp_status sp_recipe_load_ex(sp_recipe **out, const char *path_or_name, const sp_recipe_opts *opts,
                            sp_recipe_problems *problems, sp_error *err);
sp_status sp_recipe_load(sp_recipe **out, const char *path_or_name, sp_error *err);
void sp_recipe_free(sp_recipe *r); /* accepts NULL */

/* The normalised recipe as JSON text, readable back by sp_recipe_parse:
 * variables evaluated, groups and stages flattened into one "modifiers"
 * list (each with its "stage"), aliases replaced by SparseML's field names,
 * defaults written out. Returns a new string in *out (free with free()). */
sp_status sp_recipe_to_json(const sp_recipe *r, char **out, sp_error *err);

/* Bundled templates: count, name, one-line description, JSON text. */
size_t sp_recipe_bundled_count(void);
const char *sp_recipe_bundled_name(size_t i);
const char *sp_recipe_bundled_summary(size_t i);
const char *sp_recipe_bundled_text(size_t i);
/* Index of the bundled template called name (or an alias, "nm-2-4"), or -1. */
long sp_recipe_bundled_find(const char *name);
/* The bundled name closest to a misspelt one ("unstructred-90"), or NULL. */
const char *sp_recipe_bundled_closest(const char *name);

/* A tensor of a model, as recipes see it. */
typedef struct sp_recipe_tensor {
    const char *name;
    sp_dtype dtype;
    int ndim;
} sp_recipe_tensor;

/* Which modifier owns each of a model's n tensors: owner[i] is an index into
 * r->mods, or -1. Modifiers take part when (1u << type) is in `types` and
 * their run type passes `run` (SP_RUN_ANY: all; SP_RUN_ONESHOT: oneshot
 * stages only; SP_RUN_TRAIN: everything but oneshot stages). A tensor goes
 * to the first modifier that targets it in the last stage that has one (a
 * later stage works on what the earlier ones left). final (may be NULL)
 * gets the owner's final sparsity for the tensor (per-layer maps applied).
 * Entries that name modules are resolved against the n names. Warnings (an
 * entry that selects nothing) go to *problems when not NULL. Errors: a
 * "re:" pattern that backtracks too much (SP_ERR_INVALID_ARG), NOMEM. */
sp_status sp_recipe_assign(const sp_recipe *r, const sp_recipe_tensor *t, size_t n, unsigned types,
                           sp_run_type run, long *owner, double *final,
                           sp_recipe_problems *problems, sp_error *err);
/* (1u << type) for every modifier type that prunes. */
#define SP_MOD_PRUNING_TYPES                                                               \
    ((1u << SP_MOD_MAGNITUDE) | (1u << SP_MOD_GMP) | (1u << SP_MOD_GLOBAL_MAGNITUDE) |    \
     (1u << SP_MOD_MOVEMENT))

/* The pruning engine's rules for a recipe on a model's tensors: one rule per
 * pruning modifier that owns a tensor (sp_recipe_assign with
 * SP_MOD_PRUNING_TYPES, SP_RUN_ANY), listing them with their final
 * sparsities. Release with sp_recipe_rules_release. */
typedef struct sp_recipe_rules {
    sp_prune_rule *rules;
    size_t n;
    const sp_modifier **mods; /* mods[i] made rules[i] (borrowed from the recipe) */
    sp_prune_tensor *tensors; /* what the rules point into */
} sp_recipe_rules;
sp_status sp_recipe_prune_rules(sp_recipe_rules *out, const sp_recipe *r, const sp_recipe_tensor *t,
                                size_t n, sp_recipe_problems *problems, sp_error *err);
void sp_recipe_rules_release(sp_recipe_rules *rr);

/* Does modifier m target this tensor by name? (params/ignore, each entry
 * read as a tensor name; __ALL_PRUNABLE__ and an empty params list mean
 * sp_select_default; modifiers that do not prune or hold masks target
 * nothing). Entries that name modules need sp_recipe_assign.
 * Errors: a "re:" pattern that hits the backtracking limits. */
sp_status sp_modifier_select(const sp_modifier *m, const char *name, sp_dtype dtype, int ndim,
                             bool *targets, sp_error *err);
/* The same as a plain answer: false also when a pattern fails to run. */
bool sp_modifier_targets(const sp_modifier *m, const char *name, sp_dtype dtype, int ndim);
/* The final sparsity for this tensor (override map first, then
 * final_sparsity). Errors as sp_modifier_select. */
sp_status sp_modifier_target_sparsity(const sp_modifier *m, const char *name, double *final,
                                      sp_error *err);
/* The same, final_sparsity when a pattern fails to run. */
double sp_modifier_final_for(const sp_modifier *m, const char *name);
/* Scheduled sparsity for this tensor at `epoch` (init -> final_for). */
double sp_modifier_sparsity_at(const sp_modifier *m, const char *name, double epoch);
/* Whether this modifier prunes (magnitude, GMP, global, movement). */
bool sp_modifier_prunes(const sp_modifier *m);
/* Whether it drives training (epochs, learning rate, weight decay). */
bool sp_modifier_trains(const sp_modifier *m);
const char *sp_modifier_type_str(sp_modifier_type t);

/* What a recipe's training modifiers ask of a fine-tuning run. Each query
 * returns false when the recipe says nothing about it. */
/* EpochRangeModifier: the epochs to train (its end_epoch). */
bool sp_recipe_epochs(const sp_recipe *r, double *epochs);
/* The learning rate at `epoch` (fractional) from SetLearningRateModifier,
 * LearningRateFunctionModifier and LearningRateModifier, as SparseML sets
 * it; steps_per_epoch is needed by cyclic_linear. False before the first of
 * them starts (the run's own learning rate applies). */
bool sp_recipe_lr_at(const sp_recipe *r, double epoch, long steps_per_epoch, double *lr);
/* Whether any modifier sets the learning rate. */
bool sp_recipe_has_lr(const sp_recipe *r);
/* SetWeightDecayModifier: the weight decay at `epoch`. */
bool sp_recipe_weight_decay_at(const sp_recipe *r, double epoch, double *wd);
bool sp_recipe_has_weight_decay(const sp_recipe *r);

#ifdef __cplusplus
}
#endif
#endif
