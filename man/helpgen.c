/*
 * helpgen — a build-time tool: turns the --help texts of sparsify into its
 * man pages and its bash and zsh completions, so that the manual, the
 * completions and `--help` have one source, the usage text of each command
 * (cmd/<name>.c) and the command table of cmd/main.c.
 *
 *   helpgen man  OUTDIR VERSION MAIN.help RECIPES.list CMD.help...
 *   helpgen bash OUTFILE VERSION MAIN.help RECIPES.list CMD.help...
 *   helpgen zsh  OUTFILE VERSION MAIN.help RECIPES.list CMD.help...
 *
 * MAIN.help is `sparsify --help`, RECIPES.list `sparsify recipe list`, each
 * CMD.help `sparsify CMD --help` (the command is the file's name less
 * ".help"). `man` writes OUTDIR/sparsify.1 and OUTDIR/sparsify-CMD.1.
 * The commands listed by MAIN.help must be exactly the CMD.help files given,
 * so a command added to cmd/main.c without its page fails the build.
 *
 * What is read from a help text (the layout every usage text follows):
 *   "usage: sparsify ..." and the lines under it up to a blank line: the
 *       synopsis (a line starting "sparsify" begins another form);
 *   "name:" alone at column 0: a heading ("options:", "data:", ...);
 *   a line indented 1-6 columns: an entry, "TERM  description" (two spaces
 *       end the term): "-o, --output OUT" (an option and its value), or
 *       "list" / "show NAME" (a subcommand);
 *   a line indented more: the description of the entry above, continued;
 *   "exit codes: ..." at column 0: the exit status;
 *   any other line at column 0: a paragraph of text.
 * For completion an option's value is: bundled recipe names or a file for
 * --recipe; a file when its placeholder names one (FILE, OUT, IN, DIR,
 * MODEL, TRAIN, VAL, or a name with an extension such as R.json); the
 * words of its description when it lists them ("layer (default) |
 * global", "spz, compressed-tensors, safetensors"); otherwise nothing
 * (a number or a pattern the user types).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITEMS 256
#define MAX_NAMES 4
#define MAX_CHOICES 16

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("helpgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

/* a + " " + b, freeing a */
static char *join(char *a, const char *b)
{
    if (!a)
        return xstrdup(b);
    size_t la = strlen(a), lb = strlen(b);
    char *p = xmalloc(la + 1 + lb + 1);
    memcpy(p, a, la);
    p[la] = ' ';
    memcpy(p + la + 1, b, lb + 1);
    free(a);
    return p;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open '%s': %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb)
                die("out of memory");
            buf = nb;
        }
    }
    if (ferror(f))
        die("cannot read '%s'", path);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* ---- the model of one help text ---- */

typedef enum { B_PARA, B_HEADING, B_ENTRY } block_kind;

typedef struct block {
    block_kind kind;
    char *term; /* B_ENTRY */
    char *text; /* paragraph, heading (without ':'), entry description */
} block;

typedef enum { V_NONE, V_FILE, V_RECIPE, V_CHOICE } value_kind;

typedef struct option {
    char *names[MAX_NAMES]; /* "-o", "--output" */
    size_t nnames;
    char *arg;              /* placeholder ("OUT"), NULL for a flag */
    value_kind value;
    char *choices[MAX_CHOICES];
    size_t nchoices;
    char *desc;
} option;

typedef struct subcmd {
    char *name;
    char *arg; /* its placeholder in the synopsis ("NAME", "FILE|NAME"), or NULL */
    char *desc;
} subcmd;

typedef struct help {
    char *name;    /* "prune"; "" for sparsify itself */
    char *summary; /* from the command table */
    char *synopsis[16];
    size_t nsynopsis;
    block blocks[MAX_ITEMS];
    size_t nblocks;
    char *exit_codes;
    option opts[MAX_ITEMS];
    size_t nopts;
    subcmd subs[32];
    size_t nsubs;
} help;

static size_t indent_of(const char *line)
{
    size_t i = 0;
    while (line[i] == ' ')
        i++;
    return i;
}

static void rstrip(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

static block *add_block(help *h, block_kind kind)
{
    if (h->nblocks == MAX_ITEMS)
        die("'%s': too many paragraphs and entries", h->name);
    block *b = &h->blocks[h->nblocks++];
    memset(b, 0, sizeof *b);
    b->kind = kind;
    return b;
}

static bool is_heading(const char *line)
{
    size_t n = strlen(line);
    if (n < 2 || n > 40 || line[n - 1] != ':' || !islower((unsigned char)line[0]))
        return false;
    for (size_t i = 0; i + 1 < n; i++)
        if (!islower((unsigned char)line[i]) && line[i] != ' ')
            return false;
    return true;
}

/* Parse text (modified; every piece kept is copied out of it). */
static void parse_text(help *h, char *text)
{
    enum { S_START, S_USAGE, S_BODY } state = S_START;
    block *cur = NULL;   /* the paragraph or entry that continues */
    bool in_exit = false;
    char *save = NULL;
    /* split on '\n' by hand: strtok would merge blank lines */
    for (char *line = text; line; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        if (!nl && !*line)
            break;
        rstrip(line);
        size_t ind = indent_of(line);
        const char *t = line + ind;
        if (!*t) { /* blank: ends the usage block, a paragraph, an entry */
            if (state == S_USAGE)
                state = S_BODY;
            cur = NULL;
            in_exit = false;
            continue;
        }
        if (state == S_START) {
            if (strncmp(line, "usage: ", 7))
                die("'%s': the help text does not start with 'usage: '", h->name);
            state = S_USAGE;
            h->synopsis[h->nsynopsis++] = xstrdup(line + 7);
            continue;
        }
        if (state == S_USAGE) {
            if (!strncmp(t, "sparsify", 8) && (t[8] == ' ' || !t[8])) {
                if (h->nsynopsis == sizeof h->synopsis / sizeof h->synopsis[0])
                    die("'%s': too many usage lines", h->name);
                h->synopsis[h->nsynopsis++] = xstrdup(t);
            } else { /* a continuation, kept on its own line as indented */
                char *prev = h->synopsis[h->nsynopsis - 1];
                size_t keep = ind > 7 ? ind - 7 : 0, lp = strlen(prev);
                char *joined = xmalloc(lp + 1 + keep + strlen(t) + 1);
                sprintf(joined, "%s\n%*s%s", prev, (int)keep, "", t);
                free(prev);
                h->synopsis[h->nsynopsis - 1] = joined;
            }
            continue;
        }
        if (ind == 0 && !strncmp(line, "exit codes:", 11)) {
            const char *v = line + 11;
            while (*v == ' ')
                v++;
            h->exit_codes = xstrdup(v);
            in_exit = true;
            cur = NULL;
            continue;
        }
        if (ind == 0 && in_exit) {
            h->exit_codes = join(h->exit_codes, t);
            continue;
        }
        if (ind == 0 && is_heading(line)) {
            block *b = add_block(h, B_HEADING);
            b->text = xstrndup(line, strlen(line) - 1);
            cur = NULL;
            continue;
        }
        if (ind == 0) {
            if (cur && cur->kind == B_PARA) {
                cur->text = join(cur->text, t);
            } else {
                cur = add_block(h, B_PARA);
                cur->text = xstrdup(t);
            }
            continue;
        }
        if (ind <= 6) {
            cur = add_block(h, B_ENTRY);
            const char *gap = strstr(t, "  ");
            if (gap) {
                cur->term = xstrndup(t, (size_t)(gap - t));
                while (*gap == ' ')
                    gap++;
                cur->text = xstrdup(gap);
            } else {
                cur->term = xstrdup(t);
                cur->text = xstrdup("");
            }
            continue;
        }
        /* deeper: the description above goes on */
        if (!cur)
            die("'%s': indented line '%s' follows no entry", h->name, t);
        cur->text = *cur->text ? join(cur->text, t) : (free(cur->text), xstrdup(t));
    }
    if (!h->nsynopsis)
        die("'%s': empty help text", h->name);
}

/* ---- option values ---- */

static bool is_file_placeholder(const char *a)
{
    static const char *const words[] = {"FILE", "OUT", "IN", "DIR", "MODEL", "TRAIN", "VAL"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (!strcmp(a, words[i]) || (strlen(words[i]) >= 3 && strstr(a, words[i])))
            return true;
    return strchr(a, '.') != NULL && strstr(a, "...") == NULL;
}

/* Split s at top-level (outside parentheses) occurrences of sep. */
static size_t split_top(const char *s, const char *sep, char **out, size_t max)
{
    size_t n = 0, depth = 0, ls = strlen(sep);
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')' && depth)
            depth--;
        bool end = !*p;
        if (end || (depth == 0 && !strncmp(p, sep, ls))) {
            if (n == max) { /* too many: none */
                while (n)
                    free(out[--n]);
                return max + 1;
            }
            out[n++] = xstrndup(start, (size_t)(p - start));
            if (end)
                break;
            p += ls - 1;
            start = p + 1;
        }
    }
    return n;
}

/* The value a piece of a list names: "layer (default)" -> "layer",
 * "dense: once ..." -> "dense"; NULL when the piece is prose or a
 * placeholder ("RxC blocks", "N:M"). */
static char *choice_word(const char *piece, bool last)
{
    const char *p = piece;
    while (*p == ' ')
        p++;
    size_t n = 0;
    while (p[n] && (islower((unsigned char)p[n]) || isdigit((unsigned char)p[n]) || p[n] == '-' ||
                    p[n] == '_' || p[n] == '.'))
        n++;
    if (!n || !islower((unsigned char)p[0]))
        return NULL;
    if (p[n] == ':' && p[n + 1] && p[n + 1] != ' ')
        return NULL; /* "cuda:N": a placeholder */
    const char *rest = p + n;
    while (*rest == ' ')
        rest++;
    if (*rest == '(') { /* "(default)": skip the parenthesis */
        int depth = 0;
        for (; *rest; rest++) {
            depth += *rest == '(';
            depth -= *rest == ')';
            if (!depth) {
                rest++;
                break;
            }
        }
        while (*rest == ' ')
            rest++;
    }
    if (*rest && !(last && (*rest == ':' || *rest == ';' || *rest == ',')))
        return NULL;
    return xstrndup(p, n);
}

static void free_pieces(char **pieces, size_t n)
{
    for (size_t i = 0; i < n && i <= MAX_CHOICES; i++)
        free(pieces[i]);
}

/* Values listed by an option's description: "a (default) | b | c", or
 * "[prefix: ]a, b or c". */
static void find_choices(option *o)
{
    char *pieces[MAX_CHOICES + 1];
    const char *d = o->desc;
    size_t n = split_top(d, " | ", pieces, MAX_CHOICES);
    if (n < 2 || n > MAX_CHOICES) {
        if (n <= MAX_CHOICES) /* (more made none) */
            free_pieces(pieces, n);
        /* a comma list, after a "what: " prefix without parentheses */
        const char *colon = strstr(d, ": ");
        if (colon && !memchr(d, '(', (size_t)(colon - d)))
            d = colon + 2;
        char *commas[MAX_CHOICES + 1];
        size_t nc = split_top(d, ", ", commas, MAX_CHOICES);
        if (nc > MAX_CHOICES)
            return;
        n = 0;
        for (size_t i = 0; i < nc; i++) {
            char *ors[MAX_CHOICES + 1];
            size_t no = split_top(commas[i], " or ", ors, MAX_CHOICES);
            for (size_t k = 0; k < no && no <= MAX_CHOICES; k++) {
                if (n < MAX_CHOICES)
                    pieces[n++] = ors[k];
                else
                    free(ors[k]);
            }
            free(commas[i]);
        }
        if (n < 2) {
            free_pieces(pieces, n);
            return;
        }
        /* in a comma list every piece must be a value */
        for (size_t i = 0; i < n; i++) {
            char *w = choice_word(pieces[i], i + 1 == n);
            if (!w) {
                for (size_t k = 0; k < o->nchoices; k++)
                    free(o->choices[k]);
                o->nchoices = 0;
                free_pieces(pieces, n);
                return;
            }
            o->choices[o->nchoices++] = w;
        }
        free_pieces(pieces, n);
        return;
    }
    /* "a | b | c": placeholders among them (RxC, N:M) are left out */
    for (size_t i = 0; i < n; i++) {
        char *w = choice_word(pieces[i], i + 1 == n);
        if (w)
            o->choices[o->nchoices++] = w;
    }
    if (o->nchoices < 2) {
        for (size_t k = 0; k < o->nchoices; k++)
            free(o->choices[k]);
        o->nchoices = 0;
    }
    free_pieces(pieces, n);
}

/* Options and subcommands from the entries and the synopsis. */
static void collect(help *h)
{
    for (size_t i = 0; i < h->nblocks; i++) {
        block *b = &h->blocks[i];
        if (b->kind != B_ENTRY)
            continue;
        if (b->term[0] == '-') {
            if (h->nopts == MAX_ITEMS)
                die("'%s': too many options", h->name);
            option *o = &h->opts[h->nopts++];
            memset(o, 0, sizeof *o);
            char *pieces[MAX_NAMES + 1];
            size_t n = split_top(b->term, ", ", pieces, MAX_NAMES);
            if (n > MAX_NAMES)
                die("'%s': option entry '%s' has too many names", h->name, b->term);
            for (size_t k = 0; k < n; k++) {
                char *sp = strchr(pieces[k], ' ');
                if (sp) {
                    *sp = '\0';
                    if (!o->arg)
                        o->arg = xstrdup(sp + 1);
                }
                if (pieces[k][0] != '-')
                    die("'%s': '%s' in '%s' is not an option", h->name, pieces[k], b->term);
                o->names[o->nnames++] = pieces[k];
            }
            o->desc = b->text;
            if (!o->arg)
                o->value = V_NONE;
            else if (!strcmp(o->names[o->nnames - 1], "--recipe"))
                o->value = V_RECIPE;
            else if (is_file_placeholder(o->arg))
                o->value = V_FILE;
            else {
                find_choices(o);
                o->value = o->nchoices ? V_CHOICE : V_NONE;
            }
        } else if (islower((unsigned char)b->term[0]) && h->name[0]) {
            if (h->nsubs == sizeof h->subs / sizeof h->subs[0])
                die("'%s': too many subcommands", h->name);
            subcmd *s = &h->subs[h->nsubs++];
            size_t len = strcspn(b->term, " ");
            s->name = xstrndup(b->term, len);
            s->desc = b->text;
            s->arg = NULL;
        }
    }
    /* a subcommand's argument as the synopsis spells it:
     * "sparsify recipe validate FILE|NAME [--json]" */
    for (size_t k = 0; k < h->nsubs; k++) {
        char prefix[256];
        snprintf(prefix, sizeof prefix, "sparsify %s %s ", h->name, h->subs[k].name);
        for (size_t i = 0; i < h->nsynopsis; i++) {
            if (strncmp(h->synopsis[i], prefix, strlen(prefix)))
                continue;
            const char *a = h->synopsis[i] + strlen(prefix);
            if (isupper((unsigned char)a[0])) {
                free(h->subs[k].arg);
                h->subs[k].arg = xstrndup(a, strcspn(a, " "));
            }
        }
    }
}

/* ---- inputs ---- */

typedef struct model {
    const char *version;
    help main;
    help *cmds;
    size_t ncmds;
    char *recipes[64];
    size_t nrecipes;
} model;

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void load(model *m, int argc, char **argv)
{
    /* argv: VERSION MAIN.help RECIPES.list CMD.help... */
    m->version = argv[0];
    memset(&m->main, 0, sizeof m->main);
    m->main.name = xstrdup("");
    char *text = read_file(argv[1]);
    parse_text(&m->main, text);
    free(text);
    collect(&m->main);

    char *list = read_file(argv[2]);
    for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
        size_t n = strcspn(line, " ");
        if (!n)
            continue;
        if (m->nrecipes == sizeof m->recipes / sizeof m->recipes[0])
            die("too many bundled recipes");
        m->recipes[m->nrecipes++] = xstrndup(line, n);
    }
    free(list);

    m->ncmds = (size_t)(argc - 3);
    m->cmds = calloc(m->ncmds ? m->ncmds : 1, sizeof *m->cmds);
    if (!m->cmds)
        die("out of memory");
    for (size_t i = 0; i < m->ncmds; i++) {
        const char *b = base_name(argv[3 + i]);
        const char *dot = strstr(b, ".help");
        if (!dot || dot[5])
            die("'%s': expected CMD.help", argv[3 + i]);
        help *h = &m->cmds[i];
        h->name = xstrndup(b, (size_t)(dot - b));
        text = read_file(argv[3 + i]);
        parse_text(h, text);
        free(text);
        collect(h);
    }
    /* the command table of `sparsify --help` against the pages asked for */
    size_t listed = 0;
    for (size_t i = 0; i < m->main.nblocks; i++) {
        block *b = &m->main.blocks[i];
        if (b->kind != B_ENTRY || b->term[0] == '-')
            continue;
        listed++;
        help *h = NULL;
        for (size_t k = 0; k < m->ncmds; k++)
            if (!strcmp(m->cmds[k].name, b->term))
                h = &m->cmds[k];
        if (!h)
            die("'sparsify --help' lists the command '%s', which has no CMD.help here: add it "
                "to the commands in man/meson.build",
                b->term);
        h->summary = b->text;
    }
    for (size_t k = 0; k < m->ncmds; k++)
        if (!m->cmds[k].summary)
            die("'%s' is not a command that 'sparsify --help' lists: remove it from "
                "man/meson.build",
                m->cmds[k].name);
    if (listed != m->ncmds)
        die("a command is given twice");
}

/* ---- roff ---- */

/* Text for roff: backslashes, hyphens (\- so that options copy right),
 * a control character at the start of a line, and UTF-8 as \[uXXXX]. */
static void roff(FILE *f, const char *s, bool line_start)
{
    const unsigned char *p = (const unsigned char *)s;
    if (line_start && (*p == '.' || *p == '\''))
        fputs("\\&", f);
    while (*p) {
        if (*p == '\\') {
            fputs("\\e", f);
            p++;
        } else if (*p == '-') {
            fputs("\\-", f);
            p++;
        } else if (*p < 0x80) {
            fputc(*p++, f);
        } else {
            unsigned cp = 0;
            int more = *p >= 0xf0 ? 3 : *p >= 0xe0 ? 2 : *p >= 0xc0 ? 1 : 0;
            cp = *p++ & (0x3f >> more);
            for (int k = 0; k < more && (*p & 0xc0) == 0x80; k++)
                cp = (cp << 6) | (*p++ & 0x3f);
            fprintf(f, "\\[u%04X]", cp);
        }
    }
}

/* An entry's term: options in bold, placeholders in italics. */
static void roff_term(FILE *f, const char *term)
{
    const char *p = term;
    bool first = true;
    while (*p) {
        size_t n = strcspn(p, " ,");
        char *w = xstrndup(p, n);
        bool bold = w[0] == '-' || (first && islower((unsigned char)w[0]));
        if (w[0] == '(' || w[0] == '[')
            bold = false;
        fputs(bold ? "\\fB" : "\\fI", f);
        roff(f, w, false);
        fputs("\\fR", f);
        free(w);
        p += n;
        while (*p == ' ' || *p == ',')
            fputc(*p++, f);
        first = false;
    }
    fputc('\n', f);
}

static void upper(char *dst, const char *src, size_t len)
{
    size_t i = 0;
    for (; src[i] && i + 1 < len; i++)
        dst[i] = (char)toupper((unsigned char)src[i]);
    dst[i] = '\0';
}

static void see_also(FILE *f, const model *m, const char *self)
{
    fputs(".SH SEE ALSO\n", f);
    bool first = true;
    if (self[0]) {
        fputs("\\fBsparsify\\fR(1)", f);
        first = false;
    }
    for (size_t i = 0; i < m->ncmds; i++) {
        if (!strcmp(m->cmds[i].name, self))
            continue;
        fprintf(f, "%s\\fBsparsify\\-%s\\fR(1)", first ? "" : ",\n", m->cmds[i].name);
        first = false;
    }
    fputs("\n.PP\nThe command-line reference, docs/cli.md, in the source distribution.\n", f);
}

static void write_page(const model *m, const help *h, const char *dir)
{
    char path[4096], title[128], name[128];
    snprintf(name, sizeof name, h->name[0] ? "sparsify-%s" : "sparsify", h->name);
    snprintf(path, sizeof path, "%s/%s.1", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write '%s': %s", path, strerror(errno));
    upper(title, name, sizeof title);
    fprintf(f, ".\\\" Generated by man/helpgen.c from 'sparsify%s%s --help'. Do not edit.\n",
            h->name[0] ? " " : "", h->name);
    fprintf(f, ".TH \"%s\" \"1\" \"\" \"sparsify %s\" \"sparsify manual\"\n", title, m->version);
    fputs(".nh\n.ad l\n", f); /* options and paths: no hyphenation, ragged right */
    fputs(".SH NAME\n", f);
    roff(f, name, true);
    fputs(" \\- ", f);
    roff(f, h->name[0] ? h->summary
                       : "prune, export and run sparse neural networks from the command line",
         false);
    fputs("\n.SH SYNOPSIS\n.nf\n", f);
    for (size_t i = 0; i < h->nsynopsis; i++) {
        const char *s = h->synopsis[i];
        size_t lead = h->name[0] ? 9 + strlen(h->name) : 8; /* "sparsify prune" */
        if (strlen(s) < lead)
            lead = strlen(s);
        char *cmd = xstrndup(s, lead);
        fputs("\\fB", f);
        roff(f, cmd, true);
        fputs("\\fR", f);
        free(cmd);
        /* continuation lines as they are indented in --help */
        for (const char *p = s + lead; *p;) {
            size_t n = strcspn(p, "\n");
            char *part = xstrndup(p, n);
            roff(f, part, p != s + lead);
            fputc('\n', f);
            free(part);
            p += n + (p[n] == '\n');
        }
    }
    fputs(".fi\n", f);

    enum { SEC_NONE, SEC_DESC, SEC_COMMANDS, SEC_OPTIONS, SEC_NOTES } sec = SEC_NONE;
    bool seen_entries = false;
    for (size_t i = 0; i < h->nblocks; i++) {
        const block *b = &h->blocks[i];
        switch (b->kind) {
        case B_PARA:
            if (sec == SEC_NONE) {
                fputs(".SH DESCRIPTION\n", f);
                sec = SEC_DESC;
            } else if (seen_entries && sec != SEC_NOTES) {
                fputs(".SH NOTES\n", f);
                sec = SEC_NOTES;
            }
            fputs(".PP\n", f);
            roff(f, b->text, true);
            fputc('\n', f);
            break;
        case B_HEADING:
            if (!strcmp(b->text, "options")) {
                fputs(".SH OPTIONS\n", f);
                sec = SEC_OPTIONS;
            } else if (!strcmp(b->text, "commands")) {
                fputs(".SH COMMANDS\n", f);
                sec = SEC_COMMANDS;
            } else {
                if (sec != SEC_OPTIONS) {
                    fputs(".SH OPTIONS\n", f);
                    sec = SEC_OPTIONS;
                }
                char head[64];
                snprintf(head, sizeof head, "%s", b->text);
                head[0] = (char)toupper((unsigned char)head[0]);
                fputs(".SS ", f);
                roff(f, head, false);
                fputc('\n', f);
            }
            break;
        case B_ENTRY: {
            bool is_opt = b->term[0] == '-' || b->term[0] == '(';
            if (is_opt && sec != SEC_OPTIONS) {
                fputs(".SH OPTIONS\n", f);
                sec = SEC_OPTIONS;
            } else if (!is_opt && sec != SEC_COMMANDS && sec != SEC_OPTIONS) {
                fputs(".SH COMMANDS\n", f);
                sec = SEC_COMMANDS;
            }
            seen_entries = true;
            fputs(".TP\n", f);
            roff_term(f, b->term);
            roff(f, b->text, true);
            if (!h->name[0] && !is_opt) /* the main page: where each command's page is */
                fprintf(f, " (\\fBsparsify\\-%s\\fR(1))", b->term);
            fputc('\n', f);
            break;
        }
        }
    }
    if (h->exit_codes) {
        fputs(".SH EXIT STATUS\n", f);
        roff(f, h->exit_codes, true);
        fputc('\n', f);
    }
    see_also(f, m, h->name);
    if (fclose(f))
        die("cannot write '%s'", path);
}

static void gen_man(const model *m, const char *dir)
{
    write_page(m, &m->main, dir);
    for (size_t i = 0; i < m->ncmds; i++)
        write_page(m, &m->cmds[i], dir);
}

/* ---- completion, both shells ---- */

/* An option's listed values, separated by spaces. */
static void put_choices(FILE *f, const option *o)
{
    for (size_t k = 0; k < o->nchoices; k++)
        fprintf(f, "%s%s", k ? " " : "", o->choices[k]);
}

/* What a subcommand's argument takes, from its placeholder: FILE|NAME in
 * `recipe validate` is a file or a bundled recipe. */
static void sub_values(const subcmd *s, bool *file, bool *recipe)
{
    *file = s->arg && is_file_placeholder(s->arg);
    *recipe = s->arg && strstr(s->arg, "NAME") != NULL;
}

/* ---- bash ---- */

static void words(FILE *f, const help *h)
{
    bool first = true;
    for (size_t i = 0; i < h->nopts; i++)
        for (size_t k = 0; k < h->opts[i].nnames; k++) {
            fprintf(f, "%s%s", first ? "" : " ", h->opts[i].names[k]);
            first = false;
        }
}

static void case_names(FILE *f, const option *o)
{
    for (size_t k = 0; k < o->nnames; k++)
        fprintf(f, "%s%s", k ? "|" : "", o->names[k]);
}

static void gen_bash(const model *m, FILE *f)
{
    fprintf(f,
            "# bash completion for sparsify %s\n"
            "# Generated by man/helpgen.c from the --help texts of sparsify. Do not edit.\n"
            "\n"
            "_sparsify_recipes='",
            m->version);
    for (size_t i = 0; i < m->nrecipes; i++)
        fprintf(f, "%s%s", i ? " " : "", m->recipes[i]);
    fputs("'\n_sparsify_commands='", f);
    for (size_t i = 0; i < m->ncmds; i++)
        fprintf(f, "%s ", m->cmds[i].name);
    fputs("help'\n\n", f);
    fputs(
        "_sparsify()\n"
        "{\n"
        "    # words of the line up to the cursor, split at blanks only, so that\n"
        "    # values such as 2:4 stay one word whatever COMP_WORDBREAKS holds\n"
        "    local line=${COMP_LINE:0:COMP_POINT} cur prev cmd='' sub='' w i\n"
        "    local -a ws\n"
        "    read -r -a ws <<<\"$line\"\n"
        "    if [[ -z $line || $line == *[[:space:]] ]]; then\n"
        "        cur=''\n"
        "    else\n"
        "        cur=${ws[${#ws[@]} - 1]}\n"
        "        unset 'ws[${#ws[@]}-1]'\n"
        "    fi\n"
        "    prev=${ws[${#ws[@]} - 1]}\n"
        "    for ((i = 1; i < ${#ws[@]}; i++)); do\n"
        "        w=${ws[i]}\n"
        "        [[ $w == -* ]] && continue\n"
        "        if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi\n"
        "    done\n"
        "    local wl='' files=0\n"
        "    COMPREPLY=()\n"
        "    case $cmd in\n"
        "    '')\n"
        "        if [[ $cur == -* ]]; then wl='",
        f);
    words(f, &m->main);
    fputs("'; else wl=$_sparsify_commands; fi\n"
          "        ;;\n"
          "    help)\n"
          "        [[ -z $sub ]] && wl=$_sparsify_commands\n"
          "        ;;\n",
          f);
    for (size_t c = 0; c < m->ncmds; c++) {
        const help *h = &m->cmds[c];
        fprintf(f, "    %s)\n        case $prev in\n", h->name);
        for (size_t i = 0; i < h->nopts; i++) {
            const option *o = &h->opts[i];
            if (!o->arg)
                continue;
            fputs("        ", f);
            case_names(f, o);
            switch (o->value) {
            case V_FILE: fputs(") files=1 ;;\n", f); break;
            case V_RECIPE: fputs(") wl=$_sparsify_recipes files=1 ;;\n", f); break;
            case V_CHOICE:
                fputs(") wl='", f);
                put_choices(f, o);
                fputs("' ;;\n", f);
                break;
            case V_NONE: fputs(") return 0 ;;\n", f); break;
            }
        }
        fputs("        *)\n            if [[ $cur == -* ]]; then\n                wl='", f);
        words(f, h);
        fputs("'\n", f);
        if (h->nsubs) {
            fputs("            elif [[ -z $sub ]]; then\n                wl='", f);
            for (size_t k = 0; k < h->nsubs; k++)
                fprintf(f, "%s%s", k ? " " : "", h->subs[k].name);
            fputs("'\n            else\n                case $sub in\n", f);
            for (size_t k = 0; k < h->nsubs; k++) {
                bool file, name;
                sub_values(&h->subs[k], &file, &name);
                if (file || name)
                    fprintf(f, "                %s)%s%s ;;\n", h->subs[k].name,
                            name ? " wl=$_sparsify_recipes" : "", file ? " files=1" : "");
            }
            fputs("                esac\n", f);
        } else {
            fputs("            else\n                files=1\n", f);
        }
        fputs("            fi\n            ;;\n        esac\n        ;;\n", f);
    }
    fputs("    esac\n"
          "    local IFS=$'\\n'\n"
          "    [[ -n $wl ]] && COMPREPLY=($(IFS=$' \\t\\n'; compgen -W \"$wl\" -- \"$cur\"))\n"
          "    ((files)) && COMPREPLY+=($(compgen -f -- \"$cur\"))\n"
          "    # bash replaces only the part of the word after its last break\n"
          "    # character (':' by default): drop what it keeps\n"
          "    if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then\n"
          "        local keep=${cur%\"${cur##*:}\"}\n"
          "        for i in \"${!COMPREPLY[@]}\"; do COMPREPLY[i]=${COMPREPLY[i]#\"$keep\"}; done\n"
          "    fi\n"
          "    return 0\n"
          "}\n"
          "complete -o filenames -F _sparsify sparsify\n",
          f);
}

/* ---- zsh ---- */

/* A description for zsh, inside single quotes and _arguments brackets:
 * its first clause (to a ';' or '. ' outside parentheses, at most about 70
 * characters, never cutting a parenthesis open), brackets escaped. */
static void zsh_desc(FILE *f, const char *d)
{
    size_t n = 0, len = strlen(d), open_at = 0, space_at = 0;
    int depth = 0;
    for (; n < len; n++) {
        char c = d[n];
        if (depth == 0 && (c == ';' || (c == '.' && (d[n + 1] == ' ' || !d[n + 1]))))
            break;
        if (c == '(' && depth++ == 0)
            open_at = n;
        if (c == ')' && depth > 0)
            depth--;
        if (c == ' ' && depth == 0)
            space_at = n;
        if (n >= 70 && depth == 0 && c == ' ')
            break;
    }
    if (depth > 0) /* cut inside a parenthesis: end before it */
        n = open_at;
    else if (n >= 70 && n < len && d[n] != ' ' && space_at)
        n = space_at;
    while (n > 0 && (d[n - 1] == ' ' || d[n - 1] == ','))
        n--;
    for (size_t i = 0; i < n; i++) {
        char c = d[i];
        if (c == '\'')
            fputs("'\\''", f);
        else if (c == '[' || c == ']' || c == '\\')
            fprintf(f, "\\%c", c);
        else
            fputc(c, f);
    }
}

static void zsh_action(FILE *f, const option *o)
{
    fputc(':', f);
    for (const char *a = o->arg; *a; a++)
        fputc(*a == ':' ? '-' : *a, f); /* the message: no colon */
    fputc(':', f);
    switch (o->value) {
    case V_FILE: fputs("_files", f); break;
    case V_RECIPE: fputs("_sparsify_recipe files", f); break;
    case V_CHOICE:
        fputc('(', f);
        put_choices(f, o);
        fputc(')', f);
        break;
    case V_NONE: fputs(" ", f); break;
    }
}

static void gen_zsh(const model *m, FILE *f)
{
    fprintf(f,
            "#compdef sparsify\n"
            "# zsh completion for sparsify %s\n"
            "# Generated by man/helpgen.c from the --help texts of sparsify. Do not edit.\n"
            "\n"
            "_sparsify_recipe() {\n"
            "  local -a recipes expl\n"
            "  recipes=(",
            m->version);
    for (size_t i = 0; i < m->nrecipes; i++)
        fprintf(f, "'%s'%s", m->recipes[i], i + 1 < m->nrecipes ? " " : "");
    fputs(")\n"
          "  if [[ $1 == files ]]; then\n"
          "    _alternative 'recipes:bundled recipe:compadd -a recipes' 'files:file:_files'\n"
          "  else\n"
          "    _wanted recipes expl 'bundled recipe' compadd -a recipes\n"
          "  fi\n"
          "}\n\n"
          "_sparsify() {\n"
          "  local -a commands\n"
          "  commands=(\n",
          f);
    for (size_t i = 0; i < m->ncmds; i++) {
        fprintf(f, "    '%s:", m->cmds[i].name);
        zsh_desc(f, m->cmds[i].summary);
        fputs("'\n", f);
    }
    fputs("    'help:describe a command'\n  )\n"
          "  if (( CURRENT == 2 )); then\n"
          "    if [[ $words[2] == -* ]]; then\n"
          "      _arguments",
          f);
    for (size_t i = 0; i < m->main.nopts; i++)
        for (size_t k = 0; k < m->main.opts[i].nnames; k++) {
            fprintf(f, " '%s[", m->main.opts[i].names[k]);
            zsh_desc(f, m->main.opts[i].desc);
            fputs("]'", f);
        }
    fputs("\n    else\n"
          "      _describe -t commands 'sparsify command' commands\n"
          "    fi\n"
          "    return\n"
          "  fi\n"
          "  local cmd=$words[2]\n"
          "  shift words\n"
          "  (( CURRENT-- ))\n"
          "  case $cmd in\n"
          "  help) _describe -t commands 'sparsify command' commands ;;\n",
          f);
    for (size_t c = 0; c < m->ncmds; c++) {
        const help *h = &m->cmds[c];
        fprintf(f, "  %s)\n    _arguments -s", h->name);
        for (size_t i = 0; i < h->nopts; i++) {
            const option *o = &h->opts[i];
            /* an option given more than once (--include) stays offered */
            const char *again = strstr(o->desc, "repeatable") ? "*" : "";
            for (size_t k = 0; k < o->nnames; k++) {
                fprintf(f, " \\\n      '%s%s[", again, o->names[k]);
                zsh_desc(f, o->desc);
                fputc(']', f);
                if (o->arg)
                    zsh_action(f, o);
                fputc('\'', f);
            }
        }
        if (h->nsubs) {
            fputs(" \\\n      '1:subcommand:((", f);
            for (size_t k = 0; k < h->nsubs; k++) {
                fprintf(f, "%s%s\\:", k ? " " : "", h->subs[k].name);
                fputc('"', f);
                for (const char *d = h->subs[k].desc; *d && *d != ';' && *d != '('; d++)
                    if (*d == '\'')
                        fputs("'\\''", f);
                    else if (*d == '"' || *d == ':' || *d == '\\')
                        fprintf(f, "\\%c", *d);
                    else
                        fputc(*d, f);
                fputc('"', f);
            }
            fputs("))' \\\n      '*::argument:->sub'", f);
        } else {
            fputs(" \\\n      '*:file:_files'", f);
        }
        fputs("\n", f);
        if (h->nsubs) {
            fputs("    if [[ $state == sub ]]; then\n      case $words[1] in\n", f);
            for (size_t k = 0; k < h->nsubs; k++) {
                bool file, name;
                sub_values(&h->subs[k], &file, &name);
                if (file || name)
                    fprintf(f, "      %s) %s ;;\n", h->subs[k].name,
                            name && file ? "_sparsify_recipe files"
                            : name       ? "_sparsify_recipe"
                                         : "_files");
            }
            fputs("      esac\n    fi\n", f);
        }
        fputs("    ;;\n", f);
    }
    fputs("  esac\n}\n\n_sparsify \"$@\"\n", f);
}

static void help_release(help *h)
{
    free(h->name);
    for (size_t i = 0; i < h->nsynopsis; i++)
        free(h->synopsis[i]);
    for (size_t i = 0; i < h->nblocks; i++) {
        free(h->blocks[i].term);
        free(h->blocks[i].text);
    }
    free(h->exit_codes);
    for (size_t i = 0; i < h->nopts; i++) {
        option *o = &h->opts[i];
        for (size_t k = 0; k < o->nnames; k++)
            free(o->names[k]);
        for (size_t k = 0; k < o->nchoices; k++)
            free(o->choices[k]);
        free(o->arg);
    }
    for (size_t i = 0; i < h->nsubs; i++) {
        free(h->subs[i].name);
        free(h->subs[i].arg);
    }
}

static void model_release(model *m)
{
    help_release(&m->main);
    for (size_t i = 0; i < m->ncmds; i++)
        help_release(&m->cmds[i]);
    free(m->cmds);
    for (size_t i = 0; i < m->nrecipes; i++)
        free(m->recipes[i]);
}

int main(int argc, char **argv)
{
    if (argc < 6)
        die("usage: helpgen man|bash|zsh OUT VERSION MAIN.help RECIPES.list CMD.help...");
    model m = {0};
    load(&m, argc - 3, argv + 3);
    const char *mode = argv[1], *out = argv[2];
    if (!strcmp(mode, "man")) {
        gen_man(&m, out);
        model_release(&m);
        return 0;
    }
    FILE *f = fopen(out, "w");
    if (!f)
        die("cannot write '%s': %s", out, strerror(errno));
    if (!strcmp(mode, "bash"))
        gen_bash(&m, f);
    else if (!strcmp(mode, "zsh"))
        gen_zsh(&m, f);
    else
        die("unknown mode '%s'", mode);
    if (fclose(f))
        die("cannot write '%s'", out);
    model_release(&m);
    return 0;
}
