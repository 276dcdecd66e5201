/*
 * Regular expressions for tensor selection, in Python `re` syntax, on PCRE2.
 *
 * Users write their --include/--exclude patterns and their recipes' "re:"
 * params for Python, so a pattern must mean here what it means in Python 3
 * for a str pattern. PCRE2 runs with UTF and UCP (\d, \w, \s and \b are
 * Unicode-aware, as in Python), and the few spellings where the two
 * languages disagree are rewritten before compiling:
 *
 *   Python          PCRE2        why
 *   \Z              \z           Python's \Z is the very end; PCRE2's allows
 *                                a trailing newline
 *   \v              \x0b         PCRE2's \v is a class of vertical spaces
 *   \uXXXX, \UXXXXXXXX  \x{...}  PCRE2 has no \u / \U
 *   {,n}  {,}       {0,n} {0,}   PCRE2 10.42 reads "{,n}" as literal text
 *   [ inside a set  \[           "[[:alpha:]]" is a POSIX class in PCRE2,
 *                                a set of '[', ':', 'a', ... in Python
 *
 * and what Python rejects is rejected here too, rather than silently taking
 * a PCRE2 meaning: escapes of ASCII letters Python does not know (\h, \K,
 * \p, \Q, \R, ...), \N{...}, inline flags other than i, m, s, x (u is
 * Python's default and dropped; a and L are refused), global flags after
 * the start of the pattern, PCRE2 verbs "(*...)" and the extensions Python
 * lacks (callouts, recursion, "(?|", "(?<name>"). (?P<name>...), (?P=name),
 * lookarounds, atomic groups, conditionals, possessive and lazy
 * quantifiers are the same in both. Verbose-mode comments are tracked so
 * that a '[' or '(' inside one is not taken for syntax.
 *
 * Hostile patterns (recipes come from anywhere) are bounded: a pattern is
 * at most SP_REGEX_MAX_LEN bytes, PCRE2 rejects compiled patterns over its
 * size limit, and every match runs under match, depth and heap limits, so
 * catastrophic backtracking fails in milliseconds with an error instead of
 * running for hours.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparsify/prune.h"

#define MATCH_LIMIT 1000000u /* backtracking steps per match: ~10 ms */
#define DEPTH_LIMIT 10000u   /* nested backtracking frames */
#define HEAP_LIMIT_KIB 8192u /* heap for backtracking frames */

struct sp_regex {
    char *pattern; /* as the user wrote it */
    bool anchored;
    pcre2_code *code;
    pcre2_match_context *mctx;
};

/* A growable output buffer for the translation. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool nomem;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->nomem)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->nomem = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* Escapes of ASCII letters that Python accepts, outside and inside a set. */
static const char py_escapes[] = "abBdDfnrstvwWxAZuUNS";
static const char py_class_escapes[] = "abdDfnrstvwWxuUNS";

/* Translate one escape at s (s[0] == '\\'); returns the bytes consumed, or
 * 0 after setting err. */
static size_t escape(sbuf *b, const char *s, bool in_class, const char *pat, sp_error *err)
{
    char c = s[1];
    size_t pos = (size_t)(s - pat);
    if (!c) {
        sp_error_set(err, SP_ERR_INVALID_ARG, "bad escape (end of pattern) at position %zu", pos);
        return 0;
    }
    if (!is_alpha(c)) {
        put(b, s, 2); /* \. \\ \( digits (backreferences, octal) ... */
        return 2;
    }
    if (!strchr(in_class ? py_class_escapes : py_escapes, c)) {
        sp_error_set(err, SP_ERR_INVALID_ARG, "bad escape \\%c at position %zu", c, pos);
        return 0;
    }
    switch (c) {
    case 'Z':
        puts_(b, "\\z");
        return 2;
    case 'v':
        puts_(b, "\\x0b");
        return 2;
    case 'N':
        sp_error_set(err, SP_ERR_INVALID_ARG,
                     "\\N{...} named characters are not supported (at position %zu); write the "
                     "character or \\uXXXX",
                     pos);
        return 0;
    case 'x':
    case 'u':
    case 'U': {
        size_t want = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        for (size_t i = 0; i < want; i++)
            if (!is_hex(s[2 + i])) {
                sp_error_set(err, SP_ERR_INVALID_ARG, "incomplete escape \\%c at position %zu", c,
                             pos);
                return 0;
            }
        puts_(b, "\\x{");
        put(b, s + 2, want);
        puts_(b, "}");
        return 2 + want;
    }
    default:
        put(b, s, 2);
        return 2;
    }
}

/* "(?flags)" or "(?flags:" / "(?-flags:" at s (s[0..1] == "(?"): checks the
 * letters against Python's. Returns the bytes consumed (the flag group is
 * copied without Python's 'u'), 0 when s is not a flag group, or
 * (size_t)-1 after setting err. A global group ends in ')'. */
static size_t flag_group(sbuf *b, const char *s, bool at_start, const char *pat, sp_error *err)
{
    size_t pos = (size_t)(s - pat), i = 2;
    if (!s[2] || !strchr("aiLmsux-", s[2]))
        return 0; /* another extension (or one Python does not know) */
    while (is_alpha(s[i]) || s[i] == '-')
        i++;
    if (s[i] != ')' && s[i] != ':')
        return 0; /* let PCRE2 report it */
    bool global = s[i] == ')';
    for (size_t k = 2; k < i; k++) {
        char f = s[k];
        if (f == '-' || f == 'i' || f == 'm' || f == 's' || f == 'x' || f == 'u')
            continue;
        if (f == 'a' || f == 'L') {
            sp_error_set(err, SP_ERR_INVALID_ARG,
                         "flag '%c' at position %zu is not supported (patterns are Unicode, as "
                         "Python's str patterns)",
                         f, pos);
            return (size_t)-1;
        }
        sp_error_set(err, SP_ERR_INVALID_ARG, "unknown flag '%c' at position %zu", f, pos);
        return (size_t)-1;
    }
    if (global && strchr(s, '-') && (size_t)(strchr(s, '-') - s) < i) {
        sp_error_set(err, SP_ERR_INVALID_ARG, "missing : at position %zu", pos + i);
        return (size_t)-1;
    }
    if (global && !at_start) {
        sp_error_set(err, SP_ERR_INVALID_ARG,
                     "global flags not at the start of the expression at position %zu", pos);
        return (size_t)-1;
    }
    size_t kept = 0;
    bool minus = false;
    for (size_t k = 2; k < i; k++) {
        minus = minus || s[k] == '-';
        if (s[k] == 'u' && minus) {
            sp_error_set(err, SP_ERR_INVALID_ARG, "flag 'u' at position %zu cannot be turned off",
                         pos);
            return (size_t)-1;
        }
        kept += s[k] != 'u';
    }
    if (global && !kept)
        return i + 1; /* "(?u)": Unicode is the default */
    put(b, "(?", 2);
    for (size_t k = 2; k < i; k++)
        if (s[k] != 'u')
            put(b, s + k, 1);
    put(b, s + i, 1);
    return i + 1;
}

/* The extensions "(?X" Python knows besides flag groups: (?: (?P<name>
 * (?P=name) (?= (?! (?<= (?<! (?# (?> and (?( conditionals. */
static bool python_extension(const char *s)
{
    return strchr(":=!#>(", s[2]) || (s[2] == 'P' && (s[3] == '<' || s[3] == '=')) ||
           (s[2] == '<' && (s[3] == '=' || s[3] == '!'));
}

/* Does the flag group at s (its letters up to ':' or ')') turn x on or
 * off? Returns 1, 0, or -1 when it does not mention x. */
static int verbose_flag(const char *s)
{
    bool minus = false;
    for (size_t k = 2; s[k] != ':' && s[k] != ')'; k++) {
        if (s[k] == '-')
            minus = true;
        else if (s[k] == 'x')
            return !minus;
    }
    return -1;
}

enum { MAX_NEST = 250 }; /* PCRE2's own default parentheses limit */

/* Python `re` pattern -> PCRE2 pattern (see the table at the top). Returns
 * a new string, or NULL with err set. In verbose mode ((?x), also scoped)
 * a '#' starts a comment to the end of the line, copied as is: PCRE2 gets
 * the same flag and skips it too. */
static char *translate(const char *pat, sp_error *err)
{
    sbuf b = {0};
    bool in_class = false, at_start = true, verbose = false;
    bool saved[MAX_NEST]; /* verbose outside each open group */
    int depth = 0;
    const char *s = pat;
    puts_(&b, "");
    while (*s) {
        if (*s == '\\') {
            size_t n = escape(&b, s, in_class, pat, err);
            if (!n)
                goto fail;
            s += n;
            at_start = false;
            continue;
        }
        if (in_class) {
            if (*s == ']') {
                in_class = false;
                put(&b, s++, 1);
            } else if (*s == '[') {
                puts_(&b, "\\[");
                s++;
            } else {
                put(&b, s++, 1);
            }
            continue;
        }
        if (verbose && *s == '#') {
            size_t n = strcspn(s, "\n");
            put(&b, s, n);
            s += n;
            continue;
        }
        if (*s == '[') {
            in_class = true;
            put(&b, s++, 1);
            if (*s == '^')
                put(&b, s++, 1);
            if (*s == ']') { /* a leading ']' is literal in both */
                puts_(&b, "\\]");
                s++;
            }
            at_start = false;
            continue;
        }
        if (*s == '(') {
            size_t pos = (size_t)(s - pat);
            if (s[1] == '*') { /* PCRE2 verbs, (*UTF) ...: Python sees a bare '*' */
                sp_error_set(err, SP_ERR_INVALID_ARG, "nothing to repeat at position %zu", pos + 1);
                goto fail;
            }
            if (s[1] == '?') {
                size_t n = flag_group(&b, s, at_start, pat, err);
                if (n == (size_t)-1)
                    goto fail;
                int vx = n ? verbose_flag(s) : -1;
                if (n && s[n - 1] == ')') { /* global: for the rest of the pattern */
                    if (vx >= 0)
                        verbose = vx;
                    s += n;
                    continue;
                }
                if (!n && !python_extension(s)) {
                    sp_error_set(err, SP_ERR_INVALID_ARG, "unknown extension ?%c at position %zu",
                                 s[2] ? s[2] : ' ', pos + 1);
                    goto fail;
                }
                if (depth == MAX_NEST) {
                    sp_error_set(err, SP_ERR_INVALID_ARG,
                                 "more than %d nested groups at position %zu", MAX_NEST, pos);
                    goto fail;
                }
                saved[depth++] = verbose;
                if (vx >= 0)
                    verbose = vx;
                if (n) { /* a scoped flag group, copied by flag_group */
                    s += n;
                    at_start = false;
                    continue;
                }
            } else {
                if (depth == MAX_NEST) {
                    sp_error_set(err, SP_ERR_INVALID_ARG,
                                 "more than %d nested groups at position %zu", MAX_NEST, pos);
                    goto fail;
                }
                saved[depth++] = verbose;
            }
        } else if (*s == ')' && depth > 0) {
            verbose = saved[--depth];
        }
        if (s[0] == '{' && s[1] == ',') { /* {,n} and {,} */
            size_t i = 2;
            while (is_digit(s[i]))
                i++;
            if (s[i] == '}') {
                puts_(&b, "{0,");
                put(&b, s + 2, i - 2);
                puts_(&b, "}");
                s += i + 1;
                at_start = false;
                continue;
            }
        }
        put(&b, s++, 1);
        at_start = false;
    }
    if (b.nomem) {
        sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    return b.p;
fail:
    free(b.p);
    return NULL;
}

sp_status sp_regex_new(sp_regex **out, const char *pattern, bool anchored, sp_error *err)
{
    *out = NULL;
    size_t len = strlen(pattern);
    if (len > SP_REGEX_MAX_LEN)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "regex '%.40s...' is %zu bytes long (the limit is %d)", pattern, len,
                            SP_REGEX_MAX_LEN);
    sp_error terr = {0};
    char *pc = translate(pattern, &terr);
    if (!pc)
        return sp_error_set(err, terr.code, "regex '%s': %s", pattern, terr.msg);
    sp_regex *re = calloc(1, sizeof *re);
    pcre2_compile_context *cctx = pcre2_compile_context_create(NULL);
    sp_status st = SP_OK;
    if (!re || !cctx || !(re->pattern = strdup(pattern))) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    pcre2_set_max_pattern_length(cctx, 4 * (size_t)SP_REGEX_MAX_LEN);
    int ec;
    PCRE2_SIZE eoff;
    re->code = pcre2_compile((PCRE2_SPTR)pc, PCRE2_ZERO_TERMINATED,
                             PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C, &ec, &eoff, cctx);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        st = sp_error_set(err, ec == PCRE2_ERROR_NOMEMORY ? SP_ERR_NOMEM : SP_ERR_INVALID_ARG,
                          "regex '%s': %s", pattern, (const char *)msg);
        goto out;
    }
    re->mctx = pcre2_match_context_create(NULL);
    if (!re->mctx) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    pcre2_set_match_limit(re->mctx, MATCH_LIMIT);
    pcre2_set_depth_limit(re->mctx, DEPTH_LIMIT);
    pcre2_set_heap_limit(re->mctx, HEAP_LIMIT_KIB);
    re->anchored = anchored;
    *out = re;
    re = NULL;
out:
    pcre2_compile_context_free(cctx);
    sp_regex_free(re);
    free(pc);
    return st;
}

void sp_regex_free(sp_regex *re)
{
    if (!re)
        return;
    pcre2_code_free(re->code);
    pcre2_match_context_free(re->mctx);
    free(re->pattern);
    free(re);
}

const char *sp_regex_pattern(const sp_regex *re) { return re->pattern; }

sp_status sp_regex_match(const sp_regex *re, const char *subject, bool *matched, sp_error *err)
{
    *matched = false;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    int rc = pcre2_match(re->code, (PCRE2_SPTR)subject, strlen(subject), 0,
                         re->anchored ? PCRE2_ANCHORED : 0, md, re->mctx);
    pcre2_match_data_free(md);
    if (rc >= 0) {
        *matched = true;
        return SP_OK;
    }
    if (rc == PCRE2_ERROR_NOMATCH)
        return SP_OK;
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
        rc == PCRE2_ERROR_HEAPLIMIT)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "regex '%s' backtracks too much on '%s' (gave up after the match "
                            "limit); simplify the pattern",
                            re->pattern, subject);
    if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21)
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "tensor name '%s' is not valid UTF-8, so regex '%s' cannot be matched "
                            "against it",
                            subject, re->pattern);
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return sp_error_set(err, rc == PCRE2_ERROR_NOMEMORY ? SP_ERR_NOMEM : SP_ERR_INTERNAL,
                        "regex '%s' on '%s': %s", re->pattern, subject, (const char *)msg);
}
