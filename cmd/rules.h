/*
 * Options shared by `prune` and `check`: turn --recipe or
 * --sparsity/--pattern/--scope/--include/--exclude into pruning rules.
 */
#ifndef SPARSIFY_CMD_RULES_H
#define SPARSIFY_CMD_RULES_H

#include "cmd/cli.h"
#include "sparsify/prune_ckpt.h"

#define RULES_MAX_RE 64

typedef struct rules_opts {
    const char *recipe;
    const char *sparsity; /* text, parsed later */
    const char *pattern;
    const char *scope;
    const char *block_score;
    const char *include[RULES_MAX_RE];
    size_t ninclude;
    const char *exclude[RULES_MAX_RE];
    size_t nexclude;
    bool apply; /* prune (not check): refuse modifiers that need training */
    bool substitute; /* --substitute: the closest modifier for unimplemented ones */
} rules_opts;

typedef struct rules {
    sp_recipe *recipe;
    const char *recipe_name;
    sp_recipe_rules rr;   /* the recipe's rules, once bound to a checkpoint */
    sp_selector selector;
    bool have_selector;
    sp_prune_rule *rules;
    size_t n;
} rules;

/* getopt codes of the long-only shared options; commands number theirs
 * from RULES_OPT_END. */
enum { RULES_OPT_SCOPE = 256, RULES_OPT_BLOCK_SCORE, RULES_OPT_SUBSTITUTE, RULES_OPT_END };

/* Take one getopt result: returns -1 when c is not a rule option (the
 * caller handles it), 0 when taken, or an exit code after an error. Rule
 * options: -s -p -i -x -r, --scope, --block-score, --substitute. */
int rules_opt(rules_opts *o, int c, const char *arg, const char *cmd);

/* Build rules; prints the error and returns an exit code != 0 on failure.
 * A recipe's rules name tensors, so they are complete after rules_bind. */
int rules_build(rules *r, const rules_opts *o, const char *cmd);
/* Resolve a recipe's modifiers against the checkpoint's tensors (nothing
 * to do for --sparsity rules). Prints warnings and errors; returns an exit
 * code. */
int rules_bind(rules *r, sp_ckpt *ck);
void rules_release(rules *r);

#endif
