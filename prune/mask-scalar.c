/*
 * The scalar reference of the selection ukernels (prune/mask_ukernels.h):
 * what every vector set must reproduce bit for bit, and what runs where no
 * vector ISA does.
 */
#define SFX scalar
#include "prune/mask-ukernels.tmpl.h"

#include "sparsify/common.h"

/* rank of element j in its group = the elements that beat it: a larger
 * key, or an equal key earlier in the group */
#define NM_SCALAR(UT, ABS, EXPM)                                                              \
    do {                                                                                      \
        uint64_t zb = 0, za = 0;                                                              \
        uint32_t ch = 0, nan = 0, inf = 0;                                                    \
        UT k[256];                                                                            \
        for (size_t r = 0; r < rows; r++) {                                                   \
            const UT *s = src + r * cols;                                                     \
            UT *d = dst + r * cols;                                                           \
            for (size_t c0 = 0; c0 < cols; c0 += (size_t)m) {                                 \
                int t = cols - c0 < (size_t)m ? (int)(cols - c0) : m;                         \
                for (int j = 0; j < t; j++) {                                                 \
                    UT a = s[c0 + (size_t)j] & (ABS);                                         \
                    nan |= a > (EXPM);                                                        \
                    inf |= a == (EXPM);                                                       \
                    zb += a == 0;                                                             \
                    k[j] = a;                                                                 \
                }                                                                             \
                for (int j = 0; j < t; j++) {                                                 \
                    int rank = 0;                                                             \
                    for (int l = 0; l < t; l++)                                               \
                        rank += k[l] > k[j] || (k[l] == k[j] && l < j);                       \
                    UT v = s[c0 + (size_t)j], o = rank < n ? v : 0;                           \
                    d[c0 + (size_t)j] = o;                                                    \
                    za += (o & (ABS)) == 0;                                                   \
                    ch |= o != v;                                                             \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        c->zeros_before += zb;                                                                \
        c->zeros_after += za;                                                                 \
        c->changed |= ch;                                                                     \
        c->nan |= nan;                                                                        \
        c->inf |= inf;                                                                        \
    } while (0)

void sp_x16_nm_ukernel__scalar(uint16_t *dst, const uint16_t *src, size_t rows, size_t cols,
                               int n, int m, uint16_t expm, sp_kcount *c)
{
    NM_SCALAR(uint16_t, 0x7fffu, expm);
}

void sp_x32_nm_ukernel__scalar(uint32_t *dst, const uint32_t *src, size_t rows, size_t cols,
                               int n, int m, uint32_t expm, sp_kcount *c)
{
    NM_SCALAR(uint32_t, 0x7fffffffu, expm);
}

void sp_x64_nm_ukernel__scalar(uint64_t *dst, const uint64_t *src, size_t rows, size_t cols,
                               int n, int m, uint64_t expm, sp_kcount *c)
{
    NM_SCALAR(uint64_t, 0x7fffffffffffffffull, expm);
}

/* One element as a double, its key, and whether it is finite. */
static inline double elem(const void *row, int dt, size_t i, int *nan, int *inf, int *nz)
{
    switch (dt) {
    case SP_F32: {
        uint32_t u;
        memcpy(&u, (const uint32_t *)row + i, 4);
        uint32_t a = u & 0x7fffffffu;
        *nan = a > 0x7f800000u;
        *inf = a == 0x7f800000u;
        *nz = a != 0;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case SP_F64: {
        uint64_t u;
        memcpy(&u, (const uint64_t *)row + i, 8);
        uint64_t a = u & 0x7fffffffffffffffull;
        *nan = a > 0x7ff0000000000000ull;
        *inf = a == 0x7ff0000000000000ull;
        *nz = a != 0;
        double f;
        memcpy(&f, &u, 8);
        return f;
    }
    case SP_F16: {
        uint16_t u = ((const uint16_t *)row)[i], a = u & 0x7fffu;
        *nan = a > 0x7c00u;
        *inf = a == 0x7c00u;
        *nz = a != 0;
        return sp_f16_to_f32(u);
    }
    default: {
        uint16_t u = ((const uint16_t *)row)[i], a = u & 0x7fffu;
        *nan = a > 0x7f80u;
        *inf = a == 0x7f80u;
        *nz = a != 0;
        return sp_bf16_to_f32(u);
    }
    }
}

void sp_blockscore_ukernel__scalar(const void *row, int dt, size_t cols, size_t bc, int l2,
                                   double *sum, uint64_t *nnz, sp_kcount *c)
{
    int nan = 0, inf = 0;
    for (size_t b0 = 0, j = 0; b0 < cols; b0 += bc, j++) {
        size_t b1 = b0 + bc < cols ? b0 + bc : cols;
        double s = 0.0;
        uint64_t cnt = 0;
        for (size_t i = b0; i < b1; i++) {
            int en, ei, ez;
            double v = elem(row, dt, i, &en, &ei, &ez);
            nan |= en;
            inf |= ei;
            cnt += (uint64_t)ez;
            if (en || ei)
                continue;
            s += l2 ? v * v : (v < 0 ? -v : v);
        }
        sum[j] += s;
        nnz[j] += cnt;
    }
    c->nan |= (uint32_t)nan;
    c->inf |= (uint32_t)inf;
}

const sp_mask_ukernels sp_mask_ukernels_scalar = {
    .isa = "scalar",
    .nm16 = sp_x16_nm_ukernel__scalar,
    .nm32 = sp_x32_nm_ukernel__scalar,
    .nm64 = sp_x64_nm_ukernel__scalar,
    .cut16 = sp_x16_cut_ukernel__scalar,
    .cut32 = sp_x32_cut_ukernel__scalar,
    .cut64 = sp_x64_cut_ukernel__scalar,
    .blockscore = sp_blockscore_ukernel__scalar,
    .blockapply = sp_blockapply_ukernel__scalar,
    .count_eq16 = sp_x16_count_eq_ukernel__scalar,
    .count_eq32 = sp_x32_count_eq_ukernel__scalar,
};
