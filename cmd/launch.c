/*
 * `sparsify finetune` and `sparsify run`: run the helper executable
 * sparsify-torch, which links libtorch, with the command's name and
 * arguments. Keeping libtorch out of the main binary keeps every other
 * command fast to start and small in memory.
 *
 * Where the helper is: installed, in LIBEXECDIR/sparsify, found relative to
 * the running sparsify (SP_HELPER_DIR, set by meson.build: e.g.
 * "../libexec/sparsify" from BINDIR), so an installed tree works from any
 * prefix or DESTDIR; in the build folder, beside sparsify.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cli.h"

#ifndef SP_HELPER_DIR
#define SP_HELPER_DIR "../libexec/sparsify"
#endif

#define HELPER_NAME "sparsify-torch"

bool cli_torch_helper(char *path, size_t len, char *tried, size_t tried_len)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (tried_len)
        tried[0] = '\0';
    if (n <= 0)
        return false;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return false;
    *slash = '\0'; /* the folder sparsify runs from */
    const char *rel = SP_HELPER_DIR;
    char cand[2][PATH_MAX];
    int nc = 0;
    if (rel[0] == '/')
        nc += snprintf(cand[nc], PATH_MAX, "%s/%s", rel, HELPER_NAME) < PATH_MAX;
    else
        nc += snprintf(cand[nc], PATH_MAX, "%s/%s/%s", self, rel, HELPER_NAME) < PATH_MAX;
    nc += snprintf(cand[nc], PATH_MAX, "%s/%s", self, HELPER_NAME) < PATH_MAX;
    size_t k = 0;
    for (int i = 0; i < nc; i++) {
        if (access(cand[i], X_OK) == 0) {
            char real[PATH_MAX];
            if (!realpath(cand[i], real) || strlen(real) >= len)
                continue;
            strcpy(path, real);
            return true;
        }
        if (k < tried_len)
            k += (size_t)snprintf(tried + k, tried_len - k, "%s'%s'", i ? " or " : "", cand[i]);
    }
    return false;
}

int cmd_torch_launch(int argc, char **argv)
{
    char helper[PATH_MAX], tried[2 * PATH_MAX + 16];
    if (!cli_torch_helper(helper, sizeof helper, tried, sizeof tried)) {
        cli_error("%s: cannot find %s (looked for %s); it is installed with sparsify in "
                  "LIBEXECDIR/sparsify",
                  argv[0], HELPER_NAME, tried[0] ? tried : "it beside sparsify");
        return EXIT_FAILED;
    }
    /* sparsify-torch <command> <args...>: argv[0] is the command's name */
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args) {
        cli_error("out of memory");
        return EXIT_FAILED;
    }
    args[0] = helper;
    for (int i = 0; i < argc; i++)
        args[i + 1] = argv[i];
    fflush(NULL);
    execv(helper, args);
    cli_error("%s: cannot run '%s': %s", argv[0], helper, strerror(errno));
    free(args);
    return EXIT_FAILED;
}
