/*
 * Unit tests for formats/pickle.c: hand-built pickles covering every opcode
 * the reader accepts, memo sharing, hostile input, and the writer.
 */
#include "formats/pickle.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

/* A growable byte string for building pickles by hand. */
typedef struct bytes {
    unsigned char *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void op(bytes *b, int c)
{
    unsigned char x = (unsigned char)c;
    put(b, &x, 1);
}
static void le(bytes *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        op(b, (int)((v >> (8 * i)) & 0xff));
}
static void str(bytes *b, const char *s) { put(b, s, strlen(s)); }

static sp_status parse(sp_pickle *pk, const bytes *b, sp_error *err)
{
    return sp_pickle_parse(pk, b->p, b->n, NULL, "test", err);
}

START_TEST(test_parse_scalars)
{
    bytes b = {0};
    op(&b, 0x80), op(&b, 2);
    op(&b, 0x95), le(&b, 0, 8); /* empty FRAME header is fine */
    op(&b, '(');
    op(&b, 'J'), le(&b, (uint32_t)-5, 4);
    op(&b, 'K'), op(&b, 200);
    op(&b, 'M'), le(&b, 60000, 2);
    op(&b, 0x8a), op(&b, 8), le(&b, (uint64_t)INT64_C(-1234567890123), 8);
    op(&b, 0x8a), op(&b, 0);                                        /* 0 */
    op(&b, 0x8a), op(&b, 2), le(&b, 0xff7f, 2);                     /* -129 */
    op(&b, 0x8b), le(&b, 3, 4), le(&b, 0x010000, 3);                /* 65536 */
    op(&b, 0x8a), op(&b, 10), le(&b, 0x0102030405060708ull, 8), le(&b, 0x0a09, 2);
    op(&b, 'G'), put(&b, "\x40\x09\x21\xfb\x54\x44\x2d\x18", 8); /* pi */
    op(&b, 'N'), op(&b, 0x88), op(&b, 0x89);
    op(&b, 't'), op(&b, '.');
    sp_pickle pk;
    sp_error err = {0};
    ck_assert_int_eq(parse(&pk, &b, &err), SP_OK);
    const sp_pk *t = pk.root;
    ck_assert_int_eq(t->kind, SP_PK_TUPLE);
    ck_assert_uint_eq(t->n, 12);
    ck_assert_int_eq(t->items[0]->i, -5);
    ck_assert_int_eq(t->items[1]->i, 200);
    ck_assert_int_eq(t->items[2]->i, 60000);
    ck_assert_int_eq(t->items[3]->i, INT64_C(-1234567890123));
    ck_assert_int_eq(t->items[4]->i, 0);
    ck_assert_int_eq(t->items[5]->i, -129);
    ck_assert_int_eq(t->items[6]->i, 65536);
    ck_assert_int_eq(t->items[7]->kind, SP_PK_BIGINT);
    ck_assert_uint_eq(t->items[7]->slen, 10);
    ck_assert_int_eq(t->items[8]->kind, SP_PK_FLOAT);
    ck_assert_double_eq_tol(t->items[8]->f, 3.141592653589793, 1e-15);
    ck_assert_int_eq(t->items[9]->kind, SP_PK_NONE);
    ck_assert(t->items[10]->kind == SP_PK_BOOL && t->items[10]->b);
    ck_assert(t->items[11]->kind == SP_PK_BOOL && !t->items[11]->b);
    sp_pickle_release(&pk);
    free(b.p);
}
END_TEST

START_TEST(test_parse_strings)
{
    bytes b = {0};
    op(&b, 0x80), op(&b, 2), op(&b, '(');
    op(&b, 0x8c), op(&b, 2), str(&b, "ab");
    op(&b, 'X'), le(&b, 3, 4), str(&b, "cde");
    op(&b, 0x8d), le(&b, 1, 8), str(&b, "f");
    op(&b, 'C'), op(&b, 2), put(&b, "\0\1", 2);
    op(&b, 'B'), le(&b, 1, 4), str(&b, "g");
    op(&b, 0x8e), le(&b, 0, 8);
    op(&b, 'U'), op(&b, 1), str(&b, "h");
    op(&b, 'T'), le(&b, 2, 4), str(&b, "ij");
    op(&b, 't'), op(&b, '.');
    sp_pickle pk;
    sp_error err = {0};
    ck_assert_int_eq(parse(&pk, &b, &err), SP_OK);
    const sp_pk *t = pk.root;
    ck_assert_uint_eq(t->n, 8);
    ck_assert_str_eq(t->items[0]->s, "ab");
    ck_assert_str_eq(t->items[1]->s, "cde");
    ck_assert_str_eq(t->items[2]->s, "f");
    ck_assert_int_eq(t->items[3]->kind, SP_PK_BYTES);
    ck_assert_uint_eq(t->items[3]->slen, 2);
    ck_assert_mem_eq(t->items[3]->s, "\0\1", 2);
    ck_assert_int_eq(t->items[4]->kind, SP_PK_BYTES);
    ck_assert_uint_eq(t->items[5]->slen, 0);
    ck_assert_int_eq(t->items[6]->kind, SP_PK_STR);
    ck_assert_str_eq(t->items[7]->s, "ij");
    sp_pickle_release(&pk);
    free(b.p);
}
END_TEST

START_TEST(test_parse_containers)
{
    bytes b = {0};
    op(&b, 0x80), op(&b, 2);
    op(&b, '}');                                       /* dict */
    op(&b, 0x8c), op(&b, 1), str(&b, "l");
    op(&b, ']'), op(&b, 'K'), op(&b, 1), op(&b, 'a');   /* [1] */
    op(&b, '('), op(&b, 'K'), op(&b, 2), op(&b, 'K'), op(&b, 3), op(&b, 'e'); /* [1,2,3] */
    op(&b, 's');
    op(&b, '(');
    op(&b, 0x8c), op(&b, 1), str(&b, "t");
    op(&b, ')'), op(&b, 'K'), op(&b, 1), op(&b, 0x85), op(&b, 'K'), op(&b, 1), op(&b, 'K'),
        op(&b, 2), op(&b, 0x86), op(&b, 0x87); /* ((), (1,), (1,2)) */
    op(&b, 0x8c), op(&b, 1), str(&b, "s");
    op(&b, 0x8f), op(&b, '('), op(&b, 'K'), op(&b, 9), op(&b, 0x90); /* {9} */
    op(&b, 0x8c), op(&b, 1), str(&b, "f");
    op(&b, '('), op(&b, 'K'), op(&b, 8), op(&b, 0x91);               /* frozenset */
    op(&b, 'u');
    /* POP, POP_MARK, DUP on the side: push junk then drop it */
    op(&b, 'N'), op(&b, '0');
    op(&b, '('), op(&b, 'N'), op(&b, 'N'), op(&b, '1');
    op(&b, '2'), op(&b, '0');
    op(&b, '.');
    sp_pickle pk;
    sp_error err = {0};
    ck_assert_msg(parse(&pk, &b, &err) == SP_OK, "%s", err.msg);
    const sp_pk *d = pk.root;
    ck_assert_int_eq(d->kind, SP_PK_DICT);
    ck_assert_uint_eq(d->n, 8);
    ck_assert_str_eq(d->items[0]->s, "l");
    ck_assert_int_eq(d->items[1]->kind, SP_PK_LIST);
    ck_assert_uint_eq(d->items[1]->n, 3);
    ck_assert_int_eq(d->items[1]->items[2]->i, 3);
    const sp_pk *t = d->items[3];
    ck_assert_int_eq(t->kind, SP_PK_TUPLE);
    ck_assert_uint_eq(t->n, 3);
    ck_assert_uint_eq(t->items[0]->n, 0);
    ck_assert_uint_eq(t->items[1]->n, 1);
    ck_assert_uint_eq(t->items[2]->n, 2);
    ck_assert_int_eq(d->items[5]->kind, SP_PK_SET);
    ck_assert_int_eq(d->items[5]->items[0]->i, 9);
    ck_assert_int_eq(d->items[7]->kind, SP_PK_FROZENSET);
    ck_assert_ptr_eq(sp_pk_item(t, 1), t->items[1]);
    ck_assert_ptr_null(sp_pk_item(t, 3));
    sp_pickle_release(&pk);
    free(b.p);
}
END_TEST

START_TEST(test_parse_objects)
{
    bytes b = {0};
    op(&b, 0x80), op(&b, 2), op(&b, '(');
    /* GLOBAL + REDUCE + BUILD */
    op(&b, 'c'), str(&b, "mod.sub\nFn\n"), op(&b, 'K'), op(&b, 1), op(&b, 0x85), op(&b, 'R');
    op(&b, '}'), op(&b, 'b');
    /* STACK_GLOBAL + NEWOBJ */
    op(&b, 0x8c), op(&b, 1), str(&b, "m"), op(&b, 0x8c), op(&b, 1), str(&b, "C");
    op(&b, 0x93), op(&b, ')'), op(&b, 0x81);
    /* OrderedDict() becomes an ordered dict; SETITEMS then BUILD */
    op(&b, 'c'), str(&b, "collections\nOrderedDict\n"), op(&b, ')'), op(&b, 'R');
    op(&b, '('), op(&b, 0x8c), op(&b, 1), str(&b, "k"), op(&b, 'K'), op(&b, 5), op(&b, 'u');
    op(&b, '}'), op(&b, 'b');
    /* BINPERSID and PERSID */
    op(&b, 0x8c), op(&b, 3), str(&b, "pid"), op(&b, 0x85), op(&b, 'Q');
    op(&b, 'P'), str(&b, "text-id\n");
    op(&b, 't'), op(&b, '.');
    sp_pickle pk;
    sp_error err = {0};
    ck_assert_msg(parse(&pk, &b, &err) == SP_OK, "%s", err.msg);
    const sp_pk *t = pk.root;
    ck_assert_uint_eq(t->n, 5);
    const sp_pk *r = t->items[0];
    ck_assert_int_eq(r->kind, SP_PK_REDUCE);
    ck_assert(sp_pk_is_global(r->callable, "mod.sub", "Fn"));
    ck_assert(!sp_pk_is_global(r->callable, "mod", "Fn"));
    ck_assert_int_eq(r->args->items[0]->i, 1);
    ck_assert_int_eq(r->state->kind, SP_PK_DICT);
    ck_assert_int_eq(t->items[1]->kind, SP_PK_NEWOBJ);
    ck_assert(sp_pk_is_global(t->items[1]->callable, "m", "C"));
    ck_assert_int_eq(t->items[2]->kind, SP_PK_DICT);
    ck_assert(t->items[2]->ordered);
    ck_assert_uint_eq(t->items[2]->n, 2);
    ck_assert_ptr_nonnull(t->items[2]->state);
    ck_assert_int_eq(t->items[3]->kind, SP_PK_PERSID);
    ck_assert_str_eq(t->items[3]->args->items[0]->s, "pid");
    ck_assert_int_eq(t->items[4]->kind, SP_PK_PERSID);
    ck_assert_str_eq(t->items[4]->args->s, "text-id");
    sp_pickle_release(&pk);
    free(b.p);
}
END_TEST

START_TEST(test_parse_memo)
{
    /* one dict memoized, fetched 1000 times by BINGET / LONG_BINGET /
     * MEMOIZE'd slot: one node, shared */
    bytes b = {0};
    op(&b, 0x80), op(&b, 2), op(&b, ']'), op(&b, 'q'), op(&b, 0);
    op(&b, '}'), op(&b, 'r'), le(&b, 1, 4), op(&b, 0x94); /* memo 1 and 2 */
    op(&b, '0');
    op(&b, '(');
    for (int i = 0; i < 1000; i++) {
        if (i % 3 == 0)
            op(&b, 'h'), op(&b, 1);
        else if (i % 3 == 1)
            op(&b, 'j'), le(&b, 1, 4);
        else
            op(&b, 'h'), op(&b, 2);
    }
    op(&b, 'e'), op(&b, '.');
    sp_pickle pk;
    sp_error err = {0};
    size_t used = 0;
    ck_assert_msg(sp_pickle_parse(&pk, b.p, b.n, &used, "test", &err) == SP_OK, "%s", err.msg);
    ck_assert_uint_eq(used, b.n);
    ck_assert_uint_eq(pk.root->n, 1000);
    for (int i = 1; i < 1000; i++)
        ck_assert_ptr_eq(pk.root->items[i], pk.root->items[0]);
    ck_assert_uint_lt(pk.nall, 10);
    sp_pickle_release(&pk);
    free(b.p);
}
END_TEST

static void expect_format(const bytes *b, const char *needle)
{
    sp_pickle pk;
    sp_error err = {0};
    ck_assert_int_eq(sp_pickle_parse(&pk, b->p, b->n, NULL, "hostile", &err), SP_ERR_FORMAT);
    ck_assert_ptr_null(pk.root);
    if (needle)
        ck_assert_msg(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
}

START_TEST(test_parse_hostile)
{
    bytes b = {0};
    /* unknown opcode: named with its offset */
    op(&b, 0x80), op(&b, 2), op(&b, 0xff), op(&b, '.');
    expect_format(&b, "0xff at offset 2");
    /* absurd BINUNICODE8 length: no allocation, format error */
    b.n = 0;
    op(&b, 0x80), op(&b, 2), op(&b, 0x8d), le(&b, UINT64_C(1) << 62, 8), str(&b, "abc.");
    expect_format(&b, "truncated");
    b.n = 0;
    op(&b, 'X'), le(&b, 0xffffffffu, 4), op(&b, '.');
    expect_format(&b, "truncated");
    /* deep nesting: 100000 lists appended into each other */
    b.n = 0;
    for (int i = 0; i < 100000; i++)
        op(&b, ']');
    for (int i = 0; i < 99999; i++)
        op(&b, 'a');
    op(&b, '.');
    expect_format(&b, "nesting");
    /* 100000 marks */
    b.n = 0;
    for (int i = 0; i < 100000; i++)
        op(&b, '(');
    op(&b, '.');
    expect_format(&b, "marks");
    /* deep tuples */
    b.n = 0;
    op(&b, ')');
    for (int i = 0; i < 100000; i++)
        op(&b, 0x85);
    op(&b, '.');
    expect_format(&b, "nesting");
    /* memo: undefined get, huge put index */
    b.n = 0;
    op(&b, 'N'), op(&b, 'h'), op(&b, 5), op(&b, '.');
    expect_format(&b, "memo");
    b.n = 0;
    op(&b, 'N'), op(&b, 'r'), le(&b, 0xfffffff0u, 4), op(&b, '.');
    expect_format(&b, "memo");
    /* structure errors */
    b.n = 0;
    op(&b, 'a'), op(&b, '.');
    expect_format(&b, "underflow");
    b.n = 0;
    op(&b, 'K'), op(&b, 1), op(&b, 'K'), op(&b, 2), op(&b, 'a'), op(&b, '.');
    expect_format(&b, NULL); /* append to an int */
    b.n = 0;
    op(&b, 'N'), op(&b, 'N'), op(&b, '.');
    expect_format(&b, "STOP");
    b.n = 0;
    op(&b, 'c'), str(&b, "os\nsystem"); /* unterminated line */
    expect_format(&b, "truncated");
    b.n = 0;
    expect_format(&b, "truncated"); /* empty input */
    free(b.p);
}
END_TEST

START_TEST(test_parse_truncated)
{
    /* a pickle using most opcodes, cut at every length: always an error */
    bytes b = {0};
    op(&b, 0x80), op(&b, 2), op(&b, 'c'), str(&b, "collections\nOrderedDict\n"), op(&b, 'q'),
        op(&b, 0), op(&b, ')'), op(&b, 'R');
    op(&b, '('), op(&b, 'X'), le(&b, 4, 4), str(&b, "name"), op(&b, 'G'), put(&b, "\x3f\xf0\0\0\0\0\0\0", 8);
    op(&b, 0x8c), op(&b, 2), str(&b, "xs"), op(&b, ']'), op(&b, '('), op(&b, 'J'), le(&b, 7, 4),
        op(&b, 'M'), le(&b, 300, 2), op(&b, 0x8a), op(&b, 1), op(&b, 0x80), op(&b, 'e');
    op(&b, 'u'), op(&b, '.');
    sp_pickle pk;
    sp_error err = {0};
    ck_assert_int_eq(parse(&pk, &b, &err), SP_OK);
    sp_pickle_release(&pk);
    for (size_t cut = 0; cut < b.n; cut++) {
        ck_assert_int_eq(sp_pickle_parse(&pk, b.p, cut, NULL, "cut", &err), SP_ERR_FORMAT);
    }
    free(b.p);
}
END_TEST

START_TEST(test_write_roundtrip)
{
    /* build: OrderedDict(a=(1, -70000, 2**40, 1.5, 'x', b'y', None, True),
     *                    b=<same tuple>, c=[set, frozenset], d=REDUCE) */
    sp_pickle pk = {0};
    sp_pk *root = sp_pk_new(&pk, SP_PK_DICT);
    root->ordered = true;
    sp_pk *t = sp_pk_new(&pk, SP_PK_TUPLE);
    int64_t ints[] = {1, -70000, INT64_C(1) << 40, INT64_MIN};
    for (int i = 0; i < 4; i++)
        ck_assert(sp_pk_push(t, sp_pk_int(&pk, ints[i])));
    sp_pk *f = sp_pk_new(&pk, SP_PK_FLOAT);
    f->f = 1.5;
    ck_assert(sp_pk_push(t, f));
    ck_assert(sp_pk_push(t, sp_pk_str(&pk, "x")));
    sp_pk *by = sp_pk_new(&pk, SP_PK_BYTES);
    by->s = strdup("y");
    by->slen = 1;
    ck_assert(sp_pk_push(t, by));
    ck_assert(sp_pk_push(t, sp_pk_new(&pk, SP_PK_NONE)));
    ck_assert(sp_pk_push(root, sp_pk_str(&pk, "a")) && sp_pk_push(root, t));
    ck_assert(sp_pk_push(root, sp_pk_str(&pk, "b")) && sp_pk_push(root, t));
    sp_pk *l = sp_pk_new(&pk, SP_PK_LIST);
    for (int i = 0; i < 2500; i++) /* more than one APPENDS batch */
        ck_assert(sp_pk_push(l, sp_pk_int(&pk, i)));
    ck_assert(sp_pk_push(root, sp_pk_str(&pk, "c")) && sp_pk_push(root, l));
    sp_pk *r = sp_pk_new(&pk, SP_PK_REDUCE);
    r->callable = sp_pk_global(&pk, "torch._utils", "_rebuild_tensor_v2");
    r->args = sp_pk_new(&pk, SP_PK_TUPLE);
    r->state = sp_pk_new(&pk, SP_PK_DICT);
    ck_assert(sp_pk_push(root, sp_pk_str(&pk, "d")) && sp_pk_push(root, r));
    root->state = sp_pk_new(&pk, SP_PK_DICT);

    unsigned char *buf;
    size_t len;
    sp_error err = {0};
    ck_assert_int_eq(sp_pickle_write(root, &buf, &len, &err), SP_OK);
    sp_pickle back;
    ck_assert_msg(sp_pickle_parse(&back, buf, len, NULL, "rt", &err) == SP_OK, "%s", err.msg);
    const sp_pk *d = back.root;
    ck_assert(d->kind == SP_PK_DICT && d->ordered);
    ck_assert_uint_eq(d->n, 8);
    ck_assert_ptr_eq(d->items[1], d->items[3]); /* shared stays shared */
    const sp_pk *bt = d->items[1];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(bt->items[i]->i, ints[i]);
    ck_assert_double_eq(bt->items[4]->f, 1.5);
    ck_assert_str_eq(bt->items[5]->s, "x");
    ck_assert_int_eq(bt->items[6]->kind, SP_PK_BYTES);
    ck_assert_int_eq(bt->items[7]->kind, SP_PK_NONE);
    ck_assert_uint_eq(d->items[5]->n, 2500);
    ck_assert_int_eq(d->items[5]->items[2499]->i, 2499);
    ck_assert(sp_pk_is_global(d->items[7]->callable, "torch._utils", "_rebuild_tensor_v2"));
    ck_assert_ptr_nonnull(d->items[7]->state);
    ck_assert_ptr_nonnull(d->state);
    sp_pickle_release(&back);
    free(buf);

    /* a cycle cannot be written */
    ck_assert(sp_pk_push(l, l));
    ck_assert_int_ne(sp_pickle_write(root, &buf, &len, &err), SP_OK);
    sp_pickle_release(&pk);
}
END_TEST

START_TEST(test_release_zeroed)
{
    sp_pickle pk;
    memset(&pk, 0, sizeof pk);
    sp_pickle_release(&pk);
    ck_assert_ptr_null(pk.root);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pickle");
    struct { const char *name; const TTest *fn; } cases[] = {
        {"sp_pickle_parse_scalars", test_parse_scalars},
        {"sp_pickle_parse_strings", test_parse_strings},
        {"sp_pickle_parse_containers", test_parse_containers},
        {"sp_pickle_parse_objects", test_parse_objects},
        {"sp_pickle_parse_memo", test_parse_memo},
        {"sp_pickle_parse_hostile", test_parse_hostile},
        {"sp_pickle_parse_truncated", test_parse_truncated},
        {"sp_pickle_write", test_write_roundtrip},
        {"sp_pickle_release", test_release_zeroed},
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
    int failed = tu_run(suite());
    return failed ? 1 : 0;
}
