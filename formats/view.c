/*
 * Walking a tensor's strided view in place: its zeros and whether it is
 * 2:4. One walker serves `sparsify inspect` and the compressed-tensors
 * export, so the two always agree on what is 2:4.
 */
#include "sparsify/ckpt.h"

#include "formats/jobs.h"
#include "formats/scan.h"

#include <stdlib.h>
#include <string.h>

/* Zero test on raw bits: floats ignore the sign bit (+0 and -0 are zero). */
typedef struct zspec {
    size_t es;
    uint64_t mask; /* for es <= 8; for 16-byte complex, mask of each half */
} zspec;

static zspec zspec_for(sp_dtype dt)
{
    zspec z = {sp_dtype_size(dt), ~(uint64_t)0};
    switch (dt) {
    case SP_F16:
    case SP_BF16: z.mask = 0x7fff; break;
    case SP_F32: z.mask = 0x7fffffff; break;
    case SP_F64: z.mask = 0x7fffffffffffffffull; break;
    case SP_C64: z.mask = 0x7fffffff7fffffffull; break;
    case SP_C128: z.mask = 0x7fffffffffffffffull; break;
    default:
        if (z.es < 8)
            z.mask = ((uint64_t)1 << (8 * z.es)) - 1;
        break;
    }
    return z;
}

static inline bool is_zero(const zspec *z, const unsigned char *p)
{
    uint64_t v = 0;
    switch (z->es) {
    case 1: return *p == 0;
    case 2: { uint16_t x; memcpy(&x, p, 2); v = x; } break;
    case 4: { uint32_t x; memcpy(&x, p, 4); v = x; } break;
    case 8: memcpy(&v, p, 8); break;
    case 16: {
        uint64_t a, b;
        memcpy(&a, p, 8);
        memcpy(&b, p + 8, 8);
        return !(a & z->mask) && !(b & z->mask);
    }
    default: return false;
    }
    return (v & z->mask) == 0;
}

/*
 * The view's dims permuted into the 2:4 geometry (docs/pruning.md): the
 * "outer" dims first and the row (the input dimension, whose consecutive
 * groups of 4 are checked) last. [out, in]; conv [O, I, kh, kw] as an
 * [O, I] matrix per (kh, kw); any other rank [dim0, rest] (rank 0 and 1:
 * one row). *nouter: dims before the row's own (a new row starts when one
 * of them advances); *cols: the row length.
 */
static int geometry(const sp_tensor *t, int64_t *shape, int64_t *stride, int *nouter, int64_t *cols)
{
    int nd;
    if (t->ndim == 0) {
        shape[0] = 1;
        stride[0] = 0;
        nd = 1;
        *nouter = 0;
        *cols = 1;
    } else if (t->ndim == 4) {
        static const int perm[4] = {0, 2, 3, 1};
        for (int k = 0; k < 4; k++) {
            shape[k] = t->shape[perm[k]];
            stride[k] = t->stride[perm[k]];
        }
        nd = 4;
        *nouter = 3;
        *cols = t->shape[1];
    } else {
        for (int k = 0; k < t->ndim; k++) {
            shape[k] = t->shape[k];
            stride[k] = t->stride[k];
        }
        nd = t->ndim;
        *nouter = nd >= 2 ? 1 : 0;
        *cols = 1;
        for (int k = *nouter; k < nd; k++)
            *cols *= t->shape[k];
    }
    return nd;
}

/* A contiguous view whose 2:4 groups run along memory (every rank but a
 * conv's with a kernel larger than 1x1): the scanning ukernels. */
static bool stats_fast(const sp_tensor *t, const void *first, bool check_24, sp_view_stats *out)
{
    size_t es = sp_dtype_size(t->dtype);
    uint64_t zm = sp_scan_zmask(t->dtype);
    if (!zm || !sp_tensor_is_contiguous(t) || (t->ndim == 4 && t->shape[2] * t->shape[3] != 1))
        return false;
    const sp_scan_ukernels *uk = sp_scan_ukernels_get();
    size_t n = (size_t)t->numel;
    out->is_24 = true;
    if (n == 0) {
        out->zeros = 0;
        return true;
    }
    int64_t cols = 1;
    for (int d = t->ndim >= 2 ? 1 : 0; d < t->ndim; d++)
        cols *= t->shape[d];
    if (check_24 && cols % 4 == 0)
        out->zeros = uk->zeros24(first, n, es, zm, &out->is_24);
    else {
        out->zeros = uk->zeros(first, n, es, zm);
        out->is_24 = !check_24;
    }
    return true;
}

void sp_tensor_view_stats(const sp_tensor *t, const void *first, bool check_24,
                          sp_view_stats *out)
{
    if (stats_fast(t, first, check_24, out))
        return;
    zspec z = zspec_for(t->dtype);
    int64_t shape[SP_MAX_DIMS], stride[SP_MAX_DIMS], cols;
    int nouter, nd = geometry(t, shape, stride, &nouter, &cols);
    out->zeros = 0;
    out->is_24 = true;
    for (int k = 0; k < nd; k++)
        if (shape[k] == 0)
            return; /* empty: nothing breaks 2:4 */
    check_24 = check_24 && (out->is_24 = cols % 4 == 0);
    const unsigned char *base = first;
    int64_t idx[SP_MAX_DIMS] = {0};
    int last = nd - 1;
    int64_t inner_n = shape[last];
    ptrdiff_t inner_step = (ptrdiff_t)(stride[last] * (int64_t)z.es);
    int gpos = 0, gnz = 0;
    bool ok = true;
    uint64_t zeros = 0;
    for (;;) {
        int64_t off = 0;
        for (int k = 0; k < last; k++)
            off += idx[k] * stride[k];
        const unsigned char *p = base + off * (int64_t)z.es;
        if (!check_24) {
            for (int64_t i = 0; i < inner_n; i++, p += inner_step)
                zeros += is_zero(&z, p);
        } else {
            for (int64_t i = 0; i < inner_n; i++, p += inner_step) {
                bool zz = is_zero(&z, p);
                zeros += zz;
                gnz += !zz;
                if (++gpos == 4) {
                    ok = ok && gnz <= 2;
                    gpos = gnz = 0;
                }
            }
        }
        /* advance the odometer over dims [0, last) */
        int k = last - 1;
        while (k >= 0 && ++idx[k] == shape[k]) {
            idx[k] = 0;
            k--;
        }
        if (k < 0)
            break;
        if (k < nouter)
            gpos = gnz = 0; /* a row ended (its length is a multiple of 4) */
    }
    out->zeros = zeros;
    if (check_24)
        out->is_24 = ok;
}

/* ---- every tensor of a checkpoint, storage by storage, in parallel ---- */

typedef struct stats_run {
    sp_ckpt *ck;
    size_t *order, *start, *storages;
    sp_view_stats *out;
} stats_run;

static sp_status stats_job(void *ctx, sp_jobs *jr, size_t jn, int worker, sp_error *err)
{
    stats_run *r = ctx;
    size_t s = r->storages[jn];
    const void *data;
    (void)worker;
    sp_status st = sp_ckpt_storage_data(r->ck, s, &data, err);
    if (st)
        return st;
    for (size_t k = r->start[s]; k < r->start[s + 1]; k++) {
        const sp_tensor *t = sp_ckpt_tensor(r->ck, r->order[k]);
        const unsigned char *base = (const unsigned char *)data + (size_t)t->offset * sp_dtype_size(t->dtype);
        sp_tensor_view_stats(t, base, sp_dtype_is_float(t->dtype), &r->out[r->order[k]]);
    }
    sp_ckpt_storage_release(r->ck, s);
    sp_jobs_progress(jr, sp_ckpt_storage(r->ck, s)->nbytes);
    return SP_OK;
}

sp_status sp_ckpt_view_stats(sp_ckpt *ck, int threads, sp_progress_fn progress, void *pctx,
                             sp_view_stats *out, sp_error *err)
{
    stats_run r = {ck, NULL, NULL, NULL, out};
    size_t ns = sp_ckpt_num_storages(ck), n = 0;
    sp_status s = sp_ckpt_tensors_by_storage(ck, &r.order, &r.start, err);
    if (s)
        return s;
    uint64_t total = 0;
    if (!(r.storages = malloc((ns ? ns : 1) * sizeof *r.storages))) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < ns; i++)
        if (r.start[i + 1] > r.start[i]) {
            r.storages[n++] = i;
            total += sp_ckpt_storage(ck, i)->nbytes;
        }
    s = sp_jobs_run(n, threads, stats_job, &r, progress, pctx, total, err);
out:
    free(r.order);
    free(r.start);
    free(r.storages);
    return s;
}
