/*
 * Choosing the selection ukernels (prune/mask_ukernels.h) from cpuid. The
 * choice is a pure function of the CPU (no state is kept).
 */
#include "prune/mask_ukernels.h"

#include "formats/cpu.h"
#include "prune/mask_config.h"

static int have_avx2(void) { return SP_MASK_AVX2 && sp_cpu_avx2(); }
static int have_avx512(void) { return SP_MASK_AVX512 && sp_cpu_avx512(); }

const sp_mask_ukernels *sp_mask_ukernels_get(void)
{
#if SP_MASK_AVX512
    if (have_avx512())
        return &sp_mask_ukernels_avx512;
#endif
#if SP_MASK_AVX2
    if (have_avx2())
        return &sp_mask_ukernels_avx2;
#endif
    return &sp_mask_ukernels_scalar;
}

const sp_mask_ukernels *const *sp_mask_ukernels_all(size_t *n)
{
    static const sp_mask_ukernels *const sets[] = {
        &sp_mask_ukernels_scalar,
#if SP_MASK_AVX2
        &sp_mask_ukernels_avx2,
#endif
#if SP_MASK_AVX512
        &sp_mask_ukernels_avx512,
#endif
    };
    size_t k = 1;
#if SP_MASK_AVX2
    k += have_avx2() ? 1 : 0;
#endif
#if SP_MASK_AVX512
    k += have_avx512() ? 1 : 0;
#endif
    /* a CPU with AVX-512 has AVX2: the prefix of the table is what runs */
    *n = k;
    return sets;
}
