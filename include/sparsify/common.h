/*
 * sparsify — core types shared by every module: status codes, the per-call
 * error buffer, element types and the tensor descriptor.
 *
 * Rules that hold across the library:
 *  - functions return sp_status; on failure they fill the caller's sp_error
 *    (which may be NULL) with one lowercase line naming what and where;
 *  - the library never prints to stdout and never calls exit();
 *  - status codes are never renumbered once shipped.
 */
#ifndef SPARSIFY_COMMON_H
#define SPARSIFY_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_status {
    SP_OK = 0,
    SP_ERR_IO = 1,          /* open/read/write/rename failed */
    SP_ERR_FORMAT = 2,      /* a file is malformed, truncated or hostile */
    SP_ERR_INVALID_ARG = 3, /* bad argument, recipe field, option value */
    SP_ERR_NOMEM = 4,
    SP_ERR_UNSUPPORTED = 5, /* well-formed but not something we handle */
    SP_ERR_CHECK = 6,       /* a requested check did not pass */
    SP_ERR_INTERNAL = 7,    /* a failure in a dependency (libtorch, BLAS) */
    SP_ERR_NOT_FOUND = 8,   /* a named tensor/recipe/key does not exist */
} sp_status;

/* Human name of a status code ("format error"); never NULL. */
const char *sp_status_str(sp_status s);

#define SP_ERR_MSG_MAX 512

/* Per-call error report. Embed it on the stack; no release needed. */
typedef struct sp_error {
    sp_status code;
    char msg[SP_ERR_MSG_MAX];
} sp_error;

/* Fill err (if not NULL) with code and a printf-style message; returns code,
 * so callers can write `return sp_error_set(err, SP_ERR_IO, "...")`. */
sp_status sp_error_set(sp_error *err, sp_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prefix an existing message: "'file.pt': <old message>". */
void sp_error_prefix(sp_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void sp_error_clear(sp_error *err);

/* Element types. Values are stable (they appear in .spz files). */
typedef enum sp_dtype {
    SP_DTYPE_INVALID = 0,
    SP_F32 = 1,
    SP_F16 = 2,
    SP_BF16 = 3,
    SP_F64 = 4,
    SP_I8 = 5,
    SP_I16 = 6,
    SP_I32 = 7,
    SP_I64 = 8,
    SP_U8 = 9,
    SP_BOOL = 10,
    SP_C64 = 11,  /* complex64: read and passed through only */
    SP_C128 = 12, /* complex128: read and passed through only */
    SP_DTYPE_COUNT
} sp_dtype;

/* Bytes per element; 0 for SP_DTYPE_INVALID. */
size_t sp_dtype_size(sp_dtype t);
/* PyTorch spelling without "torch.": "float32", "bfloat16", "int64", "bool". */
const char *sp_dtype_name(sp_dtype t);
/* Parse the PyTorch spelling (also accepts "float", "half", "long", ...). */
sp_dtype sp_dtype_from_name(const char *name);
/* torch storage class name ("FloatStorage", "BFloat16Storage", ...). */
sp_dtype sp_dtype_from_storage_class(const char *cls);
const char *sp_dtype_storage_class(sp_dtype t);
/* safetensors spelling ("F32", "BF16", "I64", "BOOL", ...). */
sp_dtype sp_dtype_from_safetensors(const char *name);
const char *sp_dtype_safetensors_name(sp_dtype t);
bool sp_dtype_is_float(sp_dtype t);

/* Element i of a floating buffer as double (f32/f16/bf16/f64); other dtypes
 * are converted numerically. Used for scores and statistics, never to write
 * values back (kept values are copied bit for bit). */
double sp_dtype_load(sp_dtype t, const void *base, size_t i);
/* True when element i is zero (+0 or -0 for floats). */
bool sp_dtype_is_zero(sp_dtype t, const void *base, size_t i);
/* IEEE half / bfloat16 conversions. */
float sp_f16_to_f32(uint16_t h);
float sp_bf16_to_f32(uint16_t h);

#define SP_MAX_DIMS 16

/*
 * A tensor as its checkpoint describes it: a strided view of one storage.
 * Element (i0, i1, ...) lives at storage element offset + sum(ik*stride[k]).
 * Shapes and strides are in elements, not bytes.
 */
typedef struct sp_tensor {
    char *name;       /* dotted name, see docs/architecture.md */
    sp_dtype dtype;
    int ndim;         /* 0 for a scalar tensor */
    int64_t shape[SP_MAX_DIMS];
    int64_t stride[SP_MAX_DIMS];
    int64_t offset;   /* storage offset, elements */
    int64_t numel;    /* product of shape (1 for 0-d) */
    size_t storage;   /* index into the checkpoint's storage table */
} sp_tensor;

/* True when the view is dense row-major (strides match shape). */
bool sp_tensor_is_contiguous(const sp_tensor *t);

/* Progress of a long operation (export, prune): done of total units (bytes)
 * so far; called from one thread at a time (a worker thread of the call when
 * it runs several), never after the call returns. */
typedef void (*sp_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* The entry of names[0..n) closest to word by edit distance (typos,
 * transpositions), or NULL when none is close enough to be the one meant
 * (at most 1 edit for words under 6 bytes, 2 under 12, else 3, and fewer
 * edits than half the word). For "did you mean" hints; an exact match is
 * not a suggestion. */
const char *sp_closest_name(const char *word, const char *const *names, size_t n);

#ifdef __cplusplus
}
#endif
#endif
