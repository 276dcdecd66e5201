/*
 * Checked arithmetic for sizes taken from files. Every reader (zip, pickle,
 * torch zip/legacy/TorchScript, safetensors, HF folders, .spz,
 * compressed-tensors) computes element counts, byte sizes, strides and
 * offsets through these helpers, so an overflow is one failed check, never
 * a wrapped size handed to malloc or a signed overflow. Each returns false
 * on overflow (or a negative input) and then leaves *out unspecified.
 *
 * The view bound (documented in docs/architecture.md, "Trust"): a tensor
 * view may read its storage more than once (stride 0, overlapping strides),
 * so its dense size can exceed the storage. Readers accept a view whose
 * dense bytes are at most SP_VIEW_MAX_EXPANSION x the storage bytes plus
 * SP_VIEW_SLACK, and reject it when opening, before anything is allocated
 * or iterated: every buffer or loop over a view is then bounded by what
 * the file backs.
 *
 * Library-internal (formats/ and prune/); not installed.
 */
#ifndef SPARSIFY_FORMATS_CHECKED_H
#define SPARSIFY_FORMATS_CHECKED_H

#include "sparsify/common.h"

/* JSON read from checkpoints (safetensors headers, index and config
 * files): at most SP_JSON_MAX_BYTES, SP_JSON_MAX_VALUES values. The
 * largest real headers are a few MB (about 100 bytes and 11 values per
 * tensor), so these admit some 150,000 tensors per file while a hostile
 * header costs at most ~200 MB and well under a second to refuse. */
#define SP_JSON_MAX_BYTES ((uint64_t)16 << 20)
#define SP_JSON_MAX_VALUES ((uint64_t)1 << 21)

#define SP_VIEW_MAX_EXPANSION 64
#define SP_VIEW_SLACK ((uint64_t)64 << 20)

static inline bool sp_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static inline bool sp_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* a * b + c */
static inline bool sp_muladd_u64(uint64_t a, uint64_t b, uint64_t c, uint64_t *out)
{
    uint64_t m;
    return !__builtin_mul_overflow(a, b, &m) && !__builtin_add_overflow(m, c, out);
}

/* [off, off + len) lies inside [0, size). */
static inline bool sp_range_ok(uint64_t off, uint64_t len, uint64_t size)
{
    return off <= size && len <= size - off;
}

/* a * b as a size_t for malloc (false past SIZE_MAX). */
static inline bool sp_mul_size(uint64_t a, uint64_t b, size_t *out)
{
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r) || r > SIZE_MAX)
        return false;
    *out = (size_t)r;
    return true;
}

/* Element count of a shape (dims >= 0, at most SP_MAX_DIMS). Also checks
 * that the row-major strides exist, i.e. that the product of max(dim, 1)
 * fits in int64 (PyTorch refuses such shapes too); a zero dimension does
 * not excuse the others. */
bool sp_shape_numel(int ndim, const int64_t *shape, int64_t *numel);
/* Row-major strides of a shape that passed sp_shape_numel. */
bool sp_shape_strides(int ndim, const int64_t *shape, int64_t *stride);
/* numel * element size, fitting int64. */
bool sp_numel_bytes(int64_t numel, size_t elem_size, uint64_t *bytes);
/* The largest storage element index a non-empty view reads:
 * offset + sum((shape[d] - 1) * stride[d]); strides >= 0. */
bool sp_view_last(const sp_tensor *t, uint64_t *last);
/* True when a view of dense_bytes may be gathered from a storage of
 * storage_bytes (the bound above). */
bool sp_view_bound_ok(uint64_t dense_bytes, uint64_t storage_bytes);

/* Parse cost of JSON taken from a file, before cJSON allocates a node per
 * value (~80 bytes each, so a 90 MB array of zeros would take gigabytes):
 * false when the text holds more than max_values values (an upper bound:
 * containers twice, plus commas) or nests deeper than max_depth. Linear,
 * allocates nothing; cJSON still does the real parsing. */
bool sp_json_cost_ok(const char *text, size_t len, uint64_t max_values, int max_depth);

#endif
