/* sparsify check — placeholder until its issue lands; refuses to run. */
#include "cmd/cli.h"

int cmd_check(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'check' is not built yet");
    return EXIT_FAILED;
}
