/*
 * sparsify — recipes: JSON files of pruning modifiers (docs/recipes.md).
 *
 *   {"version": 1, "modifiers": [{"type": "GMPruningModifier", ...}, ...]}
 *
 * SparseML class and field names are accepted so users can port recipes.
 * Bundled templates ("unstructured-90", "2:4", ...) are compiled into the
 * library and usable by name wherever a recipe path is accepted.
 */
#ifndef SPARSIFY_RECIPE_H
#define SPARSIFY_RECIPE_H

#include "sparsify/common.h"
#include "sparsify/prune.h"

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
} sp_modifier_type;

/* A per-layer override from a map-valued final_sparsity. */
typedef struct sp_sparsity_override {
    double sparsity;
    char **params; /* exact names or "re:REGEX" */
    sp_regex **params_re; /* compiled "re:" entries, NULL for the others */
    size_t nparams;
} sp_sparsity_override;

typedef struct sp_modifier {
    sp_modifier_type type;
    char **params;       /* exact names, "re:REGEX" (Python syntax, see
                            sp_regex_new; anchored at the start like
                            SparseML's re.match), or "__ALL_PRUNABLE__";
                            empty = __ALL_PRUNABLE__ */
    sp_regex **params_re; /* compiled "re:" entries, NULL for the others */
    size_t nparams;
    char **ignore;       /* same syntax; matching tensors are skipped */
    sp_regex **ignore_re;
    size_t nignore;
    double init_sparsity;  /* default 0 (GMP/movement), = final for one-shot */
    double final_sparsity; /* for N:M mask types: 1 - N/M */
    sp_sparsity_override *overrides; /* from a map-valued final_sparsity */
    size_t noverrides;
    double start_epoch, end_epoch; /* default 0, start (one-shot); constant and
                                      distillation accept end_epoch -1 = until
                                      the end of training */
    double update_frequency;       /* epochs; default 1 */
    sp_inter_func inter_func;      /* default cubic */
    sp_pattern mask_type;          /* default unstructured */
    sp_block_score block_score;    /* "block_score": "l1" (default) | "l2" */
    sp_score_kind score;           /* "score": "magnitude" (default) | "wanda"
                                      (one-shot only; needs calibration data) */
    bool leave_enabled;            /* default true */
    bool global_sparsity;          /* true for GlobalMagnitudePruningModifier */
    /* distillation */
    double hardness;    /* default 0.5 */
    double temperature; /* default 2.0 */
    char *teacher;      /* "teacher" string as given, NULL when absent */
} sp_modifier;

typedef struct sp_recipe {
    int version;
    sp_modifier *mods;
    size_t nmods;
} sp_recipe;

/* Parse JSON text. Returns a new recipe in *out; free with sp_recipe_free.
 * Errors (SP_ERR_INVALID_ARG) name the modifier index, the field and why:
 * "modifiers[1].final_sparsity: 1.5 is out of range [0, 1]". */
sp_status sp_recipe_parse(sp_recipe **out, const char *json, size_t len, sp_error *err);
/* Load from a file path, or from a bundled template when `name` has no '/'
 * and no ".json" suffix and names one. Errors: SP_ERR_NOT_FOUND, IO, parse. */
sp_status sp_recipe_load(sp_recipe **out, const char *path_or_name, sp_error *err);
void sp_recipe_free(sp_recipe *r); /* accepts NULL */

/* Bundled templates: count, name, one-line description, JSON text. */
size_t sp_recipe_bundled_count(void);
const char *sp_recipe_bundled_name(size_t i);
const char *sp_recipe_bundled_summary(size_t i);
const char *sp_recipe_bundled_text(size_t i);
/* Index of the bundled template called name (or an alias, "nm-2-4"), or -1. */
long sp_recipe_bundled_find(const char *name);
/* The bundled name closest to a misspelt one ("unstructred-90"), or NULL. */
const char *sp_recipe_bundled_closest(const char *name);

/* Does modifier m target this tensor? (params/ignore; __ALL_PRUNABLE__ and an
 * empty params list mean sp_select_default). Errors: a "re:" pattern that
 * hits the backtracking limits (sp_regex_match). */
sp_status sp_modifier_select(const sp_modifier *m, const char *name, sp_dtype dtype, int ndim,
                             bool *targets, sp_error *err);
/* The same as a plain answer: false also when a pattern fails to run, so
 * callers that must report that use sp_modifier_select. */
bool sp_modifier_targets(const sp_modifier *m, const char *name, sp_dtype dtype, int ndim);
/* The final sparsity for this tensor (override map first, then
 * final_sparsity). Errors as sp_modifier_select. */
sp_status sp_modifier_target_sparsity(const sp_modifier *m, const char *name, double *final,
                                      sp_error *err);
/* The same, final_sparsity when a pattern fails to run. */
double sp_modifier_final_for(const sp_modifier *m, const char *name);
/* Scheduled sparsity for this tensor at `epoch` (init -> final_for). */
double sp_modifier_sparsity_at(const sp_modifier *m, const char *name, double epoch);
/* Whether this modifier prunes (everything except distillation/constant). */
bool sp_modifier_prunes(const sp_modifier *m);
const char *sp_modifier_type_str(sp_modifier_type t);

#ifdef __cplusplus
}
#endif
#endif
