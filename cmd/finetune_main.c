/*
 * sparsify-finetune — the only executable that links libtorch. `sparsify
 * finetune ...` execs it (cmd/launch.c), so the other commands start without
 * loading libtorch (~0.6 s and ~160 MB per start).
 */
#include "cmd/cli.h"

int main(int argc, char **argv)
{
    /* argv[0] plays the subcommand's name, like in the dispatcher */
    argv[0] = "finetune";
    return cmd_finetune(argc, argv);
}
