/*
 * kernels/f32-spmv-csr.tmpl.h — CSR x dense for few columns (n == 1: SpMV):
 * per row and column, SP_VW nonzeros at a time — their uint16 column
 * indices widened, X gathered (vgatherdps), one FMA with the values; the
 * row's tail takes one masked gather. Memory traffic is the packed matrix
 * (6 bytes per nonzero) plus X, which stays in cache. Correct for any n
 * (each column is its own pass), fast for n == 1.
 */
#include <assert.h>
#include <stdbool.h>

#include "kernels/ukernels.h"

void SP_FN(const sp_spmat *restrict w, size_t p0, size_t p1, size_t n,
           const float *restrict x, size_t ldx, float *restrict y, size_t ldy,
           const float *restrict bias)
{
    assert(w->layout == SP_LAYOUT_CSR && p1 <= w->rows && ldx >= n && ldy >= n);
    assert(w->cols * ldx < (size_t)INT32_MAX);
    const uint32_t *restrict rp = w->row_ptr;
    const uint16_t *restrict ci = w->col_idx;
    const float *restrict val = w->values;
    const int ild = (int)ldx;
    const size_t M = w->rows;
    for (size_t m = p0; m < p1; m++) {
        for (size_t c = 0; c < n; c++) {
            sp_vf a0 = sp_vzero(), a1 = sp_vzero();
            for (size_t p = 0; p < w->npanels; p++) {
                size_t j = rp[p * M + m];
                const size_t e = rp[p * M + m + 1];
                for (; j + 2 * SP_VW <= e; j += 2 * SP_VW) {
                    a0 = sp_vfma(sp_vload(val + j), sp_vgather_u16(ci + j, x + c, ild), a0);
                    a1 = sp_vfma(sp_vload(val + j + SP_VW),
                                 sp_vgather_u16(ci + j + SP_VW, x + c, ild), a1);
                }
                if (j + SP_VW <= e) {
                    a0 = sp_vfma(sp_vload(val + j), sp_vgather_u16(ci + j, x + c, ild), a0);
                    j += SP_VW;
                }
                if (j < e) {
                    const sp_vm mk = sp_vm_first(e - j);
                    a1 = sp_vfma(sp_vloadm(val + j, mk),
                                 sp_vgather_u16m(ci + j, x + c, ild, e - j), a1);
                }
            }
            float s = sp_vhsum(sp_vadd(a0, a1));
            y[m * ldy + c] = bias ? s + bias[m] : s;
        }
    }
}
