/*
 * Internal: writing files whose layout is known before their bytes are (a
 * rewritten safetensors shard, a compressed-tensors or dense safetensors
 * export). Each output file is a list of pieces at known offsets, added in
 * file order:
 *   copy  bytes of a mapped input file, copied by the kernel
 *         (copy_file_range) where the file system allows;
 *   gen   bytes a caller's callback generates, chunk by chunk, for a
 *         "group" (one tensor or storage): prepare(group) runs once before
 *         the group's first chunk, finish(group) once after its last.
 * sp_outplan_run turns the pieces into ordered jobs (formats/jobs.h) on
 * several threads: each chunk is generated into the worker's scratch and
 * written once at its offset (pwrite). Files are spread over threads so
 * that threads at neighbouring jobs mostly write different files; a group
 * is prepared one group ahead so threads rarely wait. Output bytes never
 * depend on the number of threads. The files are committed (atomically,
 * sp_outfile) only when every job succeeded.
 */
#ifndef SPARSIFY_FORMATS_OUTPLAN_H
#define SPARSIFY_FORMATS_OUTPLAN_H

#include "formats/ckpt_internal.h"

typedef struct sp_outplan_ops {
    void *ctx;
    /* once per group, before its chunks; may be NULL */
    sp_status (*prepare)(void *ctx, size_t group, sp_error *err);
    /* out[0, len) = bytes [off, off + len) of the piece `tag` of group */
    sp_status (*emit)(void *ctx, size_t group, uint64_t tag, uint64_t off, uint64_t len, void *out,
                      sp_error *err);
    /* once per group, after its last chunk; may be NULL */
    sp_status (*finish)(void *ctx, size_t group, sp_error *err);
} sp_outplan_ops;

typedef struct sp_outplan sp_outplan;

/* A new plan; ops is copied. ngroups: groups are 0..ngroups-1. */
sp_status sp_outplan_new(sp_outplan **out, const sp_outplan_ops *ops, size_t ngroups,
                         sp_error *err);
/* Open an output file (atomic, see sp_outfile_open); *file gets its index. */
sp_status sp_outplan_file(sp_outplan *p, const char *path, size_t *file, sp_error *err);
/* Write bytes now (headers known up front). */
sp_status sp_outplan_put(sp_outplan *p, size_t file, uint64_t off, const void *buf, size_t len,
                         sp_error *err);
/* Pieces, in file order per file. copy: src borrowed until the run ends. */
sp_status sp_outplan_copy(sp_outplan *p, size_t file, uint64_t off, const sp_mapfile *src,
                          uint64_t src_off, uint64_t len, sp_error *err);
/* gen: chunks of len bytes cut at multiples of unit (0: one chunk). A
 * group's pieces must lie in one file, one after the other. */
sp_status sp_outplan_gen(sp_outplan *p, size_t file, uint64_t off, size_t group, uint64_t tag,
                         uint64_t len, uint64_t unit, sp_error *err);
/* Run every piece on threads threads (0: every CPU); progress (may be
 * NULL) gets bytes written. Commits all files on success. */
sp_status sp_outplan_run(sp_outplan *p, int threads, sp_progress_fn progress, void *pctx,
                         sp_error *err);
/* Accepts NULL; removes the files of a plan that did not commit. */
void sp_outplan_free(sp_outplan *p);

#endif
