/*
 * sparsify — compact sparse weight files.
 *
 *  .spz               our own format (docs/format-spz.md): per tensor the
 *                     cheapest exact encoding (dense, bitmask + values, N:M
 *                     values + combination ranks, block index + dense blocks),
 *                     entropy-coded masks, byte-plane shuffled + deflated
 *                     values, 64-byte aligned sections, CRC-32 per section,
 *                     a table of contents at the end. Written by a streaming
 *                     writer (memory: one tensor), read through sp_ckpt_open
 *                     (SP_FORMAT_SPZ) from a read-only mapping.
 *  compressed-tensors Hugging Face safetensors folders with a
 *                     `sparsity_config` (sparse-bitmask, sparse-24-bitmask),
 *                     written by sp_ct_export, read through sp_ckpt_open
 *                     (SP_FORMAT_COMPRESSED_TENSORS).
 *
 * "Zero" in .spz means all bits zero: a -0.0 is a kept value, so every
 * round trip is bit-exact for every dtype. compressed-tensors drops +0 and
 * -0 alike (its rule), so -0.0 comes back as +0.0 from that format.
 */
#ifndef SPARSIFY_SPZ_H
#define SPARSIFY_SPZ_H

#include "sparsify/ckpt.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_SPZ_VERSION 1u

typedef enum sp_spz_encoding {
    SP_SPZ_AUTO = 0,    /* writer option only: choose the cheapest */
    SP_SPZ_DENSE = 1,
    SP_SPZ_BITMASK = 2, /* element bitmask + kept values */
    SP_SPZ_NM = 3,      /* N values per group of M + combination ranks */
    SP_SPZ_BLOCK = 4,   /* block bitmask + kept blocks */
    SP_SPZ_ALIAS = 5,   /* same bytes as an earlier tensor (tied weights) */
} sp_spz_encoding;

/* "auto", "dense", "bitmask", "nm", "block", "alias". */
const char *sp_spz_encoding_name(sp_spz_encoding e);
/* Parse the names above; SP_ERR_INVALID_ARG otherwise. */
sp_status sp_spz_encoding_parse(sp_spz_encoding *out, const char *text, sp_error *err);

typedef struct sp_spz_options {
    sp_spz_encoding encoding; /* AUTO (default) or a forced encoding; a forced
                                 encoding that cannot hold a tensor exactly
                                 (N:M violated, not a matrix) falls back to
                                 the automatic choice for that tensor */
    int nm_n, nm_m;           /* forced N:M pattern; 0 = detect */
    int64_t block_r, block_c; /* forced block size; 0 = detect */
    bool raw;                 /* kernel-ready: raw bitmask and unshuffled
                                 raw values, mappable in place; no deflate */
    int level;                /* deflate level 1..9; 0 = default (6) */
    int threads;              /* sp_spz_export: 0 = every CPU; the file is
                                 the same bytes whatever it is */
} sp_spz_options;
void sp_spz_options_init(sp_spz_options *o);

/* What the writer did with one tensor. */
typedef struct sp_spz_tensor_info {
    sp_spz_encoding encoding;
    int n, m;             /* NM */
    int64_t r, c;         /* BLOCK */
    uint64_t numel;
    uint64_t nnz;         /* elements whose bits are not all zero */
    uint64_t dense_bytes; /* numel * dtype size */
    uint64_t stored_bytes;/* section payload bytes in the file */
    uint64_t raw_bytes;   /* the same sections before compression */
} sp_spz_tensor_info;

typedef struct sp_spz_writer sp_spz_writer;

/* Start writing path (atomically: temp file, renamed on finish). metadata:
 * a JSON object stored verbatim in the table of contents, or NULL.
 * Errors: SP_ERR_IO, SP_ERR_NOMEM. Caller frees with sp_spz_writer_free. */
sp_status sp_spz_writer_new(sp_spz_writer **out, const char *path, const sp_spz_options *opt,
                            const char *metadata, sp_error *err);
/* Encode and append one dense row-major tensor (memory: a few copies of
 * this one tensor). info may be NULL. Errors: SP_ERR_INVALID_ARG (duplicate
 * name, bad dtype), SP_ERR_IO, SP_ERR_NOMEM. */
sp_status sp_spz_writer_add(sp_spz_writer *w, const sp_tensor_data *t, sp_spz_tensor_info *info,
                            sp_error *err);
/* Record `name` as a second name for the earlier tensor `target` (tied
 * weights): stored once. Errors: SP_ERR_NOT_FOUND when target is unknown. */
sp_status sp_spz_writer_add_alias(sp_spz_writer *w, const char *name, const char *target,
                                  sp_error *err);
/* Write the table of contents and the header, rename into place. The file
 * size goes to *size (may be NULL). The writer is spent afterwards. */
sp_status sp_spz_writer_finish(sp_spz_writer *w, uint64_t *size, sp_error *err);
/* Accepts NULL; removes the temp file when finish was not reached. */
void sp_spz_writer_free(sp_spz_writer *w);

/* For a checkpoint opened from an .spz: per-tensor encoding details
 * (stored/raw bytes of its sections) and the file's metadata JSON (borrowed,
 * "" when none). SP_ERR_INVALID_ARG when ck is not an .spz. */
sp_status sp_spz_tensor_info_get(const sp_ckpt *ck, size_t tensor, sp_spz_tensor_info *info,
                                 sp_error *err);
const char *sp_spz_metadata(const sp_ckpt *ck);

/* ---- exporting a whole checkpoint ---- */

typedef struct sp_export_entry {
    char *name;
    sp_dtype dtype;
    int ndim;
    int64_t shape[SP_MAX_DIMS];
    sp_spz_tensor_info info; /* compressed-tensors: encoding BITMASK/NM/DENSE */
} sp_export_entry;

typedef struct sp_export_report {
    uint64_t dense_bytes;  /* sum of numel * dtype size over all tensors */
    uint64_t output_bytes; /* size of the file, or of the folder's files */
    sp_export_entry *entries;
    size_t nentries;
    char format[32];       /* "spz", "compressed-tensors", "safetensors" */
    char ct_format[32];    /* compressed-tensors: "sparse-bitmask", ... */
} sp_export_report;
void sp_export_report_release(sp_export_report *r);

/* The tensors of ck as one contiguous row-major copy (non-contiguous views
 * are gathered); *owned tells the caller to free(*data). Borrowed data stays
 * valid until sp_ckpt_storage_release/close. */
sp_status sp_ckpt_tensor_dense(sp_ckpt *ck, size_t t, const void **data, void **owned,
                               sp_error *err);

/* Every tensor of ck as sp_ckpt_tensor_dense gives it, decoded on
 * `threads` threads (0: every CPU): data[i], owned[i] for ntensors
 * entries (free each owned[i]). progress: bytes decoded. */
sp_status sp_ckpt_dense_all(sp_ckpt *ck, int threads, sp_progress_fn progress, void *pctx,
                            const void **data, void **owned, sp_error *err);

/* Export every tensor of ck to an .spz at path. Tensors that are the same
 * view of the same storage as an earlier one become aliases. progress may be
 * NULL; report may be NULL (else release it). Atomic. */
sp_status sp_spz_export(sp_ckpt *ck, const char *path, const sp_spz_options *opt,
                        sp_progress_fn progress, void *pctx, sp_export_report *report,
                        sp_error *err);

typedef struct sp_ct_options {
    const char *format;        /* NULL = auto: "sparse-24-bitmask" when every
                                  compressed weight is 2:4, else
                                  "sparse-bitmask"; or "dense" */
    uint64_t max_shard_bytes;  /* 0 = 5 GB (Hugging Face's default) */
    int threads;               /* 0 = every CPU; the files are the same
                                  bytes whatever it is */
} sp_ct_options;

/* Export ck as a compressed-tensors folder at out_dir: model.safetensors (or
 * model-0000k-of-0000n.safetensors + model.safetensors.index.json) and
 * config.json (the input folder's config.json when there is one, with
 * quantization_config added). Which tensors are compressed: floating 2-D
 * tensors named *.weight that are smaller compressed than dense. Atomic. */
sp_status sp_ct_export(sp_ckpt *ck, const char *out_dir, const sp_ct_options *opt,
                       sp_progress_fn progress, void *pctx, sp_export_report *report,
                       sp_error *err);

/* Export ck as one dense safetensors file (no compression); convenience
 * for `sparsify export --format safetensors` and `sparsify densify`.
 * threads: 0 = every CPU. */
sp_status sp_dense_safetensors_export(sp_ckpt *ck, const char *path, int threads,
                                      sp_progress_fn progress, void *pctx,
                                      sp_export_report *report, sp_error *err);

#ifdef __cplusplus
}
#endif
#endif
