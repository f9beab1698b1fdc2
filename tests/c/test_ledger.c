/* The process-wide ledger (claims and in-flight twins) and the settle window
 * of an uncertain generate, through a small fake server that several clients
 * share: each client's transport names the client, the server keeps the jobs
 * and answers the job list from them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"
#include "session.h"

/* ---- the ledger alone ------------------------------------------------------ */

static int reset(void **state)
{
    (void)state;
    uni1__ledger_reset();
    return 0;
}

static void test_claims_are_taken_once_per_server(void **state)
{
    (void)state;
    uint64_t one = uni1__ledger_hash(UNI1_LEDGER_SEED, "http://a.example/v1");
    uint64_t two = uni1__ledger_hash(UNI1_LEDGER_SEED, "http://b.example/v1");
    assert_int_equal(uni1__ledger_claim(one, "job_x"), 1);
    assert_int_equal(uni1__ledger_claim(one, "job_x"), 0);
    assert_true(uni1__ledger_is_claimed(one, "job_x"));
    assert_false(uni1__ledger_is_claimed(one, "job_y"));
    /* Another server's job of the same id is another job. */
    assert_false(uni1__ledger_is_claimed(two, "job_x"));
    assert_int_equal(uni1__ledger_claim(two, "job_x"), 1);
}

static void test_oldest_claims_are_forgotten_first(void **state)
{
    (void)state;
    uint64_t srv = uni1__ledger_hash(UNI1_LEDGER_SEED, "http://a.example/v1");
    char id[32];
    for (int i = 0; i <= UNI1_LEDGER_CLAIMS; i++) {
        snprintf(id, sizeof id, "job_%d", i);
        assert_int_equal(uni1__ledger_claim(srv, id), 1);
    }
    assert_false(uni1__ledger_is_claimed(srv, "job_0")); /* the one pushed out */
    assert_true(uni1__ledger_is_claimed(srv, "job_1"));
    snprintf(id, sizeof id, "job_%d", UNI1_LEDGER_CLAIMS);
    assert_true(uni1__ledger_is_claimed(srv, id));
}

static void test_a_look_is_only_evidence_without_twins(void **state)
{
    (void)state;
    uint64_t r = 42, other = 43, ticket;
    uni1__ledger_send_begin(r);
    assert_false(uni1__ledger_watch_begin(r, &ticket)); /* a twin waits for its answer */
    assert_true(uni1__ledger_watch_begin(other, &ticket));
    assert_true(uni1__ledger_watch_end(other, ticket));
    uni1__ledger_send_end(r);
    assert_true(uni1__ledger_watch_begin(r, &ticket));
    uni1__ledger_send_begin(r); /* a twin comes and goes during the look */
    uni1__ledger_send_end(r);
    assert_false(uni1__ledger_watch_end(r, ticket));
    assert_true(uni1__ledger_watch_begin(r, &ticket));
    assert_true(uni1__ledger_watch_end(r, ticket));
}

/* ---- a fake server shared by several clients ------------------------------- */

typedef struct server {
    pthread_mutex_t mu;
    char ids[8][32];
    double created[8]; /* Unix time */
    int n_jobs;
    int posts, lists;
    /* What POSTs get: per client name ('a', 'b'). */
    int drop_a;           /* a's POST: job made, then (once another job exists)
                             the connection dropped */
    int gateway_504;      /* every POST: 504; the job is made after late_lists */
    int late_lists;       /* ... list requests (-1: never) */
    double b_answer_wait; /* b's answer comes this late (its job exists at once) */
    int late_made;
} server;

typedef struct conn {
    server *srv;
    char name;
} conn;

static double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void make_job_locked(server *s, char who)
{
    snprintf(s->ids[s->n_jobs], sizeof s->ids[0], "job_%c%d", who, s->n_jobs);
    s->created[s->n_jobs] = now_unix();
    s->n_jobs++;
}

static char *list_body_locked(server *s)
{
    size_t cap = 4096;
    char *body = malloc(cap);
    size_t used = (size_t)snprintf(body, cap, "{\"jobs\":[");
    for (int i = s->n_jobs - 1; i >= 0; i--) { /* newest first */
        time_t secs = (time_t)s->created[i];
        struct tm tm;
        gmtime_r(&secs, &tm);
        char when[40];
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
        used += (size_t)snprintf(body + used, cap - used,
                                 "%s{\"jobId\":\"%s\",\"status\":\"queued\",\"createdAt\":\"%s\","
                                 "\"metadata\":{\"input\":{\"prompt\":\"twins\"}}}",
                                 i == s->n_jobs - 1 ? "" : ",", s->ids[i], when);
    }
    snprintf(body + used, cap - used, "]}");
    return body;
}

static void answer(uni1_http_response *resp, long status, char *body)
{
    resp->status = status;
    resp->retry_after = -1;
    resp->body = body;
    resp->body_len = body ? strlen(body) : 0;
}

static uni1_status server_transport(void *ud, const uni1_http_request *req,
                                    uni1_http_response *resp)
{
    conn *c = ud;
    server *s = c->srv;
    pthread_mutex_lock(&s->mu);
    if (strcmp(req->method, "GET") == 0) {
        s->lists++;
        if (s->gateway_504 && !s->late_made && s->late_lists >= 0 && s->lists > s->late_lists) {
            make_job_locked(s, c->name); /* the backend finally made it */
            s->late_made = 1;
        }
        answer(resp, 200, list_body_locked(s));
        pthread_mutex_unlock(&s->mu);
        return UNI1_OK;
    }
    s->posts++;
    if (s->gateway_504) {
        pthread_mutex_unlock(&s->mu);
        answer(resp, 504, strdup("{\"message\":\"gateway timeout\"}"));
        return UNI1_OK;
    }
    make_job_locked(s, c->name);
    char body[128];
    snprintf(body, sizeof body, "{\"job\":{\"jobId\":\"%s\",\"status\":\"queued\"}}",
             s->ids[s->n_jobs - 1]);
    int drop = c->name == 'a' && s->drop_a;
    double wait = c->name == 'b' ? s->b_answer_wait : 0;
    pthread_mutex_unlock(&s->mu);
    if (drop) {
        for (int i = 0; i < 2000; i++) {
            pthread_mutex_lock(&s->mu);
            int n = s->n_jobs;
            pthread_mutex_unlock(&s->mu);
            if (n >= 2)
                break;
            usleep(1000);
        }
        return UNI1_ERR_NETWORK; /* the request was sent: last_request_sent */
    }
    if (wait > 0)
        usleep((useconds_t)(wait * 1e6));
    answer(resp, 200, strdup(body));
    return UNI1_OK;
}

static uni1_client *client_on(conn *c, double settle_window, int resend, double timeout)
{
    uni1_options o;
    uni1_options_init(&o);
    o.api_key = "key-AAAA";
    o.api_secret = "secret-BBBB";
    o.base_url = "http://127.0.0.1:9";
    o.transport = server_transport;
    o.transport_userdata = c;
    o.backoff_base = 0.001;
    o.backoff_max = 0.004;
    o.settle_window = settle_window;
    o.resend_uncertain = resend;
    o.request_timeout = timeout;
    char err[256];
    uni1_client *cl = uni1_client_new(&o, err, sizeof err);
    assert_non_null(cl);
    return cl;
}

static uni1_generate_params twins(void)
{
    uni1_generate_params p;
    memset(&p, 0, sizeof p);
    p.prompt = "twins";
    return p;
}

/* ---- the settle window ------------------------------------------------------ */

static void test_a_job_that_appears_late_is_adopted(void **state)
{
    (void)state;
    server s = {.mu = PTHREAD_MUTEX_INITIALIZER, .gateway_504 = 1, .late_lists = 3};
    conn a = {&s, 'a'};
    uni1_client *c = client_on(&a, 5.0, 1, 10.0);
    uni1_session *ss = uni1_session_acquire(c);
    uni1_generate_params p = twins();
    uni1_job job;
    double cost = 0;
    assert_int_equal(uni1_generate(ss, &p, &job, &cost), UNI1_OK);
    assert_int_equal(s.posts, 1); /* never sent twice */
    assert_int_equal(s.lists, 4); /* three empty looks, then the job */
    assert_string_equal(job.id, s.ids[0]);
    assert_true(cost < 0);
    uni1_job_clear(&job);
    uni1_session_release(ss);
    uni1_client_free(c);
}

static void test_nothing_in_the_window_without_resend_is_uncertain(void **state)
{
    (void)state;
    server s = {.mu = PTHREAD_MUTEX_INITIALIZER, .gateway_504 = 1, .late_lists = -1};
    conn a = {&s, 'a'};
    uni1_client *c = client_on(&a, 0.6, 0, 10.0);
    uni1_session *ss = uni1_session_acquire(c);
    uni1_generate_params p = twins();
    uni1_job job;
    double t0 = uni1_monotonic();
    assert_int_equal(uni1_generate(ss, &p, &job, NULL), UNI1_ERR_UNCERTAIN);
    assert_true(uni1_monotonic() - t0 >= 0.6);
    assert_int_equal(s.posts, 1);
    assert_true(s.lists >= 3); /* looks at 0, 0.25, 0.6 s */
    const uni1_error *e = uni1_session_error(ss);
    assert_non_null(strstr(e->message, "settle window"));
    assert_true(e->sent_at > 0);
    uni1_session_release(ss);
    uni1_client_free(c);
}

/* ---- two clients, one account -------------------------------------------------- */

typedef struct submit_run {
    uni1_client *client;
    uni1_status st;
    uni1_job job;
} submit_run;

static void *submit_thread(void *arg)
{
    submit_run *r = arg;
    uni1_session *s = uni1_session_acquire(r->client);
    uni1_generate_params p = twins();
    r->st = uni1_generate(s, &p, &r->job, NULL);
    uni1_session_release(s);
    return NULL;
}

/* a's POST makes a's job; then b's POST makes b's job (the newest: listed
 * first) and waits for its answer; then a's connection drops. */
static void start_a_then_b(server *s, pthread_t *ta, submit_run *ra, pthread_t *tb, submit_run *rb)
{
    assert_int_equal(pthread_create(ta, NULL, submit_thread, ra), 0);
    for (int made = 0; !made;) {
        usleep(1000);
        pthread_mutex_lock(&s->mu);
        made = s->n_jobs;
        pthread_mutex_unlock(&s->mu);
    }
    assert_int_equal(pthread_create(tb, NULL, submit_thread, rb), 0);
}

/* b's answer comes 0.5 s late. a must wait for it, then take its own job,
 * though b's is the newest that matches. With claims per client, a took b's
 * and both callers held one job. */
static void test_a_twin_of_another_client_is_waited_for(void **state)
{
    (void)state;
    server s = {.mu = PTHREAD_MUTEX_INITIALIZER, .drop_a = 1, .b_answer_wait = 0.5};
    conn ca = {&s, 'a'}, cb = {&s, 'b'};
    submit_run ra = {.client = client_on(&ca, 0, 1, 10.0)};
    submit_run rb = {.client = client_on(&cb, 0, 1, 10.0)};
    pthread_t tb, ta;
    start_a_then_b(&s, &ta, &ra, &tb, &rb);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(rb.st, UNI1_OK);
    assert_int_equal(ra.st, UNI1_OK);
    assert_int_equal(s.posts, 2);
    assert_string_not_equal(ra.job.id, rb.job.id);
    assert_string_equal(ra.job.id, "job_a0");
    assert_string_equal(rb.job.id, "job_b1");
    uni1_job_clear(&ra.job);
    uni1_job_clear(&rb.job);
    uni1_client_free(ra.client);
    uni1_client_free(rb.client);
}

/* The same, with b's answer later than a will wait (a's request timeout):
 * a cannot tell whose the matching jobs are, and says so. */
static void test_a_twin_that_never_answers_makes_it_uncertain(void **state)
{
    (void)state;
    server s = {.mu = PTHREAD_MUTEX_INITIALIZER, .drop_a = 1, .b_answer_wait = 1.5};
    conn ca = {&s, 'a'}, cb = {&s, 'b'};
    submit_run ra = {.client = client_on(&ca, 0, 1, 0.5)};
    submit_run rb = {.client = client_on(&cb, 0, 1, 10.0)};
    pthread_t tb, ta;
    start_a_then_b(&s, &ta, &ra, &tb, &rb);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(rb.st, UNI1_OK);
    assert_int_equal(ra.st, UNI1_ERR_UNCERTAIN);
    assert_int_equal(s.posts, 2); /* nothing sent twice */
    assert_int_equal(s.lists, 0); /* and the list never read: it proves nothing */
    uni1_job_clear(&rb.job);
    uni1_client_free(ra.client);
    uni1_client_free(rb.client);
}

int main(void)
{
    char err[128];
    if (uni1_global_init(err, sizeof err) != UNI1_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_claims_are_taken_once_per_server, reset),
        cmocka_unit_test_setup(test_oldest_claims_are_forgotten_first, reset),
        cmocka_unit_test_setup(test_a_look_is_only_evidence_without_twins, reset),
        cmocka_unit_test_setup(test_a_job_that_appears_late_is_adopted, reset),
        cmocka_unit_test_setup(test_nothing_in_the_window_without_resend_is_uncertain, reset),
        cmocka_unit_test_setup(test_a_twin_of_another_client_is_waited_for, reset),
        cmocka_unit_test_setup(test_a_twin_that_never_answers_makes_it_uncertain, reset),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    uni1_global_cleanup();
    return failed;
}
