/*
 * eval(...) expressions (expr.h): a recursive-descent parser that evaluates
 * as it parses. Python's grammar for the subset:
 *
 *   sum     := term (('+' | '-') term)*
 *   term    := factor (('*' | '/' | '//' | '%') factor)*
 *   factor  := ('+' | '-') factor | power
 *   power   := primary ['**' factor]
 *   primary := NUMBER | NAME | NAME '(' [sum (',' sum)* [',']] ')' | '(' sum ')'
 *
 * Arithmetic follows Python: int op int stays int (64-bit here, overflow is
 * an error), / is always float, // and % floor towards minus infinity with
 * the sign of the divisor, int ** negative int is a float, round() rounds
 * half to even.
 */
#include "recipes/expr.h"

#include <ctype.h>
#include <errno.h>
#include <fenv.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPR_MAX_DEPTH 100

typedef struct parser {
    const char *src, *p;
    expr_lookup_fn lookup;
    void *ctx;
    char *msg;
    size_t msglen;
    int depth;
    expr_status st;
} parser;

static const char *const allowed_calls = "min, max, int, float, abs, round";

static bool fail(parser *ps, expr_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(parser *ps, expr_status st, const char *fmt, ...)
{
    if (ps->st != EXPR_OK)
        return false;
    ps->st = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->msg, ps->msglen, fmt, ap);
    va_end(ap);
    return false;
}

double expr_to_double(const expr_value *v)
{
    return v->is_int ? (double)v->i : v->f;
}

static expr_value mk_int(int64_t i)
{
    expr_value v = {true, i, 0};
    return v;
}

static expr_value mk_float(double f)
{
    expr_value v = {false, 0, f};
    return v;
}

static void skip_ws(parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
        ps->p++;
}

static int col(const parser *ps)
{
    return (int)(ps->p - ps->src) + 1;
}

/* A float result must stay finite when its operands were. */
static bool finite_result(parser *ps, double r, expr_value *out)
{
    if (!isfinite(r))
        return fail(ps, EXPR_ERROR, "the result is too large");
    *out = mk_float(r);
    return true;
}

static bool unexpected(parser *ps)
{
    skip_ws(ps);
    if (!*ps->p)
        return fail(ps, EXPR_ERROR, "the expression ends too early");
    if (*ps->p == '"' || *ps->p == '\'')
        return fail(ps, EXPR_ERROR, "strings are not allowed (character %d)", col(ps));
    const char *q = ps->p;
    if (isalnum((unsigned char)*q) || *q == '_')
        while (isalnum((unsigned char)*q) || *q == '_')
            q++;
    else
        q++;
    return fail(ps, EXPR_ERROR, "unexpected '%.*s' at character %d", (int)(q - ps->p), ps->p, col(ps));
}

/* ---- numbers, as Python writes them */

static bool number(parser *ps, expr_value *out)
{
    const char *s = ps->p;
    char buf[128];
    size_t k = 0;
    int start = col(ps);
    if (s[0] == '0' && strchr("xXoObB", s[1]) && s[1]) {
        int base = (s[1] == 'x' || s[1] == 'X') ? 16 : (s[1] == 'o' || s[1] == 'O') ? 8 : 2;
        const char *q = s + 2;
        while (isalnum((unsigned char)*q) || *q == '_') {
            if (*q != '_') {
                if (k + 1 >= sizeof buf)
                    return fail(ps, EXPR_ERROR, "number too long at character %d", start);
                buf[k++] = *q;
            }
            q++;
        }
        buf[k] = '\0';
        char *end;
        errno = 0;
        unsigned long long u = k ? strtoull(buf, &end, base) : 0;
        if (!k || *end)
            return fail(ps, EXPR_ERROR, "invalid number at character %d", start);
        if (errno || u > INT64_MAX)
            return fail(ps, EXPR_ERROR, "the number at character %d is too large", start);
        ps->p = q;
        *out = mk_int((int64_t)u);
        return true;
    }
    bool is_float = false, digits = false;
    const char *q = s;
    while (isdigit((unsigned char)*q) || *q == '_' || *q == '.') {
        if (*q == '.') {
            if (is_float)
                return fail(ps, EXPR_ERROR, "invalid number at character %d", start);
            is_float = true;
        }
        if (*q == '_' && !(q > s && isdigit((unsigned char)q[-1]) && isdigit((unsigned char)q[1])))
            return fail(ps, EXPR_ERROR, "invalid number at character %d", start);
        if (isdigit((unsigned char)*q))
            digits = true;
        if (*q != '_') {
            if (k + 1 >= sizeof buf)
                return fail(ps, EXPR_ERROR, "number too long at character %d", start);
            buf[k++] = *q;
        }
        q++;
    }
    if (!digits)
        return unexpected(ps);
    if (*q == 'e' || *q == 'E') {
        const char *e = q + 1;
        if (*e == '+' || *e == '-')
            e++;
        if (!isdigit((unsigned char)*e))
            return fail(ps, EXPR_ERROR, "invalid number at character %d", start);
        is_float = true;
        buf[k++] = 'e';
        for (q++; *q == '+' || *q == '-' || isdigit((unsigned char)*q) || *q == '_'; q++)
            if (*q != '_') {
                if (k + 1 >= sizeof buf)
                    return fail(ps, EXPR_ERROR, "number too long at character %d", start);
                buf[k++] = *q;
            }
    }
    if (isalpha((unsigned char)*q) || *q == '_')
        return fail(ps, EXPR_ERROR, "invalid number at character %d", start);
    buf[k] = '\0';
    ps->p = q;
    if (!is_float) {
        if (buf[0] == '0' && strspn(buf, "0") != strlen(buf))
            return fail(ps, EXPR_ERROR,
                        "leading zeros in an integer are not allowed (character %d)", start);
        char *end;
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        if (errno)
            return fail(ps, EXPR_ERROR, "the number at character %d is too large", start);
        *out = mk_int(v);
        return true;
    }
    double f = strtod(buf, NULL);
    if (!isfinite(f))
        return fail(ps, EXPR_ERROR, "the number at character %d is too large", start);
    *out = mk_float(f);
    return true;
}

/* ---- variables */

static bool variable(parser *ps, const char *name, expr_value *out)
{
    const rnode *n = ps->lookup ? ps->lookup(ps->ctx, name) : NULL;
    if (!n) {
        if (ps->st == EXPR_OK) {
            ps->st = EXPR_UNKNOWN;
            snprintf(ps->msg, ps->msglen, "%s", name);
        }
        return false;
    }
    if (n->kind == RK_NUM) {
        if (n->is_int && fabs(n->num) <= 9223372036854775807.0)
            *out = mk_int((int64_t)n->num);
        else
            *out = mk_float(n->num);
        return true;
    }
    if (n->kind == RK_BOOL) { /* Python: a bool is an int */
        *out = mk_int(n->b);
        return true;
    }
    if (n->kind == RK_BAD) { /* its own problem is reported: nothing to add */
        if (ps->st == EXPR_OK) {
            ps->st = EXPR_ERROR;
            if (ps->msglen)
                ps->msg[0] = '\0';
        }
        return false;
    }
    return fail(ps, EXPR_ERROR, "variable '%s' is %s, not a number", name, rnode_kind_name(n));
}

/* ---- operators */

static double py_fmod(double a, double b)
{
    double m = fmod(a, b);
    if (m != 0.0) {
        if ((b < 0) != (m < 0))
            m += b;
    } else {
        m = copysign(0.0, b);
    }
    return m;
}

static double py_floordiv(double a, double b)
{
    double m = fmod(a, b);
    double div = (a - m) / b;
    if (m != 0.0 && ((b < 0) != (m < 0)))
        div -= 1.0;
    if (div != 0.0) {
        double fl = floor(div);
        if (div - fl > 0.5)
            fl += 1.0;
        return fl;
    }
    return copysign(0.0, a / b);
}

static bool binop(parser *ps, char op, bool floor_div, expr_value a, expr_value b, expr_value *out)
{
    if (op == '/' && !floor_div) {
        double y = expr_to_double(&b);
        if (y == 0.0)
            return fail(ps, EXPR_ERROR, "division by zero");
        return finite_result(ps, expr_to_double(&a) / y, out);
    }
    if (a.is_int && b.is_int) {
        int64_t r;
        switch (op) {
        case '+':
            if (__builtin_add_overflow(a.i, b.i, &r))
                return fail(ps, EXPR_ERROR, "integer overflow");
            *out = mk_int(r);
            return true;
        case '-':
            if (__builtin_sub_overflow(a.i, b.i, &r))
                return fail(ps, EXPR_ERROR, "integer overflow");
            *out = mk_int(r);
            return true;
        case '*':
            if (__builtin_mul_overflow(a.i, b.i, &r))
                return fail(ps, EXPR_ERROR, "integer overflow");
            *out = mk_int(r);
            return true;
        case '/': /* // */
        case '%': {
            if (b.i == 0)
                return fail(ps, EXPR_ERROR, op == '%' ? "modulo by zero" : "division by zero");
            if (a.i == INT64_MIN && b.i == -1)
                return fail(ps, EXPR_ERROR, "integer overflow");
            int64_t q = a.i / b.i, m = a.i % b.i;
            if (m != 0 && ((m < 0) != (b.i < 0))) {
                q -= 1;
                m += b.i;
            }
            *out = mk_int(op == '%' ? m : q);
            return true;
        }
        }
    }
    double x = expr_to_double(&a), y = expr_to_double(&b);
    switch (op) {
    case '+': return finite_result(ps, x + y, out);
    case '-': return finite_result(ps, x - y, out);
    case '*': return finite_result(ps, x * y, out);
    case '/':
        if (y == 0.0)
            return fail(ps, EXPR_ERROR, "division by zero");
        return finite_result(ps, py_floordiv(x, y), out);
    case '%':
        if (y == 0.0)
            return fail(ps, EXPR_ERROR, "modulo by zero");
        return finite_result(ps, py_fmod(x, y), out);
    }
    return fail(ps, EXPR_ERROR, "unknown operator");
}

static bool power(parser *ps, expr_value a, expr_value b, expr_value *out)
{
    if (a.is_int && b.is_int && b.i >= 0) {
        int64_t r = 1, base = a.i, e = b.i;
        while (e > 0) {
            if (e & 1) {
                if (__builtin_mul_overflow(r, base, &r))
                    return fail(ps, EXPR_ERROR, "integer overflow");
            }
            e >>= 1;
            if (e && __builtin_mul_overflow(base, base, &base))
                return fail(ps, EXPR_ERROR, "integer overflow");
        }
        *out = mk_int(r);
        return true;
    }
    double x = expr_to_double(&a), y = expr_to_double(&b);
    if (x == 0.0 && y < 0.0)
        return fail(ps, EXPR_ERROR, "0 cannot be raised to a negative power");
    if (x < 0.0 && y != floor(y))
        return fail(ps, EXPR_ERROR, "a negative number to a fractional power is not a real number");
    return finite_result(ps, pow(x, y), out);
}

/* Python's round(): half to even; with ndigits, a float (an int stays an
 * int). */
static bool py_round(parser *ps, expr_value x, const expr_value *nd, expr_value *out)
{
    if (!nd) {
        if (x.is_int) {
            *out = x;
            return true;
        }
        if (!isfinite(x.f))
            return fail(ps, EXPR_ERROR, "round() of a number that is not finite");
        int mode = fegetround();
        fesetround(FE_TONEAREST);
        double r = nearbyint(x.f);
        fesetround(mode);
        if (fabs(r) >= 9223372036854775807.0)
            return fail(ps, EXPR_ERROR, "integer overflow");
        *out = mk_int((int64_t)r);
        return true;
    }
    if (!nd->is_int)
        return fail(ps, EXPR_ERROR, "round(): the number of digits must be an integer");
    if (x.is_int && nd->i >= 0) {
        *out = x;
        return true;
    }
    double v = expr_to_double(&x);
    if (nd->i > 300 || nd->i < -300) {
        *out = mk_float(nd->i > 0 ? v : 0.0 * v);
        return true;
    }
    /* correctly rounded through the shortest decimal, as Python does */
    char buf[400];
    if (nd->i >= 0) {
        snprintf(buf, sizeof buf, "%.*f", (int)nd->i, v);
        double r = strtod(buf, NULL);
        if (x.is_int)
            *out = mk_int((int64_t)r);
        else
            *out = mk_float(r);
        return true;
    }
    double p10 = pow(10.0, (double)-nd->i);
    int mode = fegetround();
    fesetround(FE_TONEAREST);
    double r = nearbyint(v / p10) * p10;
    fesetround(mode);
    if (x.is_int)
        *out = mk_int((int64_t)r);
    else
        *out = mk_float(r);
    return true;
}

static bool call(parser *ps, const char *fn, expr_value *args, int nargs, expr_value *out)
{
    if (!strcmp(fn, "min") || !strcmp(fn, "max")) {
        if (nargs < 2)
            return fail(ps, EXPR_ERROR, "%s() takes two or more numbers", fn);
        bool mx = fn[1] == 'a';
        expr_value best = args[0];
        for (int i = 1; i < nargs; i++) {
            double a = expr_to_double(&args[i]), b = expr_to_double(&best);
            if (mx ? a > b : a < b)
                best = args[i];
        }
        *out = best;
        return true;
    }
    if (!strcmp(fn, "round")) {
        if (nargs < 1 || nargs > 2)
            return fail(ps, EXPR_ERROR, "round() takes a number and optionally the digits");
        return py_round(ps, args[0], nargs == 2 ? &args[1] : NULL, out);
    }
    if (nargs != 1)
        return fail(ps, EXPR_ERROR, "%s() takes one number", fn);
    expr_value x = args[0];
    if (!strcmp(fn, "int")) {
        if (x.is_int) {
            *out = x;
            return true;
        }
        if (!isfinite(x.f) || fabs(trunc(x.f)) >= 9223372036854775807.0)
            return fail(ps, EXPR_ERROR, "int() of a number too large");
        *out = mk_int((int64_t)trunc(x.f));
        return true;
    }
    if (!strcmp(fn, "float")) {
        *out = mk_float(expr_to_double(&x));
        return true;
    }
    if (!strcmp(fn, "abs")) {
        if (x.is_int) {
            if (x.i == INT64_MIN)
                return fail(ps, EXPR_ERROR, "integer overflow");
            *out = mk_int(x.i < 0 ? -x.i : x.i);
        } else {
            *out = mk_float(fabs(x.f));
        }
        return true;
    }
    return fail(ps, EXPR_ERROR, "unknown function");
}

static bool sum(parser *ps, expr_value *out);
static bool factor(parser *ps, expr_value *out);

static bool primary(parser *ps, expr_value *out)
{
    skip_ws(ps);
    char c = *ps->p;
    if (c == '(') {
        if (++ps->depth > EXPR_MAX_DEPTH)
            return fail(ps, EXPR_ERROR, "nested more than %d levels deep", EXPR_MAX_DEPTH);
        ps->p++;
        if (!sum(ps, out))
            return false;
        skip_ws(ps);
        if (*ps->p != ')')
            return *ps->p ? unexpected(ps) : fail(ps, EXPR_ERROR, "a '(' is not closed");
        ps->p++;
        ps->depth--;
        return true;
    }
    if (isdigit((unsigned char)c) || (c == '.' && isdigit((unsigned char)ps->p[1])))
        return number(ps, out);
    if (isalpha((unsigned char)c) || c == '_') {
        const char *s = ps->p;
        while (isalnum((unsigned char)*ps->p) || *ps->p == '_')
            ps->p++;
        char name[128];
        size_t len = (size_t)(ps->p - s);
        if (len >= sizeof name)
            return fail(ps, EXPR_ERROR, "a name longer than %zu characters", sizeof name - 1);
        memcpy(name, s, len);
        name[len] = '\0';
        skip_ws(ps);
        if (*ps->p == '.')
            return fail(ps, EXPR_ERROR, "attributes ('%s.') are not allowed", name);
        if (*ps->p != '(')
            return variable(ps, name, out);
        static const char *const fns[] = {"min", "max", "int", "float", "abs", "round"};
        bool known = false;
        for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
            known = known || !strcmp(name, fns[i]);
        if (!known)
            return fail(ps, EXPR_ERROR, "calling '%s' is not allowed (the functions are %s)", name,
                        allowed_calls);
        if (++ps->depth > EXPR_MAX_DEPTH)
            return fail(ps, EXPR_ERROR, "nested more than %d levels deep", EXPR_MAX_DEPTH);
        ps->p++;
        expr_value args[16];
        int nargs = 0;
        skip_ws(ps);
        while (*ps->p != ')') {
            if (nargs == 16)
                return fail(ps, EXPR_ERROR, "%s() with more than 16 arguments", name);
            const char *a = ps->p;
            while (isalnum((unsigned char)*a) || *a == '_')
                a++;
            const char *eq = a;
            while (*eq == ' ' || *eq == '\t')
                eq++;
            if (a != ps->p && *eq == '=' && eq[1] != '=')
                return fail(ps, EXPR_ERROR, "keyword arguments are not allowed (%s())", name);
            if (!sum(ps, &args[nargs++]))
                return false;
            skip_ws(ps);
            if (*ps->p == ',') {
                ps->p++;
                skip_ws(ps);
            } else if (*ps->p != ')') {
                return *ps->p ? unexpected(ps) : fail(ps, EXPR_ERROR, "a '(' is not closed");
            }
        }
        ps->p++;
        ps->depth--;
        return call(ps, name, args, nargs, out);
    }
    return unexpected(ps);
}

static bool power_expr(parser *ps, expr_value *out)
{
    if (!primary(ps, out))
        return false;
    skip_ws(ps);
    if (ps->p[0] == '*' && ps->p[1] == '*') {
        ps->p += 2;
        expr_value e;
        if (!factor(ps, &e)) /* right-associative, and 2**-1 */
            return false;
        return power(ps, *out, e, out);
    }
    return true;
}

static bool factor(parser *ps, expr_value *out)
{
    skip_ws(ps);
    char c = *ps->p;
    if (c == '-' || c == '+') {
        if (++ps->depth > EXPR_MAX_DEPTH)
            return fail(ps, EXPR_ERROR, "nested more than %d levels deep", EXPR_MAX_DEPTH);
        ps->p++;
        if (!factor(ps, out))
            return false;
        ps->depth--;
        if (c == '-') {
            if (out->is_int) {
                if (out->i == INT64_MIN)
                    return fail(ps, EXPR_ERROR, "integer overflow");
                out->i = -out->i;
            } else {
                out->f = -out->f;
            }
        }
        return true;
    }
    if (c == '~')
        return fail(ps, EXPR_ERROR, "'~' is not allowed");
    return power_expr(ps, out);
}

static bool term(parser *ps, expr_value *out)
{
    if (!factor(ps, out))
        return false;
    for (;;) {
        skip_ws(ps);
        char c = *ps->p;
        bool fl = false;
        if (c == '*' && ps->p[1] != '*') {
            ps->p++;
        } else if (c == '/' && ps->p[1] == '/') {
            ps->p += 2;
            fl = true;
        } else if (c == '/' || c == '%') {
            ps->p++;
        } else {
            return true;
        }
        expr_value r;
        if (!factor(ps, &r) || !binop(ps, c, fl, *out, r, out))
            return false;
    }
}

static bool sum(parser *ps, expr_value *out)
{
    if (!term(ps, out))
        return false;
    for (;;) {
        skip_ws(ps);
        char c = *ps->p;
        if (c != '+' && c != '-')
            return true;
        ps->p++;
        expr_value r;
        if (!term(ps, &r) || !binop(ps, c, false, *out, r, out))
            return false;
    }
}

expr_status expr_eval(const char *src, expr_lookup_fn lookup, void *ctx, expr_value *out, char *msg,
                      size_t msglen)
{
    parser ps = {src, src, lookup, ctx, msg, msglen, 0, EXPR_OK};
    if (msglen)
        msg[0] = '\0';
    skip_ws(&ps);
    if (!*ps.p) {
        fail(&ps, EXPR_ERROR, "empty expression");
        return ps.st;
    }
    if (!sum(&ps, out))
        return ps.st != EXPR_OK ? ps.st : EXPR_ERROR;
    skip_ws(&ps);
    if (*ps.p) {
        if (*ps.p == ')')
            fail(&ps, EXPR_ERROR, "unmatched ')' at character %d", col(&ps));
        else if (strchr("<>=!&|^", *ps.p))
            fail(&ps, EXPR_ERROR, "'%c' is not allowed: expressions are arithmetic only", *ps.p);
        else
            unexpected(&ps);
        return ps.st;
    }
    return EXPR_OK;
}

bool expr_is_eval(const char *s, const char **inner, size_t *inner_len)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    while (n && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    if (n < 6 || strncmp(s, "eval(", 5) || s[n - 1] != ')')
        return false;
    *inner = s + 5;
    *inner_len = n - 6;
    return true;
}
