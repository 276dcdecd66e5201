/*
 * The HTML report and the JUnit XML (report.h).
 *
 * HTML: one self-contained page (inline CSS, one inline SVG bar per row, no
 * script, no fonts or images fetched), deterministic for the same input (no
 * clock). At 1400 px it is a table; under 700 px (a phone) every row becomes
 * a card with the bar across the screen. Markup: each row is
 * <tr class="layer ..."> holding one <svg class="bar">, so the number of
 * bars is the number of rows (tests/cli_report.py counts them in the DOM
 * Chromium builds).
 *
 * Escaping: names, paths and messages can hold anything a file holds. Text
 * is escaped for HTML and XML alike (& < > " '), control bytes and bytes
 * that are not well-formed UTF-8 (or are code points XML forbids) are
 * written as the four visible characters \xNN, so the page and the XML
 * always parse and show what was there.
 */
#include "cmd/report.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/git_rev.h"

void cli_report_row_init(cli_report_row *r, const char *name)
{
    memset(r, 0, sizeof *r);
    r->name = name;
    r->before = r->sparsity = r->target = -1;
    r->conform = CLI_REPORT_UNKNOWN;
    r->dense_bytes = r->stored_bytes = -1;
    r->speedup = -1;
}

void cli_report_init(cli_report *r, const char *command, const char *input)
{
    memset(r, 0, sizeof *r);
    r->command = command;
    r->input = input;
    r->verdict = CLI_REPORT_UNKNOWN;
    r->input_bytes = r->output_bytes = -1;
    r->speedup = -1;
}

/* ---- escaping ---- */

/* Length of the well-formed UTF-8 sequence at s (1..4) whose code point XML
 * allows, or 0. */
static size_t utf8_ok(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n;
    unsigned cp;
    if (c < 0x80)
        return c >= 0x20 && c != 0x7f ? 1 : 0;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff || (cp >= 0x80 && cp < 0xa0))
        return 0;
    return n;
}

/* s as text for HTML or XML (element content or a quoted attribute). */
static void esc(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        switch (*p) {
        case '&': fputs("&amp;", f); p++; continue;
        case '<': fputs("&lt;", f); p++; continue;
        case '>': fputs("&gt;", f); p++; continue;
        case '"': fputs("&quot;", f); p++; continue;
        case '\'': fputs("&#39;", f); p++; continue;
        }
        size_t n = utf8_ok(p);
        if (!n) {
            fprintf(f, "\\x%02x", *p++);
            continue;
        }
        fwrite(p, 1, n, f);
        p += n;
    }
}

/* open, then text escaped, then close: an element around a name. */
static void wrap(FILE *f, const char *open, const char *text, const char *close)
{
    fputs(open, f);
    esc(f, text);
    fputs(close, f);
}

/* ---- numbers ---- */

static const char *pct(double v, char *buf, size_t len)
{
    snprintf(buf, len, "%.2f%%", 100.0 * v);
    return buf;
}

static const char *bytes(int64_t n, char *buf, size_t len)
{
    return cli_bytes((double)n, buf, len);
}

/* ---- HTML ---- */

static const char css[] =
    ":root{--fg:#1a202c;--muted:#5a6472;--bg:#fff;--card:#f1f4f8;--line:#dde2e8;"
    "--track:#e6eaf0;--before:#9fb8e8;--after:#2b6cb0;--target:#d53f8c;--ok:#2f855a;"
    "--fail:#c53030;--fast:#38a169;--slow:#dd6b20}\n"
    "@media (prefers-color-scheme:dark){:root{--fg:#e2e8f0;--muted:#a0aec0;--bg:#171923;"
    "--card:#232735;--line:#2d3348;--track:#2d3348;--before:#5a67d8;--after:#63b3ed;"
    "--ok:#68d391;--fail:#fc8181}}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;padding:24px 32px;font:15px/1.45 system-ui,-apple-system,'Segoe UI',"
    "Roboto,sans-serif;color:var(--fg);background:var(--bg)}\n"
    "h1{font-size:22px;margin:0 0 2px}\n"
    ".files{color:var(--muted);margin:0 0 16px;overflow-wrap:anywhere}\n"
    ".cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(165px,1fr));gap:12px;"
    "margin:0 0 18px}\n"
    ".card{background:var(--card);border-radius:8px;padding:10px 14px}\n"
    ".card .k{display:block;color:var(--muted);font-size:12px;text-transform:uppercase;"
    "letter-spacing:.04em}\n"
    ".card .v{display:block;font-size:20px;font-weight:600;font-variant-numeric:tabular-nums}\n"
    ".card.pass{background:#e6f4ea}.card.pass .v{color:var(--ok)}\n"
    ".card.failed{background:#fdecec}.card.failed .v{color:var(--fail)}\n"
    "@media (prefers-color-scheme:dark){.card.pass,.card.failed{background:var(--card)}}\n"
    ".banner{border-left:4px solid var(--fail);background:var(--card);padding:8px 12px;"
    "margin:0 0 16px}\n"
    ".legend{display:flex;flex-wrap:wrap;gap:6px 18px;color:var(--muted);font-size:13px;"
    "margin:0 0 6px}\n"
    ".sw{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-1px;"
    "margin-right:6px}\n"
    "table{width:100%;border-collapse:collapse}\n"
    "th{text-align:left;font-size:12px;color:var(--muted);text-transform:uppercase;"
    "letter-spacing:.03em;border-bottom:2px solid var(--line);padding:6px 8px;white-space:nowrap}\n"
    "td{padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:middle}\n"
    "td.name{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;"
    "overflow-wrap:anywhere;min-width:12em}\n"
    "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\n"
    "td.barcell{width:32%;min-width:160px}\n"
    "td.speedcell{width:14%;min-width:90px}\n"
    "svg.bar,svg.speed{display:block;width:100%;height:18px}\n"
    ".track{fill:var(--track)}.before{fill:var(--before)}.after{fill:var(--after)}\n"
    ".tick{stroke:var(--target);stroke-width:3}.one{stroke:var(--muted);stroke-width:2}\n"
    ".fast{fill:var(--fast)}.slow{fill:var(--slow)}\n"
    ".ok{color:var(--ok);font-weight:600}.fail{color:var(--fail);font-weight:600}\n"
    ".sub{display:block;font-family:system-ui,sans-serif;font-size:12px;color:var(--muted)}\n"
    ".sub.viol{color:var(--fail)}\n"
    "footer{margin-top:18px;color:var(--muted);font-size:12px}\n"
    /* a phone: each row a card, the name and the bars across the screen,
     * the numbers flowing beside each other underneath */
    "@media (max-width:700px){body{padding:14px}h1{font-size:19px}"
    ".cards{grid-template-columns:repeat(2,1fr);gap:8px}.card .v{font-size:17px}"
    "thead{display:none}table,tbody{display:block;width:100%}"
    "tr{display:flex;flex-wrap:wrap;align-items:baseline;gap:2px 14px;"
    "border-bottom:1px solid var(--line);padding:8px 0}"
    "td{display:block;border:0;padding:0;min-width:0;width:auto}td:empty{display:none}"
    "td.name,td.barcell,td.speedcell{flex:0 0 100%;width:100%;min-width:0}"
    "td.barcell,td.speedcell{padding:3px 0}td.num{text-align:left}"
    "td[data-label]::before{content:attr(data-label) ' ';color:var(--muted);font-size:12px}}\n";

/* The sparsity a row shows: after the command, else before it (the plan
 * of a dry run). Both bars only when both are known. */
static double shown(const cli_report_row *w) { return w->sparsity >= 0 ? w->sparsity : w->before; }
static bool two_bars(const cli_report_row *w) { return w->before >= 0 && w->sparsity >= 0; }

typedef struct cols {
    bool shape, pattern, before, target, conform, size, speed, note;
} cols;

static cols columns(const cli_report *r)
{
    cols c = {0};
    for (size_t i = 0; i < r->nrows; i++) {
        const cli_report_row *w = &r->rows[i];
        c.shape |= w->shape != NULL;
        c.pattern |= w->pattern != NULL;
        c.before |= two_bars(w);
        c.target |= w->target >= 0;
        c.conform |= w->conform != CLI_REPORT_UNKNOWN;
        c.size |= w->stored_bytes >= 0;
        c.speed |= w->speedup > 0;
    }
    return c;
}

static void card(FILE *f, const char *cls, const char *key, const char *value)
{
    fprintf(f, "<div class=\"card%s%s\"><span class=\"k\">", cls ? " " : "", cls ? cls : "");
    esc(f, key);
    wrap(f, "</span><span class=\"v\">", value, "</span></div>\n");
}

static void sparsity_bar(FILE *f, const cli_report_row *w)
{
    /* 1000 units wide; before (thin, above) and after (thick) */
    char a[32], b[32], t[32];
    fputs("<svg class=\"bar\" viewBox=\"0 0 1000 18\" preserveAspectRatio=\"none\" "
          "role=\"img\" aria-label=\"",
          f);
    if (two_bars(w))
        fprintf(f, "sparsity %s before, ", pct(w->before, b, sizeof b));
    fprintf(f, "sparsity %s", pct(shown(w) >= 0 ? shown(w) : 0, a, sizeof a));
    if (w->target >= 0)
        fprintf(f, ", target %s", pct(w->target, t, sizeof t));
    fputs("\"><rect class=\"track\" x=\"0\" y=\"0\" width=\"1000\" height=\"18\"/>", f);
    double s = shown(w) >= 0 ? fmin(fmax(shown(w), 0), 1) : 0;
    if (two_bars(w)) {
        fprintf(f, "<rect class=\"before\" x=\"0\" y=\"1\" width=\"%.1f\" height=\"5\"/>",
                1000 * fmin(fmax(w->before, 0), 1));
        fprintf(f, "<rect class=\"after\" x=\"0\" y=\"7\" width=\"%.1f\" height=\"11\"/>", 1000 * s);
    } else {
        fprintf(f, "<rect class=\"after\" x=\"0\" y=\"2\" width=\"%.1f\" height=\"14\"/>", 1000 * s);
    }
    if (w->target >= 0)
        fprintf(f, "<line class=\"tick\" x1=\"%.1f\" x2=\"%.1f\" y1=\"0\" y2=\"18\" "
                   "vector-effect=\"non-scaling-stroke\"/>",
                1000 * fmin(fmax(w->target, 0), 1), 1000 * fmin(fmax(w->target, 0), 1));
    fputs("</svg>", f);
}

static void speed_bar(FILE *f, double s, double scale)
{
    double one = 1000 / scale;
    fprintf(f,
            "<svg class=\"speed\" viewBox=\"0 0 1000 18\" preserveAspectRatio=\"none\" "
            "role=\"img\" aria-label=\"%.2fx the dense speed\">"
            "<rect class=\"track\" x=\"0\" y=\"0\" width=\"1000\" height=\"18\"/>"
            "<rect class=\"%s\" x=\"0\" y=\"2\" width=\"%.1f\" height=\"14\"/>"
            "<line class=\"one\" x1=\"%.1f\" x2=\"%.1f\" y1=\"0\" y2=\"18\" "
            "vector-effect=\"non-scaling-stroke\"/></svg>",
            s, s >= 1 ? "fast" : "slow", 1000 * fmin(s / scale, 1), one, one);
}

static void head(FILE *f, const cli_report *r)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<meta name=\"generator\" content=\"sparsify " SPARSIFY_VERSION "\">\n<title>sparsify ",
          f);
    esc(f, r->command);
    fputs(": ", f);
    esc(f, r->input);
    fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<header>\n<h1>sparsify ", css);
    esc(f, r->command);
    fputs("</h1>\n<p class=\"files\">", f);
    esc(f, r->input);
    if (r->output) {
        fputs(" &#8594; ", f);
        esc(f, r->output);
    }
    if (r->format) {
        fputs(" &#183; ", f);
        esc(f, r->format);
    }
    fputs("</p>\n</header>\n", f);
}

static void summary_cards(FILE *f, const cli_report *r, const cols *c)
{
    char v[128], a[32], b[32];
    double numel = 0, zb = 0, za = 0;
    int64_t dense = 0, stored = 0;
    size_t known = 0, ok = 0;
    for (size_t i = 0; i < r->nrows; i++) {
        const cli_report_row *w = &r->rows[i];
        numel += (double)w->numel;
        zb += w->before >= 0 ? w->before * (double)w->numel : 0;
        za += shown(w) >= 0 ? shown(w) * (double)w->numel : 0;
        if (w->conform != CLI_REPORT_UNKNOWN) {
            known++;
            ok += w->conform == CLI_REPORT_OK;
        }
        if (w->stored_bytes >= 0 && w->dense_bytes >= 0) {
            dense += w->dense_bytes;
            stored += w->stored_bytes;
        }
    }
    fputs("<section class=\"cards\">\n", f);
    if (r->verdict != CLI_REPORT_UNKNOWN)
        card(f, r->verdict == CLI_REPORT_OK ? "pass" : "failed", "result",
             r->verdict == CLI_REPORT_OK ? "passed" : "failed");
    snprintf(v, sizeof v, "%zu", r->nrows);
    card(f, NULL, "tensors", v);
    snprintf(v, sizeof v, "%.0f", numel);
    card(f, NULL, "parameters", v);
    double sb = numel > 0 ? zb / numel : 0, sa = numel > 0 ? za / numel : 0;
    if (c->before)
        snprintf(v, sizeof v, "%s \xe2\x86\x92 %s", pct(sb, b, sizeof b), pct(sa, a, sizeof a));
    else
        snprintf(v, sizeof v, "%s", pct(sa, a, sizeof a));
    card(f, NULL, "sparsity", v);
    if (known) {
        snprintf(v, sizeof v, "%zu of %zu", ok, known);
        /* coloured only where it is the verdict (check), not in inspect */
        const char *cls = r->verdict == CLI_REPORT_UNKNOWN ? NULL : ok == known ? "pass" : "failed";
        card(f, cls, r->conform_label ? r->conform_label : "conform", v);
    }
    if (r->input_bytes >= 0) {
        if (r->output_bytes >= 0)
            snprintf(v, sizeof v, "%s \xe2\x86\x92 %s", bytes(r->input_bytes, b, sizeof b),
                     bytes(r->output_bytes, a, sizeof a));
        else
            snprintf(v, sizeof v, "%s", bytes(r->input_bytes, b, sizeof b));
        card(f, NULL, r->output_bytes >= 0 ? "file size" : "file", v);
    }
    if (c->size && dense > 0) {
        snprintf(v, sizeof v, "%s \xe2\x86\x92 %s", bytes(dense, b, sizeof b),
                 bytes(stored, a, sizeof a));
        card(f, NULL, "dense \xe2\x86\x92 stored", v);
    }
    if (r->speedup > 0) {
        snprintf(v, sizeof v, "%.2fx", r->speedup);
        card(f, r->speedup >= 1 ? "pass" : "failed", "speedup vs dense", v);
    }
    fputs("</section>\n", f);
    if (r->summary) {
        wrap(f, "<p class=\"files\">", r->summary, "</p>\n");
    }
    if (r->global_violation) {
        wrap(f, "<p class=\"banner\">", r->global_violation, "</p>\n");
    }
}

static void legend(FILE *f, const cols *c)
{
    fputs("<div class=\"legend\">", f);
    if (c->before)
        fputs("<span><span class=\"sw\" style=\"background:var(--before)\"></span>sparsity "
              "before</span><span><span class=\"sw\" style=\"background:var(--after)\"></span>"
              "sparsity after</span>",
              f);
    else
        fputs("<span><span class=\"sw\" style=\"background:var(--after)\"></span>sparsity "
              "(zeros / elements)</span>",
              f);
    if (c->target)
        fputs("<span><span class=\"sw\" style=\"background:var(--target)\"></span>target</span>", f);
    if (c->speed)
        fputs("<span><span class=\"sw\" style=\"background:var(--fast)\"></span>kernel speedup "
              "(line: 1x, dense)</span>",
              f);
    fputs("</div>\n", f);
}

static void table(FILE *f, const cli_report *r, const cols *c)
{
    char a[32], b[32];
    double scale = 2;
    for (size_t i = 0; i < r->nrows; i++)
        if (r->rows[i].speedup > scale)
            scale = r->rows[i].speedup;
    scale = fmin(scale * 1.05, 100);
    fputs("<table>\n<thead><tr><th>tensor</th>", f);
    if (c->shape)
        fputs("<th>shape</th>", f);
    if (c->pattern)
        fputs("<th>pattern</th>", f);
    fputs("<th class=\"num\">params</th><th>sparsity</th><th class=\"num\"></th>", f);
    if (c->target)
        fputs("<th class=\"num\">target</th>", f);
    if (c->conform) {
        wrap(f, "<th>", r->conform_label ? r->conform_label : "conforms", "</th>");
    }
    if (c->size)
        fputs("<th class=\"num\">dense &#8594; stored</th>", f);
    if (c->speed)
        fputs("<th>speedup</th><th class=\"num\"></th>", f);
    fputs("</tr></thead>\n<tbody>\n", f);
    for (size_t i = 0; i < r->nrows; i++) {
        const cli_report_row *w = &r->rows[i];
        fprintf(f, "<tr class=\"layer%s\"><td class=\"name\">",
                w->conform == CLI_REPORT_FAIL ? " failed" : "");
        esc(f, w->name);
        if (w->conform == CLI_REPORT_FAIL && w->violation) {
            wrap(f, "<span class=\"sub viol\">", w->violation, "</span>");
        }
        if (w->note) {
            wrap(f, "<span class=\"sub\">", w->note, "</span>");
        }
        fputs("</td>", f);
        if (c->shape) {
            wrap(f, "<td class=\"num\" data-label=\"shape\">", w->shape ? w->shape : "", "</td>");
        }
        if (c->pattern) {
            wrap(f, "<td data-label=\"pattern\">", w->pattern ? w->pattern : "", "</td>");
        }
        fprintf(f, "<td class=\"num\" data-label=\"params\">%llu</td><td class=\"barcell\">",
                (unsigned long long)w->numel);
        sparsity_bar(f, w);
        fputs("</td><td class=\"num\" data-label=\"sparsity\">", f);
        if (two_bars(w))
            fprintf(f, "%s &#8594; ", pct(w->before, b, sizeof b));
        fputs(shown(w) >= 0 ? pct(shown(w), a, sizeof a) : "", f);
        fputs("</td>", f);
        if (c->target)
            fprintf(f, "<td class=\"num\" data-label=\"target\">%s</td>",
                    w->target >= 0 ? pct(w->target, a, sizeof a) : "");
        if (c->conform) {
            fputs("<td data-label=\"", f);
            esc(f, r->conform_label ? r->conform_label : "conforms");
            fprintf(f, "\">%s</td>", w->conform == CLI_REPORT_OK     ? "<span class=\"ok\">yes</span>"
                                     : w->conform == CLI_REPORT_FAIL ? "<span class=\"fail\">no</span>"
                                                                 : "&#8211;");
        }
        if (c->size) {
            fputs("<td class=\"num\" data-label=\"dense &#8594; stored\">", f);
            if (w->stored_bytes >= 0 && w->dense_bytes >= 0)
                fprintf(f, "%s &#8594; %s", bytes(w->dense_bytes, a, sizeof a),
                        bytes(w->stored_bytes, b, sizeof b));
            fputs("</td>", f);
        }
        if (c->speed) {
            fputs("<td class=\"speedcell\">", f);
            if (w->speedup > 0)
                speed_bar(f, w->speedup, scale);
            fprintf(f, "</td><td class=\"num\" data-label=\"speedup\">");
            if (w->speedup > 0)
                fprintf(f, "%.2fx", w->speedup);
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</tbody>\n</table>\n", f);
}

/* What body writes, as a new string; NULL when out of memory. */
static char *render(void (*body)(FILE *, const cli_report *), const cli_report *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    body(f, r);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void html_page(FILE *f, const cli_report *r)
{
    cols c = columns(r);
    head(f, r);
    fputs("<main>\n", f);
    summary_cards(f, r, &c);
    legend(f, &c);
    table(f, r, &c);
    fputs("</main>\n<footer>Written by sparsify " SPARSIFY_VERSION " (git " SPARSIFY_GIT_REV
          "). Sparsity is the share of elements equal to zero.</footer>\n</body>\n</html>",
          f);
}

char *cli_report_html(const cli_report *r) { return render(html_page, r); }

/* ---- JUnit XML ---- */

static void junit_xml(FILE *f, const cli_report *r)
{
    size_t tests = r->nrows + (r->global_violation != NULL), failures = !!r->global_violation;
    for (size_t i = 0; i < r->nrows; i++)
        failures += r->rows[i].conform == CLI_REPORT_FAIL;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<testsuites name=\"sparsify %s\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" "
               "time=\"0\">\n",
            r->command, tests, failures);
    fprintf(f, "  <testsuite name=\"sparsify %s ", r->command);
    esc(f, r->input);
    fprintf(f, "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" skipped=\"0\" time=\"0\">\n",
            tests, failures);
    wrap(f, "    <properties>\n      <property name=\"input\" value=\"", r->input, "\"/>\n");
    if (r->format) {
        wrap(f, "      <property name=\"format\" value=\"", r->format, "\"/>\n");
    }
    fputs("      <property name=\"sparsify\" value=\"" SPARSIFY_VERSION " (git " SPARSIFY_GIT_REV
          ")\"/>\n    </properties>\n",
          f);
    char a[32], t[32];
    for (size_t i = 0; i < r->nrows; i++) {
        const cli_report_row *w = &r->rows[i];
        wrap(f, "    <testcase classname=\"", r->input, "\" name=\"");
        esc(f, w->name);
        fputs("\" time=\"0\">\n", f);
        if (w->conform == CLI_REPORT_FAIL) {
            wrap(f, "      <failure type=\"sparsify.check\" message=\"", w->violation, "\">tensor '");
            esc(f, w->name);
            wrap(f, "': ", w->violation, "</failure>\n");
        }
        fputs("      <system-out>pattern ", f);
        esc(f, w->pattern ? w->pattern : "unstructured");
        fprintf(f, ", target %s, sparsity %s</system-out>\n    </testcase>\n",
                w->target >= 0 ? pct(w->target, t, sizeof t) : "none",
                w->sparsity >= 0 ? pct(w->sparsity, a, sizeof a) : "unknown");
    }
    if (r->global_violation) {
        fputs("    <testcase classname=\"", f);
        esc(f, r->input);
        fputs("\" name=\"global sparsity\" time=\"0\">\n      <failure type=\"sparsify.check\" "
              "message=\"",
              f);
        esc(f, r->global_violation);
        wrap(f, "\">", r->global_violation, "</failure>\n    </testcase>\n");
    }
    fputs("  </testsuite>\n</testsuites>", f);
}

char *cli_report_junit(const cli_report *r) { return render(junit_xml, r); }

int cli_report_write(const char *path, char *text)
{
    if (!text) {
        cli_error("cannot write '%s': out of memory", path);
        return EXIT_FAILED;
    }
    int rc = cli_write_text(path, text);
    free(text);
    return rc;
}

int64_t cli_path_bytes(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode))
        return S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1;
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    int64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat es;
        if (fstatat(dfd, e->d_name, &es, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(es.st_mode))
            total += (int64_t)es.st_size;
    }
    closedir(d);
    return total;
}
