/*
 * Internal: ordered parallel jobs, the one threading scheme of the
 * checkpoint walkers (prune, check, inspect, export, densify). Not
 * installed; formats/ and prune/ only.
 *
 * Jobs 0..n-1 are handed out in index order to `threads` threads (the
 * caller is one of them; with 1 thread everything runs on the caller, in
 * order). A job may wait for an earlier job (sp_jobs_wait): since jobs are
 * handed out in order, the earlier one is already running or done, so a wait
 * never deadlocks. Callers lay their work out so that a job's result does
 * not depend on which thread ran it or when, which keeps every output
 * byte-identical whatever the number of threads.
 *
 * Errors: when job f fails, no job after f starts, every job before f still
 * runs to its end, and the error reported is that of the lowest failing job
 * (so the message, too, does not depend on the number of threads).
 */
#ifndef SPARSIFY_FORMATS_JOBS_H
#define SPARSIFY_FORMATS_JOBS_H

#include "sparsify/ckpt.h" /* sp_threads_default */

typedef struct sp_jobs sp_jobs;

/* One job. worker: 0..threads-1, the calling thread's slot (for per-thread
 * scratch). Returns SP_OK or an error in err. */
typedef sp_status (*sp_job_fn)(void *ctx, sp_jobs *jr, size_t job, int worker, sp_error *err);

/* Run jobs [0, njobs) on threads threads (<= 0: sp_threads_default(0)).
 * progress (may be NULL) receives the bytes jobs report with
 * sp_jobs_progress, out of total, from one thread at a time. Returns SP_OK
 * or the error of the lowest failing job. */
sp_status sp_jobs_run(size_t njobs, int threads, sp_job_fn fn, void *ctx,
                      sp_progress_fn progress, void *pctx, uint64_t total, sp_error *err);

/* Block until job j (lower than the calling job) has ended. False when it
 * failed or will not run: the caller should return SP_OK at once (its
 * result no longer matters). */
bool sp_jobs_wait(sp_jobs *jr, size_t j);

/* Count bytes of work done, for the progress callback. Thread-safe. */
void sp_jobs_progress(sp_jobs *jr, uint64_t bytes);

#endif
