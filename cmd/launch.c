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
 *
 * `sparsify finetune --nproc N` starts N sparsify-torch processes on this
 * machine instead, as torchrun does: RANK, WORLD_SIZE, LOCAL_RANK,
 * LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT in their
 * environment. Rank 0 starts first and serves the rendezvous once it has
 * checked every input, so bad input is reported once, by one process; the
 * others start when its port answers. The launcher then supervises them:
 * it forwards SIGINT, SIGTERM and SIGHUP to every worker; when one fails,
 * the others normally fail within moments (their collectives lose it), and
 * any still running after a grace period are stopped (SIGTERM, then
 * SIGKILL); a worker killed by a signal nobody sent it gets one line here,
 * since it could not say anything itself. The exit code is the first
 * failing worker's (1 when a signal ended it).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd/launch.h"

#ifndef SP_HELPER_DIR
#define SP_HELPER_DIR "../libexec/sparsify"
#endif

#define HELPER_NAME "sparsify-torch"

#define MAX_NPROC 1024
#define GRACE_S 10.0 /* after a failure, before the rest are stopped */
#define KILL_S 5.0   /* after SIGTERM, before SIGKILL */

/* A port nothing listens on now, from the kernel (bind to port 0). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Whether something accepts connections on 127.0.0.1:port. */
static bool port_answers(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

typedef struct worker {
    pid_t pid;
    bool alive;
    int status; /* waitpid's */
    bool signalled_by_us;
} worker;

typedef struct launch {
    const char *exe;
    char **args; /* sparsify-torch finetune ... (NULL-terminated) */
    int nproc, port;
    worker w[MAX_NPROC];
    int alive;
    int first_failed; /* the worker whose failure came first, or -1 */
    sigset_t old_mask;
} launch;

static bool start_worker(launch *L, int rank)
{
    char port[16];
    snprintf(port, sizeof port, "%d", L->port);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        cli_error("finetune: cannot start process %d of %d: %s", rank, L->nproc, strerror(errno));
        return false;
    }
    if (pid == 0) {
        char r[16], n[16];
        snprintf(r, sizeof r, "%d", rank);
        snprintf(n, sizeof n, "%d", L->nproc);
        setenv("RANK", r, 1);
        setenv("LOCAL_RANK", r, 1);
        setenv("WORLD_SIZE", n, 1);
        setenv("LOCAL_WORLD_SIZE", n, 1);
        setenv("MASTER_ADDR", "127.0.0.1", 1);
        setenv("MASTER_PORT", port, 1);
        sigprocmask(SIG_SETMASK, &L->old_mask, NULL);
        execv(L->exe, L->args);
        cli_error("finetune: cannot run '%s': %s", L->exe,
                  strerror(errno));
        _exit(EXIT_FAILED);
    }
    L->w[rank] = (worker){.pid = pid, .alive = true};
    L->alive++;
    return true;
}

static void signal_all(launch *L, int sig)
{
    for (int i = 0; i < L->nproc; i++)
        if (L->w[i].alive) {
            kill(L->w[i].pid, sig);
            if (sig == SIGTERM || sig == SIGKILL)
                L->w[i].signalled_by_us = true;
            if (sig == SIGTERM)
                kill(L->w[i].pid, SIGCONT); /* a stopped worker handles SIGTERM only once resumed */
        }
}

/* Collect the workers that ended; returns how many failed among them. */
static int reap(launch *L)
{
    int failed = 0, st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
        for (int i = 0; i < L->nproc; i++)
            if (L->w[i].alive && L->w[i].pid == pid) {
                L->w[i].alive = false;
                L->w[i].status = st;
                L->alive--;
                if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
                    failed++;
                    if (L->first_failed < 0)
                        L->first_failed = i;
                }
            }
    return failed;
}

/* Wait up to `seconds` for a signal; returns it, or 0 on timeout. */
static int next_signal(const sigset_t *set, double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    siginfo_t si;
    int s = sigtimedwait(set, &si, &ts);
    return s > 0 ? s : 0;
}

static int run_workers(launch *L)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &L->old_mask);

    int interrupted = 0;
    double failed_at = -1, term_at = -1;
    bool ok = start_worker(L, 0);
    bool started = L->nproc == 1;
    while (ok && L->alive > 0) {
        int sig = next_signal(&set, started ? 0.2 : 0.05);
        double now = cli_now_s();
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
            interrupted = sig;
            signal_all(L, sig);
            if (term_at < 0)
                term_at = now; /* SIGKILL for whoever ignores it */
        }
        if (reap(L) > 0 && failed_at < 0)
            failed_at = now;
        if (!started && !interrupted && failed_at < 0 && L->w[0].alive && port_answers(L->port)) {
            /* rank 0 checked its inputs and serves the rendezvous */
            for (int r = 1; r < L->nproc && ok; r++)
                ok = start_worker(L, r);
            started = true;
        }
        if (failed_at >= 0 && term_at < 0 && now - failed_at > GRACE_S) {
            signal_all(L, SIGTERM);
            term_at = now;
        }
        if (term_at >= 0 && now - term_at > KILL_S)
            signal_all(L, SIGKILL);
    }
    if (!ok) { /* a fork failed: stop the ones started */
        signal_all(L, SIGTERM);
        double t0 = cli_now_s();
        while (L->alive > 0) {
            next_signal(&set, 0.2);
            reap(L);
            if (cli_now_s() - t0 > KILL_S)
                signal_all(L, SIGKILL);
        }
    }
    sigprocmask(SIG_SETMASK, &L->old_mask, NULL);
    if (interrupted) {
        /* end the way the signal ends a process, for the shell */
        signal(interrupted, SIG_DFL);
        raise(interrupted);
        return EXIT_FAILED;
    }
    for (int i = 0; i < L->nproc; i++) {
        int st = L->w[i].status;
        if (WIFSIGNALED(st) && !L->w[i].signalled_by_us)
            cli_error("finetune: process %d of %d (pid %ld) was killed by signal %d (%s)", i,
                      L->nproc, (long)L->w[i].pid, WTERMSIG(st), strsignal(WTERMSIG(st)));
    }
    if (!ok)
        return EXIT_FAILED;
    if (L->first_failed < 0)
        return EXIT_OK;
    int st = L->w[L->first_failed].status;
    return WIFEXITED(st) ? WEXITSTATUS(st) : EXIT_FAILED;
}

/* --nproc N / --nproc=N among finetune's arguments (before any "--"):
 * its index, or -1; *n gets N. */
static int find_nproc(int argc, char **argv, long *n, int *nargs, int *rc)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--nproc")) {
            if (i + 1 >= argc) {
                *rc = cli_usage_error("finetune", "option '--nproc' needs a value");
                return -2;
            }
            v = argv[i + 1];
            *nargs = 2;
        } else if (!strncmp(argv[i], "--nproc=", 8)) {
            v = argv[i] + 8;
            *nargs = 1;
        } else {
            continue;
        }
        if (!cli_parse_long("--nproc", v, n)) {
            *rc = EXIT_USAGE;
            return -2;
        }
        if (*n < 1 || *n > MAX_NPROC) {
            cli_error("option '--nproc': %ld is out of range [1, %d]", *n, MAX_NPROC);
            *rc = EXIT_USAGE;
            return -2;
        }
        return i;
    }
    return -1;
}

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
    long nproc = 0;
    int at = -1, nargs = 0, rc = EXIT_USAGE;
    if (!strcmp(argv[0], "finetune")) {
        at = find_nproc(argc, argv, &nproc, &nargs, &rc);
        if (at == -2)
            return rc;
        /* A distributed run reports a lost rank in one line of its own:
         * libtorch's log (glog, where c10d writes its socket errors) only
         * when asked for. */
        const char *ws = getenv("WORLD_SIZE");
        bool dist = nproc > 1 || (ws && *ws && strcmp(ws, "1"));
        for (int i = 1; i < argc && !dist; i++)
            dist = !strcmp(argv[i], "--world-size") || !strncmp(argv[i], "--world-size=", 13);
        if (dist)
            setenv("GLOG_minloglevel", "3", 0);
    }
    /* sparsify-torch <command> <args...>: argv[0] is the command's name */
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args) {
        cli_error("out of memory");
        return EXIT_FAILED;
    }
    args[0] = helper;
    int k = 1;
    for (int i = 0; i < argc; i++)
        if (at < 0 || i < at || i >= at + nargs)
            args[k++] = argv[i];
    if (at >= 0 && nproc > 1) {
        for (int i = 1; i < k; i++)
            if (!strcmp(args[i], "--rank") || !strcmp(args[i], "--world-size") ||
                !strcmp(args[i], "--master") || !strncmp(args[i], "--rank=", 7) ||
                !strncmp(args[i], "--world-size=", 13) || !strncmp(args[i], "--master=", 9)) {
                free(args);
                return cli_usage_error("finetune",
                                       "--nproc starts every process of the run itself: not with "
                                       "'%s'",
                                       args[i]);
            }
        launch *L = calloc(1, sizeof *L);
        if (!L) {
            free(args);
            cli_error("out of memory");
            return EXIT_FAILED;
        }
        L->exe = helper;
        L->args = args;
        L->nproc = (int)nproc;
        L->first_failed = -1;
        L->port = free_port();
        if (L->port < 0) {
            cli_error("finetune: no free port on 127.0.0.1 for the rendezvous: %s", strerror(errno));
            rc = EXIT_FAILED;
        } else {
            rc = run_workers(L);
        }
        free(L);
        free(args);
        return rc;
    }
    if (at >= 0) { /* --nproc 1: one process, whatever the environment says */
        unsetenv("RANK");
        unsetenv("WORLD_SIZE");
        unsetenv("LOCAL_RANK");
        unsetenv("LOCAL_WORLD_SIZE");
    }
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
