/*
 * kernels/sddmm_ukernels.h — declarations of the ukernels listed in
 * kernels/f32-sddmm.inc (internal to kernels/ and its tests).
 */
#ifndef SPARSIFY_KERNELS_SDDMM_UKERNELS_H
#define SPARSIFY_KERNELS_SDDMM_UKERNELS_H

#include "kernels/kernels_config.h"
#include "sparsify/sddmm.h"

#define SP_SDDMM_UKERNEL(name, isa, ref)                                              \
    void name(const uint32_t *restrict row_ptr, const uint32_t *restrict col_idx,     \
              size_t r0, size_t r1, size_t n, const float *restrict a, size_t lda,    \
              const float *restrict b, size_t ldb, float *restrict out);
#include "kernels/f32-sddmm.inc"
#undef SP_SDDMM_UKERNEL

#endif
