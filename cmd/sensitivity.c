/*
 * sparsify sensitivity — how much each layer can be pruned before the loss
 * moves (bridge/sensitivity.h), and a recipe of per-layer sparsities that
 * reaches an overall target where it moves least. This file parses
 * options, prints the tables (text or JSON) and writes the recipe under the
 * output policy; docs/pruning.md explains the analysis and the allocation.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/torch_cli.h"

#ifdef SP_HAVE_TORCH
#include <cjson/cJSON.h>

#include "bridge/sensitivity.h"
#endif

static const char usage_text[] =
    "usage: sparsify sensitivity MODEL --data FILE [options]\n"
    "       sparsify sensitivity MODEL --data FILE --recipe-out R.json --target S\n"
    "\n"
    "Prune one weight of a TorchScript model at a time to each sparsity (in\n"
    "memory: MODEL is never written), run the model on labelled data and print,\n"
    "per layer, the loss and accuracy at each sparsity. Linear layers run pruned\n"
    "on sparsify's sparse operator. With --recipe-out, write a recipe of per-layer\n"
    "sparsities that reaches the overall target S where the metric moves least.\n"
    "\n"
    "data:\n"
    "  --data FILE            CSV (optional header row) or a .pt / .safetensors file\n"
    "                         with tensors 'inputs' and 'labels'\n"
    "  --label-column C       CSV label column: header name or index (default: last)\n"
    "analysis:\n"
    "  --sparsities LIST      ascending, comma-separated (default\n"
    "                         0.5,0.7,0.8,0.9,0.95,0.98)\n"
    "  -p, --pattern P        unstructured (default) | RxC blocks | N:M (one sparsity)\n"
    "      --block-score F    l1 (default) or l2 for block patterns\n"
    "  -i, --include RE       analyse the weights whose name matches RE (a Python\n"
    "                         regex, re.search); repeatable. Default: prune's targets\n"
    "  -x, --exclude RE       leave matching weights out; repeatable\n"
    "  --metric M             loss (default) or accuracy: what the allocation spends\n"
    "  --batch-size N         rows per forward (default 256)\n"
    "  --threads T            CPU threads for libtorch and the kernels\n"
    "output:\n"
    "  --recipe-out R.json    write per-layer sparsities reaching --target\n"
    "  --target S             overall sparsity of the analysed weights, 0..1\n"
    "  --force                replace an existing --recipe-out file\n"
    "  --json                 one JSON object on stdout\n"
    "  -h, --help             this text\n"
    "\n"
    "exit codes: 0 ok, 1 the analysis failed, 2 usage or bad input\n";

#ifndef SP_HAVE_TORCH

int cmd_sensitivity(int argc, char **argv)
{
    return torch_missing(argc, argv, usage_text, "analyse sensitivity");
}

#else

enum {
    OPT_DATA = 256, OPT_LABEL, OPT_SPARSITIES, OPT_BSCORE, OPT_METRIC, OPT_BATCH, OPT_THREADS,
    OPT_RECIPE_OUT, OPT_TARGET, OPT_FORCE, OPT_JSON,
};

#define MAX_RE 64
#define MAX_SPARSITIES 64

/* "0.5,0.7" into v; false after an error line. */
static bool parse_list(const char *text, double *v, size_t *n)
{
    char buf[1024];
    if (strlen(text) >= sizeof buf) {
        cli_usage_error("sensitivity", "--sparsities: list too long");
        return false;
    }
    strcpy(buf, text);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_SPARSITIES) {
            cli_usage_error("sensitivity", "--sparsities: at most %d values", MAX_SPARSITIES);
            return false;
        }
        if (!cli_parse_double("--sparsities", tok, &v[*n]))
            return false;
        (*n)++;
    }
    if (!*n) {
        cli_usage_error("sensitivity", "--sparsities: empty list");
        return false;
    }
    return true;
}

/* The damage each point does: the change of the chosen metric. */
static double damage(const sp_sens_result *r, const sp_sens_point *p, bool accuracy)
{
    return accuracy ? r->base_accuracy - p->accuracy : p->loss - r->base_loss;
}

/* The shortest decimal that reads back as v ("0.9", not 0.90000000000000002). */
static void shortest(double v, char *buf, size_t len)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* The recipe: one MagnitudePruningModifier whose final_sparsity maps each
 * allocated sparsity to its weights (and their aliases). */
static cJSON *recipe_json(const sp_sens_result *r, const double *alloc, const sp_pattern *pat,
                          sp_block_score bs, double target, const char *model, const char *metric)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "name", "sensitivity");
    char desc[512];
    snprintf(desc, sizeof desc,
             "per-layer sparsities from 'sparsify sensitivity' on '%s': overall %g of the "
             "analysed weights, spent where the %s moves least (docs/pruning.md)",
             model, target, metric);
    cJSON_AddStringToObject(root, "description", desc);
    cJSON *mods = cJSON_AddArrayToObject(root, "modifiers");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToArray(mods, m);
    cJSON_AddStringToObject(m, "type", "MagnitudePruningModifier");
    cJSON *map = cJSON_AddObjectToObject(m, "final_sparsity");
    for (size_t i = 0; i < r->n; i++) {
        char key[32];
        shortest(alloc[i], key, sizeof key);
        cJSON *list = cJSON_GetObjectItemCaseSensitive(map, key);
        if (!list)
            list = cJSON_AddArrayToObject(map, key);
        cJSON_AddItemToArray(list, cJSON_CreateString(r->layers[i].name));
        for (size_t k = 0; k < r->layers[i].naliases; k++)
            cJSON_AddItemToArray(list, cJSON_CreateString(r->layers[i].aliases[k]));
    }
    char pb[32];
    cJSON_AddStringToObject(m, "mask_type", sp_pattern_str(pat, pb, sizeof pb));
    if (pat->kind == SP_PATTERN_BLOCK && bs == SP_BLOCK_SCORE_L2)
        cJSON_AddStringToObject(m, "block_score", "l2");
    return root;
}

static void print_text(const sp_sens_opts *o, const sp_sens_result *r, bool accuracy,
                       const double *alloc, const char *recipe_out, double target)
{
    char pb[32];
    printf("model '%s', data '%s': %lld samples, pattern %s, loss %s\n", o->model, o->data,
           (long long)r->samples, sp_pattern_str(&o->pattern, pb, sizeof pb),
           r->classification ? "cross-entropy" : "mean squared error");
    printf("dense: loss %.6g", r->base_loss);
    if (r->classification)
        printf(", accuracy %.2f%%", 100.0 * r->base_accuracy);
    printf("\n");
    for (size_t i = 0; i < r->n; i++) {
        const sp_sens_layer *l = &r->layers[i];
        char shape[96];
        cli_shape(l->ndim, l->shape, shape, sizeof shape);
        printf("\n%s %s, %lld weights%s", l->name, shape, (long long)l->numel,
               l->sparse_op ? " (sparse operator)" : "");
        for (size_t k = 0; k < l->naliases; k++)
            printf("%s%s", k ? ", " : ", also ", l->aliases[k]);
        printf("\n  %8s  %12s  %12s%s\n", "sparsity", "loss", "change", r->classification ? "  accuracy    change" : "");
        for (size_t j = 0; j < l->npoints; j++) {
            const sp_sens_point *p = &l->points[j];
            printf("  %7.2f%%  %12.6g  %+12.4g", 100.0 * p->sparsity, p->loss, p->loss - r->base_loss);
            if (r->classification)
                printf("  %7.2f%%  %+7.2f", 100.0 * p->accuracy,
                       100.0 * (p->accuracy - r->base_accuracy));
            printf("\n");
        }
    }
    printf("\n%zu runs over the data in %.2f s\n", r->runs, r->seconds);
    if (recipe_out) {
        double pruned = 0, total = 0;
        for (size_t i = 0; i < r->n; i++) {
            pruned += alloc[i] * (double)r->layers[i].numel;
            total += (double)r->layers[i].numel;
        }
        printf("recipe '%s': overall %.2f%% (target %.2f%%, %s):", recipe_out,
               100.0 * pruned / total, 100.0 * target, accuracy ? "accuracy" : "loss");
        for (size_t i = 0; i < r->n; i++)
            printf("%s %s %.2f%%", i ? "," : "", r->layers[i].name, 100.0 * alloc[i]);
        printf("\n");
    }
}

static void print_json(const sp_sens_opts *o, const sp_sens_result *r, const char *metric,
                       const double *alloc, const char *recipe_out, double target)
{
    char pb[32];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "data", o->data);
    cJSON_AddNumberToObject(j, "samples", (double)r->samples);
    cJSON_AddStringToObject(j, "pattern", sp_pattern_str(&o->pattern, pb, sizeof pb));
    cJSON_AddStringToObject(j, "metric", metric);
    cJSON_AddStringToObject(j, "loss", r->classification ? "cross_entropy" : "mse");
    cJSON *base = cJSON_AddObjectToObject(j, "dense");
    cJSON_AddNumberToObject(base, "loss", r->base_loss);
    if (r->classification)
        cJSON_AddNumberToObject(base, "accuracy", r->base_accuracy);
    cJSON *ls = cJSON_AddArrayToObject(j, "layers");
    for (size_t i = 0; i < r->n; i++) {
        const sp_sens_layer *l = &r->layers[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", l->name);
        cJSON *al = cJSON_AddArrayToObject(e, "aliases");
        for (size_t k = 0; k < l->naliases; k++)
            cJSON_AddItemToArray(al, cJSON_CreateString(l->aliases[k]));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < l->ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)l->shape[d]));
        cJSON_AddNumberToObject(e, "numel", (double)l->numel);
        cJSON_AddBoolToObject(e, "sparse_operator", l->sparse_op);
        cJSON *pts = cJSON_AddArrayToObject(e, "points");
        for (size_t k = 0; k < l->npoints; k++) {
            const sp_sens_point *p = &l->points[k];
            cJSON *q = cJSON_CreateObject();
            cJSON_AddNumberToObject(q, "target", p->target);
            cJSON_AddNumberToObject(q, "sparsity", p->sparsity);
            cJSON_AddNumberToObject(q, "loss", p->loss);
            if (r->classification)
                cJSON_AddNumberToObject(q, "accuracy", p->accuracy);
            cJSON_AddItemToArray(pts, q);
        }
        if (alloc)
            cJSON_AddNumberToObject(e, "allocated", alloc[i]);
        cJSON_AddItemToArray(ls, e);
    }
    cJSON_AddNumberToObject(j, "runs", (double)r->runs);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    if (recipe_out) {
        cJSON_AddStringToObject(j, "recipe", recipe_out);
        cJSON_AddNumberToObject(j, "target", target);
    }
    char *s = cJSON_PrintUnformatted(j);
    if (s)
        printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

int cmd_sensitivity(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"label-column", required_argument, NULL, OPT_LABEL},
        {"sparsities", required_argument, NULL, OPT_SPARSITIES},
        {"pattern", required_argument, NULL, 'p'},
        {"block-score", required_argument, NULL, OPT_BSCORE},
        {"include", required_argument, NULL, 'i'},
        {"exclude", required_argument, NULL, 'x'},
        {"metric", required_argument, NULL, OPT_METRIC},
        {"batch-size", required_argument, NULL, OPT_BATCH},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"recipe-out", required_argument, NULL, OPT_RECIPE_OUT},
        {"target", required_argument, NULL, OPT_TARGET},
        {"force", no_argument, NULL, OPT_FORCE},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    sp_sens_opts o;
    sp_sens_opts_init(&o);
    const char *inc[MAX_RE], *exc[MAX_RE], *metric = "loss", *recipe_out = NULL,
               *target_text = NULL, *pattern = NULL;
    size_t ninc = 0, nexc = 0, nsp = 0;
    double sps[MAX_SPARSITIES], target = 0;
    bool json = false, force = false, have_sps = false;
    long v;
    int c, bad = EXIT_USAGE;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "p:i:x:h", longopts, "sensitivity", &bad)) != -1) {
        switch (c) {
        case OPT_DATA: o.data = optarg; break;
        case OPT_LABEL: o.label_column = optarg; break;
        case OPT_SPARSITIES:
            if (!parse_list(optarg, sps, &nsp))
                return EXIT_USAGE;
            have_sps = true;
            break;
        case 'p': pattern = optarg; break;
        case OPT_BSCORE:
            if (!strcmp(optarg, "l1") || !strcmp(optarg, "l2"))
                o.bscore = !strcmp(optarg, "l2") ? SP_BLOCK_SCORE_L2 : SP_BLOCK_SCORE_L1;
            else
                return cli_usage_error("sensitivity", "--block-score must be 'l1' or 'l2'");
            break;
        case 'i':
        case 'x':
            if ((c == 'i' ? ninc : nexc) == MAX_RE)
                return cli_usage_error("sensitivity", "too many --include/--exclude options");
            if (c == 'i')
                inc[ninc++] = optarg;
            else
                exc[nexc++] = optarg;
            break;
        case OPT_METRIC: metric = optarg; break;
        case OPT_BATCH:
            if (!cli_parse_long("--batch-size", optarg, &v))
                return EXIT_USAGE;
            if (v < 1 || v > (1L << 30))
                return cli_usage_error("sensitivity", "--batch-size must be in [1, 2^30]");
            o.batch_size = v;
            break;
        case OPT_THREADS:
            if (!cli_parse_long("--threads", optarg, &v))
                return EXIT_USAGE;
            if (v < 1 || v > 4096)
                return cli_usage_error("sensitivity", "--threads must be in [1, 4096]");
            o.threads = (int)v;
            break;
        case OPT_RECIPE_OUT: recipe_out = optarg; break;
        case OPT_TARGET: target_text = optarg; break;
        case OPT_FORCE: force = true; break;
        case OPT_JSON: json = true; break;
        case 'h': fputs(usage_text, stdout); return EXIT_OK;
        default: return bad;
        }
    }
    if (optind >= argc)
        return cli_usage_error("sensitivity", "no model given");
    if (argc - optind > 1)
        return cli_usage_error("sensitivity", "one model only, got '%s' too", argv[optind + 1]);
    o.model = argv[optind];
    if (!o.data)
        return cli_usage_error("sensitivity", "no data given (--data FILE)");
    if (strcmp(metric, "loss") && strcmp(metric, "accuracy"))
        return cli_usage_error("sensitivity", "--metric must be 'loss' or 'accuracy', not '%s'",
                               metric);
    sp_error err = {0};
    if (pattern && sp_pattern_parse(&o.pattern, pattern, &err)) {
        sp_error_prefix(&err, "--pattern");
        return cli_fail(&err);
    }
    if (have_sps) {
        o.sparsities = sps;
        o.nsparsities = nsp;
    }
    if (!recipe_out != !target_text)
        return cli_usage_error("sensitivity", "--recipe-out and --target go together");
    if (target_text) {
        if (!cli_parse_double("--target", target_text, &target))
            return EXIT_USAGE;
        if (!(target >= 0.0 && target <= 1.0))
            return cli_usage_error("sensitivity", "--target %s is out of range [0, 1]",
                                   target_text);
        if (o.pattern.kind == SP_PATTERN_NM)
            return cli_usage_error("sensitivity", "--recipe-out: an N:M pattern fixes every "
                                                  "layer's sparsity; there is nothing to allocate");
    }
    int rc = recipe_out ? cli_output_check(o.model, recipe_out,
                                           (force ? CLI_OUT_FORCE : 0) | CLI_OUT_NEVER_IN_PLACE)
                        : 0;
    if (rc)
        return rc;
    sp_selector sel;
    bool have_sel = ninc || nexc;
    if (have_sel) {
        if (sp_selector_init(&sel, inc, ninc, exc, nexc, &err))
            return cli_fail(&err);
        o.selector = &sel;
    }

    const bool by_accuracy = !strcmp(metric, "accuracy");
    sp_sens_result r;
    double *alloc = NULL;
    sp_alloc_curve *curves = NULL;
    double *dmg = NULL, *sp = NULL;
    cJSON *recipe = NULL;
    char *text = NULL;
    if (sp_sensitivity(&o, &r, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    if (by_accuracy && !r.classification) {
        cli_error("'%s': --metric accuracy needs class labels (whole numbers indexing the "
                  "model's outputs)",
                  o.data);
        rc = EXIT_USAGE;
        goto out;
    }
    if (recipe_out) {
        size_t np = r.n ? r.layers[0].npoints : 0;
        alloc = calloc(r.n, sizeof *alloc);
        curves = calloc(r.n, sizeof *curves);
        dmg = calloc(r.n * np + 1, sizeof *dmg);
        sp = calloc(r.n * np + 1, sizeof *sp);
        if (!alloc || !curves || !dmg || !sp) {
            cli_error("out of memory");
            rc = EXIT_FAILED;
            goto out;
        }
        for (size_t i = 0; i < r.n; i++) {
            for (size_t k = 0; k < np; k++) {
                sp[i * np + k] = r.layers[i].points[k].target;
                dmg[i * np + k] = damage(&r, &r.layers[i].points[k], by_accuracy);
            }
            curves[i] = (sp_alloc_curve){r.layers[i].numel, np, sp + i * np, dmg + i * np};
        }
        if (sp_sparsity_allocate(curves, r.n, target, alloc, &err)) {
            sp_error_prefix(&err, "--target");
            rc = cli_fail(&err);
            goto out;
        }
        recipe = recipe_json(&r, alloc, &o.pattern, o.bscore, target, o.model, metric);
        text = cJSON_Print(recipe);
        if (!text) {
            cli_error("out of memory");
            rc = EXIT_FAILED;
            goto out;
        }
        if ((rc = cli_write_text(recipe_out, text)))
            goto out;
    }
    if (json)
        print_json(&o, &r, metric, alloc, recipe_out, target);
    else
        print_text(&o, &r, by_accuracy, alloc, recipe_out, target);
out:
    free(text);
    cJSON_Delete(recipe);
    free(alloc);
    free(curves);
    free(dmg);
    free(sp);
    sp_sens_result_release(&r);
    if (have_sel)
        sp_selector_release(&sel);
    return rc;
}

#endif
