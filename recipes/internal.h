/*
 * recipes/ internals shared by recipe.c (the file's structure: variables,
 * groups, stages), modifiers.c (one modifier's class and fields) and
 * targets.c (params/ignore entries and who owns which tensor).
 */
#ifndef SPARSIFY_RECIPES_INTERNAL_H
#define SPARSIFY_RECIPES_INTERNAL_H

#include "recipes/doc.h"
#include "sparsify/recipe.h"

/* Where a modifier is and what surrounds it, for parsing it. */
typedef struct rmod_ctx {
    rdiag *d;
    const sp_recipe_opts *opts;
    const char *where;   /* "pruning_modifiers[0]" */
    int line, col;       /* the modifier's position */
    const char *stage;   /* NULL outside stages */
    sp_run_type run;
    bool type_field;     /* the class came from the fields' "type" */
    size_t unsupported;  /* errors that only name an unimplemented modifier */
} rmod_ctx;

/* Parse one modifier of class `cls` (as written: a tag, a key or "type")
 * with its evaluated fields (a map, or NULL for none) into m (zeroed by the
 * caller). Problems go to c->d; returns false when the modifier has errors
 * (m is then released and zeroed). */
bool rmod_parse(rmod_ctx *c, const char *cls, const rnode *cls_node, const rnode *fields,
                sp_modifier *m);
void rmod_release(sp_modifier *m);

/* Compile a params-like value (a string or a list of strings; empty lists
 * allowed when allow_empty) into terms. Problems go to d with path. */
bool rterms_parse(sp_recipe_terms *t, const rnode *v, bool allow_empty, rdiag *d, const char *path);
void rterms_release(sp_recipe_terms *t);

/* The canonical name of a modifier class, or NULL ("!GMPruningModifier",
 * "gradual_magnitude" -> "GMPruningModifier"). */
const char *rmod_class_name(const char *written);

/* A JSON number that reads back as exactly v (cJSON's own printing rounds
 * to 15 digits when that is "close enough"); null when v is not finite. */
struct cJSON *rjson_number(double v);

#endif
