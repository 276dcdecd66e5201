/*
 * Choosing the scanning ukernels (formats/scan.h) from cpuid: a pure
 * function of the CPU, no state kept.
 */
#include "formats/scan.h"

#include "formats/cpu.h"
#include "formats/scan_config.h"

uint64_t sp_scan_zmask(sp_dtype dt)
{
    switch (dt) {
    case SP_F16:
    case SP_BF16: return 0x7fffu;
    case SP_F32: return 0x7fffffffu;
    case SP_F64: return 0x7fffffffffffffffull;
    case SP_C64: return 0x7fffffff7fffffffull; /* both halves' signs */
    default: break;
    }
    size_t es = sp_dtype_size(dt);
    if (es == 8)
        return ~(uint64_t)0;
    if (es == 1 || es == 2 || es == 4)
        return ((uint64_t)1 << (8 * es)) - 1;
    return 0;
}

bool sp_cpu_avx2(void)
{
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("bmi2");
#else
    return false;
#endif
}

bool sp_cpu_avx512(void)
{
#if defined(__x86_64__)
    return sp_cpu_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
#else
    return false;
#endif
}

static int have_avx2(void) { return SP_SCAN_AVX2 && sp_cpu_avx2(); }
static int have_avx512(void) { return SP_SCAN_AVX512 && sp_cpu_avx512(); }

const sp_scan_ukernels *sp_scan_ukernels_get(void)
{
#if SP_SCAN_AVX512
    if (have_avx512())
        return &sp_scan_ukernels_avx512;
#endif
#if SP_SCAN_AVX2
    if (have_avx2())
        return &sp_scan_ukernels_avx2;
#endif
    return &sp_scan_ukernels_scalar;
}

const sp_scan_ukernels *const *sp_scan_ukernels_all(size_t *n)
{
    static const sp_scan_ukernels *const sets[] = {
        &sp_scan_ukernels_scalar,
#if SP_SCAN_AVX2
        &sp_scan_ukernels_avx2,
#endif
#if SP_SCAN_AVX512
        &sp_scan_ukernels_avx512,
#endif
    };
    size_t k = 1;
#if SP_SCAN_AVX2
    k += have_avx2() ? 1 : 0;
#endif
#if SP_SCAN_AVX512
    k += have_avx512() ? 1 : 0;
#endif
    *n = k;
    return sets;
}
