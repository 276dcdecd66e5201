/* kernels/pool.c — see pool.h. */
#include "kernels/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* The claim word: generation (20 bits) | nchunks (22) | next chunk (22). */
#define GEN_SHIFT 44
#define NCH_SHIFT 22
#define FIELD ((UINT64_C(1) << 22) - 1)
#define GEN_MASK ((UINT64_C(1) << 20) - 1)
#define SPINS 20000

struct sp_pool {
    int nworkers;
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic uint64_t claim;
    _Atomic size_t done;
    _Atomic int sleepers;
    _Atomic int stop;
    sp_pool_fn fn; /* valid for the published generation */
    void *ctx;
};

static uint64_t gen_of(uint64_t v) { return v >> GEN_SHIFT; }

/* Claim and run chunks of generation g until none is left. */
static void work(sp_pool *p, uint64_t g)
{
    for (;;) {
        uint64_t v = atomic_load(&p->claim);
        if (gen_of(v) != g || (v & FIELD) >= ((v >> NCH_SHIFT) & FIELD))
            return;
        if (!atomic_compare_exchange_weak(&p->claim, &v, v + 1))
            continue;
        p->fn(p->ctx, (size_t)(v & FIELD));
        atomic_fetch_add(&p->done, 1);
    }
}

static void *worker(void *arg)
{
    sp_pool *p = arg;
    uint64_t seen = gen_of(atomic_load(&p->claim));
    for (;;) {
        uint64_t v;
        int spins = 0;
        while (gen_of(v = atomic_load(&p->claim)) == seen && !atomic_load(&p->stop)) {
            if (++spins < SPINS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (gen_of(atomic_load(&p->claim)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = gen_of(v);
        work(p, seen);
    }
}

sp_status sp_pool_new(sp_pool **out, int nthreads, sp_error *err)
{
    *out = NULL;
    sp_pool *p = calloc(1, sizeof *p);
    if (!p)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->claim, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    if (nthreads > 1) {
        p->tids = calloc((size_t)nthreads - 1, sizeof(pthread_t));
        if (!p->tids) {
            sp_pool_free(p);
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        }
        for (int i = 0; i < nthreads - 1; i++) {
            if (pthread_create(&p->tids[i], NULL, worker, p) != 0) {
                sp_pool_free(p);
                return sp_error_set(err, SP_ERR_INTERNAL, "cannot start worker thread %d", i);
            }
            p->nworkers++;
        }
    }
    *out = p;
    return SP_OK;
}

void sp_pool_run(sp_pool *p, size_t nchunks, sp_pool_fn fn, void *ctx)
{
    if (p->nworkers == 0 || nchunks <= 1) {
        for (size_t c = 0; c < nchunks; c++)
            fn(ctx, c);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->done, 0);
    const uint64_t g = (gen_of(atomic_load(&p->claim)) + 1) & GEN_MASK;
    atomic_store(&p->claim, g << GEN_SHIFT | (uint64_t)nchunks << NCH_SHIFT);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    work(p, g);
    while (atomic_load(&p->done) < nchunks)
        cpu_relax();
}

void sp_pool_free(sp_pool *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++)
        pthread_join(p->tids[i], NULL);
    free(p->tids);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
