/*
 * sparsify inspect FILE|DIR [--json] — list a checkpoint's tensors with their
 * zeros, sparsity and whether they already meet 2:4, plus totals and which
 * tensors share a storage.
 *
 * Zeros are counted over each tensor's own strided view (offset, strides), so
 * a non-contiguous view counts its elements only. Storages are visited one at
 * a time and released after use, so memory stays near one storage whatever
 * the checkpoint's size.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/report.h"

static const char usage_text[] =
    "usage: sparsify inspect FILE|DIR [--json] [--report-html FILE [--force]]\n"
    "\n"
    "List the tensors of a checkpoint (torch .pt/.pth/.bin, legacy torch,\n"
    "TorchScript, .safetensors, a Hugging Face folder, .spz) with dtype,\n"
    "shape, element count, zeros, sparsity and whether each floating tensor\n"
    "already has at most 2 nonzeros in every 4 consecutive weights along its\n"
    "input dimension (2:4), then totals and the tensors that share storage.\n"
    "\n"
    "options:\n"
    "  --json              print one JSON object instead of the table\n"
    "  --report-html FILE  also write an HTML page with a sparsity bar per tensor\n"
    "                      (self-contained: open it in any browser)\n"
    "  --force             replace an existing --report-html file\n"
    "  --threads N         threads (default: every CPU)\n"
    "  -h, --help          show this help\n"
    "\n"
    "exit codes: 0 ok, 1 failure reading the file, 2 usage or bad input\n";

typedef struct tstat {
    uint64_t zeros;
    int nm_ok; /* 1 yes, 0 no, -1 not applicable (non-float) */
} tstat;

static void shape_str(const sp_tensor *t, char *buf, size_t len)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, len - n, "[");
    for (int d = 0; d < t->ndim && n < len; d++)
        n += (size_t)snprintf(buf + n, len - n, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (n < len)
        snprintf(buf + n, len - n, "]");
}

static int print_json(sp_ckpt *ck, const tstat *st, const size_t *owner, uint64_t params,
                      uint64_t zeros, size_t nshared)
{
    size_t nt = sp_ckpt_num_tensors(ck), ns = sp_ckpt_num_storages(ck);
    cJSON *root = cJSON_CreateObject();
    if (!root)
        goto oom;
    cJSON_AddStringToObject(root, "format", sp_format_name(sp_ckpt_format(ck)));
    cJSON_AddStringToObject(root, "path", sp_ckpt_path(ck));
    cJSON *arr = cJSON_AddArrayToObject(root, "tensors");
    if (!arr)
        goto oom;
    for (size_t i = 0; i < nt; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        cJSON *o = cJSON_CreateObject();
        if (!o)
            goto oom;
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "dtype", sp_dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; sh && d < t->ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddNumberToObject(o, "numel", (double)t->numel);
        cJSON_AddNumberToObject(o, "zeros", (double)st[i].zeros);
        cJSON_AddNumberToObject(o, "sparsity", t->numel ? (double)st[i].zeros / (double)t->numel : 0.0);
        cJSON_AddNumberToObject(o, "storage", (double)t->storage);
        if (st[i].nm_ok < 0)
            cJSON_AddNullToObject(o, "satisfies_2_4");
        else
            cJSON_AddBoolToObject(o, "satisfies_2_4", st[i].nm_ok == 1);
    }
    cJSON *tot = cJSON_AddObjectToObject(root, "totals");
    if (!tot)
        goto oom;
    cJSON_AddNumberToObject(tot, "tensors", (double)nt);
    cJSON_AddNumberToObject(tot, "storages", (double)ns);
    cJSON_AddNumberToObject(tot, "params", (double)params);
    cJSON_AddNumberToObject(tot, "zeros", (double)zeros);
    cJSON_AddNumberToObject(tot, "sparsity", params ? (double)zeros / (double)params : 0.0);
    cJSON_AddNumberToObject(tot, "shared_tensors", (double)nshared);
    cJSON *groups = cJSON_AddArrayToObject(root, "shared_storages");
    if (!groups)
        goto oom;
    for (size_t s = 0; s < ns; s++) {
        if (owner[s] == SIZE_MAX)
            continue; /* fewer than two tensors */
        cJSON *g = cJSON_CreateArray();
        if (!g)
            goto oom;
        cJSON_AddItemToArray(groups, g);
        for (size_t i = 0; i < nt; i++)
            if (sp_ckpt_tensor(ck, i)->storage == s)
                cJSON_AddItemToArray(g, cJSON_CreateString(sp_ckpt_tensor(ck, i)->name));
    }
    char *txt = cJSON_PrintUnformatted(root);
    if (!txt)
        goto oom;
    fputs(txt, stdout);
    fputc('\n', stdout);
    free(txt);
    cJSON_Delete(root);
    return EXIT_OK;
oom:
    cJSON_Delete(root);
    cli_error("out of memory");
    return EXIT_FAILED;
}

/* --report-html: every tensor with its sparsity and 2:4 conformance; for an
 * .spz, its dense and stored bytes. */
static int write_html(const char *path, sp_ckpt *ck, const tstat *st)
{
    size_t nt = sp_ckpt_num_tensors(ck);
    cli_report r;
    cli_report_init(&r, "inspect", sp_ckpt_path(ck));
    r.format = sp_format_name(sp_ckpt_format(ck));
    r.conform_label = "2:4";
    r.input_bytes = cli_path_bytes(sp_ckpt_path(ck));
    bool spz = sp_ckpt_format(ck) == SP_FORMAT_SPZ;
    cli_report_row *rows = calloc(nt ? nt : 1, sizeof *rows);
    char (*shapes)[64] = calloc(nt ? nt : 1, sizeof *shapes);
    char *text = NULL;
    if (rows && shapes) {
        for (size_t i = 0; i < nt; i++) {
            const sp_tensor *t = sp_ckpt_tensor(ck, i);
            cli_report_row *w = &rows[i];
            cli_report_row_init(w, t->name);
            shape_str(t, shapes[i], sizeof shapes[i]);
            w->shape = shapes[i];
            w->numel = (uint64_t)t->numel;
            w->sparsity = t->numel ? (double)st[i].zeros / (double)t->numel : 0;
            w->conform = st[i].nm_ok < 0 ? CLI_REPORT_UNKNOWN : st[i].nm_ok ? CLI_REPORT_OK : CLI_REPORT_FAIL;
            w->dense_bytes = t->numel * (int64_t)sp_dtype_size(t->dtype);
            sp_spz_tensor_info info;
            sp_error err = {0};
            if (spz && sp_spz_tensor_info_get(ck, i, &info, &err) == SP_OK)
                w->stored_bytes = (int64_t)info.stored_bytes;
        }
        r.rows = rows;
        r.nrows = nt;
        text = cli_report_html(&r);
    }
    free(rows);
    free(shapes);
    return cli_report_write(path, text);
}

static void print_table(sp_ckpt *ck, const tstat *st, const size_t *owner, uint64_t params,
                        uint64_t zeros, size_t nshared)
{
    size_t nt = sp_ckpt_num_tensors(ck), ns = sp_ckpt_num_storages(ck);
    int wname = 4, wshape = 5;
    char buf[512];
    for (size_t i = 0; i < nt; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        int l = (int)strlen(t->name);
        if (l > wname)
            wname = l;
        shape_str(t, buf, sizeof buf);
        if ((int)strlen(buf) > wshape)
            wshape = (int)strlen(buf);
    }
    if (wname > 80)
        wname = 80;
    printf("%-*s  %-8s  %-*s  %12s  %12s  %8s  %3s\n", wname, "name", "dtype", wshape, "shape",
           "numel", "zeros", "sparsity", "2:4");
    for (size_t i = 0; i < nt; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        shape_str(t, buf, sizeof buf);
        double sp = t->numel ? 100.0 * (double)st[i].zeros / (double)t->numel : 0.0;
        printf("%-*s  %-8s  %-*s  %12lld  %12llu  %7.2f%%  %3s\n", wname, t->name,
               sp_dtype_name(t->dtype), wshape, buf, (long long)t->numel,
               (unsigned long long)st[i].zeros, sp,
               st[i].nm_ok < 0 ? "-" : st[i].nm_ok ? "yes" : "no");
    }
    printf("\nformat:   %s\n", sp_format_name(sp_ckpt_format(ck)));
    printf("tensors:  %zu (%zu storages)\n", nt, ns);
    printf("params:   %llu\n", (unsigned long long)params);
    printf("zeros:    %llu (%.2f%%)\n", (unsigned long long)zeros,
           params ? 100.0 * (double)zeros / (double)params : 0.0);
    printf("shared:   %zu tensors share a storage with another\n", nshared);
    for (size_t s = 0; s < ns; s++) {
        if (owner[s] == SIZE_MAX)
            continue;
        printf("  storage %zu:", s);
        for (size_t i = 0; i < nt; i++)
            if (sp_ckpt_tensor(ck, i)->storage == s)
                printf(" %s", sp_ckpt_tensor(ck, i)->name);
        printf("\n");
    }
}

int cmd_inspect(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"report-html", required_argument, NULL, 'R'},
        {"force", no_argument, NULL, 'F'},
        {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool json = false, force = false;
    const char *html = NULL;
    int c, bad = EXIT_USAGE, threads = 0;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "+h", opts, "inspect", &bad)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 't':
            if (!cli_parse_threads("--threads", optarg, &threads))
                return EXIT_USAGE;
            break;
        case 'R': html = optarg; break;
        case 'F': force = true; break;
        case 'h': fputs(usage_text, stdout); return EXIT_OK;
        default: return bad;
        }
    }
    /* allow options after the path too */
    const char *path = NULL;
    for (int i = optind; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            if (!cli_parse_threads("--threads", argv[++i], &threads))
                return EXIT_USAGE;
        } else if (!strncmp(argv[i], "--threads=", 10)) {
            if (!cli_parse_threads("--threads", argv[i] + 10, &threads))
                return EXIT_USAGE;
        } else if (!strcmp(argv[i], "--force"))
            force = true;
        else if (!strcmp(argv[i], "--report-html") && i + 1 < argc)
            html = argv[++i];
        else if (!strncmp(argv[i], "--report-html=", 14))
            html = argv[i] + 14;
        else if (!strcmp(argv[i], "--report-html"))
            return cli_usage_error("inspect", "option '--report-html' needs a value");
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        } else if (argv[i][0] == '-' && argv[i][1])
            return cli_unknown_option("inspect", argv[i], opts, "h");
        else if (path)
            return cli_usage_error("inspect", "expected one FILE or DIR, got '%s' and '%s'", path, argv[i]);
        else
            path = argv[i];
    }
    if (!path)
        return cli_usage_error("inspect", "missing FILE or DIR");
    int orc;
    if (html && (orc = cli_output_check(path, html, (force ? CLI_OUT_FORCE : 0) |
                                                        CLI_OUT_NEVER_IN_PLACE)))
        return orc;

    sp_error err = {0};
    sp_ckpt *ck = NULL;
    tstat *st = NULL;
    size_t *order = NULL, *owner = NULL;
    int rc = EXIT_OK;
    if (sp_ckpt_open(&ck, path, &err) != SP_OK)
        return cli_fail(&err);
    size_t nt = sp_ckpt_num_tensors(ck), ns = sp_ckpt_num_storages(ck);
    st = calloc(nt ? nt : 1, sizeof *st);
    owner = malloc((ns ? ns : 1) * sizeof *owner);
    if (!st || !owner) {
        cli_error("out of memory");
        rc = EXIT_FAILED;
        goto out;
    }
    /* every storage loaded once and released, on all threads */
    sp_view_stats *vs = calloc(nt ? nt : 1, sizeof *vs);
    size_t *start = NULL;
    if (!vs) {
        cli_error("out of memory");
        rc = EXIT_FAILED;
        goto out;
    }
    cli_progress bar;
    cli_progress_init(&bar, "inspect", !json);
    sp_status vst = sp_ckpt_view_stats(ck, threads, cli_progress_update, &bar, vs, &err);
    cli_progress_end(&bar);
    if (vst) {
        free(vs);
        rc = cli_fail(&err);
        goto out;
    }
    for (size_t i = 0; i < nt; i++) {
        bool fl = sp_dtype_is_float(sp_ckpt_tensor(ck, i)->dtype);
        st[i].zeros = vs[i].zeros;
        st[i].nm_ok = fl ? vs[i].is_24 : -1;
    }
    free(vs);
    if (sp_ckpt_tensors_by_storage(ck, &order, &start, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    size_t nshared = 0;
    uint64_t params = 0, zeros = 0;
    for (size_t s = 0; s < ns; s++) {
        size_t cnt = start[s + 1] - start[s];
        owner[s] = cnt >= 2 ? s : SIZE_MAX;
        if (cnt >= 2)
            nshared += cnt;
    }
    free(start);
    for (size_t i = 0; i < nt; i++) {
        params += (uint64_t)sp_ckpt_tensor(ck, i)->numel;
        zeros += st[i].zeros;
    }
    if (json)
        rc = print_json(ck, st, owner, params, zeros, nshared);
    else
        print_table(ck, st, owner, params, zeros, nshared);
    if (html && rc == EXIT_OK)
        rc = write_html(html, ck, st);
    if (fflush(stdout) != 0 && rc == EXIT_OK) {
        cli_error("cannot write to stdout");
        rc = EXIT_FAILED;
    }
out:
    free(st);
    free(order);
    free(owner);
    sp_ckpt_close(ck);
    return rc;
}
