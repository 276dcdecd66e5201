/* Options shared by `prune` and `check` (see rules.h). */
#include "cmd/rules.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int rules_opt(rules_opts *o, int c, const char *arg, const char *cmd)
{
    switch (c) {
    case 's': o->sparsity = arg; return 0;
    case 'p': o->pattern = arg; return 0;
    case 'r': o->recipe = arg; return 0;
    case RULES_OPT_SCOPE: o->scope = arg; return 0;
    case RULES_OPT_BLOCK_SCORE: o->block_score = arg; return 0;
    case RULES_OPT_SUBSTITUTE: o->substitute = true; return 0;
    case 'i':
        if (o->ninclude == RULES_MAX_RE)
            return cli_usage_error(cmd, "too many --include options");
        o->include[o->ninclude++] = arg;
        return 0;
    case 'x':
        if (o->nexclude == RULES_MAX_RE)
            return cli_usage_error(cmd, "too many --exclude options");
        o->exclude[o->nexclude++] = arg;
        return 0;
    }
    return -1;
}

int rules_build(rules *r, const rules_opts *o, const char *cmd)
{
    sp_error err = {0};
    memset(r, 0, sizeof *r);
    if (o->recipe) {
        if (o->sparsity || o->pattern || o->scope || o->ninclude || o->nexclude)
            return cli_usage_error(cmd, "--recipe cannot be combined with --sparsity, --pattern, "
                                        "--scope, --include or --exclude");
        int rc = cli_recipe_load(&r->recipe, o->recipe, o->substitute);
        if (rc)
            return rc; /* every problem printed, naming the recipe */
        r->recipe_name = o->recipe;
        size_t npruning = 0;
        for (size_t i = 0; i < r->recipe->nmods; i++)
            npruning += sp_modifier_prunes(&r->recipe->mods[i]);
        if (npruning == 0)
            return cli_usage_error(cmd, "recipe '%s' has no pruning modifier%s", o->recipe,
                                   o->apply ? " (a training recipe: run it with 'sparsify "
                                              "finetune MODEL --recipe')"
                                            : "");
        for (size_t i = 0; o->apply && i < r->recipe->nmods; i++)
            if (r->recipe->mods[i].type == SP_MOD_MOVEMENT) {
                /* movement scores come from gradients: pruning by magnitude
                 * instead would be a different model than the recipe asks */
                cli_error("recipe '%s': %s is a MovementPruningModifier, which needs "
                          "gradients; run it with 'sparsify finetune MODEL --recipe %s'",
                          o->recipe, r->recipe->mods[i].where, o->recipe);
                return EXIT_USAGE;
            }
        return EXIT_OK;
    }
    if (o->substitute)
        return cli_usage_error(cmd, "--substitute applies to --recipe");

    sp_prune_rule rule = {0};
    if (sp_pattern_parse(&rule.pattern, o->pattern ? o->pattern : "unstructured", &err)) {
        sp_error_prefix(&err, "--pattern");
        return cli_fail(&err);
    }
    double implied = sp_pattern_implied_sparsity(&rule.pattern);
    if (o->sparsity) {
        double s;
        if (!cli_parse_double("--sparsity", o->sparsity, &s))
            return EXIT_USAGE;
        if (s > 1.0 && s <= 100.0)
            return cli_usage_error(cmd, "--sparsity %s is out of range [0, 1] (did you mean %g?)",
                                   o->sparsity, s / 100.0);
        if (!(s >= 0.0 && s <= 1.0))
            return cli_usage_error(cmd, "--sparsity %s is out of range [0, 1]", o->sparsity);
        if (implied >= 0 && fabs(s - implied) > 1e-9)
            return cli_usage_error(cmd,
                                   "--sparsity %s does not match pattern %s (it implies %g: at "
                                   "most N nonzeros in every M weights)",
                                   o->sparsity, o->pattern, implied);
        rule.sparsity = s;
    } else if (implied >= 0) {
        rule.sparsity = implied;
    } else {
        return cli_usage_error(cmd, "--sparsity or --recipe is required");
    }
    if (o->scope && strcmp(o->scope, "layer") && strcmp(o->scope, "global"))
        return cli_usage_error(cmd, "--scope must be 'layer' or 'global', not '%s'", o->scope);
    rule.global = o->scope && !strcmp(o->scope, "global");
    if (rule.global && implied >= 0)
        return cli_usage_error(cmd, "--scope global does not apply to N:M patterns");
    if (o->block_score) {
        if (!strcmp(o->block_score, "l1"))
            rule.bscore = SP_BLOCK_SCORE_L1;
        else if (!strcmp(o->block_score, "l2"))
            rule.bscore = SP_BLOCK_SCORE_L2;
        else
            return cli_usage_error(cmd, "--block-score must be 'l1' or 'l2'");
    }
    if (sp_selector_init(&r->selector, o->include, o->ninclude, o->exclude, o->nexclude, &err))
        return cli_fail(&err);
    r->have_selector = true;
    rule.selector = &r->selector;
    r->rules = malloc(sizeof *r->rules);
    if (!r->rules) {
        cli_error("out of memory");
        return EXIT_FAILED;
    }
    r->rules[0] = rule;
    r->n = 1;
    return EXIT_OK;
}

int rules_bind(rules *r, sp_ckpt *ck)
{
    if (!r->recipe)
        return EXIT_OK;
    size_t n = sp_ckpt_num_tensors(ck);
    sp_recipe_tensor *t = malloc((n ? n : 1) * sizeof *t);
    if (!t) {
        cli_error("out of memory");
        return EXIT_FAILED;
    }
    for (size_t i = 0; i < n; i++) {
        const sp_tensor *ti = sp_ckpt_tensor(ck, i);
        t[i] = (sp_recipe_tensor){ti->name, ti->dtype, ti->ndim};
    }
    sp_recipe_problems probs = {0};
    sp_error err = {0};
    sp_status st = sp_recipe_prune_rules(&r->rr, r->recipe, t, n, &probs, &err);
    free(t);
    cli_recipe_problems(r->recipe_name, probs.v, probs.n, false);
    sp_recipe_problems_release(&probs);
    if (st) {
        sp_error_prefix(&err, "recipe '%s'", r->recipe_name);
        return cli_fail(&err);
    }
    r->rules = r->rr.rules;
    r->n = r->rr.n;
    return EXIT_OK;
}

void rules_release(rules *r)
{
    if (r->have_selector)
        sp_selector_release(&r->selector);
    if (r->rules != r->rr.rules)
        free(r->rules);
    sp_recipe_rules_release(&r->rr);
    sp_recipe_free(r->recipe);
    memset(r, 0, sizeof *r);
}
