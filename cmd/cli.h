/*
 * Shared helpers of the sparsify command-line tool (cmd/ only; the library
 * never prints). Exit codes are documented in docs/cli.md:
 *   0  ok
 *   1  the work failed, or a check did not pass
 *   2  usage error or bad input (unreadable/malformed file, bad recipe)
 */
#ifndef SPARSIFY_CMD_CLI_H
#define SPARSIFY_CMD_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "sparsify/sparsify.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

/* Every subcommand: argv[0] is the subcommand's name. Returns an exit code. */
typedef int (*cli_cmd_fn)(int argc, char **argv);

int cmd_bench(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_densify(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_finetune(int argc, char **argv);     /* in sparsify-torch */
int cmd_run(int argc, char **argv);          /* in sparsify-torch */
int cmd_sensitivity(int argc, char **argv);  /* in sparsify-torch */
int cmd_calibrate(int argc, char **argv);    /* in sparsify-torch (prune --score wanda) */
int cmd_torch_launch(int argc, char **argv); /* execs sparsify-torch argv[0] ... */
/* The path of the helper sparsify-torch (cmd/launch.c: installed in
 * LIBEXECDIR/sparsify, or beside sparsify in the build folder) into path;
 * false when it is in neither place, with the places tried in `tried`. */
bool cli_torch_helper(char *path, size_t len, char *tried, size_t tried_len);
int cmd_inspect(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_recipe(int argc, char **argv);

/* "sparsify: error: <msg>\n" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "sparsify: warning: <msg>\n" on stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print err's message as an error and return the exit code for its status. */
int cli_fail(const sp_error *err);
/* Exit code for a library status (see the table above). */
int cli_exit_code(sp_status s);
/* Print a usage error plus "try 'sparsify CMD --help'" and return 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parse a double/integer option strictly; on failure print and return false. */
bool cli_parse_double(const char *opt, const char *s, double *out);
bool cli_parse_long(const char *opt, const char *s, long *out);
/*
 * Outputs: one policy for every command that writes (docs/cli.md,
 * "Outputs"). cli_output_check refuses, with one error line and exit 2:
 *  - OUT that is IN (the same file or folder, a link to it), unless
 *    CLI_OUT_IN_PLACE (and never with CLI_OUT_NEVER_IN_PLACE);
 *  - OUT inside the input folder, or an OUT folder that contains IN;
 *  - OUT that exists (a file, a link, a non-empty folder), unless
 *    CLI_OUT_FORCE.
 * On success OUT's temporary is registered for removal when a signal ends
 * the run. in may be NULL. Returns 0 or EXIT_USAGE.
 */
enum {
    CLI_OUT_FORCE = 1,          /* --force given */
    CLI_OUT_IN_PLACE = 2,       /* --in-place given */
    CLI_OUT_NEVER_IN_PLACE = 4, /* the command cannot replace its input */
};
int cli_output_check(const char *in, const char *out, unsigned flags);
/* Write a small text file (a report) under the same policy's atomicity. */
int cli_write_text(const char *path, const char *text);
/* Once, from main(): on SIGINT, SIGTERM and SIGHUP the temporaries of the
 * registered outputs are removed before the signal ends the process; a
 * SIGBUS on a mapped input (changed or truncated while being read) becomes
 * "sparsify: error: 'FILE': changed or truncated while being read", the
 * same cleanup, and exit 2. See docs/architecture.md, "Trust". */
void cli_signals_install(void);

/* True when stderr is a terminal (progress bars only then). */
bool cli_stderr_is_tty(void);
/* Format a shape as "[128, 64]" into buf; returns buf. */
const char *cli_shape(int ndim, const int64_t *shape, char *buf, size_t len);
/* Format a byte count as "12.3 MB". */
const char *cli_bytes(double n, char *buf, size_t len);

/* Load a recipe (a path or a bundled name) for a command, printing what
 * the user needs to see: every problem of a bad recipe on its own error
 * line ("'r.yaml': line 7: pruning_modifiers[1].final_sparsity: 1.5 is out
 * of range [0, 1]"), the warnings of a good one. substitute: run the
 * closest modifier in place of unimplemented ones. Returns EXIT_OK with a
 * new recipe in *out (free with sp_recipe_free), or the exit code. */
int cli_recipe_load(sp_recipe **out, const char *recipe, bool substitute);
/* Print recipe problems, each prefixed with the recipe's name: errors as
 * errors (when errors is true), warnings as warnings. */
void cli_recipe_problems(const char *recipe, const sp_recipe_problem *v, size_t n, bool errors);

/* Monotonic clock, seconds. */
double cli_now_s(void);

/* --threads N: 1..1024; on failure print and return false (exit 2). */
bool cli_parse_threads(const char *opt, const char *s, int *out);

/* Progress bar on stderr, shown only when stderr is a terminal:
 * "LABEL:  42.0%  1.2 GB of 2.9 GB", redrawn at most five times a second;
 * callable from any one thread at a time (the library's progress callbacks
 * are).
 * cli_progress_update is an sp_progress_fn (ctx = the cli_progress);
 * cli_progress_end clears an unfinished bar before anything else is
 * printed (an error, a report). */
typedef struct cli_progress {
    const char *label;
    bool on, drawn;
    double last;
} cli_progress;
void cli_progress_init(cli_progress *p, const char *label, bool enabled);
void cli_progress_update(void *ctx, uint64_t done, uint64_t total);
void cli_progress_end(cli_progress *p);

/* Usage error for an unknown option arg (its "=value" dropped), with a "did
 * you mean" among longopts (may be NULL) and shortopts (may be NULL), or
 * "is ambiguous" for an abbreviation of several long options. Returns 2. */
int cli_unknown_option(const char *cmd, const char *arg, const struct option *longopts,
                       const char *shortopts);
/* getopt_long without getopt's own messages: returns its result, or '?'
 * after printing one usage error (unknown option with a suggestion, missing
 * value, value given to a flag) and setting *rc to 2. */
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
               const char *cmd, int *rc);

#endif
