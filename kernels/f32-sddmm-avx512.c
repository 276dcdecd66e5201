/* SDDMM, 4 positions x 64 floats of n in registers, avx512. See f32-sddmm.tmpl.h. */
#include "kernels/simd-avx512.h"

/* out[0..3] = the horizontal sums of a, b, c, d. */
SP_INLINE void sp_vhsum4(float *out, sp_vf a, sp_vf b, sp_vf c, sp_vf d)
{
    const __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    const __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
    const __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
    const __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a8, b8), _mm256_hadd_ps(c8, d8));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

#define SP_FN sp_f32_sddmm_ukernel_4x64__avx512
#include "kernels/f32-sddmm.tmpl.h"
