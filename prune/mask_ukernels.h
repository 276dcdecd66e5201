/*
 * prune/ internals: the selection ukernels (magnitude pruning of contiguous
 * rows), one set per ISA, chosen once per call from cpuid
 * (sp_mask_ukernels_get). Like kernels/, each ISA's file is compiled in a
 * static library of its own with its own flags (prune/meson.build), and a
 * scalar reference, sp_mask_ukernels_scalar, is what the tests compare every
 * other set against, bit for bit.
 *
 * Elements are handled as raw bits: a value's magnitude key is its absolute
 * bit pattern (bits & ~sign: 15 bits for f16 and bf16, 31 for f32, 63 for
 * f64), whose unsigned order is the order of |w| for finite values; zeros
 * (+0 and -0) have key 0; a key above the exponent mask is NaN, equal to it
 * Inf. A pruned element becomes +0 (all bits zero); a kept one is copied
 * bit for bit. dst may be src (in place). Kernels never allocate and never
 * fail: they count.
 *
 * Names say dtype width, operation and ISA: sp_x16_nm_ukernel__avx512 is
 * N:M on 16-bit elements with AVX-512.
 */
#ifndef SPARSIFY_PRUNE_MASK_UKERNELS_H
#define SPARSIFY_PRUNE_MASK_UKERNELS_H

#include <stddef.h>
#include <stdint.h>

/* What a kernel saw; kernels add to it (the caller zeroes it). */
typedef struct sp_kcount {
    uint64_t zeros_before; /* key 0 in src */
    uint64_t zeros_after;  /* key 0 in dst */
    uint32_t changed;      /* nonzero: some dst element differs from src */
    uint32_t nan, inf;     /* nonzero: src holds a NaN / an Inf */
} sp_kcount;

/* N:M over `rows` rows of `cols` contiguous elements: in every group of m
 * consecutive elements from a row's start keep the n largest keys, the
 * earlier element first among equal keys; a tail group of t < m elements
 * keeps min(n, t). 0 <= n <= m. expm: the exponent mask (f16 0x7c00, bf16
 * 0x7f80, f32 0x7f800000, f64 0x7ff0000000000000). */
typedef void (*sp_x16_nm_fn)(uint16_t *dst, const uint16_t *src, size_t rows, size_t cols, int n,
                             int m, uint16_t expm, sp_kcount *c);
typedef void (*sp_x32_nm_fn)(uint32_t *dst, const uint32_t *src, size_t rows, size_t cols, int n,
                             int m, uint32_t expm, sp_kcount *c);
typedef void (*sp_x64_nm_fn)(uint64_t *dst, const uint64_t *src, size_t rows, size_t cols, int n,
                             int m, uint64_t expm, sp_kcount *c);

/* Cut over count elements: element i is pruned iff its key is below
 * (i < split ? lo : hi) (limits may be one past the largest key: prune
 * all). Counts zeros before and after, and changes; not NaN. */
typedef void (*sp_x16_cut_fn)(uint16_t *dst, const uint16_t *src, size_t count, size_t split,
                              uint32_t lo, uint32_t hi, sp_kcount *c);
typedef void (*sp_x32_cut_fn)(uint32_t *dst, const uint32_t *src, size_t count, size_t split,
                              uint64_t lo, uint64_t hi, sp_kcount *c);
typedef void (*sp_x64_cut_fn)(uint64_t *dst, const uint64_t *src, size_t count, size_t split,
                              uint64_t lo, uint64_t hi, sp_kcount *c);

/* Block scores of one row of cols contiguous elements of dtype dt (an
 * sp_dtype: f32, f16, bf16, f64) cut into blocks of bc columns (the last
 * may be ragged): for block j, s = 0.0; s += |w| (l2: w * w) over its
 * elements left to right, in double; sum[j] += s; nnz[j] += its nonzeros.
 * Vector versions keep exactly this order per block, so the sums are the
 * same bits everywhere. NaN/Inf are only counted. */
typedef void (*sp_blockscore_fn)(const void *row, int dt, size_t cols, size_t bc, int l2,
                                 double *sum, uint64_t *nnz, sp_kcount *c);

/* Blocks applied to one row: element c is kept iff keep[c / bc]. es: 2, 4
 * or 8 bytes. */
typedef void (*sp_blockapply_fn)(void *dst, const void *src, size_t es, size_t cols, size_t bc,
                                 const uint8_t *keep, sp_kcount *c);

/* Number of elements of src[0, count) whose key equals key. */
typedef size_t (*sp_x16_count_eq_fn)(const uint16_t *src, size_t count, uint16_t key);
typedef size_t (*sp_x32_count_eq_fn)(const uint32_t *src, size_t count, uint32_t key);

typedef struct sp_mask_ukernels {
    const char *isa; /* "scalar", "avx2", "avx512" */
    sp_x16_nm_fn nm16;
    sp_x32_nm_fn nm32;
    sp_x64_nm_fn nm64;
    sp_x16_cut_fn cut16;
    sp_x32_cut_fn cut32;
    sp_x64_cut_fn cut64;
    sp_blockscore_fn blockscore;
    sp_blockapply_fn blockapply;
    sp_x16_count_eq_fn count_eq16;
    sp_x32_count_eq_fn count_eq32;
} sp_mask_ukernels;

/* The best set this CPU runs (AVX-512 with BW/VL/DQ, else AVX2 + FMA +
 * F16C, else scalar). */
const sp_mask_ukernels *sp_mask_ukernels_get(void);
/* Every set this build has and this CPU runs, scalar first: *n entries. */
const sp_mask_ukernels *const *sp_mask_ukernels_all(size_t *n);

extern const sp_mask_ukernels sp_mask_ukernels_scalar;
extern const sp_mask_ukernels sp_mask_ukernels_avx2;
extern const sp_mask_ukernels sp_mask_ukernels_avx512;

#endif
