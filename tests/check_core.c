/*
 * Unit tests for the core helpers every reader relies on: the checked size
 * arithmetic of formats/checked.h (shapes, strides, byte sizes, view
 * extents, the view bound, JSON parse cost).
 */
#include "formats/checked.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

START_TEST(test_shape_numel)
{
    int64_t n = -1;
    int64_t s1[] = {3, 4, 5};
    ck_assert(sp_shape_numel(3, s1, &n) && n == 60);
    ck_assert(sp_shape_numel(0, s1, &n) && n == 1); /* 0-d */
    int64_t s2[] = {(int64_t)1 << 31, (int64_t)1 << 31};
    ck_assert(sp_shape_numel(2, s2, &n) && n == (int64_t)1 << 62);
    int64_t s3[] = {(int64_t)1 << 32, (int64_t)1 << 32};
    ck_assert(!sp_shape_numel(2, s3, &n)); /* 2^64 elements */
    /* a zero dimension does not excuse the others: the strides of
     * [0, 2^40, 2^40] overflow (finding 3 of issue 9) */
    int64_t s4[] = {0, (int64_t)1 << 40, (int64_t)1 << 40};
    ck_assert(!sp_shape_numel(3, s4, &n));
    int64_t s5[] = {0, 7, 3};
    ck_assert(sp_shape_numel(3, s5, &n) && n == 0);
    int64_t s6[] = {2, -1};
    ck_assert(!sp_shape_numel(2, s6, &n));
    ck_assert(!sp_shape_numel(SP_MAX_DIMS + 1, s1, &n));
    ck_assert(!sp_shape_numel(-1, s1, &n));
}
END_TEST

START_TEST(test_shape_strides)
{
    int64_t st[4];
    int64_t s1[] = {2, 3, 4};
    ck_assert(sp_shape_strides(3, s1, st));
    ck_assert(st[0] == 12 && st[1] == 4 && st[2] == 1);
    int64_t s2[] = {0, 3, 0, 5};
    ck_assert(sp_shape_strides(4, s2, st));
    ck_assert(st[0] == 15 && st[1] == 5 && st[2] == 5 && st[3] == 1);
    int64_t s3[] = {2, INT64_MAX, 2};
    ck_assert(!sp_shape_strides(3, s3, st));
}
END_TEST

START_TEST(test_numel_bytes)
{
    uint64_t b = 0;
    ck_assert(sp_numel_bytes(10, 4, &b) && b == 40);
    ck_assert(sp_numel_bytes(0, 8, &b) && b == 0);
    /* (2^31)^2 float32: the product wraps to 0 in 64 bits (finding 2) */
    ck_assert(!sp_numel_bytes((int64_t)1 << 62, 4, &b));
    ck_assert(!sp_numel_bytes(-1, 4, &b));
    ck_assert(sp_numel_bytes(INT64_MAX, 1, &b) && b == (uint64_t)INT64_MAX);
    ck_assert(!sp_numel_bytes(INT64_MAX / 2 + 1, 2, &b));
}
END_TEST

START_TEST(test_view_last)
{
    sp_tensor t;
    memset(&t, 0, sizeof t);
    t.ndim = 2;
    t.shape[0] = 3;
    t.shape[1] = 4;
    t.stride[0] = 4;
    t.stride[1] = 1;
    t.offset = 5;
    uint64_t last = 0;
    ck_assert(sp_view_last(&t, &last) && last == 5 + 2 * 4 + 3);
    t.stride[0] = 0; /* expand() */
    ck_assert(sp_view_last(&t, &last) && last == 5 + 3);
    t.shape[0] = INT64_MAX;
    t.stride[0] = INT64_MAX;
    ck_assert(!sp_view_last(&t, &last));
    t.shape[0] = 0; /* empty: no last element */
    ck_assert(!sp_view_last(&t, &last));
    t.shape[0] = 2;
    t.stride[0] = -1;
    ck_assert(!sp_view_last(&t, &last));
    t.stride[0] = 1;
    t.offset = -1;
    ck_assert(!sp_view_last(&t, &last));
}
END_TEST

START_TEST(test_view_bound)
{
    /* 64 x the storage + 64 MiB (docs/architecture.md) */
    ck_assert(sp_view_bound_ok(0, 0));
    ck_assert(sp_view_bound_ok(SP_VIEW_SLACK, 0));
    ck_assert(!sp_view_bound_ok(SP_VIEW_SLACK + 1, 0));
    ck_assert(sp_view_bound_ok(64 * 1000 + SP_VIEW_SLACK, 1000));
    ck_assert(!sp_view_bound_ok(64 * 1000 + SP_VIEW_SLACK + 1, 1000));
    ck_assert(!sp_view_bound_ok((uint64_t)1 << 32, 4)); /* a 2^30 stride-0 view */
    ck_assert(sp_view_bound_ok(UINT64_MAX, UINT64_MAX / 2));
}
END_TEST

START_TEST(test_checked_ops)
{
    uint64_t r;
    size_t z;
    ck_assert(sp_add_u64(1, 2, &r) && r == 3);
    ck_assert(!sp_add_u64(UINT64_MAX, 1, &r));
    ck_assert(sp_mul_u64(1ull << 31, 1ull << 32, &r) && r == 1ull << 63);
    ck_assert(!sp_mul_u64(1ull << 32, 1ull << 32, &r));
    ck_assert(sp_muladd_u64(3, 4, 5, &r) && r == 17);
    ck_assert(!sp_muladd_u64(1ull << 63, 2, 0, &r));
    ck_assert(!sp_muladd_u64(1ull << 63, 1, 1ull << 63, &r));
    ck_assert(sp_range_ok(0, 10, 10) && sp_range_ok(10, 0, 10) && !sp_range_ok(11, 0, 10));
    ck_assert(!sp_range_ok(5, 6, 10) && !sp_range_ok(1, UINT64_MAX, 10));
    ck_assert(sp_mul_size(1000, 8, &z) && z == 8000);
    ck_assert(!sp_mul_size(1ull << 62, 8, &z));
}
END_TEST

START_TEST(test_json_cost)
{
    const char *ok = "{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]}}";
    ck_assert(sp_json_cost_ok(ok, strlen(ok), 64, 3));
    ck_assert(!sp_json_cost_ok(ok, strlen(ok), 64, 2)); /* depth */
    ck_assert(!sp_json_cost_ok(ok, strlen(ok), 5, 3));  /* values */
    /* brackets and commas inside strings do not count */
    const char *str = "{\"[[[,,,\\\"]]]\": \"{{{,,,\"}";
    ck_assert(sp_json_cost_ok(str, strlen(str), 4, 1));
    /* a long array of zeros costs one value per element */
    size_t n = 2000;
    char *arr = malloc(2 * n + 2);
    arr[0] = '[';
    for (size_t i = 0; i < n; i++) {
        arr[1 + 2 * i] = '0';
        arr[2 + 2 * i] = i + 1 < n ? ',' : ']';
    }
    ck_assert(!sp_json_cost_ok(arr, 2 * n + 1, 1000, 4));
    ck_assert(sp_json_cost_ok(arr, 2 * n + 1, 3000, 4));
    free(arr);
    /* an unterminated string or stray closers do not read past the end */
    ck_assert(sp_json_cost_ok("\"abc\\", 5, 10, 1));
    ck_assert(sp_json_cost_ok("]]]]", 4, 10, 1));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("core");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {
        {"sp_shape_numel", test_shape_numel},     {"sp_shape_strides", test_shape_strides},
        {"sp_numel_bytes", test_numel_bytes},     {"sp_view_last", test_view_last},
        {"sp_view_bound_ok", test_view_bound},    {"checked_ops", test_checked_ops},
        {"sp_json_cost_ok", test_json_cost},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    int failed = tu_run(suite());
    return failed ? 1 : 0;
}
