/*
 * sparsify-torch — the only executable that links libtorch: the commands
 * built on the libtorch bridge (finetune, run, sensitivity). `sparsify
 * finetune ...`, `sparsify run ...` and `sparsify sensitivity ...` exec it
 * (cmd/launch.c) with the command name first, so the other commands start
 * without loading libtorch (~0.6 s and ~160 MB per start); `sparsify prune
 * --score wanda` starts its internal `calibrate` command as a child.
 */
#include <string.h>

#include "cmd/cli.h"
#ifdef SP_HAVE_TORCH
#include "bridge/train.h"
#endif

int main(int argc, char **argv)
{
    /* a signal removes this run's temporary outputs (cli.h) */
    cli_signals_install();
    /* for `sparsify --version`: what this libtorch offers */
    if (argc == 2 && !strcmp(argv[1], "--features")) {
#ifdef SP_HAVE_TORCH
        printf("libtorch %s\ncuda %d\n", sp_train_torch_version(), sp_train_cuda_available());
        return EXIT_OK;
#else
        return EXIT_FAILED;
#endif
    }
    if (argc >= 2 && !strcmp(argv[1], "finetune"))
        return cmd_finetune(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "run"))
        return cmd_run(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "sensitivity"))
        return cmd_sensitivity(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "calibrate"))
        return cmd_calibrate(argc - 1, argv + 1);
    cli_error("usage: sparsify-torch finetune|run|sensitivity|calibrate [options] (started by "
              "'sparsify finetune', 'sparsify run', 'sparsify sensitivity' and 'sparsify prune "
              "--score wanda')");
    return EXIT_USAGE;
}
