/*
 * Internal: which x86-64 vector extensions the running CPU has, for
 * choosing per-ISA ukernels (formats/scan.h, prune/mask_ukernels.h). Pure
 * functions of the CPU (cpuid through the compiler's builtin).
 */
#ifndef SPARSIFY_FORMATS_CPU_H
#define SPARSIFY_FORMATS_CPU_H

#include <stdbool.h>

/* AVX2, FMA and BMI2 (every such CPU has F16C too). */
bool sp_cpu_avx2(void);
/* The AVX2 set plus AVX-512 F, BW, VL and DQ. */
bool sp_cpu_avx512(void);

#endif
