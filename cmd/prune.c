/* sparsify prune — placeholder until its issue lands; refuses to run. */
#include "cmd/cli.h"

int cmd_prune(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'prune' is not built yet");
    return EXIT_FAILED;
}
