/*
 * sparsify recipe — list the bundled recipe templates, print one, or
 * validate a recipe file (or bundled name) and summarise its modifiers.
 */
#include <stdio.h>
#include <string.h>

#include "cmd/cli.h"

static const char usage_text[] =
    "usage: sparsify recipe list\n"
    "       sparsify recipe show NAME\n"
    "       sparsify recipe validate FILE|NAME\n"
    "\n"
    "  list              print the bundled recipe templates with a one-line summary\n"
    "  show NAME         print a bundled template's JSON (save it to start your own)\n"
    "  validate FILE     parse a recipe (a path or a bundled name) and summarise it;\n"
    "                    exit 2 with the modifier index, field and reason when invalid\n"
    "\n"
    "  -h, --help        show this help\n"
    "\n"
    "Recipes are JSON; the schema is in docs/recipes.md. Any command that takes\n"
    "--recipe accepts a bundled name as well as a path.\n";

static void describe(const sp_modifier *m, FILE *f)
{
    char pb[32];
    fprintf(f, "%s", sp_modifier_type_str(m->type));
    if (sp_modifier_prunes(m)) {
        sp_pattern_str(&m->mask_type, pb, sizeof pb);
        if (m->noverrides) {
            fprintf(f, " %zu per-layer sparsities (max %g)", m->noverrides, m->final_sparsity);
        } else {
            fprintf(f, " %g", m->final_sparsity);
        }
        fprintf(f, " %s", pb);
        if (m->global_sparsity)
            fprintf(f, " global");
        if (m->end_epoch > m->start_epoch)
            fprintf(f, " %s from %g at epoch %g to epoch %g every %g", sp_inter_func_str(m->inter_func),
                    m->init_sparsity, m->start_epoch, m->end_epoch, m->update_frequency);
        else
            fprintf(f, " one-shot at epoch %g", m->start_epoch);
    } else if (m->type == SP_MOD_DISTILLATION) {
        fprintf(f, " hardness %g temperature %g", m->hardness, m->temperature);
    } else {
        fprintf(f, " keeps masks from epoch %g", m->start_epoch);
    }
    if (m->nparams) {
        fprintf(f, " params %s", m->params[0]);
        if (m->nparams > 1)
            fprintf(f, " (+%zu more)", m->nparams - 1);
    } else if (m->type != SP_MOD_DISTILLATION) {
        fprintf(f, " params __ALL_PRUNABLE__");
    }
    if (m->nignore)
        fprintf(f, " ignoring %zu", m->nignore);
}

int cmd_recipe(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("recipe", "missing subcommand (list, show or validate)");
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage_error("recipe", "unknown option '%s'", argv[i]);
        }
    if (!strcmp(sub, "list")) {
        if (argc != 2)
            return cli_usage_error("recipe", "'list' takes no arguments");
        for (size_t i = 0; i < sp_recipe_bundled_count(); i++)
            printf("%-16s %s\n", sp_recipe_bundled_name(i), sp_recipe_bundled_summary(i));
        return EXIT_OK;
    }
    if (!strcmp(sub, "show")) {
        if (argc != 3)
            return cli_usage_error("recipe", "'show' takes one NAME");
        for (size_t i = 0; i < sp_recipe_bundled_count(); i++) {
            const char *n = sp_recipe_bundled_name(i);
            if (!strcmp(argv[2], n) || (!strcmp(argv[2], "nm-2-4") && !strcmp(n, "2:4"))) {
                fputs(sp_recipe_bundled_text(i), stdout);
                return EXIT_OK;
            }
        }
        cli_error("no bundled recipe named '%s' (see 'sparsify recipe list')", argv[2]);
        return EXIT_USAGE;
    }
    if (!strcmp(sub, "validate")) {
        if (argc != 3)
            return cli_usage_error("recipe", "'validate' takes one FILE or NAME");
        sp_error err = {0};
        sp_recipe *r = NULL;
        if (sp_recipe_load(&r, argv[2], &err))
            return cli_fail(&err);
        printf("ok: %zu modifier%s\n", r->nmods, r->nmods == 1 ? "" : "s");
        for (size_t i = 0; i < r->nmods; i++) {
            printf("  [%zu] ", i);
            describe(&r->mods[i], stdout);
            putchar('\n');
        }
        sp_recipe_free(r);
        return EXIT_OK;
    }
    return cli_usage_error("recipe", "unknown subcommand '%s' (list, show or validate)", sub);
}
