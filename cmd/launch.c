/*
 * `sparsify finetune` and `sparsify run`: run the sibling executable
 * sparsify-torch (built beside sparsify and installed with it), which links
 * libtorch, with the command's name and arguments. Keeping libtorch out of
 * the main binary keeps every other command fast to start and small in
 * memory.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cli.h"

int cmd_torch_launch(int argc, char **argv)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        cli_error("%s: cannot locate the sparsify executable: %s", argv[0], strerror(errno));
        return EXIT_FAILED;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash || (size_t)(slash - self) + sizeof "/sparsify-torch" > sizeof self) {
        cli_error("%s: cannot locate sparsify-torch", argv[0]);
        return EXIT_FAILED;
    }
    strcpy(slash, "/sparsify-torch");
    /* sparsify-torch <command> <args...>: argv[0] is the command's name */
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args) {
        cli_error("out of memory");
        return EXIT_FAILED;
    }
    args[0] = self;
    for (int i = 0; i < argc; i++)
        args[i + 1] = argv[i];
    fflush(NULL);
    execv(self, args);
    cli_error("%s: cannot run '%s': %s (is it installed beside sparsify?)", argv[0], self,
              strerror(errno));
    free(args);
    return EXIT_FAILED;
}
