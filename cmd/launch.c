/*
 * `sparsify finetune`, `run` and `sensitivity`: run the sibling executable
 * sparsify-torch (built beside sparsify and installed with it), which links
 * libtorch, with the command's name and arguments. Keeping libtorch out of
 * the main binary keeps every other command fast to start and small in
 * memory.
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

/* The path of sparsify-torch beside this executable; false after an error
 * line (`who` is the command). */
static bool torch_path(char *self, size_t len, const char *who)
{
    ssize_t n = readlink("/proc/self/exe", self, len - 1);
    if (n <= 0) {
        cli_error("%s: cannot locate the sparsify executable: %s", who, strerror(errno));
        return false;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash || (size_t)(slash - self) + sizeof "/sparsify-torch" > len) {
        cli_error("%s: cannot locate sparsify-torch", who);
        return false;
    }
    strcpy(slash, "/sparsify-torch");
    return true;
}

int cmd_torch_launch(int argc, char **argv)
{
    char self[PATH_MAX];
    if (!torch_path(self, sizeof self, argv[0]))
        return EXIT_FAILED;
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

/* The descriptor the helper writes its norms to. */
#define NORMS_FD 3

int cli_calibrate(const char *model, const char *data, const char *label_column, long samples,
                  cli_norms *out)
{
    memset(out, 0, sizeof *out);
    char self[PATH_MAX], nbuf[32], fdbuf[16];
    if (!torch_path(self, sizeof self, "prune"))
        return EXIT_FAILED;
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
        static const char msg[] = "sparsify: error: calibration: cannot run sparsify-torch "
                                  "(is it installed beside sparsify?)\n";
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
