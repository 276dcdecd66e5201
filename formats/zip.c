/*
 * Zip reader and writer; the layout is described in zip.h.
 */
#include "formats/zip.h"
#include "formats/checked.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CD 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_Z64_EOCD 0x06064b50u
#define SIG_Z64_LOC 0x07064b50u
#define SIG_DESC 0x08074b50u

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | ((uint64_t)rd32(p + 4) << 32); }
static void wr16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void wr32(unsigned char *p, uint32_t v)
{
    wr16(p, (uint16_t)v);
    wr16(p + 2, (uint16_t)(v >> 16));
}
static void wr64(unsigned char *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

/* True when [off, off+len) lies inside the file. */
static bool in_file(const sp_zip *z, uint64_t off, uint64_t len)
{
    return sp_range_ok(off, len, z->mf.size);
}

static int cmp_name(const void *a, const void *b, void *ctx)
{
    const sp_zip *z = ctx;
    return strcmp(z->entries[*(const size_t *)a].name, z->entries[*(const size_t *)b].name);
}

static void sort_names(sp_zip *z)
{
    for (size_t i = 0; i < z->n; i++)
        z->sorted[i] = i;
    qsort_r(z->sorted, z->n, sizeof *z->sorted, cmp_name, z);
}

/* Find the EOCD: scan back over at most 64 KiB of comment. */
static sp_status find_eocd(sp_zip *z, uint64_t *eocd, sp_error *err)
{
    const unsigned char *d = z->mf.data;
    uint64_t size = z->mf.size;
    if (size < 22)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': not a zip file (too short)", z->path);
    uint64_t lo = size > 22 + 65535 ? size - 22 - 65535 : 0;
    for (uint64_t p = size - 22 + 1; p-- > lo;) {
        if (rd32(d + p) == SIG_EOCD && p + 22 + rd16(d + p + 20) == size) {
            *eocd = p;
            return SP_OK;
        }
    }
    return sp_error_set(err, SP_ERR_FORMAT,
                        "'%s': not a zip file or truncated (no end of central directory)", z->path);
}

/* Parse one central directory entry at off into e; *next = following. */
static sp_status read_cd_entry(sp_zip *z, uint64_t off, uint64_t cd_end, sp_zip_entry *e,
                               uint64_t *next, size_t idx, sp_error *err)
{
    const unsigned char *d = z->mf.data;
    if (off + 46 > cd_end || rd32(d + off) != SIG_CD)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': central directory entry %zu is corrupt",
                            z->path, idx);
    const unsigned char *h = d + off;
    uint16_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32);
    uint64_t total = 46u + (uint64_t)nlen + xlen + clen;
    if (total > cd_end - off)
        return sp_error_set(err, SP_ERR_FORMAT,
                            "'%s': central directory entry %zu runs past the directory", z->path,
                            idx);
    e->flags = rd16(h + 8);
    e->method = rd16(h + 10);
    e->crc = rd32(h + 16);
    e->csize = rd32(h + 20);
    e->usize = rd32(h + 24);
    e->lho = rd32(h + 42);
    uint16_t disk = rd16(h + 34);
    e->cd_off = off;
    e->cd_len = (uint32_t)total;
    e->name = malloc((size_t)nlen + 1);
    if (!e->name)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    memcpy(e->name, h + 46, nlen);
    e->name[nlen] = '\0';
    if (memchr(e->name, '\0', nlen))
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': entry %zu has a NUL in its name", z->path,
                            idx);
    /* zip64 extra: fields present only for the saturated 32-bit values */
    const unsigned char *x = h + 46 + nlen, *xe = x + xlen;
    while (xe - x >= 4) {
        uint16_t id = rd16(x), sz = rd16(x + 2);
        if (sz > xe - x - 4)
            break; /* garbage at the end of extras: tolerated, like zipfile */
        if (id == 0x0001) {
            const unsigned char *f = x + 4, *fe = f + sz;
            if (e->usize == 0xffffffffu) {
                if (fe - f < 8)
                    goto bad64;
                e->usize = rd64(f);
                f += 8;
            }
            if (e->csize == 0xffffffffu) {
                if (fe - f < 8)
                    goto bad64;
                e->csize = rd64(f);
                f += 8;
            }
            if (e->lho == 0xffffffffu) {
                if (fe - f < 8)
                    goto bad64;
                e->lho = rd64(f);
                f += 8;
            }
            if (disk == 0xffff) {
                if (fe - f < 4)
                    goto bad64;
                disk = (uint16_t)(rd32(f) ? 1 : 0);
            }
        }
        x += 4 + sz;
    }
    if (disk != 0)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': multi-disk zip archives are not supported",
                            z->path);
    if (e->flags & 1)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': entry '%s' is encrypted", z->path,
                            e->name);
    *next = off + total;
    return SP_OK;
bad64:
    return sp_error_set(err, SP_ERR_FORMAT, "'%s': entry '%s' has a short zip64 extra field",
                        z->path, e->name);
}

/* Validate entry e's local header and compute its data offset. */
static sp_status read_local(sp_zip *z, sp_zip_entry *e, sp_error *err)
{
    const unsigned char *d = z->mf.data;
    if (!in_file(z, e->lho, 30) || rd32(d + e->lho) != SIG_LOCAL)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': entry '%s': bad local header offset",
                            z->path, e->name);
    const unsigned char *h = d + e->lho;
    uint64_t data;
    if (!sp_add_u64(e->lho, 30 + (uint64_t)rd16(h + 26) + rd16(h + 28), &data) ||
        !in_file(z, data, e->csize))
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': entry '%s' runs past the end of the file",
                            z->path, e->name);
    if (e->method == 0 && e->csize != e->usize)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': stored entry '%s' has mismatched sizes",
                            z->path, e->name);
    e->data_off = data;
    return SP_OK;
}

sp_status sp_zip_open(sp_zip *z, const char *path, sp_error *err)
{
    sp_mapfile mf;
    sp_status s = sp_mapfile_open(&mf, path, err);
    if (s) {
        memset(z, 0, sizeof *z);
        z->mf.fd = -1;
        return s;
    }
    return sp_zip_open_map(z, path, &mf, err);
}

sp_status sp_zip_open_map(sp_zip *z, const char *path, sp_mapfile *mf, sp_error *err)
{
    memset(z, 0, sizeof *z);
    z->mf = *mf;
    sp_status s = SP_OK;
    if (!(z->path = strdup(path))) {
        sp_mapfile_close(&z->mf);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    uint64_t eocd = 0;
    if ((s = find_eocd(z, &eocd, err)))
        goto out;
    const unsigned char *d = z->mf.data;
    const unsigned char *e = d + eocd;
    uint64_t n = rd16(e + 10), cd_size = rd32(e + 12), cd_off = rd32(e + 16);
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0) {
        s = sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': multi-disk zip archives are not supported",
                         path);
        goto out;
    }
    if (eocd >= 20 && rd32(d + eocd - 20) == SIG_Z64_LOC) {
        uint64_t z64 = rd64(d + eocd - 20 + 8);
        if (!in_file(z, z64, 56) || z64 > eocd - 20 || rd32(d + z64) != SIG_Z64_EOCD) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': bad zip64 end of central directory", path);
            goto out;
        }
        n = rd64(d + z64 + 32);
        cd_size = rd64(d + z64 + 40);
        cd_off = rd64(d + z64 + 48);
        z->zip64 = true;
        z->z64_made_by = rd16(d + z64 + 12);
        z->z64_needed = rd16(d + z64 + 14);
        eocd = z64; /* the directory ends before the zip64 record */
    }
    if (cd_off > eocd || cd_size > eocd - cd_off) {
        s = sp_error_set(err, SP_ERR_FORMAT,
                         "'%s': central directory lies outside the file (truncated?)", path);
        goto out;
    }
    if (n > cd_size / 46) {
        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': zip claims %llu entries in a %llu byte directory",
                         path, (unsigned long long)n, (unsigned long long)cd_size);
        goto out;
    }
    z->cd_off = cd_off;
    z->cd_size = cd_size;
    z->entries = calloc(n ? n : 1, sizeof *z->entries);
    z->sorted = calloc(n ? n : 1, sizeof *z->sorted);
    if (!z->entries || !z->sorted) {
        s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        goto out;
    }
    uint64_t off = cd_off, cd_end = cd_off + cd_size;
    for (size_t i = 0; i < n; i++) {
        z->n = i + 1; /* so close frees the name */
        if ((s = read_cd_entry(z, off, cd_end, &z->entries[i], &off, i, err)))
            goto out;
        if (z->entries[i].lho >= cd_off) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': entry '%s': bad local header offset", path,
                             z->entries[i].name);
            goto out;
        }
        if ((s = read_local(z, &z->entries[i], err)))
            goto out;
        if (z->entries[i].data_off + z->entries[i].csize > cd_off) {
            s = sp_error_set(err, SP_ERR_FORMAT, "'%s': entry '%s' overlaps the central directory",
                             path, z->entries[i].name);
            goto out;
        }
    }
    z->n = n;
    sort_names(z);
    sp_mapfile_drop(&z->mf, 0, z->mf.size); /* headers read: let their pages go */
out:
    if (s)
        sp_zip_close(z);
    return s;
}

void sp_zip_close(sp_zip *z)
{
    if (z->entries)
        for (size_t i = 0; i < z->n; i++)
            free(z->entries[i].name);
    free(z->entries);
    free(z->sorted);
    if (z->path)
        sp_mapfile_close(&z->mf); /* path is set first: the map is ours */
    free(z->path);
    memset(z, 0, sizeof *z);
    z->mf.fd = -1;
}

long sp_zip_find(const sp_zip *z, const char *name)
{
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(z->entries[z->sorted[mid]].name, name);
        if (c == 0)
            return (long)z->sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static sp_status inflate_entry(const sp_zip *z, const sp_zip_entry *e, unsigned char *dst,
                               sp_error *err)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory (zlib)");
    const unsigned char *src = z->mf.data + e->data_off;
    uint64_t in_left = e->csize, out_left = e->usize;
    int rc = Z_OK;
    zs.next_out = dst;
    while (rc == Z_OK) {
        if (zs.avail_in == 0 && in_left) {
            uInt c = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            zs.next_in = (Bytef *)src;
            zs.avail_in = c;
            src += c;
            in_left -= c;
        }
        if (zs.avail_out == 0) {
            uInt c = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
            zs.avail_out = c;
            out_left -= c;
            if (c == 0) {
                /* output full: the stream must end without more output */
                unsigned char probe;
                zs.next_out = &probe;
                zs.avail_out = 1;
                rc = inflate(&zs, Z_NO_FLUSH);
                if (rc != Z_STREAM_END || zs.avail_out == 0)
                    rc = Z_DATA_ERROR;
                break;
            }
        }
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_left == 0)
            rc = Z_DATA_ERROR; /* ran out of input */
    }
    bool ok = rc == Z_STREAM_END && (uint64_t)zs.total_out == e->usize;
    inflateEnd(&zs);
    if (!ok)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': entry '%s': corrupt deflate data", z->path,
                            e->name);
    return SP_OK;
}

sp_status sp_zip_entry_data(sp_zip *z, size_t i, const void **data, void **owned, sp_error *err)
{
    static const unsigned char empty[1];
    sp_zip_entry *e = &z->entries[i];
    *owned = NULL;
    *data = NULL;
    if (e->method == 0) {
        const unsigned char *p = e->usize ? z->mf.data + e->data_off : empty;
        if (!e->crc_ok) {
            if (sp_crc32(0, p, e->usize) != e->crc)
                return sp_error_set(err, SP_ERR_FORMAT, "'%s': entry '%s' fails its CRC-32 check",
                                    z->path, e->name);
            e->crc_ok = true;
        }
        *data = p;
        return SP_OK;
    }
    if (e->method != 8)
        return sp_error_set(err, SP_ERR_UNSUPPORTED,
                            "'%s': entry '%s' uses compression method %u (only stored and deflate)",
                            z->path, e->name, e->method);
    /* a deflate stream expands at most ~1032x; refuse absurd claims before
     * allocating */
    if (e->usize / 1032 > e->csize + 1)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': entry '%s' claims an impossible size",
                            z->path, e->name);
    size_t bytes;
    unsigned char *buf = NULL;
    if (!sp_mul_size(e->usize ? e->usize : 1, 1, &bytes) || !(buf = malloc(bytes)))
        return sp_error_set(err, SP_ERR_NOMEM, "'%s': out of memory inflating '%s'", z->path,
                            e->name);
    sp_status s = inflate_entry(z, e, buf, err);
    if (!s && sp_crc32(0, buf, e->usize) != e->crc)
        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': entry '%s' fails its CRC-32 check", z->path,
                         e->name);
    if (s) {
        free(buf);
        return s;
    }
    *data = buf;
    *owned = buf;
    return SP_OK;
}

void sp_zip_entry_drop(const sp_zip *z, size_t i)
{
    const sp_zip_entry *e = &z->entries[i];
    sp_mapfile_drop(&z->mf, e->data_off, e->csize);
}

uint64_t sp_zip_entry_end(const sp_zip *z, size_t i)
{
    const sp_zip_entry *e = &z->entries[i];
    uint64_t end = e->data_off + e->csize;
    if (!(e->flags & 8))
        return end;
    /* descriptor: optional signature, crc, then 32- or 64-bit sizes */
    const unsigned char *d = z->mf.data;
    uint64_t p = end;
    if (in_file(z, p, 4) && rd32(d + p) == SIG_DESC)
        p += 4;
    bool big = e->csize >= 0xffffffffu || e->usize >= 0xffffffffu;
    uint64_t len = 4 + (big ? 16 : 8);
    if (!in_file(z, p, len) || p + len > z->cd_off)
        return end;
    return p + len;
}

/* ---- writer ---- */

void sp_zipw_init(sp_zipw *w, sp_outfile *of)
{
    memset(w, 0, sizeof *w);
    w->of = of;
}

void sp_zipw_entry_release(sp_zipw_entry *e)
{
    free(e->name);
    free(e->extra);
    free(e->comment);
    memset(e, 0, sizeof *e);
}

void sp_zipw_release(sp_zipw *w)
{
    for (size_t i = 0; i < w->n; i++)
        sp_zipw_entry_release(&w->ents[i]);
    free(w->ents);
    memset(w, 0, sizeof *w);
}

static unsigned char *dupmem(const void *p, size_t n)
{
    unsigned char *q = malloc(n ? n : 1);
    if (q && n)
        memcpy(q, p, n);
    return q;
}

sp_status sp_zipw_add_record(sp_zipw *w, const sp_zipw_entry *e, sp_error *err)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        sp_zipw_entry *n = realloc(w->ents, cap * sizeof *n);
        if (!n)
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        w->ents = n;
        w->cap = cap;
    }
    sp_zipw_entry *d = &w->ents[w->n];
    *d = *e;
    d->name = strdup(e->name);
    d->extra = dupmem(e->extra, e->extra_len);
    d->comment = dupmem(e->comment, e->comment_len);
    if (!d->name || !d->extra || !d->comment) {
        sp_zipw_entry_release(d);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    w->n++;
    return SP_OK;
}

sp_status sp_zip_entry_record(const sp_zip *z, size_t i, sp_zipw_entry *e, sp_error *err)
{
    const sp_zip_entry *s = &z->entries[i];
    const unsigned char *h = z->mf.data + s->cd_off;
    memset(e, 0, sizeof *e);
    e->made_by = rd16(h + 4);
    e->needed = rd16(h + 6);
    e->flags = s->flags;
    e->method = s->method;
    e->time = rd16(h + 12);
    e->date = rd16(h + 14);
    e->crc = s->crc;
    e->csize = s->csize;
    e->usize = s->usize;
    e->lho = s->lho;
    e->iattr = rd16(h + 36);
    e->eattr = rd32(h + 38);
    uint16_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32);
    e->name = strdup(s->name);
    e->extra = malloc(xlen ? xlen : 1);
    e->comment = dupmem(h + 46 + nlen + xlen, clen);
    if (!e->name || !e->extra || !e->comment) {
        sp_zipw_entry_release(e);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    e->comment_len = clen;
    /* keep every extra field but zip64 (rewritten from the values) */
    const unsigned char *x = h + 46 + nlen, *xe = x + xlen;
    while (xe - x >= 4) {
        uint16_t id = rd16(x), sz = rd16(x + 2);
        if (sz > xe - x - 4)
            break;
        if (id != 0x0001) {
            memcpy(e->extra + e->extra_len, x, 4u + sz);
            e->extra_len = (uint16_t)(e->extra_len + 4 + sz);
        }
        x += 4 + sz;
    }
    return SP_OK;
}

sp_status sp_zipw_add_stored(sp_zipw *w, const char *name, const void *data, uint64_t len,
                             sp_error *err)
{
    size_t nlen = strlen(name);
    if (nlen > 0xffff)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "zip entry name too long");
    bool big = len >= 0xffffffffu;
    uint32_t crc = sp_crc32(0, data, len);
    uint64_t lho = w->of->pos;
    unsigned char hdr[30 + 20 + 4 + SP_ZIP_ALIGN];
    size_t xlen = big ? 20 : 0;
    uint64_t base = lho + 30 + nlen + xlen + 4;
    size_t pad = (size_t)((SP_ZIP_ALIGN - base % SP_ZIP_ALIGN) % SP_ZIP_ALIGN);
    wr32(hdr, SIG_LOCAL);
    wr16(hdr + 4, big ? 45 : 20);
    wr16(hdr + 6, 0);
    wr16(hdr + 8, 0);
    wr16(hdr + 10, 0);
    wr16(hdr + 12, 0);
    wr32(hdr + 14, crc);
    wr32(hdr + 18, big ? 0xffffffffu : (uint32_t)len);
    wr32(hdr + 22, big ? 0xffffffffu : (uint32_t)len);
    wr16(hdr + 26, (uint16_t)nlen);
    wr16(hdr + 28, (uint16_t)(xlen + 4 + pad));
    sp_status s = sp_outfile_write(w->of, hdr, 30, err);
    if (!s)
        s = sp_outfile_write(w->of, name, nlen, err);
    unsigned char *x = hdr;
    if (big) {
        wr16(x, 0x0001);
        wr16(x + 2, 16);
        wr64(x + 4, len);
        wr64(x + 12, len);
        x += 20;
    }
    x[0] = 'F';
    x[1] = 'B';
    wr16(x + 2, (uint16_t)pad);
    memset(x + 4, 'Z', pad);
    x += 4 + pad;
    if (!s)
        s = sp_outfile_write(w->of, hdr, (size_t)(x - hdr), err);
    if (!s)
        s = sp_outfile_write(w->of, data, (size_t)len, err);
    if (s)
        return s;
    sp_zipw_entry e = {0};
    e.name = (char *)name;
    e.needed = big ? 45 : 20;
    e.made_by = e.needed;
    e.crc = crc;
    e.csize = e.usize = len;
    e.lho = lho;
    unsigned char none[1] = {0};
    e.extra = none;
    e.comment = none;
    return sp_zipw_add_record(w, &e, err);
}

sp_status sp_zipw_finish(sp_zipw *w, sp_error *err)
{
    uint64_t cd_off = w->of->pos;
    sp_status s = SP_OK;
    unsigned char buf[64];
    for (size_t i = 0; i < w->n && !s; i++) {
        const sp_zipw_entry *e = &w->ents[i];
        size_t nlen = strlen(e->name);
        bool bu = e->usize >= 0xffffffffu, bc = e->csize >= 0xffffffffu,
             bo = e->lho >= 0xffffffffu;
        size_t z64 = (bu || bc || bo) ? 4u + 8u * (bu + bc + bo) : 0;
        if (nlen > 0xffff || e->extra_len + z64 > 0xffff)
            return sp_error_set(err, SP_ERR_INVALID_ARG, "zip entry '%s': name or extra too long",
                                e->name);
        wr32(buf, SIG_CD);
        wr16(buf + 4, e->made_by);
        wr16(buf + 6, z64 && e->needed < 45 ? 45 : e->needed);
        wr16(buf + 8, e->flags);
        wr16(buf + 10, e->method);
        wr16(buf + 12, e->time);
        wr16(buf + 14, e->date);
        wr32(buf + 16, e->crc);
        wr32(buf + 20, bc ? 0xffffffffu : (uint32_t)e->csize);
        wr32(buf + 24, bu ? 0xffffffffu : (uint32_t)e->usize);
        wr16(buf + 28, (uint16_t)nlen);
        wr16(buf + 30, (uint16_t)(e->extra_len + z64));
        wr16(buf + 32, e->comment_len);
        wr16(buf + 34, 0);
        wr16(buf + 36, e->iattr);
        wr32(buf + 38, e->eattr);
        wr32(buf + 42, bo ? 0xffffffffu : (uint32_t)e->lho);
        s = sp_outfile_write(w->of, buf, 46, err);
        if (!s)
            s = sp_outfile_write(w->of, e->name, nlen, err);
        if (!s && z64) {
            unsigned char *x = buf;
            wr16(x, 0x0001);
            wr16(x + 2, (uint16_t)(z64 - 4));
            x += 4;
            if (bu) {
                wr64(x, e->usize);
                x += 8;
            }
            if (bc) {
                wr64(x, e->csize);
                x += 8;
            }
            if (bo) {
                wr64(x, e->lho);
                x += 8;
            }
            s = sp_outfile_write(w->of, buf, z64, err);
        }
        if (!s)
            s = sp_outfile_write(w->of, e->extra, e->extra_len, err);
        if (!s)
            s = sp_outfile_write(w->of, e->comment, e->comment_len, err);
    }
    if (s)
        return s;
    uint64_t cd_size = w->of->pos - cd_off;
    bool z64 = w->force_zip64 || w->n >= 0xffff || cd_off >= 0xffffffffu ||
               cd_size >= 0xffffffffu;
    if (z64) {
        uint64_t rec = w->of->pos;
        wr32(buf, SIG_Z64_EOCD);
        wr64(buf + 4, 44);
        wr16(buf + 12, w->z64_made_by ? w->z64_made_by : 45);
        wr16(buf + 14, w->z64_needed ? w->z64_needed : 45);
        wr32(buf + 16, 0);
        wr32(buf + 20, 0);
        wr64(buf + 24, w->n);
        wr64(buf + 32, w->n);
        wr64(buf + 40, cd_size);
        wr64(buf + 48, cd_off);
        wr32(buf + 56, SIG_Z64_LOC);
        wr32(buf + 60, 0);
        if ((s = sp_outfile_write(w->of, buf, 64, err)))
            return s;
        wr64(buf, rec);
        wr32(buf + 8, 1);
        if ((s = sp_outfile_write(w->of, buf, 12, err)))
            return s;
    }
    wr32(buf, SIG_EOCD);
    wr16(buf + 4, 0);
    wr16(buf + 6, 0);
    uint16_t n16 = w->n >= 0xffff ? 0xffff : (uint16_t)w->n;
    wr16(buf + 8, n16);
    wr16(buf + 10, n16);
    wr32(buf + 12, cd_size >= 0xffffffffu ? 0xffffffffu : (uint32_t)cd_size);
    wr32(buf + 16, cd_off >= 0xffffffffu ? 0xffffffffu : (uint32_t)cd_off);
    wr16(buf + 20, 0);
    return sp_outfile_write(w->of, buf, 22, err);
}
