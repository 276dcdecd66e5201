/*
 * Helpers shared by the commands of sparsify-torch (finetune, run, ...): the
 * answer of a build without libtorch, and the JSON of a layer report.
 */
#ifndef SPARSIFY_CMD_TORCH_CLI_H
#define SPARSIFY_CMD_TORCH_CLI_H

#include "cmd/cli.h"

/* In a build without libtorch: --help prints usage (exit 0), anything else
 * says what is missing and how to get it (exit 1). `what` completes
 * "... so it cannot <what>". */
int torch_missing(int argc, char **argv, const char *usage, const char *what);

#ifdef SP_HAVE_TORCH
#include <cjson/cJSON.h>

#include "bridge/layers.h"

/* {"name", "shape", "sparse", "sparsity", "layout"+"kernel" | "reason"} */
cJSON *layer_report_json(const sp_layer_report *l);
#endif

#endif
