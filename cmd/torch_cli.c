/* Helpers shared by finetune and run (torch_cli.h). */
#include "cmd/torch_cli.h"

#include <string.h>

int torch_missing(int argc, char **argv, const char *usage, const char *what)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return EXIT_OK;
        }
    cli_error("this sparsify was built without libtorch, so it cannot %s; install "
              "libtorch-dev (Debian/Ubuntu) or point -Dtorch_prefix at a libtorch, then "
              "reconfigure with 'meson setup --reconfigure -Dtorch=enabled'",
              what);
    return EXIT_FAILED;
}

#ifdef SP_HAVE_TORCH
cJSON *layer_report_json(const sp_layer_report *l)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", l->name);
    const double shape[2] = {(double)l->rows, (double)l->cols};
    cJSON_AddItemToObject(e, "shape", cJSON_CreateDoubleArray(shape, 2));
    cJSON_AddBoolToObject(e, "linear", l->linear);
    cJSON_AddBoolToObject(e, "sparse", l->sparse);
    cJSON_AddNumberToObject(e, "sparsity", l->sparsity);
    if (l->sparse) {
        cJSON_AddStringToObject(e, "layout", l->layout);
        cJSON_AddStringToObject(e, "kernel", l->kernel);
    } else {
        cJSON_AddStringToObject(e, "reason", l->reason);
    }
    return e;
}
#endif
