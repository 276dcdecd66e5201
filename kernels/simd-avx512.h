/*
 * kernels/simd-avx512.h — the vector vocabulary the kernel templates are
 * written in, for AVX-512 (F + BW + VL + DQ). Included only by the
 * *-avx512.c files, which are compiled with -mavx512f -mavx512bw ...
 * Its twin is simd-avx2.h; the templates (f32-*.tmpl.h) see only sp_v*.
 */
#ifndef SP_SIMD_H
#define SP_SIMD_H
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define SP_INLINE static inline __attribute__((always_inline))
#define SP_VW 16        /* floats per vector */
#define SP_T_CSR 4      /* vectors per row in the CSR/NM N-tile (64 floats) */
#define SP_T_BLK 4      /* vectors per row in the block/dense N-tile */
#define SP_TMAX 4

typedef __m512 sp_vf;
typedef __mmask16 sp_vm;

SP_INLINE sp_vm sp_vm_first(size_t cnt) { return (sp_vm)((1u << cnt) - 1u); }
SP_INLINE sp_vf sp_vzero(void) { return _mm512_setzero_ps(); }
SP_INLINE sp_vf sp_vset1(float v) { return _mm512_set1_ps(v); }
SP_INLINE sp_vf sp_vload(const float *p) { return _mm512_loadu_ps(p); }
SP_INLINE sp_vf sp_vloadm(const float *p, sp_vm m) { return _mm512_maskz_loadu_ps(m, p); }
SP_INLINE void sp_vstore(float *p, sp_vf v) { _mm512_storeu_ps(p, v); }
SP_INLINE void sp_vstorem(float *p, sp_vf v, sp_vm m) { _mm512_mask_storeu_ps(p, m, v); }
SP_INLINE sp_vf sp_vfma(sp_vf a, sp_vf b, sp_vf c) { return _mm512_fmadd_ps(a, b, c); }
SP_INLINE sp_vf sp_vadd(sp_vf a, sp_vf b) { return _mm512_add_ps(a, b); }
SP_INLINE float sp_vhsum(sp_vf v) { return _mm512_reduce_add_ps(v); }

/* x[ci[i] * ldx] for the SP_VW indices at ci. */
SP_INLINE sp_vf sp_vgather_u16(const uint16_t *ci, const float *x, int ldx)
{
    __m512i vi = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)ci));
    if (ldx != 1)
        vi = _mm512_mullo_epi32(vi, _mm512_set1_epi32(ldx));
    return _mm512_i32gather_ps(vi, x, 4);
}
/* The same for the first cnt (< SP_VW) indices; other lanes are 0 and
 * nothing past ci[cnt-1] is read. */
SP_INLINE sp_vf sp_vgather_u16m(const uint16_t *ci, const float *x, int ldx, size_t cnt)
{
    const sp_vm m = sp_vm_first(cnt);
    __m512i vi = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, ci));
    if (ldx != 1)
        vi = _mm512_mullo_epi32(vi, _mm512_set1_epi32(ldx));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, vi, x, 4);
}
#endif
