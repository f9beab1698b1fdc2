/* The transport: API requests and CDN PUTs on the session's libcurl multi
 * handle, with interrupt checks, one deadline and retries. download.c builds
 * downloads (Range resume, the checks of a CDN's answer) on it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "engine.h"
#include "retry.h"
#include "session.h"
#include "uni1_internal.h"

#define JSON_BODY_CAP (64u << 20) /* largest API answer we keep in memory */

/* ---- callbacks ---------------------------------------------------------- */

int uni1__sink_reserve(uni1_sink *k, size_t cap)
{
    uni1_buffer *b = k->buf;
    if (cap <= b->cap)
        return 0;
    if (cap > k->cap)
        cap = k->cap;
    if (!b->data) {
        size_t have = 0;
        unsigned char *spare = uni1__spare_take(cap, &have);
        if (spare) {
            b->data = spare;
            b->cap = have;
            return 0;
        }
    }
    unsigned char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

size_t uni1__sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    uni1_sink *k = userdata;
    size_t n = size * nmemb;
    if (k->fd >= 0) {
        size_t done = 0;
        while (done < n) {
            ssize_t w = write(k->fd, ptr + done, n - done);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                k->failed = 2;
                k->saved_errno = errno;
                return 0; /* makes curl stop with CURLE_WRITE_ERROR */
            }
            done += (size_t)w;
        }
    } else {
        uni1_buffer *b = k->buf;
        if (b->len + n + 1 > k->cap) {
            k->failed = 1;
            return 0;
        }
        if (b->len + n + 1 > b->cap) {
            size_t cap = b->cap ? b->cap : 4096;
            while (cap < b->len + n + 1)
                cap *= 2;
            if (uni1__sink_reserve(k, cap) < 0) {
                k->failed = 3;
                return 0;
            }
        }
        memcpy(b->data + b->len, ptr, n);
        b->len += n;
        b->data[b->len] = 0;
    }
    k->written += (long long)n;
    return n;
}

size_t uni1__header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    uni1_response_meta *m = userdata;
    size_t n = size * nitems;
    m->header_bytes += n;
    if (m->header_bytes > UNI1_HEADER_CAP) {
        m->header_too_large = 1;
        return 0; /* libcurl stops the transfer (CURLE_WRITE_ERROR) */
    }
    /* A new status line (redirects, 100-continue) starts a new header block. */
    if (n > 5 && strncmp(buf, "HTTP/", 5) == 0) {
        m->retry_after = -1;
        m->content_type[0] = 0;
        m->content_length = -1;
        m->headers_done = 0;
        return n;
    }
    if (n <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        m->headers_done = 1;
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon)
        return n;
    size_t name_len = (size_t)(colon - buf);
    const char *v = colon + 1;
    const char *end = buf + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t vlen = (size_t)(end - v);
    char val[128];
    if (vlen >= sizeof val)
        vlen = sizeof val - 1;
    memcpy(val, v, vlen);
    val[vlen] = 0;
    if (name_len == 11 && strncasecmp(buf, "retry-after", 11) == 0) {
        char *e;
        double secs = strtod(val, &e);
        if (e != val && secs >= 0 && secs < 1e7)
            m->retry_after = secs;
        /* An HTTP-date form is rare for 429; ignoring it falls back to backoff. */
    } else if (name_len == 12 && strncasecmp(buf, "content-type", 12) == 0) {
        snprintf(m->content_type, sizeof m->content_type, "%.63s", val);
        char *semi = strchr(m->content_type, ';');
        if (semi)
            *semi = 0;
    } else if (name_len == 14 && strncasecmp(buf, "content-length", 14) == 0) {
        char *e;
        long long cl = strtoll(val, &e, 10);
        if (e != val && cl >= 0)
            m->content_length = cl;
    }
    return n;
}

/* ---- the multi loop ---------------------------------------------------- */

uni1_status uni1__map_curl(uni1_session *s, CURLcode rc, const uni1_response_meta *m,
                           const uni1_sink *sink, const char *what)
{
    if (m && m->header_too_large)
        return uni1__fail(s, UNI1_ERR_PROTOCOL,
                          "%s: response header too large (over %u bytes in all)", what,
                          UNI1_HEADER_CAP);
    /* libcurl (before 8.6's CURLE_TOO_LARGE) reports a single header line
     * over its 100 KB limit as out of memory: after the request went out and
     * before the header block ended, that is what it means. */
    if (m && rc == CURLE_OUT_OF_MEMORY && m->request_sent && !m->headers_done)
        return uni1__fail(s, UNI1_ERR_PROTOCOL,
                          "%s: response header too large (a header line over libcurl's limit)",
                          what);
#if LIBCURL_VERSION_NUM >= 0x080600
    if (rc == CURLE_TOO_LARGE)
        return uni1__fail(s, UNI1_ERR_PROTOCOL, "%s: response header too large (%s)", what,
                          curl_easy_strerror(rc));
#endif
    switch (rc) {
    case CURLE_OK:
        return UNI1_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return uni1__fail(s, UNI1_ERR_CONNECT, "%s: could not connect (%s)", what,
                          curl_easy_strerror(rc));
    case CURLE_OPERATION_TIMEDOUT:
        return uni1__fail(s, UNI1_ERR_TIMEOUT, "%s: timed out or stalled (%s)", what,
                          curl_easy_strerror(rc));
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_ENGINE_INITFAILED:
        return uni1__fail(s, UNI1_ERR_TLS, "%s: TLS failure (%s)%s%s", what, curl_easy_strerror(rc),
                          *uni1__ca_note(s->client) ? "; " : "", uni1__ca_note(s->client));
    case CURLE_WRITE_ERROR:
        if (sink && sink->failed == 20)
            return uni1__fail(s, UNI1_ERR_PROTOCOL,
                              "%s: the CDN sent more than the %lld bytes declared", what,
                              sink->offset + sink->limit);
        if (sink && sink->failed == 10 + UNI1_CDN_BAD_RANGE)
            return uni1__fail(s, UNI1_ERR_PROTOCOL,
                              "%s: the CDN answered a range other than the one asked for", what);
        if (sink && sink->failed == 10 + UNI1_CDN_BAD_LENGTH && sink->expect > 0 && m &&
            m->content_length >= 0 && m->content_length != sink->expect)
            return uni1__fail(s, UNI1_ERR_PROTOCOL,
                              "%s: the CDN announced %lld bytes, the asset record says %lld", what,
                              m->content_length, sink->expect);
        if (sink && sink->failed == 10 + UNI1_CDN_BAD_LENGTH)
            return uni1__fail(s, UNI1_ERR_PROTOCOL, "%s: the object is larger than %lld bytes",
                              what, UNI1_DOWNLOAD_CAP);
        if (sink && sink->failed == 10 + UNI1_CDN_NOT_IMAGE)
            return uni1__fail(s, UNI1_ERR_PROTOCOL, "%s: the CDN answered %s, not an image", what,
                              m ? m->content_type : "a document");
        if (sink && sink->failed == 1)
            return uni1__fail(s, UNI1_ERR_PROTOCOL, "%s: response larger than %zu bytes", what,
                              sink->cap);
        if (sink && sink->failed == 2)
            return uni1__fail_os(s, sink->saved_errno, "%s: cannot write the file", what);
        return uni1__fail(s, UNI1_ERR_NOMEM, "%s: out of memory", what);
    case CURLE_OUT_OF_MEMORY:
        return uni1__fail(s, UNI1_ERR_NOMEM, "%s: out of memory", what);
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return uni1__fail(s, UNI1_ERR_PROTOCOL, "%s: unusable URL (%s)", what,
                          curl_easy_strerror(rc));
    case CURLE_TOO_MANY_REDIRECTS:
        return uni1__fail(s, UNI1_ERR_PROTOCOL, "%s: too many redirects", what);
    default:
        return uni1__fail(s, m && m->request_sent ? UNI1_ERR_NETWORK : UNI1_ERR_CONNECT,
                          "%s: connection failed (%s)", what, curl_easy_strerror(rc));
    }
}

/* Bytes moved so far by a transfer, both ways. */
curl_off_t uni1__bytes_moved(CURL *easy)
{
    curl_off_t down = 0, up = 0;
    curl_easy_getinfo(easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
    curl_easy_getinfo(easy, CURLINFO_SIZE_UPLOAD_T, &up);
    return down + up;
}

int uni1__xfer_queued(CURL *easy)
{
    curl_off_t pre = 0;
    curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &pre);
    return pre == 0 && uni1__bytes_moved(easy) == 0;
}

CURLMcode uni1__loop_add(uni1_session *s, CURL *e, uni1_xfer *x)
{
    x->task = s->task;
    x->done = 0;
    x->result = CURLE_OK;
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
    if (s->task)
        return uni1__engine_add(s->task, e);
    CURLM *m = uni1__session_multi(s);
    return m ? curl_multi_add_handle(m, e) : CURLM_OUT_OF_MEMORY;
}

void uni1__loop_remove(uni1_session *s, CURL *e)
{
    if (s->task)
        uni1__engine_remove(s->task, e);
    else
        curl_multi_remove_handle(uni1__session_multi(s), e);
    curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
}

CURLMcode uni1__loop_pump(uni1_session *s)
{
    if (s->task)
        return CURLM_OK; /* the engine drives its multi handle */
    int running = 0;
    if (!uni1__session_multi(s))
        return CURLM_OUT_OF_MEMORY;
    CURLMcode mc = curl_multi_perform(s->multi, &running);
    if (mc != CURLM_OK)
        return mc;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(s->multi, &left))) {
        uni1_xfer *x = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x) {
            x->done = 1;
            x->result = msg->data.result;
        }
    }
    return CURLM_OK;
}

uni1_status uni1__loop_wait(uni1_session *s, double now, double wake_at)
{
    if (s->task) {
        if (uni1__task_cancelled(s->task))
            return uni1__fail(s, UNI1_ERR_INTERRUPTED, "interrupted");
        uni1__engine_park(s->task, wake_at);
        if (uni1__task_cancelled(s->task))
            return uni1__fail(s, UNI1_ERR_INTERRUPTED, "interrupted");
        return UNI1_OK;
    }
    if (s->interrupt && now - s->last_interrupt_check >= UNI1_WAKE_INTERVAL_MS / 1000.0) {
        s->last_interrupt_check = now;
        if (s->interrupt(s->interrupt_userdata))
            return uni1__fail(s, UNI1_ERR_INTERRUPTED, "interrupted");
    }
    int ms = UNI1_WAKE_INTERVAL_MS;
    if (s->deadline > 0 && (s->deadline - now) * 1000.0 < ms)
        ms = (int)((s->deadline - now) * 1000.0) + 1;
    if (uni1__session_multi(s))
        curl_multi_poll(s->multi, NULL, 0, ms, NULL);
    return UNI1_OK;
}

/* watch_stall: fail when no byte moves for the client's stall_timeout (with
 * sub-second precision; libcurl's own low-speed check counts whole seconds).
 * API requests leave it off: a server may think for a while before its first
 * byte, and request_timeout bounds that. */
uni1_status uni1__run_transfer(uni1_session *s, CURL *easy, uni1_response_meta *m,
                               const uni1_sink *sink, const char *what, int watch_stall)
{
    uni1_xfer x;
    CURLMcode mc = uni1__loop_add(s, easy, &x);
    if (mc != CURLM_OK)
        return uni1__fail(s, UNI1_ERR_NOMEM, "%s: %s", what, curl_multi_strerror(mc));
    s->requests++;
    uni1_status st = UNI1_OK;
    s->last_interrupt_check = uni1_monotonic();
    curl_off_t moved = 0;
    double moved_at = s->last_interrupt_check;
    for (;;) {
        mc = uni1__loop_pump(s);
        if (mc != CURLM_OK) {
            st = uni1__fail(s, UNI1_ERR_NOMEM, "%s: %s", what, curl_multi_strerror(mc));
            break;
        }
        if (x.done)
            break;
        double now = uni1_monotonic();
        if (s->deadline > 0 && now >= s->deadline) {
            st = uni1__fail(s, UNI1_ERR_TIMEOUT, "%s: deadline reached", what);
            break;
        }
        double wake_at = s->deadline;
        if (watch_stall) {
            curl_off_t b = uni1__bytes_moved(easy);
            if (b != moved || uni1__xfer_queued(easy)) {
                moved = b;
                moved_at = now;
            } else if (now - moved_at >= s->client->stall_timeout) {
                if (m)
                    m->request_sent = 1;
                st = uni1__fail(s, UNI1_ERR_TIMEOUT, "%s: stalled, no data for %.1f s", what,
                                now - moved_at);
                break;
            }
            /* Bytes that arrive while parked only show at the next look:
             * look often enough that a stall is seen within a quarter of
             * a second of its due time. */
            double check = moved_at + s->client->stall_timeout;
            if (check > now + UNI1_STALL_LOOK)
                check = now + UNI1_STALL_LOOK;
            if (wake_at <= 0 || check < wake_at)
                wake_at = check;
        }
        if ((st = uni1__loop_wait(s, now, wake_at)) != UNI1_OK)
            break;
    }
    curl_off_t req_size = 0;
    curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &req_size);
    if (m)
        m->request_sent = req_size > 0;
    s->last_request_sent = req_size > 0;
    if (m) {
        long code = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
        m->status = code;
    }
    uni1__loop_remove(s, easy);
    if (st != UNI1_OK)
        return st;
    return uni1__map_curl(s, x.result, m, sink, what);
}

void uni1__set_common(uni1_session *s, CURL *e, uni1_response_meta *m, uni1_sink *sink)
{
    uni1_client *c = s->client;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, uni1__sink_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, uni1__header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, m);
    curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->connect_timeout * 1000));
    /* A transfer that moves no byte for stall_timeout seconds fails. */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)(c->stall_timeout + 0.999));
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    uni1__track_sockets(c, e);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    uni1__ca_apply(c, e);
    if (c->proxy)
        curl_easy_setopt(e, CURLOPT_PROXY, c->proxy);
    m->status = 0;
    m->retry_after = -1;
    m->content_type[0] = 0;
    m->content_length = -1;
    m->request_sent = 0;
    m->header_bytes = 0;
    m->headers_done = 0;
    m->header_too_large = 0;
}

/* ---- API requests ------------------------------------------------------- */

static char *build_url(uni1_session *s, const char *path, const char *query)
{
    uni1_client *c = s->client;
    size_t n = strlen(c->base_url) + strlen(path) + (query ? strlen(query) : 0) +
               (c->project_id ? strlen(c->project_id) : 0) + 16;
    char *url = malloc(n);
    if (!url)
        return NULL;
    int has_q = query && *query;
    snprintf(url, n, "%s%s%s%s%s%s", c->base_url, path, (has_q || c->project_id) ? "?" : "",
             has_q ? query : "", (has_q && c->project_id) ? "&" : "",
             c->project_id ? "projectId=" : "");
    if (c->project_id)
        strcat(url, c->project_id);
    return url;
}

/* Copies what the server said about an error into the session error. */
static uni1_status http_error(uni1_session *s, const char *method, const char *path, long status,
                              char *body, size_t body_len, double retry_after)
{
    uni1__reset_error(s);
    s->err.status = UNI1_ERR_HTTP;
    s->err.http_status = status;
    s->err.body = body; /* ownership moves to the session */
    s->err.body_len = body_len;
    uni1_parse_error_body(body ? body : "", body ? body_len : 0, &s->err);
    if (retry_after > s->err.retry_after)
        s->err.retry_after = retry_after;
    s->err.source = s->err.message[0] ? UNI1_MSG_SERVER : UNI1_MSG_NONE;
    if (!s->err.message[0])
        snprintf(s->err.message, sizeof s->err.message, "HTTP %ld", status);
    uni1__log(s, UNI1_LOG_DEBUG, "%s %s -> %ld: %s", method, path, status, s->err.message);
    return UNI1_ERR_HTTP;
}

/* One attempt through the pluggable transport. */
static uni1_status api_once_custom(uni1_session *s, const uni1_api_call *call, const char *url,
                                   uni1_buffer *out, uni1_response_meta *m)
{
    uni1_client *c = s->client;
    const char *hdrs[4];
    size_t nh = 0;
    hdrs[nh++] = "Accept: application/json";
    if (call->body)
        hdrs[nh++] = "Content-Type: application/json";
    hdrs[nh++] = c->auth_header;
    uni1_http_request req = {call->method, url, hdrs, nh, call->body, call->body_len};
    uni1_http_response resp = {0, NULL, 0, -1};
    s->requests++;
    uni1_status st = c->transport(c->transport_userdata, &req, &resp);
    /* A custom transport says UNI1_ERR_CONNECT when nothing was sent. */
    m->request_sent = st != UNI1_ERR_CONNECT;
    s->last_request_sent = m->request_sent;
    if (st != UNI1_OK) {
        free(resp.body);
        return uni1__fail(s, st, "%s %s: transport failed", call->method, call->path);
    }
    m->status = resp.status;
    m->retry_after = resp.retry_after;
    out->data = (unsigned char *)resp.body;
    out->len = resp.body_len;
    out->cap = resp.body_len;
    if (out->data) {
        /* Hand the parsers a NUL-terminated copy, whatever the transport gave. */
        unsigned char *p = realloc(out->data, out->len + 1);
        if (!p)
            return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
        p[out->len] = 0;
        out->data = p;
    }
    return UNI1_OK;
}

static uni1_status api_once_curl(uni1_session *s, const uni1_api_call *call, const char *url,
                                 uni1_buffer *out, uni1_response_meta *m)
{
    uni1_client *c = s->client;
    CURL *e = uni1__session_easy(s, 0);
    if (!e)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    uni1_sink sink = {.buf = out, .fd = -1, .cap = JSON_BODY_CAP};
    curl_easy_reset(e);
    uni1__set_common(s, e, m, &sink);
    curl_easy_setopt(e, CURLOPT_URL, url);
    /* API answers are never redirected to be followed with credentials. */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    double budget = c->request_timeout;
    if (s->deadline > 0 && s->deadline - uni1_monotonic() < budget)
        budget = s->deadline - uni1_monotonic();
    if (budget < 0.001)
        return uni1__fail(s, UNI1_ERR_TIMEOUT, "%s %s: deadline reached", call->method, call->path);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(budget * 1000) + 1);
    struct curl_slist *h = NULL, *t;
    int ok = 1;
#define ADD_HEADER(x)                                                                              \
    do {                                                                                           \
        t = curl_slist_append(h, (x));                                                             \
        if (!t)                                                                                    \
            ok = 0;                                                                                \
        else                                                                                       \
            h = t;                                                                                 \
    } while (0)
    ADD_HEADER("Accept: application/json");
    ADD_HEADER(c->auth_header);
    if (call->body) {
        ADD_HEADER("Content-Type: application/json");
        ADD_HEADER("Expect:");
    }
#undef ADD_HEADER
    if (!ok) {
        curl_slist_free_all(h);
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (strcmp(call->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body ? call->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(call->body ? call->body_len : 0));
        if (strcmp(call->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, call->method);
    }
    /* libcurl silently re-sends a request once when a reused connection turns
     * out dead; for a paid, non-idempotent POST that could pay twice, so such
     * requests get a connection of their own. */
    if (call->fresh_connection)
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    char what[160];
    snprintf(what, sizeof what, "%s %s", call->method, call->path);
    uni1_status st = uni1__run_transfer(s, e, m, &sink, what, 0);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    return st;
}

uni1_status uni1__api(uni1_session *s, const uni1_api_call *call, char **body, size_t *body_len,
                      long *http_status)
{
    uni1_client *c = s->client;
    *body = NULL;
    if (body_len)
        *body_len = 0;
    if (http_status)
        *http_status = 0;
    uni1__reset_error(s);
    char *url = build_url(s, call->path, call->query);
    if (!url)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    uni1_retry retry;
    uni1__retry_init(&retry, call->idempotent ? c->max_retries : 0);
    char what[160];
    snprintf(what, sizeof what, "%s %s", call->method, call->path);
    uni1_status st = UNI1_OK;
    for (;;) {
        uni1_buffer out = {0};
        uni1_response_meta m;
        memset(&m, 0, sizeof m);
        double t0 = uni1_monotonic();
        uni1__reset_error(s);
        s->last_request_sent = 0; /* until this attempt puts bytes on the wire */
        st = c->transport ? api_once_custom(s, call, url, &out, &m)
                          : api_once_curl(s, call, url, &out, &m);
        double ms = (uni1_monotonic() - t0) * 1000.0;
        if (st == UNI1_OK) {
            if (http_status)
                *http_status = m.status;
            if (m.status >= 200 && m.status < 300) {
                uni1__log(s, UNI1_LOG_DEBUG, "%s %s -> %ld (%.1f ms)", call->method, call->path,
                          m.status, ms);
                if (!out.data) {
                    out.data = malloc(1);
                    if (!out.data) {
                        st = uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
                        break;
                    }
                    out.data[0] = 0;
                }
                *body = (char *)out.data;
                if (body_len)
                    *body_len = out.len;
                break;
            }
            st = http_error(s, call->method, call->path, m.status, (char *)out.data, out.len,
                            m.retry_after);
        } else {
            uni1_buffer_clear(&out);
            uni1__log(s, UNI1_LOG_DEBUG, "%s %s failed: %s", call->method, call->path,
                      s->err.message);
        }
        uni1_status next = uni1__retry(s, &retry, st, what);
        if (next != UNI1_OK) {
            st = next;
            break;
        }
    }
    free(url);
    return st;
}

/* ---- logs ----------------------------------------------------------------- */

/* The URL with its query string removed, for logs (signed URLs carry secrets
 * of their own). */
void uni1__url_for_log(const char *url, char *out, size_t n)
{
    size_t len = strcspn(url, "?#");
    if (len >= n)
        len = n - 1;
    memcpy(out, url, len);
    out[len] = 0;
}

/* ---- PUT of a memory buffer (upload parts) ------------------------------ */

typedef struct put_source {
    const unsigned char *data;
    size_t len, pos;
} put_source;

static size_t put_read(char *buf, size_t size, size_t nitems, void *userdata)
{
    put_source *src = userdata;
    size_t n = size * nitems;
    if (n > src->len - src->pos)
        n = src->len - src->pos;
    memcpy(buf, src->data + src->pos, n);
    src->pos += n;
    return n;
}

/* libcurl rewinds the body when it must send it again on the same transfer
 * (a reused connection found dead before any answer). */
static int put_seek(void *userdata, curl_off_t offset, int origin)
{
    put_source *src = userdata;
    if (origin != SEEK_SET || offset < 0 || (curl_off_t)src->len < offset)
        return CURL_SEEKFUNC_CANTSEEK;
    src->pos = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

#define PUT_ANSWER_CAP (64u << 10) /* an S3-style error document is far smaller */

uni1_status uni1__put(uni1_session *s, const char *url, const void *data, size_t len,
                      const char *what)
{
    CURL *e = uni1__session_easy(s, 1);
    char shown[256];
    uni1__url_for_log(url, shown, sizeof shown);
    uni1__reset_error(s);
    if (!e)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        return uni1__fail(s, UNI1_ERR_PROTOCOL, "%s: URL is not http(s)", what);
    uni1_buffer answer = {0};
    uni1_sink sink = {.buf = &answer, .fd = -1, .cap = PUT_ANSWER_CAP};
    put_source src = {data, len, 0};
    uni1_response_meta m;
    memset(&m, 0, sizeof m);
    curl_easy_reset(e);
    uni1__set_common(s, e, &m, &sink);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, put_read);
    curl_easy_setopt(e, CURLOPT_READDATA, &src);
    curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, put_seek);
    curl_easy_setopt(e, CURLOPT_SEEKDATA, &src);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    /* A presigned URL is the whole authorisation: no Authorization header is
     * ever set on this handle, and a redirect is not followed. */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L);
    /* No 100-continue round trip (up to a second per part when a server
     * ignores it); an expired URL costs one part's bytes at worst. */
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    if (!h)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    uni1_status st = uni1__run_transfer(s, e, &m, &sink, what, 1);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    if (st != UNI1_OK) {
        uni1_buffer_clear(&answer);
        uni1__log(s, UNI1_LOG_DEBUG, "PUT %s failed: %s", shown, s->err.message);
        return st;
    }
    if (m.status >= 200 && m.status < 300) {
        uni1_buffer_clear(&answer);
        uni1__log(s, UNI1_LOG_DEBUG, "PUT %s -> %ld (%zu bytes)", shown, m.status, len);
        return UNI1_OK;
    }
    uni1__fail(s, UNI1_ERR_HTTP, "%s: HTTP %ld from %s", what, m.status, shown);
    s->err.http_status = m.status;
    s->err.retry_after = m.retry_after;
    s->err.body = (char *)answer.data; /* NUL-terminated by the sink; the session owns it */
    s->err.body_len = answer.len;
    uni1__log(s, UNI1_LOG_DEBUG, "PUT %s -> %ld", shown, m.status);
    return UNI1_ERR_HTTP;
}
