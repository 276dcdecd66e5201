/*
 * sparsify — checkpoints: one API over every weight file we read.
 *
 * A checkpoint is a list of named tensors (sp_tensor) that are strided views
 * of storages (sp_storage: one contiguous run of bytes in the file). Tied
 * tensors and views appear once per name and share one storage index.
 *
 * Formats (detected from content, not from the file name):
 *   torch zip      torch.save >= 1.6           formats/torch.c + zip.c + pickle.c
 *   torch legacy   torch.save(_use_new_zipfile_serialization=False)  (read)
 *   torchscript    torch.jit.save              tensors named as state_dict()
 *   safetensors    one .safetensors file       formats/safetensors.c
 *   hf folder      a directory of *.safetensors shards (+ index json)
 *
 * Naming: nested dict keys joined with '.', list/tuple indices as decimal
 * numbers ("optimizer_state_dict.state.0.exp_avg"); TorchScript modules by
 * their state_dict() names ("conv.weight", "bn.running_mean").
 *
 * Memory: storages are mapped (stored zip entries, safetensors, legacy) or
 * inflated on demand (deflated zip entries); sp_ckpt_storage_release drops
 * the pages again, so walking a checkpoint storage by storage keeps the
 * resident set near one storage, whatever the checkpoint's size.
 */
#ifndef SPARSIFY_CKPT_H
#define SPARSIFY_CKPT_H

#include "sparsify/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_format {
    SP_FORMAT_UNKNOWN = 0,
    SP_FORMAT_TORCH_ZIP = 1,
    SP_FORMAT_TORCH_LEGACY = 2,
    SP_FORMAT_TORCHSCRIPT = 3,
    SP_FORMAT_SAFETENSORS = 4,
    SP_FORMAT_HF_FOLDER = 5,
    SP_FORMAT_SPZ = 6,
    SP_FORMAT_COMPRESSED_TENSORS = 7,
} sp_format;

/* "torch-zip", "torch-legacy", "torchscript", "safetensors", "hf-folder",
 * "spz", "compressed-tensors". */
const char *sp_format_name(sp_format f);

typedef struct sp_storage {
    char *key;        /* zip: record key ("0"); safetensors: tensor name */
    sp_dtype dtype;
    uint64_t nbytes;  /* size of the storage in bytes */
} sp_storage;

typedef struct sp_ckpt sp_ckpt;

/* Open a checkpoint file or folder. Returns a new object in *out; caller
 * frees with sp_ckpt_close. Errors: SP_ERR_IO (cannot open/read),
 * SP_ERR_FORMAT (malformed, truncated, bad CRC, hostile pickle),
 * SP_ERR_UNSUPPORTED. The message names the file. */
sp_status sp_ckpt_open(sp_ckpt **out, const char *path, sp_error *err);
/* Open a checkpoint held in memory (torch zip, TorchScript, legacy torch,
 * safetensors or .spz; folders need files). data is borrowed until
 * sp_ckpt_close and must not change meanwhile; name stands for the file in
 * messages. Rewriting such a checkpoint writes a real file. Used by the
 * fuzz harnesses and by callers that hold a checkpoint in a buffer.
 * Errors as sp_ckpt_open. */
sp_status sp_ckpt_open_mem(sp_ckpt **out, const char *name, const void *data, size_t size,
                           sp_error *err);
/* Accepts NULL. */
void sp_ckpt_close(sp_ckpt *ck);

sp_format sp_ckpt_format(const sp_ckpt *ck);
const char *sp_ckpt_path(const sp_ckpt *ck);

size_t sp_ckpt_num_tensors(const sp_ckpt *ck);
/* Borrowed until sp_ckpt_close. Tensors are in file order (pickle order for
 * torch formats, header order for safetensors). */
const sp_tensor *sp_ckpt_tensor(const sp_ckpt *ck, size_t i);
/* Index of the tensor with this name, or -1. */
long sp_ckpt_find(const sp_ckpt *ck, const char *name);

size_t sp_ckpt_num_storages(const sp_ckpt *ck);
const sp_storage *sp_ckpt_storage(const sp_ckpt *ck, size_t i);

/* The bytes of storage i (nbytes long, little-endian elements, aligned to
 * the element size even where the file holds them unaligned), borrowed
 * until sp_ckpt_storage_release(ck, i) or sp_ckpt_close. Errors:
 * SP_ERR_FORMAT when the entry fails its CRC or inflates wrongly. */
sp_status sp_ckpt_storage_data(sp_ckpt *ck, size_t i, const void **data,
                               sp_error *err);
/* Drop the pages/buffer of storage i (a no-op if not loaded). Both calls
 * may run concurrently on different threads for different storages. */
void sp_ckpt_storage_release(sp_ckpt *ck, size_t i);

/* Convenience: the bytes of tensor t's first element, i.e. storage data +
 * offset * elemsize; borrowed like sp_ckpt_storage_data. */
sp_status sp_ckpt_tensor_data(sp_ckpt *ck, size_t t, const void **data,
                              sp_error *err);

/* A view's zeros (+0 and -0 for floats) and whether it is 2:4 as 2:4
 * runtimes and compressed-tensors' sparse-24-bitmask need it: the input
 * dimension (docs/pruning.md: dim 1 of [out, in], I of a conv
 * [O, I, kh, kw], all but dim 0 of another rank, the whole of rank 0/1) is a
 * multiple of 4 and every aligned group of 4 consecutive input weights has
 * at most 2 nonzeros; an empty view is 2:4. first: the view's first element
 * (storage bytes + offset * element size). Reads the view in place (no
 * copy); inspect and the compressed-tensors export share it so they agree.
 * is_24 is only computed when check_24 (else true). */
typedef struct sp_view_stats {
    uint64_t zeros;
    bool is_24;
} sp_view_stats;
void sp_tensor_view_stats(const sp_tensor *t, const void *first, bool check_24,
                          sp_view_stats *out);

/* sp_tensor_view_stats of every tensor of ck (2:4 checked for floating
 * tensors) into out[0, ntensors): storage by storage, each loaded once and
 * released, on `threads` threads (0: every CPU). progress (may be NULL):
 * storage bytes done. Errors: those of sp_ckpt_storage_data. */
sp_status sp_ckpt_view_stats(sp_ckpt *ck, int threads, sp_progress_fn progress, void *pctx,
                             sp_view_stats *out, sp_error *err);

/* The tensors grouped by storage, for visiting each storage once:
 * order[start[s] .. start[s + 1]) are the indices of the tensors of storage
 * s, in file order. Returns two new arrays (start has
 * sp_ckpt_num_storages + 1 entries that matter); the caller frees both.
 * Errors: SP_ERR_NOMEM. */
sp_status sp_ckpt_tensors_by_storage(const sp_ckpt *ck, size_t **order, size_t **start,
                                     sp_error *err);

/*
 * Rewrite: write ck to out_path in its own format (torch legacy is written as
 * torch zip), replacing the bytes of some storages. For every storage, in
 * file order, fn is called with the original bytes (element-aligned, as
 * from sp_ckpt_storage_data) and a scratch buffer of
 * the same size whose contents are undefined (not a copy: copying a 94 MB
 * storage nobody changes would double peak memory); if fn fills all of `out`
 * and sets *changed = true, the new bytes are written instead. Everything else is copied unchanged (zip: every other
 * record byte for byte; only replaced records get a new CRC-32).
 * fn may be NULL (plain copy). The output is written to a temporary file in
 * the same directory and renamed over out_path on success; on any failure no
 * file is left behind. For an HF folder out_path is a folder.
 * Errors: whatever fn returns, SP_ERR_IO, SP_ERR_FORMAT.
 */
typedef sp_status (*sp_rewrite_fn)(void *ctx, sp_ckpt *ck, size_t storage,
                                   const void *orig, void *out, bool *changed,
                                   sp_error *err);
sp_status sp_ckpt_rewrite(sp_ckpt *ck, const char *out_path, sp_rewrite_fn fn,
                          void *ctx, sp_error *err);

/*
 * Parallel rewrite: the same result as sp_ckpt_rewrite, for transforms that
 * say up front which storages they touch and can produce a storage's new
 * bytes piece by piece. Safetensors files and Hugging Face folders keep
 * their layout, so every piece has a known place in the output: storages
 * are processed by `threads` threads at once (0: every CPU), large ones in
 * chunks of about 4 MiB, each written once at its offset (pwrite); what is
 * not touched (other storages, headers, gaps, whole shards, other files of
 * a folder) is copied by the kernel (copy_file_range) where the file system
 * allows. Other formats go through sp_ckpt_rewrite, one storage at a time.
 * The output bytes never depend on the number of threads.
 *
 * Callbacks may run concurrently on different threads, for different
 * storages and for different chunks of one storage; for one storage,
 * prepare runs before its chunks and finish after all of them. orig is the
 * storage's bytes (element-aligned, as from sp_ckpt_storage_data).
 */
typedef struct sp_rewrite_ops {
    void *ctx;
    /* does the transform change storage i? (false: copied unchanged) */
    bool (*touches)(void *ctx, size_t storage);
    /* new bytes come in chunks of a multiple of this many bytes (a row);
     * 0: the whole storage in one piece. NULL: 0. */
    uint64_t (*chunk_unit)(void *ctx, size_t storage);
    /* once per touched storage, before its chunks; may be NULL */
    sp_status (*prepare)(void *ctx, size_t storage, const void *orig, sp_error *err);
    /* out[0, len) = the new bytes [off, off + len) of the storage */
    sp_status (*emit)(void *ctx, size_t storage, const void *orig, uint64_t off, uint64_t len,
                      void *out, sp_error *err);
    /* once per touched storage, after its last chunk; may be NULL */
    sp_status (*finish)(void *ctx, size_t storage, sp_error *err);
    int threads;             /* 0: every CPU (sp_threads_resolve) */
    sp_progress_fn progress; /* bytes of output written, or NULL */
    void *progress_ctx;
} sp_rewrite_ops;
sp_status sp_ckpt_rewrite_par(sp_ckpt *ck, const char *out_path, const sp_rewrite_ops *ops,
                              sp_error *err);

/* Threads a call with `threads` = 0 uses: OMP_NUM_THREADS when set, else
 * the CPUs this process may run on. requested > 0 is returned as is. */
int sp_threads_default(int requested);

/*
 * Outputs. Every writer of libsparsify writes a hidden temporary beside its
 * output, ".NAME.sparsify-tmp-PID" (unnamed while possible; a folder holds
 * the marker file SP_TMP_MARKER), and puts it in place only when complete:
 *  - nothing at the output when the writer started: renamed without
 *    replacing (something that appears meanwhile is left alone, an error);
 *  - something there: that same thing is replaced atomically (rename, or
 *    an exchange for folders) and then removed. A symbolic link is
 *    replaced as a link, its target untouched; an old folder is removed
 *    only after the new output is in place, walking it without ever
 *    following a link.
 * Whether an existing output may be replaced is the caller's decision
 * (sparsify refuses unless --force). A run killed outright leaves its
 * temporary; the next writer of that output removes it once its PID is no
 * longer alive (folders only with the marker).
 */
#define SP_TMP_MARKER ".sparsify-tmp"

/* ".NAME.sparsify-tmp-PID" beside path, into buf; false if it does not fit
 * or path has no last component. */
bool sp_output_tmp_path(const char *path, long pid, char *buf, size_t len);
/* Remove the temporary at tmp_path when it is ours: a regular file or a
 * link (the link itself), or a folder holding SP_TMP_MARKER (its links
 * removed, never followed).
 * Async-signal-safe (system calls and stack buffers only), for signal
 * handlers. True when something was removed. */
bool sp_output_tmp_remove(const char *tmp_path);
/* The same for this process's own temporary, from its signal handler: an
 * empty folder without the marker is removed too (this process created it
 * a moment before marking it), and removal is repeated while other threads
 * keep writing into it. Async-signal-safe. */
bool sp_output_tmp_remove_own(const char *tmp_path);
/* Remove the temporaries that killed runs (PID not alive, same user) left
 * beside path; writers do this when they start. Returns how many. */
size_t sp_output_clean_stale(const char *path);
/* Write len bytes to path as every writer does (temporary + rename). */
sp_status sp_file_write_atomic(const char *path, const void *data, size_t len, sp_error *err);

/* A dense, contiguous, row-major tensor handed to a writer. */
typedef struct sp_tensor_data {
    const char *name;
    sp_dtype dtype;
    int ndim;
    int64_t shape[SP_MAX_DIMS];
    const void *data; /* numel * dtype size bytes, borrowed */
} sp_tensor_data;

/* Write a flat name -> tensor map as a state dict (OrderedDict) that
 * torch.load reads. Atomic (temp file + rename). */
sp_status sp_torch_save(const char *path, const sp_tensor_data *tensors,
                        size_t n, sp_error *err);

/* Write a safetensors file. metadata_json: a JSON object of string values for
 * "__metadata__", or NULL. Atomic. */
sp_status sp_safetensors_save(const char *path, const sp_tensor_data *tensors,
                              size_t n, const char *metadata_json,
                              sp_error *err);

#ifdef __cplusplus
}
#endif
#endif
