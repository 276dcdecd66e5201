/*
 * kernels/f32-sddmm-scalar.c — the SDDMM reference (sddmm.h): the plainest
 * loop, which the vector ukernels are tested against; also what CPUs
 * without AVX2 run.
 */
#include <assert.h>

#include "kernels/sddmm_ukernels.h"

void sp_f32_sddmm_ukernel__scalar(const uint32_t *restrict row_ptr,
                                  const uint32_t *restrict col_idx, size_t r0, size_t r1,
                                  size_t n, const float *restrict a, size_t lda,
                                  const float *restrict b, size_t ldb, float *restrict out)
{
    assert(lda >= n && ldb >= n);
    for (size_t r = r0; r < r1; r++) {
        const float *ar = a + r * lda;
        for (size_t j = row_ptr[r]; j < row_ptr[r + 1]; j++) {
            const float *br = b + (size_t)col_idx[j] * ldb;
            float s = 0.0f;
            for (size_t t = 0; t < n; t++)
                s += ar[t] * br[t];
            out[j] = s;
        }
    }
}
