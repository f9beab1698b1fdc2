/* Tests of the core's one retry policy (retry.c): what is retried, the
 * attempt budget, the backoff's bounds, Retry-After honoured and capped, the
 * deadline never waited past; and the pause, which keeps the error it
 * follows. The last tests go through uni1__api with a scripted transport. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retry.h"
#include "session.h"
#include "engine_test.h"

typedef struct fixture {
    uni1_client *c;
    uni1_session *s;
    char log[8][256];
    int n_log;
    int interrupt_calls;
} fixture;

static void on_log(void *ud, uni1_log_level level, const char *msg)
{
    fixture *f = ud;
    if (level == UNI1_LOG_INFO && f->n_log < 8)
        snprintf(f->log[f->n_log++], sizeof f->log[0], "%s", msg);
}

/* ---- a scripted transport for the uni1__api tests ---------------------- */

typedef struct answer {
    uni1_status transport_status;
    long http;
    double retry_after;
} answer;

static answer script[8];
static int script_len, script_calls;
static double call_times[8];

static uni1_status scripted(void *ud, const uni1_http_request *req, uni1_http_response *resp)
{
    (void)ud;
    (void)req;
    assert_true(script_calls < script_len);
    call_times[script_calls] = uni1_monotonic();
    const answer *a = &script[script_calls++];
    if (a->transport_status != UNI1_OK)
        return a->transport_status;
    resp->status = a->http;
    resp->retry_after = a->retry_after;
    const char *body = a->http == 200 ? "{\"job\":{\"jobId\":\"job_1\",\"status\":\"queued\"}}"
                                      : "{\"reason\":\"busy\"}";
    resp->body_len = strlen(body);
    resp->body = malloc(resp->body_len + 1);
    memcpy(resp->body, body, resp->body_len + 1);
    return UNI1_OK;
}

static fixture *make(int max_retries, double base, double max)
{
    fixture *f = calloc(1, sizeof *f);
    uni1_options o;
    uni1_options_init(&o);
    o.api_key = "key-AAAA";
    o.api_secret = "secret-BBBB";
    o.base_url = "http://127.0.0.1:9/v1";
    o.transport = scripted;
    o.max_retries = max_retries;
    o.backoff_base = base;
    o.backoff_max = max;
    o.log = on_log;
    o.log_userdata = f;
    char err[256];
    f->c = uni1_client_new(&o, err, sizeof err);
    assert_non_null(f->c);
    f->s = uni1_session_acquire(f->c);
    assert_non_null(f->s);
    script_len = script_calls = 0;
    return f;
}

static void drop(fixture *f)
{
    uni1_session_release(f->s);
    uni1_client_free(f->c);
    free(f);
}

/* The session error of a failed HTTP answer. */
static void http_failure(uni1_session *s, long status, double retry_after)
{
    uni1__reset_error(s);
    uni1__fail(s, UNI1_ERR_HTTP, "HTTP %ld", status);
    s->err.http_status = status;
    s->err.retry_after = retry_after;
}

static void test_budget_is_max_retries(void **state)
{
    (void)state;
    fixture *f = make(3, 0.001, 0.004);
    uni1_retry r;
    uni1__retry_init(&r, f->c->max_retries);
    uni1__fail(f->s, UNI1_ERR_NETWORK, "reset");
    for (int i = 0; i < 3; i++) {
        double w = uni1__retry_next(f->s, &r, UNI1_ERR_NETWORK);
        assert_true(w >= 0 && w <= 0.004);
        assert_int_equal(r.attempt, i + 1);
    }
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_NETWORK) < 0);
    assert_int_equal(r.attempt, 3);
    /* A request never sent twice has no budget at all. */
    uni1__retry_init(&r, 0);
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_CONNECT) < 0);
    uni1__retry_init(&r, -5);
    assert_int_equal(r.budget, 0);
    drop(f);
}

static void test_only_what_a_repeat_can_cure(void **state)
{
    (void)state;
    fixture *f = make(5, 0.001, 0.004);
    uni1_retry r;
    static const uni1_status final[] = {UNI1_ERR_INTERRUPTED, UNI1_ERR_PROTOCOL,
                                        UNI1_ERR_IO,          UNI1_ERR_NOMEM,
                                        UNI1_ERR_INVALID,     UNI1_ERR_UNCERTAIN};
    for (size_t i = 0; i < sizeof final / sizeof final[0]; i++) {
        uni1__retry_init(&r, 5);
        uni1__reset_error(f->s);
        uni1__fail(f->s, final[i], "x");
        assert_true(uni1__retry_next(f->s, &r, final[i]) < 0);
        assert_int_equal(r.attempt, 0);
    }
    static const long refused[] = {400, 401, 403, 404, 409, 422};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        uni1__retry_init(&r, 5);
        http_failure(f->s, refused[i], 1);
        assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_HTTP) < 0);
    }
    static const long transient[] = {408, 429, 500, 502, 503, 504};
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++) {
        uni1__retry_init(&r, 5);
        http_failure(f->s, transient[i], -1);
        assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_HTTP) >= 0);
    }
    static const uni1_status net[] = {UNI1_ERR_CONNECT, UNI1_ERR_NETWORK, UNI1_ERR_TIMEOUT};
    for (size_t i = 0; i < sizeof net / sizeof net[0]; i++) {
        uni1__retry_init(&r, 5);
        uni1__reset_error(f->s);
        assert_true(uni1__retry_next(f->s, &r, net[i]) >= 0);
    }
    drop(f);
}

/* Full jitter within a cap that doubles from backoff_base to backoff_max. */
static void test_backoff_bounds(void **state)
{
    (void)state;
    fixture *f = make(10, 1.0, 4.0);
    double top[6] = {0};
    for (int round = 0; round < 300; round++) {
        uni1_retry r;
        uni1__retry_init(&r, 6);
        uni1__reset_error(f->s);
        for (int n = 0; n < 6; n++) {
            double w = uni1__retry_next(f->s, &r, UNI1_ERR_CONNECT);
            double cap = n == 0 ? 1.0 : n == 1 ? 2.0 : 4.0;
            assert_true(w >= 0 && w <= cap);
            if (w > top[n])
                top[n] = w;
        }
    }
    /* 300 uniform draws: the largest is near the cap (all below 3/4 of it
     * has odds of 0.75^300). */
    assert_true(top[0] > 0.75 && top[1] > 1.5 && top[2] > 3.0 && top[5] > 3.0);
    drop(f);
}

static void test_retry_after_honoured_and_capped(void **state)
{
    (void)state;
    fixture *f = make(5, 0.001, 0.004);
    uni1_retry r;
    uni1__retry_init(&r, 5);
    http_failure(f->s, 429, 7.5);
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_HTTP) == 7.5);
    http_failure(f->s, 503, 2);
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_HTTP) == 2.0);
    /* An hour (or a hostile 1e300) is not waited: the cap is. */
    http_failure(f->s, 429, 3600);
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_HTTP) == UNI1_RETRY_AFTER_CAP);
    http_failure(f->s, 503, 1e300);
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_HTTP) == UNI1_RETRY_AFTER_CAP);
    /* Retry-After on another status is not a promise: backoff only. */
    uni1__retry_init(&r, 5);
    http_failure(f->s, 500, 30);
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_HTTP) <= 0.004);
    /* Without one, a 429 backs off as usual. */
    http_failure(f->s, 429, -1);
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_HTTP) <= 0.004);
    /* The capped Retry-After is a floor: it never shortens a longer
     * backoff (with backoff_max above the cap). */
    fixture *g = make(100, 100.0, 100.0);
    uni1__retry_init(&r, 100);
    double top = 0;
    for (int i = 0; i < 100; i++) {
        http_failure(g->s, 429, 3600);
        double w = uni1__retry_next(g->s, &r, UNI1_ERR_HTTP);
        assert_true(w >= UNI1_RETRY_AFTER_CAP && w <= 100.0);
        if (w > top)
            top = w;
    }
    assert_true(top > 80.0); /* odds of none above 80 in 100 draws: 0.8^100 */
    /* A stale retry_after left on a failure that is not HTTP is ignored. */
    uni1__retry_init(&r, 5);
    http_failure(f->s, 429, 40);
    f->s->err.status = UNI1_ERR_NETWORK;
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_NETWORK) <= 0.004);
    drop(g);
    drop(f);
}

static void test_deadline_never_waited_past(void **state)
{
    (void)state;
    fixture *f = make(5, 0.001, 0.004);
    uni1_retry r;
    uni1__retry_init(&r, 5);
    uni1_session_set_deadline(f->s, uni1_monotonic() + 2.0);
    http_failure(f->s, 429, 5);
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_HTTP) < 0);
    assert_int_equal(r.attempt, 0);
    http_failure(f->s, 429, 1);
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_HTTP) == 1.0);
    /* A deadline already passed stops even a backoff of milliseconds. */
    uni1_session_set_deadline(f->s, uni1_monotonic() - 0.001);
    uni1__reset_error(f->s);
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_NETWORK) < 0);
    /* No deadline: the cap is the only bound. */
    uni1_session_set_deadline(f->s, 0);
    http_failure(f->s, 429, 59);
    assert_true(uni1__retry_next(f->s, &r, UNI1_ERR_HTTP) == 59.0);
    drop(f);
}

static int stop_now(void *ud)
{
    fixture *f = ud;
    f->interrupt_calls++;
    return 1;
}

/* The pause keeps the error it follows, body included, and logs the retry;
 * a stop leaves the error as it was; an interrupt replaces it. */
static void test_pause_keeps_the_error(void **state)
{
    (void)state;
    fixture *f = make(2, 0.001, 0.002);
    uni1_retry r;
    uni1__retry_init(&r, 2);
    http_failure(f->s, 503, -1);
    f->s->err.body = strdup("{\"reason\":\"busy\"}");
    f->s->err.body_len = strlen(f->s->err.body);
    assert_int_equal(uni1__retry(f->s, &r, UNI1_ERR_HTTP, "GET /jobs/x"), UNI1_OK);
    assert_int_equal(f->s->err.status, UNI1_ERR_HTTP);
    assert_int_equal(f->s->err.http_status, 503);
    assert_string_equal(f->s->err.body, "{\"reason\":\"busy\"}");
    assert_int_equal(f->n_log, 1);
    assert_non_null(strstr(f->log[0], "GET /jobs/x: HTTP 503; retry 1 of 2 in "));

    assert_int_equal(uni1__retry(f->s, &r, UNI1_ERR_HTTP, "GET /jobs/x"), UNI1_OK);
    /* Budget spent: st comes back, the error untouched. */
    assert_int_equal(uni1__retry(f->s, &r, UNI1_ERR_HTTP, "GET /jobs/x"), UNI1_ERR_HTTP);
    assert_int_equal(f->s->err.http_status, 503);
    assert_non_null(f->s->err.body);
    assert_int_equal(f->n_log, 2);

    uni1__retry_init(&r, 2);
    uni1_session_set_interrupt(f->s, stop_now, f);
    assert_int_equal(uni1__retry(f->s, &r, UNI1_ERR_HTTP, "GET /jobs/x"), UNI1_ERR_INTERRUPTED);
    assert_int_equal(f->s->err.status, UNI1_ERR_INTERRUPTED);
    assert_null(f->s->err.body);
    assert_true(f->interrupt_calls >= 1);
    uni1_session_set_interrupt(f->s, NULL, NULL);
    drop(f);
}

/* Through uni1__api: a 503's Retry-After is waited, then the read goes
 * through. */
static void test_api_waits_a_503_retry_after(void **state)
{
    (void)state;
    fixture *f = make(3, 0.001, 0.002);
    script[0] = (answer){UNI1_OK, 503, 0.3};
    script[1] = (answer){UNI1_OK, 200, -1};
    script_len = 2;
    uni1_job job;
    assert_int_equal(uni1_get_job(f->s, "job_1", &job), UNI1_OK);
    assert_int_equal(script_calls, 2);
    assert_true(call_times[1] - call_times[0] >= 0.3);
    uni1_job_clear(&job);
    drop(f);
}

/* Through uni1__api: a 429 whose Retry-After would pass the deadline is
 * reported at once, as the 429 it is, not as a timeout after a wait. */
static void test_api_reports_at_once_when_the_wait_would_pass_the_deadline(void **state)
{
    (void)state;
    fixture *f = make(3, 0.001, 0.002);
    script[0] = (answer){UNI1_OK, 429, 30};
    script_len = 1;
    uni1_session_set_deadline(f->s, uni1_monotonic() + 5);
    double t0 = uni1_monotonic();
    uni1_job job;
    assert_int_equal(uni1_get_job(f->s, "job_1", &job), UNI1_ERR_HTTP);
    assert_true(uni1_monotonic() - t0 < 1.0 * slack());
    assert_int_equal(script_calls, 1);
    assert_int_equal(uni1_session_error(f->s)->http_status, 429);
    assert_true(uni1_session_error(f->s)->retry_after == 30);
    drop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_is_max_retries),
        cmocka_unit_test(test_only_what_a_repeat_can_cure),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_retry_after_honoured_and_capped),
        cmocka_unit_test(test_deadline_never_waited_past),
        cmocka_unit_test(test_pause_keeps_the_error),
        cmocka_unit_test(test_api_waits_a_503_retry_after),
        cmocka_unit_test(test_api_reports_at_once_when_the_wait_would_pass_the_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
