/*
 * Files written by parallel jobs from a known layout (formats/outplan.h).
 *
 * Jobs, per file in file order:
 *   COPY  a copied range, at most COPY_STEP bytes;
 *   PREP  a group's prepare, placed PREP_AHEAD groups before its chunks;
 *   EMIT  one chunk of a generated piece (about CHUNK_BYTES, cut on the
 *         piece's unit): generated into the worker's scratch, written at
 *         its offset; the group's last chunk runs finish.
 * Files are dealt to min(files, threads) lanes; the lanes are merged by
 * bytes, each keeping its own order, so a job only ever waits for an
 * earlier one.
 */
#include "formats/outplan.h"

#include "formats/jobs.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_BYTES ((uint64_t)4 << 20)
#define COPY_STEP ((uint64_t)64 << 20)
#define PREP_AHEAD 1
#define MAX_WORKERS 256
#define NONE SIZE_MAX

enum { P_COPY, P_GEN };
enum { J_COPY, J_PREP, J_EMIT };

typedef struct piece {
    uint8_t kind;
    size_t file;
    uint64_t off, len;
    const sp_mapfile *src; /* COPY */
    uint64_t src_off;
    size_t group;          /* GEN */
    uint64_t tag, unit;
} piece;

typedef struct job {
    uint8_t kind;
    size_t piece;
    uint64_t a, b;    /* COPY, EMIT: range within the piece */
    size_t group;     /* PREP */
    size_t prep;      /* EMIT: its group's PREP job, or NONE */
} job;

typedef struct jlist {
    job *v;
    size_t n, cap;
} jlist;

struct sp_outplan {
    sp_outplan_ops ops;
    size_t ngroups;
    sp_outfile *files;
    size_t nfiles, fcap;
    piece *pc;
    size_t npc, pcap;
    job *jobs;
    size_t njobs;
    atomic_size_t *left; /* per group: chunks not yet written */
    unsigned char *scratch[MAX_WORKERS];
    size_t scratch_len[MAX_WORKERS];
};

sp_status sp_outplan_new(sp_outplan **out, const sp_outplan_ops *ops, size_t ngroups,
                         sp_error *err)
{
    sp_outplan *p = calloc(1, sizeof *p);
    *out = NULL;
    if (!p || !(p->left = calloc(ngroups ? ngroups : 1, sizeof *p->left))) {
        free(p);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    p->ops = *ops;
    p->ngroups = ngroups;
    *out = p;
    return SP_OK;
}

void sp_outplan_free(sp_outplan *p)
{
    if (!p)
        return;
    for (size_t f = 0; f < p->nfiles; f++)
        sp_outfile_abort(&p->files[f]); /* a no-op once committed */
    for (size_t w = 0; w < MAX_WORKERS; w++)
        free(p->scratch[w]);
    free(p->files);
    free(p->pc);
    free(p->jobs);
    free(p->left);
    free(p);
}

sp_status sp_outplan_file(sp_outplan *p, const char *path, size_t *file, sp_error *err)
{
    if (p->nfiles == p->fcap) {
        size_t cap = p->fcap ? 2 * p->fcap : 8;
        sp_outfile *n = realloc(p->files, cap * sizeof *n);
        if (!n)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        p->files = n;
        p->fcap = cap;
    }
    sp_status s = sp_outfile_open(&p->files[p->nfiles], path, err);
    if (s)
        return s;
    *file = p->nfiles++;
    return SP_OK;
}

sp_status sp_outplan_put(sp_outplan *p, size_t file, uint64_t off, const void *buf, size_t len,
                         sp_error *err)
{
    return sp_outfile_pwrite(&p->files[file], buf, len, off, err);
}

static sp_status piece_add(sp_outplan *p, piece pc, sp_error *err)
{
    if (pc.len == 0)
        return SP_OK;
    if (p->npc == p->pcap) {
        size_t cap = p->pcap ? 2 * p->pcap : 256;
        piece *n = realloc(p->pc, cap * sizeof *n);
        if (!n)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        p->pc = n;
        p->pcap = cap;
    }
    p->pc[p->npc++] = pc;
    return SP_OK;
}

sp_status sp_outplan_copy(sp_outplan *p, size_t file, uint64_t off, const sp_mapfile *src,
                          uint64_t src_off, uint64_t len, sp_error *err)
{
    /* one run with the piece before when they continue each other */
    if (p->npc) {
        piece *l = &p->pc[p->npc - 1];
        if (l->kind == P_COPY && l->file == file && l->src == src && l->off + l->len == off &&
            l->src_off + l->len == src_off) {
            l->len += len;
            return SP_OK;
        }
    }
    return piece_add(p, (piece){P_COPY, file, off, len, src, src_off, 0, 0, 0}, err);
}

sp_status sp_outplan_gen(sp_outplan *p, size_t file, uint64_t off, size_t group, uint64_t tag,
                         uint64_t len, uint64_t unit, sp_error *err)
{
    if (group >= p->ngroups)
        return sp_error_set(err, SP_ERR_INTERNAL, "output plan: group %zu of %zu", group, p->ngroups);
    return piece_add(p, (piece){P_GEN, file, off, len, NULL, 0, group, tag, unit}, err);
}

static sp_status job_add(jlist *l, job j, sp_error *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        job *n = realloc(l->v, cap * sizeof *n);
        if (!n)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        l->v = n;
        l->cap = cap;
    }
    l->v[l->n++] = j;
    return SP_OK;
}

static bool in_lane(const sp_outplan *p, size_t k, size_t lane, size_t nl)
{
    return p->pc[k].file % nl == lane;
}

/* The jobs of the pieces of lane `lane`, in order; prep indices local. */
static sp_status lane_jobs(sp_outplan *p, size_t lane, size_t nl, size_t *prep_of, jlist *l,
                           sp_error *err)
{
    sp_status s = SP_OK;
    size_t ahead = 0; /* pieces before this one have their group's PREP placed */
    for (size_t k = 0; k < p->npc && !s; k++) {
        const piece *pc = &p->pc[k];
        if (!in_lane(p, k, lane, nl))
            continue;
        if (pc->kind == P_COPY) {
            for (uint64_t a = 0; a < pc->len && !s; a += COPY_STEP)
                s = job_add(l, (job){J_COPY, k, a, a + COPY_STEP < pc->len ? a + COPY_STEP : pc->len, 0, NONE},
                            err);
            continue;
        }
        if (p->ops.prepare) {
            /* this group's PREP and the next PREP_AHEAD groups' */
            if (ahead <= k)
                ahead = k;
            for (size_t placed = 0; ahead < p->npc && !s; ahead++) {
                const piece *q = &p->pc[ahead];
                if (q->kind != P_GEN || !in_lane(p, ahead, lane, nl) || prep_of[q->group] != NONE)
                    continue;
                if (q->group != pc->group && placed++ >= PREP_AHEAD)
                    break;
                prep_of[q->group] = l->n;
                s = job_add(l, (job){J_PREP, ahead, 0, 0, q->group, NONE}, err);
            }
        }
        uint64_t per = pc->unit == 0 || pc->unit >= pc->len
                           ? pc->len
                           : (CHUNK_BYTES / pc->unit ? CHUNK_BYTES / pc->unit : 1) * pc->unit;
        for (uint64_t a = 0; a < pc->len && !s; a += per) {
            s = job_add(l, (job){J_EMIT, k, a, a + per < pc->len ? a + per : pc->len, pc->group,
                                 p->ops.prepare ? prep_of[pc->group] : NONE},
                        err);
            atomic_fetch_add(&p->left[pc->group], 1);
        }
    }
    return s;
}

static uint64_t job_bytes(const job *j) { return j->kind == J_PREP ? 0 : j->b - j->a; }

static sp_status plan_jobs(sp_outplan *p, int threads, sp_error *err)
{
    size_t nl = (size_t)sp_threads_default(threads);
    if (nl > p->nfiles)
        nl = p->nfiles;
    if (nl < 1)
        nl = 1;
    jlist *ls = calloc(nl, sizeof *ls), all = {0};
    size_t *pos = calloc(nl, sizeof *pos), **map = calloc(nl, sizeof *map);
    size_t *prep_of = malloc((p->ngroups ? p->ngroups : 1) * sizeof *prep_of);
    uint64_t *bytes = calloc(nl, sizeof *bytes);
    sp_status s = SP_OK;
    if (!ls || !pos || !map || !prep_of || !bytes)
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (size_t g = 0; prep_of && g < p->ngroups; g++)
        prep_of[g] = NONE;
    for (size_t k = 0; k < nl && !s; k++) {
        s = lane_jobs(p, k, nl, prep_of, &ls[k], err);
        if (!s && !(map[k] = malloc((ls[k].n ? ls[k].n : 1) * sizeof **map)))
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    while (!s) {
        size_t best = nl;
        for (size_t k = 0; k < nl; k++)
            if (pos[k] < ls[k].n && (best == nl || bytes[k] < bytes[best]))
                best = k;
        if (best == nl)
            break;
        job jb = ls[best].v[pos[best]];
        if (jb.kind == J_EMIT && jb.prep != NONE)
            jb.prep = map[best][jb.prep];
        map[best][pos[best]++] = all.n;
        bytes[best] += job_bytes(&jb);
        s = job_add(&all, jb, err);
    }
    p->jobs = all.v;
    p->njobs = all.n;
    for (size_t k = 0; ls && k < nl; k++) {
        free(ls[k].v);
        if (map)
            free(map[k]);
    }
    free(ls);
    free(pos);
    free(map);
    free(prep_of);
    free(bytes);
    return s;
}

static sp_status run_job(void *ctx, sp_jobs *jr, size_t jn, int worker, sp_error *err)
{
    sp_outplan *p = ctx;
    const job *j = &p->jobs[jn];
    const piece *pc = &p->pc[j->piece];
    sp_outfile *of = &p->files[pc->file];
    sp_status s;
    if (j->kind == J_COPY) {
        s = sp_outfile_copy(of, pc->src, pc->src_off + j->a, pc->off + j->a, j->b - j->a, err);
        if (!s)
            sp_jobs_progress(jr, j->b - j->a);
        return s;
    }
    if (j->kind == J_PREP)
        return p->ops.prepare(p->ops.ctx, j->group, err);
    if (j->prep != NONE && !sp_jobs_wait(jr, j->prep))
        return SP_OK; /* the run is failing; this chunk no longer matters */
    uint64_t len = j->b - j->a;
    if (worker >= MAX_WORKERS)
        return sp_error_set(err, SP_ERR_INTERNAL, "too many workers");
    if (p->scratch_len[worker] < len) {
        free(p->scratch[worker]);
        p->scratch_len[worker] = 0;
        if (len > SIZE_MAX || !(p->scratch[worker] = malloc((size_t)len)))
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory (%llu bytes for one chunk)",
                                (unsigned long long)len);
        p->scratch_len[worker] = (size_t)len;
    }
    s = p->ops.emit(p->ops.ctx, pc->group, pc->tag, j->a, len, p->scratch[worker], err);
    if (!s)
        s = sp_outfile_pwrite(of, p->scratch[worker], (size_t)len, pc->off + j->a, err);
    if (s)
        return s;
    sp_jobs_progress(jr, len);
    if (atomic_fetch_sub(&p->left[pc->group], 1) == 1 && p->ops.finish)
        s = p->ops.finish(p->ops.ctx, pc->group, err);
    return s;
}

sp_status sp_outplan_run(sp_outplan *p, int threads, sp_progress_fn progress, void *pctx,
                         sp_error *err)
{
    sp_status s = plan_jobs(p, threads, err);
    uint64_t total = 0;
    for (size_t k = 0; k < p->npc; k++)
        total += p->pc[k].len;
    if (!s)
        s = sp_jobs_run(p->njobs, threads, run_job, p, progress, pctx, total, err);
    for (size_t f = 0; f < p->nfiles && !s; f++)
        s = sp_outfile_commit(&p->files[f], err);
    return s;
}
