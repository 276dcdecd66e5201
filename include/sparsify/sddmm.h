/*
 * sparsify — sampled dense-dense products (SDDMM) on the CPU: the gradient
 * of a sparse weight's kept values (docs/run.md, "training").
 *
 *   out[j] = sum_{t < n} A[r, t] * B[col_idx[j], t]
 *            for every j in [row_ptr[r], row_ptr[r + 1]), r in [r0, r1)
 *
 * A [rows x n] and B [cols x n] are dense fp32, row-major with leading
 * dimensions lda, ldb >= n; (row_ptr, col_idx) is a plain CSR pattern (one
 * panel, 32-bit columns) of the sampled positions, in row-major order. For a
 * Linear layer Y = X W^T: A = dY^T [out x batch], B = X^T [in x batch], and
 * out is dL/dW at the kept positions.
 *
 * Like the SpMM ukernels (kernels.h) these never allocate, print or fail;
 * the list is kernels/f32-sddmm.inc, the scalar reference is what every
 * vector kernel is tested against (tests/check_sddmm.c).
 */
#ifndef SPARSIFY_SDDMM_H
#define SPARSIFY_SDDMM_H

#include "sparsify/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*sp_f32_sddmm_ukernel_fn)(const uint32_t *restrict row_ptr,
                                        const uint32_t *restrict col_idx, size_t r0,
                                        size_t r1, size_t n, const float *restrict a,
                                        size_t lda, const float *restrict b, size_t ldb,
                                        float *restrict out);

typedef struct sp_sddmm_ukernel_info {
    const char *name; /* "sp_f32_sddmm_ukernel_4x64__avx512" */
    sp_isa isa;
    bool reference;   /* the scalar reference */
    sp_f32_sddmm_ukernel_fn fn;
} sp_sddmm_ukernel_info;

size_t sp_sddmm_ukernel_count(void);
/* Borrowed, static; NULL when i is out of range. */
const sp_sddmm_ukernel_info *sp_sddmm_ukernel_at(size_t i);
/* By name; NULL when unknown. */
const sp_sddmm_ukernel_info *sp_sddmm_ukernel_find(const char *name);
/* The kernel to use on this CPU: the first listed of the best supported ISA
 * <= max_isa (SP_ISA_COUNT: no cap). Never NULL (the reference runs
 * anywhere). */
const sp_sddmm_ukernel_info *sp_sddmm_ukernel_best(sp_isa max_isa);

#ifdef __cplusplus
}
#endif
#endif
