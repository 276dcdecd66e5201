/* sparsify export — placeholder until its issue lands; refuses to run. */
#include "cmd/cli.h"

int cmd_export(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'export' is not built yet");
    return EXIT_FAILED;
}
