/*
 * `sparsify finetune`: run the sibling executable sparsify-finetune (built
 * beside sparsify and installed with it), which links libtorch. Keeping
 * libtorch out of the main binary keeps every other command fast to start and
 * small in memory.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cli.h"

int cmd_finetune_launch(int argc, char **argv)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        cli_error("finetune: cannot locate the sparsify executable: %s", strerror(errno));
        return EXIT_FAILED;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash || (size_t)(slash - self) + sizeof "/sparsify-finetune" > sizeof self) {
        cli_error("finetune: cannot locate sparsify-finetune");
        return EXIT_FAILED;
    }
    strcpy(slash, "/sparsify-finetune");
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (!args) {
        cli_error("out of memory");
        return EXIT_FAILED;
    }
    args[0] = self;
    for (int i = 1; i < argc; i++)
        args[i] = argv[i];
    fflush(NULL);
    execv(self, args);
    cli_error("finetune: cannot run '%s': %s (is it installed beside sparsify?)", self,
              strerror(errno));
    free(args);
    return EXIT_FAILED;
}
