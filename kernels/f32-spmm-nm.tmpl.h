/*
 * kernels/f32-spmm-nm.tmpl.h — N:M x dense, vectorised along N. Define
 * SP_FN and include a simd-<isa>.h first. Each row has groups*n slots; a
 * slot's column is g*m + off with off read from the row's bit string (a
 * 16-bit window, so the packer pads each row's bit string by one byte).
 * Slots alternate between two accumulator sets to hide FMA latency, and K
 * is walked in panels of NM_KC columns so that X stays in L1.
 */
#include <assert.h>
#include <stdbool.h>

#include "kernels/ukernels.h"

/* Columns per K-panel: the panel's X rows for one N-tile (SP_T_CSR vectors)
 * fill about 32 KiB, so they stay in L1 while every row of the thread's
 * panel uses them; Y is re-read per K-panel (from L2). */
#define NM_KC (32768 / (SP_T_CSR * SP_VW * 4))

SP_INLINE void nm_tile(const sp_spmat *restrict w, size_t p0, size_t p1,
                       const float *restrict x, size_t ldx, float *restrict y,
                       size_t ldy, const float *restrict bias, size_t n0,
                       const int T, const bool masked, sp_vm mk)
{
    const size_t G = w->nm_groups, N = (size_t)w->n, M = (size_t)w->m;
    const unsigned bits = (unsigned)w->nm_bits, bmask = (1u << bits) - 1u;
    const size_t slots = G * N;
    const size_t gpp = NM_KC / M; /* groups per K-panel */
    const float *xb = x + n0;
    for (size_t g0 = 0; g0 < G; g0 += gpp) {
        const size_t s0 = g0 * N;
        const size_t s1 = (g0 + gpp < G ? g0 + gpp : G) * N;
        for (size_t m = p0; m < p1; m++) {
            const float *restrict val = w->values + m * slots;
            const uint8_t *restrict ix = w->nm_idx + m * w->nm_stride;
            float *yr = y + m * ldy + n0;
            if (m + 2 < p1) {
                /* Rows are slots*4 bytes apart: too far for the hardware
                 * prefetcher, so fetch the panel of the row after next. */
                const float *pv = val + 2 * slots + s0;
                for (size_t o = 0; o < (s1 - s0) * sizeof(float); o += 64)
                    __builtin_prefetch((const char *)pv + o);
                __builtin_prefetch(ix + 2 * w->nm_stride + ((s0 * bits) >> 3));
            }
            sp_vf a[SP_TMAX], b[SP_TMAX];
            const sp_vf init = bias ? sp_vset1(bias[m]) : sp_vzero();
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                a[t] = g0 ? (masked ? sp_vloadm(yr + t * SP_VW, mk) : sp_vload(yr + t * SP_VW))
                          : init;
                b[t] = sp_vzero();
            }
            /* kb: first column of the current group; r: slot in the group. */
            size_t s = s0, bp = s0 * bits, kb = g0 * M, r = 0;
            if (N == 2 && M == 4) {
                /* 2:4 — one byte holds two groups (four 2-bit offsets). */
                const size_t end = s0 + ((s1 - s0) & ~(size_t)3);
                for (; s < end; s += 4, kb += 8) {
                    const unsigned byte = ix[s >> 2];
                    const float *x0 = xb + (kb + (byte & 3u)) * ldx;
                    const float *x1 = xb + (kb + (byte >> 2 & 3u)) * ldx;
                    const float *x2 = xb + (kb + 4 + (byte >> 4 & 3u)) * ldx;
                    const float *x3 = xb + (kb + 4 + (byte >> 6)) * ldx;
                    const sp_vf w0 = sp_vset1(val[s]), w1 = sp_vset1(val[s + 1]);
                    const sp_vf w2 = sp_vset1(val[s + 2]), w3 = sp_vset1(val[s + 3]);
#pragma GCC unroll 4
                    for (int t = 0; t < T; t++) {
                        a[t] = sp_vfma(w0, masked ? sp_vloadm(x0 + t * SP_VW, mk) : sp_vload(x0 + t * SP_VW), a[t]);
                        b[t] = sp_vfma(w1, masked ? sp_vloadm(x1 + t * SP_VW, mk) : sp_vload(x1 + t * SP_VW), b[t]);
                        a[t] = sp_vfma(w2, masked ? sp_vloadm(x2 + t * SP_VW, mk) : sp_vload(x2 + t * SP_VW), a[t]);
                        b[t] = sp_vfma(w3, masked ? sp_vloadm(x3 + t * SP_VW, mk) : sp_vload(x3 + t * SP_VW), b[t]);
                    }
                }
                bp = s * bits; /* the odd group at the end, if any, below */
            }
            for (; s + 2 <= s1; s += 2, bp += 2 * bits) {
                const unsigned win0 = (unsigned)ix[bp >> 3] | (unsigned)ix[(bp >> 3) + 1] << 8;
                const size_t k0 = kb + ((win0 >> (bp & 7)) & bmask);
                if (++r == N) {
                    r = 0;
                    kb += M;
                }
                const size_t bp1 = bp + bits;
                const unsigned win1 = (unsigned)ix[bp1 >> 3] | (unsigned)ix[(bp1 >> 3) + 1] << 8;
                const size_t k1 = kb + ((win1 >> (bp1 & 7)) & bmask);
                if (++r == N) {
                    r = 0;
                    kb += M;
                }
                const float *x0 = xb + k0 * ldx, *x1 = xb + k1 * ldx;
                const sp_vf w0 = sp_vset1(val[s]), w1 = sp_vset1(val[s + 1]);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    a[t] = sp_vfma(w0, masked ? sp_vloadm(x0 + t * SP_VW, mk) : sp_vload(x0 + t * SP_VW), a[t]);
                    b[t] = sp_vfma(w1, masked ? sp_vloadm(x1 + t * SP_VW, mk) : sp_vload(x1 + t * SP_VW), b[t]);
                }
            }
            if (s < s1) {
                const unsigned win0 = (unsigned)ix[bp >> 3] | (unsigned)ix[(bp >> 3) + 1] << 8;
                const size_t k0 = kb + ((win0 >> (bp & 7)) & bmask);
                const float *x0 = xb + k0 * ldx;
                const sp_vf w0 = sp_vset1(val[s]);
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
    assert(w->layout == SP_LAYOUT_NM && p1 <= w->rows && ldx >= n && ldy >= n);
    const sp_vm all = sp_vm_first(0);
    size_t n0 = 0;
    for (; n0 + SP_T_CSR * SP_VW <= n; n0 += SP_T_CSR * SP_VW)
        nm_tile(w, p0, p1, x, ldx, y, ldy, bias, n0, SP_T_CSR, false, all);
    for (; n0 + SP_VW <= n; n0 += SP_VW)
        nm_tile(w, p0, p1, x, ldx, y, ldy, bias, n0, 1, false, all);
    if (n0 < n)
        nm_tile(w, p0, p1, x, ldx, y, ldy, bias, n0, 1, true, sp_vm_first(n - n0));
}
