/* Unit tests for prune/schedule.c: SparseML-compatible sparsity schedules. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "sparsify/prune.h"

#define EPS 1e-12

START_TEST(test_inter_func_parse)
{
    sp_inter_func f;
    sp_error err = {0};
    ck_assert_int_eq(sp_inter_func_parse(&f, "cubic", &err), SP_OK);
    ck_assert_int_eq(f, SP_INTER_CUBIC);
    ck_assert_int_eq(sp_inter_func_parse(&f, "linear", &err), SP_OK);
    ck_assert_int_eq(f, SP_INTER_LINEAR);
    ck_assert_int_eq(sp_inter_func_parse(&f, "inverse_cubic", &err), SP_OK);
    ck_assert_int_eq(f, SP_INTER_INVERSE_CUBIC);
    ck_assert_int_eq(sp_inter_func_parse(&f, "quadratic", &err), SP_ERR_INVALID_ARG);
    ck_assert_str_eq(err.msg, "'quadratic' is not one of cubic, linear, inverse_cubic");
}
END_TEST

START_TEST(test_inter_func_str)
{
    ck_assert_str_eq(sp_inter_func_str(SP_INTER_CUBIC), "cubic");
    ck_assert_str_eq(sp_inter_func_str(SP_INTER_LINEAR), "linear");
    ck_assert_str_eq(sp_inter_func_str(SP_INTER_INVERSE_CUBIC), "inverse_cubic");
}
END_TEST

START_TEST(test_schedule_values)
{
    /* 0 -> 0.9 over epochs 0..10, continuous (update_frequency 0) */
    for (int e = 0; e <= 10; e++) {
        double p = e / 10.0;
        double lin = sp_schedule_sparsity(0, 0.9, 0, 10, 0, SP_INTER_LINEAR, e);
        double cub = sp_schedule_sparsity(0, 0.9, 0, 10, 0, SP_INTER_CUBIC, e);
        double inv = sp_schedule_sparsity(0, 0.9, 0, 10, 0, SP_INTER_INVERSE_CUBIC, e);
        ck_assert_double_eq_tol(lin, 0.9 * p, EPS);
        ck_assert_double_eq_tol(cub, 0.9 + (0 - 0.9) * pow(1 - p, 3), EPS);
        ck_assert_double_eq_tol(inv, 0.9 * (1 - cbrt(1 - p)), EPS);
    }
    /* known points: cubic at half way is 0.9 * (1 - 1/8) = 0.7875 */
    ck_assert_double_eq_tol(sp_schedule_sparsity(0, 0.9, 0, 10, 0, SP_INTER_CUBIC, 5), 0.7875, EPS);
    ck_assert_double_eq_tol(sp_schedule_sparsity(0.05, 0.85, 2, 6, 0, SP_INTER_LINEAR, 3), 0.25, EPS);
    /* inverse cubic is slow early: below linear before the end */
    ck_assert(sp_schedule_sparsity(0, 0.9, 0, 10, 0, SP_INTER_INVERSE_CUBIC, 5) <
              sp_schedule_sparsity(0, 0.9, 0, 10, 0, SP_INTER_LINEAR, 5));
    /* before start: init; at and after end: final */
    ck_assert_double_eq(sp_schedule_sparsity(0.1, 0.9, 2, 10, 1, SP_INTER_CUBIC, 1.5), 0.1);
    ck_assert_double_eq(sp_schedule_sparsity(0.1, 0.9, 2, 10, 1, SP_INTER_CUBIC, 10), 0.9);
    ck_assert_double_eq(sp_schedule_sparsity(0.1, 0.9, 2, 10, 1, SP_INTER_CUBIC, 99), 0.9);
    ck_assert_double_eq(sp_schedule_sparsity(0.1, 0.9, 2, 10, 1, SP_INTER_CUBIC, 2), 0.1);
    /* fractional epochs are continuous without an update frequency */
    ck_assert_double_eq_tol(sp_schedule_sparsity(0, 1, 0, 4, 0, SP_INTER_LINEAR, 1.5), 0.375, EPS);
}
END_TEST

START_TEST(test_schedule_update_frequency)
{
    /* every 2 epochs from 1 to 9: values change only at 1, 3, 5, 7, then 9 */
    for (double e = 1; e < 9; e += 0.25) {
        double step = 1 + 2 * floor((e - 1) / 2 + 1e-12);
        double want = sp_schedule_sparsity(0, 0.8, 1, 9, 0, SP_INTER_CUBIC, step);
        ck_assert_double_eq_tol(sp_schedule_sparsity(0, 0.8, 1, 9, 2, SP_INTER_CUBIC, e), want, EPS);
    }
    ck_assert_double_eq(sp_schedule_sparsity(0, 0.8, 1, 9, 2, SP_INTER_CUBIC, 8.99), 
                        sp_schedule_sparsity(0, 0.8, 1, 9, 0, SP_INTER_CUBIC, 7));
    ck_assert_double_eq(sp_schedule_sparsity(0, 0.8, 1, 9, 2, SP_INTER_CUBIC, 9), 0.8);
    /* fractional frequency: 0.3 / 0.1 is step 3, not 2.999 */
    ck_assert_double_eq_tol(sp_schedule_sparsity(0, 1, 0, 1, 0.1, SP_INTER_LINEAR, 0.3), 0.3, EPS);
    /* a step that lands past the end is final */
    ck_assert_double_eq(sp_schedule_sparsity(0, 0.5, 0, 5, 3, SP_INTER_LINEAR, 4), 0.3);
}
END_TEST

START_TEST(test_schedule_one_shot)
{
    ck_assert_double_eq(sp_schedule_sparsity(0, 0.9, 3, 3, 1, SP_INTER_CUBIC, 2.9), 0.0);
    ck_assert_double_eq(sp_schedule_sparsity(0, 0.9, 3, 3, 1, SP_INTER_CUBIC, 3), 0.9);
    ck_assert_double_eq(sp_schedule_sparsity(0, 0.9, 3, 3, -1, SP_INTER_LINEAR, 50), 0.9);
    ck_assert_double_eq(sp_schedule_sparsity(0.9, 0.9, 0, 0, 1, SP_INTER_CUBIC, 0), 0.9);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("schedule");
    TCase *tc;
    tc = tcase_create("inter_func_parse");
    tcase_add_test(tc, test_inter_func_parse);
    suite_add_tcase(s, tc);
    tc = tcase_create("inter_func_str");
    tcase_add_test(tc, test_inter_func_str);
    suite_add_tcase(s, tc);
    tc = tcase_create("schedule_sparsity");
    tcase_add_test(tc, test_schedule_values);
    tcase_add_test(tc, test_schedule_update_frequency);
    tcase_add_test(tc, test_schedule_one_shot);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
