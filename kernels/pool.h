/*
 * kernels/pool.h — the worker threads of one sp_spmm_plan (internal).
 *
 * Threads are created once, with the plan. A call hands out chunks through
 * one atomic word; the caller works too, and the call ends when every chunk
 * is done — not when every thread has checked in, so a worker that the OS
 * has not scheduled (other processes on a small machine) never holds a call
 * up: the running threads take its chunks. Idle workers spin briefly, then
 * sleep on a condition variable. A pool runs one call at a time.
 */
#ifndef SPARSIFY_KERNELS_POOL_H
#define SPARSIFY_KERNELS_POOL_H

#include "sparsify/common.h"

typedef struct sp_pool sp_pool;
typedef void (*sp_pool_fn)(void *ctx, size_t chunk);

/* nthreads counts the caller: nthreads - 1 workers are started. */
sp_status sp_pool_new(sp_pool **out, int nthreads, sp_error *err);
/* fn(ctx, c) for every c in [0, nchunks) (nchunks < 2^22), on any thread. */
void sp_pool_run(sp_pool *p, size_t nchunks, sp_pool_fn fn, void *ctx);
void sp_pool_free(sp_pool *p); /* accepts NULL; joins the workers */

#endif
