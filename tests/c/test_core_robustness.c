/* Robustness of the core's client and sessions (issue 6): answers about
 * another id, settings that would inject headers or overflow the sleep math,
 * the pool shrinking after a burst, and fork() while another thread holds the
 * client's lock. Uses the private session.h to look at the pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "session.h"

/* ---- a one-answer fake transport ----------------------------------------- */

typedef struct fake {
    const char *body; /* every answer: 200 with this body */
    int calls;
} fake;

static uni1_status fake_transport(void *ud, const uni1_http_request *req, uni1_http_response *resp)
{
    (void)req;
    fake *f = ud;
    f->calls++;
    resp->status = 200;
    resp->retry_after = -1;
    resp->body_len = strlen(f->body);
    resp->body = malloc(resp->body_len + 1);
    memcpy(resp->body, f->body, resp->body_len + 1);
    return UNI1_OK;
}

static void base_options(uni1_options *o, fake *f)
{
    uni1_options_init(o);
    o->api_key = "key-AAAA";
    o->api_secret = "secret-BBBB";
    o->base_url = "http://127.0.0.1:9";
    if (f) {
        o->transport = fake_transport;
        o->transport_userdata = f;
    }
}

static uni1_client *make_client(fake *f)
{
    uni1_options o;
    base_options(&o, f);
    char err[256];
    uni1_client *c = uni1_client_new(&o, err, sizeof err);
    assert_non_null(c);
    return c;
}

/* ---- answers about another id ------------------------------------------- */

static void test_job_answer_for_another_id_is_protocol_error(void **state)
{
    (void)state;
    fake f = {"{\"job\":{\"jobId\":\"job_B\",\"status\":\"success\",\"metadata\":"
              "{\"assetIds\":[\"asset_b1\"]}}}",
              0};
    uni1_client *c = make_client(&f);
    uni1_session *s = uni1_session_acquire(c);
    uni1_job job;
    memset(&job, 0xA5, sizeof job);
    assert_int_equal(uni1_get_job(s, "job_A", &job), UNI1_ERR_PROTOCOL);
    assert_int_equal(f.calls, 1); /* not retried: the server answered */
    assert_non_null(strstr(uni1_session_error(s)->message, "job job_B, not job_A"));
    assert_string_equal(job.id, ""); /* nothing of job_B is handed out */
    assert_null(job.asset_ids);
    assert_null(job.raw_json);
    /* job_B was not claimed by this client on the way */
    assert_false(uni1__is_known_job(c, "job_B"));
    /* the same answer to the right question is fine */
    assert_int_equal(uni1_get_job(s, "job_B", &job), UNI1_OK);
    assert_string_equal(job.id, "job_B");
    uni1_job_clear(&job);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_asset_answer_for_another_id_is_protocol_error(void **state)
{
    (void)state;
    fake f = {"{\"asset\":{\"id\":\"asset_B\",\"url\":\"http://127.0.0.1:9/cdn/b.png\","
              "\"mimeType\":\"image/png\"}}",
              0};
    uni1_client *c = make_client(&f);
    uni1_session *s = uni1_session_acquire(c);
    uni1_asset a;
    assert_int_equal(uni1_get_asset(s, "asset_A", &a), UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(uni1_session_error(s)->message, "asset asset_B, not asset_A"));
    assert_int_equal(strncmp(uni1_session_error(s)->message, UNI1_MALFORMED ": GET ",
                             strlen(UNI1_MALFORMED ": GET ")),
                     0);
    assert_null(a.url);
    assert_null(a.raw_json);
    assert_int_equal(uni1_get_asset(s, "asset_B", &a), UNI1_OK);
    assert_string_equal(a.id, "asset_B");
    uni1_asset_clear(&a);
    uni1_session_release(s);
    uni1_client_free(c);
}

/* ---- settings ------------------------------------------------------------- */

static void expect_refused(const uni1_options *o, const char *needle)
{
    char err[256] = "";
    uni1_client *c;
    uni1_status st = uni1_client_create(o, &c, err, sizeof err);
    if (c)
        uni1_client_free(c);
    assert_null(c);
    assert_int_equal(st, UNI1_ERR_CONFIG);
    if (!strstr(err, needle))
        fail_msg("\"%s\" does not mention \"%s\"", err, needle);
}

static void test_control_characters_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {"ua\r\nX-Injected: yes", "ua\nX", "ua\rX", "a\tb", "a\x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uni1_options o;
        base_options(&o, NULL);
        o.user_agent = bad[i];
        expect_refused(&o, "user_agent contains control characters");
        base_options(&o, NULL);
        o.proxy = bad[i];
        expect_refused(&o, "proxy contains control characters");
        base_options(&o, NULL);
        o.ca_bundle = bad[i];
        expect_refused(&o, "ca_bundle contains control characters");
        base_options(&o, NULL);
        o.project_id = bad[i];
        expect_refused(&o, "project_id");
        base_options(&o, NULL);
        o.base_url = "http://127.0.0.1:9/v1\r\nX-Injected: yes";
        expect_refused(&o, "base_url");
    }
    /* printable text, UTF-8 included, is fine */
    uni1_options o;
    base_options(&o, NULL);
    o.user_agent = "my-app/1.0 (caf\xc3\xa9; +https://example.test)";
    o.proxy = "http://127.0.0.1:3128";
    char err[256];
    uni1_client *c = uni1_client_new(&o, err, sizeof err);
    assert_non_null(c);
    uni1_client_free(c);
}

static void test_absurd_durations_refused(void **state)
{
    (void)state;
    const double bad[] = {1e9, 1e300, INFINITY, -INFINITY, NAN, -1.0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uni1_options o;
        base_options(&o, NULL);
        o.backoff_max = bad[i];
        expect_refused(&o, "backoff_max");
        base_options(&o, NULL);
        o.backoff_base = bad[i];
        o.backoff_max = bad[i];
        expect_refused(&o, "backoff_base");
        base_options(&o, NULL);
        o.request_timeout = bad[i];
        expect_refused(&o, "timeout");
        base_options(&o, NULL);
        o.connect_timeout = bad[i];
        expect_refused(&o, "connect_timeout");
        base_options(&o, NULL);
        o.stall_timeout = bad[i];
        expect_refused(&o, "stall_timeout");
    }
    uni1_options o;
    base_options(&o, NULL);
    o.backoff_base = 0; /* no pause at all is a valid choice */
    o.backoff_max = 1e6;
    o.request_timeout = 1e6;
    char err[256];
    uni1_client *c = uni1_client_new(&o, err, sizeof err);
    assert_non_null(c);
    uni1_client_free(c);
}

typedef struct ticker {
    double until;
    long calls;
} ticker;

static int stop_later(void *ud)
{
    ticker *t = ud;
    t->calls++;
    return uni1_monotonic() >= t->until;
}

/* A pause whose milliseconds overflow an int (backoff_max=1e9 did that)
 * sleeps in bounded steps, checking for interrupts every
 * UNI1_WAKE_INTERVAL_MS, instead of spinning. */
static void test_huge_sleep_saturates(void **state)
{
    (void)state;
    alarm(20); /* the old arithmetic could loop for ever: die rather than hang */
    fake f = {"{}", 0};
    uni1_client *c = make_client(&f);
    uni1_session *s = uni1_session_acquire(c);
    const double huge[] = {1e9, 3e6, INFINITY};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        ticker t = {uni1_monotonic() + 0.3, 0};
        uni1_session_set_interrupt(s, stop_later, &t);
        assert_int_equal(uni1__sleep(s, huge[i]), UNI1_ERR_INTERRUPTED);
        /* about 0.3 s / 50 ms = 6 checks; a busy spin makes thousands */
        if (t.calls > 60)
            fail_msg("sleep(%g): %ld interrupt checks in 0.3 s", huge[i], t.calls);
    }
    uni1_session_set_interrupt(s, NULL, NULL);
    double t0 = uni1_monotonic();
    uni1_session_set_deadline(s, t0 + 0.2);
    assert_int_equal(uni1__sleep(s, 1e9), UNI1_ERR_TIMEOUT);
    assert_true(uni1_monotonic() - t0 < 5.0);
    uni1_session_set_deadline(s, 0);
    assert_int_equal(uni1__sleep(s, NAN), UNI1_OK); /* no wait, no UB */
    uni1_session_release(s);
    uni1_client_free(c);
    alarm(0);
}

/* ---- the pool --------------------------------------------------------------- */

static void test_pool_shrinks_after_a_burst(void **state)
{
    (void)state;
    uni1_client *c = make_client(NULL);
    enum { BURST = 40 };
    uni1_session *s[BURST];
    for (int i = 0; i < BURST; i++) {
        s[i] = uni1_session_acquire(c);
        assert_non_null(s[i]);
    }
    for (int i = 0; i < BURST; i++)
        uni1_session_release(s[i]);
    assert_int_equal(c->n_free, UNI1_IDLE_SESSIONS);
    unsigned n = 0;
    for (uni1_session *p = c->free_sessions; p; p = p->next_free)
        n++;
    assert_int_equal(n, UNI1_IDLE_SESSIONS);
    assert_int_equal(c->sessions_out, 0);
    /* the kept ones are reused */
    uni1_session *again = uni1_session_acquire(c);
    assert_int_equal(c->n_free, UNI1_IDLE_SESSIONS - 1);
    uni1_session_release(again);
    uni1_client_free(c);
}

/* ---- fork ------------------------------------------------------------------- */

typedef struct holder {
    uni1_client *c;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int holding;
} holder;

static void *hold_lock(void *arg)
{
    holder *h = arg;
    pthread_mutex_lock(&h->c->lock);
    pthread_mutex_lock(&h->m);
    h->holding = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->m);
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    pthread_mutex_unlock(&h->c->lock);
    return NULL;
}

/* Waits up to `seconds` for pid; kills it when it does not end. Its exit
 * status, or -1 when it had to be killed. */
static int wait_child(pid_t pid, double seconds)
{
    double end = uni1_monotonic() + seconds;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (uni1_monotonic() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* fork() while another thread holds the client's lock: the child (which does
 * not have that thread) still gets sessions, and inherits no idle session. */
static void test_fork_while_lock_held(void **state)
{
    (void)state;
    fake f = {"{\"job\":{\"jobId\":\"job_A\",\"status\":\"success\"}}", 0};
    uni1_client *c = make_client(&f);
    uni1_session_release(uni1_session_acquire(c)); /* one idle session */
    assert_int_equal(c->n_free, 1);
    holder h = {c, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hold_lock, &h), 0);
    pthread_mutex_lock(&h.m);
    while (!h.holding)
        pthread_cond_wait(&h.cv, &h.m);
    pthread_mutex_unlock(&h.m);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The child: exit codes say what went wrong. */
        int inherited = c->n_free != 0 || c->free_sessions;
        uni1_session *s = uni1_session_acquire(c); /* would hang on a held lock */
        if (inherited)
            _exit(2);
        if (!s)
            _exit(3);
        uni1_job job;
        if (uni1_get_job(s, "job_A", &job) != UNI1_OK || strcmp(job.id, "job_A") != 0)
            _exit(4);
        uni1_job_clear(&job);
        uni1_session_release(s);
        if (c->n_free != 1)
            _exit(5);
        _exit(0);
    }
    int code = wait_child(pid, 10.0);
    pthread_join(t, NULL);
    assert_int_equal(code, 0);
    /* the parent's pool is as it was */
    assert_int_equal(c->n_free, 1);
    uni1_session_release(uni1_session_acquire(c));
    uni1_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_answer_for_another_id_is_protocol_error),
        cmocka_unit_test(test_asset_answer_for_another_id_is_protocol_error),
        cmocka_unit_test(test_control_characters_refused),
        cmocka_unit_test(test_absurd_durations_refused),
        cmocka_unit_test(test_huge_sleep_saturates),
        cmocka_unit_test(test_pool_shrinks_after_a_burst),
        cmocka_unit_test(test_fork_while_lock_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
