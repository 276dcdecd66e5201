/*
 * sparsify prune — prune a checkpoint to a sparsity and pattern, or by the
 * one-shot modifiers of a recipe; writes the input's own format atomically.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cmd/launch.h"
#include "cmd/report.h"
#include "cmd/rules.h"

static const char usage_text[] =
    "usage: sparsify prune IN -o OUT --sparsity S [--pattern P] [--scope layer|global]\n"
    "                      [--include RE]... [--exclude RE]...\n"
    "       sparsify prune IN -o OUT --recipe R.json|NAME\n"
    "       sparsify prune IN.pt -o OUT --score wanda --calibration FILE ...\n"
    "       sparsify prune IN --dry-run (--sparsity S ... | --recipe R) [--json]\n"
    "\n"
    "Prune the weights of a checkpoint (torch .pt/.pth/.bin, TorchScript, legacy\n"
    "torch, safetensors or a Hugging Face folder) and write OUT in IN's format;\n"
    "everything not pruned stays byte-identical.\n"
    "\n"
    "  -o, --output OUT     output file (folder for a Hugging Face folder)\n"
    "  -s, --sparsity S     fraction of weights to zero, 0..1 (implied by N:M)\n"
    "  -p, --pattern P      unstructured (default) | RxC blocks (4x1, 8x8, ...) |\n"
    "                       N:M (at most N nonzeros in every M weights along the\n"
    "                       input dimension, e.g. 2:4)\n"
    "      --scope SCOPE    layer (default): each tensor to S; global: one\n"
    "                       threshold across all targeted tensors\n"
    "      --block-score F  l1 (mean |w|, default) or l2 for block patterns\n"
    "      --score S        magnitude (default) or wanda: |w| times the L2 norm of\n"
    "                       its input feature over calibration data (IN must be\n"
    "                       a TorchScript model; needs --calibration)\n"
    "      --calibration FILE  calibration data for wanda: CSV or .pt/.safetensors\n"
    "                       as 'sparsify run' reads it\n"
    "      --calibration-samples N  its first N rows (default 128)\n"
    "      --label-column C  a CSV column of FILE to leave out (a label)\n"
    "      --wanda-group G  row (default, as the paper: each output row ranks its\n"
    "                       own weights) or layer; N:M and blocks keep their groups\n"
    "  -i, --include RE     prune tensors whose name matches RE (a Python regex,\n"
    "                       matched anywhere as re.search); repeatable. Default:\n"
    "                       weights of rank >= 2 that are not embeddings, norms\n"
    "                       or output heads (lm_head, ...)\n"
    "  -x, --exclude RE     never prune tensors matching RE; repeatable\n"
    "  -r, --recipe R       a recipe (SparseML/llm-compressor YAML, a Markdown\n"
    "                       recipe card, JSON) or a bundled recipe name\n"
    "                       ('sparsify recipe list'); its one-shot and gradual\n"
    "                       pruning modifiers prune to their final sparsity\n"
    "      --substitute     with --recipe: run the closest modifier sparsify has\n"
    "                       for one it does not implement (SparseGPT, OBS,\n"
    "                       M-FAC: magnitude); the report says so\n"
    "      --report FILE    write the per-tensor report as JSON to FILE\n"
    "      --report-html FILE  write it as an HTML page with a sparsity bar per\n"
    "                       tensor (self-contained: open it in any browser)\n"
    "      --json           print the report as JSON on stdout\n"
    "  -n, --dry-run        print what would be pruned (pattern, target and\n"
    "                       current sparsity, aliases) and write nothing\n"
    "      --in-place       allow OUT to be IN (or omit -o) and replace it\n"
    "      --force          replace an existing OUT (or report files)\n"
    "      --threads N      threads (default: every CPU); the output is the\n"
    "                       same bytes whatever N is\n"
    "  -q, --quiet          no table or progress on stderr\n"
    "  -h, --help           this help\n"
    "\n"
    "OUT is written to a temporary beside it and renamed into place when\n"
    "complete; an existing OUT is refused unless --force (docs/cli.md).\n"
    "exit codes: 0 ok, 1 failed, 2 usage or bad input\n";

enum {
    OPT_REPORT = RULES_OPT_END, OPT_REPORT_HTML, OPT_JSON, OPT_IN_PLACE, OPT_FORCE, OPT_THREADS,
    OPT_SCORE, OPT_CALIB, OPT_CALIB_SAMPLES, OPT_LABEL, OPT_WANDA_GROUP,
};

/* The wanda options, checked against the rules (a recipe's modifiers:
 * its rules exist only once bound to the checkpoint). Returns 0 or an exit
 * code after the error line. */
static int wanda_check(const rules *rs, const rules_opts *ro, const char *score, const char *calib,
                       const char *group, bool samples_or_label, bool dry)
{
    bool cli_wanda = false;
    if (score) {
        if (!strcmp(score, "wanda"))
            cli_wanda = true;
        else if (strcmp(score, "magnitude"))
            return cli_usage_error("prune", "--score must be 'magnitude' or 'wanda', not '%s'",
                                   score);
        if (ro->recipe)
            return cli_usage_error("prune", "--score cannot be combined with --recipe (set "
                                            "\"score\" in the recipe's modifier)");
    }
    if (group && strcmp(group, "row") && strcmp(group, "layer"))
        return cli_usage_error("prune", "--wanda-group must be 'row' or 'layer', not '%s'", group);
    size_t nwanda = 0, ngrouped = 0;
    if (rs->recipe) {
        for (size_t i = 0; i < rs->recipe->nmods; i++) {
            const sp_modifier *m = &rs->recipe->mods[i];
            if (!sp_modifier_prunes(m) || m->score != SP_SCORE_WANDA)
                continue;
            nwanda++;
            ngrouped += m->mask_type.kind == SP_PATTERN_UNSTRUCTURED && !m->global_sparsity;
        }
    } else if (cli_wanda) {
        for (size_t i = 0; i < rs->n; i++) {
            nwanda++;
            ngrouped += rs->rules[i].pattern.kind == SP_PATTERN_UNSTRUCTURED && !rs->rules[i].global;
        }
    }
    if (!nwanda && (calib || group || samples_or_label))
        return cli_usage_error("prune", "--calibration, --calibration-samples, --label-column "
                                        "and --wanda-group go with --score wanda (or a recipe "
                                        "whose modifier scores by wanda)");
    if (group && !ngrouped)
        return cli_usage_error("prune", "--wanda-group applies to unstructured per-layer "
                                        "pruning (N:M and blocks rank within their groups, "
                                        "--scope global across all targets)");
    if (nwanda && !calib && !dry)
        return cli_usage_error("prune", "wanda scores need calibration data (--calibration "
                                        "FILE)");
    return EXIT_OK;
}

/* The score and group of every rule (after rules_bind). */
static void wanda_apply(rules *rs, const char *score, const char *group)
{
    for (size_t i = 0; i < rs->n; i++) {
        sp_prune_rule *r = &rs->rules[i];
        if (score && !strcmp(score, "wanda"))
            r->score = SP_SCORE_WANDA;
        if (r->score == SP_SCORE_WANDA)
            r->group = group && !strcmp(group, "layer") ? SP_SCORE_GROUP_LAYER
                                                        : SP_SCORE_GROUP_ROW;
    }
}

static cJSON *names_json(const char *const *names, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(names[i]));
    return a;
}

/* Which modifier of the recipe pruned what, and what ran in place of what
 * (--substitute) or was left out. */
static cJSON *recipe_json(const rules *rs)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "recipe", rs->recipe_name);
    cJSON *mods = cJSON_AddArrayToObject(o, "modifiers");
    for (size_t i = 0; i < rs->rr.n; i++) {
        const sp_modifier *m = rs->rr.mods[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "where", m->where);
        cJSON_AddStringToObject(e, "type", m->cls);
        if (m->substitute_for)
            cJSON_AddStringToObject(e, "substitute_for", m->substitute_for);
        cJSON_AddNumberToObject(e, "tensors", (double)rs->rr.rules[i].ntensors);
        cJSON_AddItemToArray(mods, e);
    }
    cJSON *na = cJSON_AddArrayToObject(o, "not_applied");
    for (size_t i = 0; i < rs->recipe->nmods; i++) {
        const sp_modifier *m = &rs->recipe->mods[i];
        if (sp_modifier_prunes(m))
            continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "where", m->where);
        cJSON_AddStringToObject(e, "type", m->cls);
        cJSON_AddStringToObject(e, "why", m->type == SP_MOD_NOT_APPLIED
                                              ? (m->substitute_for ? "left out (--substitute)"
                                                                   : "quantization")
                                              : "applies when fine-tuning");
        cJSON_AddItemToArray(na, e);
    }
    return o;
}

static cJSON *report_json(sp_ckpt *ck, const sp_prune_report *rep, const char *in,
                          const char *out, bool dry, const rules *rs)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "input", in);
    if (out && !dry)
        cJSON_AddStringToObject(root, "output", out);
    if (dry)
        cJSON_AddTrueToObject(root, "dry_run");
    cJSON_AddStringToObject(root, "format", sp_format_name(sp_ckpt_format(ck)));
    cJSON *arr = cJSON_AddArrayToObject(root, "tensors");
    for (size_t i = 0; i < rep->n; i++) {
        const sp_prune_entry *e = &rep->entries[i];
        const sp_tensor *t = sp_ckpt_tensor(ck, e->tensor);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", e->name);
        cJSON_AddStringToObject(o, "dtype", sp_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddStringToObject(o, "pattern", e->pattern);
        cJSON_AddNumberToObject(o, "target", e->target);
        cJSON_AddNumberToObject(o, "numel", (double)e->numel);
        cJSON_AddNumberToObject(o, "zeros_before", (double)e->zeros_before);
        cJSON_AddNumberToObject(o, "sparsity_before",
                                e->numel ? (double)e->zeros_before / (double)e->numel : 0);
        if (!dry) {
            cJSON_AddNumberToObject(o, "zeros_after", (double)e->zeros_after);
            cJSON_AddNumberToObject(o, "sparsity_after",
                                    e->numel ? (double)e->zeros_after / (double)e->numel : 0);
        }
        cJSON_AddBoolToObject(o, "shared", e->shared);
        cJSON_AddItemToObject(o, "aliases", names_json(e->aliases, e->naliases));
        cJSON_AddItemToArray(arr, o);
    }
    cJSON *sk = cJSON_AddArrayToObject(root, "skipped");
    for (size_t i = 0; i < rep->nskipped; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", rep->skipped[i].name);
        cJSON_AddStringToObject(o, "shares_storage_with", rep->skipped[i].alias);
        cJSON_AddItemToArray(sk, o);
    }
    if (rs->recipe)
        cJSON_AddItemToObject(root, "recipe", recipe_json(rs));
    cJSON *tot = cJSON_AddObjectToObject(root, "totals");
    cJSON_AddNumberToObject(tot, "tensors", (double)rep->n);
    cJSON_AddNumberToObject(tot, "float_params", (double)rep->total_params);
    cJSON_AddNumberToObject(tot, "targeted_params", (double)rep->targeted_params);
    cJSON_AddNumberToObject(tot, "zeros_before", (double)rep->zeros_before);
    if (!dry) {
        cJSON_AddNumberToObject(tot, "zeros_after", (double)rep->zeros_after);
        cJSON_AddNumberToObject(tot, "sparsity_after",
                                rep->targeted_params
                                    ? (double)rep->zeros_after / (double)rep->targeted_params
                                    : 0);
    }
    return root;
}

static void shape_str(const sp_tensor *t, char *buf, size_t len)
{
    cli_shape(t->ndim, t->shape, buf, len);
}

/* ", a, b" for the aliases of an entry into buf. */
static const char *alias_str(const sp_prune_entry *e, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < e->naliases && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, i ? ", %s" : "%s", e->aliases[i]);
    return buf;
}

static int name_width(const sp_prune_report *rep)
{
    size_t w = 4;
    for (size_t i = 0; i < rep->n; i++)
        if (strlen(rep->entries[i].name) > w)
            w = strlen(rep->entries[i].name);
    return (int)(w > 60 ? 60 : w);
}

static void print_table(sp_ckpt *ck, const sp_prune_report *rep)
{
    int w = name_width(rep);
    char al[512];
    fprintf(stderr, "%-*s  %-16s %-12s %10s  %8s -> %-8s\n", w, "name", "shape", "pattern",
            "params", "before", "after");
    for (size_t i = 0; i < rep->n; i++) {
        const sp_prune_entry *e = &rep->entries[i];
        char shape[64];
        shape_str(sp_ckpt_tensor(ck, e->tensor), shape, sizeof shape);
        fprintf(stderr, "%-*s  %-16s %-12s %10llu  %7.2f%% -> %6.2f%%", w, e->name, shape,
                e->pattern, (unsigned long long)e->numel,
                e->numel ? 100.0 * (double)e->zeros_before / (double)e->numel : 0.0,
                e->numel ? 100.0 * (double)e->zeros_after / (double)e->numel : 0.0);
        if (e->naliases)
            fprintf(stderr, "  (shares storage with %s)", alias_str(e, al, sizeof al));
        fputc('\n', stderr);
    }
    fprintf(stderr, "pruned %zu tensors, %llu of %llu params targeted: sparsity %.2f%% -> %.2f%%\n",
            rep->n, (unsigned long long)rep->targeted_params,
            (unsigned long long)rep->total_params,
            rep->targeted_params ? 100.0 * (double)rep->zeros_before / (double)rep->targeted_params : 0.0,
            rep->targeted_params ? 100.0 * (double)rep->zeros_after / (double)rep->targeted_params : 0.0);
}

/* --report-html: one row per target (sparsity before and after, or the
 * plan of a dry run), file sizes before and after. */
static int write_html(const char *path, sp_ckpt *ck, const sp_prune_report *rep, const char *in,
                      const char *out, int64_t in_bytes)
{
    cli_report r;
    cli_report_init(&r, "prune", in);
    r.output = out;
    r.format = sp_format_name(sp_ckpt_format(ck));
    r.input_bytes = in_bytes;
    r.output_bytes = out ? cli_path_bytes(out) : -1;
    cli_report_row *rows = calloc(rep->n ? rep->n : 1, sizeof *rows);
    char (*shapes)[64] = calloc(rep->n ? rep->n : 1, sizeof *shapes);
    char (*notes)[256] = calloc(rep->n ? rep->n : 1, sizeof *notes);
    char *text = NULL;
    if (rows && shapes && notes) {
        for (size_t i = 0; i < rep->n; i++) {
            const sp_prune_entry *e = &rep->entries[i];
            cli_report_row *w = &rows[i];
            cli_report_row_init(w, e->name);
            shape_str(sp_ckpt_tensor(ck, e->tensor), shapes[i], sizeof shapes[i]);
            w->shape = shapes[i];
            w->pattern = e->pattern;
            w->numel = e->numel;
            w->target = e->target;
            double n = e->numel ? (double)e->numel : 1;
            w->before = (double)e->zeros_before / n;
            if (out) /* not a dry run */
                w->sparsity = (double)e->zeros_after / n;
            if (e->naliases) {
                char al[200];
                snprintf(notes[i], sizeof notes[i], "shares storage with %s",
                         alias_str(e, al, sizeof al));
                w->note = notes[i];
            }
        }
        r.rows = rows;
        r.nrows = rep->n;
        text = cli_report_html(&r);
    }
    free(rows);
    free(shapes);
    free(notes);
    return cli_report_write(path, text);
}

/* --dry-run: the plan on stdout. */
static void print_plan(sp_ckpt *ck, const sp_prune_report *rep, const char *in)
{
    int w = name_width(rep);
    char al[512];
    printf("dry run: would prune %zu tensors of '%s' (%llu of %llu params); nothing written\n",
           rep->n, in, (unsigned long long)rep->targeted_params,
           (unsigned long long)rep->total_params);
    printf("%-*s  %-16s %-12s %8s  %8s  %s\n", w, "name", "shape", "pattern", "target", "current",
           "shares storage with");
    for (size_t i = 0; i < rep->n; i++) {
        const sp_prune_entry *e = &rep->entries[i];
        char shape[64];
        shape_str(sp_ckpt_tensor(ck, e->tensor), shape, sizeof shape);
        printf("%-*s  %-16s %-12s %7.2f%%  %7.2f%%  %s\n", w, e->name, shape, e->pattern,
               100.0 * e->target,
               e->numel ? 100.0 * (double)e->zeros_before / (double)e->numel : 0.0,
               e->naliases ? alias_str(e, al, sizeof al) : "-");
    }
}

int cmd_prune(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"sparsity", required_argument, NULL, 's'},
        {"pattern", required_argument, NULL, 'p'},
        {"scope", required_argument, NULL, RULES_OPT_SCOPE},
        {"block-score", required_argument, NULL, RULES_OPT_BLOCK_SCORE},
        {"score", required_argument, NULL, OPT_SCORE},
        {"calibration", required_argument, NULL, OPT_CALIB},
        {"calibration-samples", required_argument, NULL, OPT_CALIB_SAMPLES},
        {"label-column", required_argument, NULL, OPT_LABEL},
        {"wanda-group", required_argument, NULL, OPT_WANDA_GROUP},
        {"include", required_argument, NULL, 'i'},
        {"exclude", required_argument, NULL, 'x'},
        {"recipe", required_argument, NULL, 'r'},
        {"substitute", no_argument, NULL, RULES_OPT_SUBSTITUTE},
        {"report", required_argument, NULL, OPT_REPORT},
        {"report-html", required_argument, NULL, OPT_REPORT_HTML},
        {"json", no_argument, NULL, OPT_JSON},
        {"in-place", no_argument, NULL, OPT_IN_PLACE},
        {"dry-run", no_argument, NULL, 'n'},
        {"force", no_argument, NULL, OPT_FORCE},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    rules_opts ro = {0};
    const char *out = NULL, *report = NULL, *html = NULL, *score = NULL, *calib = NULL,
               *label = NULL, *group = NULL;
    long samples = 128;
    bool samples_set = false;
    bool json = false, in_place = false, quiet = false, dry = false, force = false;
    int c, bad = EXIT_USAGE, threads = 0;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "o:s:p:i:x:r:nqh", longopts, "prune", &bad)) != -1) {
        int r = rules_opt(&ro, c, optarg, "prune");
        if (r >= 0) {
            if (r)
                return r;
            continue;
        }
        switch (c) {
        case 'o': out = optarg; break;
        case OPT_REPORT: report = optarg; break;
        case OPT_REPORT_HTML: html = optarg; break;
        case OPT_JSON: json = true; break;
        case OPT_IN_PLACE: in_place = true; break;
        case 'n': dry = true; break;
        case OPT_FORCE: force = true; break;
        case OPT_THREADS:
            if (!cli_parse_threads("--threads", optarg, &threads))
                return EXIT_USAGE;
            break;
        case OPT_SCORE: score = optarg; break;
        case OPT_CALIB: calib = optarg; break;
        case OPT_LABEL: label = optarg; break;
        case OPT_WANDA_GROUP: group = optarg; break;
        case OPT_CALIB_SAMPLES:
            if (!cli_parse_long("--calibration-samples", optarg, &samples))
                return EXIT_USAGE;
            if (samples < 1)
                return cli_usage_error("prune", "--calibration-samples must be at least 1");
            samples_set = true;
            break;
        case 'q': quiet = true; break;
        case 'h': fputs(usage_text, stdout); return EXIT_OK;
        default: return bad;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("prune", optind >= argc ? "missing input checkpoint"
                                                       : "expected exactly one input");
    const char *in = argv[optind];
    if (dry) {
        out = NULL;
    } else if (!out) {
        if (!in_place)
            return cli_usage_error("prune", "missing -o OUT (or --in-place)");
        out = in;
    }
    unsigned oflags = (force ? CLI_OUT_FORCE : 0) | (in_place ? CLI_OUT_IN_PLACE : 0);
    int rc = dry ? 0 : cli_output_check(in, out, oflags);
    if (rc)
        return rc;
    if (report && ((out && !strcmp(report, out)) || !strcmp(report, in)))
        return cli_usage_error("prune", "--report '%s' names the input or the output", report);
    if (report && (rc = cli_output_check(in, report, (oflags & CLI_OUT_FORCE) | CLI_OUT_NEVER_IN_PLACE)))
        return rc;
    if (html && ((out && !strcmp(html, out)) || !strcmp(html, in) || (report && !strcmp(html, report))))
        return cli_usage_error("prune", "--report-html '%s' names the input or another output", html);
    if (html && (rc = cli_output_check(in, html, (oflags & CLI_OUT_FORCE) | CLI_OUT_NEVER_IN_PLACE)))
        return rc;
    int64_t in_bytes = html ? cli_path_bytes(in) : -1;

    rules rs;
    ro.apply = !dry;
    rc = rules_build(&rs, &ro, "prune");
    if (!rc)
        rc = wanda_check(&rs, &ro, score, calib, group, samples_set || label, dry);
    if (rc) {
        rules_release(&rs);
        return rc;
    }
    sp_error err = {0};
    cli_norms norms = {0};
    sp_ckpt *ck = NULL;
    sp_prune_report rep = {0};
    cJSON *j = NULL;
    char *text = NULL;
    /* wanda: the activation norms first, from the libtorch helper */
    if (calib && !dry && (rc = cli_calibrate(in, calib, label, samples, &norms)))
        goto out;
    if (sp_ckpt_open(&ck, in, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    if ((rc = rules_bind(&rs, ck)))
        goto out;
    wanda_apply(&rs, score, group);
    cli_progress bar;
    cli_progress_init(&bar, "prune", !quiet && !json);
    sp_prune_options po = {.dry_run = dry, .progress = cli_progress_update, .progress_ctx = &bar,
                           .threads = threads, .norms = norms.ck};
    sp_status st = sp_prune_ckpt(ck, out, rs.rules, rs.n, &po, &rep, &err);
    cli_progress_end(&bar);
    if (st) {
        if (err.code == SP_ERR_INVALID_ARG)
            sp_error_prefix(&err, "'%s'", in);
        rc = cli_fail(&err);
        goto out;
    }
    for (size_t i = 0; i < rep.nskipped; i++)
        cli_warn("'%s' left dense: it shares its storage with '%s', which is not targeted "
                 "(target both to prune them together)",
                 rep.skipped[i].name, rep.skipped[i].alias);
    if (dry && !json)
        print_plan(ck, &rep, in);
    else if (!quiet && !json)
        print_table(ck, &rep);
    if (json || report) {
        j = report_json(ck, &rep, in, out, dry, &rs);
        text = cJSON_Print(j);
        if (json)
            printf("%s\n", text);
        if (report)
            rc = cli_write_text(report, text);
    }
    if (html && !rc)
        rc = write_html(html, ck, &rep, in, dry ? NULL : out, in_bytes);
out:
    cJSON_free(text);
    cJSON_Delete(j);
    sp_prune_report_release(&rep);
    sp_ckpt_close(ck);
    cli_norms_release(&norms);
    rules_release(&rs);
    return rc;
}
