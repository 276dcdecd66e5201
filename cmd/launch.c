/*
 * `sparsify finetune`, `run` and `sensitivity`, and the calibration pass of
 * `prune --score wanda`: run the helper executable sparsify-torch, which
 * links libtorch, with the command's name and arguments. Keeping libtorch
 * out of the main binary keeps every other command fast to start and small
 * in memory.
 *
 * Where the helper is: installed, in LIBEXECDIR/sparsify, found relative to
 * the running sparsify (SP_HELPER_DIR, set by meson.build: e.g.
 * "../libexec/sparsify" from BINDIR), so an installed tree works from any
 * prefix or DESTDIR; in the build folder, beside sparsify.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd/launch.h"

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

/* The descriptor the helper writes its norms to. */
#define NORMS_FD 3

int cli_calibrate(const char *model, const char *data, const char *label_column, long samples,
                  cli_norms *out)
{
    memset(out, 0, sizeof *out);
    char self[PATH_MAX], tried[2 * PATH_MAX + 16], nbuf[32], fdbuf[16];
    if (!cli_torch_helper(self, sizeof self, tried, sizeof tried)) {
        cli_error("calibration: cannot find %s (looked for %s); it is installed with sparsify in "
                  "LIBEXECDIR/sparsify",
                  HELPER_NAME, tried[0] ? tried : "it beside sparsify");
        return EXIT_FAILED;
    }
    snprintf(nbuf, sizeof nbuf, "%ld", samples);
    snprintf(fdbuf, sizeof fdbuf, "%d", NORMS_FD);
    char *args[] = {self, "calibrate", (char *)model, "--calibration", (char *)data,
                    "--calibration-samples", nbuf, "--out-fd", fdbuf,
                    label_column ? "--label-column" : NULL, (char *)label_column, NULL};
    int mfd = memfd_create("sparsify-calibration", MFD_CLOEXEC);
    if (mfd < 0) {
        cli_error("calibration: cannot create a memory file: %s", strerror(errno));
        return EXIT_FAILED;
    }
    fflush(NULL);
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        cli_error("calibration: cannot start '%s': %s", self, strerror(errno));
        close(mfd);
        return EXIT_FAILED;
    }
    if (pid == 0) {
        /* the child: it ends with its parent (a SIGTERM to sparsify alone
         * stops both); the memory file becomes NORMS_FD (kept across exec) */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
            _exit(EXIT_FAILED);
        bool ok = mfd == NORMS_FD ? fcntl(mfd, F_SETFD, 0) == 0 : dup2(mfd, NORMS_FD) == NORMS_FD;
        if (ok)
            execv(self, args);
        static const char msg[] = "sparsify: error: calibration: cannot run sparsify-torch\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(EXIT_FAILED);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            cli_error("calibration: waiting for '%s': %s", self, strerror(errno));
            close(mfd);
            return EXIT_FAILED;
        }
    if (WIFSIGNALED(status)) {
        cli_error("calibration: '%s' was ended by signal %d", self, WTERMSIG(status));
        close(mfd);
        return EXIT_FAILED;
    }
    if (WEXITSTATUS(status) != 0) {
        close(mfd); /* the helper printed the reason */
        return WEXITSTATUS(status);
    }
    struct stat sb;
    if (fstat(mfd, &sb) || sb.st_size <= 0) {
        cli_error("calibration: '%s' wrote no norms", self);
        close(mfd);
        return EXIT_FAILED;
    }
    out->size = (size_t)sb.st_size;
    out->map = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, mfd, 0);
    close(mfd);
    if (out->map == MAP_FAILED) {
        out->map = NULL;
        cli_error("calibration: cannot map the norms: %s", strerror(errno));
        return EXIT_FAILED;
    }
    sp_error err = {0};
    if (sp_ckpt_open_mem(&out->ck, "calibration norms", out->map, out->size, &err)) {
        cli_norms_release(out);
        return cli_fail(&err);
    }
    return EXIT_OK;
}

void cli_norms_release(cli_norms *n)
{
    sp_ckpt_close(n->ck);
    if (n->map)
        munmap(n->map, n->size);
    memset(n, 0, sizeof *n);
}
