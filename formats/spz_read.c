/*
 * The .spz reader: an sp_ckpt backend over a read-only mapping
 * (docs/format-spz.md, formats/spz_internal.h). Every offset, size and count
 * of the table of contents is checked against the file before use; tensors
 * are decoded on demand, one storage at a time.
 */
#include "formats/spz_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ------------------------------------------------------------------ */
/* reader: an sp_ckpt backend                                          */

typedef struct rentry {
    sp_spz_encoding enc;
    uint32_t p0, p1, alias;
    uint64_t nkept, nvals, numel;
    size_t es;
    uint8_t flags;
    int first; /* index of the first values section */
    int nsec;
    sp__spz_sec sec[SPZ_MAX_SECTIONS];
} rentry;

typedef struct spz_impl {
    sp_mapfile mf;
    char *meta;
    rentry *e;        /* per tensor */
    size_t *stor_of;  /* storage index -> tensor index (the stored one) */
    void **buf;       /* per storage: decoded bytes (malloc), or NULL */
    bool *inplace;    /* per storage: buf points into the map */
} spz_impl;

static void spz_close(sp_ckpt *ck)
{
    spz_impl *im = ck->impl;
    if (!im)
        return;
    for (size_t i = 0; i < ck->nstorages; i++)
        if (im->buf && !im->inplace[i])
            free(im->buf[i]);
    free(im->buf);
    free(im->inplace);
    free(im->stor_of);
    free(im->e);
    free(im->meta);
    sp_mapfile_close(&im->mf);
    free(im);
    ck->impl = NULL;
}

static sp_status sec_check_crc(const sp_ckpt *ck, const spz_impl *im, const char *name,
                               const sp__spz_sec *sc, sp_error *err)
{
    if (sp_crc32(0, im->mf.data + sc->offset, sc->stored) != sc->crc)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': section at offset %llu fails its CRC-32",
                            ck->path, name, (unsigned long long)sc->offset);
    return SP_OK;
}

/* Stored bytes of a section into dst (raw bytes long). */
static sp_status sec_load(const sp_ckpt *ck, const spz_impl *im, const char *name, const sp__spz_sec *sc,
                          unsigned char *dst, sp_error *err)
{
    sp_status s = sec_check_crc(ck, im, name, sc, err);
    if (s)
        return s;
    const unsigned char *src = im->mf.data + sc->offset;
    if (sc->codec == CODEC_RAW) {
        memcpy(dst, src, sc->stored);
        return SP_OK;
    }
    if (sc->codec != CODEC_DEFLATE)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': bad codec", ck->path, name);
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -15) != Z_OK)
        return sp_error_set(err, SP_ERR_NOMEM, "inflate: out of memory");
    uint64_t in_done = 0, out_done = 0;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        if (z.avail_in == 0 && in_done < sc->stored) {
            uInt c = sc->stored - in_done > (1u << 30) ? (1u << 30) : (uInt)(sc->stored - in_done);
            z.next_in = (unsigned char *)src + in_done;
            z.avail_in = c;
            in_done += c;
        }
        uint64_t room = sc->raw - out_done;
        uInt ro = room > (1u << 30) ? (1u << 30) : (uInt)room;
        unsigned char dummy;
        z.next_out = ro ? dst + out_done : &dummy;
        z.avail_out = ro ? ro : 1;
        rc = inflate(&z, Z_NO_FLUSH);
        if (ro)
            out_done += ro - z.avail_out;
        else if (z.avail_out == 0)
            rc = Z_DATA_ERROR; /* more output than declared */
        if (rc == Z_BUF_ERROR && z.avail_in == 0 && in_done == sc->stored)
            rc = Z_DATA_ERROR;
        if (rc != Z_OK && rc != Z_STREAM_END) {
            inflateEnd(&z);
            return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': corrupt deflate data",
                                ck->path, name);
        }
    }
    bool exact = out_done == sc->raw && z.avail_in == 0 && in_done == sc->stored;
    inflateEnd(&z);
    if (!exact)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': section inflates to the wrong size",
                            ck->path, name);
    return SP_OK;
}

/* Decode the values (nvals * es) of entry e starting at section first. */
static sp_status load_values(const sp_ckpt *ck, const spz_impl *im, const char *name,
                             const rentry *e, int first, unsigned char *dst, sp_error *err)
{
    uint64_t n = e->nvals;
    size_t es = e->es;
    if (e->sec[first].plane == PLANE_ALL)
        return sec_load(ck, im, name, &e->sec[first], dst, err);
    if (es == 1)
        return sec_load(ck, im, name, &e->sec[first], dst, err);
    unsigned char *plane = malloc(n ? n : 1);
    if (!plane)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    sp_status s = SP_OK;
    for (size_t p = 0; p < es && !s; p++) {
        s = sec_load(ck, im, name, &e->sec[first + (int)p], plane, err);
        if (!s)
            for (uint64_t i = 0; i < n; i++)
                dst[i * es + p] = plane[i];
    }
    free(plane);
    return s;
}

static sp_status load_mask(const sp_ckpt *ck, const spz_impl *im, const char *name, const sp__spz_sec *sc,
                           uint64_t nbits, uint64_t ones, unsigned char *bits, sp_error *err)
{
    if (sc->codec == CODEC_RICE) {
        sp_status s = sec_check_crc(ck, im, name, sc, err);
        if (s)
            return s;
        int k = (int)(sc->param & 0xff), inv = (int)((sc->param >> 8) & 1);
        if (k > 31)
            return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': mask rice parameter %d out of range",
                                ck->path, name, k);
        uint64_t cnt = inv ? nbits - ones : ones;
        char what[300];
        snprintf(what, sizeof what, "'%s': tensor '%s'", ck->path, name);
        s = sp__spz_rice_decode(im->mf.data + sc->offset, sc->stored, bits, nbits, cnt, k, inv, what, err);
        if (s)
            return s;
    } else {
        sp_status s = sec_load(ck, im, name, sc, bits, err);
        if (s)
            return s;
        if ((nbits & 7) && (bits[nbits / 8] >> (nbits & 7)))
            return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': mask has bits past the end",
                                ck->path, name);
    }
    if (sp__spz_popcount_bits(bits, (nbits + 7) / 8) != ones)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': mask does not match its count",
                            ck->path, name);
    return SP_OK;
}

/* The positions (ascending) of combination `rank` of n of m: the largest
 * c with C(c, t) <= rank, t = n..1 (colexicographic combinadic). */
static void nm_unrank(const sp__spz_binoms *bn, uint64_t rank, int n, int m, int *pos)
{
    int cmax = m;
    for (int t2 = n; t2 >= 1; t2--) {
        int c = t2 - 1;
        while (c + 1 < cmax && bn->c[c + 1][t2] <= rank)
            c++;
        pos[t2 - 1] = c;
        rank -= bn->c[c][t2];
        cmax = c;
    }
}

static sp_status decode_tensor(sp_ckpt *ck, spz_impl *im, size_t ti, unsigned char *out,
                               sp_error *err)
{
    const rentry *e = &im->e[ti];
    const sp_tensor *t = &ck->tensors[ti];
    const char *name = t->name;
    size_t es = e->es;
    sp_status s = SP_OK;
    unsigned char *vals = NULL, *bits = NULL;
    sp__spz_geom g;
    sp__spz_geom_init(&g, t->ndim, t->shape);
    if (e->enc == SP_SPZ_DENSE)
        return e->numel ? load_values(ck, im, name, e, 0, out, err) : SP_OK;
    vals = malloc(e->nvals * es + 1);
    if (!vals)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    memset(out, 0, e->numel * es);
    switch (e->enc) {
    case SP_SPZ_BITMASK: {
        bits = malloc((e->numel + 7) / 8 + 1);
        if (!bits) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        s = load_mask(ck, im, name, &e->sec[0], e->numel, e->nkept, bits, err);
        if (!s)
            s = load_values(ck, im, name, e, e->first, vals, err);
        if (s)
            break;
        uint64_t j = 0;
        for (uint64_t i = 0; i < e->numel; i += 8) {
            unsigned b = bits[i >> 3];
            while (b) {
                int t8 = __builtin_ctz(b);
                memcpy(out + (i + (uint64_t)t8) * es, vals + (j++) * es, es);
                b &= b - 1;
            }
        }
        break;
    }
    case SP_SPZ_NM: {
        int n = (int)e->p0, m = (int)e->p1, rb = sp__spz_rank_bits(n, m);
        uint64_t total = sp__spz_binom(m, n);
        sp__spz_binoms bn;
        sp__spz_binoms_init(&bn);
        const sp__spz_sec *sc = &e->sec[0];
        bits = malloc(sc->raw + 1);
        if (!bits) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        s = sec_load(ck, im, name, sc, bits, err);
        if (!s)
            s = load_values(ck, im, name, e, e->first, vals, err);
        if (s)
            break;
        /* every rank's positions, once per tensor when there are few
         * (2:4: 6, 4:8: 70) */
        uint8_t *tab = total <= 4096 ? malloc((size_t)total * (size_t)n + 1) : NULL;
        for (uint64_t q = 0; tab && q < total; q++) {
            int pos[SPZ_MAX_M];
            nm_unrank(&bn, q, n, m, pos);
            for (int t2 = 0; t2 < n; t2++)
                tab[q * (uint64_t)n + (uint64_t)t2] = (uint8_t)pos[t2];
        }
        const bool fast16 = es == 2 && g.col_stride == 1;
        sp__spz_bitr r = {bits, sc->raw * 8, 0};
        uint64_t j = 0;
        for (int64_t k = 0; k < g.nmat && !s; k++)
            for (int64_t row = 0; row < g.rows && !s; row++) {
                int64_t base = k * g.mat_stride + row * g.row_stride;
                for (int64_t c0 = 0; c0 < g.cols; c0 += m) {
                    uint64_t rank = 0;
                    if (rb) {
                        rank = sp__spz_br_peek(&r) & ((1ull << rb) - 1);
                        r.pos += (uint64_t)rb;
                    }
                    if (rank >= total) {
                        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': bad n:m index",
                                         ck->path, name);
                        break;
                    }
                    int pos[SPZ_MAX_M];
                    if (tab) {
                        const uint8_t *pp = tab + rank * (uint64_t)n;
                        if (fast16) {
                            uint16_t *o = (uint16_t *)out + base + c0;
                            const uint16_t *v = (const uint16_t *)vals + j;
                            for (int t2 = 0; t2 < n; t2++)
                                o[pp[t2]] = v[t2];
                            j += (uint64_t)n;
                            continue;
                        }
                        for (int t2 = 0; t2 < n; t2++)
                            pos[t2] = pp[t2];
                    } else {
                        nm_unrank(&bn, rank, n, m, pos);
                    }
                    for (int t2 = 0; t2 < n; t2++)
                        memcpy(out + (uint64_t)(base + (c0 + pos[t2]) * g.col_stride) * es,
                               vals + (j++) * es, es);
                }
            }
        free(tab);
        break;
    }
    case SP_SPZ_BLOCK: {
        int64_t br = e->p0, bc = e->p1;
        uint64_t nb = sp__spz_nblocks(&g, br, bc);
        bits = malloc((nb + 7) / 8 + 1);
        if (!bits) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        s = load_mask(ck, im, name, &e->sec[0], nb, e->nkept, bits, err);
        if (s)
            break;
        /* the number of values follows from the mask: check before use */
        uint64_t idx = 0, elems = 0;
        for (int64_t k = 0; k < g.nmat; k++)
            for (int64_t r0 = 0; r0 < g.rows; r0 += br)
                for (int64_t c0 = 0; c0 < g.cols; c0 += bc, idx++)
                    if (sp__spz_bit_at(bits, idx))
                        elems += (uint64_t)((g.rows - r0 < br ? g.rows - r0 : br) *
                                            (g.cols - c0 < bc ? g.cols - c0 : bc));
        if (elems != e->nvals) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': block mask does not match its values",
                             ck->path, name);
            break;
        }
        s = load_values(ck, im, name, e, e->first, vals, err);
        if (s)
            break;
        uint64_t j = 0;
        idx = 0;
        for (int64_t k = 0; k < g.nmat; k++)
            for (int64_t r0 = 0; r0 < g.rows; r0 += br)
                for (int64_t c0 = 0; c0 < g.cols; c0 += bc, idx++) {
                    if (!sp__spz_bit_at(bits, idx))
                        continue;
                    int64_t rh = g.rows - r0 < br ? g.rows - r0 : br;
                    int64_t cw = g.cols - c0 < bc ? g.cols - c0 : bc;
                    for (int64_t r = 0; r < rh; r++)
                        for (int64_t c = 0; c < cw; c++) {
                            uint64_t at = (uint64_t)(k * g.mat_stride + (r0 + r) * g.row_stride +
                                                     (c0 + c) * g.col_stride);
                            memcpy(out + at * es, vals + (j++) * es, es);
                        }
                }
        break;
    }
    default:
        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': bad encoding", ck->path, name);
    }
    if (!s && (e->flags & FLAG_NEGZ)) {
        /* negative zeros: the sign bit alone (little-endian: top byte) */
        unsigned char *nb = malloc(e->sec[1].raw + 1);
        if (!nb)
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        else
            s = sec_load(ck, im, name, &e->sec[1], nb, err);
        if (!s && (e->numel & 7) && (nb[e->numel / 8] >> (e->numel & 7)))
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': negative-zero mask has bits past the end",
                             ck->path, name);
        for (uint64_t i = 0; !s && i < e->numel; i += 8) {
            unsigned b = nb[i >> 3];
            while (b) {
                unsigned char *x = out + (i + (uint64_t)__builtin_ctz(b)) * es;
                memset(x, 0, es);
                x[es - 1] = 0x80;
                b &= b - 1;
            }
        }
        free(nb);
    }
    free(vals);
    free(bits);
    return s;
}

static sp_status spz_storage_data(sp_ckpt *ck, size_t i, const void **data, sp_error *err)
{
    spz_impl *im = ck->impl;
    if (im->buf[i]) {
        *data = im->buf[i];
        return SP_OK;
    }
    size_t ti = im->stor_of[i];
    const rentry *e = &im->e[ti];
    if (e->numel == 0) {
        *data = im->mf.data ? (const void *)im->mf.data : (const void *)"";
        return SP_OK;
    }
    if (e->enc == SP_SPZ_DENSE && e->nsec == 1 && e->sec[0].codec == CODEC_RAW &&
        e->sec[0].plane == PLANE_ALL) {
        /* kernel-ready: the values are used in place */
        sp_status s = sec_check_crc(ck, im, ck->tensors[ti].name, &e->sec[0], err);
        if (s)
            return s;
        im->buf[i] = (void *)(im->mf.data + e->sec[0].offset);
        im->inplace[i] = true;
        *data = im->buf[i];
        return SP_OK;
    }
    /* A Rice-coded mask can describe a large tensor in a few bytes: check
     * that its stream really holds the codes its counts promise before
     * allocating the dense tensor (bits == NULL: validate only). */
    for (int k = 0; k < e->nsec; k++) {
        const sp__spz_sec *sc = &e->sec[k];
        if (sc->codec != CODEC_RICE)
            continue;
        sp__spz_geom g;
        sp__spz_geom_init(&g, ck->tensors[ti].ndim, ck->tensors[ti].shape);
        uint64_t nbits = sc->kind == SEC_BMASK ? sp__spz_nblocks(&g, e->p0, e->p1) : e->numel;
        int rk = (int)(sc->param & 0xff), inv = (int)((sc->param >> 8) & 1);
        char what[300];
        snprintf(what, sizeof what, "'%s': tensor '%s'", ck->path, ck->tensors[ti].name);
        if (rk > 31)
            return sp_error_set(err, SP_ERR_FORMAT, "%s: mask rice parameter %d out of range", what, rk);
        if (e->nkept > nbits)
            return sp_error_set(err, SP_ERR_FORMAT, "%s: mask count exceeds its size", what);
        sp_status s = sp__spz_rice_decode(im->mf.data + sc->offset, sc->stored, NULL, nbits,
                                  inv ? nbits - e->nkept : e->nkept, rk, inv, what, err);
        if (s)
            return s;
    }
    size_t nbytes;
    unsigned char *out = NULL;
    if (!sp_mul_size(e->numel, e->es, &nbytes) || !(out = malloc(nbytes)))
        return sp_error_set(err, SP_ERR_NOMEM, "'%s': out of memory decoding tensor '%s'", ck->path,
                            ck->tensors[ti].name);
    sp_status s = decode_tensor(ck, im, ti, out, err);
    if (s) {
        free(out);
        return s;
    }
    im->buf[i] = out;
    im->inplace[i] = false;
    *data = out;
    return SP_OK;
}

static void spz_storage_release(sp_ckpt *ck, size_t i)
{
    spz_impl *im = ck->impl;
    if (!im->buf[i])
        return;
    if (im->inplace[i]) {
        const rentry *e = &im->e[im->stor_of[i]];
        sp_mapfile_drop(&im->mf, e->sec[0].offset, e->sec[0].stored);
    } else {
        free(im->buf[i]);
    }
    im->buf[i] = NULL;
    im->inplace[i] = false;
}

static const sp_ckpt_backend spz_backend = {
    .name = "spz",
    .storage_data = spz_storage_data,
    .storage_release = spz_storage_release,
    .rewrite = NULL,
    .close = spz_close,
};

/* Validate one entry's sections against what its encoding implies. */
static sp_status check_sections(const rentry *e, uint64_t toc_off)
{
    for (int k = 0; k < e->nsec; k++) {
        const sp__spz_sec *sc = &e->sec[k];
        if (sc->offset < SPZ_HEADER || sc->offset % SPZ_ALIGN || sc->stored > toc_off ||
            sc->offset > toc_off - sc->stored)
            return SP_ERR_FORMAT;
        if (sc->codec > CODEC_RICE || (sc->codec == CODEC_RAW && sc->stored != sc->raw))
            return SP_ERR_FORMAT;
        if (sc->codec == CODEC_RICE && sc->kind != SEC_MASK && sc->kind != SEC_BMASK)
            return SP_ERR_FORMAT;
        /* deflate expands at most ~1032:1; a larger claim is a lie that
         * would only make us allocate */
        if (sc->codec == CODEC_DEFLATE && sc->raw / 1032 > sc->stored + 1)
            return SP_ERR_FORMAT;
    }
    /* the values sections */
    int first = e->first;
    if (e->enc == SP_SPZ_DENSE && e->numel == 0)
        return e->nsec <= 1 ? SP_OK : SP_ERR_FORMAT;
    int nv = e->nsec - first;
    if (nv == 1) {
        const sp__spz_sec *sc = &e->sec[first];
        if (sc->kind != SEC_VALUES || (sc->plane != PLANE_ALL && !(e->es == 1 && sc->plane == 0)) ||
            sc->raw != e->nvals * e->es)
            return SP_ERR_FORMAT;
    } else if ((size_t)nv == e->es) {
        for (int p = 0; p < nv; p++) {
            const sp__spz_sec *sc = &e->sec[first + p];
            if (sc->kind != SEC_VALUES || sc->plane != p || sc->raw != e->nvals)
                return SP_ERR_FORMAT;
        }
    } else {
        return SP_ERR_FORMAT;
    }
    return SP_OK;
}

sp_status sp_spz_open(sp_ckpt *ck, sp_error *err);

sp_status sp_spz_open(sp_ckpt *ck, sp_error *err)
{
    spz_impl *im = calloc(1, sizeof *im);
    if (!im)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    im->mf.fd = -1;
    ck->impl = im;
    ck->be = &spz_backend;
    ck->format = SP_FORMAT_SPZ;
    const char *path = ck->path;
    sp_status s = sp_ckpt_map(ck, &im->mf, err);
    if (s)
        return s;
    const unsigned char *d = im->mf.data;
    uint64_t fsz = im->mf.size;
#define BAD(...) return sp_error_set(err, SP_ERR_FORMAT, __VA_ARGS__)
    if (fsz < SPZ_HEADER || memcmp(d, SPZ_MAGIC, 4))
        BAD("'%s': not an .spz file (bad magic or shorter than its header)", path);
    if (get32(d + 60) != sp_crc32(0, d, 60))
        BAD("'%s': header fails its CRC-32", path);
    uint32_t ver = get32(d + 4);
    if (ver != SP_SPZ_VERSION)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': .spz version %u is not supported (this build reads %u)",
                            path, ver, SP_SPZ_VERSION);
    uint64_t declared = get64(d + 8), toc_off = get64(d + 16), toc_sz = get64(d + 24);
    uint32_t ntensors = get32(d + 36);
    if (declared != fsz)
        BAD("'%s': file is %llu bytes but its header says %llu (truncated?)", path,
            (unsigned long long)fsz, (unsigned long long)declared);
    if (toc_off < SPZ_HEADER || toc_sz > fsz || toc_off > fsz - toc_sz || toc_sz < 8)
        BAD("'%s': table of contents lies outside the file", path);
    const unsigned char *toc = d + toc_off;
    if (sp_crc32(0, toc, toc_sz) != get32(d + 32))
        BAD("'%s': table of contents fails its CRC-32", path);
    if (ntensors > toc_sz / SPZ_ENTRY_FIXED)
        BAD("'%s': tensor count %u does not fit the table of contents", path, ntensors);
    uint64_t mlen = get32(toc);
    if (mlen > toc_sz - 4)
        BAD("'%s': metadata runs past the table of contents", path);
    im->meta = strndup((const char *)toc + 4, (size_t)mlen);
    im->e = calloc(ntensors ? ntensors : 1, sizeof *im->e);
    im->stor_of = calloc(ntensors ? ntensors : 1, sizeof *im->stor_of);
    if (!im->meta || !im->e || !im->stor_of)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    uint64_t at = (4 + mlen + 7) & ~(uint64_t)7;
    size_t *stor_idx = calloc(ntensors ? ntensors : 1, sizeof *stor_idx);
    if (!stor_idx)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < ntensors; i++) {
        if (at > toc_sz || toc_sz - at < SPZ_ENTRY_FIXED) {
            free(stor_idx);
            BAD("'%s': table of contents ends inside tensor %u", path, i);
        }
        const unsigned char *p = toc + at;
        uint64_t esz = get32(p);
        uint32_t nl = get16(p + 4);
        sp_tensor t;
        memset(&t, 0, sizeof t);
        rentry *e = &im->e[i];
        t.dtype = (sp_dtype)p[6];
        t.ndim = p[7];
        e->enc = (sp_spz_encoding)p[8];
        e->flags = p[9];
        e->nsec = get16(p + 10);
        e->alias = get32(p + 12);
        e->p0 = get32(p + 16);
        e->p1 = get32(p + 20);
        e->nkept = get64(p + 24);
        e->nvals = get64(p + 32);
        e->es = sp_dtype_size(t.dtype);
        uint64_t need = SPZ_ENTRY_FIXED + 8ull * t.ndim + (uint64_t)SPZ_SECTION * (uint64_t)e->nsec + nl;
        if (t.ndim > SP_MAX_DIMS || e->nsec > SPZ_MAX_SECTIONS || esz < need || esz % 8 ||
            esz > toc_sz - at || !e->es) {
            free(stor_idx);
            BAD("'%s': tensor %u has a malformed table entry", path, i);
        }
        const unsigned char *q = p + SPZ_ENTRY_FIXED;
        bool overflow = false;
        for (int dd = 0; dd < t.ndim; dd++, q += 8) {
            uint64_t v = get64(q);
            overflow |= v > (uint64_t)INT64_MAX;
            t.shape[dd] = (int64_t)(v & (uint64_t)INT64_MAX);
        }
        uint64_t dense = 0, cap = UINT64_MAX;
        overflow = overflow || !sp_shape_numel(t.ndim, t.shape, &t.numel) ||
                   !sp_shape_strides(t.ndim, t.shape, t.stride) ||
                   !sp_numel_bytes(t.numel, e->es, &dense);
        if (overflow || (sp_muladd_u64(fsz, SPZ_MAX_EXPANSION, SPZ_MAX_SLACK, &cap) && dense > cap)) {
            /* a dense size no file of this size can describe (documented
             * limit: SPZ_MAX_SLACK + SPZ_MAX_EXPANSION x file size) */
            free(stor_idx);
            BAD("'%s': tensor %u has an absurd shape", path, i);
        }
        uint64_t numel = (uint64_t)t.numel;
        e->numel = numel;
        for (int k = 0; k < e->nsec; k++, q += SPZ_SECTION) {
            sp__spz_sec *sc = &e->sec[k];
            sc->kind = q[0];
            sc->codec = q[1];
            sc->plane = q[2];
            sc->param = get32(q + 4);
            sc->crc = get32(q + 8);
            sc->offset = get64(q + 16);
            sc->stored = get64(q + 24);
            sc->raw = get64(q + 32);
        }
        char namebuf[65536 + 1];
        memcpy(namebuf, q, nl);
        namebuf[nl] = 0;
        if (memchr(namebuf, 0, nl)) {
            free(stor_idx);
            BAD("'%s': tensor %u has a bad name", path, i);
        }
        t.name = namebuf;
        /* encoding-specific consistency */
        sp__spz_geom g;
        sp__spz_geom_init(&g, t.ndim, t.shape);
        bool ok = true;
        switch (e->enc) {
        case SP_SPZ_DENSE:
            ok = e->nvals == numel;
            break;
        case SP_SPZ_BITMASK:
            ok = e->nsec >= 2 && e->sec[0].kind == SEC_MASK && e->sec[0].raw == (numel + 7) / 8 &&
                 e->nkept == e->nvals && e->nkept <= numel;
            break;
        case SP_SPZ_NM: {
            int n = (int)e->p0, m = (int)e->p1;
            ok = m >= 2 && m <= SPZ_MAX_M && e->p0 < e->p1 && t.ndim >= 1 && g.cols % m == 0 &&
                 e->nkept == numel / (uint64_t)m && e->nvals == e->nkept * (uint64_t)n &&
                 e->nsec >= 2 && e->sec[0].kind == SEC_NM && e->sec[0].codec == CODEC_RAW &&
                 e->sec[0].raw == (e->nkept * (uint64_t)sp__spz_rank_bits(n, m) + 7) / 8;
            break;
        }
        case SP_SPZ_BLOCK:
            ok = e->p0 >= 1 && e->p1 >= 1 && t.ndim >= 1 && e->nsec >= 2 &&
                 e->sec[0].kind == SEC_BMASK;
            if (ok) {
                uint64_t nb = sp__spz_nblocks(&g, e->p0, e->p1);
                ok = e->sec[0].raw == (nb + 7) / 8 && e->nkept <= nb && e->nvals <= numel;
            }
            break;
        case SP_SPZ_ALIAS:
            ok = e->alias < i && e->nsec == 0 && im->e[e->alias].enc != SP_SPZ_ALIAS &&
                 ck->tensors[e->alias].dtype == t.dtype && ck->tensors[e->alias].numel == t.numel;
            break;
        default:
            ok = false;
        }
        bool hasneg = e->flags & FLAG_NEGZ;
        bool sparse = e->enc == SP_SPZ_BITMASK || e->enc == SP_SPZ_NM || e->enc == SP_SPZ_BLOCK;
        if ((e->flags & ~FLAG_NEGZ) || (hasneg && !sparse))
            ok = false;
        e->first = (sparse ? 1 : 0) + (hasneg ? 1 : 0);
        if (ok && hasneg)
            ok = e->nsec > 2 && e->sec[1].kind == SEC_NEGZ && e->sec[1].codec != CODEC_RICE &&
                 e->sec[1].raw == (numel + 7) / 8;
        if (ok && e->enc != SP_SPZ_ALIAS && check_sections(e, toc_off))
            ok = false;
        if (!ok) {
            free(stor_idx);
            BAD("'%s': tensor '%s': encoding fields do not agree with its shape and sections", path,
                namebuf);
        }
        if (e->enc == SP_SPZ_ALIAS) {
            t.storage = stor_idx[e->alias];
        } else {
            size_t si;
            s = sp_ckpt_add_storage(ck, namebuf, t.dtype, dense, &si, err);
            if (s) {
                free(stor_idx);
                return s;
            }
            im->stor_of[si] = i;
            t.storage = si;
        }
        stor_idx[i] = t.storage;
        if (sp_ckpt_find(ck, namebuf) >= 0) {
            free(stor_idx);
            BAD("'%s': tensor '%s' appears twice", path, namebuf);
        }
        s = sp_ckpt_add_tensor(ck, &t, NULL, err);
        if (s) {
            free(stor_idx);
            return s;
        }
        at += esz;
    }
#undef BAD
    free(stor_idx);
    im->buf = calloc(ck->nstorages ? ck->nstorages : 1, sizeof *im->buf);
    im->inplace = calloc(ck->nstorages ? ck->nstorages : 1, sizeof *im->inplace);
    if (!im->buf || !im->inplace)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    return SP_OK;
}

sp_status sp_spz_tensor_info_get(const sp_ckpt *ck, size_t tensor, sp_spz_tensor_info *info,
                                 sp_error *err)
{
    if (ck->format != SP_FORMAT_SPZ || ck->be != &spz_backend)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "'%s' is not an .spz file", ck->path);
    if (tensor >= ck->ntensors)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "'%s': no tensor %zu", ck->path, tensor);
    const spz_impl *im = ck->impl;
    const rentry *e = &im->e[tensor];
    memset(info, 0, sizeof *info);
    info->encoding = e->enc;
    info->numel = e->numel;
    info->dense_bytes = e->numel * e->es;
    info->nnz = e->enc == SP_SPZ_BITMASK ? e->nkept : 0;
    sp__spz_info_fill(info, e->enc, e->p0, e->p1, e->sec, e->nsec);
    return SP_OK;
}

const char *sp_spz_metadata(const sp_ckpt *ck)
{
    if (ck->format != SP_FORMAT_SPZ || ck->be != &spz_backend)
        return "";
    const spz_impl *im = ck->impl;
    return im->meta ? im->meta : "";
}
