/*
 * sparsify export — write a compact sparse weight file.
 *
 *   sparsify export IN -o OUT.spz [--format spz|compressed-tensors|safetensors]
 *                  [--encoding auto|dense|bitmask|nm|block] [--raw] [--level L]
 *                  [--ct-format sparse-bitmask|sparse-24-bitmask|dense]
 *                  [--max-shard-size BYTES] [--verbose] [--json]
 *
 * The format follows from OUT: *.spz -> spz, *.safetensors -> dense
 * safetensors, anything else (a folder) -> compressed-tensors; --format
 * overrides. The report (stdout) gives dense bytes, output bytes and the
 * ratio; --verbose adds one line per tensor, --json prints it as JSON.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"

static const char usage_text[] =
    "usage: sparsify export IN -o OUT [options]\n"
    "\n"
    "Write the tensors of IN (a checkpoint file or folder, or an .spz) as a\n"
    "compact sparse weight file: .spz (docs/format-spz.md), a compressed-tensors\n"
    "folder (Hugging Face safetensors with a sparsity_config), or dense\n"
    "safetensors. The output is written atomically.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT       output file (.spz, .safetensors) or folder\n"
    "  --format F             spz, compressed-tensors, safetensors\n"
    "                         (default: from OUT's extension; no extension:\n"
    "                         compressed-tensors)\n"
    "  --encoding E           spz: auto (cheapest exact, default), dense,\n"
    "                         bitmask, nm, block (falls back to auto per tensor\n"
    "                         when E cannot hold it exactly)\n"
    "  --nm N:M               spz: the N:M pattern for --encoding nm\n"
    "  --block RxC            spz: the block size for --encoding block\n"
    "  --raw                  spz: kernel-ready, no compression (raw bitmask\n"
    "                         and values, 64-byte aligned, mappable in place)\n"
    "  --level L              spz: deflate level 1..9 (default 6)\n"
    "  --ct-format F          compressed-tensors: sparse-bitmask,\n"
    "                         sparse-24-bitmask or dense (default: from the\n"
    "                         pruned weights: sparse-24-bitmask when most are\n"
    "                         2:4, else sparse-bitmask; a weight the format\n"
    "                         cannot hold is stored dense, in \"ignore\")\n"
    "  --max-shard-size B     compressed-tensors: bytes per shard (5000000000)\n"
    "  -v, --verbose          one line per tensor in the report\n"
    "  --json                 print the report as JSON\n"
    "  --threads N            threads (default: every CPU); the output is the\n"
    "                         same bytes whatever N is\n"
    "  -q, --quiet            no progress bar\n"
    "  --force                replace an existing OUT (file or folder)\n"
    "  -h, --help             show this help\n"
    "\n"
    "An existing OUT is refused unless --force; OUT is never IN.\n"
    "exit codes: 0 ok, 1 failed, 2 usage or bad input\n";

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static const char *enc_label(const sp_spz_tensor_info *in, char *buf, size_t len)
{
    switch (in->encoding) {
    case SP_SPZ_NM:
        snprintf(buf, len, "nm %d:%d", in->n, in->m);
        break;
    case SP_SPZ_BLOCK:
        snprintf(buf, len, "block %lldx%lld", (long long)in->r, (long long)in->c);
        break;
    default:
        snprintf(buf, len, "%s", sp_spz_encoding_name(in->encoding));
    }
    return buf;
}

static void print_report(const sp_export_report *r, const char *out, bool verbose, bool json,
                         double secs)
{
    double ratio = r->output_bytes ? (double)r->dense_bytes / (double)r->output_bytes : 0;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "output", out);
        cJSON_AddStringToObject(j, "format", r->format);
        if (r->ct_format[0])
            cJSON_AddStringToObject(j, "sparsity_format", r->ct_format);
        cJSON_AddNumberToObject(j, "dense_bytes", (double)r->dense_bytes);
        cJSON_AddNumberToObject(j, "output_bytes", (double)r->output_bytes);
        cJSON_AddNumberToObject(j, "ratio", ratio);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cJSON *arr = cJSON_AddArrayToObject(j, "tensors");
        for (size_t i = 0; i < r->nentries; i++) {
            const sp_export_entry *e = &r->entries[i];
            cJSON *t = cJSON_CreateObject();
            char b[64];
            cJSON_AddStringToObject(t, "name", e->name);
            cJSON_AddStringToObject(t, "dtype", sp_dtype_name(e->dtype));
            cJSON *sh = cJSON_AddArrayToObject(t, "shape");
            for (int d = 0; d < e->ndim; d++)
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)e->shape[d]));
            cJSON_AddStringToObject(t, "encoding", enc_label(&e->info, b, sizeof b));
            cJSON_AddNumberToObject(t, "numel", (double)e->info.numel);
            cJSON_AddNumberToObject(t, "nnz", (double)e->info.nnz);
            cJSON_AddNumberToObject(t, "dense_bytes", (double)e->info.dense_bytes);
            cJSON_AddNumberToObject(t, "stored_bytes", (double)e->info.stored_bytes);
            cJSON_AddNumberToObject(t, "raw_bytes", (double)e->info.raw_bytes);
            cJSON_AddItemToArray(arr, t);
        }
        char *s = cJSON_Print(j);
        if (s)
            printf("%s\n", s);
        free(s);
        cJSON_Delete(j);
        return;
    }
    if (verbose) {
        printf("%-48s %-10s %-12s %12s %12s %7s\n", "tensor", "dtype", "encoding", "dense", "stored",
               "ratio");
        for (size_t i = 0; i < r->nentries; i++) {
            const sp_export_entry *e = &r->entries[i];
            char b[64];
            double tr = e->info.stored_bytes ? (double)e->info.dense_bytes / (double)e->info.stored_bytes : 0;
            printf("%-48s %-10s %-12s %12llu %12llu %6.2fx\n", e->name, sp_dtype_name(e->dtype),
                   enc_label(&e->info, b, sizeof b), (unsigned long long)e->info.dense_bytes,
                   (unsigned long long)e->info.stored_bytes, tr);
        }
    }
    char a[32], b[32], c[48];
    if (r->output_bytes > r->dense_bytes) /* a dense model gains nothing: say so */
        snprintf(c, sizeof c, "%.2fx larger",
                 r->dense_bytes ? (double)r->output_bytes / (double)r->dense_bytes : 0.0);
    else
        snprintf(c, sizeof c, "%.2fx smaller", ratio);
    printf("wrote '%s' (%s%s%s): %zu tensors, dense %s (%llu bytes) -> %s (%llu bytes), %s\n",
           out, r->format, r->ct_format[0] ? ", " : "", r->ct_format, r->nentries,
           cli_bytes((double)r->dense_bytes, a, sizeof a), (unsigned long long)r->dense_bytes,
           cli_bytes((double)r->output_bytes, b, sizeof b), (unsigned long long)r->output_bytes, c);
}

/* The options, for "did you mean" (the parser below is by hand). */
static const struct option export_opts[] = {
    {"output", 1, NULL, 'o'},      {"format", 1, NULL, 0},         {"encoding", 1, NULL, 0},
    {"nm", 1, NULL, 0},            {"block", 1, NULL, 0},          {"raw", 0, NULL, 0},
    {"level", 1, NULL, 0},         {"ct-format", 1, NULL, 0},      {"max-shard-size", 1, NULL, 0},
    {"verbose", 0, NULL, 'v'},     {"json", 0, NULL, 0},           {"quiet", 0, NULL, 'q'},
    {"threads", 1, NULL, 0},       {"help", 0, NULL, 'h'},         {NULL, 0, NULL, 0},
};

int cmd_export(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *format = NULL, *ct_format = NULL;
    bool verbose = false, json = false, quiet = false, force = false;
    sp_spz_options so;
    sp_spz_options_init(&so);
    sp_ct_options co;
    memset(&co, 0, sizeof co);
    sp_error err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                                    \
    do {                                                                          \
        if (!v)                                                                   \
            return cli_usage_error("export", "option '%s' needs a value", a);    \
        i++;                                                                      \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            NEED();
            out = v;
        } else if (!strcmp(a, "--format")) {
            NEED();
            format = v;
        } else if (!strcmp(a, "--encoding")) {
            NEED();
            if (sp_spz_encoding_parse(&so.encoding, v, &err))
                return cli_usage_error("export", "%s", err.msg);
        } else if (!strcmp(a, "--nm")) {
            NEED();
            if (sscanf(v, "%d:%d", &so.nm_n, &so.nm_m) != 2 || so.nm_m < 2 || so.nm_m > 32 ||
                so.nm_n < 0 || so.nm_n >= so.nm_m)
                return cli_usage_error("export", "option '--nm': '%s' is not N:M with 0 <= N < M <= 32", v);
            so.encoding = SP_SPZ_NM;
        } else if (!strcmp(a, "--block")) {
            NEED();
            long long r, c;
            if (sscanf(v, "%lldx%lld", &r, &c) != 2 || r < 1 || c < 1)
                return cli_usage_error("export", "option '--block': '%s' is not RxC", v);
            so.block_r = r;
            so.block_c = c;
            so.encoding = SP_SPZ_BLOCK;
        } else if (!strcmp(a, "--raw")) {
            so.raw = true;
        } else if (!strcmp(a, "--level")) {
            NEED();
            long l;
            if (!cli_parse_long(a, v, &l))
                return EXIT_USAGE;
            if (l < 1 || l > 9)
                return cli_usage_error("export", "option '--level': %ld is not in 1..9", l);
            so.level = (int)l;
        } else if (!strcmp(a, "--ct-format")) {
            NEED();
            ct_format = v;
        } else if (!strcmp(a, "--max-shard-size")) {
            NEED();
            long l;
            if (!cli_parse_long(a, v, &l))
                return EXIT_USAGE;
            if (l < 1)
                return cli_usage_error("export", "option '--max-shard-size' must be positive");
            co.max_shard_bytes = (uint64_t)l;
        } else if (!strcmp(a, "--threads")) {
            NEED();
            int th;
            if (!cli_parse_threads(a, v, &th))
                return EXIT_USAGE;
            so.threads = co.threads = th;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (!strcmp(a, "--force")) {
            force = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_unknown_option("export", a, export_opts, "ovqh");
        } else if (!in) {
            in = a;
        } else {
            return cli_usage_error("export", "unexpected argument '%s'", a);
        }
#undef NEED
    }
    if (!in)
        return cli_usage_error("export", "no input given");
    if (!out)
        return cli_usage_error("export", "no output given (-o OUT)");
    if (!format)
        format = ends_with(out, ".spz") ? "spz"
                 : ends_with(out, ".safetensors") ? "safetensors"
                                                  : "compressed-tensors";
    int fmt;
    if (!strcmp(format, "spz"))
        fmt = 0;
    else if (!strcmp(format, "compressed-tensors"))
        fmt = 1;
    else if (!strcmp(format, "safetensors"))
        fmt = 2;
    else
        return cli_usage_error("export", "unknown format '%s' (spz, compressed-tensors, safetensors)", format);
    if (ct_format && strcmp(ct_format, "sparse-bitmask") && strcmp(ct_format, "sparse-24-bitmask") &&
        strcmp(ct_format, "dense"))
        return cli_usage_error("export", "unknown --ct-format '%s'", ct_format);
    co.format = ct_format;
    int rc = cli_output_check(in, out, (force ? CLI_OUT_FORCE : 0) | CLI_OUT_NEVER_IN_PLACE);
    if (rc)
        return rc;

    sp_ckpt *ck = NULL;
    if (sp_ckpt_open(&ck, in, &err))
        return cli_fail(&err);
    cli_progress ps;
    cli_progress_init(&ps, "export", !quiet && !json);
    sp_export_report rep;
    memset(&rep, 0, sizeof rep);
    double t0 = cli_now_s();
    sp_status s;
    if (fmt == 0)
        s = sp_spz_export(ck, out, &so, cli_progress_update, &ps, &rep, &err);
    else if (fmt == 1)
        s = sp_ct_export(ck, out, &co, cli_progress_update, &ps, &rep, &err);
    else
        s = sp_dense_safetensors_export(ck, out, co.threads, cli_progress_update, &ps, &rep, &err);
    double secs = cli_now_s() - t0;
    cli_progress_end(&ps);
    sp_ckpt_close(ck);
    if (s)
        return cli_fail(&err);
    print_report(&rep, out, verbose, json, secs);
    sp_export_report_release(&rep);
    return EXIT_OK;
}
