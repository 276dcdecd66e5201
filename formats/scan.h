/*
 * Internal: the scanning and packing ukernels of formats/ (zeros, 2:4
 * conformance, bitmasks, kept values), one set per ISA, chosen once per
 * call from cpuid (sp_scan_ukernels_get). Each ISA's file is compiled with
 * its own flags (formats/meson.build); sp_scan_ukernels_scalar is the
 * reference the tests compare the others with. Used by inspect (view
 * stats), check, and the compressed-tensors and .spz exporters.
 *
 * Elements are es bytes (1, 2, 4 or 8), little-endian, contiguous. An
 * element is zero when (bits & zm) == 0: floats pass their bits without
 * the sign (+0 and -0 are zero), other dtypes all bits (sp_scan_zmask).
 * Kernels never allocate and never fail.
 */
#ifndef SPARSIFY_FORMATS_SCAN_H
#define SPARSIFY_FORMATS_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sparsify/common.h"

typedef struct sp_scan_ukernels {
    const char *isa; /* "scalar", "avx2", "avx512" */
    /* Zeros among src[0, n). */
    uint64_t (*zeros)(const void *src, size_t n, size_t es, uint64_t zm);
    /* Zeros among src[0, n), n a multiple of 4; *ok &= every aligned group
     * of 4 has at most 2 nonzeros. */
    uint64_t (*zeros24)(const void *src, size_t n, size_t es, uint64_t zm, bool *ok);
    /* The nonzeros of one row as a bitmask: bit c (byte c / 8, bit c % 8)
     * set when element c is nonzero; writes (cols + 7) / 8 bytes. Returns
     * the number of nonzeros. */
    size_t (*bitmask)(uint8_t *bits, const void *row, size_t cols, size_t es, uint64_t zm);
    /* The elements of one row whose bit is set, in order, into vals;
     * returns how many. */
    size_t (*compress)(void *vals, const void *row, const uint8_t *bits, size_t cols, size_t es);
    /* 2:4 packing of one row (cols % 4 == 0): per group of 4 its
     * nonzeros, then its first zeros, to exactly two (compressed-tensors'
     * sparse-24-bitmask; a group with more nonzeros keeps its first two),
     * into vals (cols / 2 elements; NULL: bits only) and bits
     * ((cols + 7) / 8 bytes). */
    void (*pack24)(void *vals, uint8_t *bits, const void *row, size_t cols, size_t es,
                   uint64_t zm);
} sp_scan_ukernels;

/* The nonzero bits of dtype dt (see above), or 0 for a dtype the kernels
 * do not take (16-byte complex). */
uint64_t sp_scan_zmask(sp_dtype dt);

const sp_scan_ukernels *sp_scan_ukernels_get(void);
/* Every set this build has and this CPU runs, scalar first. */
const sp_scan_ukernels *const *sp_scan_ukernels_all(size_t *n);

extern const sp_scan_ukernels sp_scan_ukernels_scalar;
extern const sp_scan_ukernels sp_scan_ukernels_avx2;
extern const sp_scan_ukernels sp_scan_ukernels_avx512;

#endif
