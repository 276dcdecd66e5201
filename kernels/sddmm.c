/*
 * kernels/sddmm.c — the registry of SDDMM ukernels (kernels/f32-sddmm.inc)
 * and the choice of one for this CPU. Threading is the caller's: rows are
 * independent, so any split of [0, rows) into ranges runs in parallel.
 */
#include <string.h>

#include "kernels/sddmm_ukernels.h"

static const sp_sddmm_ukernel_info registry[] = {
#define SP_SDDMM_UKERNEL(name, isa, ref) {#name, SP_ISA_##isa, ref, name},
#include "kernels/f32-sddmm.inc"
#undef SP_SDDMM_UKERNEL
};

size_t sp_sddmm_ukernel_count(void) { return sizeof registry / sizeof registry[0]; }

const sp_sddmm_ukernel_info *sp_sddmm_ukernel_at(size_t i)
{
    return i < sp_sddmm_ukernel_count() ? &registry[i] : NULL;
}

const sp_sddmm_ukernel_info *sp_sddmm_ukernel_find(const char *name)
{
    for (size_t i = 0; i < sp_sddmm_ukernel_count(); i++)
        if (!strcmp(registry[i].name, name))
            return &registry[i];
    return NULL;
}

const sp_sddmm_ukernel_info *sp_sddmm_ukernel_best(sp_isa max_isa)
{
    const sp_sddmm_ukernel_info *best = &registry[0];
    for (size_t i = 0; i < sp_sddmm_ukernel_count(); i++) {
        const sp_sddmm_ukernel_info *k = &registry[i];
        if (k->isa <= max_isa && k->isa > best->isa && sp_isa_supported(k->isa))
            best = k;
    }
    return best;
}
