/*
 * Unit tests: safetensors files (formats/safetensors.c) and Hugging Face
 * folders (formats/hf.c): writer layout, reader round trips, hostile headers,
 * byte-exact rewrites.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sparsify/sparsify.h"
#include "testutil.h"

static char tmpdir[256];

static void setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/check_st_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void rm_rf(const char *p)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    ck_assert_int_eq(system(cmd), 0);
}

static void teardown(void) { rm_rf(tmpdir); }

static const char *tp(const char *name) { return tu_join(tmpdir, name); }

/* A raw safetensors file from a header string and a data region. */
static void write_raw(const char *path, const char *hdr, const void *data, size_t dlen)
{
    size_t h = strlen(hdr);
    unsigned char *b = malloc(8 + h + dlen + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, hdr, h);
    if (dlen)
        memcpy(b + 8 + h, data, dlen);
    spit(path, b, 8 + h + dlen);
    free(b);
}

static bool files_equal(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *pa = slurp(a, &na), *pb = slurp(b, &nb);
    bool eq = na == nb && !memcmp(pa, pb, na);
    free(pa);
    free(pb);
    return eq;
}

/* Three tensors: f32 [2,3], i64 [4], bf16 scalar. */
static float fdata[6] = {1.5f, 0.0f, -2.0f, 0.0f, 3.25f, -0.0f};
static int64_t idata[4] = {7, 0, -1, 1LL << 40};
static uint16_t bdata[1] = {0x3f80};

static void make_three(const char *path, const char *meta)
{
    sp_tensor_data t[3] = {
        {.name = "layer.weight", .dtype = SP_F32, .ndim = 2, .shape = {2, 3}, .data = fdata},
        {.name = "ids", .dtype = SP_I64, .ndim = 1, .shape = {4}, .data = idata},
        {.name = "scale", .dtype = SP_BF16, .ndim = 0, .data = bdata},
    };
    sp_error err = {0};
    ck_assert_msg(sp_safetensors_save(path, t, 3, meta, &err) == SP_OK, "%s", err.msg);
}

/* ---- sp_safetensors_save ---- */

START_TEST(test_save_layout)
{
    make_three(tp("a.safetensors"), "{\"format\": \"pt\", \"note\": \"q\\\"x\"}");
    size_t n;
    unsigned char *b = slurp(tp("a.safetensors"), &n);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = (h << 8) | b[i];
    ck_assert_uint_eq(h % 8, 0);
    ck_assert_uint_eq(n, 8 + h + 24 + 32 + 2);
    ck_assert_int_eq(b[8], '{');
    char *hdr = strndup((char *)b + 8, (size_t)h);
    /* metadata first, tensors in the given order, contiguous offsets */
    const char *m = strstr(hdr, "\"__metadata__\":{\"format\":\"pt\",\"note\":\"q\\\"x\"}");
    const char *w = strstr(hdr, "\"layer.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}");
    const char *i = strstr(hdr, "\"ids\":{\"dtype\":\"I64\",\"shape\":[4],\"data_offsets\":[24,56]}");
    const char *s = strstr(hdr, "\"scale\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[56,58]}");
    ck_assert_msg(m && w && i && s && m < w && w < i && i < s, "header: %s", hdr);
    ck_assert_int_eq(memcmp(b + 8 + h, fdata, 24), 0);
    ck_assert_int_eq(memcmp(b + 8 + h + 24, idata, 32), 0);
    free(hdr);
    free(b);
}
END_TEST

START_TEST(test_save_rejects)
{
    sp_error err = {0};
    sp_tensor_data t[2] = {
        {.name = "x", .dtype = SP_F32, .ndim = 1, .shape = {6}, .data = fdata},
        {.name = "x", .dtype = SP_F32, .ndim = 1, .shape = {6}, .data = fdata},
    };
    ck_assert_int_eq(sp_safetensors_save(tp("d.safetensors"), t, 2, NULL, &err), SP_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'x' appears twice"));
    ck_assert_int_ne(access(tp("d.safetensors"), F_OK), 0);
    ck_assert_int_eq(sp_safetensors_save(tp("d.safetensors"), t, 1, "{\"a\": 1}", &err),
                     SP_ERR_INVALID_ARG);
    ck_assert_int_eq(sp_safetensors_save(tp("d.safetensors"), t, 1, "[", &err), SP_ERR_INVALID_ARG);
    t[0].dtype = SP_DTYPE_INVALID;
    ck_assert_int_eq(sp_safetensors_save(tp("d.safetensors"), t, 1, NULL, &err), SP_ERR_INVALID_ARG);
    t[0].dtype = SP_F32;
    t[0].shape[0] = -1;
    ck_assert_int_eq(sp_safetensors_save(tp("d.safetensors"), t, 1, NULL, &err), SP_ERR_INVALID_ARG);
    ck_assert_int_ne(access(tp("d.safetensors"), F_OK), 0);
    /* no tensors at all is a valid file */
    ck_assert_int_eq(sp_safetensors_save(tp("e.safetensors"), NULL, 0, NULL, &err), SP_OK);
    sp_ckpt *ck;
    ck_assert_msg(sp_ckpt_open(&ck, tp("e.safetensors"), &err) == SP_OK, "%s", err.msg);
    ck_assert_uint_eq(sp_ckpt_num_tensors(ck), 0);
    sp_ckpt_close(ck);
}
END_TEST

/* ---- sp_safetensors_open (through sp_ckpt_open) ---- */

START_TEST(test_open_roundtrip)
{
    make_three(tp("a.safetensors"), NULL);
    sp_error err = {0};
    sp_ckpt *ck;
    ck_assert_msg(sp_ckpt_open(&ck, tp("a.safetensors"), &err) == SP_OK, "%s", err.msg);
    ck_assert_int_eq(sp_ckpt_format(ck), SP_FORMAT_SAFETENSORS);
    ck_assert_uint_eq(sp_ckpt_num_tensors(ck), 3);
    ck_assert_uint_eq(sp_ckpt_num_storages(ck), 3);
    const sp_tensor *t0 = sp_ckpt_tensor(ck, 0), *t1 = sp_ckpt_tensor(ck, 1), *t2 = sp_ckpt_tensor(ck, 2);
    ck_assert_str_eq(t0->name, "layer.weight");
    ck_assert_str_eq(t1->name, "ids");
    ck_assert_str_eq(t2->name, "scale");
    ck_assert_int_eq(t0->dtype, SP_F32);
    ck_assert_int_eq(t0->ndim, 2);
    ck_assert_int_eq(t0->shape[0], 2);
    ck_assert_int_eq(t0->shape[1], 3);
    ck_assert_int_eq(t0->stride[0], 3);
    ck_assert_int_eq(t0->stride[1], 1);
    ck_assert_int_eq(t0->numel, 6);
    ck_assert_int_eq(t2->ndim, 0);
    ck_assert_int_eq(t2->numel, 1);
    ck_assert_int_eq(t2->dtype, SP_BF16);
    ck_assert_str_eq(sp_ckpt_storage(ck, 1)->key, "ids");
    ck_assert_uint_eq(sp_ckpt_storage(ck, 1)->nbytes, 32);
    ck_assert_int_eq(sp_ckpt_find(ck, "ids"), 1);
    const void *d;
    ck_assert_int_eq(sp_ckpt_tensor_data(ck, 0, &d, &err), SP_OK);
    ck_assert_int_eq(memcmp(d, fdata, sizeof fdata), 0);
    ck_assert_int_eq(sp_ckpt_storage_data(ck, 1, &d, &err), SP_OK);
    ck_assert_int_eq(memcmp(d, idata, sizeof idata), 0);
    sp_ckpt_storage_release(ck, 1);
    ck_assert_int_eq(sp_ckpt_storage_data(ck, 1, &d, &err), SP_OK);
    ck_assert_int_eq(memcmp(d, idata, sizeof idata), 0); /* pages come back */
    sp_ckpt_close(ck);
    /* the same bytes opened from memory */
    size_t n;
    unsigned char *b = slurp(tp("a.safetensors"), &n);
    ck_assert_msg(sp_ckpt_open_mem(&ck, "mem.safetensors", b, n, &err) == SP_OK, "%s", err.msg);
    ck_assert_int_eq(sp_ckpt_format(ck), SP_FORMAT_SAFETENSORS);
    ck_assert_uint_eq(sp_ckpt_num_tensors(ck), 3);
    ck_assert_int_eq(sp_ckpt_tensor_data(ck, 0, &d, &err), SP_OK);
    ck_assert_int_eq(memcmp(d, fdata, sizeof fdata), 0);
    sp_ckpt_storage_release(ck, 1);
    ck_assert_int_eq(sp_ckpt_storage_data(ck, 1, &d, &err), SP_OK);
    ck_assert_int_eq(memcmp(d, idata, sizeof idata), 0); /* not dropped: the caller's memory */
    ck_assert_int_eq(sp_ckpt_rewrite(ck, tp("from_mem.safetensors"), NULL, NULL, &err), SP_OK);
    sp_ckpt_close(ck);
    size_t n2;
    unsigned char *b2 = slurp(tp("from_mem.safetensors"), &n2);
    ck_assert(n2 == n && memcmp(b, b2, n) == 0);
    /* a hostile header stated in memory fails as it does in a file */
    memcpy(b, "\xff\xff\xff\x00\x00\x00\x00\x00", 8);
    ck_assert_int_eq(sp_ckpt_open_mem(&ck, "mem.safetensors", b, n, &err), SP_ERR_FORMAT);
    ck_assert_ptr_null(ck);
    ck_assert_msg(strstr(err.msg, "'mem.safetensors'"), "%s", err.msg);
    free(b);
    free(b2);
}
END_TEST

START_TEST(test_open_every_dtype_and_empty)
{
    static const sp_dtype dts[] = {SP_F32, SP_F16, SP_BF16, SP_F64, SP_I8, SP_I16,
                                   SP_I32, SP_I64, SP_U8, SP_BOOL, SP_C64};
    unsigned char buf[64];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7 + 1);
    sp_tensor_data t[13];
    char names[13][16];
    size_t n = 0;
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++, n++) {
        snprintf(names[n], sizeof names[n], "t%zu", i);
        t[n] = (sp_tensor_data){.name = names[n], .dtype = dts[i], .ndim = 1, .shape = {3}, .data = buf};
    }
    t[n++] = (sp_tensor_data){.name = "empty", .dtype = SP_F32, .ndim = 1, .shape = {0}, .data = NULL};
    t[n++] = (sp_tensor_data){.name = "empty2", .dtype = SP_F32, .ndim = 2, .shape = {3, 0}, .data = NULL};
    sp_error err = {0};
    ck_assert_msg(sp_safetensors_save(tp("all.safetensors"), t, n, NULL, &err) == SP_OK, "%s", err.msg);
    sp_ckpt *ck;
    ck_assert_msg(sp_ckpt_open(&ck, tp("all.safetensors"), &err) == SP_OK, "%s", err.msg);
    ck_assert_uint_eq(sp_ckpt_num_tensors(ck), n);
    for (size_t i = 0; i < n; i++) {
        const sp_tensor *x = sp_ckpt_tensor(ck, i);
        ck_assert_str_eq(x->name, t[i].name);
        ck_assert_int_eq(x->dtype, t[i].dtype);
        const void *d;
        ck_assert_int_eq(sp_ckpt_tensor_data(ck, i, &d, &err), SP_OK);
        if (x->numel)
            ck_assert_int_eq(memcmp(d, buf, 3 * sp_dtype_size(x->dtype)), 0);
    }
    ck_assert_int_eq(sp_ckpt_tensor(ck, n - 1)->numel, 0);
    ck_assert_int_eq(sp_ckpt_tensor(ck, n - 1)->shape[0], 3);
    sp_ckpt_close(ck);
}
END_TEST

/* The u64 header length's low byte may be 0x80 like a pickle's first byte. */
START_TEST(test_open_header_len_0x80)
{
    char hdr[129];
    const char *body = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    size_t bl = strlen(body);
    memset(hdr, ' ', 128);
    memcpy(hdr, body, bl);
    hdr[128] = '\0';
    float one = 1.0f;
    write_raw(tp("p.safetensors"), hdr, &one, 4);
    sp_error err = {0};
    sp_ckpt *ck;
    ck_assert_msg(sp_ckpt_open(&ck, tp("p.safetensors"), &err) == SP_OK, "%s", err.msg);
    ck_assert_int_eq(sp_ckpt_format(ck), SP_FORMAT_SAFETENSORS);
    sp_ckpt_close(ck);
}
END_TEST

static void expect_bad(const char *hdr, const void *data, size_t dlen, sp_status code,
                       const char *needle)
{
    write_raw(tp("bad.safetensors"), hdr, data, dlen);
    sp_error err = {0};
    sp_ckpt *ck = (sp_ckpt *)1;
    sp_status s = sp_ckpt_open(&ck, tp("bad.safetensors"), &err);
    ck_assert_msg(s == code, "header %s: got %d (%s)", hdr, s, err.msg);
    ck_assert_ptr_null(ck);
    ck_assert_msg(strstr(err.msg, "bad.safetensors") != NULL, "message names no file: %s", err.msg);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "'%s' not in: %s", needle, err.msg);
}

START_TEST(test_open_hostile)
{
    unsigned char d[64] = {0};
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", d, 12, SP_ERR_FORMAT,
               "12 data bytes for 2 elements");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 8, SP_ERR_FORMAT,
               "outside the data region");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", d, 8, SP_ERR_FORMAT,
               "outside the data region");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", d, 8, SP_ERR_FORMAT,
               "not a non-negative integer");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,0]}}", d, 8, SP_ERR_FORMAT,
               "not a non-negative integer");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
               "\"data_offsets\":[0,0]}}",
               d, 8, SP_ERR_FORMAT, "overflows");
    expect_bad("{\"w\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", d, 8, SP_ERR_UNSUPPORTED,
               "unsupported dtype 'Q4'");
    expect_bad("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", d, 8, SP_ERR_FORMAT, "'dtype'");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", d, 8, SP_ERR_FORMAT,
               "data_offsets");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", d, 8, SP_ERR_FORMAT,
               "not valid json");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}xx", d, 8, SP_ERR_FORMAT,
               "trailing bytes");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               d, 12, SP_ERR_FORMAT, "overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               d, 8, SP_ERR_FORMAT, "'a' appears twice");
    expect_bad("{\"__metadata__\":{\"k\":1}}", d, 0, SP_ERR_FORMAT, "not a string");
    expect_bad("{\"w\":[1,2]}", d, 0, SP_ERR_FORMAT, "not an object");

    /* header length past the end of the file, and past the cap */
    unsigned char b[16] = {0};
    b[0] = 200;
    b[8] = '{';
    spit(tp("bad.safetensors"), b, 16);
    sp_error err = {0};
    sp_ckpt *ck;
    ck_assert_int_eq(sp_ckpt_open(&ck, tp("bad.safetensors"), &err), SP_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "runs past the end"));
    b[0] = 0;
    b[4] = 1; /* 2^32 */
    spit(tp("bad.safetensors"), b, 16);
    ck_assert_int_eq(sp_ckpt_open(&ck, tp("bad.safetensors"), &err), SP_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "exceeds the limit"));
}
END_TEST

START_TEST(test_open_truncated_everywhere)
{
    make_three(tp("a.safetensors"), "{\"k\": \"v\"}");
    size_t n;
    unsigned char *b = slurp(tp("a.safetensors"), &n);
    for (size_t cut = 0; cut < n; cut++) {
        spit(tp("cut.safetensors"), b, cut);
        sp_error err = {0};
        sp_ckpt *ck;
        sp_status s = sp_ckpt_open(&ck, tp("cut.safetensors"), &err);
        ck_assert_msg(s == SP_ERR_FORMAT, "cut at %zu: status %d (%s)", cut, s, err.msg);
        ck_assert_ptr_nonnull(strstr(err.msg, "cut.safetensors"));
    }
    free(b);
}
END_TEST

/* Storages at odd file offsets come back element-aligned (a copy), from
 * sp_ckpt_storage_data and in the bytes a rewrite callback gets. */
static sp_status check_aligned(void *ctx, sp_ckpt *ck, size_t storage, const void *orig, void *out,
                               bool *changed, sp_error *err)
{
    int *misaligned = ctx;
    if ((uintptr_t)orig % sp_dtype_size(sp_ckpt_storage(ck, storage)->dtype))
        (*misaligned)++;
    return SP_OK;
}

START_TEST(test_open_misaligned)
{
    /* 8 + 162 header bytes: data starts at file offset 170, so 'w'
     * (f32) and 'd' (f64), after a 1-byte tensor, sit at odd offsets */
    const char *hdr = "{\"b\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[1,25]},"
                      "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[25,33]}}";
    unsigned char data[33] = {5};
    double dv = -0.25;
    memcpy(data + 1, fdata, sizeof fdata);
    memcpy(data + 25, &dv, 8);
    write_raw(tp("m.safetensors"), hdr, data, sizeof data);
    sp_error err = {0};
    sp_ckpt *ck;
    ck_assert_msg(sp_ckpt_open(&ck, tp("m.safetensors"), &err) == SP_OK, "%s", err.msg);
    ck_assert_uint_eq(sp_ckpt_num_storages(ck), 3);
    for (int round = 0; round < 2; round++) {
        const void *d;
        ck_assert_int_eq(sp_ckpt_storage_data(ck, 1, &d, &err), SP_OK);
        ck_assert_uint_eq((uintptr_t)d % 4, 0);
        ck_assert_int_eq(memcmp(d, fdata, sizeof fdata), 0);
        ck_assert_int_eq(sp_ckpt_tensor_data(ck, 2, &d, &err), SP_OK);
        ck_assert_uint_eq((uintptr_t)d % 8, 0);
        ck_assert_int_eq(memcmp(d, &dv, 8), 0);
        sp_ckpt_storage_release(ck, 1);
    }
    int misaligned = 0;
    ck_assert_int_eq(sp_ckpt_rewrite(ck, tp("m2.safetensors"), check_aligned, &misaligned, &err),
                     SP_OK);
    ck_assert_int_eq(misaligned, 0);
    ck_assert(files_equal(tp("m.safetensors"), tp("m2.safetensors")));
    sp_ckpt_close(ck);
}
END_TEST

/* ---- rewrite (sp_ckpt_rewrite on a safetensors file) ---- */

static sp_status zero_ids(void *ctx, sp_ckpt *ck, size_t storage, const void *orig, void *out,
                          bool *changed, sp_error *err)
{
    int *calls = ctx;
    (*calls)++;
    const char *key = sp_ckpt_storage(ck, storage)->key;
    size_t kl = strlen(key);
    if (kl >= 3 && !strcmp(key + kl - 3, "ids")) {
        memcpy(out, orig, sp_ckpt_storage(ck, storage)->nbytes);
        memset(out, 0, 8); /* first element */
        *changed = true;
    }
    return SP_OK;
}

static sp_status fail_cb(void *ctx, sp_ckpt *ck, size_t storage, const void *orig, void *out,
                         bool *changed, sp_error *err)
{
    return sp_error_set(err, SP_ERR_CHECK, "callback says no");
}

START_TEST(test_rewrite)
{
    make_three(tp("a.safetensors"), "{\"k\": \"v\"}");
    sp_error err = {0};
    sp_ckpt *ck;
    ck_assert_int_eq(sp_ckpt_open(&ck, tp("a.safetensors"), &err), SP_OK);
    /* plain copy: byte-identical */
    ck_assert_msg(sp_ckpt_rewrite(ck, tp("copy.safetensors"), NULL, NULL, &err) == SP_OK, "%s", err.msg);
    ck_assert(files_equal(tp("a.safetensors"), tp("copy.safetensors")));
    /* one tensor changed: only its bytes differ */
    int calls = 0;
    ck_assert_int_eq(sp_ckpt_rewrite(ck, tp("b.safetensors"), zero_ids, &calls, &err), SP_OK);
    ck_assert_int_eq(calls, 3);
    size_t na, nb;
    unsigned char *pa = slurp(tp("a.safetensors"), &na), *pb = slurp(tp("b.safetensors"), &nb);
    ck_assert_uint_eq(na, nb);
    size_t diff = 0, first = 0;
    for (size_t i = 0; i < na; i++)
        if (pa[i] != pb[i]) {
            if (!diff)
                first = i;
            diff++;
        }
    ck_assert_uint_gt(diff, 0);
    ck_assert_uint_le(diff, 8);
    ck_assert_uint_eq(first, na - 2 - 32); /* inside 'ids' */
    free(pa);
    free(pb);
    /* a failing callback leaves no file */
    ck_assert_int_eq(sp_ckpt_rewrite(ck, tp("c.safetensors"), fail_cb, NULL, &err), SP_ERR_CHECK);
    ck_assert_int_ne(access(tp("c.safetensors"), F_OK), 0);
    sp_ckpt_close(ck);
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while ((e = readdir(d)))
        ck_assert_msg(!strstr(e->d_name, "sparsify-tmp"), "temp file left: %s", e->d_name);
    closedir(d);
}
END_TEST

/* ---- sp_hf_folder_open and folder rewrite ---- */

static void make_folder(const char *dir, bool index)
{
    mkdir(dir, 0755);
    char p[600];
    sp_tensor_data s1[2] = {
        {.name = "a.weight", .dtype = SP_F32, .ndim = 2, .shape = {2, 3}, .data = fdata},
        {.name = "a.bias", .dtype = SP_F32, .ndim = 1, .shape = {2}, .data = fdata},
    };
    sp_tensor_data s2[1] = {
        {.name = "b.ids", .dtype = SP_I64, .ndim = 1, .shape = {4}, .data = idata},
    };
    sp_error err = {0};
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    ck_assert_int_eq(sp_safetensors_save(p, s1, 2, "{\"format\": \"pt\"}", &err), SP_OK);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    ck_assert_int_eq(sp_safetensors_save(p, s2, 1, "{\"format\": \"pt\"}", &err), SP_OK);
    snprintf(p, sizeof p, "%s/config.json", dir);
    spit(p, "{\"hidden_size\": 3}\n", 19);
    if (index) {
        const char *ix = "{\"metadata\": {\"total_size\": 64}, \"weight_map\": {"
                         "\"a.bias\": \"model-00001-of-00002.safetensors\", "
                         "\"a.weight\": \"model-00001-of-00002.safetensors\", "
                         "\"b.ids\": \"model-00002-of-00002.safetensors\"}}";
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        spit(p, ix, strlen(ix));
    }
}

START_TEST(test_hf_open)
{
    for (int with_index = 0; with_index < 2; with_index++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s", tp(with_index ? "hf1" : "hf0"));
        make_folder(dir, with_index);
        sp_error err = {0};
        sp_ckpt *ck;
        ck_assert_msg(sp_ckpt_open(&ck, dir, &err) == SP_OK, "%s", err.msg);
        ck_assert_int_eq(sp_ckpt_format(ck), SP_FORMAT_HF_FOLDER);
        ck_assert_uint_eq(sp_ckpt_num_tensors(ck), 3);
        ck_assert_str_eq(sp_ckpt_tensor(ck, 0)->name, "a.weight");
        ck_assert_str_eq(sp_ckpt_tensor(ck, 1)->name, "a.bias");
        ck_assert_str_eq(sp_ckpt_tensor(ck, 2)->name, "b.ids");
        const void *d;
        ck_assert_int_eq(sp_ckpt_tensor_data(ck, 2, &d, &err), SP_OK);
        ck_assert_int_eq(memcmp(d, idata, sizeof idata), 0);
        ck_assert_int_eq(sp_ckpt_tensor_data(ck, 1, &d, &err), SP_OK);
        ck_assert_int_eq(memcmp(d, fdata, 8), 0);
        sp_ckpt_close(ck);
    }
}
END_TEST

START_TEST(test_hf_open_bad)
{
    sp_error err = {0};
    sp_ckpt *ck;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tp("hfbad"));
    make_folder(dir, true);
    char p[600];
    /* index naming a missing shard */
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    ck_assert_int_eq(unlink(p), 0);
    ck_assert_int_eq(sp_ckpt_open(&ck, dir, &err), SP_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "shard 'model-00002-of-00002.safetensors'"));
    ck_assert_ptr_nonnull(strstr(err.msg, "model.safetensors.index.json"));
    ck_assert_ptr_nonnull(strstr(err.msg, "hfbad"));
    /* index putting a tensor in the wrong shard */
    rm_rf(dir);
    make_folder(dir, false);
    const char *ix = "{\"weight_map\": {\"b.ids\": \"model-00001-of-00002.safetensors\"}}";
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    spit(p, ix, strlen(ix));
    ck_assert_int_eq(sp_ckpt_open(&ck, dir, &err), SP_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "'b.ids'"));
    /* path traversal in the index */
    ix = "{\"weight_map\": {\"b.ids\": \"../x.safetensors\"}}";
    spit(p, ix, strlen(ix));
    ck_assert_int_eq(sp_ckpt_open(&ck, dir, &err), SP_ERR_FORMAT);
    /* index that is not json */
    spit(p, "{", 1);
    ck_assert_int_eq(sp_ckpt_open(&ck, dir, &err), SP_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "not valid json"));
    /* the same tensor in two shards */
    unlink(p);
    snprintf(p, sizeof p, "%s/model-00003.safetensors", dir);
    sp_tensor_data dup = {.name = "b.ids", .dtype = SP_I64, .ndim = 1, .shape = {4}, .data = idata};
    ck_assert_int_eq(sp_safetensors_save(p, &dup, 1, NULL, &err), SP_OK);
    ck_assert_int_eq(sp_ckpt_open(&ck, dir, &err), SP_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "appears twice"));
    /* an empty folder */
    mkdir(tp("empty"), 0755);
    ck_assert_int_eq(sp_ckpt_open(&ck, tp("empty"), &err), SP_ERR_FORMAT);
    /* a compressed-tensors folder in a format nobody decodes */
    const char *cfg = "{\"quantization_config\": {\"sparsity_config\": {\"format\": \"sparse-unknown\"}}}";
    mkdir(tp("ct"), 0755);
    snprintf(p, sizeof p, "%s/config.json", tp("ct"));
    spit(p, cfg, strlen(cfg));
    ck_assert_int_eq(sp_ckpt_open(&ck, tp("ct"), &err), SP_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "compressed-tensors"));
}
END_TEST

START_TEST(test_hf_rewrite)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tp("hf"));
    make_folder(dir, true);
    char p[600], q[600];
    mkdir(tp("hf/sub"), 0755);
    spit(tp("hf/sub/tokenizer.json"), "{}", 2);
    sp_error err = {0};
    sp_ckpt *ck;
    ck_assert_int_eq(sp_ckpt_open(&ck, dir, &err), SP_OK);
    int calls = 0;
    ck_assert_msg(sp_ckpt_rewrite(ck, tp("out"), zero_ids, &calls, &err) == SP_OK, "%s", err.msg);
    ck_assert_int_eq(calls, 3);
    static const char *same[] = {"config.json", "model.safetensors.index.json",
                                 "model-00001-of-00002.safetensors", "sub/tokenizer.json"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, same[i]);
        snprintf(q, sizeof q, "%s/%s", tp("out"), same[i]);
        ck_assert_msg(files_equal(p, q), "%s differs", same[i]);
    }
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    snprintf(q, sizeof q, "%s/model-00002-of-00002.safetensors", tp("out"));
    ck_assert(!files_equal(p, q));
    sp_ckpt *ck2;
    ck_assert_int_eq(sp_ckpt_open(&ck2, tp("out"), &err), SP_OK);
    const void *d;
    ck_assert_int_eq(sp_ckpt_tensor_data(ck2, 2, &d, &err), SP_OK);
    ck_assert_int_eq(((const int64_t *)d)[0], 0);
    ck_assert_int_eq(((const int64_t *)d)[1], idata[1]);
    sp_ckpt_close(ck2);
    /* rewriting over an existing folder replaces it; a failure leaves the
     * old one in place */
    ck_assert_int_eq(sp_ckpt_rewrite(ck, tp("out"), NULL, NULL, &err), SP_OK);
    ck_assert(files_equal(p, q));
    ck_assert_int_eq(sp_ckpt_rewrite(ck, tp("out"), fail_cb, NULL, &err), SP_ERR_CHECK);
    ck_assert(files_equal(p, q));
    sp_ckpt_close(ck);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("safetensors");
    struct {
        const char *name;
        const TTest *tests[4];
    } cases[] = {
        {"sp_safetensors_save", {test_save_layout, test_save_rejects}},
        {"sp_safetensors_open",
         {test_open_roundtrip, test_open_every_dtype_and_empty, test_open_header_len_0x80,
          test_open_misaligned}},
        {"sp_safetensors_open_hostile", {test_open_hostile, test_open_truncated_everywhere}},
        {"sp_ckpt_rewrite", {test_rewrite}},
        {"sp_hf_folder_open", {test_hf_open, test_hf_open_bad}},
        {"sp_hf_folder_rewrite", {test_hf_rewrite}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        for (size_t k = 0; k < 4 && cases[i].tests[k]; k++)
            tcase_add_test(tc, cases[i].tests[k]);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    int failed = tu_run(suite());
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
