/*
 * .spz bit codecs (formats/spz_internal.h): weight geometry, nonzero maps,
 * the bit writer and reader, Rice-coded gaps for masks, packed bitmasks and
 * N:M combination ranks. Shared by the writer (spz_write.c), the reader
 * (spz_read.c) and the export planner (export_plan.c).
 */
#include "formats/spz_internal.h"

#include <math.h>
#include <string.h>

void sp__spz_geom_init(sp__spz_geom *g, int ndim, const int64_t *shape)
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


uint64_t sp__spz_nblocks(const sp__spz_geom *g, int64_t br, int64_t bc)
{
    return (uint64_t)g->nmat * (uint64_t)((g->rows + br - 1) / br) *
           (uint64_t)((g->cols + bc - 1) / bc);
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
uint64_t sp__spz_nonzero_map(uint8_t *nz, const unsigned char *data, sp_dtype dt, size_t es,
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
void sp__spz_negz_bits(unsigned char *dst, const unsigned char *data, size_t es, uint64_t n)
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

void sp__spz_bw_flush(sp__spz_bitw *w)
{
    while (w->nacc > 0) {
        w->p[w->len++] = (unsigned char)w->acc;
        w->acc >>= 8;
        w->nacc -= 8;
    }
    w->nacc = 0;
}

/* The gaps (run lengths of the other symbol) before each `sym` in nz. */
uint64_t sp__spz_collect_gaps(const uint8_t *nz, uint64_t n, uint8_t sym, uint64_t *gaps)
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
uint64_t sp__spz_rice_plan(const uint64_t *gaps, uint64_t cnt, uint64_t n, int *k_out)
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

void sp__spz_rice_encode(sp__spz_bitw *w, const uint64_t *gaps, uint64_t cnt, int k)
{
    uint32_t kmask = k ? (uint32_t)((1ull << k) - 1) : 0;
    for (uint64_t j = 0; j < cnt; j++) {
        uint64_t g = gaps[j], q = g >> k;
        while (q >= 31) {
            sp__spz_bw_put(w, 0, 31);
            q -= 31;
        }
        sp__spz_bw_put(w, 1u << q, (int)q + 1);
        if (k)
            sp__spz_bw_put(w, (uint32_t)g & kmask, k);
    }
    sp__spz_bw_flush(w);
}

/* Decode cnt Rice-coded gaps into a packed bitmask of n bits (LSB first). */
sp_status sp__spz_rice_decode(const unsigned char *src, uint64_t srclen, unsigned char *bits,
                             uint64_t n, uint64_t cnt, int k, int inv, const char *what,
                             sp_error *err)
{
    uint64_t nbytes = (n + 7) / 8;
    if (bits)
        memset(bits, 0, nbytes);
    sp__spz_bitr r = {src, srclen * 8, 0};
    uint64_t pos = 0;
    for (uint64_t j = 0; j < cnt; j++) {
        uint64_t q = 0;
        for (;;) {
            if (r.pos >= r.nbits)
                return sp_error_set(err, SP_ERR_FORMAT, "%s: mask stream ends early", what);
            uint64_t v = sp__spz_br_peek(&r);
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
            rem = sp__spz_br_peek(&r) & ((1ull << k) - 1);
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

void sp__spz_pack_bits(unsigned char *dst, const uint8_t *nz, uint64_t n)
{
    uint64_t nb = (n + 7) / 8;
    memset(dst, 0, nb);
    for (uint64_t i = 0; i < n; i++)
        dst[i >> 3] |= (unsigned char)(nz[i] << (i & 7));
}

uint64_t sp__spz_popcount_bits(const unsigned char *b, uint64_t nbytes)
{
    uint64_t c = 0, i = 0;
    for (; i + 8 <= nbytes; i += 8)
        c += (uint64_t)__builtin_popcountll(get64(b + i));
    for (; i < nbytes; i++)
        c += (uint64_t)__builtin_popcount(b[i]);
    return c;
}

/* ------------------------------------------------------------------ */
/* N:M combination ranks (colexicographic combinadic)                  */

uint64_t sp__spz_binom(int n, int k)
{
    if (k < 0 || k > n)
        return 0;
    uint64_t r = 1;
    for (int i = 1; i <= k; i++)
        r = r * (uint64_t)(n - k + i) / (uint64_t)i;
    return r;
}

void sp__spz_binoms_init(sp__spz_binoms *b)
{
    memset(b, 0, sizeof *b);
    for (int n = 0; n <= SPZ_MAX_M; n++) {
        b->c[n][0] = 1;
        for (int k = 1; k <= n; k++)
            b->c[n][k] = b->c[n - 1][k - 1] + (k < n ? b->c[n - 1][k] : 0);
    }
}

int sp__spz_rank_bits(int n, int m)
{
    uint64_t c = sp__spz_binom(m, n);
    int b = 0;
    while (b < 64 && (1ull << b) < c)
        b++;
    return b;
}

void sp__spz_info_fill(sp_spz_tensor_info *info, int enc, uint64_t p0, uint64_t p1,
                       const sp__spz_sec *sec, int nsec)
{
    if (enc == SP_SPZ_NM) {
        info->n = (int)p0;
        info->m = (int)p1;
    } else if (enc == SP_SPZ_BLOCK) {
        info->r = p0;
        info->c = p1;
    }
    for (int k = 0; k < nsec; k++) {
        info->stored_bytes += sec[k].stored;
        info->raw_bytes += sec[k].raw;
    }
}
