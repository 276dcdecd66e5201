/*
 * Template (included by mask.c with KEY_T and SFX defined): radix select of
 * the k smallest (key, index) units over an array of unsigned keys.
 *
 * Work is split into fixed chunks (not threads), each with its own
 * histogram, so the candidates of the boundary bucket can be gathered in
 * parallel at known offsets and the result never depends on scheduling.
 */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define KTH CAT(kth_key_, SFX)
#define SELECT CAT(select_units_, SFX)
#define SELECTNM CAT(select_nm_, SFX)

static sp_status KTH(const KEY_T *keys, size_t n, size_t k, KEY_T *out, size_t *nless,
                     size_t *neq, sp_error *err)
{
    enum { DIGIT = 16, NB = 1 << DIGIT };
    const KEY_T *cur = keys;
    KEY_T *buf = NULL;
    size_t *hist = NULL, less = 0;
    sp_status st = SP_OK;
    const size_t nchunks = sp__nchunks();
    hist = malloc(nchunks * NB * sizeof(size_t));
    if (!hist) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory selecting %zu units", n);
        goto out;
    }
    for (;;) {
        KEY_T lo = (KEY_T)~(KEY_T)0, hi = 0;
#pragma omp parallel for simd reduction(min : lo) reduction(max : hi) if (n > PAR_MIN) schedule(static)
        for (size_t i = 0; i < n; i++) {
            KEY_T v = cur[i];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        if (lo == hi) {
            *out = lo;
            *nless = less;
            *neq = n;
            goto out;
        }
        KEY_T range = hi - lo;
        int bits = (int)(8 * sizeof(unsigned long long)) - __builtin_clzll((unsigned long long)range);
        int shift = bits > DIGIT ? bits - DIGIT : 0;
        size_t nbins = (size_t)(range >> shift) + 1;
        size_t nc = n > PAR_MIN ? nchunks : 1;
#pragma omp parallel for if (nc > 1) schedule(static, 1)
        for (size_t c = 0; c < nc; c++) {
            size_t *h = hist + c * NB;
            memset(h, 0, nbins * sizeof(size_t));
            for (size_t i = c * n / nc, e = (c + 1) * n / nc; i < e; i++)
                h[(cur[i] - lo) >> shift]++;
        }
        size_t b = 0, cum = 0;
        for (;; b++) {
            size_t hb = 0;
            for (size_t c = 0; c < nc; c++)
                hb += hist[c * NB + b];
            if (cum + hb >= k)
                break;
            cum += hb;
        }
        less += cum;
        k -= cum;
        size_t cnt = 0;
        for (size_t c = 0; c < nc; c++)
            cnt += hist[c * NB + b];
        if (shift == 0) {
            *out = (KEY_T)(lo + b);
            *nless = less;
            *neq = cnt;
            goto out;
        }
        /* keep only the boundary bucket's keys (order does not matter) */
        KEY_T *nbuf = malloc(sizeof(KEY_T) * cnt);
        if (!nbuf) {
            st = sp_error_set(err, SP_ERR_NOMEM, "out of memory selecting %zu units", n);
            goto out;
        }
#pragma omp parallel for if (nc > 1) schedule(static, 1)
        for (size_t c = 0; c < nc; c++) {
            size_t j = 0;
            for (size_t p = 0; p < c; p++)
                j += hist[p * NB + b];
            for (size_t i = c * n / nc, e = (c + 1) * n / nc; i < e; i++)
                if ((size_t)((cur[i] - lo) >> shift) == b)
                    nbuf[j++] = cur[i];
        }
        free(buf);
        buf = nbuf;
        cur = nbuf;
        n = cnt;
    }
out:
    free(buf);
    free(hist);
    return st;
}

/* keep[i] = 0 for the k units with the smallest (key, index), else 1. */
static sp_status SELECT(uint8_t *keep, const KEY_T *keys, size_t n, size_t k, sp_error *err)
{
    if (k == 0) {
        memset(keep, 1, n);
        return SP_OK;
    }
    if (k >= n) {
        memset(keep, 0, n);
        return SP_OK;
    }
    KEY_T T = 0;
    size_t nless = 0, neq = 0;
    sp_status st = KTH(keys, n, k, &T, &nless, &neq, err);
    if (st)
        return st;
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++)
        keep[i] = keys[i] > T;
    size_t need = k - nless; /* how many of the ties at T are pruned */
    if (need < neq) {
        /* ties: the lower indices are pruned first */
        for (size_t i = 0; i < n; i++)
            if (keys[i] == T) {
                if (need)
                    need--;
                else
                    keep[i] = 1;
            }
    }
    return SP_OK;
}


/* N:M: in each group of M consecutive weights along the input dimension keep
 * the min(N, t) largest keys; among equal keys the earlier ones are kept. */
static sp_status SELECTNM(uint8_t *mask, const KEY_T *keys, const sp_wgeom *g,
                           const sp_pattern *p, sp_error *err)
{
    const int64_t M = p->m, N = p->n;
    const int64_t ngroups = (g->cols + M - 1) / M;
    const size_t numel = (size_t)(g->nmat * g->rows * g->cols);
    int nomem = 0;
#pragma omp parallel reduction(| : nomem) if (numel > PAR_MIN)
    {
        KEY_T *k = malloc(sizeof(KEY_T) * (size_t)M);
        size_t *idx = malloc(sizeof(size_t) * (size_t)M);
        if (!k || !idx)
            nomem = 1;
#pragma omp for collapse(2) schedule(static)
        for (int64_t m = 0; m < g->nmat; m++)
            for (int64_t r = 0; r < g->rows; r++) {
                if (!k || !idx)
                    continue;
                size_t base = (size_t)(m * g->mat_stride + r * g->row_stride);
                for (int64_t gi = 0; gi < ngroups; gi++) {
                    int64_t c0 = gi * M, t = g->cols - c0 < M ? g->cols - c0 : M;
                    for (int64_t j = 0; j < t; j++) {
                        idx[j] = base + (size_t)((c0 + j) * g->col_stride);
                        k[j] = keys[idx[j]];
                    }
                    /* rank of j = number of elements that beat it */
                    for (int64_t j = 0; j < t; j++) {
                        int64_t rank = 0;
                        for (int64_t a = 0; a < t && rank < N; a++)
                            rank += k[a] > k[j] || (k[a] == k[j] && a < j);
                        mask[idx[j]] = rank < N;
                    }
                }
            }
        free(k);
        free(idx);
    }
    if (nomem)
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    return SP_OK;
}


#undef KTH
#undef SELECT
#undef SELECTNM
#undef CAT
#undef CAT_
