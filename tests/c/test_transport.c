/* Tests of the core's client, sessions and operations through the pluggable
 * transport: what goes on the wire, what is retried, and what never is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uni1.h"
#include "engine_test.h"

/* ---- a scripted fake transport ----------------------------------------- */

#define MAX_STEPS 32

typedef struct step {
    uni1_status transport_status; /* UNI1_OK: answer with http/body */
    long http;
    const char *body;
    double retry_after;
} step;

typedef struct fake {
    step steps[MAX_STEPS];
    int n_steps, calls;
    char method[MAX_STEPS][8];
    char url[MAX_STEPS][512];
    char body[MAX_STEPS][1024];
    char headers[MAX_STEPS][512];
} fake;

static uni1_status fake_transport(void *ud, const uni1_http_request *req, uni1_http_response *resp)
{
    fake *f = ud;
    int i = f->calls++;
    assert_true(i < f->n_steps); /* more requests than the test expected */
    snprintf(f->method[i], sizeof f->method[i], "%s", req->method);
    snprintf(f->url[i], sizeof f->url[i], "%s", req->url);
    snprintf(f->body[i], sizeof f->body[i], "%.*s", (int)req->body_len, req->body ? req->body : "");
    f->headers[i][0] = 0;
    for (size_t h = 0; h < req->n_headers; h++) {
        strncat(f->headers[i], req->headers[h], sizeof f->headers[i] - strlen(f->headers[i]) - 2);
        strcat(f->headers[i], "\n");
    }
    const step *s = &f->steps[i];
    if (s->transport_status != UNI1_OK)
        return s->transport_status;
    resp->status = s->http;
    resp->retry_after = s->retry_after ? s->retry_after : -1;
    if (s->body) {
        resp->body_len = strlen(s->body);
        resp->body = malloc(resp->body_len + 1);
        memcpy(resp->body, s->body, resp->body_len + 1);
    }
    return UNI1_OK;
}

static void add(fake *f, uni1_status ts, long http, const char *body)
{
    f->steps[f->n_steps++] = (step){ts, http, body, 0};
}

static uni1_client *make_client(fake *f, const char *base, const char *project)
{
    uni1_options o;
    uni1_options_init(&o);
    o.api_key = "key-AAAA";
    o.api_secret = "secret-BBBB";
    o.base_url = base;
    o.project_id = project;
    o.transport = fake_transport;
    o.transport_userdata = f;
    o.backoff_base = 0.001;
    o.backoff_max = 0.004;
    /* One look after an uncertain attempt, so that the scripts below know
     * every request (the settle window has tests of its own). */
    o.settle_window = 0;
    char err[256];
    uni1_client *c = uni1_client_new(&o, err, sizeof err);
    assert_non_null(c);
    return c;
}

#define JOB(status, extra)                                                                         \
    "{\"job\":{\"jobId\":\"job_abc\",\"status\":\"" status "\",\"progress\":0.5,"                  \
    "\"metadata\":{\"assetIds\":[" extra "]}}}"

static const char *const one_ref[] = {"asset_ref1"};

static uni1_generate_params params(void)
{
    uni1_generate_params p;
    memset(&p, 0, sizeof p);
    p.prompt = "A fantasy landscape";
    p.image_refs = one_ref;
    p.n_image_refs = 1;
    p.aspect_ratio = "16:9";
    p.output_format = UNI1_FORMAT_JPEG;
    return p;
}

/* ---- client settings ---------------------------------------------------- */

static void test_base_url_normalised(void **state)
{
    (void)state;
    fake f = {0};
    uni1_client *c = make_client(&f, "http://127.0.0.1:9", NULL);
    assert_string_equal(uni1_client_base_url(c), "http://127.0.0.1:9/v1");
    uni1_client_free(c);
    c = make_client(&f, "https://example.test/api/v2///", NULL);
    assert_string_equal(uni1_client_base_url(c), "https://example.test/api/v2");
    uni1_client_free(c);
    c = make_client(&f, NULL, NULL);
    assert_string_equal(uni1_client_base_url(c), UNI1_DEFAULT_BASE_URL);
    uni1_client_free(c);
}

static void test_client_refuses_bad_settings(void **state)
{
    (void)state;
    uni1_options o;
    char err[256];
    uni1_options_init(&o);
    assert_null(uni1_client_new(&o, err, sizeof err));
    assert_non_null(strstr(err, "no credentials"));
    o.api_key = "only-a-key-XYZ";
    assert_null(uni1_client_new(&o, err, sizeof err));
    assert_non_null(strstr(err, "incomplete"));
    assert_null(strstr(err, "only-a-key-XYZ"));
    o.api_secret = "s3cr3t-QQQ";
    o.base_url = "ftp://example.test";
    assert_null(uni1_client_new(&o, err, sizeof err));
    assert_null(strstr(err, "s3cr3t-QQQ"));
    o.base_url = "https://user:pw@example.test/v1";
    assert_null(uni1_client_new(&o, err, sizeof err));
    o.base_url = NULL;
    o.request_timeout = 0;
    assert_null(uni1_client_new(&o, err, sizeof err));
    uni1_options bad;
    memset(&bad, 0, sizeof bad); /* not initialised with uni1_options_init */
    bad.api_key = "k";
    bad.api_secret = "s";
    assert_null(uni1_client_new(&bad, err, sizeof err));
}

/* ---- generate ----------------------------------------------------------- */

static void test_generate_request_shape(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_OK, 200,
        "{\"job\":{\"jobId\":\"job_abc\",\"status\":\"queued\"},"
        "\"creativeUnitsCost\":12.5,\"creativeUnitsDiscount\":0}");
    uni1_client *c = make_client(&f, "http://api.test:8080/v1", "proj 1&x");
    uni1_session *s = uni1_session_acquire(c);
    uni1_generate_params p = params();
    uni1_job job;
    double cost = 0;
    assert_int_equal(uni1_generate(s, &p, &job, &cost), UNI1_OK);
    assert_string_equal(job.id, "job_abc");
    assert_int_equal(job.state, UNI1_JOB_QUEUED);
    assert_true(fabs(cost - 12.5) < 1e-9);
    assert_int_equal(f.calls, 1);
    assert_string_equal(f.method[0], "POST");
    assert_string_equal(f.url[0], "http://api.test:8080/v1/generate/custom/model_luma-uni-1-max"
                                  "?projectId=proj%201%26x");
    /* base64("key-AAAA:secret-BBBB") */
    assert_non_null(strstr(f.headers[0], "Authorization: Basic a2V5LUFBQUE6c2VjcmV0LUJCQkI=\n"));
    assert_non_null(strstr(f.headers[0], "Content-Type: application/json"));
    assert_non_null(strstr(f.headers[0], "Accept: application/json"));
    assert_non_null(strstr(f.body[0], "\"imageRef\":[\"asset_ref1\"]"));
    assert_non_null(strstr(f.body[0], "\"aspectRatio\":\"16:9\""));
    assert_non_null(strstr(f.body[0], "\"outputFormat\":\"jpeg\""));
    assert_null(strstr(f.body[0], "dryRun"));
    uni1_job_clear(&job);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_invalid_generate_sends_nothing(void **state)
{
    (void)state;
    fake f = {0};
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_generate_params p = params();
    p.prompt = "";
    uni1_job job;
    double cost;
    assert_int_equal(uni1_generate(s, &p, &job, &cost), UNI1_ERR_INVALID);
    assert_true(strlen(uni1_session_error(s)->message) > 0);
    p = params();
    p.aspect_ratio = "5:4";
    assert_int_equal(uni1_generate(s, &p, &job, &cost), UNI1_ERR_INVALID);
    assert_int_equal(uni1_estimate(s, &p, &cost), UNI1_ERR_INVALID);
    assert_int_equal(f.calls, 0);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void now_iso(char *out, size_t n, double offset)
{
    time_t t = time(NULL) + (time_t)offset;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

static void test_generate_5xx_then_unreadable_list_is_uncertain(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_OK, 502, "{\"message\":\"bad gateway\"}");
    for (int i = 0; i < 4; i++) /* the job list: first try and 3 retries */
        add(&f, UNI1_OK, 503, "{\"message\":\"down\"}");
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_generate_params p = params();
    uni1_job job;
    double cost;
    double before = (double)time(NULL);
    assert_int_equal(uni1_generate(s, &p, &job, &cost), UNI1_ERR_UNCERTAIN);
    assert_int_equal(f.calls, 5);
    assert_string_equal(f.method[0], "POST");
    for (int i = 1; i < 5; i++) /* never a second POST */
        assert_string_equal(f.method[i], "GET");
    const uni1_error *e = uni1_session_error(s);
    assert_non_null(strstr(e->message, "may have created a job"));
    assert_true(e->sent_at >= before - 1 && e->sent_at <= before + 5);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_generate_5xx_nothing_listed_is_resent(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_OK, 500, "{\"message\":\"oops\"}");
    add(&f, UNI1_OK, 200, "{\"jobs\":[],\"nextPaginationToken\":null}");
    add(&f, UNI1_OK, 200, "{\"job\":{\"jobId\":\"job_second\",\"status\":\"queued\"}}");
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_generate_params p = params();
    uni1_job job;
    double cost;
    assert_int_equal(uni1_generate(s, &p, &job, &cost), UNI1_OK);
    assert_int_equal(f.calls, 3);
    assert_string_equal(f.method[2], "POST");
    assert_string_equal(job.id, "job_second");
    uni1_job_clear(&job);
    uni1_session_release(s);
    uni1_client_free(c);
}

static char list_body[4096];

static const char *listing(const char *id, const char *created, const char *prompt)
{
    snprintf(list_body, sizeof list_body,
             "{\"jobs\":[{\"jobId\":\"%s\",\"status\":\"queued\",\"createdAt\":\"%s\","
             "\"metadata\":{\"input\":{\"prompt\":\"%s\",\"imageRef\":[\"asset_ref1\"],"
             "\"aspectRatio\":\"16:9\",\"outputFormat\":\"jpeg\",\"webSearch\":false,"
             "\"extra\":1}}}]}",
             id, created, prompt);
    return list_body;
}

static void test_generate_drop_adopts_matching_job(void **state)
{
    (void)state;
    char now[40];
    now_iso(now, sizeof now, 0);
    fake f = {0};
    add(&f, UNI1_ERR_NETWORK, 0, NULL); /* sent, then the connection dropped */
    add(&f, UNI1_OK, 200, listing("job_made", now, "A fantasy landscape"));
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_generate_params p = params();
    uni1_job job;
    double cost = 0;
    assert_int_equal(uni1_generate(s, &p, &job, &cost), UNI1_OK);
    assert_int_equal(f.calls, 2); /* POST, list: no second POST */
    assert_string_equal(job.id, "job_made");
    assert_true(cost < 0);
    uni1_job_clear(&job);

    /* The same request again, dropped again: the job adopted above is known
     * to this client, so it is not adopted twice; nothing else matches, so
     * the request is sent again. */
    f.n_steps = f.calls = 0;
    add(&f, UNI1_ERR_NETWORK, 0, NULL);
    add(&f, UNI1_OK, 200, listing("job_made", now, "A fantasy landscape"));
    add(&f, UNI1_OK, 200, "{\"job\":{\"jobId\":\"job_new\",\"status\":\"queued\"}}");
    assert_int_equal(uni1_generate(s, &p, &job, &cost), UNI1_OK);
    assert_int_equal(f.calls, 3);
    assert_string_equal(job.id, "job_new");
    uni1_job_clear(&job);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_generate_drop_ignores_other_and_old_jobs(void **state)
{
    (void)state;
    char old[40], now[40];
    now_iso(old, sizeof old, -3600);
    now_iso(now, sizeof now, 0);
    fake f = {0};
    add(&f, UNI1_ERR_NETWORK, 0, NULL);
    add(&f, UNI1_OK, 200, listing("job_other", now, "A different prompt"));
    add(&f, UNI1_ERR_NETWORK, 0, NULL);
    add(&f, UNI1_OK, 200, listing("job_old", old, "A fantasy landscape"));
    add(&f, UNI1_OK, 200, "{\"job\":{\"jobId\":\"job_fresh\",\"status\":\"queued\"}}");
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_generate_params p = params();
    uni1_job job;
    double cost;
    assert_int_equal(uni1_generate(s, &p, &job, &cost), UNI1_OK);
    assert_int_equal(f.calls, 5);
    assert_string_equal(job.id, "job_fresh");
    uni1_job_clear(&job);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_generate_timeout_never_resent(void **state)
{
    (void)state;
    char now[40];
    now_iso(now, sizeof now, 0);
    /* Timed out after sending: the server may still be creating the job, so
     * an empty list is looked at again, later, over the settle window. */
    fake f = {0};
    add(&f, UNI1_ERR_TIMEOUT, 0, NULL);
    add(&f, UNI1_OK, 200, "{\"jobs\":[]}");
    add(&f, UNI1_OK, 200, listing("job_late", now, "A fantasy landscape"));
    uni1_options o;
    uni1_options_init(&o);
    o.api_key = "key-AAAA";
    o.api_secret = "secret-BBBB";
    o.transport = fake_transport;
    o.transport_userdata = &f;
    o.settle_window = 5.0;
    uni1_client *c = uni1_client_new(&o, NULL, 0);
    assert_non_null(c);
    uni1_session *s = uni1_session_acquire(c);
    uni1_generate_params p = params();
    uni1_job job;
    double cost;
    assert_int_equal(uni1_generate(s, &p, &job, &cost), UNI1_OK);
    assert_string_equal(job.id, "job_late");
    assert_int_equal(f.calls, 3);
    assert_string_equal(f.method[1], "GET");
    assert_string_equal(f.method[2], "GET");
    uni1_job_clear(&job);

    /* Nothing appears before the deadline, which comes before the end of the
     * window: uncertain, still one POST. */
    f.n_steps = f.calls = 0;
    add(&f, UNI1_ERR_TIMEOUT, 0, NULL);
    for (int i = 0; i < 6; i++)
        add(&f, UNI1_OK, 200, "{\"jobs\":[]}");
    uni1_session_set_deadline(s, uni1_monotonic() + 0.3);
    assert_int_equal(uni1_generate(s, &p, &job, &cost), UNI1_ERR_UNCERTAIN);
    assert_true(f.calls >= 2 && f.calls <= 4); /* looks at 0 and 0.25 s */
    for (int i = 1; i < f.calls; i++)
        assert_string_equal(f.method[i], "GET");
    assert_non_null(strstr(uni1_session_error(s)->message, "may have created a job"));
    assert_true(uni1_session_error(s)->sent_at > 0);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_generate_client_error_not_resent(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_OK, 404, "{\"reason\":\"asset not found\"}");
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_generate_params p = params();
    uni1_job job;
    double cost;
    assert_int_equal(uni1_generate(s, &p, &job, &cost), UNI1_ERR_HTTP);
    assert_int_equal(uni1_session_error(s)->http_status, 404);
    assert_int_equal(f.calls, 1);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_generate_resent_when_certainly_not_created(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_ERR_CONNECT, 0, NULL);
    add(&f, UNI1_OK, 429, "{\"reason\":\"too many jobs\",\"remainingSeconds\":0.001}");
    add(&f, UNI1_OK, 200, "{\"job\":{\"jobId\":\"job_ok\",\"status\":\"queued\"}}");
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_generate_params p = params();
    uni1_job job;
    double cost = 0;
    assert_int_equal(uni1_generate(s, &p, &job, &cost), UNI1_OK);
    assert_int_equal(f.calls, 3);
    assert_string_equal(job.id, "job_ok");
    assert_true(cost < 0); /* no cost in that answer */
    uni1_job_clear(&job);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_estimate_uses_query_not_body(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_OK, 269,
        "{\"creativeUnitsCost\":7,\"creativeUnitsDiscount\":0,\"costDetails\":{}}");
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_generate_params p = params();
    double cost = 0;
    assert_int_equal(uni1_estimate(s, &p, &cost), UNI1_OK);
    assert_true(fabs(cost - 7) < 1e-9);
    assert_non_null(strstr(f.url[0], "?dryRun=true"));
    assert_null(strstr(f.body[0], "dryRun"));
    uni1_session_release(s);
    uni1_client_free(c);
}

/* ---- reads and retries -------------------------------------------------- */

static void test_get_job_retries_transient(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_OK, 503, "{\"message\":\"unavailable\"}");
    add(&f, UNI1_ERR_NETWORK, 0, NULL);
    add(&f, UNI1_OK, 200, JOB("in-progress", ""));
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_job job;
    assert_int_equal(uni1_get_job(s, "job_abc", &job), UNI1_OK);
    assert_int_equal(f.calls, 3);
    assert_string_equal(f.method[2], "GET");
    assert_non_null(strstr(f.url[2], "/v1/jobs/job_abc"));
    assert_null(strstr(f.headers[2], "Content-Type"));
    assert_int_equal(job.state, UNI1_JOB_IN_PROGRESS);
    assert_int_equal(uni1_session_request_count(s), 3);
    uni1_job_clear(&job);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_client_errors_not_retried(void **state)
{
    (void)state;
    static const long codes[] = {400, 401, 403, 404};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        fake f = {0};
        add(&f, UNI1_OK, codes[i], "{\"reason\":\"nope\",\"traceId\":\"tr-1\"}");
        uni1_client *c = make_client(&f, NULL, NULL);
        uni1_session *s = uni1_session_acquire(c);
        uni1_job job;
        assert_int_equal(uni1_get_job(s, "job_abc", &job), UNI1_ERR_HTTP);
        const uni1_error *e = uni1_session_error(s);
        assert_int_equal(e->http_status, codes[i]);
        assert_string_equal(e->message, "nope");
        assert_int_equal(e->source, UNI1_MSG_SERVER);
        assert_string_equal(e->trace_id, "tr-1");
        assert_non_null(e->body);
        assert_int_equal(f.calls, 1);
        uni1_session_release(s);
        uni1_client_free(c);
    }
}

/* No message in the answer: the core says so in a field (the text "HTTP 404"
 * is only for logs), and a later failure of the core's own is its own. */
static void test_http_error_without_message(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_OK, 404, "");
    add(&f, UNI1_OK, 200, "not json");
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_job job;
    assert_int_equal(uni1_get_job(s, "job_abc", &job), UNI1_ERR_HTTP);
    const uni1_error *e = uni1_session_error(s);
    assert_int_equal(e->http_status, 404);
    assert_int_equal(e->source, UNI1_MSG_NONE);
    assert_string_equal(e->message, "HTTP 404");
    assert_int_equal(uni1_get_job(s, "job_abc", &job), UNI1_ERR_PROTOCOL);
    assert_int_equal(uni1_session_error(s)->source, UNI1_MSG_CORE);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_retries_give_up_after_max(void **state)
{
    (void)state;
    fake f = {0};
    for (int i = 0; i < 4; i++)
        add(&f, UNI1_OK, 500, "{\"error\":\"boom\"}");
    uni1_client *c = make_client(&f, NULL, NULL); /* max_retries = 3 */
    uni1_session *s = uni1_session_acquire(c);
    uni1_asset a;
    assert_int_equal(uni1_get_asset(s, "asset_x", &a), UNI1_ERR_HTTP);
    assert_int_equal(f.calls, 4);
    assert_int_equal(uni1_session_error(s)->http_status, 500);
    assert_string_equal(uni1_session_error(s)->message, "boom");
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_malformed_answer_is_protocol_error(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_OK, 200, "{\"job\": {\"jobId\": 42}}");
    add(&f, UNI1_OK, 200, "not json at all");
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_job job;
    assert_int_equal(uni1_get_job(s, "job_abc", &job), UNI1_ERR_PROTOCOL);
    /* The core words the whole message: callers show it as it is. */
    const char *m = uni1_session_error(s)->message;
    assert_int_equal(strncmp(m, UNI1_MALFORMED " (", strlen(UNI1_MALFORMED " (")), 0);
    assert_null(strstr(m + 1, UNI1_MALFORMED));
    assert_int_equal(uni1_get_job(s, "job_abc", &job), UNI1_ERR_PROTOCOL);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_hostile_ids_refused_before_request(void **state)
{
    (void)state;
    fake f = {0};
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_job job;
    uni1_asset a;
    assert_int_equal(uni1_get_job(s, "../assets/x", &job), UNI1_ERR_INVALID);
    assert_int_equal(uni1_get_job(s, "job_1?x=1", &job), UNI1_ERR_INVALID);
    assert_int_equal(uni1_get_asset(s, "", &a), UNI1_ERR_INVALID);
    assert_int_equal(uni1_cancel_job(s, "job 1"), UNI1_ERR_INVALID);
    assert_int_equal(f.calls, 0);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_bearer_and_list(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_OK, 200,
        "{\"jobs\":[{\"jobId\":\"job_1\",\"status\":\"success\"}],"
        "\"nextPaginationToken\":\"tok+/=\"}");
    uni1_options o;
    uni1_options_init(&o);
    o.bearer_token = "tok-ZZZ";
    o.transport = fake_transport;
    o.transport_userdata = &f;
    uni1_client *c = uni1_client_new(&o, NULL, 0);
    assert_non_null(c);
    uni1_session *s = uni1_session_acquire(c);
    uni1_list_query q = {5, "abc def", "success", "custom"};
    uni1_job_list l;
    assert_int_equal(uni1_list_jobs(s, &q, &l), UNI1_OK);
    assert_int_equal(l.n_jobs, 1);
    assert_string_equal(l.next_token, "tok+/=");
    assert_non_null(strstr(f.headers[0], "Authorization: Bearer tok-ZZZ\n"));
    assert_non_null(strstr(
        f.url[0], "/v1/jobs?pageSize=5&paginationToken=abc%20def&status=success&type=custom"));
    uni1_job_list_clear(&l);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_cancel_refused_is_http_error(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_OK, 400, "{\"reason\":\"Cannot cancel this type of job. Action not permitted.\"}");
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    assert_int_equal(uni1_cancel_job(s, "job_abc"), UNI1_ERR_HTTP);
    assert_int_equal(f.calls, 1);
    assert_string_equal(f.body[0], "{\"action\":\"cancel\"}");
    assert_non_null(strstr(f.url[0], "/v1/jobs/job_abc/action"));
    assert_non_null(strstr(uni1_session_error(s)->message, "Cannot cancel"));
    uni1_session_release(s);
    uni1_client_free(c);
}

/* ---- waiting ------------------------------------------------------------ */

static int count_progress(void *ud, const uni1_job *job)
{
    (void)job;
    (*(int *)ud)++;
    return 0;
}

static void test_wait_until_success(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_OK, 200, JOB("queued", ""));
    add(&f, UNI1_OK, 200, JOB("in-progress", ""));
    add(&f, UNI1_OK, 200, JOB("succeeded", "\"asset_out1\",\"asset_out2\""));
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_job job;
    memset(&job, 0, sizeof job);
    strcpy(job.id, "job_abc"); /* attached by id only: polled at once */
    int calls = 0;
    uni1_session_set_deadline(s, uni1_monotonic() + 30);
    assert_int_equal(uni1_wait_job(s, &job, count_progress, &calls), UNI1_OK);
    assert_int_equal(calls, 3);
    assert_int_equal(job.state, UNI1_JOB_SUCCESS);
    assert_string_equal(job.status, "success");
    assert_int_equal(job.n_assets, 2);
    assert_string_equal(job.asset_ids[1], "asset_out2");
    uni1_job_clear(&job);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_wait_failure_and_cancel(void **state)
{
    (void)state;
    fake f = {0};
    add(&f, UNI1_OK, 200,
        "{\"job\":{\"jobId\":\"job_abc\",\"status\":\"failed\",\"metadata\":{\"error\":\"NSFW\","
        "\"hint\":\"rephrase\"}}}");
    add(&f, UNI1_OK, 200, "{\"job\":{\"jobId\":\"job_abc\",\"status\":\"canceled\"}}");
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_job job;
    memset(&job, 0, sizeof job);
    strcpy(job.id, "job_abc");
    assert_int_equal(uni1_wait_job(s, &job, NULL, NULL), UNI1_ERR_JOB_FAILED);
    assert_string_equal(job.error, "NSFW");
    assert_string_equal(job.hint, "rephrase");
    assert_non_null(strstr(uni1_session_error(s)->message, "NSFW"));
    uni1_job_clear(&job);
    strcpy(job.id, "job_abc");
    assert_int_equal(uni1_wait_job(s, &job, NULL, NULL), UNI1_ERR_JOB_CANCELED);
    uni1_job_clear(&job);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_wait_deadline(void **state)
{
    (void)state;
    fake f = {0};
    for (int i = 0; i < MAX_STEPS; i++)
        add(&f, UNI1_OK, 200, JOB("in-progress", ""));
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    uni1_job job;
    memset(&job, 0, sizeof job);
    strcpy(job.id, "job_abc");
    double t0 = uni1_monotonic();
    uni1_session_set_deadline(s, t0 + 0.3);
    assert_int_equal(uni1_wait_job(s, &job, NULL, NULL), UNI1_ERR_TIMEOUT);
    double took = uni1_monotonic() - t0;
    assert_true(took >= 0.29 && took < 0.3 + 0.7 * slack());
    uni1_job_clear(&job);
    uni1_session_release(s);
    uni1_client_free(c);
}

static int stop_after_calls(void *ud)
{
    return ++*(int *)ud >= 3;
}

static void test_interrupt_stops_wait_quickly(void **state)
{
    (void)state;
    fake f = {0};
    for (int i = 0; i < 4; i++)
        add(&f, UNI1_OK, 200, JOB("queued", ""));
    uni1_client *c = make_client(&f, NULL, NULL);
    uni1_session *s = uni1_session_acquire(c);
    int n = 0;
    uni1_session_set_interrupt(s, stop_after_calls, &n);
    uni1_job job;
    memset(&job, 0, sizeof job);
    strcpy(job.id, "job_abc");
    double t0 = uni1_monotonic();
    assert_int_equal(uni1_wait_job(s, &job, NULL, NULL), UNI1_ERR_INTERRUPTED);
    /* three checks, each at most UNI1_WAKE_INTERVAL_MS apart */
    assert_true(uni1_monotonic() - t0 < 3 * UNI1_WAKE_INTERVAL_MS / 1000.0 + 0.1 * slack());
    uni1_job_clear(&job);
    uni1_session_release(s);
    /* a released and re-acquired session has no interrupt left */
    s = uni1_session_acquire(c);
    assert_int_equal(uni1_get_job(s, "job_abc", &job), UNI1_OK);
    uni1_job_clear(&job);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_poll_schedule(void **state)
{
    (void)state;
    /* No progress yet: back off, but never past 8 s. */
    double prev = 0;
    for (unsigned i = 0; i < 12; i++) {
        uni1_poll_state ps = {i * 1.0, 0, -1, 0, i, 0, 0};
        double d = uni1_next_poll_delay(&ps);
        assert_true(d >= prev - 1e-9);
        assert_true(d >= 0.25 && d <= 8.0);
        prev = d;
    }
    assert_true(prev == 8.0);
    /* Steady progress, 90 s job: early polls far apart, late ones close. */
    uni1_poll_state early = {10, 0.1, 0.05, 5, 3, 0, 0};
    uni1_poll_state late = {85, 0.95, 0.9, 5, 10, 0, 0};
    double de = uni1_next_poll_delay(&early), dl = uni1_next_poll_delay(&late);
    assert_true(de > dl);
    assert_true(dl <= 4.0); /* 0.8 of the 5 s the recent rate leaves */
    assert_true(de <= 8.0);
    /* A burst of progress predicts an earlier end than the average rate. */
    uni1_poll_state burst = {40, 0.6, 0.2, 4, 6, 0, 0};
    uni1_poll_state even = {40, 0.6, 0.55, 4, 6, 0, 0};
    assert_true(uni1_next_poll_delay(&burst) <= uni1_next_poll_delay(&even));
    /* Finalizing: soon after progress reached 1, then gently less often. */
    uni1_poll_state fin_fresh = {20, 1.0, 0.9, 1, 10, 0, 0};
    uni1_poll_state fin_long = {80, 1.0, 1.0, 2, 12, 0, 0};
    assert_true(uni1_next_poll_delay(&fin_fresh) <= 0.5);
    assert_true(uni1_next_poll_delay(&fin_long) <= 2.0);
    assert_true(uni1_next_poll_delay(&fin_long) > uni1_next_poll_delay(&fin_fresh));
    /* Never busy-polls, whatever the progress says. */
    uni1_poll_state zeno = {80, 0.998, 0.9979, 0.25, 30, 0, 0};
    assert_true(uni1_next_poll_delay(&zeno) >= 1.5);
    /* Finalizing with an end predicted from earlier jobs: one sleep to just
     * after it (bounded by the longest pause), then short looks, then a
     * gentle back-off once well past it. */
    uni1_poll_state far = {76, 0.99, 0.99, 2, 12, 1, 12.0};
    uni1_poll_state near = {87, 0.99, 0.99, 2, 13, 1, 0.2};
    uni1_poll_state past = {95, 0.99, 0.99, 1, 15, 1, -6.0};
    double dfar = uni1_next_poll_delay(&far);
    assert_true(fabs(dfar - 12.05) < 1e-9);
    double dnear = uni1_next_poll_delay(&near);
    assert_true(dnear >= 0.25 && dnear <= 0.8);
    assert_true(uni1_next_poll_delay(&past) > dnear && uni1_next_poll_delay(&past) <= 1.5);
}

/* A simulated 90 s job with uneven progress (queued 10 s, an ease-in-out
 * curve to 100% at 85 s, then finalizing): averaged over where the end falls
 * between polls, the schedule must beat fixed 3 s polling (30 requests and
 * ~1.5 s from success to notice) on both counts. */
static double sim_progress(double t)
{
    if (t < 10)
        return 0;
    double x = (t - 10) / 75.0;
    if (x >= 1)
        return 1;
    return x < 0.5 ? 2 * x * x : 1 - 2 * (1 - x) * (1 - x); /* ease in and out */
}

static void test_poll_schedule_beats_fixed_polling(void **state)
{
    (void)state;
    double total_polls = 0, total_delay = 0;
    int runs = 0;
    for (double done_at = 86.0; done_at < 96.0; done_at += 0.25, runs++) {
        double t = 0, prev_p = -1, prev_t = 0, p = 0;
        unsigned polls = 0;
        for (;;) {
            uni1_poll_state ps = {t, p, prev_p, t - prev_t, polls, 0, 0};
            double d = uni1_next_poll_delay(&ps);
            assert_true(d >= 0.25 && d <= 0.25 * t + 8.0);
            prev_p = p;
            prev_t = t;
            t += d;
            polls++;
            if (t >= done_at)
                break;
            p = sim_progress(t);
        }
        total_polls += polls;
        total_delay += t - done_at;
    }
    double mean_polls = total_polls / runs, mean_delay = total_delay / runs;
    printf("poll schedule, simulated 90 s job: %.1f polls, %.2f s mean delay\n", mean_polls,
           mean_delay);
    assert_true(mean_polls < 30);
    assert_true(mean_delay < 1.5);
}

int main(void)
{
    char err[256];
    if (uni1_global_init(err, sizeof err) != UNI1_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_url_normalised),
        cmocka_unit_test(test_client_refuses_bad_settings),
        cmocka_unit_test(test_generate_request_shape),
        cmocka_unit_test(test_invalid_generate_sends_nothing),
        cmocka_unit_test(test_generate_5xx_then_unreadable_list_is_uncertain),
        cmocka_unit_test(test_generate_5xx_nothing_listed_is_resent),
        cmocka_unit_test(test_generate_drop_adopts_matching_job),
        cmocka_unit_test(test_generate_drop_ignores_other_and_old_jobs),
        cmocka_unit_test(test_generate_timeout_never_resent),
        cmocka_unit_test(test_generate_client_error_not_resent),
        cmocka_unit_test(test_generate_resent_when_certainly_not_created),
        cmocka_unit_test(test_estimate_uses_query_not_body),
        cmocka_unit_test(test_get_job_retries_transient),
        cmocka_unit_test(test_client_errors_not_retried),
        cmocka_unit_test(test_http_error_without_message),
        cmocka_unit_test(test_retries_give_up_after_max),
        cmocka_unit_test(test_malformed_answer_is_protocol_error),
        cmocka_unit_test(test_hostile_ids_refused_before_request),
        cmocka_unit_test(test_bearer_and_list),
        cmocka_unit_test(test_cancel_refused_is_http_error),
        cmocka_unit_test(test_wait_until_success),
        cmocka_unit_test(test_wait_failure_and_cancel),
        cmocka_unit_test(test_wait_deadline),
        cmocka_unit_test(test_interrupt_stops_wait_quickly),
        cmocka_unit_test(test_poll_schedule),
        cmocka_unit_test(test_poll_schedule_beats_fixed_polling),
    };
    int failed = cmocka_run_group_tests_name("transport", tests, NULL, NULL);
    uni1_global_cleanup();
    return failed;
}
