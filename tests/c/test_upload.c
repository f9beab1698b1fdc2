/* Tests of the multipart upload flow: uni1_parse_upload on every shape and
 * on malformed answers, the part plan, and uni1_upload_file end to end. The
 * API answers come from a scripted transport; the part PUTs go through
 * libcurl to a small HTTP server on 127.0.0.1 run by this file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uni1.h"
#include "engine_test.h"

/* ---- helpers -------------------------------------------------------------- */

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static uni1_status parse(const char *json, uni1_upload *u, char *err, size_t errlen)
{
    memset(u, 0xA5, sizeof *u); /* an output: old contents are never read */
    return uni1_parse_upload(json, strlen(json), u, err, errlen);
}

#define URL1 "https://cdn.example/uploads/upload_a/1?X-Amz-Signature=abc&X-Amz-Expires=99"
#define URL2 "https://cdn.example/uploads/upload_a/2?X-Amz-Signature=def&X-Amz-Expires=99"

/* ---- parser: good shapes ------------------------------------------------------ */

static void test_parse_create_answer(void **state)
{
    (void)state;
    uni1_upload u;
    char err[256] = "";
    const char *json =
        "{\"upload\":{\"id\":\"upload_abc\",\"status\":\"pending\",\"parts\":["
        "{\"number\":1,\"url\":\"" URL1 "\",\"expires\":\"2026-11-23T23:00:00.000Z\"},"
        "{\"number\":2,\"url\":\"" URL2 "\",\"expires\":\"2026-11-23T23:00:00.000Z\"}],"
        "\"fileName\":\"big.png\",\"fileSize\":12000000,\"kind\":\"image\"}}";
    assert_int_equal(parse(json, &u, err, sizeof err), UNI1_OK);
    assert_string_equal(u.id, "upload_abc");
    assert_int_equal(u.state, UNI1_UPLOAD_PENDING);
    assert_string_equal(u.status, "pending");
    assert_int_equal(u.n_parts, 2);
    assert_int_equal(u.parts[0].number, 1);
    assert_string_equal(u.parts[0].url, URL1);
    assert_string_equal(u.parts[0].expires, "2026-11-23T23:00:00.000Z");
    assert_int_equal(u.parts[1].number, 2);
    assert_string_equal(u.parts[1].url, URL2);
    assert_string_equal(u.entity_id, "");
    assert_null(u.error_message);
    /* unknown fields kept */
    assert_non_null(strstr(u.raw_json, "\"fileName\":\"big.png\""));
    assert_int_equal(strlen(u.raw_json), u.raw_len);
    uni1_upload_clear(&u);
    assert_true(all_zero(&u, sizeof u));
    uni1_upload_clear(&u); /* twice is fine */
}

static void test_parse_bare_object_and_alias(void **state)
{
    (void)state;
    uni1_upload u;
    char err[256];
    /* whitespace around the document is fine */
    assert_int_equal(
        parse(" {\"uploadId\":\"upload_b\",\"status\":\"validating\"}\r\n\t ", &u, err, sizeof err),
        UNI1_OK);
    assert_string_equal(u.id, "upload_b");
    assert_int_equal(u.state, UNI1_UPLOAD_VALIDATING);
    assert_int_equal(u.n_parts, 0);
    assert_null(u.parts);
    uni1_upload_clear(&u);
    /* "id" wins over "uploadId"; null counts as absent */
    assert_int_equal(parse("{\"id\":null,\"uploadId\":\"upload_c\",\"parts\":null,"
                           "\"entityId\":null,\"status\":null}",
                           &u, err, sizeof err),
                     UNI1_OK);
    assert_string_equal(u.id, "upload_c");
    assert_int_equal(u.state, UNI1_UPLOAD_UNKNOWN);
    assert_string_equal(u.status, "");
    uni1_upload_clear(&u);
}

static void test_parse_parts_sorted(void **state)
{
    (void)state;
    uni1_upload u;
    char err[256];
    const char *json = "{\"id\":\"upload_a\",\"parts\":[{\"number\":3,\"url\":\"http://h/3\"},"
                       "{\"number\":1,\"url\":\"HTTP://h/1\",\"expires\":5},"
                       "{\"number\":2.0,\"url\":\"https://h/2\",\"expires\":\"bad value\"}]}";
    assert_int_equal(parse(json, &u, err, sizeof err), UNI1_OK);
    assert_int_equal(u.n_parts, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(u.parts[i].number, i + 1);
    assert_string_equal(u.parts[0].url, "HTTP://h/1");
    assert_string_equal(u.parts[0].expires, ""); /* informational: ignored */
    assert_string_equal(u.parts[1].expires, "");
    uni1_upload_clear(&u);
}

static void test_parse_imported_and_failed(void **state)
{
    (void)state;
    uni1_upload u;
    char err[256];
    assert_int_equal(parse("{\"upload\":{\"id\":\"upload_a\",\"status\":\"imported\",\"parts\":[],"
                           "\"entityId\":\"asset_xyz\"}}",
                           &u, err, sizeof err),
                     UNI1_OK);
    assert_int_equal(u.state, UNI1_UPLOAD_IMPORTED);
    assert_string_equal(u.entity_id, "asset_xyz");
    uni1_upload_clear(&u);

    assert_int_equal(parse("{\"upload\":{\"id\":\"upload_a\",\"status\":\"failed\","
                           "\"errorMessage\":\"Unsupported or corrupt image\",\"entityId\":\"\"}}",
                           &u, err, sizeof err),
                     UNI1_OK);
    assert_int_equal(u.state, UNI1_UPLOAD_FAILED);
    assert_string_equal(u.status, "failed");
    assert_string_equal(u.error_message, "Unsupported or corrupt image");
    assert_string_equal(u.entity_id, "");
    uni1_upload_clear(&u);

    /* synonyms, and the reason from other keys, serialised when not text */
    assert_int_equal(parse("{\"id\":\"upload_a\",\"status\":\"failure\",\"errorMessage\":\"\","
                           "\"error\":{\"code\":7}}",
                           &u, err, sizeof err),
                     UNI1_OK);
    assert_int_equal(u.state, UNI1_UPLOAD_FAILED);
    assert_string_equal(u.status, "failed");
    assert_string_equal(u.error_message, "{\"code\":7}");
    uni1_upload_clear(&u);
    assert_int_equal(
        parse("{\"id\":\"upload_a\",\"status\":\"error\",\"reason\":\"r\"}", &u, err, sizeof err),
        UNI1_OK);
    assert_int_equal(u.state, UNI1_UPLOAD_FAILED);
    assert_string_equal(u.error_message, "r");
    uni1_upload_clear(&u);
}

static void test_parse_unknown_status_kept(void **state)
{
    (void)state;
    uni1_upload u;
    char err[256];
    assert_int_equal(parse("{\"id\":\"upload_a\",\"status\":\"scanning-for-viruses-and-more-text-"
                           "here\"}",
                           &u, err, sizeof err),
                     UNI1_OK);
    assert_int_equal(u.state, UNI1_UPLOAD_UNKNOWN);
    assert_int_equal(strlen(u.status), sizeof u.status - 1); /* truncated */
    assert_memory_equal(u.status, "scanning-for-viruses", 20);
    uni1_upload_clear(&u);
    /* case-sensitive, like the job states */
    assert_int_equal(parse("{\"id\":\"upload_a\",\"status\":\"Imported\"}", &u, err, sizeof err),
                     UNI1_OK);
    assert_int_equal(u.state, UNI1_UPLOAD_UNKNOWN);
    assert_string_equal(u.status, "Imported");
    uni1_upload_clear(&u);
}

static void test_state_names(void **state)
{
    (void)state;
    for (int st = UNI1_UPLOAD_PENDING; st <= UNI1_UPLOAD_FAILED; st++)
        assert_int_equal(uni1_upload_state_from_string(uni1_upload_state_name(st)), st);
    assert_string_equal(uni1_upload_state_name(UNI1_UPLOAD_UNKNOWN), "unknown");
    assert_string_equal(uni1_upload_state_name((uni1_upload_state)99), "unknown");
    assert_int_equal(uni1_upload_state_from_string(NULL), UNI1_UPLOAD_UNKNOWN);
    assert_int_equal(uni1_upload_state_from_string("unknown"), UNI1_UPLOAD_UNKNOWN);
}

/* ---- parser: malformed ------------------------------------------------------------- */

static const struct {
    const char *json;
    const char *msg; /* expected in err */
} malformed[] = {
    {"", "empty"},
    {"not json", "not valid JSON"},
    {"{\"id\":\"upload_a\"", "not valid JSON"},
    {"{\"id\":\"upload_a\"} x", "unexpected data after the JSON value at offset 18"},
    {"{\"id\":\"upload_a\"}{\"id\":\"upload_b\"}", "unexpected data after"},
    {"{\"id\":\"upload_a\"}\n,", "unexpected data after"},
    {"[]", "expected a JSON object"},
    {"\"upload_a\"", "expected a JSON object"},
    {"{\"upload\":5}", "upload: expected an object"},
    {"{\"upload\":null}", "upload: expected an object"},
    {"{\"upload\":{}}", "no id"},
    {"{}", "no id"},
    {"{\"id\":7}", "upload.id: expected a string"},
    {"{\"id\":\"\"}", "not a valid id"},
    {"{\"id\":\"upload/../x\"}", "not a valid id"},
    {"{\"id\":\"upload a\"}", "not a valid id"},
    {"{\"id\":\"upload_a\\u0000/../x\"}", "not a valid id"},
    {"{\"id\":\"upload_\\u00e9\"}", "not a valid id"},
    {"{\"uploadId\":[]}", "upload.uploadId: expected a string"},
    {"{\"id\":\"upload_a\",\"status\":1}", "upload.status: expected a string"},
    {"{\"id\":\"upload_a\",\"parts\":{}}", "upload.parts: expected an array"},
    {"{\"id\":\"upload_a\",\"parts\":\"x\"}", "upload.parts: expected an array"},
    {"{\"id\":\"upload_a\",\"parts\":[1]}", "upload.parts[0]: expected an object"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"url\":\"http://h/1\"}]}", "no number"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":0,\"url\":\"http://h/1\"}]}", "whole number"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":-1,\"url\":\"http://h/1\"}]}", "whole number"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":1.5,\"url\":\"http://h/1\"}]}", "whole number"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":10001,\"url\":\"http://h/1\"}]}", "whole number"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":1e999,\"url\":\"http://h/1\"}]}", "whole number"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":\"1\",\"url\":\"http://h/1\"}]}", "whole number"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":1}]}", "no url"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":1,\"url\":null}]}", "no url"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":1,\"url\":3}]}", "url: expected a string"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":1,\"url\":\"\"}]}", "not an http(s) URL"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":1,\"url\":\"file:///etc/passwd\"}]}",
     "not an http(s) URL"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":1,\"url\":\"ftp://h/1\"}]}",
     "not an http(s) URL"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":1,\"url\":\"http://h/a b\"}]}",
     "not printable ASCII"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":1,\"url\":\"http://h/\\r\\nX: y\"}]}",
     "not printable ASCII"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":1,\"url\":\"http://h/\\u00e9\"}]}",
     "not printable ASCII"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":1,\"url\":\"http://h/\\u0000x\"}]}",
     "not printable ASCII"},
    {"{\"id\":\"upload_a\",\"parts\":[{\"number\":2,\"url\":\"http://h/2\"},"
     "{\"number\":2,\"url\":\"http://h/2b\"}]}",
     "part number 2 given twice"},
    {"{\"id\":\"upload_a\",\"entityId\":5}", "upload.entityId: expected a string"},
    {"{\"id\":\"upload_a\",\"entityId\":\"asset_x/../y\"}", "upload.entityId: not a valid id"},
    {"{\"id\":\"upload_a\",\"entityId\":\"asset_x\\u0000y\"}", "upload.entityId: not a valid id"},
};

static void test_parse_malformed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++) {
        uni1_upload u;
        char err[256] = "";
        uni1_status st = parse(malformed[i].json, &u, err, sizeof err);
        if (st != UNI1_ERR_PROTOCOL || !strstr(err, malformed[i].msg))
            fail_msg("case %zu (%s): status %s, err \"%s\"", i, malformed[i].json,
                     uni1_status_name(st), err);
        assert_true(all_zero(&u, sizeof u));
    }
}

static void test_parse_bytes_level(void **state)
{
    (void)state;
    uni1_upload u;
    char err[256];
    /* a NUL byte inside, invalid UTF-8, a lone surrogate escape */
    static const char nul[] = "{\"id\":\"upload_a\",\"x\":\"a\0b\"}";
    memset(&u, 0xA5, sizeof u);
    assert_int_equal(uni1_parse_upload(nul, sizeof nul - 1, &u, err, sizeof err),
                     UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(err, "NUL byte"));
    assert_true(all_zero(&u, sizeof u));
    assert_int_equal(parse("{\"id\":\"upload_a\",\"x\":\"\xc3\x28\"}", &u, err, sizeof err),
                     UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(err, "invalid UTF-8"));
    assert_int_equal(parse("{\"id\":\"upload_a\",\"x\":\"\\ud800\"}", &u, err, sizeof err),
                     UNI1_ERR_PROTOCOL);
    /* a NUL byte after the document */
    static const char nul_after[] = "{\"id\":\"upload_a\"}\0";
    assert_int_equal(uni1_parse_upload(nul_after, sizeof nul_after - 1, &u, err, sizeof err),
                     UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(err, "NUL byte"));
    /* never reads past len: the closing brace is outside the window */
    const char *json = "{\"id\":\"upload_a\"}";
    memset(&u, 0xA5, sizeof u);
    assert_int_equal(uni1_parse_upload(json, strlen(json) - 1, &u, err, sizeof err),
                     UNI1_ERR_PROTOCOL);
    assert_int_equal(uni1_parse_upload(NULL, 0, &u, err, sizeof err), UNI1_ERR_PROTOCOL);
    /* nesting beyond cJSON's limit */
    size_t depth = 2000;
    char *deep = malloc(depth * 2 + 64);
    assert_non_null(deep);
    size_t o = (size_t)sprintf(deep, "{\"id\":\"upload_a\",\"x\":");
    for (size_t i = 0; i < depth; i++)
        deep[o++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[o++] = ']';
    deep[o++] = '}';
    deep[o] = 0;
    assert_int_equal(parse(deep, &u, err, sizeof err), UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(err, "nested"));
    free(deep);
    /* no output: INVALID; a NULL err buffer is fine */
    assert_int_equal(uni1_parse_upload("{}", 2, NULL, err, sizeof err), UNI1_ERR_INVALID);
    assert_int_equal(parse("[]", &u, NULL, 0), UNI1_ERR_PROTOCOL);
}

static void test_parse_many_parts(void **state)
{
    (void)state;
    /* 10000 parts are fine, 10001 are not */
    for (int n = 10000; n <= 10001; n++) {
        size_t cap = (size_t)n * 48 + 64;
        char *json = malloc(cap);
        assert_non_null(json);
        size_t o = (size_t)snprintf(json, cap, "{\"id\":\"upload_a\",\"parts\":[");
        for (int i = n; i >= 1; i--)
            o += (size_t)snprintf(json + o, cap - o, "{\"number\":%d,\"url\":\"http://h/%d\"}%s", i,
                                  i, i > 1 ? "," : "");
        snprintf(json + o, cap - o, "]}");
        uni1_upload u;
        char err[256];
        uni1_status st = parse(json, &u, err, sizeof err);
        if (n == 10000) {
            assert_int_equal(st, UNI1_OK);
            assert_int_equal(u.n_parts, 10000);
            assert_int_equal(u.parts[0].number, 1);
            assert_int_equal(u.parts[9999].number, 10000);
            uni1_upload_clear(&u);
        } else {
            assert_int_equal(st, UNI1_ERR_PROTOCOL);
            assert_non_null(strstr(err, "more than 10000"));
        }
        free(json);
    }
}

/* ---- the plan ---------------------------------------------------------------------- */

static void test_plan(void **state)
{
    (void)state;
    long long ps = 123;
    assert_int_equal(uni1_upload_plan(0, &ps), 0);
    assert_int_equal(ps, 0);
    assert_int_equal(uni1_upload_plan(-5, &ps), 0);
    assert_int_equal(uni1_upload_plan(1, &ps), 1);
    assert_int_equal(ps, UNI1_UPLOAD_PART_SIZE);
    assert_int_equal(uni1_upload_plan(UNI1_UPLOAD_PART_SIZE, &ps), 1);
    assert_int_equal(uni1_upload_plan(UNI1_UPLOAD_PART_SIZE + 1, &ps), 2);
    assert_int_equal(uni1_upload_plan(12000000, &ps), 2);
    assert_int_equal(uni1_upload_plan(3 * UNI1_UPLOAD_PART_SIZE, &ps), 3);
    assert_int_equal(uni1_upload_plan(12000000, NULL), 2);
    /* beyond 10000 parts of 8 MiB the parts grow, in whole MiB */
    long long big = UNI1_UPLOAD_PART_SIZE * UNI1_UPLOAD_MAX_PARTS + 1;
    int n = uni1_upload_plan(big, &ps);
    assert_true(n >= 1 && n <= UNI1_UPLOAD_MAX_PARTS);
    assert_true(ps > UNI1_UPLOAD_PART_SIZE && ps % (1 << 20) == 0);
    assert_true((long long)n * ps >= big && (long long)(n - 1) * ps < big);
    long long most = UNI1_UPLOAD_MAX_PART_SIZE * UNI1_UPLOAD_MAX_PARTS;
    assert_int_equal(uni1_upload_plan(most, &ps), UNI1_UPLOAD_MAX_PARTS);
    assert_int_equal(ps, UNI1_UPLOAD_MAX_PART_SIZE);
    assert_int_equal(uni1_upload_plan(most + 1, &ps), 0);
    assert_int_equal(uni1_upload_plan(INT64_MAX, &ps), 0);
    /* every part but the last meets the server's minimum */
    for (long long size = 1; size < 100LL << 20; size = size * 3 + 7) {
        n = uni1_upload_plan(size, &ps);
        assert_true(n >= 1);
        if (n > 1)
            assert_true(ps >= UNI1_UPLOAD_MIN_PART_SIZE);
        assert_true((long long)n * ps >= size && (long long)(n - 1) * ps < size);
    }
}

/* ---- a part server on 127.0.0.1 ----------------------------------------------------- */

#define MAX_CONN 32
#define MAX_PUTS 64

typedef struct part_server {
    int listen_fd, port;
    pthread_t acceptor;
    pthread_t conns[MAX_CONN];
    int n_conns;
    volatile int stop;
    pthread_mutex_t lock;
    /* behaviour */
    long statuses[MAX_PUTS]; /* answer for PUT i; 0 (or past the end): 200 */
    int stall;               /* read the request, never answer */
    /* observations */
    int puts;
    char paths[MAX_PUTS][128];
    long long sizes[MAX_PUTS];
    unsigned long long sums[MAX_PUTS]; /* byte sums of the bodies */
    int auth_seen, expect_seen, other_methods;
} part_server;

static part_server srv;

/* recv with a short poll so the thread notices srv.stop. */
static ssize_t recv_some(int fd, char *buf, size_t n)
{
    while (!srv.stop) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, 50);
        if (r < 0 && errno != EINTR)
            return -1;
        if (r > 0)
            return recv(fd, buf, n, 0);
    }
    return -1;
}

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    size_t have = 0;
    for (;;) {
        char *end;
        while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
            if (have == sizeof buf)
                goto out;
            ssize_t n = recv_some(fd, buf + have, sizeof buf - have);
            if (n <= 0)
                goto out;
            have += (size_t)n;
        }
        size_t head_len = (size_t)(end - buf) + 4;
        char head[8192];
        snprintf(head, sizeof head, "%.*s", (int)head_len, buf);
        long long cl = 0;
        int auth = 0, expect = 0;
        for (char *line = strstr(head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
            const char *h = line + 2;
            if (strncasecmp(h, "content-length:", 15) == 0)
                cl = atoll(h + 15);
            else if (strncasecmp(h, "authorization:", 14) == 0)
                auth = 1;
            else if (strncasecmp(h, "expect:", 7) == 0)
                expect = 1;
        }
        char method[16] = "", path[128] = "";
        sscanf(head, "%15s %127s", method, path);
        /* the body */
        unsigned long long sum = 0;
        long long got = 0;
        size_t rest = have - head_len;
        memmove(buf, buf + head_len, rest);
        have = rest;
        while (got < cl) {
            if (have == 0) {
                ssize_t n = recv_some(fd, buf, sizeof buf);
                if (n <= 0)
                    goto out;
                have = (size_t)n;
            }
            size_t take = (size_t)(cl - got) < have ? (size_t)(cl - got) : have;
            for (size_t i = 0; i < take; i++)
                sum += (unsigned char)buf[i];
            got += (long long)take;
            memmove(buf, buf + take, have - take);
            have -= take;
        }
        long status = 200;
        pthread_mutex_lock(&srv.lock);
        if (strcmp(method, "PUT") != 0) {
            srv.other_methods++;
        } else if (srv.puts < MAX_PUTS) {
            int i = srv.puts++;
            snprintf(srv.paths[i], sizeof srv.paths[i], "%s", path);
            srv.sizes[i] = got;
            srv.sums[i] = sum;
            if (srv.statuses[i])
                status = srv.statuses[i];
        }
        srv.auth_seen += auth;
        srv.expect_seen += expect;
        int stall = srv.stall;
        pthread_mutex_unlock(&srv.lock);
        if (stall) {
            char dummy[16];
            while (recv_some(fd, dummy, sizeof dummy) > 0)
                ;
            goto out;
        }
        char answer[512];
        const char *xml = status == 200 ? ""
                                        : "<Error><Code>SlowDown</Code><Message>Please reduce "
                                          "your request rate.</Message></Error>";
        int n = snprintf(answer, sizeof answer,
                         "HTTP/1.1 %ld X\r\nContent-Length: %zu\r\nETag: \"e\"\r\n\r\n%s", status,
                         strlen(xml), xml);
        if (send(fd, answer, (size_t)n, MSG_NOSIGNAL) != n)
            goto out;
    }
out:
    close(fd);
    return NULL;
}

static void *acceptor(void *arg)
{
    (void)arg;
    while (!srv.stop) {
        struct pollfd p = {srv.listen_fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(srv.listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&srv.lock);
        if (srv.n_conns < MAX_CONN &&
            pthread_create(&srv.conns[srv.n_conns], NULL, serve_conn, (void *)(intptr_t)fd) == 0)
            srv.n_conns++;
        else
            close(fd);
        pthread_mutex_unlock(&srv.lock);
    }
    return NULL;
}

static int server_start(void **state)
{
    (void)state;
    memset(&srv, 0, sizeof srv);
    pthread_mutex_init(&srv.lock, NULL);
    srv.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (srv.listen_fd < 0 || bind(srv.listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(srv.listen_fd, 16) != 0 ||
        getsockname(srv.listen_fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    srv.port = ntohs(a.sin_port);
    return pthread_create(&srv.acceptor, NULL, acceptor, NULL) == 0 ? 0 : -1;
}

static int server_stop(void **state)
{
    (void)state;
    srv.stop = 1;
    pthread_join(srv.acceptor, NULL);
    for (int i = 0; i < srv.n_conns; i++)
        pthread_join(srv.conns[i], NULL);
    close(srv.listen_fd);
    pthread_mutex_destroy(&srv.lock);
    return 0;
}

/* ---- a scripted API transport --------------------------------------------------------- */

#define MAX_STEPS 32

typedef struct api_step {
    const char *method;
    const char *path; /* expected path (after /v1), query ignored */
    uni1_status transport_status;
    long http;
    char body[2048];
} api_step;

typedef struct fake_api {
    api_step steps[MAX_STEPS];
    int n_steps, calls;
    char bodies[MAX_STEPS][1024];
    int auth_missing;
} fake_api;

static uni1_status fake_transport(void *ud, const uni1_http_request *req, uni1_http_response *resp)
{
    fake_api *f = ud;
    int i = f->calls++;
    if (i >= f->n_steps)
        fail_msg("unexpected request %s %s", req->method, req->url);
    const api_step *s = &f->steps[i];
    const char *path = strstr(req->url, "/v1");
    char got[256];
    snprintf(got, sizeof got, "%.*s", (int)strcspn(path + 3, "?"), path + 3);
    if (strcmp(req->method, s->method) != 0 || strcmp(got, s->path) != 0)
        fail_msg("request %d: %s %s, expected %s %s", i, req->method, got, s->method, s->path);
    snprintf(f->bodies[i], sizeof f->bodies[i], "%.*s", (int)req->body_len,
             req->body ? req->body : "");
    int auth = 0;
    for (size_t h = 0; h < req->n_headers; h++)
        auth |= strncmp(req->headers[h], "Authorization: ", 15) == 0;
    f->auth_missing += !auth;
    if (s->transport_status != UNI1_OK)
        return s->transport_status;
    resp->status = s->http;
    resp->retry_after = -1;
    resp->body_len = strlen(s->body);
    resp->body = malloc(resp->body_len + 1);
    memcpy(resp->body, s->body, resp->body_len + 1);
    return UNI1_OK;
}

static api_step *step(fake_api *f, const char *method, const char *path, long http, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));
static api_step *step(fake_api *f, const char *method, const char *path, long http, const char *fmt,
                      ...)
{
    assert_true(f->n_steps < MAX_STEPS);
    api_step *s = &f->steps[f->n_steps++];
    memset(s, 0, sizeof *s);
    s->method = method;
    s->path = path;
    s->http = http;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->body, sizeof s->body, fmt, ap);
    va_end(ap);
    return s;
}

static uni1_client *make_client(fake_api *f, int max_retries)
{
    uni1_options o;
    uni1_options_init(&o);
    o.api_key = "key-AAAA";
    o.api_secret = "secret-BBBB";
    o.base_url = "http://api.invalid";
    o.transport = fake_transport;
    o.transport_userdata = f;
    o.backoff_base = 0.001;
    o.backoff_max = 0.004;
    o.max_retries = max_retries;
    o.stall_timeout = 5;
    char err[256];
    uni1_client *c = uni1_client_new(&o, err, sizeof err);
    assert_non_null(c);
    return c;
}

#define UP "upload_t1"

static void add_create(fake_api *f, int parts)
{
    char list[1024] = "";
    for (int i = 1; i <= parts; i++) {
        char one[200];
        snprintf(one, sizeof one,
                 "%s{\"number\":%d,\"url\":\"http://127.0.0.1:%d/uploads/" UP
                 "/%d?X-Amz-Signature=s3cr3t\",\"expires\":\"2026-01-01T00:00:00.000Z\"}",
                 i > 1 ? "," : "", i, srv.port, i);
        strcat(list, one);
    }
    step(f, "POST", "/uploads", 200,
         "{\"upload\":{\"id\":\"" UP "\",\"status\":\"pending\","
         "\"parts\":[%s]}}",
         list);
}

static void add_tail(fake_api *f)
{
    step(f, "POST", "/uploads/" UP "/action", 200,
         "{\"upload\":{\"id\":\"" UP "\",\"status\":\"validating\",\"parts\":[]}}");
    step(f, "GET", "/uploads/" UP, 200,
         "{\"upload\":{\"id\":\"" UP "\",\"status\":\"validated\"}}");
    step(f, "GET", "/uploads/" UP, 200,
         "{\"upload\":{\"id\":\"" UP "\",\"status\":\"imported\",\"entityId\":\"asset_up1\"}}");
    step(f, "GET", "/assets/asset_up1", 200,
         "{\"asset\":{\"id\":\"asset_up1\",\"url\":\"https://cdn.example/a.png\","
         "\"mimeType\":\"image/png\",\"status\":\"success\",\"metadata\":{\"size\":%lld}}}",
         (long long)(9 << 20));
}

/* A temporary file of `size` bytes with a known pattern; *sum1 and *sum2
 * get the byte sums of the first 8 MiB and of the rest. */
static int pattern_file(long long size, unsigned long long *sum1, unsigned long long *sum2)
{
    char path[] = "/tmp/uni1-test-upload-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    static unsigned char chunk[1 << 16];
    *sum1 = *sum2 = 0;
    for (long long off = 0; off < size; off += (long long)sizeof chunk) {
        size_t n = size - off < (long long)sizeof chunk ? (size_t)(size - off) : sizeof chunk;
        for (size_t i = 0; i < n; i++) {
            chunk[i] = (unsigned char)((off + (long long)i) * 7 + ((off + (long long)i) >> 13));
            if (off + (long long)i < UNI1_UPLOAD_PART_SIZE)
                *sum1 += chunk[i];
            else
                *sum2 += chunk[i];
        }
        assert_int_equal(write(fd, chunk, n), (ssize_t)n);
    }
    return fd;
}

#define SIZE_9M (9LL << 20)

/* ---- the flow -------------------------------------------------------------------------- */

static void test_flow_success(void **state)
{
    (void)state;
    fake_api f = {0};
    add_create(&f, 2);
    add_tail(&f);
    uni1_client *c = make_client(&f, 3);
    uni1_session *s = uni1_session_acquire(c);
    unsigned long long sum1, sum2;
    int fd = pattern_file(SIZE_9M, &sum1, &sum2);
    lseek(fd, 0, SEEK_SET);
    uni1_asset a;
    uni1_status st = uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a);
    if (st != UNI1_OK)
        fail_msg("%s: %s", uni1_status_name(st), uni1_session_error(s)->message);
    assert_string_equal(a.id, "asset_up1");
    assert_string_equal(a.mime_type, "image/png");
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 0); /* the offset was not used */
    /* what the API saw */
    assert_int_equal(f.calls, f.n_steps);
    assert_int_equal(f.auth_missing, 0);
    assert_string_equal(f.bodies[0], "{\"fileName\":\"big.png\",\"contentType\":\"image/png\","
                                     "\"kind\":\"image\",\"parts\":2,\"fileSize\":9437184}");
    assert_string_equal(f.bodies[1], "{\"action\":\"complete\"}");
    /* what the part server saw: both parts, whole, no credentials */
    assert_int_equal(srv.puts, 2);
    assert_string_equal(srv.paths[0], "/uploads/" UP "/1?X-Amz-Signature=s3cr3t");
    assert_string_equal(srv.paths[1], "/uploads/" UP "/2?X-Amz-Signature=s3cr3t");
    assert_int_equal(srv.sizes[0], UNI1_UPLOAD_PART_SIZE);
    assert_int_equal(srv.sizes[1], SIZE_9M - UNI1_UPLOAD_PART_SIZE);
    assert_true(srv.sums[0] == sum1 && srv.sums[1] == sum2);
    assert_int_equal(srv.auth_seen, 0);
    assert_int_equal(srv.expect_seen, 0);
    assert_int_equal(srv.other_methods, 0);
    uni1_asset_clear(&a);
    close(fd);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void reset_server(void)
{
    pthread_mutex_lock(&srv.lock);
    srv.puts = srv.auth_seen = srv.expect_seen = srv.other_methods = 0;
    srv.stall = 0;
    memset(srv.statuses, 0, sizeof srv.statuses);
    pthread_mutex_unlock(&srv.lock);
}

static void test_flow_part_retried(void **state)
{
    (void)state;
    reset_server();
    srv.statuses[1] = 503; /* part 2 fails once */
    srv.statuses[2] = 429; /* then asks to slow down */
    fake_api f = {0};
    add_create(&f, 2);
    add_tail(&f);
    uni1_client *c = make_client(&f, 3);
    uni1_session *s = uni1_session_acquire(c);
    unsigned long long sum1, sum2;
    int fd = pattern_file(SIZE_9M, &sum1, &sum2);
    uni1_asset a;
    assert_int_equal(uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a), UNI1_OK);
    assert_int_equal(srv.puts, 4);
    assert_true(strstr(srv.paths[1], "/2?") && strstr(srv.paths[3], "/2?"));
    assert_true(srv.sums[3] == sum2 && srv.sizes[3] == SIZE_9M - UNI1_UPLOAD_PART_SIZE);
    uni1_asset_clear(&a);
    close(fd);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_flow_part_fails_for_good(void **state)
{
    (void)state;
    reset_server();
    for (int i = 0; i < MAX_PUTS; i++)
        srv.statuses[i] = 500;
    fake_api f = {0};
    add_create(&f, 2); /* no complete may follow */
    uni1_client *c = make_client(&f, 2);
    uni1_session *s = uni1_session_acquire(c);
    unsigned long long sum1, sum2;
    int fd = pattern_file(SIZE_9M, &sum1, &sum2);
    uni1_asset a;
    assert_int_equal(uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a), UNI1_ERR_HTTP);
    const uni1_error *e = uni1_session_error(s);
    assert_int_equal(e->http_status, 500);
    assert_non_null(strstr(e->message, "upload of big.png: part 1 of 2 refused by http://"));
    assert_non_null(strstr(e->message, "Please reduce your request rate. (SlowDown)"));
    assert_null(strstr(e->message, "s3cr3t")); /* never the signature */
    assert_int_equal(srv.puts, 3);             /* 1 + max_retries */
    assert_int_equal(f.calls, 1);
    assert_true(all_zero(&a, sizeof a));
    close(fd);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_flow_refused_part_not_retried(void **state)
{
    (void)state;
    reset_server();
    srv.statuses[0] = 403;
    fake_api f = {0};
    add_create(&f, 2);
    uni1_client *c = make_client(&f, 3);
    uni1_session *s = uni1_session_acquire(c);
    unsigned long long sum1, sum2;
    int fd = pattern_file(SIZE_9M, &sum1, &sum2);
    uni1_asset a;
    assert_int_equal(uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a), UNI1_ERR_HTTP);
    assert_int_equal(uni1_session_error(s)->http_status, 403);
    assert_int_equal(srv.puts, 1);
    close(fd);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_flow_failed_upload(void **state)
{
    (void)state;
    reset_server();
    fake_api f = {0};
    add_create(&f, 2);
    step(&f, "POST", "/uploads/" UP "/action", 200,
         "{\"upload\":{\"id\":\"" UP "\",\"status\":\"validating\"}}");
    step(&f, "GET", "/uploads/" UP, 200,
         "{\"upload\":{\"id\":\"" UP "\",\"status\":\"failed\",\"errorMessage\":\"Unsupported "
         "or corrupt image\"}}");
    uni1_client *c = make_client(&f, 3);
    uni1_session *s = uni1_session_acquire(c);
    unsigned long long sum1, sum2;
    int fd = pattern_file(SIZE_9M, &sum1, &sum2);
    uni1_asset a;
    assert_int_equal(uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a), UNI1_ERR_HTTP);
    const uni1_error *e = uni1_session_error(s);
    assert_int_equal(e->http_status, 0);
    assert_int_equal(e->source, UNI1_MSG_UPLOAD);
    assert_string_equal(e->message,
                        "upload of big.png failed on the server: Unsupported or corrupt image");
    assert_non_null(e->body);
    assert_non_null(strstr(e->body, "\"status\":\"failed\""));
    assert_int_equal(f.calls, f.n_steps);
    close(fd);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_flow_complete_retry_and_lost_answer(void **state)
{
    (void)state;
    reset_server();
    fake_api f = {0};
    add_create(&f, 2);
    /* 503: the upload is still pending, so "complete" goes again; its answer
     * is lost (transport drop), and the state shows it went through: no third. */
    step(&f, "POST", "/uploads/" UP "/action", 503, "{\"reason\":\"busy\"}");
    step(&f, "GET", "/uploads/" UP, 200, "{\"upload\":{\"id\":\"" UP "\",\"status\":\"pending\"}}");
    step(&f, "POST", "/uploads/" UP "/action", 0, "%s", "")->transport_status = UNI1_ERR_NETWORK;
    step(&f, "GET", "/uploads/" UP, 200,
         "{\"upload\":{\"id\":\"" UP "\",\"status\":\"imported\",\"entityId\":\"asset_up1\"}}");
    step(&f, "GET", "/assets/asset_up1", 200, "{\"asset\":{\"id\":\"asset_up1\"}}");
    uni1_client *c = make_client(&f, 3);
    uni1_session *s = uni1_session_acquire(c);
    unsigned long long sum1, sum2;
    int fd = pattern_file(SIZE_9M, &sum1, &sum2);
    uni1_asset a;
    uni1_status st = uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a);
    if (st != UNI1_OK)
        fail_msg("%s: %s", uni1_status_name(st), uni1_session_error(s)->message);
    assert_string_equal(a.id, "asset_up1");
    assert_int_equal(f.calls, f.n_steps);
    uni1_asset_clear(&a);
    close(fd);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_flow_server_answers_that_do_not_fit(void **state)
{
    (void)state;
    reset_server();
    unsigned long long sum1, sum2;
    int fd = pattern_file(SIZE_9M, &sum1, &sum2);
    uni1_asset a;
    /* three URLs for a two-part plan: nothing is PUT */
    fake_api f = {0};
    add_create(&f, 3);
    uni1_client *c = make_client(&f, 3);
    uni1_session *s = uni1_session_acquire(c);
    assert_int_equal(uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a),
                     UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(uni1_session_error(s)->message, "asked for 2 parts"));
    assert_int_equal(srv.puts, 0);
    uni1_session_release(s);
    uni1_client_free(c);
    /* parts numbered 1 and 3 */
    fake_api g = {0};
    step(&g, "POST", "/uploads", 200,
         "{\"upload\":{\"id\":\"" UP "\",\"parts\":[{\"number\":1,\"url\":\"http://h/1\"},"
         "{\"number\":3,\"url\":\"http://h/3\"}]}}");
    c = make_client(&g, 3);
    s = uni1_session_acquire(c);
    assert_int_equal(uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a),
                     UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(uni1_session_error(s)->message, "no URL for part 2"));
    uni1_session_release(s);
    uni1_client_free(c);
    /* imported without an entityId */
    fake_api h = {0};
    add_create(&h, 2);
    step(&h, "POST", "/uploads/" UP "/action", 200,
         "{\"upload\":{\"id\":\"" UP "\",\"status\":\"imported\"}}");
    c = make_client(&h, 3);
    s = uni1_session_acquire(c);
    assert_int_equal(uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a),
                     UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(uni1_session_error(s)->message, "entityId"));
    uni1_session_release(s);
    uni1_client_free(c);
    /* a malformed create answer */
    fake_api k = {0};
    step(&k, "POST", "/uploads", 200, "{\"upload\":{\"id\":\"../x\"}}");
    c = make_client(&k, 3);
    s = uni1_session_acquire(c);
    assert_int_equal(uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a),
                     UNI1_ERR_PROTOCOL);
    assert_non_null(strstr(uni1_session_error(s)->message, "malformed response"));
    uni1_session_release(s);
    uni1_client_free(c);
    close(fd);
}

static void test_flow_bad_arguments_send_nothing(void **state)
{
    (void)state;
    fake_api f = {0}; /* any request fails the test */
    uni1_client *c = make_client(&f, 3);
    uni1_session *s = uni1_session_acquire(c);
    uni1_asset a;
    unsigned long long sum1, sum2;
    int fd = pattern_file(1000, &sum1, &sum2);
    assert_int_equal(uni1_upload_file(s, -1, 1000, "a.png", "image/png", &a), UNI1_ERR_INVALID);
    assert_int_equal(uni1_upload_file(s, fd, 0, "a.png", "image/png", &a), UNI1_ERR_INVALID);
    assert_int_equal(uni1_upload_file(s, fd, -3, "a.png", "image/png", &a), UNI1_ERR_INVALID);
    assert_int_equal(uni1_upload_file(s, fd, 1000, "", "image/png", &a), UNI1_ERR_INVALID);
    assert_int_equal(uni1_upload_file(s, fd, 1000, NULL, "image/png", &a), UNI1_ERR_INVALID);
    assert_int_equal(uni1_upload_file(s, fd, 1000, "a\nb.png", "image/png", &a), UNI1_ERR_INVALID);
    assert_int_equal(uni1_upload_file(s, fd, 1000, "\xc3\x28.png", "image/png", &a),
                     UNI1_ERR_INVALID);
    assert_int_equal(uni1_upload_file(s, fd, 1000, "a.png", "text/plain", &a), UNI1_ERR_INVALID);
    assert_int_equal(uni1_upload_file(s, fd, 1000, "a.png", "image/", &a), UNI1_ERR_INVALID);
    assert_int_equal(uni1_upload_file(s, fd, 1000, "a.png", "image/png\r\nX: y", &a),
                     UNI1_ERR_INVALID);
    assert_int_equal(uni1_upload_file(s, fd, 1000, "a.png", NULL, &a), UNI1_ERR_INVALID);
    assert_int_equal(uni1_upload_file(s, fd, 1LL << 62, "a.png", "image/png", &a),
                     UNI1_ERR_INVALID);
    assert_int_equal(f.calls, 0);
    assert_true(all_zero(&a, sizeof a));
    close(fd);
    uni1_session_release(s);
    uni1_client_free(c);
}

static void test_flow_file_shorter_than_size(void **state)
{
    (void)state;
    reset_server();
    fake_api f = {0};
    add_create(&f, 2);
    uni1_client *c = make_client(&f, 3);
    uni1_session *s = uni1_session_acquire(c);
    unsigned long long sum1, sum2;
    int fd = pattern_file(SIZE_9M - 100, &sum1, &sum2);
    uni1_asset a;
    assert_int_equal(uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a), UNI1_ERR_IO);
    assert_non_null(strstr(uni1_session_error(s)->message, "ended at"));
    assert_int_equal(srv.puts, 1); /* part 1 went, part 2 could not be read */
    close(fd);
    /* a descriptor that cannot be read */
    fake_api g = {0};
    add_create(&g, 1);
    uni1_session_release(s);
    uni1_client_free(c);
    c = make_client(&g, 3);
    s = uni1_session_acquire(c);
    int wfd = open("/dev/null", O_WRONLY);
    assert_int_equal(uni1_upload_file(s, wfd, 1000, "a.png", "image/png", &a), UNI1_ERR_IO);
    assert_non_null(strstr(uni1_session_error(s)->message, "cannot read"));
    close(wfd);
    uni1_session_release(s);
    uni1_client_free(c);
}

static int stop_after(void *userdata)
{
    double *until = userdata;
    return uni1_monotonic() >= *until;
}

static void test_flow_interrupt_and_deadline_during_a_part(void **state)
{
    (void)state;
    reset_server();
    srv.stall = 1;
    unsigned long long sum1, sum2;
    int fd = pattern_file(SIZE_9M, &sum1, &sum2);
    uni1_asset a;

    fake_api f = {0};
    add_create(&f, 2);
    uni1_client *c = make_client(&f, 3);
    uni1_session *s = uni1_session_acquire(c);
    double t0 = uni1_monotonic(), until = t0 + 0.3;
    uni1_session_set_interrupt(s, stop_after, &until);
    assert_int_equal(uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a),
                     UNI1_ERR_INTERRUPTED);
    assert_true(uni1_monotonic() - t0 < 0.3 + 0.7 * slack());
    uni1_session_release(s);
    uni1_client_free(c);

    fake_api g = {0};
    add_create(&g, 2);
    c = make_client(&g, 3);
    s = uni1_session_acquire(c);
    t0 = uni1_monotonic();
    uni1_session_set_deadline(s, t0 + 0.3);
    assert_int_equal(uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a),
                     UNI1_ERR_TIMEOUT);
    assert_true(uni1_monotonic() - t0 < 0.3 + 0.7 * slack());
    uni1_session_release(s);
    uni1_client_free(c);
    close(fd);
    srv.stall = 0;
}

static void test_flow_deadline_while_validating(void **state)
{
    (void)state;
    reset_server();
    fake_api f = {0};
    add_create(&f, 2);
    step(&f, "POST", "/uploads/" UP "/action", 200,
         "{\"upload\":{\"id\":\"" UP "\",\"status\":\"validating\"}}");
    for (int i = 0; i < 20; i++)
        step(&f, "GET", "/uploads/" UP, 200,
             "{\"upload\":{\"id\":\"" UP "\",\"status\":\"validating\"}}");
    uni1_client *c = make_client(&f, 3);
    uni1_session *s = uni1_session_acquire(c);
    unsigned long long sum1, sum2;
    int fd = pattern_file(SIZE_9M, &sum1, &sum2);
    uni1_asset a;
    double t0 = uni1_monotonic();
    uni1_session_set_deadline(s, t0 + 1.5);
    assert_int_equal(uni1_upload_file(s, fd, SIZE_9M, "big.png", "image/png", &a),
                     UNI1_ERR_TIMEOUT);
    double took = uni1_monotonic() - t0;
    assert_true(took >= 1.4 && took < 1.5 + 0.5 * slack());
    assert_non_null(strstr(uni1_session_error(s)->message, "still validating at the deadline"));
    assert_true(f.calls >= 4 && f.calls < 12); /* polled, with growing pauses */
    close(fd);
    uni1_session_release(s);
    uni1_client_free(c);
}

int main(void)
{
    char err[256];
    if (uni1_global_init(err, sizeof err) != UNI1_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_parse_create_answer),
        cmocka_unit_test(test_parse_bare_object_and_alias),
        cmocka_unit_test(test_parse_parts_sorted),
        cmocka_unit_test(test_parse_imported_and_failed),
        cmocka_unit_test(test_parse_unknown_status_kept),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_bytes_level),
        cmocka_unit_test(test_parse_many_parts),
        cmocka_unit_test(test_plan),
    };
    const struct CMUnitTest flow[] = {
        cmocka_unit_test(test_flow_success),
        cmocka_unit_test(test_flow_part_retried),
        cmocka_unit_test(test_flow_part_fails_for_good),
        cmocka_unit_test(test_flow_refused_part_not_retried),
        cmocka_unit_test(test_flow_failed_upload),
        cmocka_unit_test(test_flow_complete_retry_and_lost_answer),
        cmocka_unit_test(test_flow_server_answers_that_do_not_fit),
        cmocka_unit_test(test_flow_bad_arguments_send_nothing),
        cmocka_unit_test(test_flow_file_shorter_than_size),
        cmocka_unit_test(test_flow_interrupt_and_deadline_during_a_part),
        cmocka_unit_test(test_flow_deadline_while_validating),
    };
    int failed = cmocka_run_group_tests_name("upload parser", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("upload flow", flow, server_start, server_stop);
    uni1_global_cleanup();
    return failed;
}
