/* sparsify bench — placeholder until its issue lands; refuses to run. */
#include "cmd/cli.h"

int cmd_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'bench' is not built yet");
    return EXIT_FAILED;
}
