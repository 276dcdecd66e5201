/*
 * Unit tests for the output helpers of formats/fileio.c: temporary names,
 * which temporaries count as ours, removal that never follows links, stale
 * temporaries of dead runs, and atomic replacement (files, folders, links).
 */
#include "formats/ckpt_internal.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"

static char tmpdir[256];
static const char *tp(const char *name) { return tu_join(tmpdir, name); }

static void put_file(const char *path, const char *text) { spit(path, text, strlen(text)); }

static char *get_file(const char *path)
{
    size_t n;
    unsigned char *p = slurp(path, &n);
    p[n] = '\0';
    return (char *)p;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A PID that is not alive: a child that has exited and been reaped. */
static long dead_pid(void)
{
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    waitpid(p, NULL, 0);
    return (long)p;
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sp_check_fileio_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_tmp_path)
{
    char b[256];
    ck_assert(sp_output_tmp_path("a/b/model.pt", 42, b, sizeof b));
    ck_assert_str_eq(b, "a/b/.model.pt.sparsify-tmp-42");
    ck_assert(sp_output_tmp_path("out", 7, b, sizeof b));
    ck_assert_str_eq(b, ".out.sparsify-tmp-7");
    ck_assert(sp_output_tmp_path("/x", 7, b, sizeof b));
    ck_assert_str_eq(b, "/.x.sparsify-tmp-7");
    ck_assert(!sp_output_tmp_path("dir/", 7, b, sizeof b));
    ck_assert(!sp_output_tmp_path("model.pt", 42, b, 10));
}
END_TEST

START_TEST(test_tmp_remove)
{
    /* a folder with the marker goes, links inside it removed, not followed */
    mkdir(tp("outside"), 0755);
    put_file(tp("outside/keep.txt"), "keep");
    mkdir(tp(".o.sparsify-tmp-1"), 0755);
    mkdir(tp(".o.sparsify-tmp-1/sub"), 0755);
    put_file(tp(".o.sparsify-tmp-1/" SP_TMP_MARKER), "");
    put_file(tp(".o.sparsify-tmp-1/sub/x"), "x");
    ck_assert_int_eq(symlink(tp("outside"), tp(".o.sparsify-tmp-1/sub/dirlink")), 0);
    ck_assert_int_eq(symlink(tp("outside/keep.txt"), tp(".o.sparsify-tmp-1/filelink")), 0);
    ck_assert(sp_output_tmp_remove(tp(".o.sparsify-tmp-1")));
    ck_assert(!exists(tp(".o.sparsify-tmp-1")));
    ck_assert(exists(tp("outside/keep.txt")));
    /* a folder without the marker stays, even empty */
    mkdir(tp(".o.sparsify-tmp-2"), 0755);
    put_file(tp(".o.sparsify-tmp-2/user.txt"), "u");
    ck_assert(!sp_output_tmp_remove(tp(".o.sparsify-tmp-2")));
    ck_assert(exists(tp(".o.sparsify-tmp-2/user.txt")));
    mkdir(tp(".o.sparsify-tmp-3"), 0755);
    ck_assert(!sp_output_tmp_remove(tp(".o.sparsify-tmp-3")));
    ck_assert(exists(tp(".o.sparsify-tmp-3")));
    /* ...except this process's own, created but not yet marked */
    ck_assert(sp_output_tmp_remove_own(tp(".o.sparsify-tmp-3")));
    ck_assert(!exists(tp(".o.sparsify-tmp-3")));
    ck_assert(!sp_output_tmp_remove_own(tp(".o.sparsify-tmp-2")) || exists(tp(".o.sparsify-tmp-2/user.txt")));
    /* a link at a temporary name: the link goes, its target stays */
    ck_assert_int_eq(symlink(tp("outside"), tp(".o.sparsify-tmp-4")), 0);
    ck_assert(sp_output_tmp_remove(tp(".o.sparsify-tmp-4")));
    ck_assert(!exists(tp(".o.sparsify-tmp-4")) && exists(tp("outside/keep.txt")));
    /* a file */
    put_file(tp(".o.sparsify-tmp-5"), "f");
    ck_assert(sp_output_tmp_remove(tp(".o.sparsify-tmp-5")));
    ck_assert(!exists(tp(".o.sparsify-tmp-5")));
    ck_assert(!sp_output_tmp_remove(tp(".o.sparsify-tmp-5")));
}
END_TEST

START_TEST(test_clean_stale)
{
    char name[256], path[512];
    long dead = dead_pid();
    /* a dead run's marked folder and file go; unmarked, live, other names stay */
    snprintf(name, sizeof name, ".out.sparsify-tmp-%ld", dead);
    mkdir(tp(name), 0755);
    snprintf(path, sizeof path, "%s/%s", tp(name), SP_TMP_MARKER);
    put_file(path, "");
    snprintf(name, sizeof name, ".out.sparsify-tmp-%ld-old", dead);
    mkdir(tp(name), 0755);
    snprintf(path, sizeof path, "%s/%s", tp(name), SP_TMP_MARKER);
    put_file(path, "");
    long dead2 = dead_pid();
    snprintf(name, sizeof name, ".out.sparsify-tmp-%ld", dead2);
    mkdir(tp(name), 0755); /* no marker */
    snprintf(name, sizeof name, ".out.sparsify-tmp-%ld", (long)getppid());
    mkdir(tp(name), 0755); /* a live PID */
    snprintf(path, sizeof path, "%s/%s", tp(name), SP_TMP_MARKER);
    put_file(path, "");
    long dead3 = dead_pid();
    snprintf(name, sizeof name, ".other.sparsify-tmp-%ld", dead3);
    put_file(tp(name), "another output's");
    snprintf(name, sizeof name, ".out.sparsify-tmp-%ldx", dead3);
    put_file(tp(name), "not our pattern");
    ck_assert_uint_eq(sp_output_clean_stale(tp("out")), 2);
    snprintf(name, sizeof name, ".out.sparsify-tmp-%ld", dead);
    ck_assert(!exists(tp(name)));
    snprintf(name, sizeof name, ".out.sparsify-tmp-%ld", dead2);
    ck_assert(exists(tp(name)));
    snprintf(name, sizeof name, ".out.sparsify-tmp-%ld", (long)getppid());
    ck_assert(exists(tp(name)));
    snprintf(name, sizeof name, ".other.sparsify-tmp-%ld", dead3);
    ck_assert(exists(tp(name)));
    snprintf(name, sizeof name, ".out.sparsify-tmp-%ldx", dead3);
    ck_assert(exists(tp(name)));
}
END_TEST

START_TEST(test_write_atomic)
{
    sp_error err = {0};
    ck_assert_int_eq(sp_file_write_atomic(tp("a.txt"), "one", 3, &err), SP_OK);
    char *t = get_file(tp("a.txt"));
    ck_assert_str_eq(t, "one");
    free(t);
    ck_assert_int_eq(sp_file_write_atomic(tp("a.txt"), "two", 3, &err), SP_OK);
    t = get_file(tp("a.txt"));
    ck_assert_str_eq(t, "two");
    free(t);
    /* a link is replaced as a link */
    put_file(tp("target.txt"), "target");
    ck_assert_int_eq(symlink(tp("target.txt"), tp("link.txt")), 0);
    ck_assert_int_eq(sp_file_write_atomic(tp("link.txt"), "new", 3, &err), SP_OK);
    struct stat st;
    ck_assert_int_eq(lstat(tp("link.txt"), &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    t = get_file(tp("target.txt"));
    ck_assert_str_eq(t, "target");
    free(t);
    /* a folder is replaced by a file; its links are not followed */
    mkdir(tp("outside"), 0755);
    put_file(tp("outside/keep.txt"), "keep");
    mkdir(tp("dir"), 0755);
    put_file(tp("dir/f"), "f");
    ck_assert_int_eq(symlink(tp("outside"), tp("dir/l")), 0);
    ck_assert_int_eq(sp_file_write_atomic(tp("dir"), "file", 4, &err), SP_OK);
    ck_assert_int_eq(lstat(tp("dir"), &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert(exists(tp("outside/keep.txt")));
    /* no temporaries left */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q sparsify-tmp", tmpdir);
    ck_assert_int_ne(system(cmd), 0);
    /* a missing folder: an error naming the output */
    ck_assert_int_eq(sp_file_write_atomic(tp("nope/x"), "x", 1, &err), SP_ERR_IO);
    ck_assert_msg(strstr(err.msg, "nope/x"), "%s", err.msg);
}
END_TEST

START_TEST(test_outfile_appeared)
{
    /* nothing at the output when the writer started: something that
     * appears meanwhile is not overwritten */
    sp_outfile of;
    sp_error err = {0};
    ck_assert_int_eq(sp_outfile_open(&of, tp("late.pt"), &err), SP_OK);
    ck_assert_int_eq(sp_outfile_write(&of, "mine", 4, &err), SP_OK);
    put_file(tp("late.pt"), "someone else's");
    ck_assert_int_eq(sp_outfile_commit(&of, &err), SP_ERR_IO);
    ck_assert_msg(strstr(err.msg, "appeared"), "%s", err.msg);
    char *t = get_file(tp("late.pt"));
    ck_assert_str_eq(t, "someone else's");
    free(t);
    /* and what was there when it started is replaced only if unchanged */
    ck_assert_int_eq(sp_outfile_open(&of, tp("late.pt"), &err), SP_OK);
    ck_assert_int_eq(sp_outfile_write(&of, "mine", 4, &err), SP_OK);
    unlink(tp("late.pt"));
    put_file(tp("late.pt"), "replaced meanwhile");
    ck_assert_int_eq(sp_outfile_commit(&of, &err), SP_ERR_IO);
    t = get_file(tp("late.pt"));
    ck_assert_str_eq(t, "replaced meanwhile");
    free(t);
}
END_TEST

START_TEST(test_outdir_replace)
{
    sp_outdir od;
    sp_error err = {0};
    char buf[512];
    mkdir(tp("outside"), 0755);
    put_file(tp("outside/keep.txt"), "keep");
    mkdir(tp("model"), 0755);
    mkdir(tp("model/sub"), 0755);
    put_file(tp("model/sub/old.bin"), "old");
    ck_assert_int_eq(symlink(tp("outside"), tp("model/sub/out")), 0);
    ck_assert_int_eq(sp_outdir_open(&od, tp("model"), &err), SP_OK);
    put_file(sp_outdir_file(&od, "new.bin", buf, sizeof buf), "new");
    ck_assert_int_eq(sp_outdir_commit(&od, &err), SP_OK);
    ck_assert(exists(tp("model/new.bin")) && !exists(tp("model/sub")));
    ck_assert(!exists(tp("model/" SP_TMP_MARKER)));
    ck_assert(exists(tp("outside/keep.txt")));
    /* an aborted folder leaves nothing */
    ck_assert_int_eq(sp_outdir_open(&od, tp("gone"), &err), SP_OK);
    put_file(sp_outdir_file(&od, "x", buf, sizeof buf), "x");
    sp_outdir_abort(&od);
    ck_assert(!exists(tp("gone")));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q sparsify-tmp", tmpdir);
    ck_assert_int_ne(system(cmd), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fileio");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {
        {"sp_output_tmp_path", test_tmp_path},
        {"sp_output_tmp_remove", test_tmp_remove},
        {"sp_output_clean_stale", test_clean_stale},
        {"sp_file_write_atomic", test_write_atomic},
        {"sp_outfile_commit", test_outfile_appeared},
        {"sp_outdir_commit", test_outdir_replace},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void) { return tu_run(suite()) ? 1 : 0; }
