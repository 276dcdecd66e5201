/*
 * Which tensors to prune: POSIX extended regexes over dotted names, matched
 * anywhere (like Python's re.search), and the default rule.
 */
#include <ctype.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sparsify/prune.h"

static sp_status compile_all(regex_t **out, const char *const *res, size_t n, const char *what,
                             sp_error *err)
{
    *out = NULL;
    if (!n)
        return SP_OK;
    regex_t *r = calloc(n, sizeof(regex_t));
    if (!r)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int rc = regcomp(&r[i], res[i], REG_EXTENDED | REG_NOSUB);
        if (rc) {
            char msg[128];
            regerror(rc, &r[i], msg, sizeof msg);
            for (size_t j = 0; j < i; j++)
                regfree(&r[j]);
            free(r);
            return sp_error_set(err, SP_ERR_INVALID_ARG, "%s regex '%s': %s", what, res[i], msg);
        }
    }
    *out = r;
    return SP_OK;
}

sp_status sp_selector_init(sp_selector *s, const char *const *include, size_t ninc,
                           const char *const *exclude, size_t nexc, sp_error *err)
{
    regex_t *inc, *exc;
    memset(s, 0, sizeof *s);
    sp_status st = compile_all(&inc, include, ninc, "include", err);
    if (st)
        return st;
    if ((st = compile_all(&exc, exclude, nexc, "exclude", err))) {
        for (size_t j = 0; j < ninc; j++)
            regfree(&inc[j]);
        free(inc);
        return st;
    }
    s->inc = inc;
    s->exc = exc;
    s->ninc = ninc;
    s->nexc = nexc;
    return SP_OK;
}

void sp_selector_release(sp_selector *s)
{
    if (!s)
        return;
    regex_t *inc = s->inc, *exc = s->exc;
    for (size_t i = 0; i < s->ninc; i++)
        regfree(&inc[i]);
    for (size_t i = 0; i < s->nexc; i++)
        regfree(&exc[i]);
    free(inc);
    free(exc);
    memset(s, 0, sizeof *s);
}

bool sp_selector_match(const sp_selector *s, const char *name, sp_dtype dtype, int ndim)
{
    const regex_t *inc = s->inc, *exc = s->exc;
    for (size_t i = 0; i < s->nexc; i++)
        if (!regexec(&exc[i], name, 0, NULL, 0))
            return false;
    if (!s->ninc)
        return sp_select_default(name, dtype, ndim);
    if (!sp_dtype_is_float(dtype))
        return false;
    for (size_t i = 0; i < s->ninc; i++)
        if (!regexec(&inc[i], name, 0, NULL, 0))
            return true;
    return false;
}

static bool contains_ci(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; *s; s++)
        if (!strncasecmp(s, needle, n))
            return true;
    return false;
}

bool sp_select_default(const char *name, sp_dtype dtype, int ndim)
{
    if (!sp_dtype_is_float(dtype) || ndim < 2)
        return false;
    size_t len = strlen(name);
    if (len < 6 || strcmp(name + len - 6, "weight"))
        return false;
    if (contains_ci(name, "embed") || contains_ci(name, "norm"))
        return false;
    /* dotted components: GPT-2's wte/wpe/ln_f, ln_1, bn1, ... */
    const char *c = name;
    while (*c) {
        const char *e = strchr(c, '.');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if ((n == 3 && (!strncasecmp(c, "wte", 3) || !strncasecmp(c, "wpe", 3))) ||
            (n == 4 && !strncasecmp(c, "ln_f", 4)) || (n >= 3 && !strncasecmp(c, "ln_", 3)) ||
            (n >= 2 && !strncasecmp(c, "bn", 2)))
            return false;
        if (!e)
            break;
        c = e + 1;
    }
    return true;
}
