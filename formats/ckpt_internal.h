/*
 * Internal: the sp_ckpt object shared by the checkpoint backends (torch zip,
 * torch legacy, TorchScript, safetensors, HF folders, spz, compressed-tensors)
 * and the small file helpers they all use. Not installed; formats/ only.
 */
#ifndef SPARSIFY_FORMATS_CKPT_INTERNAL_H
#define SPARSIFY_FORMATS_CKPT_INTERNAL_H

#include "sparsify/ckpt.h"

#include <pthread.h>

#define SP_CKPT_LOCKS 64

typedef struct sp_mapfile sp_mapfile; /* below */

typedef struct sp_ckpt_backend {
    const char *name;
    /* Bytes of storage i, borrowed until storage_release/close. */
    sp_status (*storage_data)(sp_ckpt *ck, size_t i, const void **data, sp_error *err);
    void (*storage_release)(sp_ckpt *ck, size_t i);
    /* See sp_ckpt_rewrite; NULL when the format cannot be rewritten. */
    sp_status (*rewrite)(sp_ckpt *ck, const char *out_path, sp_rewrite_fn fn, void *ctx,
                         sp_error *err);
    /* See sp_ckpt_rewrite_par; NULL: sp_ckpt_rewrite, one storage at a
     * time. */
    sp_status (*rewrite_par)(sp_ckpt *ck, const char *out_path, const sp_rewrite_ops *ops,
                             sp_error *err);
    /* Where storage i's bytes lie, as they are, in a mapped file (*mf, at
     * *off); false when they do not (compressed, decoded). May be NULL. */
    bool (*storage_file)(const sp_ckpt *ck, size_t i, const sp_mapfile **mf, uint64_t *off);
    /* Free impl (not the tables, which ckpt.c owns). */
    void (*close)(sp_ckpt *ck);
} sp_ckpt_backend;

struct sp_ckpt {
    sp_format format;
    char *path;
    sp_tensor *tensors;
    size_t ntensors, tensors_cap;
    sp_storage *storages;
    size_t nstorages, storages_cap;
    const sp_ckpt_backend *be;
    void *impl; /* backend state */
    /* ckpt.c: per storage, an element-aligned copy of bytes the backend
     * returned misaligned (legacy torch, safetensors), else NULL. */
    void **aligned;
    size_t aligned_n;
    /* storages loaded by several threads at once: storage i is loaded and
     * released under lock i % SP_CKPT_LOCKS */
    pthread_mutex_t locks[SP_CKPT_LOCKS];
    /* sp_ckpt_open_mem: the caller's bytes stand in for the file at path */
    const unsigned char *mem;
    uint64_t mem_size;
    bool in_mem;
};

/* Storage i as a plain range of a mapped file (for kernel copies): see
 * sp_ckpt_backend.storage_file. */
bool sp_ckpt_storage_file(const sp_ckpt *ck, size_t i, const sp_mapfile **mf, uint64_t *off);

/* Append a tensor / storage; name/key are copied. Return the new index in
 * *idx (may be NULL). */
sp_status sp_ckpt_add_tensor(sp_ckpt *ck, const sp_tensor *t, size_t *idx, sp_error *err);
sp_status sp_ckpt_add_storage(sp_ckpt *ck, const char *key, sp_dtype dtype, uint64_t nbytes,
                              size_t *idx, sp_error *err);
/* Check that tensor t's view lies inside its storage (offset, strides,
 * shape against nbytes); returns SP_ERR_FORMAT naming the tensor if not. */
sp_status sp_ckpt_validate_tensor(const sp_ckpt *ck, const sp_tensor *t, sp_error *err);

/* Backend entry points, called by sp_ckpt_open after sniffing the content.
 * Each fills ck (format, be, impl, tables) or returns an error. */
sp_status sp_torch_open(sp_ckpt *ck, sp_error *err);        /* zip, legacy, TorchScript */
sp_status sp_safetensors_open(sp_ckpt *ck, sp_error *err);  /* one .safetensors file */
sp_status sp_hf_folder_open(sp_ckpt *ck, sp_error *err);    /* a directory */
sp_status sp_spz_open(sp_ckpt *ck, sp_error *err);          /* .spz (spz.c) */
/* compressed-tensors folders (ctensors.c): detect = a config.json whose
 * sparsity_config format is sparse-bitmask or sparse-24-bitmask. */
bool sp_ct_folder_detect(const char *path);
sp_status sp_ct_folder_open(sp_ckpt *ck, sp_error *err);

/* ---- read-only file mapping ---- */
struct sp_mapfile {
    int fd;
    const unsigned char *data; /* NULL for an empty file */
    uint64_t size;
    bool borrowed;             /* caller's memory: never unmapped or dropped */
};

/* Map path read-only. ENOENT gives SP_ERR_NOT_FOUND, other failures
 * SP_ERR_IO; the message names the path. */
sp_status sp_mapfile_open(sp_mapfile *mf, const char *path, sp_error *err);
/* A "mapping" of size bytes of the caller's memory (borrowed until
 * sp_mapfile_close, which leaves it alone). */
void sp_mapfile_mem(sp_mapfile *mf, const void *data, uint64_t size);
/* The checkpoint's own bytes: ck->path mapped, or the buffer given to
 * sp_ckpt_open_mem. Every single-file backend maps through this. */
sp_status sp_ckpt_map(const sp_ckpt *ck, sp_mapfile *mf, sp_error *err);
/* Tell the kernel the pages of [off, off+len) may be dropped from memory. */
void sp_mapfile_drop(const sp_mapfile *mf, uint64_t off, uint64_t len);
void sp_mapfile_close(sp_mapfile *mf);

/* ---- atomic output: write a temp file, rename on commit ---- */
#include <sys/types.h>
#include <time.h>

/* What was at an output path when its writer started (lstat): only that
 * may be replaced on commit. */
typedef struct sp_outid {
    bool existed;
    dev_t dev;
    ino_t ino;
    struct timespec ctime;
} sp_outid;

typedef struct sp_outfile {
    int fd;
    char *path;     /* final path */
    char *tmp_path; /* named temp file, or NULL when unnamed (O_TMPFILE) */
    uint64_t pos;   /* bytes written so far (sequential writes) */
    sp_outid id;
    int no_kcopy;   /* copy_file_range refused once: copy through memory */
} sp_outfile;

/* Create an unnamed (or hidden) temp file in path's directory, after
 * removing the temporaries killed runs left there. */
sp_status sp_outfile_open(sp_outfile *of, const char *path, sp_error *err);
/* Write all of buf (loops over short writes; chunks > 1 GiB). */
sp_status sp_outfile_write(sp_outfile *of, const void *buf, size_t len, sp_error *err);
/* Write zero bytes until pos is a multiple of align. */
sp_status sp_outfile_pad(sp_outfile *of, uint64_t align, sp_error *err);
/* pwrite at an earlier offset (headers patched after the payload). */
sp_status sp_outfile_pwrite(sp_outfile *of, const void *buf, size_t len, uint64_t off,
                            sp_error *err);
/* Copy [src_off, src_off + len) of the mapped file src to offset out_off of
 * of. The kernel copies the bytes (copy_file_range: they never pass through
 * user space, and src's pages are not mapped in); where it cannot (another
 * file system, an in-memory input, an old kernel), they are written from
 * the mapping, whose pages are dropped again. Positioned, so threads may
 * copy different ranges at once. */
sp_status sp_outfile_copy(sp_outfile *of, const sp_mapfile *src, uint64_t src_off,
                          uint64_t out_off, uint64_t len, sp_error *err);
/* fsync-free commit: give the file its final name (atomic rename; see
 * "Outputs" in sparsify/ckpt.h for what may be replaced). */
sp_status sp_outfile_commit(sp_outfile *of, sp_error *err);
/* Remove the temp file; safe after commit (no-op) and on a zeroed struct. */
void sp_outfile_abort(sp_outfile *of);

/* Atomic output folder: files are written into a hidden temp folder beside
 * path (".NAME.sparsify-tmp-PID", holding the marker SP_TMP_MARKER), which
 * takes path's place on commit; what was at path is exchanged out and
 * removed without following links. */
typedef struct sp_outdir {
    char *path;
    char *tmp_path;
    sp_outid id;
} sp_outdir;
sp_status sp_outdir_open(sp_outdir *od, const char *path, sp_error *err);
/* Join the temp folder and a file name into buf. */
const char *sp_outdir_file(const sp_outdir *od, const char *name, char *buf, size_t len);
sp_status sp_outdir_commit(sp_outdir *od, sp_error *err);
void sp_outdir_abort(sp_outdir *od);

/* CRC-32 (zlib polynomial) over large buffers (chunks > 4 GiB for zlib). */
uint32_t sp_crc32(uint32_t crc, const void *buf, uint64_t len);

#endif
