/* Tests of csrc/core/parse.c: every response shape of the contract
 * (shared/scenario-api.md), its variants, and malformed input.
 *
 * Every parser is fed a malloc'd copy of exactly len bytes with no NUL
 * terminator, so valgrind and ASan catch any read past the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "uni1.h"
#include "uni1_internal.h"

/* --- helpers ------------------------------------------------------------- */

static char *exact_copy(const char *s, size_t len)
{
    char *b = malloc(len ? len : 1);
    assert_non_null(b);
    memcpy(b, s, len);
    return b;
}

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static char errbuf[512];

static uni1_status job_n(const char *json, size_t len, uni1_job *job)
{
    char *b = exact_copy(json, len);
    errbuf[0] = '\0';
    memset(job, 0x5A, sizeof *job); /* outputs are written, never read */
    uni1_status st = uni1_parse_job(b, len, job, errbuf, sizeof errbuf);
    free(b);
    if (st != UNI1_OK) {
        assert_true(all_zero(job, sizeof *job));
        assert_true(errbuf[0] != '\0');
    }
    return st;
}

static uni1_status job_s(const char *json, uni1_job *job)
{
    return job_n(json, strlen(json), job);
}

/* Parses json, expects failure with err starting with `prefix`. */
static void job_fails(const char *json, const char *prefix)
{
    uni1_job job;
    uni1_status st = job_s(json, &job);
    if (st == UNI1_OK)
        fail_msg("parsed but should not: %s", json);
    assert_int_equal(st, UNI1_ERR_PROTOCOL);
    if (strncmp(errbuf, prefix, strlen(prefix)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", errbuf, prefix);
}

static uni1_status list_s(const char *json, uni1_job_list *l)
{
    size_t len = strlen(json);
    char *b = exact_copy(json, len);
    errbuf[0] = '\0';
    uni1_status st = uni1_parse_job_list(b, len, l, errbuf, sizeof errbuf);
    free(b);
    if (st != UNI1_OK) {
        assert_true(all_zero(l, sizeof *l));
        assert_true(errbuf[0] != '\0');
    }
    return st;
}

static uni1_status asset_s(const char *json, uni1_asset *a)
{
    size_t len = strlen(json);
    char *b = exact_copy(json, len);
    errbuf[0] = '\0';
    uni1_status st = uni1_parse_asset(b, len, a, errbuf, sizeof errbuf);
    free(b);
    if (st != UNI1_OK) {
        assert_true(all_zero(a, sizeof *a));
        assert_true(errbuf[0] != '\0');
    }
    return st;
}

static uni1_status submit_s(const char *json, uni1_job *job, double *cost)
{
    size_t len = strlen(json);
    char *b = exact_copy(json, len);
    errbuf[0] = '\0';
    uni1_status st = uni1_parse_submit(b, len, job, cost, errbuf, sizeof errbuf);
    free(b);
    if (st != UNI1_OK)
        assert_true(all_zero(job, sizeof *job));
    return st;
}

static uni1_status estimate_s(const char *json, double *cost)
{
    size_t len = strlen(json);
    char *b = exact_copy(json, len);
    errbuf[0] = '\0';
    uni1_status st = uni1_parse_estimate(b, len, cost, errbuf, sizeof errbuf);
    free(b);
    return st;
}

static void error_n(const char *body, size_t len, uni1_error *e)
{
    char *b = exact_copy(body, len);
    memset(e, 0, sizeof *e);
    e->status = UNI1_ERR_HTTP;
    e->http_status = 418;
    e->body = (char *)0x1234; /* must be left alone */
    e->body_len = 77;
    strcpy(e->message, "stale");
    strcpy(e->trace_id, "stale");
    e->retry_after = 99;
    uni1_parse_error_body(b, len, e);
    free(b);
    assert_int_equal(e->status, UNI1_ERR_HTTP);
    assert_int_equal(e->http_status, 418);
    assert_ptr_equal(e->body, (char *)0x1234);
    assert_int_equal(e->body_len, 77);
    /* whatever came in, the message is short, valid UTF-8 and printable */
    size_t n = strnlen(e->message, sizeof e->message);
    assert_true(n < sizeof e->message);
    assert_true(uni1__utf8_valid(e->message, n, NULL));
    for (size_t i = 0; i < n; i++)
        assert_true((unsigned char)e->message[i] >= 0x20 && e->message[i] != 0x7F);
    assert_true(strnlen(e->trace_id, sizeof e->trace_id) < sizeof e->trace_id);
}

static void error_s(const char *body, uni1_error *e)
{
    error_n(body, strlen(body), e);
}

/* A realistic job from the contract, used by several tests. */
static const char full_job[] =
    "{\"job\":{\"jobId\":\"job_4fQ2xY7kLm9Np3Rs8Tv1Wz0A\",\"jobType\":\"custom\","
    "\"status\":\"success\",\"progress\":1,"
    "\"statusHistory\":[{\"date\":\"2025-06-01T10:00:00.000Z\",\"status\":\"queued\"},"
    "{\"date\":\"2025-06-01T10:00:05.123Z\",\"status\":\"in-progress\"},"
    "{\"date\":\"2025-06-01T10:01:30.456Z\",\"status\":\"success\"}],"
    "\"metadata\":{\"assetIds\":[\"asset_Aa1\",\"asset_Bb2\"],\"error\":null,"
    "\"input\":{\"prompt\":\"a red fox\",\"aspectRatio\":\"16:9\"},\"output\":{}},"
    "\"billing\":{\"cuCost\":12,\"cuDiscount\":0,\"disableRefund\":false},"
    "\"createdAt\":\"2025-06-01T10:00:00.000Z\",\"updatedAt\":\"2025-06-01T10:01:30.456Z\","
    "\"authorId\":\"u_1\",\"ownerId\":\"o_1\"}}";

/* --- jobs: the contract's shapes ----------------------------------------- */

static void test_job_full(void **state)
{
    (void)state;
    uni1_job job;
    assert_int_equal(job_s(full_job, &job), UNI1_OK);
    assert_string_equal(job.id, "job_4fQ2xY7kLm9Np3Rs8Tv1Wz0A");
    assert_int_equal(job.state, UNI1_JOB_SUCCESS);
    assert_string_equal(job.status, "success");
    assert_true(job.progress == 1.0);
    assert_int_equal(job.n_assets, 2);
    assert_string_equal(job.asset_ids[0], "asset_Aa1");
    assert_string_equal(job.asset_ids[1], "asset_Bb2");
    assert_null(job.error);
    assert_null(job.hint);
    assert_string_equal(job.created_at, "2025-06-01T10:00:00.000Z");
    assert_non_null(job.raw_json);
    assert_int_equal(job.raw_len, strlen(job.raw_json));
    /* raw_json is the job object (not the wrapper), unformatted, complete */
    assert_int_equal(strncmp(job.raw_json, "{\"jobId\":", 9), 0);
    assert_non_null(strstr(job.raw_json, "\"statusHistory\":[{\"date\":"));
    assert_non_null(strstr(job.raw_json, "\"billing\":{\"cuCost\":12"));
    assert_non_null(strstr(job.raw_json, "\"input\":{\"prompt\":\"a red fox\""));
    assert_non_null(strstr(job.raw_json, "\"ownerId\":\"o_1\""));
    uni1_job_clear(&job);
}

static void test_job_id_variants(void **state)
{
    (void)state;
    uni1_job job;
    assert_int_equal(job_s("{\"job\":{\"id\":\"job_byId\",\"status\":\"queued\"}}", &job), UNI1_OK);
    assert_string_equal(job.id, "job_byId");
    assert_int_equal(job.state, UNI1_JOB_QUEUED);
    uni1_job_clear(&job);
    /* both: jobId wins */
    assert_int_equal(job_s("{\"job\":{\"id\":\"job_b\",\"jobId\":\"job_a\"}}", &job), UNI1_OK);
    assert_string_equal(job.id, "job_a");
    uni1_job_clear(&job);
    /* jobId null: fall back to id */
    assert_int_equal(job_s("{\"job\":{\"jobId\":null,\"id\":\"job_c\"}}", &job), UNI1_OK);
    assert_string_equal(job.id, "job_c");
    uni1_job_clear(&job);
}

static void test_job_bare_object(void **state)
{
    (void)state;
    uni1_job job;
    assert_int_equal(job_s("{\"jobId\":\"job_bare\",\"status\":\"pending\",\"progress\":0}", &job),
                     UNI1_OK);
    assert_string_equal(job.id, "job_bare");
    assert_int_equal(job.state, UNI1_JOB_PENDING);
    assert_string_equal(job.raw_json,
                        "{\"jobId\":\"job_bare\",\"status\":\"pending\",\"progress\":0}");
    uni1_job_clear(&job);
}

static void test_job_all_statuses(void **state)
{
    (void)state;
    static const struct {
        const char *s, *canon;
        uni1_job_state st;
        int terminal;
    } cases[] = {
        {"pending", "pending", UNI1_JOB_PENDING, 0},
        {"queued", "queued", UNI1_JOB_QUEUED, 0},
        {"warming-up", "warming-up", UNI1_JOB_WARMING_UP, 0},
        {"in-progress", "in-progress", UNI1_JOB_IN_PROGRESS, 0},
        {"finalizing", "finalizing", UNI1_JOB_FINALIZING, 0},
        {"success", "success", UNI1_JOB_SUCCESS, 1},
        {"succeeded", "success", UNI1_JOB_SUCCESS, 1},
        {"failure", "failure", UNI1_JOB_FAILURE, 1},
        {"failed", "failure", UNI1_JOB_FAILURE, 1},
        {"canceled", "canceled", UNI1_JOB_CANCELED, 1},
        {"cancelled", "canceled", UNI1_JOB_CANCELED, 1},
        {"paused", "paused", UNI1_JOB_UNKNOWN, 0},
        {"Success", "Success", UNI1_JOB_UNKNOWN, 0},
        {"", "", UNI1_JOB_UNKNOWN, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[256];
        uni1_job job;
        snprintf(json, sizeof json, "{\"job\":{\"jobId\":\"job_s\",\"status\":\"%s\"}}",
                 cases[i].s);
        assert_int_equal(job_s(json, &job), UNI1_OK);
        assert_int_equal(job.state, cases[i].st);
        assert_string_equal(job.status, cases[i].canon);
        assert_int_equal(uni1_job_state_is_terminal(job.state), cases[i].terminal);
        uni1_job_clear(&job);
    }
}

static void test_job_status_missing_or_long(void **state)
{
    (void)state;
    uni1_job job;
    assert_int_equal(job_s("{\"job\":{\"jobId\":\"job_s\"}}", &job), UNI1_OK);
    assert_int_equal(job.state, UNI1_JOB_UNKNOWN);
    assert_string_equal(job.status, "");
    assert_true(job.progress == 0.0);
    uni1_job_clear(&job);
    assert_int_equal(job_s("{\"job\":{\"jobId\":\"job_s\",\"status\":null}}", &job), UNI1_OK);
    assert_int_equal(job.state, UNI1_JOB_UNKNOWN);
    uni1_job_clear(&job);
    /* an unknown status longer than the field is cut to 31 bytes */
    assert_int_equal(job_s("{\"job\":{\"jobId\":\"job_s\",\"status\":"
                           "\"awaiting-manual-moderation-review-by-staff\"}}",
                           &job),
                     UNI1_OK);
    assert_string_equal(job.status, "awaiting-manual-moderation-revi");
    assert_int_equal(job.state, UNI1_JOB_UNKNOWN);
    uni1_job_clear(&job);
    /* ... and never in the middle of a character: 30 ASCII + "é" */
    assert_int_equal(job_s("{\"job\":{\"jobId\":\"job_s\",\"status\":"
                           "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xC3\xA9\"}}",
                           &job),
                     UNI1_OK);
    assert_string_equal(job.status, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    uni1_job_clear(&job);
    job_fails("{\"job\":{\"jobId\":\"job_s\",\"status\":3}}",
              "job.status: expected a string, got a number");
}

static void test_job_status_history_kept(void **state)
{
    (void)state;
    uni1_job job;
    /* statusHistory is not interpreted: odd entries do not break the job */
    assert_int_equal(job_s("{\"job\":{\"jobId\":\"job_h\",\"status\":\"in-progress\","
                           "\"statusHistory\":[{\"date\":\"2025-01-01T00:00:00.000Z\","
                           "\"status\":\"queued\"},null,7,{\"status\":{\"x\":1}}]}}",
                           &job),
                     UNI1_OK);
    assert_int_equal(job.state, UNI1_JOB_IN_PROGRESS);
    assert_non_null(strstr(job.raw_json, "\"statusHistory\":[{\"date\":\"2025-01-01T00:00:00.000Z\""
                                         ",\"status\":\"queued\"},null,7,{\"status\":{\"x\":1}}]"));
    uni1_job_clear(&job);
}

static void test_job_failure_metadata_error_and_hint(void **state)
{
    (void)state;
    uni1_job job;
    assert_int_equal(job_s("{\"job\":{\"jobId\":\"job_f\",\"status\":\"failure\",\"progress\":0.4,"
                           "\"metadata\":{\"error\":\"Content moderation rejected the prompt\","
                           "\"hint\":\"Rephrase the prompt and try again\"},"
                           "\"error\":\"legacy ignored\"}}",
                           &job),
                     UNI1_OK);
    assert_int_equal(job.state, UNI1_JOB_FAILURE);
    assert_string_equal(job.error, "Content moderation rejected the prompt");
    assert_string_equal(job.hint, "Rephrase the prompt and try again");
    assert_true(job.progress == 0.4);
    uni1_job_clear(&job);
}

static void test_job_failure_legacy_fields(void **state)
{
    (void)state;
    static const char *const keys[] = {"error", "errorMessage", "failureReason", "reason"};
    for (size_t i = 0; i < 4; i++) {
        char json[256];
        uni1_job job;
        snprintf(json, sizeof json,
                 "{\"job\":{\"jobId\":\"job_l\",\"status\":\"failed\",\"%s\":\"why %zu\"}}",
                 keys[i], i);
        assert_int_equal(job_s(json, &job), UNI1_OK);
        char want[16];
        snprintf(want, sizeof want, "why %zu", i);
        assert_string_equal(job.error, want);
        assert_null(job.hint);
        assert_int_equal(job.state, UNI1_JOB_FAILURE);
        uni1_job_clear(&job);
    }
}

static void test_job_failure_reason_priority(void **state)
{
    (void)state;
    uni1_job job;
    /* metadata.error null or empty: fall back to the top level, in order */
    assert_int_equal(job_s("{\"jobId\":\"job_p\",\"metadata\":{\"error\":null},"
                           "\"reason\":\"r\",\"failureReason\":\"f\",\"errorMessage\":\"m\"}",
                           &job),
                     UNI1_OK);
    assert_string_equal(job.error, "m");
    uni1_job_clear(&job);
    assert_int_equal(job_s("{\"jobId\":\"job_p\",\"metadata\":{\"error\":\"\"},"
                           "\"reason\":\"r\",\"failureReason\":\"f\"}",
                           &job),
                     UNI1_OK);
    assert_string_equal(job.error, "f");
    uni1_job_clear(&job);
    assert_int_equal(job_s("{\"jobId\":\"job_p\",\"error\":null,\"reason\":\"r\"}", &job), UNI1_OK);
    assert_string_equal(job.error, "r");
    uni1_job_clear(&job);
    /* a successful job with no reason anywhere */
    assert_int_equal(job_s("{\"jobId\":\"job_p\",\"status\":\"success\",\"metadata\":{}}", &job),
                     UNI1_OK);
    assert_null(job.error);
    uni1_job_clear(&job);
}

static void test_job_error_of_other_types(void **state)
{
    (void)state;
    uni1_job job;
    assert_int_equal(job_s("{\"jobId\":\"job_o\",\"metadata\":{\"error\":{\"code\":\"E42\","
                           "\"message\":\"bad\"},\"hint\":[\"a\",\"b\"]}}",
                           &job),
                     UNI1_OK);
    assert_string_equal(job.error, "{\"code\":\"E42\",\"message\":\"bad\"}");
    assert_string_equal(job.hint, "[\"a\",\"b\"]");
    uni1_job_clear(&job);
    assert_int_equal(job_s("{\"jobId\":\"job_o\",\"error\":500}", &job), UNI1_OK);
    assert_string_equal(job.error, "500");
    uni1_job_clear(&job);
    /* booleans and empty containers carry no reason */
    assert_int_equal(job_s("{\"jobId\":\"job_o\",\"error\":false,\"errorMessage\":{},"
                           "\"failureReason\":[],\"reason\":\"real\"}",
                           &job),
                     UNI1_OK);
    assert_string_equal(job.error, "real");
    uni1_job_clear(&job);
}

static void test_job_unknown_fields_kept(void **state)
{
    (void)state;
    uni1_job job;
    const char *json = "{\"job\":{\"jobId\":\"job_u\",\"status\":\"queued\","
                       "\"futureField\":{\"nested\":[1,2.5,\"x\",null,true]},"
                       "\"metadata\":{\"assetIds\":[],\"newMeta\":\"kept\"},"
                       "\"unicode\":\"caf\xC3\xA9 \\u00e9 \\ud83d\\ude00\"},\"envelopeExtra\":1}";
    assert_int_equal(job_s(json, &job), UNI1_OK);
    assert_non_null(strstr(job.raw_json, "\"futureField\":{\"nested\":[1,2.5,\"x\",null,true]}"));
    assert_non_null(strstr(job.raw_json, "\"newMeta\":\"kept\""));
    assert_non_null(strstr(job.raw_json, "caf\xC3\xA9 \xC3\xA9 \xF0\x9F\x98\x80"));
    /* the envelope is not the job */
    assert_null(strstr(job.raw_json, "envelopeExtra"));
    assert_int_equal(job.n_assets, 0);
    assert_null(job.asset_ids);
    /* raw_json parses back to the same job */
    uni1_job again;
    assert_int_equal(job_n(job.raw_json, job.raw_len, &again), UNI1_OK);
    assert_string_equal(again.id, job.id);
    assert_int_equal(again.raw_len, job.raw_len);
    assert_string_equal(again.raw_json, job.raw_json);
    uni1_job_clear(&again);
    uni1_job_clear(&job);
}

/* raw_json is cJSON's re-serialisation: numbers come back in cJSON's form,
 * which for 1.7.15 is 15 significant digits whenever they read back within
 * DBL_EPSILON (an ulp may move), and null for an overflowing literal. The
 * parsed fields hold the exact values. */
static void test_job_raw_json_numbers(void **state)
{
    (void)state;
    uni1_job job;
    assert_int_equal(job_s("{\"jobId\":\"job_n\",\"progress\":0.58888888888888888,"
                           "\"count\":9000000000000001,\"big\":1e999,\"small\":12}",
                           &job),
                     UNI1_OK);
    assert_true(job.progress == 0.58888888888888888);
    assert_non_null(strstr(job.raw_json, "\"progress\":0.588888888888889,"));
    assert_non_null(strstr(job.raw_json, "\"count\":9e+15,"));
    assert_non_null(strstr(job.raw_json, "\"big\":null,"));
    assert_non_null(strstr(job.raw_json, "\"small\":12}"));
    uni1_job_clear(&job);
}

static void test_job_progress(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        double want;
    } ok[] = {{"0", 0},    {"0.5", 0.5},    {"1", 1},      {"-0.2", 0}, {"1.7", 1},
              {"null", 0}, {"1e-3", 0.001}, {"-1e300", 0}, {"1e300", 1}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char json[128];
        uni1_job job;
        snprintf(json, sizeof json, "{\"jobId\":\"job_p\",\"progress\":%s}", ok[i].v);
        assert_int_equal(job_s(json, &job), UNI1_OK);
        assert_true(job.progress == ok[i].want);
        uni1_job_clear(&job);
    }
    job_fails("{\"jobId\":\"job_p\",\"progress\":\"0.5\"}",
              "job.progress: expected a number, got a string");
    job_fails("{\"jobId\":\"job_p\",\"progress\":true}",
              "job.progress: expected a number, got a boolean");
    job_fails("{\"jobId\":\"job_p\",\"progress\":[0.5]}", "job.progress: expected a number");
    job_fails("{\"jobId\":\"job_p\",\"progress\":1e999}", "job.progress: not a finite number");
    job_fails("{\"jobId\":\"job_p\",\"progress\":-1e999}", "job.progress: not a finite number");
}

static void test_job_asset_ids(void **state)
{
    (void)state;
    job_fails("{\"jobId\":\"job_a\",\"metadata\":{\"assetIds\":\"asset_x\"}}",
              "job.metadata.assetIds: expected an array, got a string");
    job_fails("{\"jobId\":\"job_a\",\"metadata\":{\"assetIds\":[\"asset_x\",5]}}",
              "job.metadata.assetIds[1]: expected a string, got a number");
    job_fails("{\"jobId\":\"job_a\",\"metadata\":{\"assetIds\":[\"asset_x\",\"asset_../../etc\"]}}",
              "job.metadata.assetIds[1]: not a valid id");
    job_fails("{\"jobId\":\"job_a\",\"metadata\":{\"assetIds\":[\"\"]}}",
              "job.metadata.assetIds[0]: not a valid id");
    job_fails("{\"jobId\":\"job_a\",\"metadata\":{\"assetIds\":[\"asset_a\\u0000b\"]}}",
              "job.metadata.assetIds[0]: not a valid id");
    job_fails("{\"jobId\":\"job_a\",\"metadata\":[]}",
              "job.metadata: expected an object, got an array");
    job_fails("{\"jobId\":\"job_a\",\"metadata\":\"x\"}", "job.metadata: expected an object");
    uni1_job job;
    assert_int_equal(job_s("{\"jobId\":\"job_a\",\"metadata\":{\"assetIds\":null}}", &job),
                     UNI1_OK);
    assert_int_equal(job.n_assets, 0);
    uni1_job_clear(&job);
    assert_int_equal(job_s("{\"jobId\":\"job_a\",\"metadata\":null}", &job), UNI1_OK);
    uni1_job_clear(&job);
}

static void test_job_id_rules(void **state)
{
    (void)state;
    char json[512], id[UNI1_ID_MAX + 2];
    uni1_job job;
    memset(id, 'k', UNI1_ID_MAX - 1);
    id[UNI1_ID_MAX - 1] = '\0';
    snprintf(json, sizeof json, "{\"jobId\":\"%s\"}", id);
    assert_int_equal(job_s(json, &job), UNI1_OK); /* 127 bytes: the longest */
    assert_string_equal(job.id, id);
    uni1_job_clear(&job);
    id[UNI1_ID_MAX - 1] = 'k';
    id[UNI1_ID_MAX] = '\0';
    snprintf(json, sizeof json, "{\"jobId\":\"%s\"}", id);
    job_fails(json, "job.jobId: not a valid id");
    job_fails("{\"jobId\":\"job a\"}", "job.jobId: not a valid id");
    job_fails("{\"jobId\":\"job/../x\"}", "job.jobId: not a valid id");
    job_fails("{\"jobId\":\"job\\/x\"}", "job.jobId: not a valid id");
    job_fails("{\"jobId\":\"job_\xC3\xA9\"}", "job.jobId: not a valid id");
    job_fails("{\"jobId\":\"\"}", "job.jobId: not a valid id");
    job_fails("{\"id\":\"job?x\"}", "job.id: not a valid id");
    job_fails("{\"jobId\":42}", "job.jobId: expected a string, got a number");
    job_fails("{\"id\":{}}", "job.id: expected a string, got an object");
    job_fails("{\"status\":\"queued\"}", "job: no jobId or id");
    job_fails("{\"job\":{}}", "job: no jobId or id");
    job_fails("{\"jobId\":null,\"id\":null}", "job: no jobId or id");
}

static void test_job_nul_escapes(void **state)
{
    (void)state;
    /* cJSON would cut "job_a\u0000/../x" to "job_a": rejected instead */
    job_fails("{\"jobId\":\"job_a\\u0000/../x\"}", "job.jobId: not a valid id");
    job_fails("{\"jobId\":\"job_a\\u0000\"}", "job.jobId: not a valid id");
    /* a NUL in a display string becomes U+FFFD and the rest is kept */
    uni1_job job;
    assert_int_equal(job_s("{\"jobId\":\"job_n\",\"error\":\"bad\\u0000 thing\"}", &job), UNI1_OK);
    assert_string_equal(job.error, "bad\xEF\xBF\xBD thing");
    uni1_job_clear(&job);
    /* an escaped backslash followed by "u0000" is text, not an escape */
    assert_int_equal(job_s("{\"jobId\":\"job_n\",\"error\":\"a\\\\u0000\"}", &job), UNI1_OK);
    assert_string_equal(job.error, "a\\u0000");
    uni1_job_clear(&job);
    /* a raw NUL byte is never valid JSON */
    static const char raw_nul[] = "{\"jobId\":\"job_a\0b\"}";
    assert_int_equal(job_n(raw_nul, sizeof raw_nul - 1, &job), UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(errbuf, "NUL byte at offset 15"));
}

static void test_job_created_at(void **state)
{
    (void)state;
    uni1_job job;
    assert_int_equal(job_s("{\"jobId\":\"job_c\",\"createdAt\":1717236000}", &job), UNI1_OK);
    assert_string_equal(job.created_at, ""); /* informational: ignored */
    uni1_job_clear(&job);
    assert_int_equal(job_s("{\"jobId\":\"job_c\",\"createdAt\":"
                           "\"2025-06-01T10:00:00.000000000+00:00 and then some more text\"}",
                           &job),
                     UNI1_OK);
    assert_int_equal(strlen(job.created_at), sizeof job.created_at - 1);
    assert_int_equal(strncmp(job.created_at, "2025-06-01T10:00:00.000000000+00:00", 35), 0);
    uni1_job_clear(&job);
}

static void test_job_wrapper_shapes(void **state)
{
    (void)state;
    job_fails("{\"job\":null}", "job: expected an object, got null");
    job_fails("{\"job\":[]}", "job: expected an object, got an array");
    job_fails("{\"job\":\"job_x\"}", "job: expected an object, got a string");
    job_fails("[{\"jobId\":\"job_x\"}]", "job response: expected a JSON object, got an array");
    job_fails("\"job_x\"", "job response: expected a JSON object, got a string");
    job_fails("null", "job response: expected a JSON object, got null");
    job_fails("42", "job response: expected a JSON object");
}

/* --- jobs: malformed input ----------------------------------------------- */

static void test_job_every_prefix_fails_cleanly(void **state)
{
    (void)state;
    size_t n = strlen(full_job);
    for (size_t len = 0; len < n; len++) {
        uni1_job job;
        uni1_status st = job_n(full_job, len, &job);
        /* no prefix of an object is a complete object */
        assert_int_equal(st, UNI1_ERR_PROTOCOL);
    }
}

static void test_job_empty_and_null_buffers(void **state)
{
    (void)state;
    uni1_job job;
    char err[128];
    assert_int_equal(uni1_parse_job(NULL, 10, &job, err, sizeof err), UNI1_ERR_PROTOCOL);
    assert_true(all_zero(&job, sizeof job));
    assert_int_equal(uni1_parse_job("{}", 0, &job, err, sizeof err), UNI1_ERR_PROTOCOL);
    assert_string_equal(err, "job response: empty body");
    assert_int_equal(uni1_parse_job("{}", 2, NULL, err, sizeof err), UNI1_ERR_INVALID);
    /* err may be NULL or tiny */
    assert_int_equal(uni1_parse_job("nope", 4, &job, NULL, 0), UNI1_ERR_PROTOCOL);
    char tiny[5];
    assert_int_equal(uni1_parse_job("nope", 4, &job, tiny, sizeof tiny), UNI1_ERR_PROTOCOL);
    assert_int_equal(strlen(tiny), 4);
}

static void test_job_not_json(void **state)
{
    (void)state;
    job_fails("<html><body>502 Bad Gateway</body></html>", "job response: not valid JSON");
    job_fails("   ", "job response: not valid JSON");
    job_fails("{\"jobId\":\"job_x\",}", "job response: not valid JSON");
    job_fails("{\"jobId\":'job_x'}", "job response: not valid JSON");
    job_fails("{\"jobId\":\"job_x\"", "job response: not valid JSON");
    job_fails("{\"jobId\":\"job_x", "job response: not valid JSON");
    job_fails("{\"jobId\":\"job_x\\", "job response: not valid JSON");
    job_fails("{\"jobId\":\"job_x\\u12", "job response: not valid JSON");
    job_fails("{\"jobId\":\"\\ud800\"}", "job response: not valid JSON");
    job_fails("{\"jobId\":NaN}", "job response: not valid JSON");
}

static void test_job_only_len_bytes_are_read(void **state)
{
    (void)state;
    /* a valid document followed by bytes past len: only len is looked at */
    const char *doc = "{\"jobId\":\"job_len\"}GARBAGE\xFF";
    size_t len = strlen("{\"jobId\":\"job_len\"}");
    uni1_job job;
    assert_int_equal(job_n(doc, len, &job), UNI1_OK);
    assert_string_equal(job.id, "job_len");
    uni1_job_clear(&job);
    /* cut inside the id: the parser must not look for the closing quote
     * beyond len */
    assert_int_equal(job_n(doc, 12, &job), UNI1_ERR_PROTOCOL);
}

static void test_job_invalid_utf8(void **state)
{
    (void)state;
    job_fails("{\"jobId\":\"job_x\",\"error\":\"bad \xFF byte\"}",
              "job response: invalid UTF-8 at offset 30");
    job_fails("{\"jobId\":\"job_x\",\"error\":\"\xC0\xAF\"}", "job response: invalid UTF-8");
    job_fails("{\"jobId\":\"job_x\",\"error\":\"\xED\xA0\x80\"}", "job response: invalid UTF-8");
    job_fails("{\"jobId\":\"job_x\",\"error\":\"cut \xE2\x82", "job response: invalid UTF-8");
    /* a UTF-8 byte order mark is fine */
    uni1_job job;
    assert_int_equal(job_s("\xEF\xBB\xBF{\"jobId\":\"job_bom\"}", &job), UNI1_OK);
    assert_string_equal(job.id, "job_bom");
    uni1_job_clear(&job);
}

static char *nest(size_t depth, const char *open, const char *inner, const char *close)
{
    size_t lo = strlen(open), li = strlen(inner), lc = strlen(close);
    char *s = malloc(depth * (lo + lc) + li + 1);
    assert_non_null(s);
    char *p = s;
    for (size_t i = 0; i < depth; i++, p += lo)
        memcpy(p, open, lo);
    memcpy(p, inner, li);
    p += li;
    for (size_t i = 0; i < depth; i++, p += lc)
        memcpy(p, close, lc);
    *p = '\0';
    return s;
}

static void test_job_deep_nesting(void **state)
{
    (void)state;
    uni1_job job;
    char *s = nest(100000, "[", "", "]");
    assert_int_equal(job_s(s, &job), UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(errbuf, "nested deeper than 1000"));
    free(s);
    s = nest(100000, "{\"a\":", "1", "}");
    assert_int_equal(job_s(s, &job), UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(errbuf, "nested deeper"));
    free(s);
    /* unclosed: no closing brackets at all */
    s = nest(100000, "[", "", "");
    assert_int_equal(job_s(s, &job), UNI1_ERR_PROTOCOL);
    free(s);
    /* brackets inside strings do not count */
    char *inner = nest(5000, "[", "", "");
    size_t n = strlen(inner) + 64;
    char *json = malloc(n);
    snprintf(json, n, "{\"jobId\":\"job_d\",\"note\":\"%s\"}", inner);
    assert_int_equal(job_s(json, &job), UNI1_OK);
    uni1_job_clear(&job);
    free(json);
    free(inner);
}

static void test_job_nesting_at_the_limit(void **state)
{
    (void)state;
    /* root object (1) + "x" arrays: 1000 levels in all parse, 1001 do not */
    uni1_job job;
    char *arr = nest(999, "[", "", "]");
    size_t n = strlen(arr) + 64;
    char *json = malloc(n);
    snprintf(json, n, "{\"jobId\":\"job_d\",\"x\":%s}", arr);
    assert_int_equal(job_s(json, &job), UNI1_OK);
    assert_non_null(strstr(job.raw_json, arr)); /* kept whole */
    uni1_job_clear(&job);
    free(arr);
    free(json);
    arr = nest(1000, "[", "", "]");
    n = strlen(arr) + 64;
    json = malloc(n);
    snprintf(json, n, "{\"jobId\":\"job_d\",\"x\":%s}", arr);
    assert_int_equal(job_s(json, &job), UNI1_ERR_PROTOCOL);
    free(arr);
    free(json);
}

static void test_job_huge_strings(void **state)
{
    (void)state;
    size_t big = 8 * 1024 * 1024;
    char *json = malloc(big + 128);
    int k = snprintf(json, 128, "{\"jobId\":\"job_big\",\"error\":\"");
    memset(json + k, 'e', big);
    strcpy(json + k + big, "\",\"status\":\"failure\"}");
    uni1_job job;
    assert_int_equal(job_s(json, &job), UNI1_OK);
    assert_int_equal(strlen(job.error), big);
    assert_int_equal(job.state, UNI1_JOB_FAILURE);
    assert_true(job.raw_len > big);
    uni1_job_clear(&job);
    /* a huge id is refused, not truncated */
    k = snprintf(json, 128, "{\"jobId\":\"");
    memset(json + k, 'j', big);
    strcpy(json + k + big, "\"}");
    job_fails(json, "job.jobId: not a valid id");
    free(json);
}

static void test_job_trailing_content_is_refused(void **state)
{
    (void)state;
    /* whitespace after the value is fine; anything else means a damaged or
     * concatenated answer */
    uni1_job job;
    assert_int_equal(job_s("{\"jobId\":\"job_t\"}\n", &job), UNI1_OK);
    uni1_job_clear(&job);
    job_fails("{\"jobId\":\"job_t\"} trailing",
              "job response: unexpected data after the JSON value");
}

static void test_job_duplicate_keys_first_wins(void **state)
{
    (void)state;
    uni1_job job;
    assert_int_equal(job_s("{\"jobId\":\"job_1\",\"jobId\":\"job_2\"}", &job), UNI1_OK);
    assert_string_equal(job.id, "job_1");
    uni1_job_clear(&job);
}

/* --- generate answer ----------------------------------------------------- */

static void test_submit(void **state)
{
    (void)state;
    uni1_job job;
    double cost = 0;
    assert_int_equal(submit_s("{\"job\":{\"jobId\":\"job_new\",\"jobType\":\"custom\",\"status\":"
                              "\"queued\",\"progress\":0,\"metadata\":{\"input\":{\"prompt\":"
                              "\"cat\"}}},\"creativeUnitsCost\":12.5,\"creativeUnitsDiscount\":0}",
                              &job, &cost),
                     UNI1_OK);
    assert_string_equal(job.id, "job_new");
    assert_int_equal(job.state, UNI1_JOB_QUEUED);
    assert_true(cost == 12.5);
    assert_null(strstr(job.raw_json, "creativeUnitsCost"));
    uni1_job_clear(&job);

    assert_int_equal(submit_s("{\"job\":{\"id\":\"job_v\",\"status\":\"pending\"}}", &job, &cost),
                     UNI1_OK);
    assert_string_equal(job.id, "job_v");
    assert_true(cost == -1);
    uni1_job_clear(&job);
}

static void test_submit_cost_variants(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        double want;
    } cases[] = {{"7", 7},       {"\"7.5\"", 7.5}, {"\"abc\"", -1}, {"-3", -1},
                 {"null", -1},   {"[1]", -1},      {"1e999", -1},   {"0", 0},
                 {"\" 7\"", -1}, {"\"7x\"", -1},   {"\"1e2\"", 100}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[160];
        uni1_job job;
        double cost = 123;
        snprintf(json, sizeof json, "{\"job\":{\"jobId\":\"job_c\"},\"creativeUnitsCost\":%s}",
                 cases[i].v);
        assert_int_equal(submit_s(json, &job, &cost), UNI1_OK);
        if (cost != cases[i].want)
            fail_msg("cost %s: got %g want %g", cases[i].v, cost, cases[i].want);
        uni1_job_clear(&job);
    }
    uni1_job job;
    assert_int_equal(
        submit_s("{\"job\":{\"jobId\":\"job_c\"},\"creativeUnitsCost\":3}", &job, NULL), UNI1_OK);
    uni1_job_clear(&job);
}

static void test_submit_failures(void **state)
{
    (void)state;
    uni1_job job;
    double cost = 5;
    assert_int_equal(submit_s("{\"creativeUnitsCost\":12}", &job, &cost), UNI1_ERR_PROTOCOL);
    assert_true(cost == -1);
    assert_string_equal(errbuf, "job: no jobId or id");
    cost = 5;
    assert_int_equal(
        submit_s("{\"job\":{\"jobId\":\"bad id\"},\"creativeUnitsCost\":12}", &job, &cost),
        UNI1_ERR_PROTOCOL);
    assert_true(cost == -1);
    assert_int_equal(submit_s("", &job, &cost), UNI1_ERR_PROTOCOL);
    assert_int_equal(submit_s("[]", &job, &cost), UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(errbuf, "generate response"));
}

/* --- job listings -------------------------------------------------------- */

static void test_list_with_token(void **state)
{
    (void)state;
    uni1_job_list l;
    assert_int_equal(list_s("{\"jobs\":[{\"jobId\":\"job_1\",\"status\":\"success\"},"
                            "{\"id\":\"job_2\",\"status\":\"succeeded\"},"
                            "{\"jobId\":\"job_3\",\"status\":\"failed\",\"metadata\":{\"error\":"
                            "\"x\"}}],\"nextPaginationToken\":\"eyJwayI6IjEyMyJ9\"}",
                            &l),
                     UNI1_OK);
    assert_int_equal(l.n_jobs, 3);
    assert_string_equal(l.jobs[0].id, "job_1");
    assert_string_equal(l.jobs[1].id, "job_2");
    assert_int_equal(l.jobs[1].state, UNI1_JOB_SUCCESS);
    assert_int_equal(l.jobs[2].state, UNI1_JOB_FAILURE);
    assert_string_equal(l.jobs[2].error, "x");
    assert_string_equal(l.next_token, "eyJwayI6IjEyMyJ9");
    assert_non_null(l.jobs[2].raw_json);
    uni1_job_list_clear(&l);
}

static void test_list_last_page_variants(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "{\"jobs\":[{\"jobId\":\"job_1\"}]}",
        "{\"jobs\":[{\"jobId\":\"job_1\"}],\"nextPaginationToken\":null}",
        "{\"jobs\":[{\"jobId\":\"job_1\"}],\"nextPaginationToken\":\"\"}",
    };
    for (size_t i = 0; i < 3; i++) {
        uni1_job_list l;
        assert_int_equal(list_s(docs[i], &l), UNI1_OK);
        assert_int_equal(l.n_jobs, 1);
        assert_null(l.next_token);
        uni1_job_list_clear(&l);
    }
}

static void test_list_empty(void **state)
{
    (void)state;
    uni1_job_list l;
    assert_int_equal(list_s("{\"jobs\":[]}", &l), UNI1_OK);
    assert_int_equal(l.n_jobs, 0);
    assert_null(l.jobs);
    assert_null(l.next_token);
    uni1_job_list_clear(&l);
    /* null is not an empty page: reconciliation would re-send on it */
    assert_int_equal(list_s("{\"jobs\":null,\"nextPaginationToken\":\"t\"}", &l),
                     UNI1_ERR_PROTOCOL);
    assert_int_equal(l.n_jobs, 0);
    assert_null(l.next_token);
}

static void test_trailing_data_rejected(void **state)
{
    (void)state;
    uni1_job_list l;
    char err[256];
    static const char *const bad[] = {
        "{\"jobs\":[]} x",
        "{\"jobs\":[]}{\"jobs\":[]}",
        "{\"jobs\":[]}]",
        "{\"jobs\":[]}\n1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(uni1_parse_job_list(bad[i], strlen(bad[i]), &l, err, sizeof err),
                         UNI1_ERR_PROTOCOL);
        assert_non_null(strstr(err, "after the JSON value"));
    }
    /* whitespace after the value is fine */
    static const char ok[] = "{\"jobs\":[]}\r\n \t";
    assert_int_equal(uni1_parse_job_list(ok, sizeof ok - 1, &l, err, sizeof err), UNI1_OK);
    uni1_job_list_clear(&l);
}

static void test_list_errors(void **state)
{
    (void)state;
    static const struct {
        const char *doc, *prefix;
    } cases[] = {
        {"{}", "job list: no \"jobs\" member"},
        {"{\"reason\":\"nope\"}", "job list: no \"jobs\" member"},
        {"{\"jobs\":{}}", "jobs: expected an array, got an object"},
        {"{\"jobs\":\"job_1\"}", "jobs: expected an array, got a string"},
        {"[]", "job list: expected a JSON object, got an array"},
        {"{\"jobs\":[{\"jobId\":\"job_1\"},7]}", "jobs[1]: expected an object, got a number"},
        {"{\"jobs\":[{\"jobId\":\"job_1\"},{\"jobId\":\"job_2\",\"progress\":\"x\"}]}",
         "jobs[1].progress: expected a number"},
        {"{\"jobs\":[{\"status\":\"queued\"}]}", "jobs[0]: no jobId or id"},
        {"{\"jobs\":[],\"nextPaginationToken\":5}",
         "nextPaginationToken: expected a string, got a number"},
        {"{\"jobs\":[],\"nextPaginationToken\":{}}", "nextPaginationToken: expected a string"},
        {"{\"jobs\":[],\"nextPaginationToken\":\"a b\"}", "nextPaginationToken: not printable"},
        {"{\"jobs\":[],\"nextPaginationToken\":\"a\\nb\"}", "nextPaginationToken: not printable"},
        {"{\"jobs\":[],\"nextPaginationToken\":\"caf\xC3\xA9\"}",
         "nextPaginationToken: not printable"},
        {"{\"jobs\":[],\"nextPaginationToken\":\"ab\\u0000cd\"}",
         "nextPaginationToken: not printable"},
        {"{\"jobs\":[{\"jobId\":\"job_1\"}", "job list: not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uni1_job_list l;
        memset(&l, 0x33, sizeof l);
        if (list_s(cases[i].doc, &l) != UNI1_ERR_PROTOCOL)
            fail_msg("%s: parsed", cases[i].doc);
        if (strncmp(errbuf, cases[i].prefix, strlen(cases[i].prefix)) != 0)
            fail_msg("%s: error \"%s\", want \"%s\"", cases[i].doc, errbuf, cases[i].prefix);
    }
}

static void test_list_many_jobs(void **state)
{
    (void)state;
    size_t n = 500, cap = n * 64 + 64, o = 0;
    char *doc = malloc(cap);
    o += (size_t)snprintf(doc + o, cap - o, "{\"jobs\":[");
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(doc + o, cap - o, "%s{\"jobId\":\"job_%zu\",\"progress\":0.%zu}",
                              i ? "," : "", i, i % 10);
    snprintf(doc + o, cap - o, "],\"nextPaginationToken\":\"next\"}");
    uni1_job_list l;
    assert_int_equal(list_s(doc, &l), UNI1_OK);
    assert_int_equal(l.n_jobs, n);
    assert_string_equal(l.jobs[499].id, "job_499");
    assert_true(l.jobs[13].progress == 0.3);
    uni1_job_list_clear(&l);
    free(doc);
}

static void test_list_token_length(void **state)
{
    (void)state;
    size_t tl = 16384;
    char *doc = malloc(tl + 64);
    int k = snprintf(doc, 64, "{\"jobs\":[],\"nextPaginationToken\":\"");
    memset(doc + k, 'T', tl);
    strcpy(doc + k + tl, "\"}");
    uni1_job_list l;
    assert_int_equal(list_s(doc, &l), UNI1_OK);
    assert_int_equal(strlen(l.next_token), tl);
    uni1_job_list_clear(&l);
    memset(doc + k, 'T', tl + 1);
    strcpy(doc + k + tl + 1, "\"}");
    doc = realloc(doc, tl + 64);
    assert_int_equal(list_s(doc, &l), UNI1_ERR_PROTOCOL);
    free(doc);
}

/* --- assets -------------------------------------------------------------- */

static const char full_asset[] =
    "{\"asset\":{\"id\":\"asset_Zx9\",\"url\":\"https://cdn.cloud.scenario.com/assets/asset_Zx9"
    "?Policy=eyJTdGF0ZW1lbnQiOlt7fV19&Signature=abc~def_ghi-&Key-Pair-Id=K2JCJMDEHXQW5F\","
    "\"mimeType\":\"image/png\",\"kind\":\"image\",\"status\":\"success\","
    "\"metadata\":{\"type\":\"inference-txt2img\",\"name\":\"fox\",\"width\":1000,"
    "\"height\":600,\"size\":999},\"properties\":{\"size\":123456,\"width\":1536,"
    "\"height\":1024},\"createdAt\":\"2025-06-01T10:01:30.456Z\",\"tags\":[\"x\"]}}";

static void test_asset_full(void **state)
{
    (void)state;
    uni1_asset a;
    assert_int_equal(asset_s(full_asset, &a), UNI1_OK);
    assert_string_equal(a.id, "asset_Zx9");
    assert_non_null(a.url);
    assert_int_equal(strncmp(a.url, "https://cdn.cloud.scenario.com/assets/asset_Zx9?Policy=", 55),
                     0);
    assert_non_null(strstr(a.url, "&Key-Pair-Id=K2JCJMDEHXQW5F"));
    assert_string_equal(a.mime_type, "image/png");
    assert_string_equal(a.status, "success");
    /* properties win over metadata */
    assert_int_equal(a.width, 1536);
    assert_int_equal(a.height, 1024);
    assert_int_equal(a.size, 123456);
    assert_non_null(strstr(a.raw_json, "\"tags\":[\"x\"]"));
    assert_int_equal(a.raw_len, strlen(a.raw_json));
    assert_int_equal(strncmp(a.raw_json, "{\"id\":\"asset_Zx9\"", 17), 0);
    uni1_asset_clear(&a);
}

static void test_asset_pending_without_url(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "{\"asset\":{\"id\":\"asset_p\",\"status\":\"pending\"}}",
        "{\"asset\":{\"id\":\"asset_p\",\"status\":\"pending\",\"url\":null}}",
        "{\"asset\":{\"id\":\"asset_p\",\"status\":\"pending\",\"url\":\"\"}}",
    };
    for (size_t i = 0; i < 3; i++) {
        uni1_asset a;
        assert_int_equal(asset_s(docs[i], &a), UNI1_OK);
        assert_null(a.url);
        assert_string_equal(a.status, "pending");
        assert_int_equal(a.size, -1);
        assert_int_equal(a.width, 0);
        assert_string_equal(a.mime_type, "");
        uni1_asset_clear(&a);
    }
}

static void test_asset_bare_and_metadata_sizes(void **state)
{
    (void)state;
    uni1_asset a;
    assert_int_equal(asset_s("{\"id\":\"asset_b\",\"url\":\"http://127.0.0.1:8080/cdn/b.png\","
                             "\"metadata\":{\"width\":640,\"height\":\"480\",\"size\":\"2048\"}}",
                             &a),
                     UNI1_OK);
    assert_string_equal(a.id, "asset_b");
    assert_string_equal(a.url, "http://127.0.0.1:8080/cdn/b.png");
    assert_int_equal(a.width, 640);
    assert_int_equal(a.height, 480);
    assert_int_equal(a.size, 2048);
    assert_string_equal(a.status, "");
    uni1_asset_clear(&a);
    /* nonsense sizes are ignored, not errors */
    assert_int_equal(asset_s("{\"id\":\"asset_b\",\"properties\":{\"width\":-5,\"height\":1e12,"
                             "\"size\":\"big\"},\"metadata\":{\"width\":1e999}}",
                             &a),
                     UNI1_OK);
    assert_int_equal(a.width, 0);
    assert_int_equal(a.height, 0);
    assert_int_equal(a.size, -1);
    uni1_asset_clear(&a);
    assert_int_equal(asset_s("{\"assetId\":\"asset_alt\",\"mimeType\":\"image/"
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
                             &a),
                     UNI1_OK);
    assert_string_equal(a.id, "asset_alt");
    assert_string_equal(a.mime_type, ""); /* too long to be a MIME type */
    uni1_asset_clear(&a);
}

static void test_asset_url_rules(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        int ok;
    } cases[] = {
        {"https://cdn.cloud.scenario.com/x.png?Signature=a", 1},
        {"HTTPS://cdn.cloud.scenario.com/x.png", 1},
        {"http://127.0.0.1:9/x", 1},
        {"https:\\/\\/cdn.example\\/x", 1}, /* escaped slashes are still slashes */
        {"file:///etc/passwd", 0},
        {"ftp://cdn.example/x", 0},
        {"gopher://x", 0},
        {"//cdn.example/x", 0},
        {"cdn.example/x", 0},
        {"https://cdn.example/a b", 0},
        {"https://cdn.example/a\\nb", 0},
        {"https://cdn.example/\\u0000x", 0},
        {"https://cdn.example/caf\xC3\xA9", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[256];
        uni1_asset a;
        snprintf(json, sizeof json, "{\"asset\":{\"id\":\"asset_u\",\"url\":\"%s\"}}",
                 cases[i].url);
        uni1_status st = asset_s(json, &a);
        if (cases[i].ok) {
            assert_int_equal(st, UNI1_OK);
            assert_non_null(a.url);
        } else {
            if (st != UNI1_ERR_PROTOCOL)
                fail_msg("url %s accepted", cases[i].url);
            assert_int_equal(strncmp(errbuf, "asset.url:", 10), 0);
        }
        uni1_asset_clear(&a);
    }
}

static void test_asset_errors(void **state)
{
    (void)state;
    static const struct {
        const char *doc, *prefix;
    } cases[] = {
        {"{\"asset\":{\"url\":\"https://x/y\"}}", "asset: no id"},
        {"{\"asset\":{\"id\":7}}", "asset.id: expected a string, got a number"},
        {"{\"asset\":{\"id\":\"asset_a/../b\"}}", "asset.id: not a valid id"},
        {"{\"asset\":{\"id\":\"asset_a\",\"url\":5}}", "asset.url: expected a string"},
        {"{\"asset\":{\"id\":\"asset_a\",\"status\":{}}}", "asset.status: expected a string"},
        {"{\"asset\":[]}", "asset: expected an object, got an array"},
        {"{\"asset\":null}", "asset: expected an object, got null"},
        {"\"asset_a\"", "asset response: expected a JSON object"},
        {"{\"asset\":{\"id\":\"asset_a\"", "asset response: not valid JSON"},
        {"", "asset response: empty body"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uni1_asset a;
        memset(&a, 0x44, sizeof a);
        assert_int_equal(asset_s(cases[i].doc, &a), UNI1_ERR_PROTOCOL);
        if (strncmp(errbuf, cases[i].prefix, strlen(cases[i].prefix)) != 0)
            fail_msg("%s: error \"%s\", want \"%s\"", cases[i].doc, errbuf, cases[i].prefix);
    }
}

static void test_asset_status_values(void **state)
{
    (void)state;
    static const char *const v[] = {"pending", "success", "error", "quarantined-for-review"};
    static const char *const want[] = {"pending", "success", "error", "quarantined-for"};
    for (size_t i = 0; i < 4; i++) {
        char json[128];
        uni1_asset a;
        snprintf(json, sizeof json, "{\"asset\":{\"id\":\"asset_s\",\"status\":\"%s\"}}", v[i]);
        assert_int_equal(asset_s(json, &a), UNI1_OK);
        assert_string_equal(a.status, want[i]);
        uni1_asset_clear(&a);
    }
}

/* --- dry-run quotes ------------------------------------------------------ */

static void test_estimate(void **state)
{
    (void)state;
    double cost = 0;
    assert_int_equal(estimate_s("{\"creativeUnitsCost\":14,\"creativeUnitsDiscount\":2,"
                                "\"costDetails\":{\"base\":10,\"references\":4}}",
                                &cost),
                     UNI1_OK);
    assert_true(cost == 14);
    assert_int_equal(estimate_s("{\"creativeUnitsCost\":\"3.25\"}", &cost), UNI1_OK);
    assert_true(cost == 3.25);
    assert_int_equal(estimate_s("{\"creativeUnitsCost\":0}", &cost), UNI1_OK);
    assert_true(cost == 0);
}

static void test_estimate_errors(void **state)
{
    (void)state;
    static const struct {
        const char *doc, *prefix;
    } cases[] = {
        {"{}", "estimate: no creativeUnitsCost"},
        {"{\"creativeUnitsCost\":null}", "estimate: no creativeUnitsCost"},
        {"{\"creativeUnitsCost\":\"lots\"}", "estimate.creativeUnitsCost: expected a finite"},
        {"{\"creativeUnitsCost\":true}", "estimate.creativeUnitsCost: expected a finite"},
        {"{\"creativeUnitsCost\":1e999}", "estimate.creativeUnitsCost: expected a finite"},
        {"{\"creativeUnitsCost\":-1}", "estimate.creativeUnitsCost: negative"},
        {"[14]", "estimate: expected a JSON object, got an array"},
        {"14", "estimate: expected a JSON object, got a number"},
        {"{\"creativeUnitsCost\":1", "estimate: not valid JSON"},
        {"", "estimate: empty body"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double cost = 77;
        assert_int_equal(estimate_s(cases[i].doc, &cost), UNI1_ERR_PROTOCOL);
        assert_true(cost == -1);
        if (strncmp(errbuf, cases[i].prefix, strlen(cases[i].prefix)) != 0)
            fail_msg("%s: error \"%s\", want \"%s\"", cases[i].doc, errbuf, cases[i].prefix);
    }
    char err[64];
    assert_int_equal(uni1_parse_estimate("{}", 2, NULL, err, sizeof err), UNI1_ERR_INVALID);
}

/* --- error bodies -------------------------------------------------------- */

static void test_error_body_each_shape(void **state)
{
    (void)state;
    static const struct {
        const char *body, *msg;
    } cases[] = {
        {"{\"reason\":\"Cannot cancel this type of job. Action not permitted.\"}",
         "Cannot cancel this type of job. Action not permitted."},
        {"{\"message\":\"Unauthorized\"}", "Unauthorized"},
        {"{\"error\":\"Not Found\"}", "Not Found"},
        {"{\"detail\":\"prompt too long\"}", "prompt too long"},
        {"{\"detail\":{\"field\":\"prompt\",\"max\":6000}}", "{\"field\":\"prompt\",\"max\":6000}"},
        {"{\"detail\":[{\"loc\":[\"body\",\"prompt\"],\"msg\":\"too long\"}]}",
         "[{\"loc\":[\"body\",\"prompt\"],\"msg\":\"too long\"}]"},
        {"{\"error\":{\"code\":403,\"text\":\"plan\"}}", "{\"code\":403,\"text\":\"plan\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uni1_error e;
        error_s(cases[i].body, &e);
        assert_string_equal(e.message, cases[i].msg);
        assert_string_equal(e.trace_id, "");
        assert_true(e.retry_after == -1);
    }
}

static void test_error_body_order(void **state)
{
    (void)state;
    uni1_error e;
    error_s("{\"detail\":\"d\",\"error\":\"e\",\"message\":\"m\",\"reason\":\"r\"}", &e);
    assert_string_equal(e.message, "r");
    error_s("{\"detail\":\"d\",\"error\":\"e\",\"message\":\"m\",\"reason\":null}", &e);
    assert_string_equal(e.message, "m");
    error_s("{\"detail\":\"d\",\"error\":\"e\",\"message\":\"\"}", &e);
    assert_string_equal(e.message, "e");
    error_s("{\"detail\":\"d\",\"error\":false}", &e);
    assert_string_equal(e.message, "d");
}

static void test_error_body_trace_id(void **state)
{
    (void)state;
    uni1_error e;
    error_s("{\"message\":\"x\",\"traceId\":\"1-67a2b3c4-abcdef0123456789\"}", &e);
    assert_string_equal(e.trace_id, "1-67a2b3c4-abcdef0123456789");
    error_s("{\"message\":\"x\",\"trace_id\":\"t_2\"}", &e);
    assert_string_equal(e.trace_id, "t_2");
    error_s("{\"message\":\"x\",\"traceId\":\"a\",\"trace_id\":\"b\"}", &e);
    assert_string_equal(e.trace_id, "a");
    /* unusable trace ids are dropped: wrong type, spaces, too long */
    error_s("{\"message\":\"x\",\"traceId\":42}", &e);
    assert_string_equal(e.trace_id, "");
    error_s("{\"message\":\"x\",\"traceId\":\"a b\",\"trace_id\":\"ok\"}", &e);
    assert_string_equal(e.trace_id, "ok");
    char body[400];
    char id[200];
    memset(id, 'q', 128);
    id[128] = '\0';
    snprintf(body, sizeof body, "{\"message\":\"x\",\"traceId\":\"%s\"}", id);
    error_s(body, &e);
    assert_string_equal(e.trace_id, "");
    id[127] = '\0';
    snprintf(body, sizeof body, "{\"message\":\"x\",\"traceId\":\"%s\"}", id);
    error_s(body, &e);
    assert_string_equal(e.trace_id, id);
}

static void test_error_body_remaining_seconds(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        double want;
    } cases[] = {
        {"{\"reason\":\"slow down\",\"remainingSeconds\":12}", 12},
        {"{\"reason\":\"slow down\",\"remainingSeconds\":1.5}", 1.5},
        {"{\"reason\":\"slow down\",\"remainingSeconds\":\"30\"}", 30},
        {"{\"reason\":\"slow down\",\"details\":{\"remainingSeconds\":7}}", 7},
        {"{\"reason\":\"x\",\"remainingSeconds\":-4}", -1},
        {"{\"reason\":\"x\",\"remainingSeconds\":\"soon\"}", -1},
        {"{\"reason\":\"x\",\"remainingSeconds\":null}", -1},
        {"{\"reason\":\"x\",\"remainingSeconds\":1e999}", -1},
        {"{\"reason\":\"x\"}", -1},
        {"{\"reason\":\"x\",\"remainingSeconds\":0}", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uni1_error e;
        error_s(cases[i].body, &e);
        if (e.retry_after != cases[i].want)
            fail_msg("%s: retry_after %g want %g", cases[i].body, e.retry_after, cases[i].want);
    }
}

static void test_error_body_rate_limit_details(void **state)
{
    (void)state;
    uni1_error e;
    /* no message member: the JSON itself is the message */
    error_s("{\"details\":{\"actionName\":\"generate\",\"actionLimit\":5}}", &e);
    assert_string_equal(e.message, "{\"details\":{\"actionName\":\"generate\",\"actionLimit\":5}}");
    assert_true(e.retry_after == -1);
    error_s("{\"message\":\"Too many jobs in flight\",\"details\":{\"actionName\":\"generate\","
            "\"actionLimit\":5},\"remainingSeconds\":20}",
            &e);
    assert_string_equal(e.message, "Too many jobs in flight");
    assert_true(e.retry_after == 20);
}

static void test_error_body_not_json(void **state)
{
    (void)state;
    uni1_error e;
    error_s("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\tnginx</body>\n"
            "</html>\n",
            &e);
    assert_string_equal(e.message,
                        "<html> <head><title>502 Bad Gateway</title></head> <body> nginx</body> "
                        "</html>");
    assert_true(e.retry_after == -1);
    error_s("upstream connect error or disconnect/reset before headers", &e);
    assert_string_equal(e.message, "upstream connect error or disconnect/reset before headers");
    static const char junk[] = "\x00\x01\xFF\xFE Service \xC3\xA9 Unavailable \x7F\x00";
    error_n(junk, sizeof junk - 1, &e);
    assert_string_equal(e.message, "Service Unavailable");
    error_s("{\"reason\": \"cut off", &e);
    assert_string_equal(e.message, "{\"reason\": \"cut off");
}

static void test_error_body_empty_and_json_scalars(void **state)
{
    (void)state;
    uni1_error e;
    error_n("", 0, &e);
    assert_string_equal(e.message, "");
    assert_string_equal(e.trace_id, "");
    assert_true(e.retry_after == -1);
    error_s("   \r\n  ", &e);
    assert_string_equal(e.message, "");
    error_s("\"Forbidden\"", &e);
    assert_string_equal(e.message, "Forbidden");
    error_s("404", &e);
    assert_string_equal(e.message, "404");
    error_s("[\"a\",1]", &e);
    assert_string_equal(e.message, "[\"a\",1]");
    error_s("{}", &e);
    assert_string_equal(e.message, "{}");
    uni1_parse_error_body("x", 1, NULL); /* no crash */
    memset(&e, 0, sizeof e);
    uni1_parse_error_body(NULL, 5, &e);
    assert_string_equal(e.message, "");
    assert_true(e.retry_after == -1);
}

static void test_error_body_message_sanitised(void **state)
{
    (void)state;
    uni1_error e;
    error_s("{\"message\":\"line one\\nline two\\t\\u0001 caf\\u00e9 \xF0\x9F\x98\x80\"}", &e);
    assert_string_equal(e.message, "line one line two caf\xC3\xA9 \xF0\x9F\x98\x80");
    error_s("{\"message\":\"nul\\u0000inside\"}", &e);
    assert_string_equal(e.message, "nul\xEF\xBF\xBDinside");
    /* invalid UTF-8 in JSON: treated as not JSON, printable ASCII only */
    error_s("{\"message\":\"bad \xFF byte\"}", &e);
    assert_string_equal(e.message, "{\"message\":\"bad byte\"}");
}

static void test_error_body_long_messages_truncated(void **state)
{
    (void)state;
    uni1_error e;
    size_t n = 100000;
    char *body = malloc(n + 64);
    int k = snprintf(body, 64, "{\"message\":\"");
    for (size_t i = 0; i < n; i += 2)
        memcpy(body + k + i, "\xC3\xA9", 2); /* é: cuts must not split it */
    strcpy(body + k + n, "\"}");
    error_s(body, &e);
    assert_int_equal(strlen(e.message), 510); /* 255 whole characters */
    memset(body, 'x', n);
    error_n(body, n, &e);
    assert_int_equal(strlen(e.message), sizeof e.message - 1);
    free(body);
    char *deep = nest(100000, "[", "", "]");
    error_s(deep, &e);
    assert_int_equal(strlen(e.message), sizeof e.message - 1);
    assert_int_equal(e.message[0], '[');
    free(deep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_full),
        cmocka_unit_test(test_job_id_variants),
        cmocka_unit_test(test_job_bare_object),
        cmocka_unit_test(test_job_all_statuses),
        cmocka_unit_test(test_job_status_missing_or_long),
        cmocka_unit_test(test_job_status_history_kept),
        cmocka_unit_test(test_job_failure_metadata_error_and_hint),
        cmocka_unit_test(test_job_failure_legacy_fields),
        cmocka_unit_test(test_job_failure_reason_priority),
        cmocka_unit_test(test_job_error_of_other_types),
        cmocka_unit_test(test_job_unknown_fields_kept),
        cmocka_unit_test(test_job_raw_json_numbers),
        cmocka_unit_test(test_job_progress),
        cmocka_unit_test(test_job_asset_ids),
        cmocka_unit_test(test_job_id_rules),
        cmocka_unit_test(test_job_nul_escapes),
        cmocka_unit_test(test_job_created_at),
        cmocka_unit_test(test_job_wrapper_shapes),
        cmocka_unit_test(test_job_every_prefix_fails_cleanly),
        cmocka_unit_test(test_job_empty_and_null_buffers),
        cmocka_unit_test(test_job_not_json),
        cmocka_unit_test(test_job_only_len_bytes_are_read),
        cmocka_unit_test(test_job_invalid_utf8),
        cmocka_unit_test(test_job_deep_nesting),
        cmocka_unit_test(test_job_nesting_at_the_limit),
        cmocka_unit_test(test_job_huge_strings),
        cmocka_unit_test(test_job_trailing_content_is_refused),
        cmocka_unit_test(test_job_duplicate_keys_first_wins),
        cmocka_unit_test(test_submit),
        cmocka_unit_test(test_submit_cost_variants),
        cmocka_unit_test(test_submit_failures),
        cmocka_unit_test(test_list_with_token),
        cmocka_unit_test(test_list_last_page_variants),
        cmocka_unit_test(test_list_empty),
        cmocka_unit_test(test_trailing_data_rejected),
        cmocka_unit_test(test_list_errors),
        cmocka_unit_test(test_list_many_jobs),
        cmocka_unit_test(test_list_token_length),
        cmocka_unit_test(test_asset_full),
        cmocka_unit_test(test_asset_pending_without_url),
        cmocka_unit_test(test_asset_bare_and_metadata_sizes),
        cmocka_unit_test(test_asset_url_rules),
        cmocka_unit_test(test_asset_errors),
        cmocka_unit_test(test_asset_status_values),
        cmocka_unit_test(test_estimate),
        cmocka_unit_test(test_estimate_errors),
        cmocka_unit_test(test_error_body_each_shape),
        cmocka_unit_test(test_error_body_order),
        cmocka_unit_test(test_error_body_trace_id),
        cmocka_unit_test(test_error_body_remaining_seconds),
        cmocka_unit_test(test_error_body_rate_limit_details),
        cmocka_unit_test(test_error_body_not_json),
        cmocka_unit_test(test_error_body_empty_and_json_scalars),
        cmocka_unit_test(test_error_body_message_sanitised),
        cmocka_unit_test(test_error_body_long_messages_truncated),
    };
    return cmocka_run_group_tests_name("parse", tests, NULL, NULL);
}
