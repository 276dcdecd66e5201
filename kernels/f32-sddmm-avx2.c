/* SDDMM, 4 positions x 32 floats of n in registers, avx2. See f32-sddmm.tmpl.h. */
#include "kernels/simd-avx2.h"

/* out[0..3] = the horizontal sums of a, b, c, d. */
SP_INLINE void sp_vhsum4(float *out, sp_vf a, sp_vf b, sp_vf c, sp_vf d)
{
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

#define SP_FN sp_f32_sddmm_ukernel_4x32__avx2
#include "kernels/f32-sddmm.tmpl.h"
