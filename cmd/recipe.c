/*
 * sparsify recipe — list the bundled recipe templates, print one, validate
 * a recipe (every problem, with its line), or convert one to sparsify's
 * normalised JSON.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"

static const char usage_text[] =
    "usage: sparsify recipe list [--json]\n"
    "       sparsify recipe show NAME\n"
    "       sparsify recipe validate FILE|NAME [--substitute] [--json]\n"
    "       sparsify recipe convert FILE|NAME [-o OUT.json] [--force] [--substitute]\n"
    "\n"
    "  list              print the bundled recipe templates with a one-line summary\n"
    "  show NAME         print a bundled template's JSON (save it to start your own)\n"
    "  validate FILE     read a recipe (a path or a bundled name) and summarise its\n"
    "                    modifiers; exit 2 listing every problem with its line,\n"
    "                    field and reason\n"
    "  convert FILE      print the normalised recipe as JSON (variables evaluated,\n"
    "                    groups and stages flattened, SparseML field names,\n"
    "                    defaults written out), or write it to OUT\n"
    "\n"
    "  -o, --output OUT  convert: write OUT instead of stdout\n"
    "      --force       convert: replace OUT if it exists\n"
    "      --substitute  validate, convert: take the closest modifier sparsify has\n"
    "                    for one it does not implement (SparseGPT, OBS, M-FAC, ...)\n"
    "      --json        list, validate: print JSON on stdout\n"
    "  -h, --help        show this help\n"
    "\n"
    "Recipes are SparseML / llm-compressor YAML, Markdown recipe cards with YAML\n"
    "front matter, or JSON (docs/recipes.md). Any command that takes --recipe\n"
    "accepts a bundled name as well as a path.\n";

static void describe(const sp_modifier *m, FILE *f)
{
    char pb[32];
    fprintf(f, "%s", m->cls ? m->cls : sp_modifier_type_str(m->type));
    switch (m->type) {
    case SP_MOD_MAGNITUDE:
    case SP_MOD_GMP:
    case SP_MOD_GLOBAL_MAGNITUDE:
    case SP_MOD_MOVEMENT:
        sp_pattern_str(&m->mask_type, pb, sizeof pb);
        if (m->noverrides)
            fprintf(f, " %zu per-layer sparsities (max %g)", m->noverrides, m->final_sparsity);
        else
            fprintf(f, " %g", m->final_sparsity);
        fprintf(f, " %s", pb);
        if (m->global_sparsity)
            fprintf(f, " global");
        if (m->type == SP_MOD_MOVEMENT && m->soft_mask)
            fprintf(f, " soft");
        if (m->end_epoch > m->start_epoch)
            fprintf(f, " %s from %g at epoch %g to epoch %g every %g",
                    sp_inter_func_str(m->inter_func), m->init_sparsity, m->start_epoch,
                    m->end_epoch, m->update_frequency);
        else
            fprintf(f, " one-shot at epoch %g", m->start_epoch);
        break;
    case SP_MOD_CONSTANT:
        fprintf(f, " keeps masks from epoch %g", m->start_epoch);
        break;
    case SP_MOD_DISTILLATION:
        fprintf(f, " hardness %g temperature %g", m->hardness, m->temperature);
        break;
    case SP_MOD_EPOCH_RANGE:
        fprintf(f, " epochs %g to %g", m->start_epoch, m->end_epoch);
        break;
    case SP_MOD_SET_LR:
        fprintf(f, " lr %g from epoch %g", m->learning_rate, m->start_epoch);
        break;
    case SP_MOD_LR_FUNCTION:
        fprintf(f, " %s lr %g -> %g, epochs %g to %g",
                m->lr_func == SP_LRF_COSINE          ? "cosine"
                : m->lr_func == SP_LRF_CYCLIC_LINEAR ? "cyclic_linear"
                                                     : "linear",
                m->init_lr, m->final_lr, m->start_epoch, m->end_epoch);
        break;
    case SP_MOD_LR_SCHEDULE:
        fprintf(f, " %s lr %g gamma %g from epoch %g",
                m->lr_class == SP_LRC_MULTISTEP     ? "MultiStepLR"
                : m->lr_class == SP_LRC_EXPONENTIAL ? "ExponentialLR"
                                                    : "StepLR",
                m->init_lr, m->gamma, m->start_epoch);
        break;
    case SP_MOD_SET_WEIGHT_DECAY:
        fprintf(f, " weight decay %g from epoch %g", m->weight_decay, m->start_epoch);
        break;
    case SP_MOD_NOT_APPLIED:
        fprintf(f, " not applied");
        break;
    }
    if (sp_modifier_prunes(m) || m->type == SP_MOD_CONSTANT) {
        if (m->params.n) {
            fprintf(f, " params %s", m->params.text[0]);
            if (m->params.n > 1)
                fprintf(f, " (+%zu more)", m->params.n - 1);
        } else {
            fprintf(f, " params __ALL_PRUNABLE__");
        }
        if (m->ignore.n)
            fprintf(f, " ignoring %zu", m->ignore.n);
    }
    if (m->substitute_for)
        fprintf(f, " (for %s)", m->substitute_for);
    if (m->stage)
        fprintf(f, " [stage %s]", m->stage);
}

static cJSON *terms_json(const sp_recipe_terms *t)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < t->n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(t->text[i]));
    return a;
}

/* One modifier as JSON for validate --json: what sparsify will do. */
static cJSON *modifier_json(const sp_modifier *m)
{
    char pb[32];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", m->cls ? m->cls : sp_modifier_type_str(m->type));
    cJSON_AddStringToObject(o, "where", m->where ? m->where : "");
    cJSON_AddNumberToObject(o, "line", m->line);
    if (m->stage)
        cJSON_AddStringToObject(o, "stage", m->stage);
    if (m->substitute_for)
        cJSON_AddStringToObject(o, "substitute_for", m->substitute_for);
    cJSON_AddBoolToObject(o, "prunes", sp_modifier_prunes(m));
    cJSON_AddBoolToObject(o, "applied", m->type != SP_MOD_NOT_APPLIED);
    cJSON_AddNumberToObject(o, "start_epoch", m->start_epoch);
    cJSON_AddNumberToObject(o, "end_epoch", m->end_epoch);
    if (m->type == SP_MOD_DISTILLATION) {
        cJSON_AddNumberToObject(o, "hardness", m->hardness);
        cJSON_AddNumberToObject(o, "temperature", m->temperature);
        if (m->teacher)
            cJSON_AddStringToObject(o, "teacher", m->teacher);
        return o;
    }
    if (m->type == SP_MOD_SET_LR)
        cJSON_AddNumberToObject(o, "learning_rate", m->learning_rate);
    if (m->type == SP_MOD_LR_FUNCTION || m->type == SP_MOD_LR_SCHEDULE)
        cJSON_AddNumberToObject(o, "init_lr", m->init_lr);
    if (m->type == SP_MOD_LR_FUNCTION)
        cJSON_AddNumberToObject(o, "final_lr", m->final_lr);
    if (m->type == SP_MOD_SET_WEIGHT_DECAY)
        cJSON_AddNumberToObject(o, "weight_decay", m->weight_decay);
    if (!sp_modifier_prunes(m) && m->type != SP_MOD_CONSTANT)
        return o;
    cJSON_AddItemToObject(o, "params", terms_json(&m->params));
    cJSON_AddItemToObject(o, "ignore", terms_json(&m->ignore));
    if (!sp_modifier_prunes(m))
        return o;
    cJSON_AddNumberToObject(o, "init_sparsity", m->init_sparsity);
    cJSON_AddNumberToObject(o, "final_sparsity", m->final_sparsity);
    cJSON *ov = cJSON_AddArrayToObject(o, "per_layer");
    for (size_t i = 0; i < m->noverrides; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "sparsity", m->overrides[i].sparsity);
        cJSON_AddItemToObject(e, "params", terms_json(&m->overrides[i].params));
        cJSON_AddItemToArray(ov, e);
    }
    cJSON_AddStringToObject(o, "mask_type", sp_pattern_str(&m->mask_type, pb, sizeof pb));
    cJSON_AddStringToObject(o, "inter_func", sp_inter_func_str(m->inter_func));
    cJSON_AddNumberToObject(o, "update_frequency", m->update_frequency);
    cJSON_AddBoolToObject(o, "global_sparsity", m->global_sparsity);
    cJSON_AddBoolToObject(o, "leave_enabled", m->leave_enabled);
    cJSON_AddStringToObject(o, "block_score", m->block_score == SP_BLOCK_SCORE_L2 ? "l2" : "l1");
    if (m->type == SP_MOD_MOVEMENT)
        cJSON_AddStringToObject(o, "mask_mode", m->soft_mask ? "soft" : "hard");
    return o;
}

static cJSON *problems_json(const sp_recipe_problem *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "severity", v[i].warning ? "warning" : "error");
        cJSON_AddNumberToObject(e, "line", v[i].line);
        cJSON_AddNumberToObject(e, "column", v[i].column);
        cJSON_AddStringToObject(e, "path", v[i].path);
        cJSON_AddStringToObject(e, "message", v[i].message);
        cJSON_AddItemToArray(a, e);
    }
    return a;
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

static int validate(const char *what, bool json, bool substitute)
{
    sp_error err = {0};
    sp_recipe *r = NULL;
    sp_recipe_problems probs = {0};
    sp_recipe_opts opts = {.substitute = substitute};
    sp_status st = sp_recipe_load_ex(&r, what, &opts, &probs, &err);
    if (json) { /* the verdict on stdout too, for scripts that read only it */
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "recipe", what);
        cJSON_AddBoolToObject(root, "ok", st == SP_OK);
        if (st)
            cJSON_AddStringToObject(root, "error", err.msg);
        else
            cJSON_AddStringToObject(root, "format", r->format);
        cJSON_AddItemToObject(root, "problems", problems_json(probs.v, probs.n));
        if (!st) {
            cJSON *arr = cJSON_AddArrayToObject(root, "modifiers");
            for (size_t i = 0; i < r->nmods; i++)
                cJSON_AddItemToArray(arr, modifier_json(&r->mods[i]));
        }
        print_json(root);
    }
    if (st && !probs.errors) {
        sp_recipe_problems_release(&probs);
        return cli_fail(&err);
    }
    cli_recipe_problems(what, probs.v, probs.n, st != SP_OK);
    if (probs.dropped)
        cli_error("%zu more problems in '%s' not shown", probs.dropped, what);
    sp_recipe_problems_release(&probs);
    if (st)
        return cli_exit_code(st);
    if (!json) {
        printf("ok: %zu modifier%s (%s)\n", r->nmods, r->nmods == 1 ? "" : "s", r->format);
        for (size_t i = 0; i < r->nmods; i++) {
            printf("  [%zu] ", i);
            describe(&r->mods[i], stdout);
            printf("  (%s, line %d)\n", r->mods[i].where, r->mods[i].line);
        }
    }
    sp_recipe_free(r);
    return EXIT_OK;
}

static int convert(const char *what, const char *out, bool force, bool substitute)
{
    /* the output policy of every command (cli.h): nothing replaced without
     * --force, never the input, written atomically */
    int rc;
    if (out && (rc = cli_output_check(what, out, (force ? CLI_OUT_FORCE : 0) | CLI_OUT_NEVER_IN_PLACE)))
        return rc;
    sp_recipe *r = NULL;
    if ((rc = cli_recipe_load(&r, what, substitute)))
        return rc;
    char *text = NULL;
    sp_error err = {0};
    if (sp_recipe_to_json(r, &text, &err)) {
        sp_recipe_free(r);
        return cli_fail(&err);
    }
    sp_recipe_free(r);
    if (out) {
        size_t n = strlen(text);
        if (n && text[n - 1] == '\n')
            text[n - 1] = '\0'; /* cli_write_text ends the line */
        rc = cli_write_text(out, text);
    } else {
        fputs(text, stdout);
    }
    free(text);
    return rc;
}

int cmd_recipe(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"force", no_argument, NULL, 'f'},
                                         {"substitute", no_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    if (argc < 2)
        return cli_usage_error("recipe", "missing subcommand (list, show, validate or convert)");
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    /* options anywhere after the subcommand; the rest are its arguments */
    bool json = false, force = false, substitute = false;
    const char *out = NULL;
    const char *args[2];
    int nargs = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--force")) {
            force = true;
        } else if (!strcmp(a, "--substitute")) {
            substitute = true;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (i + 1 >= argc)
                return cli_usage_error("recipe", "option '%s' needs a value", a);
            out = argv[++i];
        } else if (!strncmp(a, "--output=", 9)) {
            out = a + 9;
        } else if (a[0] == '-' && a[1]) {
            return cli_unknown_option("recipe", a, opts, "ho");
        } else if (nargs < 2) {
            args[nargs++] = a;
        } else {
            nargs++;
        }
    }
    bool is_convert = !strcmp(sub, "convert");
    if ((out || force) && !is_convert)
        return cli_usage_error("recipe", "-o and --force are for 'convert'");
    if (substitute && strcmp(sub, "validate") && !is_convert)
        return cli_usage_error("recipe", "--substitute is for 'validate' and 'convert'");
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
        return validate(args[0], json, substitute);
    }
    if (is_convert) {
        if (nargs != 1)
            return cli_usage_error("recipe", "'convert' takes one FILE or NAME");
        if (json)
            return cli_usage_error("recipe", "'convert' always writes JSON; --json is for list "
                                             "and validate");
        return convert(args[0], out, force, substitute);
    }
    const char *subs[] = {"list", "show", "validate", "convert"};
    const char *close = sp_closest_name(sub, subs, 4);
    if (close)
        return cli_usage_error("recipe", "unknown subcommand '%s' (did you mean '%s'?)", sub, close);
    return cli_usage_error("recipe", "unknown subcommand '%s' (list, show, validate or convert)",
                           sub);
}
