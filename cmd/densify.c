/* sparsify densify — placeholder until its issue lands; refuses to run. */
#include "cmd/cli.h"

int cmd_densify(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'densify' is not built yet");
    return EXIT_FAILED;
}
