/* Allocation failures in the pure core. Linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc, so every allocation made by
 * the core's own code (not by libcjson, which is a shared library) goes
 * through the wrappers below. Each operation is run once per allocation it
 * makes, failing exactly that one: it must then return UNI1_ERR_NOMEM with
 * its output cleared, and leak nothing (valgrind and ASan check that). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uni1.h"
#include "uni1_internal.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);

static long countdown = -1; /* allocations left before the failure; -1: off */
static int injected;

static int should_fail(void)
{
    if (countdown < 0)
        return 0;
    if (countdown-- == 0) {
        injected = 1;
        countdown = -1;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    return should_fail() ? NULL : __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : __real_realloc(p, n);
}

static void arm(long k)
{
    injected = 0;
    countdown = k;
}

static void disarm(void)
{
    countdown = -1;
}

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* Runs op(k) for k = 0, 1, ... until a run makes no failed allocation. */
typedef uni1_status (*op_fn)(const void *arg, int *output_cleared);

static void sweep(op_fn op, const void *arg, long min_allocs)
{
    long k = 0;
    for (;; k++) {
        int cleared = 1;
        arm(k);
        uni1_status st = op(arg, &cleared);
        disarm();
        if (!injected) {
            assert_int_equal(st, UNI1_OK);
            break;
        }
        if (st != UNI1_ERR_NOMEM)
            fail_msg("allocation %ld failed but the status is %s", k, uni1_status_name(st));
        assert_true(cleared);
        assert_true(k < 10000);
    }
    /* the sweep really exercised the failure paths */
    assert_true(k >= min_allocs);
}

static const char job_doc[] =
    "{\"job\":{\"jobId\":\"job_oom\",\"status\":\"failure\",\"progress\":0.5,"
    "\"metadata\":{\"assetIds\":[\"asset_1\",\"asset_2\",\"asset_3\"],\"error\":{\"code\":1},"
    "\"hint\":\"h\"},\"createdAt\":\"2025-01-01T00:00:00.000Z\"},\"creativeUnitsCost\":3}";

static uni1_status op_parse_job(const void *arg, int *cleared)
{
    uni1_job job;
    char err[128];
    uni1_status st = uni1_parse_job(arg, strlen(arg), &job, err, sizeof err);
    if (st == UNI1_OK) {
        assert_int_equal(job.n_assets, 3);
        assert_string_equal(job.error, "{\"code\":1}");
        assert_string_equal(job.hint, "h");
    }
    *cleared = st == UNI1_OK || all_zero(&job, sizeof job);
    uni1_job_clear(&job);
    return st;
}

static uni1_status op_parse_submit(const void *arg, int *cleared)
{
    uni1_job job;
    double cost = 0;
    char err[128];
    uni1_status st = uni1_parse_submit(arg, strlen(arg), &job, &cost, err, sizeof err);
    *cleared = st == UNI1_OK || (all_zero(&job, sizeof job) && cost == -1);
    if (st == UNI1_OK)
        assert_true(cost == 3);
    uni1_job_clear(&job);
    return st;
}

static uni1_status op_parse_list(const void *arg, int *cleared)
{
    uni1_job_list l;
    char err[128];
    uni1_status st = uni1_parse_job_list(arg, strlen(arg), &l, err, sizeof err);
    if (st == UNI1_OK) {
        assert_int_equal(l.n_jobs, 3);
        assert_string_equal(l.next_token, "tok");
    }
    *cleared = st == UNI1_OK || all_zero(&l, sizeof l);
    uni1_job_list_clear(&l);
    return st;
}

static uni1_status op_parse_asset(const void *arg, int *cleared)
{
    uni1_asset a;
    char err[128];
    uni1_status st = uni1_parse_asset(arg, strlen(arg), &a, err, sizeof err);
    if (st == UNI1_OK)
        assert_string_equal(a.url, "https://cdn.example/x.png?Signature=s");
    *cleared = st == UNI1_OK || all_zero(&a, sizeof a);
    uni1_asset_clear(&a);
    return st;
}

static uni1_status op_parse_estimate(const void *arg, int *cleared)
{
    double cost = 0;
    char err[128];
    uni1_status st = uni1_parse_estimate(arg, strlen(arg), &cost, err, sizeof err);
    *cleared = st == UNI1_OK || cost == -1;
    return st;
}

static long oom_copy_budget;

/* Builds a source job with no failures, then copies it under the budget. */
static uni1_status op_job_copy(const void *arg, int *cleared)
{
    (void)arg;
    uni1_job src, dst;
    assert_int_equal(uni1_parse_job(job_doc, strlen(job_doc), &src, NULL, 0), UNI1_OK);
    arm(oom_copy_budget);
    uni1_status st = uni1_job_copy(&dst, &src);
    disarm();
    *cleared = st == UNI1_OK || all_zero(&dst, sizeof dst);
    if (st == UNI1_OK)
        assert_string_equal(dst.asset_ids[2], "asset_3");
    uni1_job_clear(&src);
    uni1_job_clear(&dst);
    return st;
}

static uni1_status op_build_body(const void *arg, int *cleared)
{
    (void)arg;
    const char *refs[] = {"asset_a", "asset_b"};
    uni1_generate_params p = {.prompt = "a fox",
                              .source = "asset_s",
                              .image_refs = refs,
                              .n_image_refs = 2,
                              .aspect_ratio = "1:1",
                              .output_format = UNI1_FORMAT_JPEG,
                              .web_search = 1};
    char *out = (char *)0x1;
    char err[128];
    uni1_status st = uni1_build_generate_body(&p, &out, err, sizeof err);
    *cleared = st == UNI1_OK || out == NULL;
    free(out);
    return st;
}

static void test_oom_parse_job(void **state)
{
    (void)state;
    sweep(op_parse_job, job_doc, 6);
}

static void test_oom_parse_submit(void **state)
{
    (void)state;
    sweep(op_parse_submit, job_doc, 6);
}

static void test_oom_parse_job_list(void **state)
{
    (void)state;
    sweep(op_parse_list,
          "{\"jobs\":[{\"jobId\":\"job_1\",\"metadata\":{\"assetIds\":[\"asset_1\"]}},"
          "{\"jobId\":\"job_2\",\"reason\":\"r\"},{\"id\":\"job_3\"}],"
          "\"nextPaginationToken\":\"tok\"}",
          8);
}

static void test_oom_parse_asset(void **state)
{
    (void)state;
    sweep(op_parse_asset,
          "{\"asset\":{\"id\":\"asset_x\",\"url\":\"https://cdn.example/x.png?Signature=s\","
          "\"status\":\"success\",\"properties\":{\"width\":2,\"height\":3,\"size\":4}}}",
          3);
}

static void test_oom_parse_estimate(void **state)
{
    (void)state;
    sweep(op_parse_estimate, "{\"creativeUnitsCost\":\"4\"}", 1);
}

static void test_oom_job_copy(void **state)
{
    (void)state;
    /* the budget counts only the copy's own allocations */
    for (oom_copy_budget = 0;; oom_copy_budget++) {
        int cleared = 1;
        uni1_status st = op_job_copy(NULL, &cleared);
        if (!injected) {
            assert_int_equal(st, UNI1_OK);
            break;
        }
        assert_int_equal(st, UNI1_ERR_NOMEM);
        assert_true(cleared);
    }
    assert_true(oom_copy_budget >= 6);
}

static void test_oom_build_body(void **state)
{
    (void)state;
    sweep(op_build_body, NULL, 1);
}

static void test_oom_error_body_never_fails(void **state)
{
    (void)state;
    static const char body[] =
        "{\"detail\":{\"msg\":\"too long\"},\"traceId\":\"t-1\",\"remainingSeconds\":\"5\"}";
    for (long k = 0; k < 20; k++) {
        uni1_error e;
        memset(&e, 0, sizeof e);
        arm(k);
        uni1_parse_error_body(body, sizeof body - 1, &e);
        disarm();
        /* whatever failed, the message is a usable string */
        assert_true(strlen(e.message) > 0);
        assert_true(strlen(e.message) < sizeof e.message);
        if (!injected) {
            assert_string_equal(e.message, "{\"msg\":\"too long\"}");
            assert_string_equal(e.trace_id, "t-1");
            assert_true(e.retry_after == 5);
            return;
        }
    }
    fail_msg("the error body parser made more than 20 allocations");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oom_parse_job),
        cmocka_unit_test(test_oom_parse_submit),
        cmocka_unit_test(test_oom_parse_job_list),
        cmocka_unit_test(test_oom_parse_asset),
        cmocka_unit_test(test_oom_parse_estimate),
        cmocka_unit_test(test_oom_job_copy),
        cmocka_unit_test(test_oom_build_body),
        cmocka_unit_test(test_oom_error_body_never_fails),
    };
    return cmocka_run_group_tests_name("oom", tests, NULL, NULL);
}
