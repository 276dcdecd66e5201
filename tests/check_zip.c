/*
 * Unit tests for formats/zip.c: our writer read back, archives Python's
 * zipfile wrote (deflate, zip64 extras, > 65535 entries), bad CRCs,
 * corrupt and truncated files.
 */
#include "formats/zip.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testutil.h"

static char tmpdir[256];

static const char *tmp(const char *name) { return tu_join(tmpdir, name); }

/* Write a.zip: "x/data.pkl" (5 bytes), "x/data/0" (100000 bytes),
 * "x/empty" (0 bytes), "x/version". */
static void write_sample_n(const char *path, bool zip64, int nbig)
{
    sp_outfile of;
    sp_zipw w;
    sp_error err = {0};
    ck_assert_int_eq(sp_outfile_open(&of, path, &err), SP_OK);
    sp_zipw_init(&w, &of);
    w.force_zip64 = zip64;
    unsigned char *big = malloc((size_t)nbig);
    for (int i = 0; i < nbig; i++)
        big[i] = (unsigned char)(i * 7);
    ck_assert_int_eq(sp_zipw_add_stored(&w, "x/data.pkl", "hello", 5, &err), SP_OK);
    ck_assert_int_eq(sp_zipw_add_stored(&w, "x/data/0", big, (uint64_t)nbig, &err), SP_OK);
    ck_assert_int_eq(sp_zipw_add_stored(&w, "x/empty", "", 0, &err), SP_OK);
    ck_assert_int_eq(sp_zipw_add_stored(&w, "x/version", "3\n", 2, &err), SP_OK);
    ck_assert_int_eq(sp_zipw_finish(&w, &err), SP_OK);
    ck_assert_int_eq(sp_outfile_commit(&of, &err), SP_OK);
    sp_zipw_release(&w);
    free(big);
}

static void write_sample(const char *path, bool zip64) { write_sample_n(path, zip64, 100000); }

static void check_sample(const char *path)
{
    sp_zip z;
    sp_error err = {0};
    ck_assert_msg(sp_zip_open(&z, path, &err) == SP_OK, "%s", err.msg);
    ck_assert_uint_eq(z.n, 4);
    long i = sp_zip_find(&z, "x/data/0");
    ck_assert_int_eq(i, 1);
    ck_assert_int_eq(sp_zip_find(&z, "x/data/1"), -1);
    ck_assert_int_eq(sp_zip_find(&z, "x/version"), 3);
    for (size_t k = 0; k < z.n; k++)
        ck_assert_uint_eq(z.entries[k].data_off % SP_ZIP_ALIGN, 0);
    const void *d;
    void *owned;
    ck_assert_int_eq(sp_zip_entry_data(&z, (size_t)i, &d, &owned, &err), SP_OK);
    ck_assert_ptr_null(owned); /* stored: in the mapping */
    for (int k = 0; k < 100000; k += 997)
        ck_assert_uint_eq(((const unsigned char *)d)[k], (unsigned char)(k * 7));
    sp_zip_entry_drop(&z, (size_t)i);
    ck_assert_int_eq(sp_zip_entry_data(&z, 2, &d, &owned, &err), SP_OK);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(sp_zip_entry_data(&z, 0, &d, &owned, &err), SP_OK);
    ck_assert_mem_eq(d, "hello", 5);
    ck_assert_uint_eq(sp_zip_entry_end(&z, 0), z.entries[0].data_off + 5);
    sp_zip_close(&z);
}

static void py(const char *code)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c '%s' %s", code, tmpdir);
    ck_assert_msg(system(cmd) == 0, "python failed: %s", code);
}

START_TEST(test_open)
{
    write_sample(tmp("a.zip"), false);
    check_sample(tmp("a.zip"));
    /* Python's zipfile agrees with our writer */
    py("import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]+\"/a.zip\"); "
       "assert z.testzip() is None; assert z.read(\"x/data.pkl\")==b\"hello\"");
}
END_TEST

START_TEST(test_open_zip64)
{
    write_sample(tmp("z64.zip"), true);
    sp_zip z;
    sp_error err = {0};
    ck_assert_int_eq(sp_zip_open(&z, tmp("z64.zip"), &err), SP_OK);
    ck_assert(z.zip64);
    sp_zip_close(&z);
    check_sample(tmp("z64.zip"));
    py("import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]+\"/z64.zip\"); assert z.testzip() is None");
    /* zip64 extras in local headers, from Python */
    py("import sys,zipfile\n"
       "with zipfile.ZipFile(sys.argv[1]+\"/py64.zip\",\"w\") as z:\n"
       "  with z.open(\"a\",\"w\",force_zip64=True) as f: f.write(b\"abc\"*1000)\n"
       "  z.writestr(\"b\", b\"x\")\n");
    ck_assert_int_eq(sp_zip_open(&z, tmp("py64.zip"), &err), SP_OK);
    const void *d;
    void *owned;
    ck_assert_int_eq(sp_zip_entry_data(&z, (size_t)sp_zip_find(&z, "a"), &d, &owned, &err), SP_OK);
    ck_assert_mem_eq((const char *)d + 2997, "abc", 3);
    free(owned);
    sp_zip_close(&z);
}
END_TEST

START_TEST(test_many_entries)
{
    /* > 65535 entries needs the zip64 end records */
    py("import sys,zipfile\n"
       "with zipfile.ZipFile(sys.argv[1]+\"/many.zip\",\"w\") as z:\n"
       "  [z.writestr(\"e%d\" % i, str(i)) for i in range(70000)]\n");
    sp_zip z;
    sp_error err = {0};
    ck_assert_msg(sp_zip_open(&z, tmp("many.zip"), &err) == SP_OK, "%s", err.msg);
    ck_assert_uint_eq(z.n, 70000);
    long i = sp_zip_find(&z, "e69999");
    ck_assert_int_ge(i, 0);
    const void *d;
    void *owned;
    ck_assert_int_eq(sp_zip_entry_data(&z, (size_t)i, &d, &owned, &err), SP_OK);
    ck_assert_mem_eq(d, "69999", 5);
    sp_zip_close(&z);
    /* and our writer makes such archives too */
    sp_outfile of;
    sp_zipw w;
    ck_assert_int_eq(sp_outfile_open(&of, tmp("many2.zip"), &err), SP_OK);
    sp_zipw_init(&w, &of);
    for (int k = 0; k < 66000; k++) {
        char nm[32];
        snprintf(nm, sizeof nm, "n%d", k);
        ck_assert_int_eq(sp_zipw_add_stored(&w, nm, nm, strlen(nm), &err), SP_OK);
    }
    ck_assert_int_eq(sp_zipw_finish(&w, &err), SP_OK);
    ck_assert_int_eq(sp_outfile_commit(&of, &err), SP_OK);
    sp_zipw_release(&w);
    ck_assert_int_eq(sp_zip_open(&z, tmp("many2.zip"), &err), SP_OK);
    ck_assert_uint_eq(z.n, 66000);
    ck_assert(z.zip64);
    sp_zip_close(&z);
    py("import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]+\"/many2.zip\"); "
       "assert len(z.infolist())==66000 and z.read(\"n65999\")==b\"n65999\"");
}
END_TEST

START_TEST(test_entry_data_deflated)
{
    py("import sys,zipfile\n"
       "with zipfile.ZipFile(sys.argv[1]+\"/d.zip\",\"w\",zipfile.ZIP_DEFLATED) as z:\n"
       "  z.writestr(\"t\", b\"0123456789\"*5000)\n  z.writestr(\"e\", b\"\")\n");
    sp_zip z;
    sp_error err = {0};
    ck_assert_int_eq(sp_zip_open(&z, tmp("d.zip"), &err), SP_OK);
    ck_assert_uint_eq(z.entries[0].method, 8);
    const void *d;
    void *owned;
    ck_assert_int_eq(sp_zip_entry_data(&z, 0, &d, &owned, &err), SP_OK);
    ck_assert_ptr_eq(d, owned);
    ck_assert_uint_eq(z.entries[0].usize, 50000);
    ck_assert_mem_eq((const char *)d + 49990, "0123456789", 10);
    free(owned);
    ck_assert_int_eq(sp_zip_entry_data(&z, 1, &d, &owned, &err), SP_OK);
    free(owned);
    uint64_t off = z.entries[0].data_off + 20;
    sp_zip_close(&z);
    /* corrupt the deflate stream: a format error, not a crash */
    size_t n;
    unsigned char *b = slurp(tmp("d.zip"), &n);
    for (int k = 0; k < 16; k++)
        b[off + (uint64_t)k] ^= 0x5a;
    spit(tmp("d_bad.zip"), b, n);
    free(b);
    ck_assert_int_eq(sp_zip_open(&z, tmp("d_bad.zip"), &err), SP_OK);
    ck_assert_int_eq(sp_zip_entry_data(&z, 0, &d, &owned, &err), SP_ERR_FORMAT);
    ck_assert_ptr_null(owned);
    ck_assert_msg(strstr(err.msg, "'t'"), "%s", err.msg);
    sp_zip_close(&z);
}
END_TEST

START_TEST(test_entry_data_bad_crc)
{
    write_sample(tmp("c.zip"), false);
    sp_zip z;
    sp_error err = {0};
    ck_assert_int_eq(sp_zip_open(&z, tmp("c.zip"), &err), SP_OK);
    uint64_t off = z.entries[1].data_off + 500;
    sp_zip_close(&z);
    size_t n;
    unsigned char *b = slurp(tmp("c.zip"), &n);
    b[off] ^= 1;
    spit(tmp("c_bad.zip"), b, n);
    free(b);
    ck_assert_int_eq(sp_zip_open(&z, tmp("c_bad.zip"), &err), SP_OK); /* lazy */
    const void *d;
    void *owned;
    ck_assert_int_eq(sp_zip_entry_data(&z, 0, &d, &owned, &err), SP_OK);
    ck_assert_int_eq(sp_zip_entry_data(&z, 1, &d, &owned, &err), SP_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "c_bad.zip") && strstr(err.msg, "'x/data/0'") &&
                      strstr(err.msg, "CRC"),
                  "%s", err.msg);
    sp_zip_close(&z);
}
END_TEST

START_TEST(test_open_corrupt)
{
    write_sample_n(tmp("t.zip"), true, 3000);
    size_t n;
    unsigned char *b = slurp(tmp("t.zip"), &n);
    sp_zip z;
    sp_error err = {0};
    /* every truncation is an error */
    for (size_t cut = 0; cut < n; cut += (cut < 200 || n - cut < 300) ? 1 : 97) {
        spit(tmp("cut.zip"), b, cut);
        ck_assert_int_ne(sp_zip_open(&z, tmp("cut.zip"), &err), SP_OK);
    }
    /* flip bytes of the directory and end records one by one: error or a
     * consistent archive, never a crash; offsets stay inside the file */
    sp_zip good;
    ck_assert_int_eq(sp_zip_open(&good, tmp("t.zip"), &err), SP_OK);
    size_t cd = (size_t)good.cd_off;
    sp_zip_close(&good);
    for (size_t i = cd; i < n; i++) {
        for (int v = 0; v < 2; v++) {
            unsigned char *c = malloc(n);
            memcpy(c, b, n);
            c[i] = v ? 0xff : (unsigned char)(c[i] ^ 0x10);
            spit(tmp("flip.zip"), c, n);
            free(c);
            if (sp_zip_open(&z, tmp("flip.zip"), &err) == SP_OK) {
                for (size_t k = 0; k < z.n; k++) {
                    ck_assert_uint_le(z.entries[k].data_off + z.entries[k].csize, n);
                    const void *d;
                    void *owned;
                    if (sp_zip_entry_data(&z, k, &d, &owned, &err) == SP_OK)
                        free(owned);
                }
                sp_zip_close(&z);
            } else {
                ck_assert(err.code == SP_ERR_FORMAT || err.code == SP_ERR_UNSUPPORTED);
            }
        }
    }
    free(b);
    /* not a zip at all */
    spit(tmp("junk.zip"), "hello world, this is not a zip archive", 38);
    ck_assert_int_eq(sp_zip_open(&z, tmp("junk.zip"), &err), SP_ERR_FORMAT);
    ck_assert_int_eq(sp_zip_open(&z, tmp("missing.zip"), &err), SP_ERR_NOT_FOUND);
}
END_TEST

START_TEST(test_writer_records)
{
    /* sp_zip_entry_record + sp_zipw_add_record copy an archive's records */
    write_sample(tmp("r.zip"), false);
    sp_zip z;
    sp_error err = {0};
    ck_assert_int_eq(sp_zip_open(&z, tmp("r.zip"), &err), SP_OK);
    sp_outfile of;
    sp_zipw w;
    ck_assert_int_eq(sp_outfile_open(&of, tmp("r2.zip"), &err), SP_OK);
    sp_zipw_init(&w, &of);
    for (size_t i = 0; i < z.n; i++) {
        sp_zipw_entry e;
        ck_assert_int_eq(sp_zip_entry_record(&z, i, &e, &err), SP_OK);
        e.lho = of.pos;
        uint64_t end = sp_zip_entry_end(&z, i);
        ck_assert_int_eq(sp_outfile_write(&of, z.mf.data + z.entries[i].lho,
                                          (size_t)(end - z.entries[i].lho), &err), SP_OK);
        ck_assert_int_eq(sp_zipw_add_record(&w, &e, &err), SP_OK);
        sp_zipw_entry_release(&e);
    }
    ck_assert_int_eq(sp_zipw_finish(&w, &err), SP_OK);
    ck_assert_int_eq(sp_outfile_commit(&of, &err), SP_OK);
    sp_zipw_release(&w);
    sp_zip_close(&z);
    check_sample(tmp("r2.zip"));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("zip");
    struct { const char *name; const TTest *fn; } cases[] = {
        {"sp_zip_open", test_open},
        {"sp_zip_open_zip64", test_open_zip64},
        {"sp_zip_open_many", test_many_entries},
        {"sp_zip_open_corrupt", test_open_corrupt},
        {"sp_zip_entry_data_deflated", test_entry_data_deflated},
        {"sp_zip_entry_data_bad_crc", test_entry_data_bad_crc},
        {"sp_zipw_add_record", test_writer_records},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sp_check_zip_XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    int failed = tu_run(suite());
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        failed++;
    return failed ? 1 : 0;
}
