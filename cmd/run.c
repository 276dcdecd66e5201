/*
 * sparsify run — run a TorchScript model on data with the sparse Linear
 * operator and measure it against dense libtorch (bridge/run.h). This file
 * parses options, prints the report (text or JSON) and maps statuses to exit
 * codes; docs/run.md is the reference.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/torch_cli.h"

#ifdef SP_HAVE_TORCH
#include <cjson/cJSON.h>

#include "bridge/run.h"
#endif

static const char usage_text[] =
    "usage: sparsify run MODEL --data FILE [options]\n"
    "\n"
    "Run a TorchScript model (torch.jit.save) on data through libtorch, with every\n"
    "Linear layer whose weight is sparse enough on sparsify's sparse kernels and\n"
    "the rest of the model on libtorch. Prints the accuracy (when the data has\n"
    "labels), the median time per batch, samples/s, and which layers run sparse\n"
    "and why the others stay dense.\n"
    "\n"
    "data:\n"
    "  --data FILE            CSV (optional header row) or a .pt / .safetensors file\n"
    "                         with a tensor 'inputs' (and, optionally, 'labels')\n"
    "  --label-column C       CSV label column: header name or index; without it\n"
    "                         every column is an input\n"
    "running:\n"
    "  --batch-size N         samples per forward (default 1)\n"
    "  --threads T            CPU threads for libtorch and the kernels (default: libtorch's)\n"
    "  --dense                plain libtorch, no sparse kernels\n"
    "  --compare              also run the dense model on the same batches, alternating,\n"
    "                         and report both, the speedup and the largest difference\n"
    "  --layers A,B,...       run exactly these layers sparse (names as listed)\n"
    "  --warmup K             batches run before timing (default 3)\n"
    "  --repeat R             timed passes over the data (default 1)\n"
    "output:\n"
    "  --output PRED.csv      the model's outputs, one row per sample, full precision\n"
    "  --force                replace an existing --output file\n"
    "  --json                 one JSON object on stdout\n"
    "  -h, --help             this text\n"
    "\n"
    "exit codes: 0 ok, 1 the run failed, 2 usage or bad input\n";

#ifndef SP_HAVE_TORCH

int cmd_run(int argc, char **argv) { return torch_missing(argc, argv, usage_text, "run models"); }

#else

enum {
    OPT_DATA = 256, OPT_LABEL, OPT_BATCH, OPT_THREADS, OPT_OUTPUT, OPT_FORCE, OPT_DENSE,
    OPT_COMPARE, OPT_LAYERS, OPT_WARMUP, OPT_REPEAT, OPT_JSON,
};

static bool parse_count(const char *opt, const char *s, long lo, long hi, long *out)
{
    if (!cli_parse_long(opt, s, out))
        return false;
    if (*out < lo || *out > hi) {
        cli_error("option '%s': %ld is out of range [%ld, %ld]", opt, *out, lo, hi);
        return false;
    }
    return true;
}

/* "a,b,c" -> {"a", "b", "c"} in a copy of s; NULL and an error for an empty name. */
static char **split_names(char *s, size_t *n)
{
    size_t cap = 1;
    for (const char *c = s; *c; c++)
        cap += *c == ',';
    char **v = calloc(cap, sizeof *v);
    if (!v)
        return NULL;
    *n = 0;
    for (char *tok = s;;) {
        char *comma = strchr(tok, ',');
        if (comma)
            *comma = '\0';
        if (!*tok) {
            free(v);
            return NULL;
        }
        v[(*n)++] = tok;
        if (!comma)
            break;
        tok = comma + 1;
    }
    return v;
}

static void print_text(const sp_run_opts *o, const sp_run_result *r)
{
    printf("model: '%s', %lld samples, batch %lld (%lld batches), %d thread%s\n", o->model,
           (long long)r->samples, (long long)r->batch_size, (long long)r->batches, r->threads,
           r->threads == 1 ? "" : "s");
    if (r->nlayers) {
        size_t nlinear = 0;
        for (size_t i = 0; i < r->nlayers; i++)
            nlinear += r->layers[i].linear;
        printf("sparse layers: %zu of %zu Linear layers\n", r->nsparse, nlinear);
        for (size_t i = 0; i < r->nlayers; i++) {
            const sp_layer_report *l = &r->layers[i];
            char shape[48];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)l->rows, (long long)l->cols);
            if (l->sparse)
                printf("  sparse  %-24s %-12s %5.1f%%  %-10s %s\n", l->name, shape,
                       100.0 * l->sparsity, l->layout, l->kernel);
            else
                printf("  dense   %-24s %-12s %s\n", l->name, shape, l->reason);
        }
    }
    if (r->has_accuracy)
        printf("accuracy: %.2f%%\n", 100.0 * r->accuracy);
    printf("%s: %.3f ms/batch (median), %.1f samples/s\n", r->mode, r->ms_per_batch,
           r->samples_per_s);
    if (r->compared) {
        printf("dense: %.3f ms/batch (median)", r->dense_ms_per_batch);
        if (r->has_accuracy)
            printf(", accuracy %.2f%%", 100.0 * r->dense_accuracy);
        printf("\nspeedup: %.2fx over dense libtorch (max abs diff %.3g, max rel diff %.3g)\n",
               r->speedup, r->max_abs_diff, r->max_rel_diff);
    }
    printf("memory: %.1f MB resident, %.1f MB peak\n", r->rss_mb, r->peak_rss_mb);
    if (o->output)
        printf("wrote '%s'\n", o->output);
}

static void print_json(const sp_run_opts *o, const sp_run_result *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "data", o->data);
    cJSON_AddStringToObject(j, "mode", r->mode);
    cJSON_AddNumberToObject(j, "samples", (double)r->samples);
    cJSON_AddNumberToObject(j, "batch_size", (double)r->batch_size);
    cJSON_AddNumberToObject(j, "batches", (double)r->batches);
    cJSON_AddNumberToObject(j, "threads", r->threads);
    cJSON_AddNumberToObject(j, "outputs", (double)r->outputs);
    cJSON_AddNumberToObject(j, "ms_per_batch", r->ms_per_batch);
    cJSON_AddNumberToObject(j, "samples_per_s", r->samples_per_s);
    if (r->has_accuracy)
        cJSON_AddNumberToObject(j, "accuracy", r->accuracy);
    if (r->compared) {
        cJSON_AddNumberToObject(j, "dense_ms_per_batch", r->dense_ms_per_batch);
        cJSON_AddNumberToObject(j, "sparse_ms_per_batch", r->sparse_ms_per_batch);
        cJSON_AddNumberToObject(j, "speedup", r->speedup);
        cJSON_AddNumberToObject(j, "max_abs_diff", r->max_abs_diff);
        cJSON_AddNumberToObject(j, "max_rel_diff", r->max_rel_diff);
        if (r->has_accuracy)
            cJSON_AddNumberToObject(j, "dense_accuracy", r->dense_accuracy);
    }
    cJSON *sp = cJSON_AddArrayToObject(j, "sparse_layers");
    cJSON *de = cJSON_AddArrayToObject(j, "dense_layers");
    cJSON *all = cJSON_AddArrayToObject(j, "layers");
    for (size_t i = 0; i < r->nlayers; i++) {
        const sp_layer_report *l = &r->layers[i];
        cJSON_AddItemToArray(l->sparse ? sp : de, cJSON_CreateString(l->name));
        cJSON_AddItemToArray(all, layer_report_json(l));
    }
    cJSON_AddNumberToObject(j, "rss_mb", r->rss_mb);
    cJSON_AddNumberToObject(j, "peak_rss_mb", r->peak_rss_mb);
    if (o->output)
        cJSON_AddStringToObject(j, "output", o->output);
    char *s = cJSON_PrintUnformatted(j);
    if (s)
        printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

int cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"label-column", required_argument, NULL, OPT_LABEL},
        {"batch-size", required_argument, NULL, OPT_BATCH},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"output", required_argument, NULL, OPT_OUTPUT},
        {"force", no_argument, NULL, OPT_FORCE},
        {"dense", no_argument, NULL, OPT_DENSE},
        {"compare", no_argument, NULL, OPT_COMPARE},
        {"layers", required_argument, NULL, OPT_LAYERS},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"repeat", required_argument, NULL, OPT_REPEAT},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    sp_run_opts o;
    sp_run_opts_init(&o);
    bool json = false, force = false;
    char *layers_arg = NULL;
    long lv;
    int rc = EXIT_USAGE;

    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(usage_text, stdout); return EXIT_OK;
        case OPT_DATA: o.data = optarg; break;
        case OPT_LABEL: o.label_column = optarg; break;
        case OPT_BATCH:
            if (!parse_count("--batch-size", optarg, 1, 1L << 30, &lv))
                return EXIT_USAGE;
            o.batch_size = lv;
            break;
        case OPT_THREADS:
            if (!parse_count("--threads", optarg, 1, 4096, &lv))
                return EXIT_USAGE;
            o.threads = (int)lv;
            break;
        case OPT_OUTPUT: o.output = optarg; break;
        case OPT_FORCE: force = true; break;
        case OPT_DENSE: o.dense = true; break;
        case OPT_COMPARE: o.compare = true; break;
        case OPT_LAYERS: layers_arg = optarg; break;
        case OPT_WARMUP:
            if (!parse_count("--warmup", optarg, 0, 1000000, &lv))
                return EXIT_USAGE;
            o.warmup = (int)lv;
            break;
        case OPT_REPEAT:
            if (!parse_count("--repeat", optarg, 1, 1000000, &lv))
                return EXIT_USAGE;
            o.repeat = (int)lv;
            break;
        case OPT_JSON: json = true; break;
        case ':':
            return cli_usage_error("run", "option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("run", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cli_usage_error("run", "no model given");
    if (argc - optind > 1)
        return cli_usage_error("run", "one model only, got '%s' too", argv[optind + 1]);
    o.model = argv[optind];
    if (!o.data)
        return cli_usage_error("run", "no data given (--data FILE)");
    if (o.dense && o.compare)
        return cli_usage_error("run", "--dense and --compare exclude each other");
    if (o.dense && layers_arg)
        return cli_usage_error("run", "--dense and --layers exclude each other");
    /* docs/cli.md, "Outputs": never an input, nothing replaced without --force */
    const unsigned oflags = (force ? CLI_OUT_FORCE : 0) | CLI_OUT_NEVER_IN_PLACE;
    if (o.output && (cli_output_check(o.data, o.output, oflags | CLI_OUT_FORCE) ||
                     cli_output_check(o.model, o.output, oflags)))
        return EXIT_USAGE;

    char *names_buf = NULL;
    char **names = NULL;
    if (layers_arg) {
        names_buf = strdup(layers_arg);
        size_t n = 0;
        names = names_buf ? split_names(names_buf, &n) : NULL;
        if (!names) {
            free(names_buf);
            cli_error("option '--layers': '%s' is not a comma-separated list of layer names",
                      layers_arg);
            return EXIT_USAGE;
        }
        o.layers = (const char *const *)names;
        o.nlayers = n;
    }

    sp_error err;
    sp_run_result r;
    sp_status st = sp_run(&o, &r, &err);
    if (st != SP_OK) {
        rc = cli_fail(&err);
    } else {
        if (!o.dense && r.nsparse == 0)
            cli_warn("no layer of '%s' runs sparse (see the reasons listed)", o.model);
        if (json)
            print_json(&o, &r);
        else
            print_text(&o, &r);
        rc = EXIT_OK;
    }
    sp_run_result_release(&r);
    free(names);
    free(names_buf);
    return rc;
}

#endif
