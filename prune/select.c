/*
 * Which tensors to prune: Python-syntax regexes (prune/regex.c) over dotted
 * names, matched anywhere (like Python's re.search), and the default rule.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sparsify/prune.h"

static void free_all(sp_regex **r, size_t n)
{
    for (size_t i = 0; r && i < n; i++)
        sp_regex_free(r[i]);
    free(r);
}

static sp_status compile_all(sp_regex ***out, const char *const *res, size_t n, const char *what,
                             sp_error *err)
{
    *out = NULL;
    if (!n)
        return SP_OK;
    sp_regex **r = calloc(n, sizeof *r);
    if (!r)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        sp_status st = sp_regex_new(&r[i], res[i], false, err);
        if (st) {
            free_all(r, i);
            sp_error_prefix(err, "%s", what);
            return st;
        }
    }
    *out = r;
    return SP_OK;
}

sp_status sp_selector_init(sp_selector *s, const char *const *include, size_t ninc,
                           const char *const *exclude, size_t nexc, sp_error *err)
{
    memset(s, 0, sizeof *s);
    sp_status st = compile_all(&s->inc, include, ninc, "--include", err);
    if (st)
        return st;
    if ((st = compile_all(&s->exc, exclude, nexc, "--exclude", err))) {
        free_all(s->inc, ninc);
        s->inc = NULL;
        return st;
    }
    s->ninc = ninc;
    s->nexc = nexc;
    return SP_OK;
}

void sp_selector_release(sp_selector *s)
{
    if (!s)
        return;
    free_all(s->inc, s->ninc);
    free_all(s->exc, s->nexc);
    memset(s, 0, sizeof *s);
}

static sp_status any_match(sp_regex *const *r, size_t n, const char *name, bool *hit,
                           sp_error *err)
{
    *hit = false;
    for (size_t i = 0; i < n && !*hit; i++) {
        sp_status st = sp_regex_match(r[i], name, hit, err);
        if (st)
            return st;
    }
    return SP_OK;
}

sp_status sp_selector_match(const sp_selector *s, const char *name, sp_dtype dtype, int ndim,
                            bool *selected, sp_error *err)
{
    bool hit;
    *selected = false;
    sp_status st = any_match(s->exc, s->nexc, name, &hit, err);
    if (st || hit)
        return st;
    if (!s->ninc) {
        *selected = sp_select_default(name, dtype, ndim);
        return SP_OK;
    }
    if (!sp_dtype_is_float(dtype))
        return SP_OK;
    return any_match(s->inc, s->ninc, name, selected, err);
}

static bool contains_ci(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; *s; s++)
        if (!strncasecmp(s, needle, n))
            return true;
    return false;
}

bool sp_name_is_embedding_or_norm(const char *name)
{
    if (contains_ci(name, "embed") || contains_ci(name, "norm"))
        return true;
    /* dotted components: GPT-2's wte/wpe/ln_f, ln_1, bn1, ... */
    const char *c = name;
    while (*c) {
        const char *e = strchr(c, '.');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if ((n == 3 && (!strncasecmp(c, "wte", 3) || !strncasecmp(c, "wpe", 3))) ||
            (n == 4 && !strncasecmp(c, "ln_f", 4)) || (n >= 3 && !strncasecmp(c, "ln_", 3)) ||
            (n >= 2 && !strncasecmp(c, "bn", 2)))
            return true;
        if (!e)
            break;
        c = e + 1;
    }
    return false;
}

static bool ends_with(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return n >= k && !memcmp(s + n - k, suf, k) && (n == k || s[n - k - 1] == '.');
}

bool sp_name_is_output_head(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return false;
    size_t mlen = (size_t)(dot - name); /* the module: the name less ".weight" */
    if (mlen == 6 && !memcmp(name, "output", 6))
        return true;
    return ends_with(name, mlen, "lm_head") || ends_with(name, mlen, "embed_out") ||
           ends_with(name, mlen, "generator_lm_head") ||
           ends_with(name, mlen, "cls.predictions.decoder");
}

bool sp_select_default(const char *name, sp_dtype dtype, int ndim)
{
    if (!sp_dtype_is_float(dtype) || ndim < 2)
        return false;
    size_t len = strlen(name);
    if (len < 6 || strcmp(name + len - 6, "weight"))
        return false;
    return !sp_name_is_embedding_or_norm(name) && !sp_name_is_output_head(name);
}
