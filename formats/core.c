/*
 * Core types: status strings, the error buffer, dtype tables and element
 * loads. Shared by every module of libsparsify.
 */
#include "sparsify/common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *sp_status_str(sp_status s)
{
    switch (s) {
    case SP_OK: return "ok";
    case SP_ERR_IO: return "i/o error";
    case SP_ERR_FORMAT: return "format error";
    case SP_ERR_INVALID_ARG: return "invalid argument";
    case SP_ERR_NOMEM: return "out of memory";
    case SP_ERR_UNSUPPORTED: return "unsupported";
    case SP_ERR_CHECK: return "check failed";
    case SP_ERR_INTERNAL: return "internal error";
    case SP_ERR_NOT_FOUND: return "not found";
    }
    return "unknown status";
}

sp_status sp_error_set(sp_error *err, sp_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void sp_error_prefix(sp_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    char pre[SP_ERR_MSG_MAX], old[SP_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(pre);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, pre, n);
    memcpy(err->msg + n, ": ", 2);
    size_t room = sizeof err->msg - n - 2;
    size_t m = strnlen(old, room - 1);
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = '\0';
}

void sp_error_clear(sp_error *err)
{
    if (err) {
        err->code = SP_OK;
        err->msg[0] = '\0';
    }
}

struct dtype_info {
    size_t size;
    const char *name, *storage, *st;
};

static const struct dtype_info dtypes[SP_DTYPE_COUNT] = {
    [SP_DTYPE_INVALID] = {0, "invalid", "", ""},
    [SP_F32] = {4, "float32", "FloatStorage", "F32"},
    [SP_F16] = {2, "float16", "HalfStorage", "F16"},
    [SP_BF16] = {2, "bfloat16", "BFloat16Storage", "BF16"},
    [SP_F64] = {8, "float64", "DoubleStorage", "F64"},
    [SP_I8] = {1, "int8", "CharStorage", "I8"},
    [SP_I16] = {2, "int16", "ShortStorage", "I16"},
    [SP_I32] = {4, "int32", "IntStorage", "I32"},
    [SP_I64] = {8, "int64", "LongStorage", "I64"},
    [SP_U8] = {1, "uint8", "ByteStorage", "U8"},
    [SP_BOOL] = {1, "bool", "BoolStorage", "BOOL"},
    [SP_C64] = {8, "complex64", "ComplexFloatStorage", "C64"},
    [SP_C128] = {16, "complex128", "ComplexDoubleStorage", "C128"},
};

static bool valid(sp_dtype t) { return t > SP_DTYPE_INVALID && t < SP_DTYPE_COUNT; }

size_t sp_dtype_size(sp_dtype t) { return valid(t) ? dtypes[t].size : 0; }
const char *sp_dtype_name(sp_dtype t) { return valid(t) ? dtypes[t].name : "invalid"; }
const char *sp_dtype_storage_class(sp_dtype t) { return valid(t) ? dtypes[t].storage : ""; }
const char *sp_dtype_safetensors_name(sp_dtype t) { return valid(t) ? dtypes[t].st : ""; }

sp_dtype sp_dtype_from_name(const char *name)
{
    if (!name)
        return SP_DTYPE_INVALID;
    if (!strncmp(name, "torch.", 6))
        name += 6;
    for (int t = 1; t < SP_DTYPE_COUNT; t++)
        if (!strcmp(name, dtypes[t].name))
            return (sp_dtype)t;
    static const struct { const char *alias; sp_dtype t; } aliases[] = {
        {"float", SP_F32}, {"half", SP_F16}, {"double", SP_F64},
        {"long", SP_I64},  {"int", SP_I32},  {"short", SP_I16},
    };
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcmp(name, aliases[i].alias))
            return aliases[i].t;
    return SP_DTYPE_INVALID;
}

sp_dtype sp_dtype_from_storage_class(const char *cls)
{
    if (!cls)
        return SP_DTYPE_INVALID;
    for (int t = 1; t < SP_DTYPE_COUNT; t++)
        if (!strcmp(cls, dtypes[t].storage))
            return (sp_dtype)t;
    return SP_DTYPE_INVALID;
}

sp_dtype sp_dtype_from_safetensors(const char *name)
{
    if (!name)
        return SP_DTYPE_INVALID;
    for (int t = 1; t < SP_DTYPE_COUNT; t++)
        if (!strcmp(name, dtypes[t].st))
            return (sp_dtype)t;
    return SP_DTYPE_INVALID;
}

bool sp_dtype_is_float(sp_dtype t)
{
    return t == SP_F32 || t == SP_F16 || t == SP_BF16 || t == SP_F64;
}

float sp_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float sp_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

double sp_dtype_load(sp_dtype t, const void *base, size_t i)
{
    const unsigned char *p = (const unsigned char *)base + i * sp_dtype_size(t);
    switch (t) {
    case SP_F32: { float v; memcpy(&v, p, 4); return v; }
    case SP_F64: { double v; memcpy(&v, p, 8); return v; }
    case SP_F16: { uint16_t v; memcpy(&v, p, 2); return sp_f16_to_f32(v); }
    case SP_BF16: { uint16_t v; memcpy(&v, p, 2); return sp_bf16_to_f32(v); }
    case SP_I8: return (double)*(const int8_t *)p;
    case SP_U8: return (double)*p;
    case SP_BOOL: return *p ? 1.0 : 0.0;
    case SP_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case SP_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case SP_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case SP_C64: { float v; memcpy(&v, p, 4); return v; }
    case SP_C128: { double v; memcpy(&v, p, 8); return v; }
    default: return NAN;
    }
}

bool sp_dtype_is_zero(sp_dtype t, const void *base, size_t i)
{
    size_t sz = sp_dtype_size(t);
    const unsigned char *p = (const unsigned char *)base + i * sz;
    switch (t) {
    case SP_F32: { uint32_t v; memcpy(&v, p, 4); return (v & 0x7fffffffu) == 0; }
    case SP_F64: { uint64_t v; memcpy(&v, p, 8); return (v & 0x7fffffffffffffffull) == 0; }
    case SP_F16:
    case SP_BF16: { uint16_t v; memcpy(&v, p, 2); return (v & 0x7fffu) == 0; }
    case SP_C64: { uint32_t a, b; memcpy(&a, p, 4); memcpy(&b, p + 4, 4);
                   return !(a & 0x7fffffffu) && !(b & 0x7fffffffu); }
    case SP_C128: { uint64_t a, b; memcpy(&a, p, 8); memcpy(&b, p + 8, 8);
                    return !(a & 0x7fffffffffffffffull) && !(b & 0x7fffffffffffffffull); }
    default:
        for (size_t k = 0; k < sz; k++)
            if (p[k])
                return false;
        return true;
    }
}

bool sp_tensor_is_contiguous(const sp_tensor *t)
{
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect)
            return false;
        expect *= t->shape[d];
    }
    return true;
}

/* Optimal-string-alignment distance (Levenshtein plus adjacent
 * transpositions), capped: returns cap + 1 once it is certain to exceed cap.
 * Names are short; longer inputs are compared on their first 63 bytes. */
static size_t osa_distance(const char *a, const char *b, size_t cap)
{
    enum { W = 64 };
    size_t n = strlen(a), m = strlen(b);
    if (n >= W)
        n = W - 1;
    if (m >= W)
        m = W - 1;
    if ((n > m ? n - m : m - n) > cap)
        return cap + 1;
    size_t d[3][W]; /* row i lives in d[i % 3] */
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t *cur = d[i % 3], *prev = d[(i + 2) % 3], *pp = d[(i + 1) % 3];
        size_t best = cur[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t v = prev[j - 1] + cost;
            if (prev[j] + 1 < v)
                v = prev[j] + 1;
            if (cur[j - 1] + 1 < v)
                v = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1;
            cur[j] = v;
            if (v < best)
                best = v;
        }
        if (best > cap)
            return cap + 1;
    }
    return d[n % 3][m];
}

const char *sp_closest_name(const char *word, const char *const *names, size_t n)
{
    size_t len = strlen(word), cap = len < 6 ? 1 : len < 12 ? 2 : 3, best = cap + 1;
    const char *pick = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !strcmp(names[i], word))
            continue;
        size_t d = osa_distance(word, names[i], cap);
        if (d < best && 2 * d < len) { /* "-x" is one edit from any "-h" */
            best = d;
            pick = names[i];
        }
    }
    return pick;
}
