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
#ifndef SPARSIFY_FORMATS_SPZ_INTERNAL_H
#define SPARSIFY_FORMATS_SPZ_INTERNAL_H

#include "sparsify/spz.h"

#include "formats/ckpt_internal.h"
#include "formats/checked.h"


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

/* little-endian helpers */
static inline void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static inline void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t get64(const unsigned char *p) { return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32); }

/* The [rows, cols] matrices of a weight (docs/pruning.md; the same
 * geometry as prune/'s sp_wgeom, kept here so formats/ needs nothing above
 * it). */
typedef struct sp__spz_geom {
    int64_t nmat, rows, cols, mat_stride, row_stride, col_stride;
} sp__spz_geom;

void sp__spz_geom_init(sp__spz_geom *g, int ndim, const int64_t *shape);
/* Blocks of br x bc over the matrices of g (ragged edges included). */
uint64_t sp__spz_nblocks(const sp__spz_geom *g, int64_t br, int64_t bc);

/* One section of a tensor: where and how its payload is stored. */
typedef struct sp__spz_sec {
    uint8_t kind, codec, plane;
    uint32_t param, crc;
    uint64_t offset, stored, raw;
} sp__spz_sec;

/* The parts of a tensor's sp_spz_tensor_info that its encoding, pattern
 * parameters and sections give (the reader and the writer both report it). */
void sp__spz_info_fill(sp_spz_tensor_info *info, int enc, uint64_t p0, uint64_t p1,
                       const sp__spz_sec *sec, int nsec);

/* ---- bit codecs (spz_codec.c) ---- */

/* nz[i] = 1 when element i is nonzero (floats: the sign ignored, so -0.0
 * is zero); *negz gets the number of -0.0. Returns the nonzero count. */
uint64_t sp__spz_nonzero_map(uint8_t *nz, const unsigned char *data, sp_dtype dt, size_t es,
                             uint64_t n, uint64_t *negz);
/* Packed bitmask of the -0.0 elements ((n + 7) / 8 bytes). */
void sp__spz_negz_bits(unsigned char *dst, const unsigned char *data, size_t es, uint64_t n);

/* Bit writer (LSB first) into a caller's buffer of enough bytes. */
typedef struct sp__spz_bitw {
    unsigned char *p;
    size_t len, cap;
    uint64_t acc;
    int nacc;
} sp__spz_bitw;

/* n <= 32 */
static inline void sp__spz_bw_put(sp__spz_bitw *w, uint32_t v, int n)
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

void sp__spz_bw_flush(sp__spz_bitw *w);

/* Bit reader over nbits bits. */
typedef struct sp__spz_bitr {
    const unsigned char *p;
    uint64_t nbits, pos;
} sp__spz_bitr;

static inline uint64_t sp__spz_br_peek(const sp__spz_bitr *r)
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

/* The gaps (run lengths of the other symbol) before each `sym` in nz;
 * returns their number. */
uint64_t sp__spz_collect_gaps(const uint8_t *nz, uint64_t n, uint8_t sym, uint64_t *gaps);
/* The Rice parameter for the gaps into *k_out; returns the cost in bits. */
uint64_t sp__spz_rice_plan(const uint64_t *gaps, uint64_t cnt, uint64_t n, int *k_out);
void sp__spz_rice_encode(sp__spz_bitw *w, const uint64_t *gaps, uint64_t cnt, int k);
/* Decode cnt Rice-coded gaps into a packed bitmask of n bits (LSB first);
 * bits NULL: validate only. inv: the gaps are those of zeros. what names
 * the tensor in errors. Errors: SP_ERR_FORMAT. */
sp_status sp__spz_rice_decode(const unsigned char *src, uint64_t srclen, unsigned char *bits,
                              uint64_t n, uint64_t cnt, int k, int inv, const char *what,
                              sp_error *err);
void sp__spz_pack_bits(unsigned char *dst, const uint8_t *nz, uint64_t n);
uint64_t sp__spz_popcount_bits(const unsigned char *b, uint64_t nbytes);
static inline int sp__spz_bit_at(const unsigned char *b, uint64_t i) { return (b[i >> 3] >> (i & 7)) & 1; }

/* A tensor encoded in memory, to be appended later: sp__spz_stage may run
 * on several threads at once (it only reads w's options); sp__spz_commit
 * appends in the caller's order, one thread at a time, and gives the same
 * bytes sp_spz_writer_add would. The name is checked at commit. */
typedef struct sp__spz_staged sp__spz_staged;
sp_status sp__spz_stage(const sp_spz_writer *w, const sp_tensor_data *t, sp__spz_staged **out,
                        sp_error *err);
sp_status sp__spz_commit(sp_spz_writer *w, const char *name, const sp__spz_staged *st,
                         sp_spz_tensor_info *info, sp_error *err);
void sp__spz_staged_free(sp__spz_staged *st); /* accepts NULL */

/* N:M combination ranks (colexicographic combinadic). */
uint64_t sp__spz_binom(int n, int k);
/* Pascal's triangle up to SPZ_MAX_M, for the per-group loops: c[n][k] =
 * sp__spz_binom(n, k) (0 for k > n). */
typedef struct sp__spz_binoms {
    uint64_t c[SPZ_MAX_M + 1][SPZ_MAX_M + 1];
} sp__spz_binoms;
void sp__spz_binoms_init(sp__spz_binoms *b);
/* Bits of one rank of n of m. */
int sp__spz_rank_bits(int n, int m);

#endif
