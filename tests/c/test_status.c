/* Tests of csrc/core/status.c: status names, the retry policy, job states,
 * clear/copy of the public structs, and the private string helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uni1.h"
#include "uni1_internal.h"

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* --- status names -------------------------------------------------------- */

static void test_status_names_are_distinct_and_prefixed(void **state)
{
    (void)state;
    for (int i = 0; i < UNI1_STATUS_COUNT; i++) {
        const char *a = uni1_status_name((uni1_status)i);
        assert_non_null(a);
        assert_int_equal(strncmp(a, "UNI1_", 5), 0);
        assert_string_not_equal(a, "UNI1_ERR_UNKNOWN");
        for (int j = 0; j < i; j++)
            assert_string_not_equal(a, uni1_status_name((uni1_status)j));
    }
    assert_string_equal(uni1_status_name(UNI1_OK), "UNI1_OK");
    assert_string_equal(uni1_status_name(UNI1_ERR_PROTOCOL), "UNI1_ERR_PROTOCOL");
    assert_string_equal(uni1_status_name(UNI1_ERR_UNCERTAIN), "UNI1_ERR_UNCERTAIN");
    assert_string_equal(uni1_status_name(UNI1_ERR_JOB_CANCELED), "UNI1_ERR_JOB_CANCELED");
}

static void test_status_name_out_of_range(void **state)
{
    (void)state;
    assert_string_equal(uni1_status_name(UNI1_STATUS_COUNT), "UNI1_ERR_UNKNOWN");
    assert_string_equal(uni1_status_name((uni1_status)999), "UNI1_ERR_UNKNOWN");
    assert_string_equal(uni1_status_name((uni1_status)-1), "UNI1_ERR_UNKNOWN");
}

/* --- retry policy -------------------------------------------------------- */

static void test_retryable_transport_errors(void **state)
{
    (void)state;
    assert_true(uni1_status_is_retryable(UNI1_ERR_CONNECT, 0));
    assert_true(uni1_status_is_retryable(UNI1_ERR_NETWORK, 0));
    assert_true(uni1_status_is_retryable(UNI1_ERR_TIMEOUT, 0));
    /* http_status is ignored unless the status is UNI1_ERR_HTTP */
    assert_true(uni1_status_is_retryable(UNI1_ERR_TIMEOUT, 404));
}

static void test_retryable_http_statuses(void **state)
{
    (void)state;
    static const long yes[] = {408, 429, 500, 501, 502, 503, 504, 520, 599};
    static const long no[] = {0,   200, 269, 301, 400, 401, 402, 403, 404,
                              405, 409, 410, 413, 422, 499, 600, 999, -1};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        assert_true(uni1_status_is_retryable(UNI1_ERR_HTTP, yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        assert_false(uni1_status_is_retryable(UNI1_ERR_HTTP, no[i]));
}

static void test_not_retryable_statuses(void **state)
{
    (void)state;
    static const uni1_status no[] = {UNI1_OK,
                                     UNI1_ERR_INVALID,
                                     UNI1_ERR_CONFIG,
                                     UNI1_ERR_NOMEM,
                                     UNI1_ERR_TLS,
                                     UNI1_ERR_PROTOCOL,
                                     UNI1_ERR_IO,
                                     UNI1_ERR_EXISTS,
                                     UNI1_ERR_INTERRUPTED,
                                     UNI1_ERR_JOB_FAILED,
                                     UNI1_ERR_JOB_CANCELED,
                                     UNI1_ERR_UNCERTAIN,
                                     UNI1_STATUS_COUNT};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        /* even with a status code that would be retryable for HTTP */
        assert_false(uni1_status_is_retryable(no[i], 503));
        assert_false(uni1_status_is_retryable(no[i], 429));
    }
}

/* --- job states ---------------------------------------------------------- */

static void test_job_state_from_string(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uni1_job_state st;
    } cases[] = {
        {"pending", UNI1_JOB_PENDING},       {"queued", UNI1_JOB_QUEUED},
        {"warming-up", UNI1_JOB_WARMING_UP}, {"in-progress", UNI1_JOB_IN_PROGRESS},
        {"finalizing", UNI1_JOB_FINALIZING}, {"success", UNI1_JOB_SUCCESS},
        {"succeeded", UNI1_JOB_SUCCESS},     {"failure", UNI1_JOB_FAILURE},
        {"failed", UNI1_JOB_FAILURE},        {"canceled", UNI1_JOB_CANCELED},
        {"cancelled", UNI1_JOB_CANCELED},    {"SUCCESS", UNI1_JOB_UNKNOWN},
        {"Success", UNI1_JOB_UNKNOWN},       {"in_progress", UNI1_JOB_UNKNOWN},
        {"success ", UNI1_JOB_UNKNOWN},      {"", UNI1_JOB_UNKNOWN},
        {"paused", UNI1_JOB_UNKNOWN},        {"unknown", UNI1_JOB_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_int_equal(uni1_job_state_from_string(cases[i].s), cases[i].st);
    assert_int_equal(uni1_job_state_from_string(NULL), UNI1_JOB_UNKNOWN);
}

static void test_job_state_names_round_trip(void **state)
{
    (void)state;
    assert_string_equal(uni1_job_state_name(UNI1_JOB_UNKNOWN), "unknown");
    assert_string_equal(uni1_job_state_name(UNI1_JOB_SUCCESS), "success");
    assert_string_equal(uni1_job_state_name(UNI1_JOB_FAILURE), "failure");
    assert_string_equal(uni1_job_state_name(UNI1_JOB_CANCELED), "canceled");
    assert_string_equal(uni1_job_state_name(UNI1_JOB_WARMING_UP), "warming-up");
    assert_string_equal(uni1_job_state_name((uni1_job_state)77), "unknown");
    for (int st = UNI1_JOB_PENDING; st <= UNI1_JOB_CANCELED; st++)
        assert_int_equal(uni1_job_state_from_string(uni1_job_state_name((uni1_job_state)st)), st);
}

static void test_job_state_terminal(void **state)
{
    (void)state;
    assert_true(uni1_job_state_is_terminal(UNI1_JOB_SUCCESS));
    assert_true(uni1_job_state_is_terminal(UNI1_JOB_FAILURE));
    assert_true(uni1_job_state_is_terminal(UNI1_JOB_CANCELED));
    assert_false(uni1_job_state_is_terminal(UNI1_JOB_UNKNOWN));
    assert_false(uni1_job_state_is_terminal(UNI1_JOB_PENDING));
    assert_false(uni1_job_state_is_terminal(UNI1_JOB_QUEUED));
    assert_false(uni1_job_state_is_terminal(UNI1_JOB_WARMING_UP));
    assert_false(uni1_job_state_is_terminal(UNI1_JOB_IN_PROGRESS));
    assert_false(uni1_job_state_is_terminal(UNI1_JOB_FINALIZING));
}

/* --- clear and copy ------------------------------------------------------ */

static void fill_job(uni1_job *j)
{
    memset(j, 0, sizeof *j);
    strcpy(j->id, "job_abc");
    j->state = UNI1_JOB_FAILURE;
    strcpy(j->status, "failure");
    j->progress = 0.25;
    j->n_assets = 2;
    j->asset_ids = calloc(2, sizeof *j->asset_ids);
    j->asset_ids[0] = uni1__strdup("asset_one");
    j->asset_ids[1] = uni1__strdup("asset_two");
    j->error = uni1__strdup("boom");
    j->hint = uni1__strdup("try again");
    strcpy(j->created_at, "2025-01-02T03:04:05.678Z");
    j->raw_json = uni1__strdup("{\"jobId\":\"job_abc\"}");
    j->raw_len = strlen(j->raw_json);
}

static void test_job_clear_frees_and_zeroes(void **state)
{
    (void)state;
    uni1_job j;
    fill_job(&j);
    uni1_job_clear(&j);
    assert_true(all_zero(&j, sizeof j));
    uni1_job_clear(&j); /* clearing twice is fine */
    assert_true(all_zero(&j, sizeof j));
    uni1_job_clear(NULL);
}

static void test_job_copy_is_deep(void **state)
{
    (void)state;
    uni1_job src, dst;
    fill_job(&src);
    memset(&dst, 0xAB, sizeof dst); /* output only: old contents ignored */
    assert_int_equal(uni1_job_copy(&dst, &src), UNI1_OK);
    assert_string_equal(dst.id, "job_abc");
    assert_int_equal(dst.state, UNI1_JOB_FAILURE);
    assert_string_equal(dst.status, "failure");
    assert_true(dst.progress == 0.25);
    assert_int_equal(dst.n_assets, 2);
    assert_ptr_not_equal(dst.asset_ids, src.asset_ids);
    assert_ptr_not_equal(dst.asset_ids[0], src.asset_ids[0]);
    assert_string_equal(dst.asset_ids[1], "asset_two");
    assert_ptr_not_equal(dst.error, src.error);
    assert_string_equal(dst.error, "boom");
    assert_string_equal(dst.hint, "try again");
    assert_string_equal(dst.created_at, "2025-01-02T03:04:05.678Z");
    assert_ptr_not_equal(dst.raw_json, src.raw_json);
    assert_int_equal(dst.raw_len, src.raw_len);
    assert_memory_equal(dst.raw_json, src.raw_json, src.raw_len + 1);
    /* the copy survives the original */
    uni1_job_clear(&src);
    assert_string_equal(dst.asset_ids[0], "asset_one");
    assert_string_equal(dst.error, "boom");
    uni1_job_clear(&dst);
}

static void test_job_copy_empty_self_and_null(void **state)
{
    (void)state;
    uni1_job src, dst;
    memset(&src, 0, sizeof src);
    strcpy(src.id, "job_x");
    assert_int_equal(uni1_job_copy(&dst, &src), UNI1_OK);
    assert_string_equal(dst.id, "job_x");
    assert_null(dst.asset_ids);
    assert_null(dst.error);
    assert_null(dst.hint);
    assert_null(dst.raw_json);
    uni1_job_clear(&dst);

    fill_job(&src);
    assert_int_equal(uni1_job_copy(&src, &src), UNI1_OK);
    assert_string_equal(src.error, "boom");
    uni1_job_clear(&src);

    assert_int_equal(uni1_job_copy(NULL, &src), UNI1_ERR_INVALID);
    assert_int_equal(uni1_job_copy(&dst, NULL), UNI1_ERR_INVALID);
}

static void test_list_asset_buffer_clear(void **state)
{
    (void)state;
    uni1_job_list l;
    memset(&l, 0, sizeof l);
    l.n_jobs = 2;
    l.jobs = calloc(2, sizeof *l.jobs);
    fill_job(&l.jobs[0]);
    fill_job(&l.jobs[1]);
    l.next_token = uni1__strdup("tok");
    uni1_job_list_clear(&l);
    assert_true(all_zero(&l, sizeof l));
    uni1_job_list_clear(NULL);

    uni1_asset a;
    memset(&a, 0, sizeof a);
    a.url = uni1__strdup("https://cdn.example/x");
    a.raw_json = uni1__strdup("{}");
    a.size = 12;
    uni1_asset_clear(&a);
    assert_true(all_zero(&a, sizeof a));
    uni1_asset_clear(NULL);

    uni1_buffer b = {malloc(16), 3, 16};
    uni1_buffer_clear(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    uni1_buffer_clear(NULL);
}

/* --- private helpers ----------------------------------------------------- */

static void test_utf8_seq_len(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len, want;
    } cases[] = {
        {"a", 1, 1},
        {"\0", 1, 1},
        {"\xC3\xA9", 2, 2},         /* é */
        {"\xE2\x82\xAC", 3, 3},     /* € */
        {"\xF0\x9F\x98\x80", 4, 4}, /* 😀 */
        {"\xF4\x8F\xBF\xBF", 4, 4}, /* U+10FFFF */
        {"\xEF\xBF\xBD", 3, 3},     /* U+FFFD */
        {"\x80", 1, 0},             /* lone continuation */
        {"\xBF", 1, 0},
        {"\xC0\xAF", 2, 0}, /* overlong '/' */
        {"\xC1\xBF", 2, 0},
        {"\xE0\x80\xAF", 3, 0},     /* overlong */
        {"\xF0\x80\x80\xAF", 4, 0}, /* overlong */
        {"\xED\xA0\x80", 3, 0},     /* surrogate U+D800 */
        {"\xED\xBF\xBF", 3, 0},     /* surrogate U+DFFF */
        {"\xF4\x90\x80\x80", 4, 0}, /* above U+10FFFF */
        {"\xF5\x80\x80\x80", 4, 0},
        {"\xFF", 1, 0},
        {"\xFE", 1, 0},
        {"\xC3", 1, 0}, /* truncated */
        {"\xE2\x82", 2, 0},
        {"\xF0\x9F\x98", 3, 0},
        {"\xC3\x28", 2, 0}, /* bad continuation */
        {"\xE2\x28\xA1", 3, 0},
        {"\xE2\x82\x28", 3, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_int_equal(uni1__utf8_seq_len((const unsigned char *)cases[i].s, cases[i].len),
                         cases[i].want);
    assert_int_equal(uni1__utf8_seq_len((const unsigned char *)"a", 0), 0);
    /* NUL-terminated strings may be passed with an unbounded length */
    assert_int_equal(uni1__utf8_seq_len((const unsigned char *)"\xE2\x82", SIZE_MAX), 0);
    assert_int_equal(uni1__utf8_seq_len((const unsigned char *)"\xE2\x82\xAC", SIZE_MAX), 3);
}

static void test_utf8_valid(void **state)
{
    (void)state;
    size_t bad = 99;
    assert_true(uni1__utf8_valid("plain ascii", 11, &bad));
    assert_true(uni1__utf8_valid("", 0, &bad));
    assert_true(uni1__utf8_valid("caf\xC3\xA9 \xF0\x9F\x98\x80", 10, NULL));
    assert_false(uni1__utf8_valid("ab\xFF"
                                  "cd",
                                  5, &bad));
    assert_int_equal(bad, 2);
    assert_false(uni1__utf8_valid("abc\xC3", 4, &bad));
    assert_int_equal(bad, 3);
    /* the length bounds the check: the cut sequence is outside */
    assert_true(uni1__utf8_valid("abc\xC3", 3, &bad));
}

static void test_is_url_id(void **state)
{
    (void)state;
    char id[UNI1_ID_MAX + 8];
    assert_true(uni1__is_url_id("job_abcDEF012-_"));
    assert_true(uni1__is_url_id("x"));
    assert_false(uni1__is_url_id(""));
    assert_false(uni1__is_url_id(NULL));
    assert_false(uni1__is_url_id("job abc"));
    assert_false(uni1__is_url_id("job/abc"));
    assert_false(uni1__is_url_id("../etc"));
    assert_false(uni1__is_url_id("job%2F"));
    assert_false(uni1__is_url_id("job?x=1"));
    assert_false(uni1__is_url_id("job_\xC3\xA9"));
    memset(id, 'a', UNI1_ID_MAX - 1);
    id[UNI1_ID_MAX - 1] = '\0';
    assert_true(uni1__is_url_id(id)); /* 127 bytes */
    id[UNI1_ID_MAX - 1] = 'a';
    id[UNI1_ID_MAX] = '\0';
    assert_false(uni1__is_url_id(id)); /* 128 bytes */
}

static void test_copy_trunc_keeps_utf8_whole(void **state)
{
    (void)state;
    char dst[6];
    assert_int_equal(uni1__copy_trunc(dst, sizeof dst, "abc"), 1);
    assert_string_equal(dst, "abc");
    assert_int_equal(uni1__copy_trunc(dst, sizeof dst, "abcde"), 1);
    assert_string_equal(dst, "abcde");
    assert_int_equal(uni1__copy_trunc(dst, sizeof dst, "abcdef"), 0);
    assert_string_equal(dst, "abcde");
    /* "abcd" + é (2 bytes): é would need bytes 4 and 5, only 4 fits */
    assert_int_equal(uni1__copy_trunc(dst, sizeof dst, "abcd\xC3\xA9"), 0);
    assert_string_equal(dst, "abcd");
    /* "ab" + € (3 bytes) fits exactly in 5 bytes */
    assert_int_equal(uni1__copy_trunc(dst, sizeof dst,
                                      "ab\xE2\x82\xAC"
                                      "x"),
                     0);
    assert_string_equal(dst, "ab\xE2\x82\xAC");
    assert_int_equal(uni1__copy_trunc(dst, sizeof dst, "a\xF0\x9F\x98\x80"), 1);
    assert_int_equal(uni1__copy_trunc(dst, sizeof dst, "ab\xF0\x9F\x98\x80"), 0);
    assert_string_equal(dst, "ab");
    assert_int_equal(uni1__copy_trunc(dst, sizeof dst, NULL), 1);
    assert_string_equal(dst, "");
    char one[1];
    assert_int_equal(uni1__copy_trunc(one, 1, "x"), 0);
    assert_string_equal(one, "");
}

static void test_errf(void **state)
{
    (void)state;
    char err[8];
    uni1__errf(err, sizeof err, "%s:%d", "ab", 42);
    assert_string_equal(err, "ab:42");
    uni1__errf(err, sizeof err, "%s", "0123456789");
    assert_string_equal(err, "0123456");
    /* a cut inside a character drops the whole character */
    uni1__errf(err, sizeof err, "%s", "12345\xE2\x82\xAC");
    assert_string_equal(err, "12345");
    uni1__errf(err, sizeof err, "%s", "1234\xE2\x82\xAC");
    assert_string_equal(err, "1234\xE2\x82\xAC");
    uni1__errf(err, sizeof err, "%s", "123456\xC3\xA9");
    assert_string_equal(err, "123456");
    uni1__errf(NULL, 10, "ignored %d", 1);
    err[0] = 'z';
    uni1__errf(err, 0, "ignored");
    assert_int_equal(err[0], 'z');
}

static void test_memdup_strdup(void **state)
{
    (void)state;
    char *d = uni1__memdup("ab\0cd", 5);
    assert_non_null(d);
    assert_memory_equal(d, "ab\0cd", 5);
    assert_int_equal(d[5], '\0');
    free(d);
    d = uni1__memdup("", 0);
    assert_non_null(d);
    assert_string_equal(d, "");
    free(d);
    assert_null(uni1__memdup(NULL, 3));
    assert_null(uni1__strdup(NULL));
    d = uni1__strdup("hello");
    assert_string_equal(d, "hello");
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names_are_distinct_and_prefixed),
        cmocka_unit_test(test_status_name_out_of_range),
        cmocka_unit_test(test_retryable_transport_errors),
        cmocka_unit_test(test_retryable_http_statuses),
        cmocka_unit_test(test_not_retryable_statuses),
        cmocka_unit_test(test_job_state_from_string),
        cmocka_unit_test(test_job_state_names_round_trip),
        cmocka_unit_test(test_job_state_terminal),
        cmocka_unit_test(test_job_clear_frees_and_zeroes),
        cmocka_unit_test(test_job_copy_is_deep),
        cmocka_unit_test(test_job_copy_empty_self_and_null),
        cmocka_unit_test(test_list_asset_buffer_clear),
        cmocka_unit_test(test_utf8_seq_len),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_is_url_id),
        cmocka_unit_test(test_copy_trunc_keeps_utf8_whole),
        cmocka_unit_test(test_errf),
        cmocka_unit_test(test_memdup_strdup),
    };
    return cmocka_run_group_tests_name("status", tests, NULL, NULL);
}
