/*
 * sparsify densify — rebuild dense weights from an .spz or a
 * compressed-tensors folder (or any checkpoint we read).
 *
 *   sparsify densify IN -o OUT.pt|OUT.safetensors [--format torch|safetensors]
 *                   [--json]
 *
 * Bit-exact: every value comes back with the bits it had in the pruned
 * checkpoint (compressed-tensors drops -0.0 by its own rule).
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"

static const char usage_text[] =
    "usage: sparsify densify IN -o OUT [options]\n"
    "\n"
    "Decode IN (an .spz file, a compressed-tensors folder, or any checkpoint)\n"
    "and write its tensors dense: OUT.pt (a state dict torch.load reads) or\n"
    "OUT.safetensors. The output is written atomically.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT   output file\n"
    "  --format F         torch or safetensors (default: from OUT's extension,\n"
    "                     .safetensors -> safetensors, else torch)\n"
    "  --json             print a JSON summary\n"
    "  --threads N        threads (default: every CPU)\n"
    "  --force            replace an existing OUT\n"
    "  -h, --help         show this help\n"
    "\n"
    "An existing OUT is refused unless --force; OUT is never IN.\n"
    "exit codes: 0 ok, 1 failed, 2 usage or bad input\n";

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int cmd_densify(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *format = NULL;
    bool json = false, force = false;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--format")) {
            if (!v)
                return cli_usage_error("densify", "option '%s' needs a value", a);
            if (!strcmp(a, "--format"))
                format = v;
            else
                out = v;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (!v)
                return cli_usage_error("densify", "option '%s' needs a value", a);
            if (!cli_parse_threads(a, v, &threads))
                return EXIT_USAGE;
            i++;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--force")) {
            force = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("densify", "unknown option '%s'", a);
        } else if (!in) {
            in = a;
        } else {
            return cli_usage_error("densify", "unexpected argument '%s'", a);
        }
    }
    if (!in)
        return cli_usage_error("densify", "no input given");
    if (!out)
        return cli_usage_error("densify", "no output given (-o OUT)");
    if (!format)
        format = ends_with(out, ".safetensors") ? "safetensors" : "torch";
    bool st = !strcmp(format, "safetensors");
    if (!st && strcmp(format, "torch"))
        return cli_usage_error("densify", "unknown format '%s' (torch, safetensors)", format);
    int rc = cli_output_check(in, out, (force ? CLI_OUT_FORCE : 0) | CLI_OUT_NEVER_IN_PLACE);
    if (rc)
        return rc;

    sp_error err = {0};
    sp_ckpt *ck = NULL;
    if (sp_ckpt_open(&ck, in, &err))
        return cli_fail(&err);
    size_t n = sp_ckpt_num_tensors(ck);
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        bytes += (uint64_t)t->numel * sp_dtype_size(t->dtype);
    }
    sp_status s = SP_OK;
    cli_progress bar;
    cli_progress_init(&bar, "densify", !json);
    if (st) {
        /* tensors decoded on all threads, each written once at its place */
        s = sp_dense_safetensors_export(ck, out, threads, cli_progress_update, &bar, NULL, &err);
    } else {
        sp_tensor_data *td = calloc(n ? n : 1, sizeof *td);
        void **owned = calloc(n ? n : 1, sizeof *owned);
        const void **data = calloc(n ? n : 1, sizeof *data);
        if (!td || !owned || !data)
            s = sp_error_set(&err, SP_ERR_NOMEM, "out of memory");
        if (!s)
            s = sp_ckpt_dense_all(ck, threads, cli_progress_update, &bar, data, owned, &err);
        for (size_t i = 0; i < n && !s; i++) {
            const sp_tensor *t = sp_ckpt_tensor(ck, i);
            td[i].name = t->name;
            td[i].dtype = t->dtype;
            td[i].ndim = t->ndim;
            memcpy(td[i].shape, t->shape, sizeof td[i].shape);
            td[i].data = data[i];
        }
        if (!s)
            s = sp_torch_save(out, td, n, &err);
        for (size_t i = 0; owned && i < n; i++)
            free(owned[i]);
        free(owned);
        free(data);
        free(td);
    }
    cli_progress_end(&bar);
    const char *fmt_name = sp_format_name(sp_ckpt_format(ck));
    char fmtbuf[64];
    snprintf(fmtbuf, sizeof fmtbuf, "%s", fmt_name);
    sp_ckpt_close(ck);
    if (s)
        return cli_fail(&err);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "input", in);
        cJSON_AddStringToObject(j, "input_format", fmtbuf);
        cJSON_AddStringToObject(j, "output", out);
        cJSON_AddStringToObject(j, "format", st ? "safetensors" : "torch");
        cJSON_AddNumberToObject(j, "tensors", (double)n);
        cJSON_AddNumberToObject(j, "dense_bytes", (double)bytes);
        char *p = cJSON_Print(j);
        if (p)
            printf("%s\n", p);
        free(p);
        cJSON_Delete(j);
    } else {
        char b[32];
        printf("wrote '%s' (%s): %zu tensors, %s dense, from %s\n", out, st ? "safetensors" : "torch", n,
               cli_bytes((double)bytes, b, sizeof b), fmtbuf);
    }
    return EXIT_OK;
}
