/*
 * recipes/ internals: a recipe file as a tree of nodes, whatever it was
 * written in (docs/recipes.md, "Files"):
 *
 *   - YAML (libyaml's event parser): anchors and aliases expanded, local
 *     tags kept ("!GMPruningModifier" -> tag "GMPruningModifier"), YAML 1.1
 *     merge keys ("<<: *base") applied, plain scalars resolved to null,
 *     booleans and numbers as PyYAML's safe_load does (plus "1e-5" without
 *     a dot, which PyYAML would leave a string);
 *   - a Markdown recipe card: the YAML front matter between the first two
 *     "---" lines (blank lines and HTML comments may come before it);
 *   - JSON: the YAML parser reads it; JSON that libyaml refuses (tabs in
 *     odd places, surrogate pairs) is read by cJSON, without line numbers.
 *
 * The format is found from the content (rdoc_sniff), not the file name.
 * Every node knows its line and column in the file, so problems found later
 * can say where. Duplicate keys are problems, not "last one wins".
 */
#ifndef SPARSIFY_RECIPES_DOC_H
#define SPARSIFY_RECIPES_DOC_H

#include <stdbool.h>
#include <stddef.h>

#include "sparsify/recipe.h"

typedef enum rkind {
    RK_NULL = 0,
    RK_BOOL,
    RK_NUM,
    RK_STR,
    RK_SEQ,
    RK_MAP,
    RK_BAD, /* a value whose problem was already reported (an eval that failed) */
} rkind;

typedef struct rnode rnode;
struct rnode {
    rkind kind;
    int line, col;  /* 1-based position in the file; 0 when unknown */
    char *tag;      /* local tag without '!' ("GMPruningModifier"), or NULL */
    char *text;     /* RK_STR: the string; RK_NUM, RK_BOOL: as written */
    bool quoted;    /* RK_STR: a quoted scalar (never an eval() or a name) */
    double num;     /* RK_NUM */
    bool is_int;    /* RK_NUM: written as an integer */
    bool b;         /* RK_BOOL */
    size_t n;       /* items (RK_SEQ) or entries (RK_MAP) */
    rnode **items;  /* RK_SEQ: items; RK_MAP: values */
    rnode **keys;   /* RK_MAP: keys (scalars; key->text is the key) */
};

/* Problems found while reading, evaluating and checking a recipe. */
typedef struct rdiag {
    sp_recipe_problem *v;
    size_t n, cap;
    size_t errors;
    size_t dropped; /* problems past the cap, counted only */
    bool nomem;
} rdiag;

#define RDIAG_MAX 1000

/* Record a problem at (line, col) of the file; path may be NULL or "". */
void rdiag_add(rdiag *d, bool warning, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
void rdiag_release(rdiag *d);

typedef enum rformat { RF_YAML = 0, RF_JSON = 1, RF_MARKDOWN = 2 } rformat;
const char *rformat_name(rformat f);

/* Parse a recipe file's text into *out (a new tree; free with rnode_free).
 * Problems go to d; returns false when nothing usable came out (a syntax
 * error: one problem naming the line). *fmt gets the format found. */
bool rdoc_parse(rnode **out, const char *text, size_t len, rformat *fmt, rdiag *d);

void rnode_free(rnode *n); /* accepts NULL */
/* Deep copy; NULL when out of memory. */
rnode *rnode_clone(const rnode *n);
/* The value of key k in map m, or NULL (m may be NULL or not a map). */
rnode *rnode_get(const rnode *m, const char *k);
/* "a string", "a number", "a list", ... for messages. */
const char *rnode_kind_name(const rnode *n);
/* Node helpers used by the evaluator and the modifiers. */
rnode *rnode_new(rkind kind, int line, int col);
rnode *rnode_new_num(double v, bool is_int, int line, int col);
rnode *rnode_new_str(const char *s, int line, int col);

#endif
