/*
 * kernels/spmat.c — packing a dense masked weight into the layouts of
 * sp_spmat (include/sparsify/kernels.h documents them) and back.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sparsify/kernels.h"

const char *sp_layout_name(sp_layout l)
{
    switch (l) {
    case SP_LAYOUT_DENSE: return "dense";
    case SP_LAYOUT_CSR: return "csr";
    case SP_LAYOUT_BCSR: return "bcsr";
    case SP_LAYOUT_NM: return "nm";
    }
    return "?";
}

void sp_spmat_free(sp_spmat *s)
{
    if (!s)
        return;
    free(s->row_ptr);
    free(s->col_idx);
    free(s->values);
    free(s->nm_idx);
    free(s);
}

size_t sp_spmat_bytes(const sp_spmat *s)
{
    size_t b = s->nstored * sizeof(float);
    if (s->layout == SP_LAYOUT_CSR)
        b += (s->npanels * s->rows + 1) * sizeof(uint32_t) + s->nstored * sizeof(uint16_t);
    else if (s->layout == SP_LAYOUT_BCSR)
        b += (s->nbrows + 1) * sizeof(uint32_t) + s->nblocks * sizeof(uint16_t);
    else if (s->layout == SP_LAYOUT_NM)
        b += s->rows * s->nm_stride + 1;
    return b;
}

static sp_status pack_dense(sp_spmat *s, const float *w, size_t nnz, sp_error *err)
{
    s->layout = SP_LAYOUT_DENSE;
    s->br = s->bc = 1;
    s->nbrows = s->rows;
    s->nnz = nnz;
    s->nstored = s->rows * s->cols;
    s->values = malloc((s->nstored ? s->nstored : 1) * sizeof(float));
    if (!s->values)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory packing a %zux%zu matrix",
                            s->rows, s->cols);
    memcpy(s->values, w, s->nstored * sizeof(float));
    return SP_OK;
}

static sp_status pack_bcsr(sp_spmat *s, const float *w, size_t br, size_t bc,
                           sp_error *err)
{
    const size_t M = s->rows, K = s->cols;
    if (K > 65536)
        return sp_error_set(err, SP_ERR_UNSUPPORTED,
                            "%zu columns: sparse layouts index columns with 16 bits "
                            "(at most 65536)", K);
    s->br = br;
    s->bc = bc;
    s->nbrows = (M + br - 1) / br;
    const size_t nbc = (K + bc - 1) / bc;
    /* Pass 1: count nonzero blocks. */
    size_t nblocks = 0;
    for (size_t i = 0; i < s->nbrows; i++)
        for (size_t j = 0; j < nbc; j++) {
            bool any = false;
            for (size_t r = i * br; r < M && r < i * br + br && !any; r++)
                for (size_t c = j * bc; c < K && c < j * bc + bc; c++)
                    if (w[r * K + c] != 0.0f) {
                        any = true;
                        break;
                    }
            nblocks += any;
        }
    if (nblocks * br * bc > UINT32_MAX || nblocks > UINT32_MAX)
        return sp_error_set(err, SP_ERR_UNSUPPORTED,
                            "%zu stored values: more than 2^32-1", nblocks * br * bc);
    s->nblocks = nblocks;
    s->nstored = nblocks * br * bc;
    s->row_ptr = malloc((s->nbrows + 1) * sizeof(uint32_t));
    s->col_idx = malloc((nblocks ? nblocks : 1) * sizeof(uint16_t));
    s->values = calloc(s->nstored ? s->nstored : 1, sizeof(float));
    if (!s->row_ptr || !s->col_idx || !s->values)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory packing a %zux%zu matrix",
                            M, K);
    size_t b = 0;
    s->row_ptr[0] = 0;
    for (size_t i = 0; i < s->nbrows; i++) {
        for (size_t j = 0; j < nbc; j++) {
            bool any = false;
            for (size_t r = i * br; r < M && r < i * br + br && !any; r++)
                for (size_t c = j * bc; c < K && c < j * bc + bc; c++)
                    if (w[r * K + c] != 0.0f) {
                        any = true;
                        break;
                    }
            if (!any)
                continue;
            float *blk = s->values + b * br * bc; /* zeroed by calloc */
            for (size_t r = i * br; r < M && r < i * br + br; r++)
                for (size_t c = j * bc; c < K && c < j * bc + bc; c++)
                    blk[(r - i * br) * bc + (c - j * bc)] = w[r * K + c];
            s->col_idx[b++] = (uint16_t)(j * bc);
        }
        s->row_ptr[i + 1] = (uint32_t)b;
    }
    return SP_OK;
}

/* CSR in K-panels of kc columns: panel-major, then row, then column. */
static sp_status pack_csr(sp_spmat *s, const float *w, sp_error *err)
{
    const size_t M = s->rows, K = s->cols;
    if (K > 65536)
        return sp_error_set(err, SP_ERR_UNSUPPORTED,
                            "%zu columns: sparse layouts index columns with 16 bits "
                            "(at most 65536)", K);
    s->br = s->bc = 1;
    s->nbrows = M;
    s->kc = K > SP_CSR_KC ? SP_CSR_KC : (K ? K : 1);
    s->npanels = K ? (K + s->kc - 1) / s->kc : 1;
    size_t nnz = 0;
    for (size_t i = 0; i < M * K; i++)
        nnz += w[i] != 0.0f;
    if (nnz > UINT32_MAX || s->npanels * M + 1 > UINT32_MAX)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "%zu nonzeros: more than 2^32-1", nnz);
    s->nstored = nnz;
    s->row_ptr = malloc((s->npanels * M + 1) * sizeof(uint32_t));
    s->col_idx = malloc((nnz ? nnz : 1) * sizeof(uint16_t));
    s->values = malloc((nnz ? nnz : 1) * sizeof(float));
    if (!s->row_ptr || !s->col_idx || !s->values)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory packing a %zux%zu matrix",
                            M, K);
    size_t j = 0;
    for (size_t p = 0; p < s->npanels; p++) {
        const size_t c0 = p * s->kc, c1 = c0 + s->kc < K ? c0 + s->kc : K;
        for (size_t r = 0; r < M; r++) {
            s->row_ptr[p * M + r] = (uint32_t)j;
            for (size_t c = c0; c < c1; c++) {
                const float v = w[r * K + c];
                if (v != 0.0f) {
                    s->values[j] = v;
                    s->col_idx[j++] = (uint16_t)c;
                }
            }
        }
    }
    s->row_ptr[s->npanels * M] = (uint32_t)j;
    return SP_OK;
}

static sp_status pack_nm(sp_spmat *s, const float *w, int n, int m, sp_error *err)
{
    const size_t M = s->rows, K = s->cols;
    if (m < 2 || m > 16 || n < 1 || n > m)
        return sp_error_set(err, SP_ERR_UNSUPPORTED,
                            "%d:%d: the N:M layout needs 1 <= n <= m and 2 <= m <= 16", n, m);
    int bits = 1;
    while ((1 << bits) < m)
        bits++;
    s->n = n;
    s->m = m;
    s->nm_bits = bits;
    s->nm_groups = (K + (size_t)m - 1) / (size_t)m;
    s->nbrows = M;
    const size_t slots = s->nm_groups * (size_t)n;
    s->nm_stride = (slots * (size_t)bits + 7) / 8;
    s->nstored = M * slots;
    s->values = calloc(s->nstored ? s->nstored : 1, sizeof(float));
    /* +1: kernels read the bit string through a 16-bit window. */
    s->nm_idx = calloc(M * s->nm_stride + 1, 1);
    if (!s->values || !s->nm_idx)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory packing a %zux%zu matrix",
                            M, K);
    for (size_t r = 0; r < M; r++) {
        uint8_t *ix = s->nm_idx + r * s->nm_stride;
        for (size_t g = 0; g < s->nm_groups; g++) {
            size_t used = 0;
            for (size_t c = g * (size_t)m; c < K && c < (g + 1) * (size_t)m; c++) {
                const float v = w[r * K + c];
                if (v == 0.0f)
                    continue;
                if (used == (size_t)n)
                    return sp_error_set(err, SP_ERR_INVALID_ARG,
                                        "row %zu, columns %zu..%zu: more than %d nonzeros "
                                        "in a group of %d (not %d:%d sparse)",
                                        r, g * (size_t)m,
                                        (g + 1) * (size_t)m - 1 < K - 1 ? (g + 1) * (size_t)m - 1 : K - 1,
                                        n, m, n, m);
                const size_t slot = g * (size_t)n + used++;
                s->values[r * slots + slot] = v;
                const unsigned off = (unsigned)(c - g * (size_t)m);
                for (int i = 0; i < bits; i++) {
                    const size_t bit = slot * (size_t)bits + (size_t)i;
                    if (off >> i & 1u)
                        ix[bit >> 3] |= (uint8_t)(1u << (bit & 7));
                }
            }
        }
    }
    return SP_OK;
}

sp_status sp_spmat_pack(sp_spmat **out, const float *w, size_t rows, size_t cols,
                        const sp_pattern *pattern, sp_error *err)
{
    *out = NULL;
    sp_status st = SP_OK;
    sp_spmat *s = calloc(1, sizeof *s);
    if (!s)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    s->rows = rows;
    s->cols = cols;
    size_t nnz = 0;
    for (size_t i = 0; i < rows * cols; i++)
        nnz += w[i] != 0.0f;
    if (!pattern) {
        st = pack_dense(s, w, nnz, err);
    } else if (pattern->kind == SP_PATTERN_UNSTRUCTURED ||
               (pattern->kind == SP_PATTERN_BLOCK && pattern->r == 1 && pattern->c == 1)) {
        s->layout = SP_LAYOUT_CSR;
        st = pack_csr(s, w, err);
    } else if (pattern->kind == SP_PATTERN_BLOCK) {
        if (pattern->r < 1 || pattern->c < 1 || pattern->r > 4096 || pattern->c > 4096) {
            st = sp_error_set(err, SP_ERR_INVALID_ARG, "block %lldx%lld: sizes must be 1..4096",
                              (long long)pattern->r, (long long)pattern->c);
            goto out;
        }
        s->layout = SP_LAYOUT_BCSR;
        st = pack_bcsr(s, w, (size_t)pattern->r, (size_t)pattern->c, err);
    } else if (pattern->kind == SP_PATTERN_NM) {
        s->layout = SP_LAYOUT_NM;
        st = pack_nm(s, w, pattern->n, pattern->m, err);
    } else {
        st = sp_error_set(err, SP_ERR_INVALID_ARG, "unknown pattern kind %d", (int)pattern->kind);
    }
    s->nnz = nnz;
out:
    if (st != SP_OK) {
        sp_spmat_free(s);
        return st;
    }
    *out = s;
    return SP_OK;
}

void sp_spmat_unpack(const sp_spmat *s, float *w)
{
    const size_t M = s->rows, K = s->cols;
    if (s->layout == SP_LAYOUT_DENSE) {
        memcpy(w, s->values, M * K * sizeof(float));
        return;
    }
    memset(w, 0, M * K * sizeof(float));
    if (s->layout == SP_LAYOUT_CSR) {
        for (size_t i = 0; i < s->npanels * M; i++)
            for (size_t j = s->row_ptr[i]; j < s->row_ptr[i + 1]; j++)
                w[(i % M) * K + s->col_idx[j]] = s->values[j];
    } else if (s->layout == SP_LAYOUT_BCSR) {
        const size_t br = s->br, bc = s->bc;
        for (size_t i = 0; i < s->nbrows; i++)
            for (size_t b = s->row_ptr[i]; b < s->row_ptr[i + 1]; b++) {
                const float *blk = s->values + b * br * bc;
                for (size_t r = 0; r < br && i * br + r < M; r++)
                    for (size_t c = 0; c < bc && s->col_idx[b] + c < K; c++)
                        w[(i * br + r) * K + s->col_idx[b] + c] = blk[r * bc + c];
            }
    } else if (s->layout == SP_LAYOUT_NM) {
        const size_t slots = s->nm_groups * (size_t)s->n;
        for (size_t r = 0; r < M; r++) {
            const uint8_t *ix = s->nm_idx + r * s->nm_stride;
            for (size_t sl = 0; sl < slots; sl++) {
                const float v = s->values[r * slots + sl];
                if (v == 0.0f)
                    continue;
                unsigned off = 0;
                for (int i = 0; i < s->nm_bits; i++) {
                    const size_t bit = sl * (size_t)s->nm_bits + (size_t)i;
                    off |= (unsigned)((ix[bit >> 3] >> (bit & 7)) & 1u) << i;
                }
                w[r * K + (sl / (size_t)s->n) * (size_t)s->m + off] = v;
            }
        }
    }
}

void sp_spmat_value_map(const sp_spmat *s, uint32_t *map)
{
    const size_t M = s->rows, K = s->cols;
    size_t k = 0;
    switch (s->layout) {
    case SP_LAYOUT_DENSE:
        assert(M * K <= UINT32_MAX);
        for (size_t i = 0; i < M * K; i++)
            if (s->values[i] != 0.0f)
                map[k++] = (uint32_t)i;
        break;
    case SP_LAYOUT_CSR:
        /* every stored value is a nonzero of the source: row by row, the
         * row's pieces panel by panel (panels are column ranges) */
        for (size_t r = 0; r < M; r++)
            for (size_t p = 0; p < s->npanels; p++)
                for (size_t j = s->row_ptr[p * M + r]; j < s->row_ptr[p * M + r + 1]; j++)
                    map[k++] = (uint32_t)j;
        break;
    case SP_LAYOUT_BCSR: {
        const size_t br = s->br, bc = s->bc;
        for (size_t r = 0; r < M; r++) {
            const size_t i = r / br, rr = r % br;
            for (size_t b = s->row_ptr[i]; b < s->row_ptr[i + 1]; b++)
                for (size_t c = 0; c < bc && s->col_idx[b] + c < K; c++) {
                    const size_t v = b * br * bc + rr * bc + c;
                    if (s->values[v] != 0.0f)
                        map[k++] = (uint32_t)v;
                }
        }
        break;
    }
    case SP_LAYOUT_NM: {
        /* a group's slots are filled in column order, empty slots last */
        const size_t slots = s->nm_groups * (size_t)s->n;
        for (size_t r = 0; r < M; r++)
            for (size_t sl = 0; sl < slots; sl++)
                if (s->values[r * slots + sl] != 0.0f)
                    map[k++] = (uint32_t)(r * slots + sl);
        break;
    }
    }
    assert(k == s->nnz);
    (void)k;
}
