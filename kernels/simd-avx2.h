/*
 * kernels/simd-avx2.h — the vector vocabulary of the kernel templates for
 * AVX2 + FMA (8 floats, 16 ymm registers, masks as integer vectors).
 * Included only by the *-avx2.c files, compiled with -mavx2 -mfma.
 */
#ifndef SP_SIMD_H
#define SP_SIMD_H
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define SP_INLINE static inline __attribute__((always_inline))
#define SP_VW 8
#define SP_T_CSR 4      /* 32 floats per row: 8 accumulators */
#define SP_T_BLK 2      /* 4 rows x 16 floats: 8 accumulators */
#define SP_TMAX 4

typedef __m256 sp_vf;
typedef __m256i sp_vm;

SP_INLINE sp_vm sp_vm_first(size_t cnt)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)cnt),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
SP_INLINE sp_vf sp_vzero(void) { return _mm256_setzero_ps(); }
SP_INLINE sp_vf sp_vset1(float v) { return _mm256_set1_ps(v); }
SP_INLINE sp_vf sp_vload(const float *p) { return _mm256_loadu_ps(p); }
SP_INLINE sp_vf sp_vloadm(const float *p, sp_vm m) { return _mm256_maskload_ps(p, m); }
SP_INLINE void sp_vstore(float *p, sp_vf v) { _mm256_storeu_ps(p, v); }
SP_INLINE void sp_vstorem(float *p, sp_vf v, sp_vm m) { _mm256_maskstore_ps(p, m, v); }
SP_INLINE sp_vf sp_vfma(sp_vf a, sp_vf b, sp_vf c) { return _mm256_fmadd_ps(a, b, c); }
SP_INLINE sp_vf sp_vadd(sp_vf a, sp_vf b) { return _mm256_add_ps(a, b); }
SP_INLINE float sp_vhsum(sp_vf v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

SP_INLINE sp_vf sp_vgather_u16(const uint16_t *ci, const float *x, int ldx)
{
    __m256i vi = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)ci));
    if (ldx != 1)
        vi = _mm256_mullo_epi32(vi, _mm256_set1_epi32(ldx));
    return _mm256_i32gather_ps(x, vi, 4);
}
SP_INLINE sp_vf sp_vgather_u16m(const uint16_t *ci, const float *x, int ldx, size_t cnt)
{
    int32_t idx[8] = {0};
    for (size_t i = 0; i < cnt; i++)
        idx[i] = (int32_t)ci[i] * ldx;
    const __m256i vi = _mm256_loadu_si256((const __m256i *)idx);
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, vi,
                                    _mm256_castsi256_ps(sp_vm_first(cnt)), 4);
}
#endif
