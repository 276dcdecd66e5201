/* Sparsity patterns: parsing and printing "unstructured", "RxC", "N:M". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sparsify/prune.h"

/* Parse a positive decimal integer prefix; returns the end or NULL. */
static const char *parse_pos(const char *s, int64_t *v)
{
    if (*s < '0' || *s > '9')
        return NULL;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || x <= 0 || x > (1 << 20))
        return NULL;
    *v = x;
    return end;
}

sp_status sp_pattern_parse(sp_pattern *out, const char *text, sp_error *err)
{
    sp_pattern p = {SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    if (!text || !*text)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "empty pattern");
    if (!strcasecmp(text, "unstructured") || !strcasecmp(text, "dense")) {
        *out = p;
        return SP_OK;
    }
    if (!strcasecmp(text, "block4") || !strcasecmp(text, "block")) {
        p.kind = SP_PATTERN_BLOCK;
        p.r = 1;
        p.c = 4;
        *out = p;
        return SP_OK;
    }
    if (!strcasecmp(text, "tensorrt")) {
        p.kind = SP_PATTERN_NM;
        p.n = 2;
        p.m = 4;
        *out = p;
        return SP_OK;
    }
    int64_t a, b;
    const char *s = parse_pos(text, &a);
    if (s && (*s == 'x' || *s == 'X')) {
        const char *e = parse_pos(s + 1, &b);
        if (e && !*e) {
            if (a == 1 && b == 1) {
                *out = p;
                return SP_OK;
            }
            p.kind = SP_PATTERN_BLOCK;
            p.r = a;
            p.c = b;
            *out = p;
            return SP_OK;
        }
    } else if (s && *s == ':') {
        const char *e = parse_pos(s + 1, &b);
        if (e && !*e) {
            if (a > b)
                return sp_error_set(err, SP_ERR_INVALID_ARG,
                                    "pattern '%s': N must not exceed M (N:M keeps N of every M)",
                                    text);
            if (b > 4096)
                return sp_error_set(err, SP_ERR_INVALID_ARG, "pattern '%s': M is too large (max 4096)",
                                    text);
            p.kind = SP_PATTERN_NM;
            p.n = (int)a;
            p.m = (int)b;
            *out = p;
            return SP_OK;
        }
    }
    return sp_error_set(err, SP_ERR_INVALID_ARG,
                        "pattern '%s' is not one of unstructured, RxC (e.g. 4x1), N:M (e.g. 2:4), "
                        "block4, tensorrt",
                        text);
}

const char *sp_pattern_str(const sp_pattern *p, char *buf, size_t len)
{
    switch (p->kind) {
    case SP_PATTERN_BLOCK:
        snprintf(buf, len, "%lldx%lld", (long long)p->r, (long long)p->c);
        break;
    case SP_PATTERN_NM:
        snprintf(buf, len, "%d:%d", p->n, p->m);
        break;
    default:
        snprintf(buf, len, "unstructured");
        break;
    }
    return buf;
}

double sp_pattern_implied_sparsity(const sp_pattern *p)
{
    if (p->kind != SP_PATTERN_NM || p->m <= 0)
        return -1.0;
    return 1.0 - (double)p->n / (double)p->m;
}
