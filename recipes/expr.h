/*
 * recipes/ internals: the eval(...) expressions of SparseML recipes.
 *
 * A small arithmetic evaluator with Python's meaning for what it accepts,
 * and nothing else: numbers (int and float, as Python writes them),
 * variables, + - * / // % ** with Python's precedence and rounding (/ is
 * true division, // and % floor, ** binds tighter than a unary minus on its
 * left), parentheses, and the calls min, max, int, float, abs, round
 * (SparseML's restricted_eval allows the same six). Nothing is executed:
 * there are no attributes, strings, comparisons, subscripts or other calls.
 * Integers are 64-bit: a result that does not fit is an error, where Python
 * would grow the integer.
 */
#ifndef SPARSIFY_RECIPES_EXPR_H
#define SPARSIFY_RECIPES_EXPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "recipes/doc.h"

typedef struct expr_value {
    bool is_int;
    int64_t i; /* is_int */
    double f;  /* !is_int */
} expr_value;

typedef enum expr_status {
    EXPR_OK = 0,
    EXPR_UNKNOWN = 1, /* a variable the lookup does not know: its name is in
                         the message buffer's `unknown` (try again later) */
    EXPR_ERROR = 2,   /* anything else: the message says what and where */
} expr_status;

/* A variable's value: a node, or NULL when the name is unknown (yet). A
 * node of kind RK_BAD (a variable whose own evaluation failed, already
 * reported) fails the expression with an empty message. */
typedef const rnode *(*expr_lookup_fn)(void *ctx, const char *name);

/* Evaluate src. msg (msglen bytes) gets the reason on EXPR_ERROR ("division
 * by zero", "unknown variable 'x'", "'pow' is not allowed (...)") and the
 * variable's name on EXPR_UNKNOWN. */
expr_status expr_eval(const char *src, expr_lookup_fn lookup, void *ctx, expr_value *out, char *msg,
                      size_t msglen);

/* The value as a double. */
double expr_to_double(const expr_value *v);

/* Is s "eval(...)"? Sets *inner / *inner_len to what is inside. */
bool expr_is_eval(const char *s, const char **inner, size_t *inner_len);

#endif
