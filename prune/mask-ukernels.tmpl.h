/*
 * Template of the plain-C selection ukernels (prune/mask_ukernels.h),
 * included by each ISA's file with SFX defined (scalar, avx2, avx512): the
 * loops are written so the compiler vectorises them with that file's flags.
 * The N:M and block-score kernels, which need shuffles and gathers, are
 * written with intrinsics in the ISA files themselves.
 */
#include <string.h>

#include "prune/mask_ukernels.h"

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define UK(name) CAT(CAT(sp_, name), CAT(_ukernel__, SFX))

/* One cut kernel per width: below split the limit lo, from it hi; a limit
 * above every key (one past the largest) prunes the whole stretch, which a
 * compare in the element's own width could not say. */
#define CUT_FN(W, UT, LT, ABS)                                                                \
    void UK(x##W##_cut)(UT *dst, const UT *src, size_t count, size_t split, LT lo, LT hi,      \
                        sp_kcount *c)                                                         \
    {                                                                                         \
        uint64_t zb = 0, za = 0;                                                              \
        UT ch = 0;                                                                            \
        size_t mid = split < count ? split : count;                                           \
        for (int part = 0; part < 2; part++) {                                                \
            size_t i0 = part ? mid : 0, i1 = part ? count : mid;                              \
            LT limw = part ? hi : lo;                                                         \
            if (limw > (ABS)) {                                                               \
                for (size_t i = i0; i < i1; i++) {                                            \
                    UT v = src[i];                                                            \
                    zb += (v & (ABS)) == 0;                                                   \
                    ch |= v;                                                                  \
                    dst[i] = 0;                                                               \
                }                                                                             \
                za += i1 - i0;                                                                \
                continue;                                                                     \
            }                                                                                 \
            const UT lim = (UT)limw;                                                          \
            _Pragma("omp simd reduction(+ : zb, za) reduction(| : ch)")                       \
            for (size_t i = i0; i < i1; i++) {                                                \
                UT v = src[i], a = v & (ABS);                                                 \
                UT keep = (UT)0 - (UT)(a >= lim);                                             \
                UT o = v & keep;                                                              \
                dst[i] = o;                                                                   \
                zb += a == 0;                                                                 \
                za += (o & (ABS)) == 0;                                                       \
                ch |= v & (UT)~keep;                                                          \
            }                                                                                 \
        }                                                                                     \
        c->zeros_before += zb;                                                                \
        c->zeros_after += za;                                                                 \
        c->changed |= ch != 0;                                                                \
    }

CUT_FN(16, uint16_t, uint32_t, 0x7fffu)
CUT_FN(32, uint32_t, uint64_t, 0x7fffffffu)
CUT_FN(64, uint64_t, uint64_t, 0x7fffffffffffffffull)

#define BAPPLY(UT, ABS)                                                                       \
    do {                                                                                      \
        const UT *s = src;                                                                    \
        UT *d = dst;                                                                          \
        if (bc == 1) {                                                                        \
            _Pragma("omp simd reduction(+ : zb, za) reduction(| : ch)")                       \
            for (size_t i = 0; i < cols; i++) {                                               \
                UT v = s[i], k = (UT)0 - (UT)(keep[i] != 0), o = v & k;                       \
                d[i] = o;                                                                     \
                zb += (v & (ABS)) == 0;                                                       \
                za += (o & (ABS)) == 0;                                                       \
                ch |= (v & (UT)~k) != 0;                                                      \
            }                                                                                 \
            break;                                                                            \
        }                                                                                     \
        for (size_t b0 = 0, j = 0; b0 < cols; b0 += bc, j++) {                                \
            size_t b1 = b0 + bc < cols ? b0 + bc : cols;                                      \
            UT k = (UT)0 - (UT)(keep[j] != 0);                                                \
            _Pragma("omp simd reduction(+ : zb, za) reduction(| : ch)")                       \
            for (size_t i = b0; i < b1; i++) {                                                \
                UT v = s[i], o = v & k;                                                       \
                d[i] = o;                                                                     \
                zb += (v & (ABS)) == 0;                                                       \
                za += (o & (ABS)) == 0;                                                       \
                ch |= (v & (UT)~k) != 0;                                                      \
            }                                                                                 \
        }                                                                                     \
    } while (0)

void UK(blockapply)(void *dst, const void *src, size_t es, size_t cols, size_t bc,
                    const uint8_t *keep, sp_kcount *c)
{
    uint64_t zb = 0, za = 0;
    int ch = 0;
    if (es == 2)
        BAPPLY(uint16_t, 0x7fffu);
    else if (es == 4)
        BAPPLY(uint32_t, 0x7fffffffu);
    else
        BAPPLY(uint64_t, 0x7fffffffffffffffull);
    c->zeros_before += zb;
    c->zeros_after += za;
    c->changed |= ch != 0;
}

size_t UK(x16_count_eq)(const uint16_t *src, size_t count, uint16_t key)
{
    size_t n = 0;
#pragma omp simd reduction(+ : n)
    for (size_t i = 0; i < count; i++)
        n += (src[i] & 0x7fffu) == key;
    return n;
}

size_t UK(x32_count_eq)(const uint32_t *src, size_t count, uint32_t key)
{
    size_t n = 0;
#pragma omp simd reduction(+ : n)
    for (size_t i = 0; i < count; i++)
        n += (src[i] & 0x7fffffffu) == key;
    return n;
}

#undef CUT_FN
#undef BAPPLY
