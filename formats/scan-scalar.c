/*
 * The scalar reference of the scanning and packing ukernels
 * (formats/scan.h).
 */
#include "formats/scan.h"

#include <string.h>

static inline uint64_t ld(const unsigned char *p, size_t es)
{
    switch (es) {
    case 1: return p[0];
    case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
    default: { uint64_t v; memcpy(&v, p, 8); return v; }
    }
}

static uint64_t zeros_scalar(const void *src, size_t n, size_t es, uint64_t zm)
{
    const unsigned char *p = src;
    uint64_t z = 0;
    for (size_t i = 0; i < n; i++)
        z += (ld(p + i * es, es) & zm) == 0;
    return z;
}

static uint64_t zeros24_scalar(const void *src, size_t n, size_t es, uint64_t zm, bool *ok)
{
    const unsigned char *p = src;
    uint64_t z = 0;
    bool good = true;
    for (size_t g = 0; g + 4 <= n; g += 4) {
        int nz = 0;
        for (size_t q = 0; q < 4; q++)
            nz += (ld(p + (g + q) * es, es) & zm) != 0;
        z += (uint64_t)(4 - nz);
        good = good && nz <= 2;
    }
    *ok = *ok && good;
    return z;
}

static size_t bitmask_scalar(uint8_t *bits, const void *row, size_t cols, size_t es, uint64_t zm)
{
    const unsigned char *p = row;
    size_t nnz = 0;
    memset(bits, 0, (cols + 7) / 8);
    for (size_t c = 0; c < cols; c++)
        if (ld(p + c * es, es) & zm) {
            bits[c >> 3] |= (uint8_t)(1u << (c & 7));
            nnz++;
        }
    return nnz;
}

static size_t compress_scalar(void *vals, const void *row, const uint8_t *bits, size_t cols,
                              size_t es)
{
    const unsigned char *p = row;
    unsigned char *o = vals;
    size_t k = 0;
    for (size_t c = 0; c < cols; c++)
        if ((bits[c >> 3] >> (c & 7)) & 1)
            memcpy(o + (k++) * es, p + c * es, es);
    return k;
}

/* The two kept positions of a group of 4 from its nonzero nibble: the
 * nonzeros, then the first zeros (more than two nonzeros: the first two). */
static uint8_t sel24(unsigned nz)
{
    unsigned sel = 0, cnt = 0;
    for (unsigned q = 0; q < 4 && cnt < 2; q++)
        if ((nz >> q) & 1) {
            sel |= 1u << q;
            cnt++;
        }
    for (unsigned q = 0; q < 4 && cnt < 2; q++)
        if (!((sel >> q) & 1)) {
            sel |= 1u << q;
            cnt++;
        }
    return (uint8_t)sel;
}

static void pack24_scalar(void *vals, uint8_t *bits, const void *row, size_t cols, size_t es,
                          uint64_t zm)
{
    const unsigned char *p = row;
    unsigned char *o = vals;
    memset(bits, 0, (cols + 7) / 8);
    size_t k = 0;
    for (size_t g = 0; g + 4 <= cols; g += 4) {
        unsigned nz = 0;
        for (unsigned q = 0; q < 4; q++)
            nz |= (unsigned)((ld(p + (g + q) * es, es) & zm) != 0) << q;
        unsigned sel = sel24(nz);
        for (unsigned q = 0; q < 4; q++)
            if ((sel >> q) & 1) {
                if (o)
                    memcpy(o + (k++) * es, p + (g + q) * es, es);
                bits[(g + q) >> 3] |= (uint8_t)(1u << ((g + q) & 7));
            }
    }
}

const sp_scan_ukernels sp_scan_ukernels_scalar = {
    .isa = "scalar",
    .zeros = zeros_scalar,
    .zeros24 = zeros24_scalar,
    .bitmask = bitmask_scalar,
    .compress = compress_scalar,
    .pack24 = pack24_scalar,
};
