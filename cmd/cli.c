/* Shared helpers of the command-line tool: messages, exit codes, parsing. */
#include "cmd/cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One line on stderr: control bytes in the message (a tensor name or path
 * taken from a damaged file may hold a newline) are written as \xNN. */
static void vmsg(const char *kind, const char *fmt, va_list ap)
{
    char *msg = NULL;
    fprintf(stderr, "sparsify: %s: ", kind);
    if (vasprintf(&msg, fmt, ap) < 0) {
        fputs("(message lost: out of memory)\n", stderr);
        return;
    }
    for (const unsigned char *c = (const unsigned char *)msg; *c; c++) {
        if (*c < 0x20 || *c == 0x7f)
            fprintf(stderr, "\\x%02x", *c);
        else
            fputc(*c, stderr);
    }
    fputc('\n', stderr);
    free(msg);
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("error", fmt, ap);
    va_end(ap);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("warning", fmt, ap);
    va_end(ap);
}

/* "'r.yaml'" for a file, "bundled recipe 'gradual-90'" for a template. */
static void recipe_label(const char *recipe, char *buf, size_t len)
{
    bool file = strchr(recipe, '/') || sp_recipe_bundled_find(recipe) < 0;
    snprintf(buf, len, file ? "'%s'" : "bundled recipe '%s'", recipe);
}

void cli_recipe_problems(const char *recipe, const sp_recipe_problem *v, size_t n, bool errors)
{
    char label[4200], line[SP_ERR_MSG_MAX + 256];
    recipe_label(recipe, label, sizeof label);
    for (size_t i = 0; i < n; i++) {
        if (!v[i].warning && !errors)
            continue;
        sp_recipe_problem_str(&v[i], line, sizeof line);
        if (v[i].warning)
            cli_warn("%s: %s", label, line);
        else
            cli_error("%s: %s", label, line);
    }
}

int cli_recipe_load(sp_recipe **out, const char *recipe, bool substitute)
{
    sp_recipe_opts opts = {.substitute = substitute};
    sp_recipe_problems probs = {0};
    sp_error err = {0};
    sp_status st = sp_recipe_load_ex(out, recipe, &opts, &probs, &err);
    if (st && !probs.errors) /* not a recipe problem: the file, memory */
        return cli_fail(&err);
    cli_recipe_problems(recipe, probs.v, probs.n, st != SP_OK);
    if (probs.dropped)
        cli_error("%zu more problems in '%s' not shown", probs.dropped, recipe);
    sp_recipe_problems_release(&probs);
    return st ? cli_exit_code(st) : EXIT_OK;
}

int cli_exit_code(sp_status s)
{
    switch (s) {
    case SP_OK:
        return EXIT_OK;
    case SP_ERR_FORMAT:
    case SP_ERR_INVALID_ARG:
    case SP_ERR_UNSUPPORTED:
    case SP_ERR_NOT_FOUND:
        return EXIT_USAGE;
    case SP_ERR_IO:
    case SP_ERR_NOMEM:
    case SP_ERR_CHECK:
    case SP_ERR_INTERNAL:
        return EXIT_FAILED;
    }
    return EXIT_FAILED;
}

int cli_fail(const sp_error *err)
{
    cli_error("%s", err->msg[0] ? err->msg : sp_status_str(err->code));
    return cli_exit_code(err->code);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("error", fmt, ap);
    va_end(ap);
    fprintf(stderr, "try 'sparsify %s --help'\n", cmd);
    return EXIT_USAGE;
}

bool cli_parse_double(const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) {
        cli_error("option '%s': '%s' is not a number", opt, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_threads(const char *opt, const char *s, int *out)
{
    long v;
    if (!cli_parse_long(opt, s, &v))
        return false;
    if (v < 1 || v > 1024) {
        cli_error("option '%s': %ld threads (1..1024)", opt, v);
        return false;
    }
    *out = (int)v;
    return true;
}

bool cli_parse_long(const char *opt, const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) {
        cli_error("option '%s': '%s' is not an integer", opt, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_stderr_is_tty(void) { return isatty(2) == 1; }

const char *cli_bytes(double n, char *buf, size_t len)
{
    static const char *units[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    while (n >= 1000.0 && u < 4) {
        n /= 1000.0;
        u++;
    }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", n, units[u]);
    return buf;
}

/* ---- progress on a terminal (export, prune, ...) ---- */

double cli_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress_init(cli_progress *p, const char *label, bool enabled)
{
    p->label = label;
    p->on = enabled && cli_stderr_is_tty();
    p->drawn = false;
    p->last = 0;
}

void cli_progress_update(void *ctx, uint64_t done, uint64_t total)
{
    cli_progress *p = ctx;
    if (!p->on)
        return;
    double t = cli_now_s();
    if (done < total && t - p->last < 0.2)
        return;
    p->last = t;
    char a[32], b[32];
    fprintf(stderr, "\r%s: %5.1f%%  %s of %s", p->label,
            total ? 100.0 * (double)done / (double)total : 100.0,
            cli_bytes((double)done, a, sizeof a), cli_bytes((double)total, b, sizeof b));
    p->drawn = done < total;
    if (done >= total)
        fputc('\n', stderr);
    fflush(stderr);
}

void cli_progress_end(cli_progress *p)
{
    if (p->on && p->drawn)
        fputs("\r\033[K", stderr); /* an unfinished bar: clear it for the next line */
    p->drawn = false;
}

/* ---- "did you mean" ---- */

static bool long_prefix(const struct option *o, const char *name, size_t len)
{
    return !strncmp(o->name, name, len);
}

int cli_unknown_option(const char *cmd, const char *arg, const struct option *longopts,
                       const char *shortopts)
{
    char word[64];
    size_t len = strcspn(arg, "=");
    if (len >= sizeof word)
        len = sizeof word - 1;
    memcpy(word, arg, len);
    word[len] = '\0';
    /* an ambiguous abbreviation of long options */
    if (!strncmp(word, "--", 2) && len > 2) {
        char list[256];
        size_t k = 0, hits = 0;
        list[0] = '\0';
        for (const struct option *o = longopts; o && o->name; o++)
            if (long_prefix(o, word + 2, len - 2) && k < sizeof list)
                k += (size_t)snprintf(list + k, sizeof list - k, "%s--%s", hits++ ? ", " : "",
                                      o->name);
        if (hits > 1)
            return cli_usage_error(cmd, "option '%s' is ambiguous (%s)", word, list);
    }
    if (word[0] == '-' && word[1] != '-') /* one letter: any other is one edit away */
        return cli_usage_error(cmd, "unknown option '%s'", word);
    const char *names[128];
    char spell[128][40];
    size_t n = 0;
    for (const struct option *o = longopts; o && o->name && n < 128; o++, n++) {
        snprintf(spell[n], sizeof spell[n], "--%s", o->name);
        names[n] = spell[n];
    }
    for (const char *c = shortopts; c && *c && n < 128; c++)
        if (*c != ':' && *c != '+') {
            snprintf(spell[n], sizeof spell[n], "-%c", *c);
            names[n] = spell[n];
            n++;
        }
    const char *close = sp_closest_name(word, names, n);
    if (close)
        return cli_usage_error(cmd, "unknown option '%s' (did you mean '%s'?)", word, close);
    return cli_usage_error(cmd, "unknown option '%s'", word);
}

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
               const char *cmd, int *rc)
{
    char so[128];
    bool plus = shortopts[0] == '+';
    snprintf(so, sizeof so, "%s:%s", plus ? "+" : "", shortopts + plus);
    opterr = 0;
    int c = getopt_long(argc, argv, so, longopts, NULL);
    if (c != '?' && c != ':')
        return c;
    const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
    bool is_long = !strncmp(arg, "--", 2);
    int n = (int)strcspn(arg, "=");
    if (c == ':' && is_long) {
        *rc = cli_usage_error(cmd, "option '%.*s' needs a value", n, arg);
    } else if (c == ':') {
        *rc = cli_usage_error(cmd, "option '-%c' needs a value", optopt);
    } else if (!optopt) {
        *rc = cli_unknown_option(cmd, arg, longopts, shortopts);
    } else if (is_long) {
        *rc = cli_usage_error(cmd, "option '%.*s' takes no value", n, arg);
    } else {
        char sh[3] = {'-', (char)optopt, '\0'};
        *rc = cli_unknown_option(cmd, sh, longopts, shortopts);
    }
    return '?';
}

/* ---- outputs ---- */

/* The temporaries of this run's outputs, removed by the signal handlers.
 * cmd/ state, written before any handler can need it. */
#define CLI_MAX_OUTPUTS 4
static char cli_tmp[CLI_MAX_OUTPUTS][PATH_MAX];
static volatile sig_atomic_t cli_ntmp;

static void register_output(const char *out)
{
    char tmp[PATH_MAX];
    if (!sp_output_tmp_path(out, (long)getpid(), tmp, sizeof tmp))
        return;
    for (sig_atomic_t i = 0; i < cli_ntmp; i++)
        if (!strcmp(cli_tmp[i], tmp))
            return; /* checked against several inputs: registered once */
    if (cli_ntmp < CLI_MAX_OUTPUTS) {
        memcpy(cli_tmp[cli_ntmp], tmp, sizeof tmp);
        cli_ntmp = cli_ntmp + 1;
    }
}

static bool dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return false;
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(d)))
        empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    return empty;
}

/* The absolute path of the entry path names (its folder resolved, its last
 * component kept: a link there is the link, not its target). */
static bool entry_path(const char *path, char *buf)
{
    char dir[PATH_MAX], res[PATH_MAX];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return realpath(path, buf) != NULL;
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir)
            return false;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    if (!realpath(dir, res))
        return false;
    return snprintf(buf, PATH_MAX, "%s/%s", strcmp(res, "/") ? res : "", base) < PATH_MAX;
}

/* a lies strictly below folder b (both absolute, resolved) */
static bool is_below(const char *a, const char *b)
{
    size_t n = strlen(b);
    if (!strcmp(b, "/"))
        return a[0] == '/' && a[1];
    return !strncmp(a, b, n) && a[n] == '/' && a[n + 1];
}

int cli_output_check(const char *in, const char *out, unsigned flags)
{
    struct stat so, si, sf;
    bool out_exists = lstat(out, &so) == 0;
    bool in_exists = in && stat(in, &si) == 0;
    bool same = in && !strcmp(in, out);
    if (in_exists && out_exists)
        same = same || (so.st_dev == si.st_dev && so.st_ino == si.st_ino) ||
               (stat(out, &sf) == 0 && sf.st_dev == si.st_dev && sf.st_ino == si.st_ino);
    if (same) {
        if (flags & CLI_OUT_NEVER_IN_PLACE) {
            cli_error("output '%s' is the input; this command writes a new file and never replaces its input",
                      out);
            return EXIT_USAGE;
        }
        if (!(flags & CLI_OUT_IN_PLACE)) {
            cli_error("output '%s' is the input; use --in-place to replace it", out);
            return EXIT_USAGE;
        }
        register_output(out);
        return 0;
    }
    char rin[PATH_MAX], rout[PATH_MAX];
    if (in_exists && realpath(in, rin) && entry_path(out, rout)) {
        if (is_below(rin, rout)) {
            cli_error("output '%s' contains the input '%s'; choose another output", out, in);
            return EXIT_USAGE;
        }
        if (is_below(rout, rin)) {
            cli_error("output '%s' is inside the input folder '%s'; choose another output", out, in);
            return EXIT_USAGE;
        }
    }
    if (out_exists && !(flags & CLI_OUT_FORCE) && !(S_ISDIR(so.st_mode) && dir_is_empty(out))) {
        cli_error(S_ISDIR(so.st_mode) ? "output folder '%s' is not empty; use --force to replace it"
                                      : "output '%s' exists; use --force to replace it",
                  out);
        return EXIT_USAGE;
    }
    register_output(out);
    return 0;
}

const char *cli_shape(int ndim, const int64_t *shape, char *buf, size_t len)
{
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < len)
        snprintf(buf + k, len - k, "]");
    return buf;
}

int cli_write_text(const char *path, const char *text)
{
    sp_error err = {0};
    size_t n = strlen(text);
    char *buf = malloc(n + 2);
    if (!buf) {
        cli_error("cannot write '%s': out of memory", path);
        return EXIT_FAILED;
    }
    memcpy(buf, text, n);
    buf[n] = '\n';
    sp_status s = sp_file_write_atomic(path, buf, n + 1, &err);
    free(buf);
    return s ? cli_fail(&err) : EXIT_OK;
}

/* ---- signals (async-signal-safe from here on: system calls only) ---- */

static void remove_temporaries(void)
{
    for (sig_atomic_t i = 0; i < cli_ntmp; i++)
        sp_output_tmp_remove_own(cli_tmp[i]);
}

static pthread_t cli_main_thread;

static void on_terminate(int sig)
{
    /* The main thread is the one that writes: handle the signal there, so
     * that cleaning up never races with it (the library holds these
     * signals back while it creates and marks a temporary). */
    if (!pthread_equal(pthread_self(), cli_main_thread)) {
        pthread_kill(cli_main_thread, sig);
        return;
    }
    remove_temporaries();
    /* end now, with the usual exit status for sig */
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
}

static uintptr_t parse_hex(const char **p)
{
    uintptr_t v = 0;
    for (;; (*p)++) {
        char c = **p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return v;
        v = v * 16 + (uintptr_t)d;
    }
}

/* The file mapped at addr, from /proc/self/maps, into buf. */
static bool mapped_file(uintptr_t addr, char *buf, size_t len)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char chunk[4096], line[PATH_MAX + 256];
    size_t ll = 0;
    bool found = false;
    ssize_t n;
    while (!found && (n = read(fd, chunk, sizeof chunk)) > 0) {
        for (ssize_t i = 0; i < n && !found; i++) {
            if (chunk[i] != '\n') {
                if (ll < sizeof line - 1)
                    line[ll++] = chunk[i];
                continue;
            }
            line[ll] = '\0';
            ll = 0;
            /* start-end perms offset dev inode   path */
            const char *p = line;
            uintptr_t lo = parse_hex(&p);
            if (*p++ != '-')
                continue;
            uintptr_t hi = parse_hex(&p);
            if (addr < lo || addr >= hi)
                continue;
            for (int field = 0; field < 4 && *p; field++) {
                while (*p == ' ')
                    p++;
                while (*p && *p != ' ')
                    p++;
            }
            while (*p == ' ')
                p++;
            if (*p != '/')
                break; /* anonymous memory: not a file that changed */
            size_t k = 0;
            while (p[k] && k < len - 1) {
                buf[k] = p[k];
                k++;
            }
            buf[k] = '\0';
            found = true;
        }
    }
    close(fd);
    return found;
}

static void put(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void on_bus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    char path[PATH_MAX];
    if (!mapped_file((uintptr_t)si->si_addr, path, sizeof path)) {
        /* not an input that changed: a real fault, which the default
         * action reports when the instruction runs again */
        signal(sig, SIG_DFL);
        return;
    }
    /* several threads may read the changed file at once: one reports and
     * exits, the others wait for that exit */
    static atomic_flag reported = ATOMIC_FLAG_INIT;
    if (atomic_flag_test_and_set(&reported))
        for (;;)
            pause();
    remove_temporaries();
    put("sparsify: error: '");
    put(path);
    put("': changed or truncated while being read\n");
    _exit(EXIT_USAGE);
}

void cli_signals_install(void)
{
    cli_main_thread = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGHUP);
    sa.sa_handler = on_terminate;
    const int term[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof term / sizeof term[0]; i++) {
        struct sigaction old;
        /* a signal the caller ignores (nohup) stays ignored */
        if (sigaction(term[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaction(term[i], &sa, NULL);
    }
    sa.sa_handler = NULL;
    sa.sa_sigaction = on_bus;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, NULL);
}
