/*
 * kernels/f32-spmm-csr.tmpl.h — CSR x dense, vectorised along N.
 * Instantiated once per ISA: define SP_FN (the ukernel's name) and include a
 * simd-<isa>.h first. For each output row, an N-tile of SP_T_CSR vectors is
 * kept in two sets of accumulators (even and odd nonzeros, to hide the FMA
 * latency); each nonzero w[m,k] adds w * X[k, tile] — one broadcast, and per
 * vector one load of X and one FMA. K-panels (SP_CSR_KC columns) are the
 * outer loop, so the panel's X rows stay in L1 across all rows of the
 * chunk; Y is re-read once per panel.
 */
#include <assert.h>
#include <stdbool.h>

#include "kernels/ukernels.h"

SP_INLINE void csr_tile(const sp_spmat *restrict w, size_t p0, size_t p1,
                        const float *restrict x, size_t ldx, float *restrict y,
                        size_t ldy, const float *restrict bias, size_t n0,
                        const int T, const bool masked, sp_vm mk)
{
    const uint32_t *restrict rp = w->row_ptr;
    const uint16_t *restrict ci = w->col_idx;
    const float *restrict val = w->values;
    const size_t M = w->rows;
    const float *xb = x + n0;
    for (size_t p = 0; p < w->npanels; p++) {
        for (size_t m = p0; m < p1; m++) {
            float *yr = y + m * ldy + n0;
            sp_vf a[SP_TMAX], b[SP_TMAX];
            const sp_vf init = bias ? sp_vset1(bias[m]) : sp_vzero();
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                a[t] = p ? (masked ? sp_vloadm(yr + t * SP_VW, mk) : sp_vload(yr + t * SP_VW))
                         : init;
                b[t] = sp_vzero();
            }
            size_t j = rp[p * M + m];
            const size_t e = rp[p * M + m + 1];
            for (; j + 2 <= e; j += 2) {
                const float *x0 = xb + (size_t)ci[j] * ldx;
                const float *x1 = xb + (size_t)ci[j + 1] * ldx;
                const sp_vf w0 = sp_vset1(val[j]), w1 = sp_vset1(val[j + 1]);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    a[t] = sp_vfma(w0, masked ? sp_vloadm(x0 + t * SP_VW, mk) : sp_vload(x0 + t * SP_VW), a[t]);
                    b[t] = sp_vfma(w1, masked ? sp_vloadm(x1 + t * SP_VW, mk) : sp_vload(x1 + t * SP_VW), b[t]);
                }
            }
            if (j < e) {
                const float *x0 = xb + (size_t)ci[j] * ldx;
                const sp_vf w0 = sp_vset1(val[j]);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++)
                    a[t] = sp_vfma(w0, masked ? sp_vloadm(x0 + t * SP_VW, mk) : sp_vload(x0 + t * SP_VW), a[t]);
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                if (masked)
                    sp_vstorem(yr + t * SP_VW, sp_vadd(a[t], b[t]), mk);
                else
                    sp_vstore(yr + t * SP_VW, sp_vadd(a[t], b[t]));
            }
        }
    }
}

void SP_FN(const sp_spmat *restrict w, size_t p0, size_t p1, size_t n,
           const float *restrict x, size_t ldx, float *restrict y, size_t ldy,
           const float *restrict bias)
{
    assert(w->layout == SP_LAYOUT_CSR && p1 <= w->rows && ldx >= n && ldy >= n);
    const sp_vm all = sp_vm_first(0);
    size_t n0 = 0;
    for (; n0 + SP_T_CSR * SP_VW <= n; n0 += SP_T_CSR * SP_VW)
        csr_tile(w, p0, p1, x, ldx, y, ldy, bias, n0, SP_T_CSR, false, all);
    for (; n0 + SP_VW <= n; n0 += SP_VW)
        csr_tile(w, p0, p1, x, ldx, y, ldy, bias, n0, 1, false, all);
    if (n0 < n)
        csr_tile(w, p0, p1, x, ldx, y, ldy, bias, n0, 1, true, sp_vm_first(n - n0));
}
