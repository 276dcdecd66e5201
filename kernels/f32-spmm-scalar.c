/*
 * kernels/f32-spmm-scalar.c — the scalar references, one per layout: the
 * plainest loops over the packed layouts, which every vector ukernel is
 * tested against. Also the fallback on CPUs without AVX2.
 */
#include <assert.h>

#include "kernels/spmat-internal.h"
#include "kernels/ukernels.h"

void sp_f32_spmm_csr_ukernel__scalar(const sp_spmat *restrict w, size_t p0, size_t p1,
                                     size_t n, const float *restrict x, size_t ldx,
                                     float *restrict y, size_t ldy,
                                     const float *restrict bias)
{
    assert(w->layout == SP_LAYOUT_CSR && p1 <= w->rows && ldx >= n && ldy >= n);
    for (size_t m = p0; m < p1; m++) {
        float *yr = y + m * ldy;
        for (size_t c = 0; c < n; c++)
            yr[c] = bias ? bias[m] : 0.0f;
        for (size_t p = 0; p < w->npanels; p++) {
            const size_t i = p * w->rows + m;
            for (size_t j = w->row_ptr[i]; j < w->row_ptr[i + 1]; j++) {
                const float v = w->values[j];
                const float *xr = x + (size_t)w->col_idx[j] * ldx;
                for (size_t c = 0; c < n; c++)
                    yr[c] += v * xr[c];
            }
        }
    }
}

void sp_f32_spmm_bcsr_ukernel__scalar(const sp_spmat *restrict w, size_t p0, size_t p1,
                                      size_t n, const float *restrict x, size_t ldx,
                                      float *restrict y, size_t ldy,
                                      const float *restrict bias)
{
    assert(w->layout == SP_LAYOUT_BCSR && p1 <= w->nbrows && ldx >= n && ldy >= n);
    const size_t br = w->br, bc = w->bc;
    for (size_t i = p0; i < p1; i++) {
        const size_t row = i * br;
        const size_t nr = w->rows - row < br ? w->rows - row : br;
        for (size_t r = 0; r < nr; r++)
            for (size_t c = 0; c < n; c++)
                y[(row + r) * ldy + c] = bias ? bias[row + r] : 0.0f;
        for (size_t b = w->row_ptr[i]; b < w->row_ptr[i + 1]; b++) {
            const size_t k0 = w->col_idx[b];
            const size_t cw = w->cols - k0 < bc ? w->cols - k0 : bc;
            const float *blk = w->values + b * br * bc;
            for (size_t r = 0; r < nr; r++)
                for (size_t kk = 0; kk < cw; kk++) {
                    const float v = blk[r * bc + kk];
                    const float *xr = x + (k0 + kk) * ldx;
                    float *yr = y + (row + r) * ldy;
                    for (size_t c = 0; c < n; c++)
                        yr[c] += v * xr[c];
                }
        }
    }
}

void sp_f32_spmm_nm_ukernel__scalar(const sp_spmat *restrict w, size_t p0, size_t p1,
                                    size_t n, const float *restrict x, size_t ldx,
                                    float *restrict y, size_t ldy,
                                    const float *restrict bias)
{
    assert(w->layout == SP_LAYOUT_NM && p1 <= w->rows && ldx >= n && ldy >= n);
    const size_t G = w->nm_groups, N = (size_t)w->n, M = (size_t)w->m;
    const unsigned bits = (unsigned)w->nm_bits;
    for (size_t m = p0; m < p1; m++) {
        float *yr = y + m * ldy;
        const uint8_t *ix = w->nm_idx + m * w->nm_stride;
        for (size_t c = 0; c < n; c++)
            yr[c] = bias ? bias[m] : 0.0f;
        for (size_t s = 0; s < G * N; s++) {
            const size_t k = (s / N) * M + sp_nm_offset(ix, s, (int)bits);
            const float v = w->values[m * G * N + s];
            assert(k < w->cols);
            const float *xr = x + k * ldx;
            for (size_t c = 0; c < n; c++)
                yr[c] += v * xr[c];
        }
    }
}

void sp_f32_gemm_ukernel__scalar(const sp_spmat *restrict w, size_t p0, size_t p1,
                                 size_t n, const float *restrict x, size_t ldx,
                                 float *restrict y, size_t ldy,
                                 const float *restrict bias)
{
    assert(w->layout == SP_LAYOUT_DENSE && p1 <= w->rows && ldx >= n && ldy >= n);
    const size_t K = w->cols;
    for (size_t m = p0; m < p1; m++) {
        float *yr = y + m * ldy;
        for (size_t c = 0; c < n; c++)
            yr[c] = bias ? bias[m] : 0.0f;
        for (size_t k = 0; k < K; k++) {
            const float v = w->values[m * K + k];
            const float *xr = x + k * ldx;
            for (size_t c = 0; c < n; c++)
                yr[c] += v * xr[c];
        }
    }
}

