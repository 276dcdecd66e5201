/* sparsify inspect — placeholder until its issue lands; refuses to run. */
#include "cmd/cli.h"

int cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'inspect' is not built yet");
    return EXIT_FAILED;
}
