/*
 * kernels/f32-sddmm.tmpl.h — SDDMM (sddmm.h), vectorised along n (the
 * batch). Instantiated once per ISA: include a simd-<isa>.h, define
 * sp_vhsum4 (four horizontal sums stored to out[0..3]) and SP_FN, then
 * include this file.
 *
 * Each sampled position is a dot product of a row of A with a row of B.
 * Four positions of a row are done at once: for each of the T vectors
 * covering n, one load of B per position and one FMA, the A row staying in
 * registers when n <= 4 vectors (64 floats on AVX-512: a batch of 64), then
 * one combined horizontal reduction of the four accumulators. Loads bound
 * it: one vector load of B per FMA.
 */
#include <assert.h>
#include <stdbool.h>

#include "kernels/sddmm_ukernels.h"

/* A vector of row p at vector t of T: masked (zeros past n) for the last. */
#define SP_SDDMM_LD(p, t, T, mk) ((t) == (T) - 1 ? sp_vloadm((p) + (t) * SP_VW, mk) \
                                                 : sp_vload((p) + (t) * SP_VW))

/* n <= T * SP_VW: the row of A lives in T registers. */
SP_INLINE void sddmm_rows_in_regs(const uint32_t *restrict rp, const uint32_t *restrict ci,
                                  size_t r0, size_t r1, size_t n, const float *restrict a,
                                  size_t lda, const float *restrict b, size_t ldb,
                                  float *restrict out, const int T)
{
    const sp_vm mk = sp_vm_first(n - (size_t)(T - 1) * SP_VW);
    for (size_t r = r0; r < r1; r++) {
        sp_vf av[SP_TMAX];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            av[t] = SP_SDDMM_LD(a + r * lda, t, T, mk);
        size_t j = rp[r];
        const size_t e = rp[r + 1];
        for (; j + 4 <= e; j += 4) {
            const float *b0 = b + (size_t)ci[j] * ldb, *b1 = b + (size_t)ci[j + 1] * ldb;
            const float *b2 = b + (size_t)ci[j + 2] * ldb, *b3 = b + (size_t)ci[j + 3] * ldb;
            sp_vf s0 = sp_vzero(), s1 = sp_vzero(), s2 = sp_vzero(), s3 = sp_vzero();
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                s0 = sp_vfma(av[t], SP_SDDMM_LD(b0, t, T, mk), s0);
                s1 = sp_vfma(av[t], SP_SDDMM_LD(b1, t, T, mk), s1);
                s2 = sp_vfma(av[t], SP_SDDMM_LD(b2, t, T, mk), s2);
                s3 = sp_vfma(av[t], SP_SDDMM_LD(b3, t, T, mk), s3);
            }
            sp_vhsum4(out + j, s0, s1, s2, s3);
        }
        for (; j < e; j++) {
            const float *b0 = b + (size_t)ci[j] * ldb;
            sp_vf s0 = sp_vzero();
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                s0 = sp_vfma(av[t], SP_SDDMM_LD(b0, t, T, mk), s0);
            out[j] = sp_vhsum(s0);
        }
    }
}

/* Any n: A is re-read from L1 for every vector. */
static void sddmm_rows_any(const uint32_t *restrict rp, const uint32_t *restrict ci, size_t r0,
                           size_t r1, size_t n, const float *restrict a, size_t lda,
                           const float *restrict b, size_t ldb, float *restrict out)
{
    const size_t full = n / SP_VW * SP_VW;
    const sp_vm mk = sp_vm_first(n - full);
    for (size_t r = r0; r < r1; r++) {
        const float *ar = a + r * lda;
        size_t j = rp[r];
        const size_t e = rp[r + 1];
        for (; j < e; j += 4) {
            const size_t cnt = e - j < 4 ? e - j : 4;
            const float *bp[4];
            for (size_t q = 0; q < 4; q++)
                bp[q] = b + (size_t)ci[j + (q < cnt ? q : 0)] * ldb;
            sp_vf s[4] = {sp_vzero(), sp_vzero(), sp_vzero(), sp_vzero()};
            for (size_t t = 0; t < full; t += SP_VW) {
                const sp_vf av = sp_vload(ar + t);
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++)
                    s[q] = sp_vfma(av, sp_vload(bp[q] + t), s[q]);
            }
            if (full < n) {
                const sp_vf av = sp_vloadm(ar + full, mk);
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++)
                    s[q] = sp_vfma(av, sp_vloadm(bp[q] + full, mk), s[q]);
            }
            if (cnt == 4) {
                sp_vhsum4(out + j, s[0], s[1], s[2], s[3]);
            } else {
                for (size_t q = 0; q < cnt; q++)
                    out[j + q] = sp_vhsum(s[q]);
            }
        }
    }
}

void SP_FN(const uint32_t *restrict row_ptr, const uint32_t *restrict col_idx, size_t r0,
           size_t r1, size_t n, const float *restrict a, size_t lda, const float *restrict b,
           size_t ldb, float *restrict out)
{
    assert(lda >= n && ldb >= n);
    if (n == 0) {
        for (size_t j = row_ptr[r0]; r0 < r1 && j < row_ptr[r1]; j++)
            out[j] = 0.0f;
    } else if (n <= SP_VW) {
        sddmm_rows_in_regs(row_ptr, col_idx, r0, r1, n, a, lda, b, ldb, out, 1);
    } else if (n <= 2 * SP_VW) {
        sddmm_rows_in_regs(row_ptr, col_idx, r0, r1, n, a, lda, b, ldb, out, 2);
    } else if (n <= 3 * SP_VW) {
        sddmm_rows_in_regs(row_ptr, col_idx, r0, r1, n, a, lda, b, ldb, out, 3);
    } else if (n <= 4 * SP_VW) {
        sddmm_rows_in_regs(row_ptr, col_idx, r0, r1, n, a, lda, b, ldb, out, 4);
    } else {
        sddmm_rows_any(row_ptr, col_idx, r0, r1, n, a, lda, b, ldb, out);
    }
}
