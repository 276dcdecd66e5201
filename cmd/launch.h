/*
 * Running the libtorch helper sparsify-torch from the sparsify binary
 * (cmd/launch.c): exec'd in place for finetune, run and sensitivity
 * (cmd_torch_launch in cli.h); started as a child for the calibration pass
 * of `prune --score wanda`, whose result comes back through a memory-only
 * file.
 */
#ifndef SPARSIFY_CMD_LAUNCH_H
#define SPARSIFY_CMD_LAUNCH_H

#include "cmd/cli.h"

/* Activation norms from the helper: a checkpoint held in memory. */
typedef struct cli_norms {
    sp_ckpt *ck;  /* one float32 tensor per observed weight, by name */
    void *map;    /* the bytes ck reads (a private mapping) */
    size_t size;
} cli_norms;

/* Run `sparsify-torch calibrate MODEL --calibration DATA ...` with its
 * output on an anonymous memory file (memfd: no name on any file system,
 * so nothing is left behind whatever ends the run) and open what it wrote.
 * label_column may be NULL; samples > 0. Returns 0, or an exit code after
 * one error line (the helper's own, for bad data or model). */
int cli_calibrate(const char *model, const char *data, const char *label_column, long samples,
                  cli_norms *out);
void cli_norms_release(cli_norms *n); /* accepts a zeroed struct */

#endif
