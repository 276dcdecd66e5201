/*
 * Unit tests: the .spz writer/reader (formats/spz.c) and compressed-tensors
 * interop (formats/ctensors.c): bit-exact round trips for every encoding and
 * dtype, the chosen encodings, corrupted and lying files, the sparse-bitmask
 * byte layout (worked example) and 2:4.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "sparsify/sparsify.h"
#include "testutil.h"

static char tmpdir[256];

static void setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/check_spz_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *tp(const char *name) { return tu_join(tmpdir, name); }

/* xorshift: deterministic data */
static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static double urand(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

/* A random tensor of dtype dt: float values ~N-ish, ints random; elements
 * zeroed with probability `sparsity`; a few zeros made -0.0 when negz. */
static void *make_data(sp_dtype dt, uint64_t n, double sparsity, bool negz)
{
    size_t es = sp_dtype_size(dt);
    unsigned char *p = calloc(n ? n : 1, es);
    for (uint64_t i = 0; i < n; i++) {
        unsigned char *x = p + i * es;
        if (urand() < sparsity) {
            if (negz && sp_dtype_is_float(dt) && (rnd() & 3) == 0)
                x[es - 1] = 0x80;
            continue;
        }
        float f = (float)(urand() * 2 - 1) * 0.05f + (urand() < 0.5 ? 0.01f : -0.01f);
        switch (dt) {
        case SP_F32: memcpy(x, &f, 4); break;
        case SP_F64: { double d = f; memcpy(x, &d, 8); break; }
        case SP_F16: { uint16_t h = (uint16_t)(0x2000 + (rnd() % 0x2000) + ((rnd() & 1) << 15)); memcpy(x, &h, 2); break; }
        case SP_BF16: { uint32_t u; memcpy(&u, &f, 4); uint16_t h = (uint16_t)(u >> 16); if (!(h & 0x7fff)) h |= 1; memcpy(x, &h, 2); break; }
        case SP_BOOL: x[0] = 1; break;
        default:
            for (size_t b = 0; b < es; b++)
                x[b] = (unsigned char)rnd();
            if (!memchr(x, 0, es) && 0) break;
            x[0] |= 1;
        }
    }
    return p;
}

/* Prune data in place to N:M along the input dim of a 2-D [r, c] tensor. */
static void make_nm(void *data, sp_dtype dt, int64_t r, int64_t c, int n, int m)
{
    size_t es = sp_dtype_size(dt);
    unsigned char *p = data;
    for (int64_t i = 0; i < r; i++)
        for (int64_t g = 0; g < c; g += m) {
            int keep = 0;
            for (int j = 0; j < m; j++) {
                unsigned char *x = p + ((uint64_t)(i * c + g + j)) * es;
                bool nz = false;
                for (size_t b = 0; b < es; b++)
                    nz |= x[b] != 0;
                if (nz && keep < n && (rnd() & 1))
                    keep++;
                else
                    memset(x, 0, es);
            }
        }
}

/* Zero whole br x bc blocks of a [r, c] tensor with probability s. */
static void make_blocks(void *data, sp_dtype dt, int64_t r, int64_t c, int64_t br, int64_t bc, double s)
{
    size_t es = sp_dtype_size(dt);
    unsigned char *p = data;
    for (int64_t r0 = 0; r0 < r; r0 += br)
        for (int64_t c0 = 0; c0 < c; c0 += bc) {
            if (urand() >= s)
                continue;
            for (int64_t i = r0; i < r0 + br && i < r; i++)
                for (int64_t j = c0; j < c0 + bc && j < c; j++)
                    memset(p + (uint64_t)(i * c + j) * es, 0, es);
        }
}

/* f32 data: exactly n nonzeros at random positions of every group of m. */
static void make_nm_exact(float *w, uint64_t numel, int n, int m)
{
    for (uint64_t i = 0; i < numel; i += (uint64_t)m) {
        for (int j = 0; j < m; j++)
            w[i + (uint64_t)j] = 0.0f;
        for (int k = 0; k < n;) {
            int j = (int)(rnd() % (uint64_t)m);
            if (w[i + (uint64_t)j] == 0.0f) {
                w[i + (uint64_t)j] = (float)(urand() - 0.5) + (urand() < 0.5 ? 0.01f : -0.01f);
                k++;
            }
        }
    }
}

typedef struct tdesc {
    const char *name;
    sp_dtype dt;
    int ndim;
    int64_t shape[4];
    void *data;
} tdesc;

static uint64_t numel_of(const tdesc *t)
{
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= (uint64_t)t->shape[d];
    return n;
}

static sp_spz_tensor_info infos[64];

static void write_spz(const char *path, const tdesc *ts, size_t n, const sp_spz_options *o)
{
    sp_spz_writer *w = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_spz_writer_new(&w, path, o, "{\"k\":\"v\"}", &err), SP_OK);
    for (size_t i = 0; i < n; i++) {
        sp_tensor_data td;
        memset(&td, 0, sizeof td);
        td.name = ts[i].name;
        td.dtype = ts[i].dt;
        td.ndim = ts[i].ndim;
        memcpy(td.shape, ts[i].shape, sizeof ts[i].shape);
        td.data = ts[i].data;
        sp_status s = sp_spz_writer_add(w, &td, &infos[i], &err);
        ck_assert_msg(s == SP_OK, "add %s: %s", ts[i].name, err.msg);
    }
    uint64_t size = 0;
    ck_assert_int_eq(sp_spz_writer_finish(w, &size, &err), SP_OK);
    sp_spz_writer_free(w);
    ck_assert_uint_gt(size, 64);
}

/* Every tensor of path equals ts bit for bit (through sp_ckpt). */
static void check_same(const char *path, const tdesc *ts, size_t n)
{
    sp_ckpt *ck = NULL;
    sp_error err = {0};
    ck_assert_msg(sp_ckpt_open(&ck, path, &err) == SP_OK, "%s", err.msg);
    ck_assert_uint_eq(sp_ckpt_num_tensors(ck), n);
    for (size_t i = 0; i < n; i++) {
        long k = sp_ckpt_find(ck, ts[i].name);
        ck_assert_msg(k >= 0, "missing %s", ts[i].name);
        const sp_tensor *t = sp_ckpt_tensor(ck, (size_t)k);
        ck_assert_int_eq(t->dtype, ts[i].dt);
        ck_assert_int_eq(t->ndim, ts[i].ndim);
        for (int d = 0; d < t->ndim; d++)
            ck_assert_int_eq(t->shape[d], ts[i].shape[d]);
        const void *data;
        ck_assert_msg(sp_ckpt_tensor_data(ck, (size_t)k, &data, &err) == SP_OK, "%s", err.msg);
        size_t bytes = numel_of(&ts[i]) * sp_dtype_size(ts[i].dt);
        ck_assert_msg(bytes == 0 || memcmp(data, ts[i].data, bytes) == 0, "tensor %s differs", ts[i].name);
    }
    sp_ckpt_close(ck);
}

/* ---------------------------------------------------------------- */

START_TEST(test_encoding_parse)
{
    sp_spz_encoding e;
    sp_error err = {0};
    ck_assert_int_eq(sp_spz_encoding_parse(&e, "nm", &err), SP_OK);
    ck_assert_int_eq(e, SP_SPZ_NM);
    ck_assert_int_eq(sp_spz_encoding_parse(&e, "block", &err), SP_OK);
    ck_assert_int_eq(e, SP_SPZ_BLOCK);
    ck_assert_int_eq(sp_spz_encoding_parse(&e, "zip", &err), SP_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "zip"));
    ck_assert_str_eq(sp_spz_encoding_name(SP_SPZ_BITMASK), "bitmask");
}
END_TEST

/* Every dtype, several sparsities (0, 0.5, 0.9, 0.99, 1), -0.0 kept. */
START_TEST(test_roundtrip_dtypes)
{
    static const sp_dtype dts[] = {SP_F32, SP_F16, SP_BF16, SP_F64, SP_I8, SP_I16,
                                   SP_I32, SP_I64, SP_U8, SP_BOOL, SP_C64};
    static const double sps[] = {0.0, 0.5, 0.9, 0.99, 1.0};
    for (int raw = 0; raw < 2; raw++) {
        tdesc ts[64];
        char names[64][32];
        size_t n = 0;
        for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++)
            for (size_t k = 0; k < sizeof sps / sizeof sps[0]; k++) {
                snprintf(names[n], sizeof names[n], "t%zu_%zu.weight", d, k);
                ts[n].name = names[n];
                ts[n].dt = dts[d];
                ts[n].ndim = 2;
                ts[n].shape[0] = 37;
                ts[n].shape[1] = 53;
                ts[n].data = make_data(dts[d], 37 * 53, sps[k], true);
                n++;
            }
        sp_spz_options o;
        sp_spz_options_init(&o);
        o.raw = raw;
        write_spz(tp("d.spz"), ts, n, &o);
        check_same(tp("d.spz"), ts, n);
        for (size_t i = 0; i < n; i++)
            free(ts[i].data);
    }
}
END_TEST

/* Edge shapes: 0-d, empty, 1-d, 3-d, 4-d conv, odd sizes; all encodings. */
START_TEST(test_roundtrip_shapes)
{
    tdesc ts[8];
    memset(ts, 0, sizeof ts);
    float scalar = -1.5f;
    ts[0] = (tdesc){"scalar", SP_F32, 0, {0}, NULL};
    ts[0].data = malloc(4);
    memcpy(ts[0].data, &scalar, 4);
    ts[1] = (tdesc){"empty", SP_F32, 2, {0, 7}, calloc(1, 4)};
    ts[2] = (tdesc){"vec", SP_F16, 1, {1001}, make_data(SP_F16, 1001, 0.7, true)};
    ts[3] = (tdesc){"cube", SP_F32, 3, {5, 6, 7}, make_data(SP_F32, 210, 0.8, false)};
    ts[4] = (tdesc){"conv.weight", SP_F32, 4, {16, 32, 3, 3}, make_data(SP_F32, 16 * 32 * 9, 0.0, false)};
    /* N:M along the input channel of a conv: for each (kh, kw) */
    {
        float *w = ts[4].data;
        for (int o = 0; o < 16; o++)
            for (int g = 0; g < 32; g += 4)
                for (int k = 0; k < 9; k++)
                    for (int j = 0; j < 4; j++)
                        if ((j + k + o) % 4 >= 2)
                            w[((o * 32) + g + j) * 9 + k] = 0;
    }
    ts[5] = (tdesc){"zeros", SP_F32, 2, {64, 64}, calloc(64 * 64, 4)};
    ts[6] = (tdesc){"ragged.weight", SP_F32, 2, {30, 45}, make_data(SP_F32, 30 * 45, 0.0, false)};
    make_blocks(ts[6].data, SP_F32, 30, 45, 8, 8, 0.8);
    ts[7] = (tdesc){"nm.weight", SP_F32, 2, {24, 64}, make_data(SP_F32, 24 * 64, 0.0, false)};
    make_nm_exact(ts[7].data, 24 * 64, 2, 4);
    write_spz(tp("s.spz"), ts, 8, NULL);
    check_same(tp("s.spz"), ts, 8);
    ck_assert_int_eq(infos[4].encoding, SP_SPZ_NM);
    ck_assert_int_eq(infos[4].n, 2);
    ck_assert_int_eq(infos[4].m, 4);
    ck_assert_int_eq(infos[6].encoding, SP_SPZ_BLOCK);
    ck_assert_int_eq(infos[6].r, 8);
    ck_assert_int_eq(infos[6].c, 8);
    ck_assert_int_eq(infos[7].encoding, SP_SPZ_NM);
    /* forced encodings still round-trip (and fall back when impossible) */
    static const sp_spz_encoding encs[] = {SP_SPZ_DENSE, SP_SPZ_BITMASK, SP_SPZ_NM, SP_SPZ_BLOCK};
    for (size_t k = 0; k < 4; k++) {
        sp_spz_options o;
        sp_spz_options_init(&o);
        o.encoding = encs[k];
        if (encs[k] == SP_SPZ_BLOCK) {
            o.block_r = 4;
            o.block_c = 3;
        }
        write_spz(tp("f.spz"), ts, 8, &o);
        check_same(tp("f.spz"), ts, 8);
        if (encs[k] == SP_SPZ_DENSE || encs[k] == SP_SPZ_BITMASK)
            ck_assert_int_eq(infos[3].encoding, encs[k]);
        if (encs[k] == SP_SPZ_BLOCK)
            ck_assert_int_eq(infos[6].encoding, SP_SPZ_BLOCK);
    }
    for (int i = 0; i < 8; i++)
        free(ts[i].data);
}
END_TEST

/* N:M patterns 1:4, 2:4, 4:8, 2:8 on [R, C]; 2:4 fp32 raw size <= 0.53. */
START_TEST(test_roundtrip_nm)
{
    static const int pats[][2] = {{1, 4}, {2, 4}, {4, 8}, {2, 8}, {8, 16}};
    for (size_t k = 0; k < sizeof pats / sizeof pats[0]; k++) {
        tdesc t = {"w", SP_F32, 2, {96, 256}, make_data(SP_F32, 96 * 256, 0.0, false)};
        make_nm(t.data, SP_F32, 96, 256, pats[k][0], pats[k][1]);
        make_nm_exact(t.data, 96 * 256, pats[k][0], pats[k][1]);
        sp_spz_options o;
        sp_spz_options_init(&o);
        o.raw = true;
        write_spz(tp("nm.spz"), &t, 1, &o);
        check_same(tp("nm.spz"), &t, 1);
        ck_assert_int_eq(infos[0].encoding, SP_SPZ_NM);
        ck_assert_int_eq(infos[0].n, pats[k][0]);
        ck_assert_int_eq(infos[0].m, pats[k][1]);
        if (pats[k][0] == 2 && pats[k][1] == 4) {
            double ratio = (double)infos[0].raw_bytes / (double)infos[0].dense_bytes;
            ck_assert_msg(ratio <= 0.53, "2:4 raw ratio %.4f", ratio);
        }
        free(t.data);
    }
}
END_TEST

START_TEST(test_alias_and_info)
{
    tdesc t = {"emb.weight", SP_F32, 2, {50, 20}, make_data(SP_F32, 1000, 0.9, false)};
    sp_spz_writer *w = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_spz_writer_new(&w, tp("a.spz"), NULL, NULL, &err), SP_OK);
    sp_tensor_data td = {.name = t.name, .dtype = t.dt, .ndim = 2, .shape = {50, 20}, .data = t.data};
    ck_assert_int_eq(sp_spz_writer_add(w, &td, NULL, &err), SP_OK);
    ck_assert_int_eq(sp_spz_writer_add(w, &td, NULL, &err), SP_ERR_INVALID_ARG); /* duplicate */
    ck_assert_int_eq(sp_spz_writer_add_alias(w, "lm_head.weight", "emb.weight", &err), SP_OK);
    ck_assert_int_eq(sp_spz_writer_add_alias(w, "x", "nope", &err), SP_ERR_NOT_FOUND);
    ck_assert_int_eq(sp_spz_writer_finish(w, NULL, &err), SP_OK);
    sp_spz_writer_free(w);
    tdesc both[2] = {t, t};
    both[1].name = "lm_head.weight";
    check_same(tp("a.spz"), both, 2);
    sp_ckpt *ck = NULL;
    ck_assert_int_eq(sp_ckpt_open(&ck, tp("a.spz"), &err), SP_OK);
    ck_assert_int_eq(sp_ckpt_format(ck), SP_FORMAT_SPZ);
    ck_assert_uint_eq(sp_ckpt_num_storages(ck), 1);
    ck_assert_uint_eq(sp_ckpt_tensor(ck, 1)->storage, sp_ckpt_tensor(ck, 0)->storage);
    sp_spz_tensor_info in;
    ck_assert_int_eq(sp_spz_tensor_info_get(ck, 0, &in, &err), SP_OK);
    ck_assert_int_eq(in.encoding, SP_SPZ_BITMASK);
    ck_assert_uint_eq(in.numel, 1000);
    ck_assert_int_eq(sp_spz_tensor_info_get(ck, 1, &in, &err), SP_OK);
    ck_assert_int_eq(in.encoding, SP_SPZ_ALIAS);
    ck_assert_str_eq(sp_spz_metadata(ck), "");
    sp_ckpt_close(ck);
    /* from memory: the same tensors, decoded the same */
    size_t n;
    unsigned char *b = slurp(tp("a.spz"), &n);
    ck_assert_int_eq(sp_ckpt_open_mem(&ck, "a.spz", b, n, &err), SP_OK);
    ck_assert_int_eq(sp_ckpt_format(ck), SP_FORMAT_SPZ);
    ck_assert_uint_eq(sp_ckpt_num_tensors(ck), 2);
    const void *d;
    ck_assert_int_eq(sp_ckpt_tensor_data(ck, 1, &d, &err), SP_OK);
    ck_assert_int_eq(memcmp(d, t.data, 1000 * 4), 0);
    sp_ckpt_close(ck);
    free(b);
    /* an aborted writer leaves no file */
    ck_assert_int_eq(sp_spz_writer_new(&w, tp("gone.spz"), NULL, NULL, &err), SP_OK);
    ck_assert_int_eq(sp_spz_writer_add(w, &td, NULL, &err), SP_OK);
    sp_spz_writer_free(w);
    ck_assert_int_ne(access(tp("gone.spz"), F_OK), 0);
    free(t.data);
}
END_TEST

/* Size: 90% unstructured fp32 within 3% of the entropy bound. */
START_TEST(test_size_bound)
{
    uint64_t n = 512 * 512;
    tdesc t = {"w", SP_F32, 2, {512, 512}, make_data(SP_F32, n, 0.9, false)};
    write_spz(tp("b.spz"), &t, 1, NULL);
    uint64_t nnz = 0;
    const uint32_t *u = t.data;
    for (uint64_t i = 0; i < n; i++)
        nnz += (u[i] & 0x7fffffff) != 0;
    double s = 1.0 - (double)nnz / (double)n;
    double h = -(s * log2(s) + (1 - s) * log2(1 - s));
    double bound = (double)nnz * 4 + (double)n * h / 8;
    size_t len;
    free(slurp(tp("b.spz"), &len));
    ck_assert_msg((double)len <= 1.03 * bound, "spz %zu bytes, bound %.0f", len, bound);
    ck_assert_str_eq(sp_spz_encoding_name(infos[0].encoding), "bitmask");
    free(t.data);
}
END_TEST

/* ---- corruption ---- */

static sp_status open_and_read_all(const char *path, sp_error *err)
{
    sp_ckpt *ck = NULL;
    sp_status s = sp_ckpt_open(&ck, path, err);
    if (s)
        return s;
    for (size_t i = 0; i < sp_ckpt_num_tensors(ck) && !s; i++) {
        const void *d;
        s = sp_ckpt_tensor_data(ck, i, &d, err);
    }
    sp_ckpt_close(ck);
    return s;
}

static uint32_t rd32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }

/* Recompute the TOC and header CRCs after editing the TOC (a liar). */
static void fix_crcs(unsigned char *f)
{
    uint64_t toff = rd64(f + 16), tsz = rd64(f + 24);
    wr32(f + 32, (uint32_t)crc32(0, f + toff, (uInt)tsz));
    wr32(f + 60, (uint32_t)crc32(0, f, 60));
}

static void make_sample(const char *path)
{
    tdesc ts[4];
    ts[0] = (tdesc){"a.weight", SP_F32, 2, {16, 40}, make_data(SP_F32, 640, 0.9, true)};
    ts[1] = (tdesc){"b.weight", SP_F16, 2, {8, 32}, make_data(SP_F16, 256, 0.0, false)};
    make_nm(ts[1].data, SP_F16, 8, 32, 2, 4);
    ts[2] = (tdesc){"c.weight", SP_F32, 2, {16, 16}, make_data(SP_F32, 256, 0.0, false)};
    make_blocks(ts[2].data, SP_F32, 16, 16, 4, 4, 0.7);
    ts[3] = (tdesc){"bias", SP_F64, 1, {9}, make_data(SP_F64, 9, 0.0, false)};
    write_spz(path, ts, 4, NULL);
    for (int i = 0; i < 4; i++)
        free(ts[i].data);
}

START_TEST(test_corrupt)
{
    make_sample(tp("ok.spz"));
    sp_error err = {0};
    ck_assert_int_eq(open_and_read_all(tp("ok.spz"), &err), SP_OK);
    size_t len;
    unsigned char *f = slurp(tp("ok.spz"), &len);
    unsigned char *g = malloc(len);
    /* bad magic */
    memcpy(g, f, len);
    g[1] = 'Q';
    spit(tp("x.spz"), g, len);
    ck_assert_int_ne(open_and_read_all(tp("x.spz"), &err), SP_OK);
    /* truncated at many points */
    for (size_t cut = 0; cut < len; cut += (cut < 128 ? 7 : 61)) {
        spit(tp("x.spz"), f, cut);
        sp_status s = open_and_read_all(tp("x.spz"), &err);
        ck_assert_msg(s == SP_ERR_FORMAT, "cut %zu: status %d", cut, s);
    }
    /* every single byte flipped: an error (CRCs) or a clean read, never a crash;
     * flips in payloads and the TOC must be caught */
    uint64_t toff = rd64(f + 16);
    for (size_t i = 0; i < len; i++) {
        memcpy(g, f, len);
        g[i] ^= 0x5a;
        spit(tp("x.spz"), g, len);
        sp_status s = open_and_read_all(tp("x.spz"), &err);
        if (i < 64 || i >= toff)
            ck_assert_msg(s == SP_ERR_FORMAT || s == SP_ERR_UNSUPPORTED, "byte %zu: status %d", i, s);
        if (s)
            ck_assert_msg(strlen(err.msg) > 0 && strstr(err.msg, "x.spz"), "byte %zu: message '%s'", i,
                          err.msg);
    }
    /* lying lengths with valid CRCs: random edits of TOC words */
    uint64_t tsz = rd64(f + 24);
    for (int it = 0; it < 3000; it++) {
        memcpy(g, f, len);
        size_t at = (size_t)(toff + (rnd() % tsz));
        int kind = (int)(rnd() % 4);
        if (kind == 0)
            g[at] ^= (unsigned char)(1u << (rnd() % 8));
        else if (kind == 1)
            g[at] = 0xff;
        else if (kind == 2)
            g[at] = (unsigned char)rnd();
        else
            g[at] = (unsigned char)(g[at] + 1);
        fix_crcs(g);
        spit(tp("x.spz"), g, len);
        sp_status s = open_and_read_all(tp("x.spz"), &err);
        ck_assert_msg(s == SP_OK || s == SP_ERR_FORMAT || s == SP_ERR_UNSUPPORTED,
                      "toc edit at %zu: status %d (%s)", at, s, err.msg);
    }
    /* lying section lengths, with all CRCs recomputed: still no crash */
    free(f);
    free(g);
}
END_TEST

/* ---- compressed-tensors ---- */

static unsigned char *st_tensor(const unsigned char *file, const char *key, char *dtype, int64_t *shape,
                                int *ndim, size_t *nbytes)
{
    uint64_t hl = rd64(file);
    char *h = strndup((const char *)file + 8, (size_t)hl);
    char pat[256];
    snprintf(pat, sizeof pat, "\"%s\":{", key);
    char *p = strstr(h, pat);
    ck_assert_msg(p != NULL, "key %s not in header", key);
    p += strlen(pat);
    ck_assert_int_eq(sscanf(p, "\"dtype\":\"%7[A-Z0-9]\"", dtype), 1);
    char *sh = strstr(p, "\"shape\":[") + 9;
    *ndim = 0;
    while (*sh != ']') {
        shape[(*ndim)++] = strtoll(sh, &sh, 10);
        if (*sh == ',')
            sh++;
    }
    char *of = strstr(p, "\"data_offsets\":[") + 16;
    uint64_t a = strtoull(of, &of, 10), b = strtoull(of + 1, NULL, 10);
    free(h);
    *nbytes = (size_t)(b - a);
    return (unsigned char *)file + 8 + hl + a;
}

START_TEST(test_ct_bitmask_worked_example)
{
    /* row [a,0,0,b,c,d,0,0,e,0] -> bitmask bytes 0x39, 0x01 */
    float w[2][10] = {{1, 0, 0, 2, 3, 4, 0, 0, 5, 0}, {0, 6, 0, 0, 0, 0, 0, 0, 0, -0.0f}};
    tdesc t = {"layer.weight", SP_F32, 2, {2, 10}, w};
    float bias[3] = {1, 2, 3};
    tdesc tb = {"layer.bias", SP_F32, 1, {3}, bias};
    tdesc both[2] = {t, tb};
    write_spz(tp("in.spz"), both, 2, NULL);
    sp_ckpt *ck = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_ckpt_open(&ck, tp("in.spz"), &err), SP_OK);
    sp_export_report rep;
    ck_assert_msg(sp_ct_export(ck, tp("ct"), NULL, NULL, NULL, &rep, &err) == SP_OK, "%s", err.msg);
    ck_assert_str_eq(rep.ct_format, "sparse-bitmask");
    sp_export_report_release(&rep);
    sp_ckpt_close(ck);
    size_t len;
    unsigned char *f = slurp(tp("ct/model.safetensors"), &len);
    char dt[8];
    int64_t shape[4];
    int nd;
    size_t nb;
    unsigned char *bm = st_tensor(f, "layer.bitmask", dt, shape, &nd, &nb);
    ck_assert_str_eq(dt, "U8");
    ck_assert_int_eq(nd, 2);
    ck_assert_int_eq(shape[0], 2);
    ck_assert_int_eq(shape[1], 2);
    ck_assert_int_eq(bm[0], 0x39);
    ck_assert_int_eq(bm[1], 0x01);
    ck_assert_int_eq(bm[2], 0x02);
    ck_assert_int_eq(bm[3], 0x00);
    unsigned char *vals = st_tensor(f, "layer.compressed", dt, shape, &nd, &nb);
    ck_assert_str_eq(dt, "F32");
    ck_assert_int_eq(nd, 1);
    ck_assert_int_eq(shape[0], 6);
    float v[6];
    memcpy(v, vals, sizeof v);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(v[i], (float)(i + 1));
    unsigned char *ro = st_tensor(f, "layer.row_offsets", dt, shape, &nd, &nb);
    ck_assert_str_eq(dt, "I64");
    ck_assert_uint_eq(rd64(ro), 0);
    ck_assert_uint_eq(rd64(ro + 8), 5);
    unsigned char *sh = st_tensor(f, "layer.shape", dt, shape, &nd, &nb);
    ck_assert_str_eq(dt, "I64");
    ck_assert_int_eq(nd, 1);
    ck_assert_uint_eq(rd64(sh), 2);
    ck_assert_uint_eq(rd64(sh + 8), 10);
    st_tensor(f, "layer.bias", dt, shape, &nd, &nb);
    ck_assert_str_eq(dt, "F32");
    free(f);
    /* and read back through sp_ckpt: -0.0 becomes +0.0 (compressed-tensors' rule) */
    w[1][9] = 0.0f;
    both[0].data = w;
    check_same(tp("ct"), both, 2);
    char *cfg = (char *)slurp(tp("ct/config.json"), &len);
    cfg[len] = 0;
    ck_assert_ptr_nonnull(strstr(cfg, "\"quant_method\":\t\"compressed-tensors\""));
    ck_assert_ptr_nonnull(strstr(cfg, "\"sparsity_structure\":\t\"unstructured\""));
    free(cfg);
}
END_TEST

START_TEST(test_ct_24_and_shards)
{
    tdesc ts[3];
    ts[0] = (tdesc){"l0.weight", SP_BF16, 2, {32, 64}, make_data(SP_BF16, 32 * 64, 0.0, false)};
    make_nm(ts[0].data, SP_BF16, 32, 64, 2, 4);
    ts[1] = (tdesc){"l1.weight", SP_F32, 2, {16, 32}, make_data(SP_F32, 16 * 32, 0.0, false)};
    make_nm(ts[1].data, SP_F32, 16, 32, 2, 4);
    ts[2] = (tdesc){"norm.weight", SP_F32, 1, {64}, make_data(SP_F32, 64, 0.0, false)};
    write_spz(tp("in.spz"), ts, 3, NULL);
    sp_ckpt *ck = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_ckpt_open(&ck, tp("in.spz"), &err), SP_OK);
    sp_ct_options o = {NULL, 3000, 0}; /* tiny shards */
    sp_export_report rep;
    ck_assert_msg(sp_ct_export(ck, tp("ct24"), &o, NULL, NULL, &rep, &err) == SP_OK, "%s", err.msg);
    ck_assert_str_eq(rep.ct_format, "sparse-24-bitmask");
    sp_export_report_release(&rep);
    /* dense safetensors */
    ck_assert_int_eq(sp_dense_safetensors_export(ck, tp("dense.safetensors"), 0, NULL, NULL, NULL, &err),
                     SP_OK);
    sp_ckpt_close(ck);
    ck_assert_int_eq(access(tp("ct24/model.safetensors.index.json"), F_OK), 0);
    check_same(tp("ct24"), ts, 3);
    check_same(tp("dense.safetensors"), ts, 3);
    /* every 2:4 group has exactly two bits; compressed is [R, C/2] */
    size_t len;
    unsigned char *f = slurp(tp("ct24/model-00001-of-00002.safetensors"), &len);
    char dt[8];
    int64_t shape[4];
    int nd;
    size_t nb;
    unsigned char *bm = st_tensor(f, "l0.bitmask", dt, shape, &nd, &nb);
    for (size_t i = 0; i < nb; i++) {
        ck_assert_int_eq(__builtin_popcount(bm[i] & 0xf), 2);
        ck_assert_int_eq(__builtin_popcount(bm[i] >> 4), 2);
    }
    st_tensor(f, "l0.compressed", dt, shape, &nd, &nb);
    ck_assert_str_eq(dt, "BF16");
    ck_assert_int_eq(shape[0], 32);
    ck_assert_int_eq(shape[1], 32);
    free(f);
    for (int i = 0; i < 3; i++)
        free(ts[i].data);
}
END_TEST

/* A compressed-tensors folder with random bytes changed: a clean error or a
 * clean read, never a crash (run under sanitizers). */
START_TEST(test_ct_hostile)
{
    tdesc ts[2];
    ts[0] = (tdesc){"a.weight", SP_F32, 2, {12, 20}, make_data(SP_F32, 240, 0.8, false)};
    ts[1] = (tdesc){"a.bias", SP_F32, 1, {12}, make_data(SP_F32, 12, 0.0, false)};
    write_spz(tp("in.spz"), ts, 2, NULL);
    sp_ckpt *ck = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_ckpt_open(&ck, tp("in.spz"), &err), SP_OK);
    ck_assert_int_eq(sp_ct_export(ck, tp("ct"), NULL, NULL, NULL, NULL, &err), SP_OK);
    sp_ckpt_close(ck);
    size_t len;
    unsigned char *f = slurp(tp("ct/model.safetensors"), &len);
    unsigned char *g = malloc(len);
    uint64_t hl = rd64(f);
    int errors = 0;
    for (int it = 0; it < 1500; it++) {
        memcpy(g, f, len);
        size_t at;
        if (it % 3 == 0) /* header digits */
            at = 8 + (size_t)(rnd() % hl);
        else             /* the data: masks, offsets, shapes */
            at = 8 + (size_t)hl + (size_t)(rnd() % (len - 8 - hl));
        g[at] = it % 2 ? (unsigned char)rnd() : (unsigned char)(g[at] ^ (1u << (rnd() % 8)));
        spit(tp("ct/model.safetensors"), g, it % 97 == 0 ? len / 2 : len);
        sp_status s = open_and_read_all(tp("ct"), &err);
        ck_assert_msg(s == SP_OK || s == SP_ERR_FORMAT || s == SP_ERR_UNSUPPORTED, "edit %zu: %d %s", at, s,
                      err.msg);
        errors += s != SP_OK;
    }
    ck_assert_int_gt(errors, 100);
    free(f);
    free(g);
    for (int i = 0; i < 2; i++)
        free(ts[i].data);
}
END_TEST

START_TEST(test_tensor_dense_gather)
{
    /* contiguous tensors are borrowed, never copied */
    float w[6] = {1, 2, 3, 4, 5, 6};
    tdesc t = {"w", SP_F32, 2, {2, 3}, w};
    write_spz(tp("g.spz"), &t, 1, NULL);
    sp_ckpt *ck = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_ckpt_open(&ck, tp("g.spz"), &err), SP_OK);
    const void *d;
    void *owned = (void *)1;
    ck_assert_int_eq(sp_ckpt_tensor_dense(ck, 0, &d, &owned, &err), SP_OK);
    ck_assert_ptr_null(owned);
    ck_assert_int_eq(memcmp(d, w, sizeof w), 0);
    ck_assert_int_eq(sp_ckpt_tensor_dense(ck, 5, &d, &owned, &err), SP_ERR_INVALID_ARG);
    sp_ckpt_close(ck);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("spz");
    struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"sp_spz_encoding_parse", test_encoding_parse},
        {"sp_spz_writer_add_dtypes", test_roundtrip_dtypes},
        {"sp_spz_writer_add_shapes", test_roundtrip_shapes},
        {"sp_spz_writer_add_nm", test_roundtrip_nm},
        {"sp_spz_writer_add_alias", test_alias_and_info},
        {"sp_spz_writer_finish_size", test_size_bound},
        {"sp_spz_open_corrupt", test_corrupt},
        {"sp_ct_export_bitmask", test_ct_bitmask_worked_example},
        {"sp_ct_export_24", test_ct_24_and_shards},
        {"sp_ct_folder_open_hostile", test_ct_hostile},
        {"sp_ckpt_tensor_dense", test_tensor_dense_gather},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    int failed = tu_run(suite());
    return failed ? 1 : 0;
}
