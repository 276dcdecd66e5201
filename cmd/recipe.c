/*
 * sparsify recipe — list the bundled recipe templates, print one, or
 * validate a recipe file (or bundled name) and summarise its modifiers.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cli.h"

static const char usage_text[] =
    "usage: sparsify recipe list [--json]\n"
    "       sparsify recipe show NAME\n"
    "       sparsify recipe validate FILE|NAME [--json]\n"
    "\n"
    "  list              print the bundled recipe templates with a one-line summary\n"
    "  show NAME         print a bundled template's JSON (save it to start your own)\n"
    "  validate FILE     parse a recipe (a path or a bundled name) and summarise it;\n"
    "                    exit 2 with the modifier index, field and reason when invalid\n"
    "\n"
    "  --json            list, validate: print JSON on stdout\n"
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

static cJSON *names_json(char *const *l, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(l[i]));
    return a;
}

/* One modifier as JSON: its fields after defaults were applied. */
static cJSON *modifier_json(const sp_modifier *m)
{
    char pb[32];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", sp_modifier_type_str(m->type));
    cJSON_AddBoolToObject(o, "prunes", sp_modifier_prunes(m));
    cJSON_AddNumberToObject(o, "start_epoch", m->start_epoch);
    cJSON_AddNumberToObject(o, "end_epoch", m->end_epoch);
    if (m->type == SP_MOD_DISTILLATION) {
        cJSON_AddNumberToObject(o, "hardness", m->hardness);
        cJSON_AddNumberToObject(o, "temperature", m->temperature);
        if (m->teacher)
            cJSON_AddStringToObject(o, "teacher", m->teacher);
        return o;
    }
    cJSON_AddItemToObject(o, "params", names_json(m->params, m->nparams));
    cJSON_AddItemToObject(o, "ignore", names_json(m->ignore, m->nignore));
    if (!sp_modifier_prunes(m))
        return o;
    cJSON_AddNumberToObject(o, "init_sparsity", m->init_sparsity);
    cJSON_AddNumberToObject(o, "final_sparsity", m->final_sparsity);
    cJSON *ov = cJSON_AddArrayToObject(o, "per_layer");
    for (size_t i = 0; i < m->noverrides; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "sparsity", m->overrides[i].sparsity);
        cJSON_AddItemToObject(e, "params", names_json(m->overrides[i].params, m->overrides[i].nparams));
        cJSON_AddItemToArray(ov, e);
    }
    cJSON_AddStringToObject(o, "mask_type", sp_pattern_str(&m->mask_type, pb, sizeof pb));
    cJSON_AddStringToObject(o, "inter_func", sp_inter_func_str(m->inter_func));
    cJSON_AddNumberToObject(o, "update_frequency", m->update_frequency);
    cJSON_AddBoolToObject(o, "global_sparsity", m->global_sparsity);
    cJSON_AddBoolToObject(o, "leave_enabled", m->leave_enabled);
    cJSON_AddStringToObject(o, "block_score", m->block_score == SP_BLOCK_SCORE_L2 ? "l2" : "l1");
    return o;
}

static int print_json(cJSON *j)
{
    char *text = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!text) {
        cli_error("out of memory");
        return EXIT_FAILED;
    }
    printf("%s\n", text);
    cJSON_free(text);
    return EXIT_OK;
}

static int list(bool json)
{
    if (!json) {
        for (size_t i = 0; i < sp_recipe_bundled_count(); i++)
            printf("%-16s %s\n", sp_recipe_bundled_name(i), sp_recipe_bundled_summary(i));
        return EXIT_OK;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "recipes");
    for (size_t i = 0; i < sp_recipe_bundled_count(); i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", sp_recipe_bundled_name(i));
        cJSON_AddStringToObject(o, "summary", sp_recipe_bundled_summary(i));
        cJSON_AddItemToArray(arr, o);
    }
    return print_json(root);
}

static int validate(const char *what, bool json)
{
    sp_error err = {0};
    sp_recipe *r = NULL;
    if (sp_recipe_load(&r, what, &err)) {
        if (json) { /* the verdict on stdout too, for scripts that read only it */
            cJSON *root = cJSON_CreateObject();
            cJSON_AddStringToObject(root, "recipe", what);
            cJSON_AddFalseToObject(root, "ok");
            cJSON_AddStringToObject(root, "error", err.msg);
            print_json(root);
        }
        return cli_fail(&err);
    }
    int rc = EXIT_OK;
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "recipe", what);
        cJSON_AddTrueToObject(root, "ok");
        cJSON *arr = cJSON_AddArrayToObject(root, "modifiers");
        for (size_t i = 0; i < r->nmods; i++)
            cJSON_AddItemToArray(arr, modifier_json(&r->mods[i]));
        rc = print_json(root);
    } else {
        printf("ok: %zu modifier%s\n", r->nmods, r->nmods == 1 ? "" : "s");
        for (size_t i = 0; i < r->nmods; i++) {
            printf("  [%zu] ", i);
            describe(&r->mods[i], stdout);
            putchar('\n');
        }
    }
    sp_recipe_free(r);
    return rc;
}

int cmd_recipe(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    if (argc < 2)
        return cli_usage_error("recipe", "missing subcommand (list, show or validate)");
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    /* options anywhere after the subcommand; the rest are its arguments */
    bool json = false;
    const char *args[2];
    int nargs = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_unknown_option("recipe", argv[i], opts, "h");
        } else if (nargs < 2) {
            args[nargs++] = argv[i];
        } else {
            nargs++;
        }
    }
    if (!strcmp(sub, "list")) {
        if (nargs)
            return cli_usage_error("recipe", "'list' takes no arguments");
        return list(json);
    }
    if (!strcmp(sub, "show")) {
        if (nargs != 1)
            return cli_usage_error("recipe", "'show' takes one NAME");
        if (json)
            return cli_usage_error("recipe", "'show' prints the recipe's own JSON; --json is for "
                                             "list and validate");
        long i = sp_recipe_bundled_find(args[0]);
        if (i >= 0) {
            fputs(sp_recipe_bundled_text((size_t)i), stdout);
            return EXIT_OK;
        }
        const char *close = sp_recipe_bundled_closest(args[0]);
        if (close)
            cli_error("no bundled recipe named '%s' (did you mean '%s'?)", args[0], close);
        else
            cli_error("no bundled recipe named '%s' (see 'sparsify recipe list')", args[0]);
        return EXIT_USAGE;
    }
    if (!strcmp(sub, "validate")) {
        if (nargs != 1)
            return cli_usage_error("recipe", "'validate' takes one FILE or NAME");
        return validate(args[0], json);
    }
    const char *subs[] = {"list", "show", "validate"};
    const char *close = sp_closest_name(sub, subs, 3);
    if (close)
        return cli_usage_error("recipe", "unknown subcommand '%s' (did you mean '%s'?)", sub, close);
    return cli_usage_error("recipe", "unknown subcommand '%s' (list, show or validate)", sub);
}
