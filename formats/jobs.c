/*
 * Ordered parallel jobs (formats/jobs.h): one atomic counter hands out job
 * indices in order; a mutex and a condition variable serve the waits, the
 * error and the progress callback. Threads live for one sp_jobs_run call.
 */
#include "formats/jobs.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define MAX_THREADS 256

struct sp_jobs {
    size_t njobs;
    sp_job_fn fn;
    void *ctx;
    atomic_size_t next;
    atomic_size_t fail_at;   /* lowest failing job, or SIZE_MAX */
    atomic_uchar *state;     /* per job: 0 not ended, 1 ok, 2 failed */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sp_error err;            /* of job fail_at */
    /* progress */
    sp_progress_fn progress;
    void *pctx;
    uint64_t total;
    atomic_uint_fast64_t done;
    pthread_mutex_t pmu;
};

typedef struct worker {
    sp_jobs *jr;
    int id;
} worker;

int sp_threads_default(int requested)
{
    if (requested > 0)
        return requested > MAX_THREADS ? MAX_THREADS : requested;
    const char *e = getenv("OMP_NUM_THREADS");
    if (e && *e) {
        long v = strtol(e, NULL, 10);
        if (v > 0)
            return v > MAX_THREADS ? MAX_THREADS : (int)v;
    }
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0)
        n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        n = 1;
    return n > MAX_THREADS ? MAX_THREADS : n;
}

static void run_loop(sp_jobs *jr, int id)
{
    sp_error err;
    for (;;) {
        size_t j = atomic_fetch_add(&jr->next, 1);
        if (j >= jr->njobs)
            break;
        if (j > atomic_load(&jr->fail_at)) {
            /* not run: release anyone who waits for it */
            pthread_mutex_lock(&jr->mu);
            atomic_store(&jr->state[j], 2);
            pthread_cond_broadcast(&jr->cv);
            pthread_mutex_unlock(&jr->mu);
            break;
        }
        memset(&err, 0, sizeof err);
        sp_status s = jr->fn(jr->ctx, jr, j, id, &err);
        pthread_mutex_lock(&jr->mu);
        atomic_store(&jr->state[j], s ? 2 : 1);
        if (s && j < atomic_load(&jr->fail_at)) {
            atomic_store(&jr->fail_at, j);
            jr->err = err;
            if (!jr->err.code)
                jr->err.code = s;
        }
        pthread_cond_broadcast(&jr->cv);
        pthread_mutex_unlock(&jr->mu);
    }
}

static void *thread_main(void *arg)
{
    worker *w = arg;
#ifdef _OPENMP
    /* jobs are the parallelism: OpenMP regions inside a job stay serial */
    omp_set_num_threads(1);
#endif
    run_loop(w->jr, w->id);
    return NULL;
}

sp_status sp_jobs_run(size_t njobs, int threads, sp_job_fn fn, void *ctx,
                      sp_progress_fn progress, void *pctx, uint64_t total, sp_error *err)
{
    if (njobs == 0)
        return SP_OK;
    int nt = sp_threads_default(threads);
    if ((size_t)nt > njobs)
        nt = (int)njobs;
    sp_jobs jr;
    memset(&jr, 0, sizeof jr);
    jr.njobs = njobs;
    jr.fn = fn;
    jr.ctx = ctx;
    jr.progress = progress;
    jr.pctx = pctx;
    jr.total = total;
    atomic_init(&jr.next, 0);
    atomic_init(&jr.fail_at, SIZE_MAX);
    atomic_init(&jr.done, 0);
    jr.state = calloc(njobs, sizeof *jr.state);
    if (!jr.state)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory (%zu jobs)", njobs);
    pthread_mutex_init(&jr.mu, NULL);
    pthread_mutex_init(&jr.pmu, NULL);
    pthread_cond_init(&jr.cv, NULL);
    worker ws[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int started = 0;
    for (int i = 1; i < nt; i++) {
        ws[i].jr = &jr;
        ws[i].id = i;
        if (pthread_create(&tid[i], NULL, thread_main, &ws[i]) != 0)
            break; /* fewer threads: the others take the jobs */
        started = i;
    }
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    if (nt > 1 || threads == 1)
        omp_set_num_threads(1);
#endif
    run_loop(&jr, 0);
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    for (int i = 1; i <= started; i++)
        pthread_join(tid[i], NULL);
    sp_status s = SP_OK;
    if (atomic_load(&jr.fail_at) != SIZE_MAX) {
        s = jr.err.code ? jr.err.code : SP_ERR_INTERNAL;
        if (err)
            *err = jr.err;
    }
    pthread_cond_destroy(&jr.cv);
    pthread_mutex_destroy(&jr.mu);
    pthread_mutex_destroy(&jr.pmu);
    free(jr.state);
    return s;
}

bool sp_jobs_wait(sp_jobs *jr, size_t j)
{
    if (atomic_load(&jr->state[j]) == 1)
        return true;
    pthread_mutex_lock(&jr->mu);
    while (atomic_load(&jr->state[j]) == 0)
        pthread_cond_wait(&jr->cv, &jr->mu);
    bool ok = atomic_load(&jr->state[j]) == 1;
    pthread_mutex_unlock(&jr->mu);
    return ok;
}

void sp_jobs_progress(sp_jobs *jr, uint64_t bytes)
{
    uint64_t d = atomic_fetch_add(&jr->done, bytes) + bytes;
    if (!jr->progress)
        return;
    /* one caller at a time; a busy lock means someone is drawing already */
    if (pthread_mutex_trylock(&jr->pmu) == 0) {
        jr->progress(jr->pctx, d, jr->total);
        pthread_mutex_unlock(&jr->pmu);
    }
}
