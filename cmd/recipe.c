/* sparsify recipe — placeholder until its issue lands; refuses to run. */
#include "cmd/cli.h"

int cmd_recipe(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'recipe' is not built yet");
    return EXIT_FAILED;
}
