/* sparsify finetune — placeholder until its issue lands; refuses to run. */
#include "cmd/cli.h"

int cmd_finetune(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'finetune' is not built yet");
    return EXIT_FAILED;
}
