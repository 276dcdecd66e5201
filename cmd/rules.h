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
} rules_opts;

typedef struct rules {
    sp_recipe *recipe;
    sp_selector selector;
    bool have_selector;
    sp_prune_rule *rules;
    size_t n;
} rules;

/* Build rules; prints the error and returns an exit code != 0 on failure. */
int rules_build(rules *r, const rules_opts *o, const char *cmd);
void rules_release(rules *r);

#endif
