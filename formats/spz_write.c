/*
 * The .spz writer (docs/format-spz.md, formats/spz_internal.h): sections
 * appended 64-byte aligned with their CRC-32, the table of contents and the
 * header written at the end, the file renamed into place on finish. The
 * per-tensor choice of encoding is the export planner's (export_plan.c).
 */
#include "formats/spz_internal.h"
#include "formats/checked.h"
#include "formats/export_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

const char *sp_spz_encoding_name(sp_spz_encoding e)
{
    switch (e) {
    case SP_SPZ_AUTO: return "auto";
    case SP_SPZ_DENSE: return "dense";
    case SP_SPZ_BITMASK: return "bitmask";
    case SP_SPZ_NM: return "nm";
    case SP_SPZ_BLOCK: return "block";
    case SP_SPZ_ALIAS: return "alias";
    }
    return "unknown";
}

sp_status sp_spz_encoding_parse(sp_spz_encoding *out, const char *text, sp_error *err)
{
    for (int e = SP_SPZ_AUTO; e <= SP_SPZ_BLOCK; e++)
        if (!strcmp(text, sp_spz_encoding_name((sp_spz_encoding)e))) {
            *out = (sp_spz_encoding)e;
            return SP_OK;
        }
    return sp_error_set(err, SP_ERR_INVALID_ARG,
                        "unknown encoding '%s' (expected auto, dense, bitmask, nm or block)", text);
}

void sp_spz_options_init(sp_spz_options *o)
{
    memset(o, 0, sizeof *o);
    o->encoding = SP_SPZ_AUTO;
}

/* ------------------------------------------------------------------ */
/* writer                                                              */

typedef struct wentry {
    char *name;
    sp_dtype dtype;
    int ndim;
    int64_t shape[SP_MAX_DIMS];
    sp_spz_encoding enc;
    uint32_t p0, p1, alias;
    uint64_t nkept, nvals;
    uint64_t nnz;
    uint8_t flags;
    sp__spz_sec sec[SPZ_MAX_SECTIONS];
    int nsec;
} wentry;

/* Where a tensor's sections are encoded: memory, so that tensors can be
 * encoded on several threads and appended in order (sp__spz_stage). */
typedef struct wsink {
    sp_spz_options opt;
    unsigned char *buf;
    uint64_t len, cap;
} wsink;

struct sp__spz_staged {
    wentry e;
    wsink k;
};

struct sp_spz_writer {
    sp_outfile of;
    sp_spz_options opt;
    char *meta;
    wentry *e;
    size_t n, cap;
    bool done;
};

sp_status sp_spz_writer_new(sp_spz_writer **out, const char *path, const sp_spz_options *opt,
                            const char *metadata, sp_error *err)
{
    *out = NULL;
    sp_spz_writer *w = calloc(1, sizeof *w);
    if (!w)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    w->of.fd = -1;
    if (opt)
        w->opt = *opt;
    else
        sp_spz_options_init(&w->opt);
    if (w->opt.level <= 0 || w->opt.level > 9)
        w->opt.level = 6;
    w->meta = strdup(metadata ? metadata : "");
    if (!w->meta) {
        free(w);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    sp_status s = sp_outfile_open(&w->of, path, err);
    if (!s) {
        unsigned char hdr[SPZ_HEADER] = {0};
        s = sp_outfile_write(&w->of, hdr, sizeof hdr, err); /* patched on finish */
    }
    if (s) {
        sp_spz_writer_free(w);
        return s;
    }
    *out = w;
    return SP_OK;
}

void sp_spz_writer_free(sp_spz_writer *w)
{
    if (!w)
        return;
    if (!w->done)
        sp_outfile_abort(&w->of);
    for (size_t i = 0; i < w->n; i++)
        free(w->e[i].name);
    free(w->e);
    free(w->meta);
    free(w);
}

static long writer_find(const sp_spz_writer *w, const char *name)
{
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name))
            return (long)i;
    return -1;
}

static sp_status writer_entry(sp_spz_writer *w, const char *name, wentry **out, sp_error *err)
{
    if (!name || !*name || strlen(name) > 65535)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "tensor name is empty or too long");
    if (writer_find(w, name) >= 0)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "tensor '%s' is written twice", name);
    if (w->n >= 0xfffffff0u)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "too many tensors");
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        wentry *ne = realloc(w->e, cap * sizeof *ne);
        if (!ne)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        w->e = ne;
        w->cap = cap;
    }
    wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->alias = SPZ_NO_ALIAS;
    e->name = strdup(name);
    if (!e->name)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    *out = e;
    return SP_OK;
}

/* Append one section payload (already in its stored form) to the sink,
 * SPZ_ALIGN-aligned from the sink's start; its offset is relative to that
 * start until the tensor is committed. */
static sp_status put_section(wsink *w, wentry *e, uint8_t kind, uint8_t codec,
                             uint8_t plane, uint32_t param, const void *buf, uint64_t stored,
                             uint64_t raw, sp_error *err)
{
    uint64_t at = (w->len + SPZ_ALIGN - 1) / SPZ_ALIGN * SPZ_ALIGN, end;
    if (!sp_add_u64(at, stored, &end))
        return sp_error_set(err, SP_ERR_INVALID_ARG, "section too large");
    if (end > w->cap) {
        uint64_t cap = w->cap ? w->cap : 4096;
        while (cap < end)
            cap = cap > UINT64_MAX / 2 ? end : cap * 2;
        if (cap > SIZE_MAX)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        unsigned char *nb = realloc(w->buf, (size_t)cap);
        if (!nb)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        w->buf = nb;
        w->cap = cap;
    }
    memset(w->buf + w->len, 0, (size_t)(at - w->len));
    if (stored)
        memcpy(w->buf + at, buf, (size_t)stored);
    w->len = end;
    sp__spz_sec *sc = &e->sec[e->nsec++];
    sc->kind = kind;
    sc->codec = codec;
    sc->plane = plane;
    sc->param = param;
    sc->offset = at;
    sc->stored = stored;
    sc->raw = raw;
    sc->crc = sp_crc32(0, buf, stored);
    return SP_OK;
}

/* Order-0 entropy of a byte buffer, bits per byte. */
static double byte_entropy(const unsigned char *p, uint64_t n)
{
    uint64_t h[256] = {0};
    for (uint64_t i = 0; i < n; i++)
        h[p[i]]++;
    double e = 0;
    for (int i = 0; i < 256; i++)
        if (h[i]) {
            double q = (double)h[i] / (double)n;
            e -= q * log2(q);
        }
    return e;
}

/* Deflate src into a new buffer; returns its size or 0 when it does not pay. */
static sp_status deflate_buf(const unsigned char *src, uint64_t n, int level, int strategy,
                             unsigned char **out, uint64_t *outlen, sp_error *err)
{
    *out = NULL;
    *outlen = 0;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, level, Z_DEFLATED, -15, 8, strategy) != Z_OK)
        return sp_error_set(err, SP_ERR_NOMEM, "deflate: out of memory");
    uint64_t cap = n + n / 100 + 1024;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        deflateEnd(&z);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    uint64_t in_done = 0;
    int rc = Z_OK;
    z.next_out = buf;
    while (rc != Z_STREAM_END) {
        if (z.avail_in == 0 && in_done < n) {
            uInt chunk = n - in_done > (1u << 30) ? (1u << 30) : (uInt)(n - in_done);
            z.next_in = (unsigned char *)src + in_done;
            z.avail_in = chunk;
            in_done += chunk;
        }
        uint64_t used = (uint64_t)(z.next_out - buf);
        if (used >= n) { /* does not pay */
            deflateEnd(&z);
            free(buf);
            return SP_OK;
        }
        uint64_t room = cap - used;
        z.avail_out = room > (1u << 30) ? (1u << 30) : (uInt)room;
        rc = deflate(&z, in_done == n ? Z_FINISH : Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
            deflateEnd(&z);
            free(buf);
            return sp_error_set(err, SP_ERR_INTERNAL, "deflate failed");
        }
    }
    uint64_t len = (uint64_t)(z.next_out - buf);
    deflateEnd(&z);
    if (len >= n - n / 100) {
        free(buf);
        return SP_OK;
    }
    *out = buf;
    *outlen = len;
    return SP_OK;
}

/* Write the values (cnt elements of es bytes) as one raw section or as
 * byte planes, each deflated when that pays. */
static sp_status put_values(wsink *w, wentry *e, const unsigned char *vals, uint64_t cnt,
                            size_t es, sp_error *err)
{
    if (w->opt.raw || cnt == 0)
        return put_section(w, e, SEC_VALUES, CODEC_RAW, PLANE_ALL, 0, vals, cnt * es, cnt * es, err);
    unsigned char *plane = malloc(cnt ? cnt : 1);
    if (!plane)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    sp_status s = SP_OK;
    for (size_t p = 0; p < es && !s; p++) {
        if (es == 1)
            memcpy(plane, vals, cnt);
        else
            for (uint64_t i = 0; i < cnt; i++)
                plane[i] = vals[i * es + p];
        unsigned char *z = NULL;
        uint64_t zl = 0;
        /* Near-uniform planes (low mantissa bytes) never deflate well:
         * skip the attempt. The others are skewed byte distributions with
         * no long repeats: Huffman-only deflate is both smaller and several
         * times faster than LZ77 matching on them (measured, see
         * docs/benchmarks.md). */
        if (cnt >= 64 && byte_entropy(plane, cnt) < 7.9)
            s = deflate_buf(plane, cnt, w->opt.level, Z_HUFFMAN_ONLY, &z, &zl, err);
        if (!s) {
            if (z)
                s = put_section(w, e, SEC_VALUES, CODEC_DEFLATE, (uint8_t)p, 0, z, zl, cnt, err);
            else
                s = put_section(w, e, SEC_VALUES, CODEC_RAW, (uint8_t)p, 0, plane, cnt, cnt, err);
        }
        free(z);
    }
    free(plane);
    return s;
}

/* Write a 0/1 byte map of n entries with `ones` ones as a mask section. */
static sp_status put_mask(wsink *w, wentry *e, uint8_t kind, const uint8_t *map,
                          uint64_t n, uint64_t ones, sp_error *err)
{
    uint64_t raw = (n + 7) / 8;
    sp_status s;
    if (!w->opt.raw) {
        /* Rice-code the gaps before the minority symbol */
        int inv = ones * 2 > n, k = 0;
        uint64_t cnt = inv ? n - ones : ones;
        uint64_t *gaps = malloc((cnt ? cnt : 1) * sizeof *gaps);
        if (!gaps)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        sp__spz_collect_gaps(map, n, (uint8_t)!inv, gaps);
        uint64_t bits = sp__spz_rice_plan(gaps, cnt, n, &k);
        if ((bits + 7) / 8 < raw) {
            sp__spz_bitw bw = {0};
            bw.p = malloc((bits + 7) / 8 + 16);
            if (!bw.p) {
                free(gaps);
                return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            }
            sp__spz_rice_encode(&bw, gaps, cnt, k);
            free(gaps);
            s = put_section(w, e, kind, CODEC_RICE, PLANE_ALL, (uint32_t)k | ((uint32_t)inv << 8), bw.p,
                            bw.len, raw, err);
            free(bw.p);
            return s;
        }
        free(gaps);
    }
    unsigned char *packed = malloc(raw ? raw : 1);
    if (!packed)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    sp__spz_pack_bits(packed, map, n);
    s = put_section(w, e, kind, CODEC_RAW, PLANE_ALL, 0, packed, raw, raw, err);
    free(packed);
    return s;
}

static uint64_t numel_of(int ndim, const int64_t *shape)
{
    uint64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= (uint64_t)shape[d];
    return n;
}

/* The -0.0 positions of a sparse encoding, when there are any. */
static sp_status put_negz(wsink *w, wentry *e, const unsigned char *data, size_t es,
                          uint64_t numel, uint64_t negz, sp_error *err)
{
    if (!negz)
        return SP_OK;
    uint64_t raw = (numel + 7) / 8;
    unsigned char *bits = malloc(raw + 1), *z = NULL;
    if (!bits)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    sp__spz_negz_bits(bits, data, es, numel);
    uint64_t zl = 0;
    sp_status s = w->opt.raw ? SP_OK : deflate_buf(bits, raw, w->opt.level, Z_DEFAULT_STRATEGY, &z, &zl, err);
    if (!s)
        s = z ? put_section(w, e, SEC_NEGZ, CODEC_DEFLATE, PLANE_ALL, 0, z, zl, raw, err)
              : put_section(w, e, SEC_NEGZ, CODEC_RAW, PLANE_ALL, 0, bits, raw, raw, err);
    e->flags |= FLAG_NEGZ;
    free(bits);
    free(z);
    return s;
}

static sp_status encode_tensor(wsink *w, wentry *e, const unsigned char *data, size_t es,
                               uint64_t numel, sp_error *err)
{
    sp_status s = SP_OK;
    uint8_t *nz = NULL, *map = NULL;
    unsigned char *vals = NULL;
    if (numel == 0) {
        e->enc = SP_SPZ_DENSE;
        return put_values(w, e, data, 0, es, err);
    }
    nz = malloc(numel);
    if (!nz)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    uint64_t negz = 0;
    uint64_t nnz = sp__spz_nonzero_map(nz, data, e->dtype, es, numel, &negz);
    e->nnz = nnz;
    sp__spz_plan pl;
    sp__spz_choose(&w->opt, nz, nnz, numel, es, e->ndim, e->shape, &pl);
    e->enc = pl.enc;
    sp__spz_geom g;
    sp__spz_geom_init(&g, e->ndim, e->shape);
    switch (pl.enc) {
    case SP_SPZ_DENSE:
        e->nkept = 0;
        e->nvals = numel;
        s = put_values(w, e, data, numel, es, err);
        break;
    case SP_SPZ_BITMASK: {
        e->nkept = e->nvals = nnz;
        vals = malloc(nnz * es + 1);
        if (!vals) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        uint64_t j = 0;
        for (uint64_t i = 0; i < numel; i++)
            if (nz[i])
                memcpy(vals + (j++) * es, data + i * es, es);
        s = put_mask(w, e, SEC_MASK, nz, numel, nnz, err);
        if (!s)
            s = put_negz(w, e, data, es, numel, negz, err);
        if (!s)
            s = put_values(w, e, vals, nnz, es, err);
        break;
    }
    case SP_SPZ_NM: {
        int n = pl.n, m = pl.m, rb = sp__spz_rank_bits(n, m);
        uint64_t ngroups = numel / (uint64_t)m;
        sp__spz_binoms bn;
        sp__spz_binoms_init(&bn);
        e->p0 = (uint32_t)n;
        e->p1 = (uint32_t)m;
        e->nkept = ngroups;
        e->nvals = ngroups * (uint64_t)n;
        vals = malloc(e->nvals * es + 1);
        uint64_t rawlen = (ngroups * (uint64_t)rb + 7) / 8;
        sp__spz_bitw bw = {0};
        bw.p = malloc(rawlen + 16);
        if (!vals || !bw.p) {
            free(bw.p);
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        uint64_t j = 0;
        for (int64_t k = 0; k < g.nmat; k++)
            for (int64_t r = 0; r < g.rows; r++) {
                int64_t base = k * g.mat_stride + r * g.row_stride;
                for (int64_t c0 = 0; c0 < g.cols; c0 += m) {
                    /* the nonzeros, then the first zeros, in column order */
                    int pos[SPZ_MAX_M], np = 0, need_zero = n;
                    for (int t = 0; t < m; t++)
                        if (nz[base + (c0 + t) * g.col_stride])
                            need_zero--;
                    for (int t = 0; t < m && np < n; t++) {
                        bool keep = nz[base + (c0 + t) * g.col_stride];
                        if (!keep && need_zero > 0) {
                            keep = true;
                            need_zero--;
                        }
                        if (keep)
                            pos[np++] = t;
                    }
                    uint64_t rank = 0;
                    for (int t = 0; t < np; t++) {
                        rank += bn.c[pos[t]][t + 1];
                        memcpy(vals + (j++) * es, data + (uint64_t)(base + (c0 + pos[t]) * g.col_stride) * es, es);
                    }
                    if (rb)
                        sp__spz_bw_put(&bw, (uint32_t)rank, rb);
                }
            }
        sp__spz_bw_flush(&bw);
        s = put_section(w, e, SEC_NM, CODEC_RAW, PLANE_ALL, 0, bw.p, rawlen, rawlen, err);
        free(bw.p);
        if (!s)
            s = put_negz(w, e, data, es, numel, negz, err);
        if (!s)
            s = put_values(w, e, vals, e->nvals, es, err);
        break;
    }
    case SP_SPZ_BLOCK: {
        uint64_t nb = sp__spz_nblocks(&g, pl.r, pl.c), kept = 0, elems = 0;
        e->p0 = (uint32_t)pl.r;
        e->p1 = (uint32_t)pl.c;
        map = malloc(nb ? nb : 1);
        if (!map) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        sp__spz_block_count(nz, &g, pl.r, pl.c, UINT64_MAX, &kept, &elems, map);
        e->nkept = kept;
        e->nvals = elems;
        vals = malloc(elems * es + 1);
        if (!vals) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        uint64_t j = 0, idx = 0;
        for (int64_t k = 0; k < g.nmat; k++)
            for (int64_t r0 = 0; r0 < g.rows; r0 += pl.r)
                for (int64_t c0 = 0; c0 < g.cols; c0 += pl.c, idx++) {
                    if (!map[idx])
                        continue;
                    int64_t rh = g.rows - r0 < pl.r ? g.rows - r0 : pl.r;
                    int64_t cw = g.cols - c0 < pl.c ? g.cols - c0 : pl.c;
                    for (int64_t r = 0; r < rh; r++)
                        for (int64_t c = 0; c < cw; c++) {
                            uint64_t at = (uint64_t)(k * g.mat_stride + (r0 + r) * g.row_stride +
                                                     (c0 + c) * g.col_stride);
                            memcpy(vals + (j++) * es, data + at * es, es);
                        }
                }
        s = put_mask(w, e, SEC_BMASK, map, nb, kept, err);
        if (!s)
            s = put_negz(w, e, data, es, numel, negz, err);
        if (!s)
            s = put_values(w, e, vals, elems, es, err);
        break;
    }
    default:
        s = sp_error_set(err, SP_ERR_INTERNAL, "bad encoding");
    }
    free(nz);
    free(map);
    free(vals);
    return s;
}

static void fill_info(const wentry *e, size_t es, sp_spz_tensor_info *info)
{
    memset(info, 0, sizeof *info);
    info->encoding = e->enc;
    info->numel = numel_of(e->ndim, e->shape);
    info->dense_bytes = info->numel * es;
    info->nnz = e->nnz;
    sp__spz_info_fill(info, e->enc, e->p0, e->p1, e->sec, e->nsec);
}

sp_status sp__spz_stage(const sp_spz_writer *w, const sp_tensor_data *t, sp__spz_staged **out,
                        sp_error *err)
{
    *out = NULL;
    size_t es = sp_dtype_size(t->dtype);
    if (!es)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "tensor '%s': unknown dtype", t->name);
    if (t->ndim < 0 || t->ndim > SP_MAX_DIMS)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "tensor '%s': bad rank", t->name);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0)
            return sp_error_set(err, SP_ERR_INVALID_ARG, "tensor '%s': negative size", t->name);
    sp__spz_staged *st = calloc(1, sizeof *st);
    if (!st)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    st->k.opt = w->opt;
    wentry *e = &st->e;
    e->alias = SPZ_NO_ALIAS;
    e->dtype = t->dtype;
    e->ndim = t->ndim;
    memcpy(e->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    sp_status s = encode_tensor(&st->k, e, t->data, es, numel_of(t->ndim, t->shape), err);
    if (s) {
        sp_error_prefix(err, "tensor '%s'", t->name);
        sp__spz_staged_free(st);
        return s;
    }
    e->nkept = e->enc == SP_SPZ_DENSE ? 0 : e->nkept;
    *out = st;
    return SP_OK;
}

sp_status sp__spz_commit(sp_spz_writer *w, const char *name, const sp__spz_staged *st,
                         sp_spz_tensor_info *info, sp_error *err)
{
    wentry *e;
    sp_status s = writer_entry(w, name, &e, err);
    if (s)
        return s;
    char *nm = e->name;
    *e = st->e;
    e->name = nm;
    s = sp_outfile_pad(&w->of, SPZ_ALIGN, err);
    uint64_t base = w->of.pos;
    if (!s && st->k.len)
        s = sp_outfile_write(&w->of, st->k.buf, (size_t)st->k.len, err);
    if (s) {
        free(e->name);
        return s;
    }
    for (int k = 0; k < e->nsec; k++)
        e->sec[k].offset += base;
    w->n++;
    if (info)
        fill_info(e, sp_dtype_size(e->dtype), info);
    return SP_OK;
}

void sp__spz_staged_free(sp__spz_staged *st)
{
    if (!st)
        return;
    free(st->k.buf);
    free(st);
}

sp_status sp_spz_writer_add(sp_spz_writer *w, const sp_tensor_data *t, sp_spz_tensor_info *info,
                            sp_error *err)
{
    sp__spz_staged *st;
    sp_status s = sp__spz_stage(w, t, &st, err);
    if (!s)
        s = sp__spz_commit(w, t->name, st, info, err);
    sp__spz_staged_free(st);
    return s;
}

sp_status sp_spz_writer_add_alias(sp_spz_writer *w, const char *name, const char *target,
                                  sp_error *err)
{
    long ti = writer_find(w, target);
    if (ti < 0)
        return sp_error_set(err, SP_ERR_NOT_FOUND, "alias '%s': no tensor '%s' written before", name,
                            target);
    while (w->e[ti].enc == SP_SPZ_ALIAS)
        ti = (long)w->e[ti].alias;
    wentry *e;
    sp_status s = writer_entry(w, name, &e, err);
    if (s)
        return s;
    const wentry *t = &w->e[ti];
    e->dtype = t->dtype;
    e->ndim = t->ndim;
    memcpy(e->shape, t->shape, sizeof e->shape);
    e->enc = SP_SPZ_ALIAS;
    e->alias = (uint32_t)ti;
    w->n++;
    return SP_OK;
}

static size_t entry_size(const wentry *e)
{
    size_t sz = SPZ_ENTRY_FIXED + 8 * (size_t)e->ndim + SPZ_SECTION * (size_t)e->nsec + strlen(e->name);
    return (sz + 7) & ~(size_t)7;
}

sp_status sp_spz_writer_finish(sp_spz_writer *w, uint64_t *size, sp_error *err)
{
    sp_status s = sp_outfile_pad(&w->of, SPZ_ALIGN, err);
    if (s)
        return s;
    size_t mlen = strlen(w->meta);
    size_t tsz = ((4 + mlen) + 7) & ~(size_t)7;
    for (size_t i = 0; i < w->n; i++)
        tsz += entry_size(&w->e[i]);
    unsigned char *toc = calloc(1, tsz);
    if (!toc)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    put32(toc, (uint32_t)mlen);
    memcpy(toc + 4, w->meta, mlen);
    size_t at = ((4 + mlen) + 7) & ~(size_t)7;
    for (size_t i = 0; i < w->n; i++) {
        const wentry *e = &w->e[i];
        unsigned char *p = toc + at;
        size_t nl = strlen(e->name), es = entry_size(e);
        put32(p, (uint32_t)es);
        put16(p + 4, (uint16_t)nl);
        p[6] = (unsigned char)e->dtype;
        p[7] = (unsigned char)e->ndim;
        p[8] = (unsigned char)e->enc;
        p[9] = e->flags;
        put16(p + 10, (uint16_t)e->nsec);
        put32(p + 12, e->alias);
        put32(p + 16, e->p0);
        put32(p + 20, e->p1);
        put64(p + 24, e->nkept);
        put64(p + 32, e->nvals);
        unsigned char *q = p + SPZ_ENTRY_FIXED;
        for (int d = 0; d < e->ndim; d++, q += 8)
            put64(q, (uint64_t)e->shape[d]);
        for (int k = 0; k < e->nsec; k++, q += SPZ_SECTION) {
            const sp__spz_sec *sc = &e->sec[k];
            q[0] = sc->kind;
            q[1] = sc->codec;
            q[2] = sc->plane;
            put32(q + 4, sc->param);
            put32(q + 8, sc->crc);
            put64(q + 16, sc->offset);
            put64(q + 24, sc->stored);
            put64(q + 32, sc->raw);
        }
        memcpy(q, e->name, nl);
        at += es;
    }
    uint64_t toc_off = w->of.pos;
    s = sp_outfile_write(&w->of, toc, tsz, err);
    uint32_t toc_crc = sp_crc32(0, toc, tsz);
    free(toc);
    if (s)
        return s;
    unsigned char hdr[SPZ_HEADER] = {0};
    memcpy(hdr, SPZ_MAGIC, 4);
    put32(hdr + 4, SP_SPZ_VERSION);
    put64(hdr + 8, w->of.pos);
    put64(hdr + 16, toc_off);
    put64(hdr + 24, tsz);
    put32(hdr + 32, toc_crc);
    put32(hdr + 36, (uint32_t)w->n);
    put32(hdr + 60, sp_crc32(0, hdr, 60));
    uint64_t total = w->of.pos;
    s = sp_outfile_pwrite(&w->of, hdr, sizeof hdr, 0, err);
    if (!s)
        s = sp_outfile_commit(&w->of, err);
    if (!s) {
        w->done = true;
        if (size)
            *size = total;
    }
    return s;
}

