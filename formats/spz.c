/*
 * .spz — sparsify's compact sparse weight file (version 1). The full
 * specification is docs/format-spz.md; this comment is its summary.
 *
 * All integers little-endian. Every section payload starts at a multiple of
 * 64 bytes; zero bytes pad between sections.
 *
 *   header (64 bytes)
 *     0  magic   "SPZ\x1a"
 *     4  u32     version (1)
 *     8  u64     file size in bytes
 *    16  u64     toc offset      24 u64 toc size      32 u32 toc CRC-32
 *    36  u32     tensor count    40 u32 flags (0)     44 16 reserved (0)
 *    60  u32     CRC-32 of bytes 0..59
 *   sections ...                 (payloads, 64-byte aligned)
 *   table of contents            (at toc offset, 8-byte aligned records)
 *     u32 metadata length, metadata JSON bytes, zero pad to 8
 *     per tensor, in file order (40-byte fixed part):
 *       u32 entry size  u16 name length  u8 dtype  u8 ndim
 *       u8 encoding     u8 flags (0)     u16 section count
 *       u32 alias target (0xffffffff: none)
 *       u32 p0, p1      (N:M: n, m; block: r, c; else 0)
 *       u64 nkept       (set mask bits: bitmask nnz, kept blocks; N:M groups)
 *       u64 nvals       (stored values)
 *       i64 shape[ndim]
 *       section records (40 bytes each):
 *         u8 kind u8 codec u8 plane u8 0  u32 param  u32 CRC-32 (stored
 *         bytes)  u32 0  u64 offset  u64 stored size  u64 raw size
 *       name bytes, zero pad to 8
 *
 * Section kinds: 1 values, 2 element mask, 3 N:M ranks, 4 block mask.
 * Codecs: 0 raw, 1 raw deflate (RFC 1951), 2 Rice-coded gaps (masks only;
 * param = k | invert << 8). Values are either one section (plane 255: the
 * elements as they are) or one section per byte plane (plane p: byte p of
 * every value, little-endian byte order).
 */
#include "sparsify/spz.h"

#include "formats/ckpt_internal.h"
#include "formats/checked.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SPZ_MAGIC "SPZ\x1a"
#define SPZ_HEADER 64
#define SPZ_ALIGN 64
#define SPZ_ENTRY_FIXED 40
#define SPZ_SECTION 40
#define SPZ_NO_ALIAS 0xffffffffu
#define SPZ_MAX_SECTIONS 17
#define SPZ_MAX_M 32
/* The dense size of one tensor is at most SPZ_MAX_SLACK + SPZ_MAX_EXPANSION
 * x the file size (deflate expands at most ~1032:1; a mask of zeros costs
 * nothing, hence the constant): a header claiming more is refused before
 * anything is allocated. */
#define SPZ_MAX_EXPANSION 1032
#define SPZ_MAX_SLACK ((uint64_t)1 << 32)

enum { SEC_VALUES = 1, SEC_MASK = 2, SEC_NM = 3, SEC_BMASK = 4, SEC_NEGZ = 5 };
#define FLAG_NEGZ 1u
enum { CODEC_RAW = 0, CODEC_DEFLATE = 1, CODEC_RICE = 2 };
#define PLANE_ALL 255

/* ------------------------------------------------------------------ */
/* little-endian helpers                                               */

static void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t get64(const unsigned char *p) { return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32); }

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
/* geometry (docs/pruning.md): the [rows, cols] matrices of a weight   */

typedef struct geom {
    int64_t nmat, rows, cols, mat_stride, row_stride, col_stride;
} geom;

static void geom_init(geom *g, int ndim, const int64_t *shape)
{
    g->nmat = 1;
    g->mat_stride = 0;
    g->col_stride = 1;
    if (ndim == 0) {
        g->rows = g->cols = 1;
        g->row_stride = 1;
    } else if (ndim == 1) {
        g->rows = 1;
        g->cols = shape[0];
        g->row_stride = shape[0];
    } else if (ndim == 4) {
        int64_t k = shape[2] * shape[3];
        g->nmat = k;
        g->rows = shape[0];
        g->cols = shape[1];
        g->mat_stride = 1;
        g->row_stride = shape[1] * k;
        g->col_stride = k;
    } else {
        int64_t rest = 1;
        for (int d = 1; d < ndim; d++)
            rest *= shape[d];
        g->rows = shape[0];
        g->cols = rest;
        g->row_stride = rest;
    }
}

/* ------------------------------------------------------------------ */
/* element tests and bit streams                                       */

/* Bits that make a value nonzero: floats ignore the sign bit (so -0.0 is
 * a zero, whose sign is kept apart in the negative-zero section); other
 * dtypes use every bit. */
static uint64_t zero_ignore_mask(sp_dtype dt)
{
    switch (dt) {
    case SP_F32: return 0x7fffffffull;
    case SP_F16:
    case SP_BF16: return 0x7fffull;
    case SP_F64: return 0x7fffffffffffffffull;
    default: return ~0ull;
    }
}

/* nz[i] = 1 when element i is nonzero; *negz gets the number of -0.0.
 * Returns the nonzero count. */
static uint64_t nonzero_map(uint8_t *nz, const unsigned char *data, sp_dtype dt, size_t es,
                            uint64_t n, uint64_t *negz)
{
    uint64_t cnt = 0, neg = 0, m = zero_ignore_mask(dt);
    switch (es) {
    case 1:
        for (uint64_t i = 0; i < n; i++)
            cnt += (nz[i] = data[i] != 0);
        break;
    case 2:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, data + 2 * i, 2);
            cnt += (nz[i] = (v & m) != 0);
            neg += v == 0x8000 && m != ~0ull;
        }
        break;
    case 4:
        for (uint64_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, data + 4 * i, 4);
            cnt += (nz[i] = (v & m) != 0);
            neg += v == 0x80000000u && m != ~0ull;
        }
        break;
    case 8:
        for (uint64_t i = 0; i < n; i++) {
            uint64_t v;
            memcpy(&v, data + 8 * i, 8);
            cnt += (nz[i] = (v & m) != 0);
            neg += v == 0x8000000000000000ull && m != ~0ull;
        }
        break;
    default:
        for (uint64_t i = 0; i < n; i++) {
            uint8_t any = 0;
            for (size_t b = 0; b < es; b++)
                any |= data[i * es + b];
            cnt += (nz[i] = any != 0);
        }
    }
    *negz = neg;
    return cnt;
}

/* Packed bitmask of the -0.0 elements. */
static void negz_bits(unsigned char *dst, const unsigned char *data, size_t es, uint64_t n)
{
    memset(dst, 0, (n + 7) / 8);
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char *x = data + i * es;
        bool neg = x[es - 1] == 0x80;
        for (size_t b = 0; b + 1 < es && neg; b++)
            neg = x[b] == 0;
        if (neg)
            dst[i >> 3] |= (unsigned char)(1u << (i & 7));
    }
}

typedef struct bitw {
    unsigned char *p;
    size_t len, cap;
    uint64_t acc;
    int nacc;
} bitw;

/* n <= 32 */
static inline void bw_put(bitw *w, uint32_t v, int n)
{
    w->acc |= (uint64_t)v << w->nacc;
    w->nacc += n;
    if (w->nacc >= 32) {
        put32(w->p + w->len, (uint32_t)w->acc);
        w->len += 4;
        w->acc >>= 32;
        w->nacc -= 32;
    }
}

static void bw_flush(bitw *w)
{
    while (w->nacc > 0) {
        w->p[w->len++] = (unsigned char)w->acc;
        w->acc >>= 8;
        w->nacc -= 8;
    }
    w->nacc = 0;
}

typedef struct bitr {
    const unsigned char *p;
    uint64_t nbits, pos;
} bitr;

static inline uint64_t br_peek(const bitr *r)
{
    uint64_t byte = r->pos >> 3, nbytes = (r->nbits + 7) >> 3, v = 0;
    if (byte + 8 <= nbytes) {
        v = get64(r->p + byte);
    } else {
        for (uint64_t i = 0; byte + i < nbytes && i < 8; i++)
            v |= (uint64_t)r->p[byte + i] << (8 * i);
    }
    return v >> (r->pos & 7);
}

/* The gaps (run lengths of the other symbol) before each `sym` in nz. */
static uint64_t collect_gaps(const uint8_t *nz, uint64_t n, uint8_t sym, uint64_t *gaps)
{
    uint64_t cnt = 0, last = 0;
    for (uint64_t i = 0; i < n; i++)
        if (nz[i] == sym) {
            gaps[cnt++] = i - last;
            last = i + 1;
        }
    return cnt;
}

static uint64_t rice_cost(const uint64_t *gaps, uint64_t cnt, int k)
{
    uint64_t bits = cnt * (1 + (uint64_t)k);
    for (uint64_t j = 0; j < cnt; j++)
        bits += gaps[j] >> k;
    return bits;
}

/* Choose k for the gaps; returns the cost in bits. */
static uint64_t rice_plan(const uint64_t *gaps, uint64_t cnt, uint64_t n, int *k_out)
{
    *k_out = 0;
    if (cnt == 0)
        return 0;
    double mean = (double)(n - cnt) / (double)cnt;
    int k0 = mean * 0.69 >= 1.0 ? (int)floor(log2(mean * 0.69)) : 0;
    uint64_t best = UINT64_MAX;
    for (int k = k0 - 1 > 0 ? k0 - 1 : 0; k <= k0 + 1 && k <= 31; k++) {
        uint64_t c = rice_cost(gaps, cnt, k);
        if (c < best) {
            best = c;
            *k_out = k;
        }
    }
    return best;
}

static void rice_encode(bitw *w, const uint64_t *gaps, uint64_t cnt, int k)
{
    uint32_t kmask = k ? (uint32_t)((1ull << k) - 1) : 0;
    for (uint64_t j = 0; j < cnt; j++) {
        uint64_t g = gaps[j], q = g >> k;
        while (q >= 31) {
            bw_put(w, 0, 31);
            q -= 31;
        }
        bw_put(w, 1u << q, (int)q + 1);
        if (k)
            bw_put(w, (uint32_t)g & kmask, k);
    }
    bw_flush(w);
}

/* Decode cnt Rice-coded gaps into a packed bitmask of n bits (LSB first). */
static sp_status rice_decode(const unsigned char *src, uint64_t srclen, unsigned char *bits,
                             uint64_t n, uint64_t cnt, int k, int inv, const char *what,
                             sp_error *err)
{
    uint64_t nbytes = (n + 7) / 8;
    if (bits)
        memset(bits, 0, nbytes);
    bitr r = {src, srclen * 8, 0};
    uint64_t pos = 0;
    for (uint64_t j = 0; j < cnt; j++) {
        uint64_t q = 0;
        for (;;) {
            if (r.pos >= r.nbits)
                return sp_error_set(err, SP_ERR_FORMAT, "%s: mask stream ends early", what);
            uint64_t v = br_peek(&r);
            if (v == 0) {
                uint64_t step = 56 - (r.pos & 7) < r.nbits - r.pos ? 56 - (r.pos & 7) : r.nbits - r.pos;
                q += step;
                r.pos += step;
                if (q > n)
                    return sp_error_set(err, SP_ERR_FORMAT, "%s: mask gap too long", what);
                continue;
            }
            int tz = __builtin_ctzll(v);
            if ((uint64_t)tz >= r.nbits - r.pos)
                return sp_error_set(err, SP_ERR_FORMAT, "%s: mask stream ends early", what);
            q += (uint64_t)tz;
            r.pos += (uint64_t)tz + 1;
            break;
        }
        uint64_t rem = 0;
        if (k) {
            if ((uint64_t)k > r.nbits - r.pos)
                return sp_error_set(err, SP_ERR_FORMAT, "%s: mask stream ends early", what);
            rem = br_peek(&r) & ((1ull << k) - 1);
            r.pos += (uint64_t)k;
        }
        if (q > (n >> k))
            return sp_error_set(err, SP_ERR_FORMAT, "%s: mask gap too long", what);
        uint64_t g = (q << k) | rem;
        if (g >= n - pos || pos >= n)
            return sp_error_set(err, SP_ERR_FORMAT, "%s: mask runs past the tensor", what);
        pos += g;
        if (bits)
            bits[pos >> 3] |= (unsigned char)(1u << (pos & 7));
        pos++;
    }
    if (inv && bits) {
        for (uint64_t i = 0; i < nbytes; i++)
            bits[i] = (unsigned char)~bits[i];
        if (n & 7)
            bits[nbytes - 1] &= (unsigned char)((1u << (n & 7)) - 1);
    }
    return SP_OK;
}

static void pack_bits(unsigned char *dst, const uint8_t *nz, uint64_t n)
{
    uint64_t nb = (n + 7) / 8;
    memset(dst, 0, nb);
    for (uint64_t i = 0; i < n; i++)
        dst[i >> 3] |= (unsigned char)(nz[i] << (i & 7));
}

static uint64_t popcount_bits(const unsigned char *b, uint64_t nbytes)
{
    uint64_t c = 0, i = 0;
    for (; i + 8 <= nbytes; i += 8)
        c += (uint64_t)__builtin_popcountll(get64(b + i));
    for (; i < nbytes; i++)
        c += (uint64_t)__builtin_popcount(b[i]);
    return c;
}

static inline int bit_at(const unsigned char *b, uint64_t i) { return (b[i >> 3] >> (i & 7)) & 1; }

/* ------------------------------------------------------------------ */
/* N:M combination ranks (colexicographic combinadic)                  */

static uint64_t binom(int n, int k)
{
    if (k < 0 || k > n)
        return 0;
    uint64_t r = 1;
    for (int i = 1; i <= k; i++)
        r = r * (uint64_t)(n - k + i) / (uint64_t)i;
    return r;
}

static int rank_bits(int n, int m)
{
    uint64_t c = binom(m, n);
    int b = 0;
    while (b < 64 && (1ull << b) < c)
        b++;
    return b;
}

/* ------------------------------------------------------------------ */
/* writer                                                              */

typedef struct wsec {
    uint8_t kind, codec, plane;
    uint32_t param, crc;
    uint64_t offset, stored, raw;
} wsec;

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
    wsec sec[SPZ_MAX_SECTIONS];
    int nsec;
} wentry;

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

/* Append one section payload (already in its stored form). */
static sp_status put_section(sp_spz_writer *w, wentry *e, uint8_t kind, uint8_t codec,
                             uint8_t plane, uint32_t param, const void *buf, uint64_t stored,
                             uint64_t raw, sp_error *err)
{
    sp_status s = sp_outfile_pad(&w->of, SPZ_ALIGN, err);
    if (s)
        return s;
    wsec *sc = &e->sec[e->nsec++];
    sc->kind = kind;
    sc->codec = codec;
    sc->plane = plane;
    sc->param = param;
    sc->offset = w->of.pos;
    sc->stored = stored;
    sc->raw = raw;
    sc->crc = sp_crc32(0, buf, stored);
    return sp_outfile_write(&w->of, buf, (size_t)stored, err);
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
static sp_status put_values(sp_spz_writer *w, wentry *e, const unsigned char *vals, uint64_t cnt,
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
static sp_status put_mask(sp_spz_writer *w, wentry *e, uint8_t kind, const uint8_t *map,
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
        collect_gaps(map, n, (uint8_t)!inv, gaps);
        uint64_t bits = rice_plan(gaps, cnt, n, &k);
        if ((bits + 7) / 8 < raw) {
            bitw bw = {0};
            bw.p = malloc((bits + 7) / 8 + 16);
            if (!bw.p) {
                free(gaps);
                return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            }
            rice_encode(&bw, gaps, cnt, k);
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
    pack_bits(packed, map, n);
    s = put_section(w, e, kind, CODEC_RAW, PLANE_ALL, 0, packed, raw, raw, err);
    free(packed);
    return s;
}

/* Entropy in bits of a Bernoulli(p) source, per symbol. */
static double h2(double p)
{
    if (p <= 0 || p >= 1)
        return 0;
    return -(p * log2(p) + (1 - p) * log2(1 - p));
}

/* Max nonzeros over groups of m along cols; early exit above limit. */
static int nm_max(const uint8_t *nz, const geom *g, int m, int limit)
{
    int mx = 0;
    for (int64_t k = 0; k < g->nmat; k++)
        for (int64_t r = 0; r < g->rows; r++) {
            const uint8_t *row = nz + k * g->mat_stride + r * g->row_stride;
            for (int64_t c0 = 0; c0 < g->cols; c0 += m) {
                int cnt = 0;
                for (int j = 0; j < m; j++)
                    cnt += row[(c0 + j) * g->col_stride];
                if (cnt > mx) {
                    mx = cnt;
                    if (mx > limit)
                        return mx;
                }
            }
        }
    return mx;
}

/* Kept blocks of r x c (ragged edges included) and their element count;
 * stops early (returns false) when the element count passes limit. */
static bool block_count(const uint8_t *nz, const geom *g, int64_t br, int64_t bc, uint64_t limit,
                        uint64_t *kept, uint64_t *elems, uint8_t *bmap)
{
    uint64_t kb = 0, ke = 0, idx = 0, strips = 0;
    uint64_t nstrips = (uint64_t)g->nmat * (uint64_t)((g->rows + br - 1) / br);
    for (int64_t k = 0; k < g->nmat; k++)
        for (int64_t r0 = 0; r0 < g->rows; r0 += br) {
            for (int64_t c0 = 0; c0 < g->cols; c0 += bc, idx++) {
                int64_t rh = g->rows - r0 < br ? g->rows - r0 : br;
                int64_t cw = g->cols - c0 < bc ? g->cols - c0 : bc;
                bool any = false;
                for (int64_t r = 0; r < rh && !any; r++) {
                    const uint8_t *row = nz + k * g->mat_stride + (r0 + r) * g->row_stride;
                    for (int64_t c = 0; c < cw; c++)
                        if (row[(c0 + c) * g->col_stride]) {
                            any = true;
                            break;
                        }
                }
                if (bmap)
                    bmap[idx] = any;
                if (any) {
                    kb++;
                    ke += (uint64_t)(rh * cw);
                    if (ke > limit)
                        return false;
                }
            }
            /* a candidate already far over its share of the budget after
             * a few strips will not come back: stop early (estimate only;
             * the exact count is redone for the chosen size) */
            strips++;
            if (!bmap && limit != UINT64_MAX && strips >= 4 && strips * 8 <= nstrips &&
                (double)ke > 2.0 * (double)limit * (double)strips / (double)nstrips)
                return false;
        }
    *kept = kb;
    *elems = ke;
    return true;
}

static uint64_t nblocks_of(const geom *g, int64_t br, int64_t bc)
{
    return (uint64_t)g->nmat * (uint64_t)((g->rows + br - 1) / br) *
           (uint64_t)((g->cols + bc - 1) / bc);
}

typedef struct plan {
    sp_spz_encoding enc;
    int n, m;
    int64_t r, c;
} plan;

static const int64_t block_sizes[][2] = {
    {1, 2}, {2, 1}, {1, 4}, {4, 1}, {2, 2}, {1, 8}, {8, 1}, {2, 4}, {4, 2}, {4, 4},
    {1, 16}, {16, 1}, {8, 4}, {4, 8}, {8, 8}, {1, 32}, {32, 1}, {16, 16}, {32, 32},
};

/* Pick the cheapest exact encoding by estimated size (mask costs at their
 * entropy, which the Rice coder approaches closely). */
static void choose(const sp_spz_options *o, const uint8_t *nz, uint64_t nnz, uint64_t numel,
                   size_t es, int ndim, const int64_t *shape, plan *out)
{
    geom g;
    geom_init(&g, ndim, shape);
    double bits_e = 8.0 * (double)es;
    double dense = (double)numel * bits_e;
    double p = numel ? (double)nnz / (double)numel : 0;
    double bm = (double)nnz * bits_e + (double)numel * h2(p) + 64 * 8;
    memset(out, 0, sizeof *out);
    out->enc = SP_SPZ_DENSE;
    double best = dense;
    bool forced = o->encoding != SP_SPZ_AUTO;
    if (numel == 0 || nnz == numel) {
        if (!(forced && o->encoding == SP_SPZ_BITMASK && numel))
            return;
    }
    if (bm < best || (forced && o->encoding == SP_SPZ_BITMASK)) {
        best = bm;
        out->enc = SP_SPZ_BITMASK;
        if (forced && o->encoding == SP_SPZ_BITMASK)
            return;
    }
    if (forced && o->encoding == SP_SPZ_DENSE) {
        out->enc = SP_SPZ_DENSE;
        return;
    }
    if (ndim >= 1 && (!forced || o->encoding == SP_SPZ_NM)) {
        static const int ms[] = {2, 4, 8, 16, 32};
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
            int m = ms[i];
            if (forced && o->nm_m && o->nm_m != m)
                continue;
            if (g.cols % m)
                continue;
            /* most nonzeros per group that could still beat `best` */
            double per_group = best / (double)(numel / (uint64_t)m);
            int limit = (int)(per_group / bits_e);
            if (forced)
                limit = o->nm_n ? o->nm_n : m - 1;
            if (limit >= m)
                limit = m - 1;
            int mx = nm_max(nz, &g, m, limit);
            if (mx > limit)
                continue;
            int nn = forced && o->nm_n ? o->nm_n : mx;
            double cost = (double)(numel / (uint64_t)m) * (nn * bits_e + rank_bits(nn, m)) + 64 * 8;
            if (cost < best || forced) {
                best = cost;
                out->enc = SP_SPZ_NM;
                out->n = nn;
                out->m = m;
                if (forced)
                    return;
            }
        }
    }
    if (ndim >= 1 && (!forced || o->encoding == SP_SPZ_BLOCK)) {
        for (size_t i = 0; i < sizeof block_sizes / sizeof block_sizes[0] + 1; i++) {
            int64_t br, bc;
            if (i == sizeof block_sizes / sizeof block_sizes[0]) {
                if (!(forced && o->block_r > 0 && o->block_c > 0))
                    break;
                br = o->block_r;
                bc = o->block_c;
            } else {
                br = block_sizes[i][0];
                bc = block_sizes[i][1];
                if (forced && o->block_r > 0 && o->block_c > 0)
                    continue;
            }
            if (br > g.rows || bc > g.cols)
                continue;
            uint64_t nb = nblocks_of(&g, br, bc), kept = 0, elems = 0;
            double idx_floor = (double)nb * 0.05;
            uint64_t limit = forced ? UINT64_MAX
                                    : (uint64_t)fmax(0, (best - idx_floor) / bits_e);
            if (!block_count(nz, &g, br, bc, limit, &kept, &elems, NULL))
                continue;
            double cost = (double)elems * bits_e + (double)nb * h2((double)kept / (double)nb) + 64 * 8;
            if (cost < best || (forced && out->enc != SP_SPZ_BLOCK)) {
                best = cost;
                out->enc = SP_SPZ_BLOCK;
                out->r = br;
                out->c = bc;
            }
        }
    }
    if (forced && out->enc != o->encoding && o->encoding != SP_SPZ_DENSE) {
        /* forced encoding impossible: keep the automatic choice */
        sp_spz_options a = *o;
        a.encoding = SP_SPZ_AUTO;
        choose(&a, nz, nnz, numel, es, ndim, shape, out);
    }
}

static uint64_t numel_of(int ndim, const int64_t *shape)
{
    uint64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= (uint64_t)shape[d];
    return n;
}

/* The -0.0 positions of a sparse encoding, when there are any. */
static sp_status put_negz(sp_spz_writer *w, wentry *e, const unsigned char *data, size_t es,
                          uint64_t numel, uint64_t negz, sp_error *err)
{
    if (!negz)
        return SP_OK;
    uint64_t raw = (numel + 7) / 8;
    unsigned char *bits = malloc(raw + 1), *z = NULL;
    if (!bits)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    negz_bits(bits, data, es, numel);
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

static sp_status encode_tensor(sp_spz_writer *w, wentry *e, const unsigned char *data, size_t es,
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
    uint64_t nnz = nonzero_map(nz, data, e->dtype, es, numel, &negz);
    e->nnz = nnz;
    plan pl;
    choose(&w->opt, nz, nnz, numel, es, e->ndim, e->shape, &pl);
    e->enc = pl.enc;
    geom g;
    geom_init(&g, e->ndim, e->shape);
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
        int n = pl.n, m = pl.m, rb = rank_bits(n, m);
        uint64_t ngroups = numel / (uint64_t)m;
        e->p0 = (uint32_t)n;
        e->p1 = (uint32_t)m;
        e->nkept = ngroups;
        e->nvals = ngroups * (uint64_t)n;
        vals = malloc(e->nvals * es + 1);
        uint64_t rawlen = (ngroups * (uint64_t)rb + 7) / 8;
        bitw bw = {0};
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
                        rank += binom(pos[t], t + 1);
                        memcpy(vals + (j++) * es, data + (uint64_t)(base + (c0 + pos[t]) * g.col_stride) * es, es);
                    }
                    if (rb)
                        bw_put(&bw, (uint32_t)rank, rb);
                }
            }
        bw_flush(&bw);
        s = put_section(w, e, SEC_NM, CODEC_RAW, PLANE_ALL, 0, bw.p, rawlen, rawlen, err);
        free(bw.p);
        if (!s)
            s = put_negz(w, e, data, es, numel, negz, err);
        if (!s)
            s = put_values(w, e, vals, e->nvals, es, err);
        break;
    }
    case SP_SPZ_BLOCK: {
        uint64_t nb = nblocks_of(&g, pl.r, pl.c), kept = 0, elems = 0;
        e->p0 = (uint32_t)pl.r;
        e->p1 = (uint32_t)pl.c;
        map = malloc(nb ? nb : 1);
        if (!map) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            break;
        }
        block_count(nz, &g, pl.r, pl.c, UINT64_MAX, &kept, &elems, map);
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
    if (e->enc == SP_SPZ_NM) {
        info->n = (int)e->p0;
        info->m = (int)e->p1;
    } else if (e->enc == SP_SPZ_BLOCK) {
        info->r = e->p0;
        info->c = e->p1;
    }
    for (int i = 0; i < e->nsec; i++) {
        info->stored_bytes += e->sec[i].stored;
        info->raw_bytes += e->sec[i].raw;
    }
}

sp_status sp_spz_writer_add(sp_spz_writer *w, const sp_tensor_data *t, sp_spz_tensor_info *info,
                            sp_error *err)
{
    size_t es = sp_dtype_size(t->dtype);
    if (!es)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "tensor '%s': unknown dtype", t->name);
    if (t->ndim < 0 || t->ndim > SP_MAX_DIMS)
        return sp_error_set(err, SP_ERR_INVALID_ARG, "tensor '%s': bad rank", t->name);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0)
            return sp_error_set(err, SP_ERR_INVALID_ARG, "tensor '%s': negative size", t->name);
    wentry *e;
    sp_status s = writer_entry(w, t->name, &e, err);
    if (s)
        return s;
    e->dtype = t->dtype;
    e->ndim = t->ndim;
    memcpy(e->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    uint64_t numel = numel_of(t->ndim, t->shape);
    s = encode_tensor(w, e, t->data, es, numel, err);
    if (s) {
        sp_error_prefix(err, "tensor '%s'", t->name);
        free(e->name);
        return s;
    }
    e->nkept = e->enc == SP_SPZ_DENSE ? 0 : e->nkept;
    w->n++;
    if (info)
        fill_info(e, es, info);
    return SP_OK;
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
            const wsec *sc = &e->sec[k];
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
    wsec sec[SPZ_MAX_SECTIONS];
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
                               const wsec *sc, sp_error *err)
{
    if (sp_crc32(0, im->mf.data + sc->offset, sc->stored) != sc->crc)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': section at offset %llu fails its CRC-32",
                            ck->path, name, (unsigned long long)sc->offset);
    return SP_OK;
}

/* Stored bytes of a section into dst (raw bytes long). */
static sp_status sec_load(const sp_ckpt *ck, const spz_impl *im, const char *name, const wsec *sc,
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

static sp_status load_mask(const sp_ckpt *ck, const spz_impl *im, const char *name, const wsec *sc,
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
        s = rice_decode(im->mf.data + sc->offset, sc->stored, bits, nbits, cnt, k, inv, what, err);
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
    if (popcount_bits(bits, (nbits + 7) / 8) != ones)
        return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': mask does not match its count",
                            ck->path, name);
    return SP_OK;
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
    geom g;
    geom_init(&g, t->ndim, t->shape);
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
        int n = (int)e->p0, m = (int)e->p1, rb = rank_bits(n, m);
        uint64_t total = binom(m, n);
        const wsec *sc = &e->sec[0];
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
        bitr r = {bits, sc->raw * 8, 0};
        uint64_t j = 0;
        for (int64_t k = 0; k < g.nmat && !s; k++)
            for (int64_t row = 0; row < g.rows && !s; row++) {
                int64_t base = k * g.mat_stride + row * g.row_stride;
                for (int64_t c0 = 0; c0 < g.cols; c0 += m) {
                    uint64_t rank = 0;
                    if (rb) {
                        rank = br_peek(&r) & ((1ull << rb) - 1);
                        r.pos += (uint64_t)rb;
                    }
                    if (rank >= total) {
                        s = sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s': bad n:m index",
                                         ck->path, name);
                        break;
                    }
                    /* unrank: largest c with binom(c, t) <= rank, t = n..1 */
                    int pos[SPZ_MAX_M];
                    int cmax = m;
                    for (int t2 = n; t2 >= 1; t2--) {
                        int c = t2 - 1;
                        while (c + 1 < cmax && binom(c + 1, t2) <= rank)
                            c++;
                        pos[t2 - 1] = c;
                        rank -= binom(c, t2);
                        cmax = c;
                    }
                    for (int t2 = 0; t2 < n; t2++)
                        memcpy(out + (uint64_t)(base + (c0 + pos[t2]) * g.col_stride) * es,
                               vals + (j++) * es, es);
                }
            }
        break;
    }
    case SP_SPZ_BLOCK: {
        int64_t br = e->p0, bc = e->p1;
        uint64_t nb = nblocks_of(&g, br, bc);
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
                    if (bit_at(bits, idx))
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
                    if (!bit_at(bits, idx))
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
        const wsec *sc = &e->sec[k];
        if (sc->codec != CODEC_RICE)
            continue;
        geom g;
        geom_init(&g, ck->tensors[ti].ndim, ck->tensors[ti].shape);
        uint64_t nbits = sc->kind == SEC_BMASK ? nblocks_of(&g, e->p0, e->p1) : e->numel;
        int rk = (int)(sc->param & 0xff), inv = (int)((sc->param >> 8) & 1);
        char what[300];
        snprintf(what, sizeof what, "'%s': tensor '%s'", ck->path, ck->tensors[ti].name);
        if (rk > 31)
            return sp_error_set(err, SP_ERR_FORMAT, "%s: mask rice parameter %d out of range", what, rk);
        if (e->nkept > nbits)
            return sp_error_set(err, SP_ERR_FORMAT, "%s: mask count exceeds its size", what);
        sp_status s = rice_decode(im->mf.data + sc->offset, sc->stored, NULL, nbits,
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
        const wsec *sc = &e->sec[k];
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
        const wsec *sc = &e->sec[first];
        if (sc->kind != SEC_VALUES || (sc->plane != PLANE_ALL && !(e->es == 1 && sc->plane == 0)) ||
            sc->raw != e->nvals * e->es)
            return SP_ERR_FORMAT;
    } else if ((size_t)nv == e->es) {
        for (int p = 0; p < nv; p++) {
            const wsec *sc = &e->sec[first + p];
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
            wsec *sc = &e->sec[k];
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
        geom g;
        geom_init(&g, t.ndim, t.shape);
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
                 e->sec[0].raw == (e->nkept * (uint64_t)rank_bits(n, m) + 7) / 8;
            break;
        }
        case SP_SPZ_BLOCK:
            ok = e->p0 >= 1 && e->p1 >= 1 && t.ndim >= 1 && e->nsec >= 2 &&
                 e->sec[0].kind == SEC_BMASK;
            if (ok) {
                uint64_t nb = nblocks_of(&g, e->p0, e->p1);
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
    if (e->enc == SP_SPZ_NM) {
        info->n = (int)e->p0;
        info->m = (int)e->p1;
    } else if (e->enc == SP_SPZ_BLOCK) {
        info->r = e->p0;
        info->c = e->p1;
    }
    for (int k = 0; k < e->nsec; k++) {
        info->stored_bytes += e->sec[k].stored;
        info->raw_bytes += e->sec[k].raw;
    }
    return SP_OK;
}

const char *sp_spz_metadata(const sp_ckpt *ck)
{
    if (ck->format != SP_FORMAT_SPZ || ck->be != &spz_backend)
        return "";
    const spz_impl *im = ck->impl;
    return im->meta ? im->meta : "";
}
