/*
 * kernels/ukernels.h — declarations of every ukernel listed in
 * kernels/f32-spmm.inc and kernels/bf16-spmm.inc (internal to kernels/ and
 * its tests).
 */
#ifndef SPARSIFY_KERNELS_UKERNELS_H
#define SPARSIFY_KERNELS_UKERNELS_H

#include "kernels/kernels_config.h"
#include "sparsify/kernels.h"

#define SP_UKERNEL(name, isa, layout, dtype, spmv, ref)                             \
    void name(const sp_spmat *restrict w, size_t p0, size_t p1, size_t n,           \
              const float *restrict x, size_t ldx, float *restrict y, size_t ldy, \
              const float *restrict bias);
#include "kernels/f32-spmm.inc"
#include "kernels/bf16-spmm.inc"
#undef SP_UKERNEL

#endif
