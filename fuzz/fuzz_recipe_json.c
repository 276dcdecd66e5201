/* libFuzzer harness: JSON recipes through the public parser
 * (sp_recipe_parse), then every modifier asked what it targets and its
 * sparsity schedule, as prune and finetune do. */
#include "sparsify/sparsify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_recipe *r = NULL;
    sp_error err;
    if (sp_recipe_parse(&r, (const char *)data, size, &err) != SP_OK)
        return 0;
    static const char *names[] = {"fc1.weight", "layers.3.mlp.down_proj.weight", "lm_head.weight",
                                  "bn.running_mean"};
    for (size_t i = 0; i < r->nmods; i++) {
        const sp_modifier *m = &r->mods[i];
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
            (void)sp_modifier_targets(m, names[k], SP_F32, 2);
            (void)sp_modifier_final_for(m, names[k]);
            for (double e = -1; e < 12; e += 1.5)
                (void)sp_modifier_sparsity_at(m, names[k], e);
        }
        (void)sp_modifier_prunes(m);
        (void)sp_modifier_type_str(m->type);
    }
    sp_recipe_free(r);
    return 0;
}
