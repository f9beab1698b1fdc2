/* Tests of generations (pipeline.c): the whole pipeline of one image
 * request as an engine task. The API answers come from a scripted transport
 * (by route, so no test counts polls); the images come from a small CDN
 * server on 127.0.0.1 run by this file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine_test.h"
#include "uni1.h"

/* ---- a scripted API -------------------------------------------------------- */

/* Answers by route, so the tests need not count the polls. Called on the
 * engine thread; the test reads it under mu. */
typedef struct api {
    pthread_mutex_t mu;
    int cdn_port;
    const char *job_id;
    int polls_to_success; /* GET /jobs answers in-progress this many times; -1: forever */
    int n_outputs;
    const char *submit_status; /* the POST's job status; NULL: "queued" */
    /* observations */
    int uploads, generates, job_gets, asset_gets, cancels, calls_on_caller;
    pthread_t caller;
    char generate_body[1024];
    int canceled;
} api;

static char *dup_body(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_body(const char *fmt, ...)
{
    char *b = malloc(2048);
    assert_non_null(b);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, 2048, fmt, ap);
    va_end(ap);
    return b;
}

static uni1_status api_transport(void *ud, const uni1_http_request *req, uni1_http_response *resp)
{
    api *a = ud;
    const char *path = strstr(req->url, "/v1/");
    assert_non_null(path);
    path += 3;
    char route[256];
    snprintf(route, sizeof route, "%.*s", (int)strcspn(path, "?"), path);
    char job_path[128], action_path[128];
    snprintf(job_path, sizeof job_path, "/jobs/%s", a->job_id);
    snprintf(action_path, sizeof action_path, "/jobs/%s/action", a->job_id);
    pthread_mutex_lock(&a->mu);
    if (pthread_equal(pthread_self(), a->caller))
        a->calls_on_caller++;
    char *body = NULL;
    if (strcmp(req->method, "POST") == 0 && strcmp(route, "/assets") == 0) {
        a->uploads++;
        body = dup_body("{\"asset\":{\"id\":\"asset_up%d\",\"mimeType\":\"image/png\","
                        "\"status\":\"success\"}}",
                        a->uploads);
    } else if (strcmp(req->method, "POST") == 0 &&
               strcmp(route, "/generate/custom/model_luma-uni-1-max") == 0) {
        a->generates++;
        snprintf(a->generate_body, sizeof a->generate_body, "%.*s", (int)req->body_len, req->body);
        body = dup_body("{\"job\":{\"jobId\":\"%s\",\"status\":\"%s\"},"
                        "\"creativeUnitsCost\":5}",
                        a->job_id, a->submit_status ? a->submit_status : "queued");
    } else if (strcmp(req->method, "GET") == 0 && strcmp(route, job_path) == 0) {
        a->job_gets++;
        if (a->canceled)
            body = dup_body("{\"job\":{\"jobId\":\"%s\",\"status\":\"canceled\"}}", a->job_id);
        else if (a->polls_to_success < 0 || a->job_gets <= a->polls_to_success)
            body = dup_body("{\"job\":{\"jobId\":\"%s\",\"status\":\"in-progress\","
                            "\"progress\":0.5}}",
                            a->job_id);
        else {
            char ids[256] = "";
            for (int i = 1; i <= a->n_outputs; i++)
                snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s\"asset_out%d\"",
                         i > 1 ? "," : "", i);
            body = dup_body("{\"job\":{\"jobId\":\"%s\",\"status\":\"succeeded\","
                            "\"progress\":1,\"metadata\":{\"assetIds\":[%s]}}}",
                            a->job_id, ids);
        }
    } else if (strcmp(req->method, "POST") == 0 && strcmp(route, action_path) == 0) {
        a->cancels++;
        a->canceled = 1;
        body = dup_body("{\"job\":{\"jobId\":\"%s\",\"status\":\"canceled\"}}", a->job_id);
    } else if (strcmp(req->method, "GET") == 0 && strncmp(route, "/assets/asset_out", 17) == 0) {
        a->asset_gets++;
        const char *id = route + 8;
        body = dup_body("{\"asset\":{\"id\":\"%s\",\"url\":\"http://127.0.0.1:%d/cdn/%s.png\","
                        "\"mimeType\":\"image/png\",\"status\":\"success\"}}",
                        id, a->cdn_port, id);
    }
    pthread_mutex_unlock(&a->mu);
    if (!body) {
        resp->status = 404;
        body = dup_body("{\"reason\":\"no route %s %s\"}", req->method, route);
    } else {
        resp->status = 200;
    }
    resp->body = body;
    resp->body_len = strlen(body);
    resp->retry_after = -1;
    return UNI1_OK;
}

static uni1_client *make_client(api *a)
{
    uni1_client *c = new_client(api_transport, a);
    assert_non_null(c);
    return c;
}

static void api_init(api *a, const char *job_id)
{
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    a->job_id = job_id;
    a->n_outputs = 2;
    a->caller = pthread_self();
}

/* ---- the CDN: GET /cdn/<name> answers a small PNG naming <name> ---------------- */

static struct {
    int listen_fd, port;
    pthread_t thread;
    atomic_int stop, gets;
} cdn;

static size_t png_for(const char *name, unsigned char *out, size_t cap)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(out, sig, 8);
    int n = snprintf((char *)out + 8, cap - 8, "image bytes of %s", name);
    return 8 + (size_t)n;
}

static void cdn_serve(int fd)
{
    char buf[8192];
    size_t have = 0;
    while (!memmem(buf, have, "\r\n\r\n", 4)) {
        struct pollfd p = {fd, POLLIN, 0};
        if (have == sizeof buf || poll(&p, 1, 2000) <= 0)
            return;
        ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
        if (n <= 0)
            return;
        have += (size_t)n;
    }
    char method[8] = "", path[256] = "";
    sscanf(buf, "%7s %255s", method, path);
    atomic_fetch_add(&cdn.gets, 1);
    unsigned char png[300];
    size_t len = png_for(strrchr(path, '/') + 1, png, sizeof png);
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      len);
    if (send(fd, head, (size_t)hn, MSG_NOSIGNAL) == hn)
        (void)send(fd, png, len, MSG_NOSIGNAL);
}

/* One connection at a time is plenty: the pipeline fetches its outputs one
 * after the other. */
static void *cdn_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&cdn.stop)) {
        struct pollfd p = {cdn.listen_fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(cdn.listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        cdn_serve(fd);
        close(fd);
    }
    return NULL;
}

static int cdn_start(void **state)
{
    (void)state;
    atomic_store(&cdn.stop, 0);
    cdn.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (cdn.listen_fd < 0 || bind(cdn.listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(cdn.listen_fd, 16) != 0 ||
        getsockname(cdn.listen_fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    cdn.port = ntohs(a.sin_port);
    return pthread_create(&cdn.thread, NULL, cdn_main, NULL) == 0 ? 0 : -1;
}

static int cdn_stop(void **state)
{
    (void)state;
    atomic_store(&cdn.stop, 1);
    pthread_join(cdn.thread, NULL);
    close(cdn.listen_fd);
    return 0;
}

/* ---- generations --------------------------------------------------------------- */

typedef struct events {
    atomic_int submitted, ended, order_ok;
} events;

static void on_gen_event(uni1_generation *g, uni1_gen_event ev, void *ud)
{
    events *e = ud;
    uni1_gen_snapshot snap;
    uni1_generation_snapshot(g, &snap);
    if (ev == UNI1_GEN_SUBMITTED) {
        atomic_fetch_add(&e->submitted, 1);
        atomic_store(&e->order_ok, snap.job_id[0] != 0 && !snap.done);
    } else if (ev == UNI1_GEN_ENDED) {
        if (!atomic_load(&e->submitted) || !snap.done)
            atomic_store(&e->order_ok, 0);
        atomic_fetch_add(&e->ended, 1);
    }
}

static const unsigned char input_png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 'i', 'n'};

static void test_generation_done_with_outputs_in_memory(void **state)
{
    (void)state;
    api a;
    api_init(&a, "job_gen_mem");
    a.cdn_port = cdn.port;
    a.polls_to_success = 1;
    uni1_client *c = make_client(&a);
    uni1_gen_input inputs[2] = {
        {.data = input_png, .len = sizeof input_png, .name = "in.png", .mime_type = "image/png"},
        {.asset_id = "asset_given"},
    };
    int refs[] = {0, 1};
    uni1_gen_spec sp = {0};
    sp.prompt = "a lighthouse";
    sp.source = -1;
    sp.image_refs = refs;
    sp.n_image_refs = 2;
    sp.output_format = UNI1_FORMAT_PNG;
    sp.inputs = inputs;
    sp.n_inputs = 2;
    sp.fetch = 1;
    events ev = {0};
    uni1_status st = (uni1_status)-1;
    char err[256];
    int gets_before = atomic_load(&cdn.gets);
    double t0 = uni1_monotonic();
    uni1_generation *g = uni1_generation_start(c, &sp, on_gen_event, &ev, &st, err, sizeof err);
    double start_took = uni1_monotonic() - t0;
    assert_non_null(g);
    assert_int_equal(st, UNI1_OK);
    assert_true(start_took < 0.05 * slack());
    uni1_task *t = uni1_generation_task(g);
    assert_int_equal(uni1_tasks_wait(&t, 1, 20 * slack()), 0);
    assert_int_equal(uni1_generation_status(g), UNI1_OK);
    uni1_gen_snapshot snap;
    uni1_generation_snapshot(g, &snap);
    assert_true(snap.done);
    assert_int_equal(snap.stage, UNI1_GEN_DONE);
    assert_true(snap.progress == 1.0);
    assert_string_equal(snap.job_id, "job_gen_mem");
    assert_string_equal(uni1_generation_job(g)->id, "job_gen_mem");
    assert_true(uni1_generation_cost(g) == 5);
    assert_int_equal(uni1_generation_n_outputs(g), 2);
    for (size_t i = 0; i < 2; i++) {
        const uni1_gen_output *o = uni1_generation_output(g, i);
        assert_non_null(o);
        char id[32];
        snprintf(id, sizeof id, "asset_out%zu", i + 1);
        assert_string_equal(o->asset.id, id);
        assert_null(o->path);
        unsigned char want[300];
        char name[48];
        snprintf(name, sizeof name, "%s.png", id);
        size_t n = png_for(name, want, sizeof want);
        assert_int_equal(o->data.len, n);
        assert_memory_equal(o->data.data, want, n);
        assert_string_equal(o->content_type, "image/png");
    }
    assert_null(uni1_generation_output(g, 2));
    pthread_mutex_lock(&a.mu);
    assert_int_equal(a.uploads, 1); /* only the bytes; the asset id is used as is */
    assert_int_equal(a.generates, 1);
    assert_int_equal(a.asset_gets, 2);
    assert_int_equal(a.cancels, 0);
    assert_int_equal(a.calls_on_caller, 0); /* every request on the engine */
    assert_non_null(strstr(a.generate_body, "\"imageRef\":[\"asset_up1\",\"asset_given\"]"));
    pthread_mutex_unlock(&a.mu);
    assert_int_equal(atomic_load(&cdn.gets) - gets_before, 2);
    assert_int_equal(uni1_generation_cancel(g), 0); /* done: nothing to cancel */
    uni1_client_free(c);
    assert_int_equal(atomic_load(&ev.submitted), 1);
    assert_int_equal(atomic_load(&ev.ended), 1);
    assert_true(atomic_load(&ev.order_ok));
    uni1_generation_free(g);
    pthread_mutex_destroy(&a.mu);
}

static void wait_submitted(events *ev)
{
    double until = uni1_monotonic() + 10 * slack();
    while (!atomic_load(&ev->submitted) && uni1_monotonic() < until)
        usleep(1000);
    assert_int_equal(atomic_load(&ev->submitted), 1);
}

static uni1_gen_spec plain_spec(void)
{
    uni1_gen_spec sp = {0};
    sp.prompt = "a lighthouse";
    sp.source = -1;
    sp.output_format = UNI1_FORMAT_PNG;
    sp.fetch = 1;
    return sp;
}

static void test_generation_cancel_stops_the_pipeline(void **state)
{
    (void)state;
    api a;
    api_init(&a, "job_gen_cancel");
    a.cdn_port = cdn.port;
    a.polls_to_success = -1;
    uni1_client *c = make_client(&a);
    uni1_gen_spec sp = plain_spec();
    events ev = {0};
    uni1_status st;
    char err[256];
    int gets_before = atomic_load(&cdn.gets);
    uni1_generation *g = uni1_generation_start(c, &sp, on_gen_event, &ev, &st, err, sizeof err);
    assert_non_null(g);
    wait_submitted(&ev);
    usleep(50000); /* waiting between polls */
    uni1_gen_snapshot snap;
    uni1_generation_snapshot(g, &snap);
    assert_false(snap.done);
    assert_int_equal(snap.stage, UNI1_GEN_WAITING);
    double t0 = uni1_monotonic();
    assert_int_equal(uni1_generation_cancel(g), 1);
    uni1_task *t = uni1_generation_task(g);
    assert_int_equal(uni1_tasks_wait(&t, 1, 5 * slack()), 0);
    double took = uni1_monotonic() - t0;
    if (took > 0.2 * slack())
        fail_msg("cancel took %.3f s", took);
    assert_int_equal(uni1_generation_status(g), UNI1_ERR_INTERRUPTED);
    assert_int_equal(uni1_generation_error(g)->status, UNI1_ERR_INTERRUPTED);
    uni1_generation_snapshot(g, &snap);
    assert_true(snap.done);
    assert_int_equal(snap.stage, UNI1_GEN_CANCELED);
    assert_int_equal(uni1_generation_n_outputs(g), 0);
    pthread_mutex_lock(&a.mu);
    assert_int_equal(a.generates, 1);
    assert_int_equal(a.cancels, 1); /* the job is cancelled on the server too */
    assert_int_equal(a.asset_gets, 0);
    pthread_mutex_unlock(&a.mu);
    assert_int_equal(atomic_load(&cdn.gets), gets_before);
    assert_int_equal(uni1_generation_cancel(g), 0);
    uni1_client_free(c); /* joins the engine: the ENDED event came */
    assert_int_equal(atomic_load(&ev.ended), 1);
    uni1_generation_free(g);
    pthread_mutex_destroy(&a.mu);
}

static void test_generation_deadline(void **state)
{
    (void)state;
    api a;
    api_init(&a, "job_gen_deadline");
    a.polls_to_success = -1;
    uni1_client *c = make_client(&a);
    uni1_gen_spec sp = plain_spec();
    double t0 = uni1_monotonic();
    /* 1.5 s: past the first poll of a fresh job (1 s after the POST). */
    sp.deadline = t0 + 1.5;
    uni1_status st;
    char err[256];
    uni1_generation *g = uni1_generation_start(c, &sp, NULL, NULL, &st, err, sizeof err);
    assert_non_null(g);
    uni1_task *t = uni1_generation_task(g);
    assert_int_equal(uni1_tasks_wait(&t, 1, 10 * slack()), 0);
    double took = uni1_monotonic() - t0;
    assert_true(took >= 1.49);
    assert_true(took < 1.5 + 0.5 * slack());
    assert_int_equal(uni1_generation_status(g), UNI1_ERR_TIMEOUT);
    uni1_gen_snapshot snap;
    uni1_generation_snapshot(g, &snap);
    assert_int_equal(snap.stage, UNI1_GEN_FAILED);
    pthread_mutex_lock(&a.mu);
    assert_true(a.job_gets >= 1);
    assert_int_equal(a.cancels, 0); /* not the caller's cancel: the job is left alone */
    pthread_mutex_unlock(&a.mu);
    uni1_generation_free(g);
    uni1_client_free(c);
    pthread_mutex_destroy(&a.mu);
}

/* Whoever a completion wakes finds the generation's state final: done,
 * stage and outputs agree with uni1_task_done at once, not a moment later. */
static void test_generation_state_is_final_when_its_task_is_done(void **state)
{
    (void)state;
    api a;
    api_init(&a, "job_gen_attach");
    a.n_outputs = 1;
    uni1_client *c = make_client(&a);
    uni1_gen_spec sp = plain_spec();
    sp.prompt = NULL;
    sp.job_id = "job_gen_attach"; /* attach: one GET, already succeeded */
    sp.fetch = 0;
    for (int i = 0; i < 500; i++) {
        uni1_status st;
        char err[256];
        uni1_generation *g = uni1_generation_start(c, &sp, NULL, NULL, &st, err, sizeof err);
        assert_non_null(g);
        uni1_task *t = uni1_generation_task(g);
        assert_int_equal(uni1_tasks_wait(&t, 1, 10 * slack()), 0);
        uni1_gen_snapshot snap;
        uni1_generation_snapshot(g, &snap);
        if (!snap.done || snap.stage != UNI1_GEN_DONE)
            fail_msg("round %d: task done, generation at stage %d, done %d", i, snap.stage,
                     snap.done);
        assert_int_equal(uni1_generation_status(g), UNI1_OK);
        assert_int_equal(uni1_generation_job(g)->state, UNI1_JOB_SUCCESS);
        uni1_generation_free(g);
    }
    pthread_mutex_lock(&a.mu);
    assert_int_equal(a.generates, 0);
    assert_int_equal(a.job_gets, 500);
    pthread_mutex_unlock(&a.mu);
    uni1_client_free(c);
    pthread_mutex_destroy(&a.mu);
}

/* The events run on the engine thread, possibly before uni1_generation_start
 * has returned to its caller: the generation must already know its task. */
static void task_event(uni1_generation *g, uni1_gen_event ev, void *ud)
{
    events *e = ud;
    uni1_task *t = uni1_generation_task(g);
    if (!t) {
        atomic_store(&e->order_ok, 0);
        return;
    }
    uni1_gen_snapshot snap;
    uni1_generation_snapshot(g, &snap);
    if (ev == UNI1_GEN_SUBMITTED)
        atomic_fetch_add(&e->submitted, 1);
    else if (ev == UNI1_GEN_ENDED && snap.done && uni1_task_done(t))
        atomic_fetch_add(&e->ended, 1);
}

static void test_generation_events_know_their_task(void **state)
{
    (void)state;
    enum { ROUNDS = 300 };
    api a;
    api_init(&a, "job_gen_events");
    a.submit_status = "succeeded"; /* polled at once: a round takes a moment */
    uni1_client *c = make_client(&a);
    uni1_gen_spec sp = plain_spec();
    sp.fetch = 0;
    events ev = {0};
    atomic_store(&ev.order_ok, 1);
    for (int i = 0; i < ROUNDS; i++) {
        uni1_status st;
        char err[256];
        uni1_generation *g = uni1_generation_start(c, &sp, task_event, &ev, &st, err, sizeof err);
        assert_non_null(g);
        uni1_task *t = uni1_generation_task(g);
        assert_int_equal(uni1_tasks_wait(&t, 1, 10 * slack()), 0);
        double until = uni1_monotonic() + 5 * slack();
        while (atomic_load(&ev.ended) <= i && atomic_load(&ev.order_ok) && uni1_monotonic() < until)
            usleep(100);
        if (!atomic_load(&ev.order_ok))
            fail_msg("round %d: an event found the generation without its task", i);
        assert_int_equal(atomic_load(&ev.ended), i + 1);
        assert_int_equal(uni1_generation_status(g), UNI1_OK);
        uni1_generation_free(g);
    }
    assert_int_equal(atomic_load(&ev.submitted), ROUNDS);
    uni1_client_free(c);
    pthread_mutex_destroy(&a.mu);
}

/* Freed while it runs: cancelled, and its memory goes when its task ends
 * (valgrind and LeakSanitizer check that). */
static void test_generation_freed_while_running(void **state)
{
    (void)state;
    api a;
    api_init(&a, "job_gen_freed");
    a.polls_to_success = -1;
    uni1_client *c = make_client(&a);
    uni1_gen_spec sp = plain_spec();
    events ev = {0};
    uni1_status st;
    char err[256];
    uni1_generation *g = uni1_generation_start(c, &sp, on_gen_event, &ev, &st, err, sizeof err);
    assert_non_null(g);
    wait_submitted(&ev);
    uni1_generation_free(g);
    double t0 = uni1_monotonic();
    uni1_client_free(c);
    assert_true(uni1_monotonic() - t0 < 1.0 * slack());
    assert_int_equal(atomic_load(&ev.ended), 0); /* no event after the free */
    pthread_mutex_destroy(&a.mu);
}

static void expect_invalid(uni1_client *c, const uni1_gen_spec *sp, const char *needle)
{
    uni1_status st = UNI1_OK;
    char err[256] = "";
    uni1_generation *g = uni1_generation_start(c, sp, NULL, NULL, &st, err, sizeof err);
    assert_null(g);
    assert_int_equal(st, UNI1_ERR_INVALID);
    if (!strstr(err, needle))
        fail_msg("\"%s\" does not mention \"%s\"", err, needle);
}

static void test_generation_bad_spec_is_invalid_and_sends_nothing(void **state)
{
    (void)state;
    api a;
    api_init(&a, "job_gen_bad");
    uni1_client *c = make_client(&a);
    int threads_before = thread_count();
    uni1_gen_input in = {.asset_id = "asset_a"};
    uni1_gen_spec sp = plain_spec();
    sp.inputs = &in;
    sp.n_inputs = 1;
    sp.source = 1;
    expect_invalid(c, &sp, "source: no input 1");
    sp.source = -2;
    expect_invalid(c, &sp, "source: no input -2");
    sp.source = 0;
    int bad_refs[] = {0, 3};
    sp.image_refs = bad_refs;
    sp.n_image_refs = 2;
    expect_invalid(c, &sp, "image_refs[1]: no input 3");
    bad_refs[1] = -1;
    expect_invalid(c, &sp, "image_refs[1]: no input -1");
    sp.n_image_refs = 0;
    uni1_gen_input both = {.asset_id = "asset_a", .path = "/tmp/x.png"};
    sp.inputs = &both;
    expect_invalid(c, &sp, "input 0: give exactly one of asset_id, data, path");
    sp.inputs = &in;
    sp.prompt = NULL;
    expect_invalid(c, &sp, "a prompt or a job id is needed");
    /* nothing was sent, and no engine was started for it */
    pthread_mutex_lock(&a.mu);
    assert_int_equal(a.uploads + a.generates + a.job_gets + a.asset_gets + a.cancels, 0);
    pthread_mutex_unlock(&a.mu);
    assert_int_equal(thread_count(), threads_before);
    uni1_client_free(c);
    pthread_mutex_destroy(&a.mu);
}

int main(void)
{
    if (init_library() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_generation_done_with_outputs_in_memory, cdn_start,
                                        cdn_stop),
        cmocka_unit_test_setup_teardown(test_generation_cancel_stops_the_pipeline, cdn_start,
                                        cdn_stop),
        cmocka_unit_test(test_generation_deadline),
        cmocka_unit_test(test_generation_state_is_final_when_its_task_is_done),
        cmocka_unit_test(test_generation_events_know_their_task),
        cmocka_unit_test(test_generation_freed_while_running),
        cmocka_unit_test(test_generation_bad_spec_is_invalid_and_sends_nothing),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    uni1_global_cleanup();
    return failed;
}
