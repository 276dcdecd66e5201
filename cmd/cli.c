/* Shared helpers of the command-line tool: messages, exit codes, parsing. */
#include "cmd/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
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
