/*
 * Checked size arithmetic shared by every reader (see checked.h).
 */
#include "formats/checked.h"

bool sp_shape_numel(int ndim, const int64_t *shape, int64_t *numel)
{
    if (ndim < 0 || ndim > SP_MAX_DIMS)
        return false;
    int64_t n = 1, span = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return false;
        if (__builtin_mul_overflow(n, shape[d], &n) ||
            __builtin_mul_overflow(span, shape[d] ? shape[d] : 1, &span))
            return false;
    }
    *numel = n;
    return true;
}

bool sp_shape_strides(int ndim, const int64_t *shape, int64_t *stride)
{
    int64_t st = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        stride[d] = st;
        if (__builtin_mul_overflow(st, shape[d] ? shape[d] : 1, &st))
            return false;
    }
    return true;
}

bool sp_numel_bytes(int64_t numel, size_t elem_size, uint64_t *bytes)
{
    int64_t b;
    if (numel < 0 || elem_size > INT64_MAX || __builtin_mul_overflow(numel, (int64_t)elem_size, &b))
        return false;
    *bytes = (uint64_t)b;
    return true;
}

bool sp_view_last(const sp_tensor *t, uint64_t *last)
{
    if (t->offset < 0 || t->ndim < 0 || t->ndim > SP_MAX_DIMS)
        return false;
    uint64_t at = (uint64_t)t->offset;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] <= 0 || t->stride[d] < 0)
            return false;
        if (!sp_muladd_u64((uint64_t)(t->shape[d] - 1), (uint64_t)t->stride[d], at, &at))
            return false;
    }
    *last = at;
    return true;
}

bool sp_view_bound_ok(uint64_t dense_bytes, uint64_t storage_bytes)
{
    uint64_t cap;
    if (!sp_muladd_u64(storage_bytes, SP_VIEW_MAX_EXPANSION, SP_VIEW_SLACK, &cap))
        return true; /* a storage that large bounds nothing further */
    return dense_bytes <= cap;
}

bool sp_json_cost_ok(const char *p, size_t n, uint64_t max_values, int max_depth)
{
    uint64_t values = 1;
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '"') {
            for (i++; i < n && p[i] != '"'; i++)
                if (p[i] == '\\')
                    i++;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth)
                return false;
            values += 2;
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',') {
            values++;
        }
        if (values > max_values)
            return false;
    }
    return true;
}
