/*
 * sparsify check — the CI gate: exit 0 when every targeted tensor meets its
 * sparsity target and pattern, 1 (with a per-tensor list) when any does not.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cmd/report.h"
#include "cmd/rules.h"

static const char usage_text[] =
    "usage: sparsify check MODEL --recipe R.json|NAME\n"
    "       sparsify check MODEL --sparsity S --pattern P [--include RE]... [--exclude RE]...\n"
    "\n"
    "Exit 0 when every targeted tensor has at least its target sparsity and\n"
    "follows its pattern; exit 1 and list the violations otherwise.\n"
    "\n"
    "  -s, --sparsity S     target sparsity 0..1 (implied by N:M)\n"
    "  -p, --pattern P      unstructured | RxC | N:M (default unstructured)\n"
    "      --scope SCOPE    layer (default) | global (checked per tensor)\n"
    "  -i, --include RE     check tensors matching the Python regex RE anywhere\n"
    "                       (repeatable; default: the weights prune targets)\n"
    "  -x, --exclude RE     skip tensors matching RE (repeatable)\n"
    "  -r, --recipe R       take targets from a recipe's pruning modifiers\n"
    "      --substitute     with --recipe: check the closest modifier for one\n"
    "                       sparsify does not implement (docs/recipes.md)\n"
    "      --json           print the result as JSON on stdout\n"
    "      --threads N      threads (default: every CPU)\n"
    "      --junit FILE     write the result as JUnit XML (one test case per\n"
    "                       tensor), which CI systems display\n"
    "      --report-html FILE  write it as an HTML page with a sparsity bar per\n"
    "                       tensor (self-contained: open it in any browser)\n"
    "      --force          replace an existing --junit or --report-html file\n"
    "  -q, --quiet          print nothing but errors: the exit code is the answer\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 all targets met, 1 a target missed, 2 usage or bad input\n";

enum { OPT_JSON = RULES_OPT_END, OPT_JUNIT, OPT_REPORT_HTML, OPT_FORCE, OPT_THREADS };

/* The rows of --junit and --report-html: one per checked tensor. */
static int write_reports(const char *junit, const char *html, const char *in, sp_ckpt *ck,
                         const sp_prune_report *rep, bool ok, const char *global_violation)
{
    cli_report r;
    cli_report_init(&r, "check", in);
    r.format = sp_format_name(sp_ckpt_format(ck));
    r.conform_label = "passes";
    r.verdict = ok ? CLI_REPORT_OK : CLI_REPORT_FAIL;
    r.global_violation = global_violation;
    r.input_bytes = cli_path_bytes(in);
    cli_report_row *rows = calloc(rep->n ? rep->n : 1, sizeof *rows);
    if (!rows) {
        cli_error("out of memory");
        return EXIT_FAILED;
    }
    for (size_t i = 0; i < rep->n; i++) {
        const sp_prune_entry *e = &rep->entries[i];
        cli_report_row_init(&rows[i], e->name);
        rows[i].pattern = e->pattern;
        rows[i].numel = e->numel;
        rows[i].target = e->target;
        rows[i].sparsity = e->numel ? (double)e->zeros_after / (double)e->numel : 0;
        rows[i].conform = e->ok ? CLI_REPORT_OK : CLI_REPORT_FAIL;
        rows[i].violation = e->violation;
    }
    r.rows = rows;
    r.nrows = rep->n;
    int rc = junit ? cli_report_write(junit, cli_report_junit(&r)) : EXIT_OK;
    if (html && !rc)
        rc = cli_report_write(html, cli_report_html(&r));
    free(rows);
    return rc;
}

int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"sparsity", required_argument, NULL, 's'},
        {"pattern", required_argument, NULL, 'p'},
        {"scope", required_argument, NULL, RULES_OPT_SCOPE},
        {"include", required_argument, NULL, 'i'},
        {"exclude", required_argument, NULL, 'x'},
        {"recipe", required_argument, NULL, 'r'},
        {"substitute", no_argument, NULL, RULES_OPT_SUBSTITUTE},
        {"json", no_argument, NULL, OPT_JSON},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"junit", required_argument, NULL, OPT_JUNIT},
        {"report-html", required_argument, NULL, OPT_REPORT_HTML},
        {"force", no_argument, NULL, OPT_FORCE},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    rules_opts ro = {0};
    bool json = false, quiet = false, force = false;
    const char *junit = NULL, *html = NULL;
    int c, bad = EXIT_USAGE, threads = 0;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "s:p:i:x:r:qh", longopts, "check", &bad)) != -1) {
        int r = rules_opt(&ro, c, optarg, "check");
        if (r >= 0) {
            if (r)
                return r;
            continue;
        }
        switch (c) {
        case OPT_JSON: json = true; break;
        case OPT_THREADS:
            if (!cli_parse_threads("--threads", optarg, &threads))
                return EXIT_USAGE;
            break;
        case OPT_JUNIT: junit = optarg; break;
        case OPT_REPORT_HTML: html = optarg; break;
        case OPT_FORCE: force = true; break;
        case 'q': quiet = true; break;
        case 'h': fputs(usage_text, stdout); return EXIT_OK;
        default: return bad;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("check", optind >= argc ? "missing model" : "expected exactly one model");
    const char *in = argv[optind];
    if (junit && html && !strcmp(junit, html))
        return cli_usage_error("check", "--junit and --report-html name the same file '%s'", junit);
    unsigned oflags = (force ? CLI_OUT_FORCE : 0) | CLI_OUT_NEVER_IN_PLACE;
    int orc;
    if ((junit && (orc = cli_output_check(in, junit, oflags))) ||
        (html && (orc = cli_output_check(in, html, oflags))))
        return orc;
    rules rs;
    int rc = rules_build(&rs, &ro, "check");
    if (rc) {
        rules_release(&rs);
        return rc;
    }
    /* A global target is met when the targeted tensors together reach it;
     * per-tensor patterns still apply. Check per tensor against the global
     * rule's own target only for N:M/blocks; for unstructured global, check
     * the aggregate below. */
    sp_error err = {0};
    sp_ckpt *ck = NULL;
    sp_prune_report rep = {0};
    if (sp_ckpt_open(&ck, in, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    if ((rc = rules_bind(&rs, ck)))
        goto out;
    cli_progress bar;
    cli_progress_init(&bar, "check", !quiet && !json);
    sp_prune_options po = {.progress = cli_progress_update, .progress_ctx = &bar, .threads = threads};
    sp_status s = sp_prune_check(ck, rs.rules, rs.n, &po, &rep, &err);
    cli_progress_end(&bar);
    if (s && s != SP_ERR_CHECK) {
        if (err.code == SP_ERR_NOT_FOUND || err.code == SP_ERR_INVALID_ARG)
            sp_error_prefix(&err, "'%s'", in);
        rc = cli_fail(&err);
        goto out;
    }
    bool global = rs.n == 1 && rs.rules[0].global;
    bool ok = s == SP_OK;
    if (global) {
        /* one threshold across tensors: the aggregate must reach the target */
        double target = rs.rules[0].sparsity;
        double measured = rep.targeted_params ? (double)rep.zeros_after / (double)rep.targeted_params : 0;
        /* round(s * units) of them are pruned: half a unit (an element, or
         * a block of r x c elements) below s still meets it */
        const sp_pattern *pat = &rs.rules[0].pattern;
        double unit = pat->kind == SP_PATTERN_BLOCK ? (double)(pat->r * pat->c) : 1.0;
        ok = measured >= target - 0.5 * unit / (double)(rep.targeted_params ? rep.targeted_params : 1);
        for (size_t i = 0; i < rep.n; i++)
            rep.entries[i].ok = true;
        if (!ok)
            snprintf(rep.entries[0].violation, sizeof rep.entries[0].violation,
                     "global sparsity %.4f < target %.4f", measured, target);
    }
    size_t failed = 0;
    for (size_t i = 0; i < rep.n; i++)
        failed += !rep.entries[i].ok;
    if (quiet) {
        /* the exit code says it all */
    } else if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "path", in);
        cJSON_AddBoolToObject(root, "ok", ok);
        cJSON *arr = cJSON_AddArrayToObject(root, "tensors");
        for (size_t i = 0; i < rep.n; i++) {
            const sp_prune_entry *e = &rep.entries[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", e->name);
            cJSON_AddStringToObject(o, "pattern", e->pattern);
            cJSON_AddNumberToObject(o, "target", e->target);
            cJSON_AddNumberToObject(o, "sparsity", e->numel ? (double)e->zeros_after / (double)e->numel : 0);
            cJSON_AddBoolToObject(o, "ok", e->ok);
            if (!e->ok)
                cJSON_AddStringToObject(o, "violation", e->violation);
            cJSON_AddItemToArray(arr, o);
        }
        if (global && !ok)
            cJSON_AddStringToObject(root, "violation", rep.entries[0].violation);
        char *text = cJSON_Print(root);
        printf("%s\n", text);
        cJSON_free(text);
        cJSON_Delete(root);
    } else {
        for (size_t i = 0; i < rep.n; i++)
            if (!rep.entries[i].ok)
                printf("FAIL %s: %s\n", rep.entries[i].name, rep.entries[i].violation);
        if (global && !ok)
            printf("FAIL %s\n", rep.entries[0].violation);
        printf("%s: %zu tensors checked, %zu failed\n", ok ? "ok" : "failed", rep.n,
               global ? (size_t)!ok : failed);
    }
    rc = ok ? EXIT_OK : EXIT_FAILED;
    if (junit || html) {
        int wrc = write_reports(junit, html, in, ck, &rep, ok,
                                global && !ok ? rep.entries[0].violation : NULL);
        if (wrc)
            rc = wrc;
    }
out:
    sp_prune_report_release(&rep);
    sp_ckpt_close(ck);
    rules_release(&rs);
    return rc;
}
