/* libFuzzer harness: recipes as users have them - YAML, Markdown recipe
 * cards, JSON - through sp_recipe_parse_ex, with and without --substitute,
 * then what the commands do with one: the owner of each tensor of a small
 * model, the pruning engine's rules, the training schedule, and the
 * normalised JSON, which must read back and convert to the same bytes (a
 * difference aborts: it is a bug even without a memory error). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparsify/recipe.h"

static const sp_recipe_tensor model[] = {
    {"model.embed_tokens.weight", SP_F32, 2},
    {"model.layers.0.self_attn.q_proj.weight", SP_F32, 2},
    {"model.layers.0.input_layernorm.weight", SP_F32, 1},
    {"model.layers.0.mlp.up_proj.weight", SP_BF16, 2},
    {"model.layers.0.mlp.up_proj.bias", SP_F32, 1},
    {"model.layers.1.mlp.down_proj.weight", SP_F32, 2},
    {"sections.0.0.conv1.weight", SP_F32, 4},
    {"lm_head.weight", SP_F32, 2},
    {"step", SP_I64, 0},
};
#define NMODEL (sizeof model / sizeof model[0])

static void use(const sp_recipe *r)
{
    long owner[NMODEL];
    double final[NMODEL], v;
    sp_error err;
    sp_recipe_problems p = {0};
    (void)sp_recipe_assign(r, model, NMODEL, ~0u, SP_RUN_ANY, owner, final, &p, &err);
    sp_recipe_problems_release(&p);
    (void)sp_recipe_assign(r, model, NMODEL, SP_MOD_PRUNING_TYPES, SP_RUN_ONESHOT, owner, NULL,
                           NULL, &err);
    sp_recipe_rules rr;
    if (sp_recipe_prune_rules(&rr, r, model, NMODEL, NULL, &err) == SP_OK)
        sp_recipe_rules_release(&rr);
    for (double e = -1; e < 40; e += 0.75) {
        (void)sp_recipe_lr_at(r, e, 7, &v);
        (void)sp_recipe_weight_decay_at(r, e, &v);
        for (size_t i = 0; i < r->nmods; i++)
            (void)sp_modifier_sparsity_at(&r->mods[i], model[1].name, e);
    }
    (void)sp_recipe_epochs(r, &v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int sub = 0; sub < 2; sub++) {
        sp_recipe *r = NULL, *r2 = NULL;
        sp_recipe_problems p;
        sp_recipe_opts o = {.substitute = sub == 1};
        sp_error err;
        char *j1 = NULL, *j2 = NULL;
        sp_status st = sp_recipe_parse_ex(&r, (const char *)data, size, &o, &p, &err);
        for (size_t i = 0; i < p.n; i++) { /* every problem prints */
            char buf[1024];
            (void)sp_recipe_problem_str(&p.v[i], buf, sizeof buf);
        }
        sp_recipe_problems_release(&p);
        if (st != SP_OK)
            continue;
        use(r);
        if (sp_recipe_to_json(r, &j1, &err) == SP_OK) {
            if (sp_recipe_parse_ex(&r2, j1, strlen(j1), &o, NULL, &err) != SP_OK) {
                fprintf(stderr, "the normalised recipe does not read back: %s\n%s\n", err.msg, j1);
                abort();
            }
            if (sp_recipe_to_json(r2, &j2, &err) == SP_OK && strcmp(j1, j2)) {
                fprintf(stderr, "the normalised recipe converts differently:\n%s\n%s\n", j1, j2);
                abort();
            }
        }
        free(j1);
        free(j2);
        sp_recipe_free(r2);
        sp_recipe_free(r);
    }
    return 0;
}
