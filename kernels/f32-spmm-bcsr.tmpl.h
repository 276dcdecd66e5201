/*
 * kernels/f32-spmm-bcsr.tmpl.h — block-sparse (BCSR, br x bc blocks) and
 * dense x dense, vectorised along N. Define SP_FN (BCSR ukernel) and
 * SP_GEMM_FN (dense ukernel) and include a simd-<isa>.h first.
 *
 * The rows of a block row are taken RG = 4 (then 2, 1) at a time; for an
 * N-tile of T vectors, RG x T accumulators stay in registers. For every
 * column c of a block, T vectors of X row k0+c are loaded once and serve
 * the RG rows (one broadcast of w and one FMA each): a 4x1 block costs T
 * loads for 4T FMAs, where CSR costs T loads for T FMAs. The dense ukernel
 * is the same loop over one block as wide as the matrix.
 */
#include <assert.h>
#include <stdbool.h>

#include "kernels/ukernels.h"

/* Rows [r0, r0+RG) of a block row: blocks [b0, b1) with first columns
 * ci[b] (ci == NULL: one dense block at column 0), values at
 * val + b*bstride + r*rstride + c, cw = min(bc, K - k0) columns each. */
SP_INLINE void blk_rows(const int RG, const int T, const bool masked, sp_vm mk,
                        size_t b0, size_t b1, const uint16_t *restrict ci,
                        const float *restrict val, size_t bstride, size_t rstride,
                        size_t bc, size_t K, const float *restrict x, size_t ldx,
                        float *restrict y, size_t ldy, const float *restrict bias,
                        size_t row, size_t n0)
{
    sp_vf acc[4][SP_TMAX];
#pragma GCC unroll 4
    for (int r = 0; r < RG; r++) {
        const sp_vf init = bias ? sp_vset1(bias[row + r]) : sp_vzero();
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t] = init;
    }
    for (size_t b = b0; b < b1; b++) {
        const size_t k0 = ci ? ci[b] : 0;
        const size_t cw = K - k0 < bc ? K - k0 : bc;
        const float *wb = val + b * bstride;
        const float *xk = x + k0 * ldx + n0;
        for (size_t c = 0; c < cw; c++, xk += ldx) {
            sp_vf xv[SP_TMAX];
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                xv[t] = masked ? sp_vloadm(xk + t * SP_VW, mk) : sp_vload(xk + t * SP_VW);
#pragma GCC unroll 4
            for (int r = 0; r < RG; r++) {
                const sp_vf wv = sp_vset1(wb[r * rstride + c]);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++)
                    acc[r][t] = sp_vfma(wv, xv[t], acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RG; r++) {
        float *yr = y + (row + r) * ldy + n0;
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            if (masked)
                sp_vstorem(yr + t * SP_VW, acc[r][t], mk);
            else
                sp_vstore(yr + t * SP_VW, acc[r][t]);
        }
    }
}

/* Rows [row, row+nr) for one N-tile, RG = 4, 2, 1 at a time. */
SP_INLINE void blk_tile(const int T, const bool masked, sp_vm mk, size_t nr,
                        size_t b0, size_t b1, const uint16_t *restrict ci,
                        const float *restrict val, size_t bstride, size_t rstride,
                        size_t bc, size_t K, const float *restrict x, size_t ldx,
                        float *restrict y, size_t ldy, const float *restrict bias,
                        size_t row, size_t n0)
{
    size_t r = 0;
    for (; r + 4 <= nr; r += 4)
        blk_rows(4, T, masked, mk, b0, b1, ci, val + r * rstride, bstride, rstride,
                 bc, K, x, ldx, y, ldy, bias, row + r, n0);
    if (r + 2 <= nr) {
        blk_rows(2, T, masked, mk, b0, b1, ci, val + r * rstride, bstride, rstride,
                 bc, K, x, ldx, y, ldy, bias, row + r, n0);
        r += 2;
    }
    if (r < nr)
        blk_rows(1, T, masked, mk, b0, b1, ci, val + r * rstride, bstride, rstride,
                 bc, K, x, ldx, y, ldy, bias, row + r, n0);
}

/* All N-tiles of rows [row, row+nr). */
static void blk_panel(size_t nr, size_t b0, size_t b1, const uint16_t *restrict ci,
                      const float *restrict val, size_t bstride, size_t rstride,
                      size_t bc, size_t K, size_t n, const float *restrict x,
                      size_t ldx, float *restrict y, size_t ldy,
                      const float *restrict bias, size_t row)
{
    const sp_vm all = sp_vm_first(0);
    size_t n0 = 0;
    for (; n0 + SP_T_BLK * SP_VW <= n; n0 += SP_T_BLK * SP_VW)
        blk_tile(SP_T_BLK, false, all, nr, b0, b1, ci, val, bstride, rstride, bc, K,
                 x, ldx, y, ldy, bias, row, n0);
    for (; n0 + SP_VW <= n; n0 += SP_VW)
        blk_tile(1, false, all, nr, b0, b1, ci, val, bstride, rstride, bc, K,
                 x, ldx, y, ldy, bias, row, n0);
    if (n0 < n)
        blk_tile(1, true, sp_vm_first(n - n0), nr, b0, b1, ci, val, bstride, rstride,
                 bc, K, x, ldx, y, ldy, bias, row, n0);
}

void SP_FN(const sp_spmat *restrict w, size_t p0, size_t p1, size_t n,
           const float *restrict x, size_t ldx, float *restrict y, size_t ldy,
           const float *restrict bias)
{
    assert(w->layout == SP_LAYOUT_BCSR && p1 <= w->nbrows && ldx >= n && ldy >= n);
    const size_t br = w->br, bc = w->bc;
    for (size_t i = p0; i < p1; i++) {
        const size_t row = i * br;
        const size_t nr = w->rows - row < br ? w->rows - row : br;
        blk_panel(nr, w->row_ptr[i], w->row_ptr[i + 1], w->col_idx, w->values,
                  br * bc, bc, bc, w->cols, n, x, ldx, y, ldy, bias, row);
    }
}

void SP_GEMM_FN(const sp_spmat *restrict w, size_t p0, size_t p1, size_t n,
                const float *restrict x, size_t ldx, float *restrict y, size_t ldy,
                const float *restrict bias)
{
    assert(w->layout == SP_LAYOUT_DENSE && p1 <= w->rows && ldx >= n && ldy >= n);
    const size_t K = w->cols;
    blk_panel(p1 - p0, 0, 1, NULL, w->values + p0 * K, 0, K, K, K, n, x, ldx, y,
              ldy, bias, p0);
}
