/*
 * Unit tests for formats/torch.c and torch_write.c on checkpoints real
 * PyTorch wrote: tests/fixtures_torch.py runs once (/usr/bin/python3) into a
 * temp folder and lists in manifest.json what PyTorch itself sees (names,
 * dtypes, shapes, strides, offsets, storage sharing, first values).
 */
#include "formats/zip.h"
#include "sparsify/ckpt.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "testutil.h"

static char tmpdir[256];
static cJSON *manifest;

static const char *KINDS[] = {"flat", "training", "tied", "views", "scalars",
                              "bare", "legacy", "deflated", "script"};

static const char *fx(const char *name) { return tu_join(tmpdir, name); }

static sp_ckpt *open_ok(const char *path)
{
    sp_ckpt *ck = NULL;
    sp_error err = {0};
    ck_assert_msg(sp_ckpt_open(&ck, path, &err) == SP_OK, "%s", err.msg);
    return ck;
}

/* Compare one fixture with what PyTorch reported. */
static void check_against_manifest(const char *kind)
{
    char name[64];
    snprintf(name, sizeof name, "%s.pt", kind);
    sp_ckpt *ck = open_ok(fx(name));
    cJSON *list = cJSON_GetObjectItem(manifest, kind);
    ck_assert_ptr_nonnull(list);
    int n = cJSON_GetArraySize(list);
    ck_assert_int_eq((int)sp_ckpt_num_tensors(ck), n);
    long *idx = calloc((size_t)n, sizeof *idx);
    int *grp = calloc((size_t)n, sizeof *grp);
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_GetArrayItem(list, i);
        const char *tn = cJSON_GetObjectItem(e, "name")->valuestring;
        idx[i] = sp_ckpt_find(ck, tn);
        ck_assert_msg(idx[i] >= 0, "%s: tensor '%s' not found", kind, tn);
        const sp_tensor *t = sp_ckpt_tensor(ck, (size_t)idx[i]);
        ck_assert_str_eq(sp_dtype_name(t->dtype), cJSON_GetObjectItem(e, "dtype")->valuestring);
        cJSON *shape = cJSON_GetObjectItem(e, "shape"), *stride = cJSON_GetObjectItem(e, "stride");
        ck_assert_int_eq(t->ndim, cJSON_GetArraySize(shape));
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            ck_assert_int_eq(t->shape[d], (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble);
            ck_assert_int_eq(t->stride[d], (int64_t)cJSON_GetArrayItem(stride, d)->valuedouble);
            numel *= t->shape[d];
        }
        ck_assert_int_eq(t->numel, numel);
        ck_assert_int_eq(t->offset, (int64_t)cJSON_GetObjectItem(e, "offset")->valuedouble);
        grp[i] = cJSON_GetObjectItem(e, "group")->valueint;
        /* the first element's value, read through the storage */
        cJSON *first = cJSON_GetObjectItem(e, "first");
        if (numel > 0 && cJSON_IsNumber(first)) {
            sp_error err = {0};
            const void *data;
            ck_assert_msg(sp_ckpt_tensor_data(ck, (size_t)idx[i], &data, &err) == SP_OK, "%s",
                          err.msg);
            double v = t->dtype == SP_C64 ? (double)((const float *)data)[0]
                                          : sp_dtype_load(t->dtype, data, 0);
            ck_assert_msg(v == first->valuedouble, "%s: '%s' first value %g != %g", kind, tn, v,
                          first->valuedouble);
            sp_ckpt_storage_release(ck, t->storage);
        }
    }
    /* tensors share a storage exactly when PyTorch's do */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            bool same = sp_ckpt_tensor(ck, (size_t)idx[i])->storage ==
                        sp_ckpt_tensor(ck, (size_t)idx[j])->storage;
            ck_assert_msg(same == (grp[i] == grp[j]), "%s: storage sharing of %d and %d", kind, i,
                          j);
        }
    free(idx);
    free(grp);
    sp_ckpt_close(ck);
}

START_TEST(test_open_fixtures)
{
    check_against_manifest(KINDS[_i]);
}
END_TEST

START_TEST(test_format)
{
    struct { const char *file; sp_format f; } cases[] = {
        {"flat.pt", SP_FORMAT_TORCH_ZIP}, {"legacy.pt", SP_FORMAT_TORCH_LEGACY},
        {"script.pt", SP_FORMAT_TORCHSCRIPT}, {"deflated.pt", SP_FORMAT_TORCH_ZIP}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sp_ckpt *ck = open_ok(fx(cases[i].file));
        ck_assert_int_eq(sp_ckpt_format(ck), cases[i].f);
        sp_ckpt_close(ck);
    }
}
END_TEST

START_TEST(test_storage_data)
{
    /* tied: two names, one storage, same bytes; script constants skipped */
    sp_ckpt *ck = open_ok(fx("tied.pt"));
    ck_assert_uint_eq(sp_ckpt_num_storages(ck), 2);
    long a = sp_ckpt_find(ck, "model.emb.weight"), b = sp_ckpt_find(ck, "model.head.weight");
    ck_assert(a >= 0 && b >= 0);
    ck_assert_uint_eq(sp_ckpt_tensor(ck, (size_t)a)->storage, sp_ckpt_tensor(ck, (size_t)b)->storage);
    const sp_storage *st = sp_ckpt_storage(ck, 0);
    ck_assert_uint_eq(st->nbytes, 6 * 4 * 4);
    ck_assert_int_eq(st->dtype, SP_F32);
    sp_ckpt_close(ck);
    /* views: values through offset and strides */
    ck = open_ok(fx("views.pt"));
    sp_error err = {0};
    const void *d;
    long t = sp_ckpt_find(ck, "t");
    ck_assert_int_eq(sp_ckpt_storage_data(ck, sp_ckpt_tensor(ck, (size_t)t)->storage, &d, &err),
                     SP_OK);
    const float *f = d;
    for (int i = 0; i < 24; i++)
        ck_assert_float_eq(f[i], (float)i); /* arange(24) */
    sp_ckpt_storage_release(ck, 0);
    sp_ckpt_storage_release(ck, 0); /* twice is fine */
    ck_assert_int_eq(sp_ckpt_storage_data(ck, 99, &d, &err), SP_ERR_INVALID_ARG);
    sp_ckpt_close(ck);
    /* deflated storages inflate to the same bytes as the stored original */
    sp_ckpt *c1 = open_ok(fx("training.pt")), *c2 = open_ok(fx("deflated.pt"));
    ck_assert_uint_eq(sp_ckpt_num_storages(c1), sp_ckpt_num_storages(c2));
    for (size_t i = 0; i < sp_ckpt_num_storages(c1); i++) {
        const void *d1, *d2;
        ck_assert_int_eq(sp_ckpt_storage_data(c1, i, &d1, &err), SP_OK);
        ck_assert_int_eq(sp_ckpt_storage_data(c2, i, &d2, &err), SP_OK);
        ck_assert_uint_eq(sp_ckpt_storage(c1, i)->nbytes, sp_ckpt_storage(c2, i)->nbytes);
        ck_assert_mem_eq(d1, d2, (size_t)sp_ckpt_storage(c1, i)->nbytes);
        sp_ckpt_storage_release(c1, i);
        sp_ckpt_storage_release(c2, i);
    }
    sp_ckpt_close(c1);
    sp_ckpt_close(c2);
}
END_TEST

START_TEST(test_bad_crc)
{
    sp_zip z;
    sp_error err = {0};
    ck_assert_int_eq(sp_zip_open(&z, fx("training.pt"), &err), SP_OK);
    long e = sp_zip_find(&z, "training/data/0");
    ck_assert_int_ge(e, 0);
    uint64_t off = z.entries[e].data_off + 3;
    sp_zip_close(&z);
    size_t n;
    unsigned char *b = slurp(fx("training.pt"), &n);
    b[off] ^= 0x40;
    spit(fx("badcrc.pt"), b, n);
    free(b);
    sp_ckpt *ck = open_ok(fx("badcrc.pt")); /* CRC is checked lazily */
    const void *d;
    ck_assert_int_eq(sp_ckpt_storage_data(ck, 1, &d, &err), SP_OK);
    ck_assert_int_eq(sp_ckpt_storage_data(ck, 0, &d, &err), SP_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "badcrc.pt") && strstr(err.msg, "training/data/0"), "%s",
                  err.msg);
    /* a rewrite refuses to copy it */
    ck_assert_int_eq(sp_ckpt_rewrite(ck, fx("badcrc_out.pt"), NULL, NULL, &err), SP_ERR_FORMAT);
    ck_assert_int_ne(access(fx("badcrc_out.pt"), F_OK), 0);
    sp_ckpt_close(ck);
}
END_TEST

START_TEST(test_truncated)
{
    char name[64];
    snprintf(name, sizeof name, "%s.pt", KINDS[_i]);
    size_t n;
    unsigned char *b = slurp(fx(name), &n);
    char cut_name[64];
    snprintf(cut_name, sizeof cut_name, "cut_%s.pt", KINDS[_i]);
    for (size_t cut = 1; cut < n; cut += (n - cut < 64 || cut < 64) ? 1 : 1 + n / 150) {
        spit(fx(cut_name), b, cut);
        sp_ckpt *ck = NULL;
        sp_error err = {0};
        sp_status s = sp_ckpt_open(&ck, fx(cut_name), &err);
        ck_assert_msg(s != SP_OK, "%s cut at %zu of %zu opened", KINDS[_i], cut, n);
        ck_assert_msg(s == SP_ERR_FORMAT || s == SP_ERR_UNSUPPORTED, "%s cut at %zu: %s",
                      KINDS[_i], cut, err.msg);
        ck_assert_ptr_null(ck);
    }
    free(b);
}
END_TEST

START_TEST(test_hostile_pickle)
{
    /* a well-formed zip whose data.pkl is hostile */
    const char *bad[] = {"\x80\x02\xff.", "\x80\x02]q\x00h\x05.", "\x80\x02X\xff\xff\xff\x7f"};
    for (size_t i = 0; i < 3; i++) {
        sp_outfile of;
        sp_zipw w;
        sp_error err = {0};
        ck_assert_int_eq(sp_outfile_open(&of, fx("hostile.pt"), &err), SP_OK);
        sp_zipw_init(&w, &of);
        ck_assert_int_eq(sp_zipw_add_stored(&w, "archive/data.pkl", bad[i], strlen(bad[i]), &err),
                         SP_OK);
        ck_assert_int_eq(sp_zipw_finish(&w, &err), SP_OK);
        ck_assert_int_eq(sp_outfile_commit(&of, &err), SP_OK);
        sp_zipw_release(&w);
        sp_ckpt *ck;
        ck_assert_int_eq(sp_ckpt_open(&ck, fx("hostile.pt"), &err), SP_ERR_FORMAT);
        ck_assert_msg(strstr(err.msg, "data.pkl"), "%s", err.msg);
    }
}
END_TEST

START_TEST(test_open_mem)
{
    /* every fixture kind opened from a buffer reads exactly as from its file */
    char name[64];
    snprintf(name, sizeof name, "%s.pt", KINDS[_i]);
    size_t n;
    unsigned char *b = slurp(fx(name), &n);
    sp_ckpt *a = open_ok(fx(name)), *m = NULL;
    sp_error err = {0};
    ck_assert_msg(sp_ckpt_open_mem(&m, name, b, n, &err) == SP_OK, "%s", err.msg);
    ck_assert_int_eq(sp_ckpt_format(m), sp_ckpt_format(a));
    ck_assert_str_eq(sp_ckpt_path(m), name);
    ck_assert_uint_eq(sp_ckpt_num_tensors(m), sp_ckpt_num_tensors(a));
    ck_assert_uint_eq(sp_ckpt_num_storages(m), sp_ckpt_num_storages(a));
    for (size_t i = 0; i < sp_ckpt_num_tensors(a); i++)
        ck_assert_str_eq(sp_ckpt_tensor(m, i)->name, sp_ckpt_tensor(a, i)->name);
    for (size_t i = 0; i < sp_ckpt_num_storages(a); i++) {
        const void *da, *dm;
        uint64_t nb = sp_ckpt_storage(a, i)->nbytes;
        ck_assert_uint_eq(sp_ckpt_storage(m, i)->nbytes, nb);
        ck_assert_int_eq(sp_ckpt_storage_data(a, i, &da, &err), SP_OK);
        ck_assert_int_eq(sp_ckpt_storage_data(m, i, &dm, &err), SP_OK);
        ck_assert(nb == 0 || memcmp(da, dm, (size_t)nb) == 0);
        /* releasing must not drop the caller's pages (madvise would zero
         * heap memory) */
        sp_ckpt_storage_release(m, i);
        ck_assert_int_eq(sp_ckpt_storage_data(m, i, &dm, &err), SP_OK);
        ck_assert(nb == 0 || memcmp(da, dm, (size_t)nb) == 0);
    }
    /* a checkpoint held in memory rewrites to a real file, byte for byte */
    snprintf(name, sizeof name, "mem_%s.pt", KINDS[_i]);
    ck_assert_msg(sp_ckpt_rewrite(m, fx(name), NULL, NULL, &err) == SP_OK, "%s", err.msg);
    sp_ckpt *r = open_ok(fx(name));
    ck_assert_uint_eq(sp_ckpt_num_tensors(r), sp_ckpt_num_tensors(a));
    sp_ckpt_close(r);
    sp_ckpt_close(m);
    sp_ckpt_close(a);
    /* cut buffers fail cleanly, like cut files */
    for (size_t cut = 0; cut < n; cut += 1 + n / 40) {
        ck_assert_int_ne(sp_ckpt_open_mem(&m, "cut", b, cut, &err), SP_OK);
        ck_assert_ptr_null(m);
    }
    free(b);
}
END_TEST

static sp_status fail_fn(void *ctx, sp_ckpt *ck, size_t storage, const void *orig, void *out,
                         bool *changed, sp_error *err)
{
    (void)ctx;
    (void)orig;
    (void)out;
    (void)changed;
    if (storage == 2)
        return sp_error_set(err, SP_ERR_CHECK, "stop at storage %zu of '%s'", storage,
                            sp_ckpt_path(ck));
    return SP_OK;
}

static sp_status zero_fn(void *ctx, sp_ckpt *ck, size_t storage, const void *orig, void *out,
                         bool *changed, sp_error *err)
{
    size_t *calls = ctx;
    (*calls)++;
    (void)orig;
    (void)err;
    if (storage == 0) {
        memset(out, 0, (size_t)sp_ckpt_storage(ck, 0)->nbytes);
        *changed = true;
    }
    return SP_OK;
}

START_TEST(test_rewrite)
{
    for (size_t k = 0; k < sizeof KINDS / sizeof KINDS[0]; k++) {
        char in[64], out[64];
        snprintf(in, sizeof in, "%s.pt", KINDS[k]);
        snprintf(out, sizeof out, "%s.rw.pt", KINDS[k]);
        sp_ckpt *ck = open_ok(fx(in));
        sp_error err = {0};
        size_t calls = 0;
        ck_assert_msg(sp_ckpt_rewrite(ck, fx(out), zero_fn, &calls, &err) == SP_OK, "%s",
                      err.msg);
        ck_assert_uint_eq(calls, sp_ckpt_num_storages(ck));
        sp_ckpt *ck2 = open_ok(fx(out));
        ck_assert_int_eq(sp_ckpt_format(ck2), sp_ckpt_format(ck) == SP_FORMAT_TORCH_LEGACY
                                                  ? SP_FORMAT_TORCH_ZIP
                                                  : sp_ckpt_format(ck));
        ck_assert_uint_eq(sp_ckpt_num_tensors(ck2), sp_ckpt_num_tensors(ck));
        ck_assert_uint_eq(sp_ckpt_num_storages(ck2), sp_ckpt_num_storages(ck));
        for (size_t i = 0; i < sp_ckpt_num_tensors(ck); i++) {
            const sp_tensor *a = sp_ckpt_tensor(ck, i);
            long j = sp_ckpt_find(ck2, a->name);
            ck_assert_int_ge(j, 0);
            const sp_tensor *b = sp_ckpt_tensor(ck2, (size_t)j);
            ck_assert_int_eq(a->ndim, b->ndim);
            ck_assert_int_eq(a->offset, b->offset);
            ck_assert_int_eq(a->dtype, b->dtype);
            ck_assert_mem_eq(a->stride, b->stride, sizeof a->stride);
        }
        for (size_t i = 0; i < sp_ckpt_num_storages(ck); i++) {
            const void *d1, *d2;
            ck_assert_int_eq(sp_ckpt_storage_data(ck, i, &d1, &err), SP_OK);
            ck_assert_int_eq(sp_ckpt_storage_data(ck2, i, &d2, &err), SP_OK);
            size_t nb = (size_t)sp_ckpt_storage(ck, i)->nbytes;
            ck_assert_uint_eq(sp_ckpt_storage(ck2, i)->nbytes, nb);
            if (i == 0) {
                for (size_t b = 0; b < nb; b++)
                    ck_assert_uint_eq(((const unsigned char *)d2)[b], 0);
            } else {
                ck_assert_mem_eq(d1, d2, nb);
            }
        }
        /* a failing callback: its error, and no output left behind */
        snprintf(out, sizeof out, "%s.fail.pt", KINDS[k]);
        if (sp_ckpt_num_storages(ck) > 2) {
            ck_assert_int_eq(sp_ckpt_rewrite(ck, fx(out), fail_fn, NULL, &err), SP_ERR_CHECK);
            ck_assert_ptr_nonnull(strstr(err.msg, "stop at storage 2"));
            ck_assert_int_ne(access(fx(out), F_OK), 0);
        }
        sp_ckpt_close(ck2);
        sp_ckpt_close(ck);
    }
}
END_TEST

START_TEST(test_save)
{
    float w[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[2] = {0x3c00, 0xc000};
    int64_t i64 = -7;
    unsigned char bl[3] = {1, 0, 1};
    sp_tensor_data td[] = {
        {.name = "fc.weight", .dtype = SP_F32, .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "fc.half", .dtype = SP_F16, .ndim = 1, .shape = {2}, .data = h},
        {.name = "step", .dtype = SP_I64, .ndim = 0, .data = &i64},
        {.name = "empty", .dtype = SP_F32, .ndim = 2, .shape = {0, 4}, .data = NULL},
        {.name = "mask", .dtype = SP_BOOL, .ndim = 1, .shape = {3}, .data = bl},
    };
    sp_error err = {0};
    ck_assert_int_eq(sp_torch_save(fx("saved.pt"), td, 5, &err), SP_OK);
    sp_ckpt *ck = open_ok(fx("saved.pt"));
    ck_assert_int_eq(sp_ckpt_format(ck), SP_FORMAT_TORCH_ZIP);
    ck_assert_uint_eq(sp_ckpt_num_tensors(ck), 5);
    for (size_t i = 0; i < 5; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        ck_assert_str_eq(t->name, td[i].name);
        ck_assert_int_eq(t->dtype, td[i].dtype);
        ck_assert_int_eq(t->ndim, td[i].ndim);
        ck_assert(sp_tensor_is_contiguous(t));
        if (t->numel) {
            const void *d;
            ck_assert_int_eq(sp_ckpt_tensor_data(ck, i, &d, &err), SP_OK);
            ck_assert_mem_eq(d, td[i].data, (size_t)t->numel * sp_dtype_size(t->dtype));
        }
    }
    ck_assert_int_eq(sp_ckpt_tensor(ck, 3)->stride[0], 4);
    sp_ckpt_close(ck);
    /* records are 64-byte aligned */
    sp_zip z;
    ck_assert_int_eq(sp_zip_open(&z, fx("saved.pt"), &err), SP_OK);
    for (size_t i = 0; i < z.n; i++)
        ck_assert_uint_eq(z.entries[i].data_off % 64, 0);
    ck_assert_int_ge(sp_zip_find(&z, "archive/version"), 0);
    sp_zip_close(&z);
    /* torch.load agrees */
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import sys,torch; d=torch.load(sys.argv[1]); "
             "assert list(d)==[\"fc.weight\",\"fc.half\",\"step\",\"empty\",\"mask\"]; "
             "assert d[\"fc.weight\"].tolist()==[[1,2,3],[4,5,6]]; "
             "assert d[\"fc.half\"].tolist()==[1.0,-2.0]; assert d[\"step\"].item()==-7; "
             "assert d[\"empty\"].shape==(0,4); assert d[\"mask\"].tolist()==[True,False,True]' %s",
             fx("saved.pt"));
    ck_assert_int_eq(system(cmd), 0);
    /* duplicate names are refused, nothing written */
    td[1].name = "fc.weight";
    ck_assert_int_eq(sp_torch_save(fx("dup.pt"), td, 2, &err), SP_ERR_INVALID_ARG);
    ck_assert_int_ne(access(fx("dup.pt"), F_OK), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("torch");
    int nk = (int)(sizeof KINDS / sizeof KINDS[0]);
    TCase *tc = tcase_create("sp_torch_open");
    tcase_add_loop_test(tc, test_open_fixtures, 0, nk);
    tcase_add_test(tc, test_format);
    tcase_add_test(tc, test_hostile_pickle);
    tcase_add_loop_test(tc, test_truncated, 0, nk);
    suite_add_tcase(s, tc);
    tc = tcase_create("sp_ckpt_open_mem");
    tcase_add_loop_test(tc, test_open_mem, 0, nk);
    suite_add_tcase(s, tc);
    tc = tcase_create("sp_ckpt_storage_data");
    tcase_add_test(tc, test_storage_data);
    tcase_add_test(tc, test_bad_crc);
    suite_add_tcase(s, tc);
    tc = tcase_create("sp_ckpt_rewrite");
    tcase_add_test(tc, test_rewrite);
    suite_add_tcase(s, tc);
    tc = tcase_create("sp_torch_save");
    tcase_add_test(tc, test_save);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *src = getenv("SPARSIFY_SRC");
    char script[1024];
    if (src)
        snprintf(script, sizeof script, "%s/tests/fixtures_torch.py", src);
    else
        snprintf(script, sizeof script, "%s", __FILE__); /* .../tests/check_torch.c */
    if (!src) {
        char *slash = strrchr(script, '/');
        snprintf(slash ? slash + 1 : script, sizeof script - (size_t)(slash ? slash + 1 - script : 0),
                 "fixtures_torch.py");
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sp_check_torch_XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", script, tmpdir);
    if (system(cmd) != 0) {
        fprintf(stderr, "check_torch: cannot write fixtures with %s\n", script);
        return 1;
    }
    size_t n;
    FILE *f = fopen(fx("manifest.json"), "rb");
    if (!f)
        return 1;
    fseek(f, 0, SEEK_END);
    n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc(n + 1);
    if (!text || fread(text, 1, n, f) != n)
        return 1;
    text[n] = '\0';
    fclose(f);
    manifest = cJSON_Parse(text);
    free(text);
    if (!manifest)
        return 1;
    int failed = tu_run(suite());
    cJSON_Delete(manifest);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        failed++;
    return failed ? 1 : 0;
}
