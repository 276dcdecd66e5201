/*
 * Reports written to files, in one place: the self-contained HTML report
 * (--report-html on prune, check, inspect and bench) and the JUnit XML of
 * check (--junit). Commands fill a `cli_report` from their own results; this
 * module lays it out and escapes every name that came from a file.
 */
#ifndef SPARSIFY_CMD_REPORT_H
#define SPARSIFY_CMD_REPORT_H

#include <stdint.h>

#include "cmd/cli.h"

enum { CLI_REPORT_UNKNOWN = -1, CLI_REPORT_FAIL = 0, CLI_REPORT_OK = 1 };

/* One tensor or layer. Negative numbers and NULL strings mean "not known
 * here": the page leaves out a column no row knows. */
typedef struct cli_report_row {
    const char *name;         /* from the file: escaped when written */
    const char *shape;        /* "[48, 64]" */
    const char *pattern;      /* "unstructured", "2:4", "4x1" */
    uint64_t numel;
    double before;            /* sparsity before the command, 0..1 */
    double sparsity;          /* sparsity after it, or as measured, 0..1 */
    double target;            /* the target sparsity */
    int conform;              /* CLI_REPORT_OK / CLI_REPORT_FAIL: the pattern check */
    const char *violation;    /* why, when CLI_REPORT_FAIL */
    int64_t dense_bytes;      /* numel x element size */
    int64_t stored_bytes;     /* in the exported file (.spz) */
    double speedup;           /* dense time / sparse kernel time */
    const char *note;         /* "shares storage with ...", "left dense" */
} cli_report_row;

/* A row with nothing known but its name. */
void cli_report_row_init(cli_report_row *r, const char *name);

typedef struct cli_report {
    const char *command;       /* "prune", "check", "inspect", "bench" */
    const char *input;         /* path as given */
    const char *output;        /* NULL: none */
    const char *format;        /* the input's format name, NULL unknown */
    const char *conform_label; /* title of the conformance column: "pattern", "2:4" */
    int verdict;               /* CLI_REPORT_OK / CLI_REPORT_FAIL / CLI_REPORT_UNKNOWN */
    const char *summary;       /* one line: "3 tensors checked, 0 failed" */
    const char *global_violation; /* check --scope global: why the aggregate fails */
    int64_t input_bytes, output_bytes; /* file (or folder) sizes, < 0 unknown */
    double speedup;            /* the whole model (bench), <= 0 not measured */
    const cli_report_row *rows;
    size_t nrows;
} cli_report;

/* Zeroes r and marks every number unknown. */
void cli_report_init(cli_report *r, const char *command, const char *input);

/* The HTML page: one file, inline CSS and SVG, no script, nothing fetched.
 * Returns a new string (caller frees), NULL when out of memory. */
char *cli_report_html(const cli_report *r);

/* JUnit XML: one testsuite, one testcase per row, a <failure> carrying the
 * violation on each CLI_REPORT_FAIL row, and one more failing testcase for a
 * global violation. Returns a new string (caller frees), NULL when out of
 * memory. */
char *cli_report_junit(const cli_report *r);

/* Write text (taken: freed here; NULL means out of memory) to path, which
 * cli_output_check has already accepted. Returns an exit code. */
int cli_report_write(const char *path, char *text);

/* Bytes of a file, or of the regular files directly inside a folder (a
 * Hugging Face folder); -1 when it cannot be read. Links are not followed. */
int64_t cli_path_bytes(const char *path);

#endif
