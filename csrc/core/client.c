/* Client settings, the session pool, and the small shared helpers (errors,
 * logging, interruptible sleep). */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger.h"
#include "engine.h"
#include "session.h"
#include "uni1_internal.h"

#define UNI1_OPTIONS_SANITY 0x756e6931u /* "uni1" */

double uni1_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int global_ready;
static char curl_version_text[32];

uni1_status uni1_global_init(char *errbuf, size_t errlen)
{
    if (global_ready)
        return UNI1_OK;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(errbuf, errlen, "curl_global_init failed");
        return UNI1_ERR_CONFIG;
    }
    const curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);
    snprintf(curl_version_text, sizeof curl_version_text, "%s", info->version);
    /* curl_multi_poll and curl_multi_wakeup arrived in 7.68.0. */
    if (info->version_num < 0x074400) {
        snprintf(errbuf, errlen, "libcurl %s is too old: scenario_uni1 needs 7.68.0 or later",
                 info->version);
        curl_global_cleanup();
        return UNI1_ERR_CONFIG;
    }
    if (!(info->features & CURL_VERSION_SSL)) {
        snprintf(errbuf, errlen, "libcurl %s was built without TLS support", info->version);
        curl_global_cleanup();
        return UNI1_ERR_CONFIG;
    }
    global_ready = 1;
    return UNI1_OK;
}

void uni1_global_cleanup(void)
{
    if (global_ready) {
        uni1__ledger_reset();
        curl_global_cleanup();
        global_ready = 0;
    }
}

const char *uni1_curl_version(void)
{
    if (!curl_version_text[0])
        return curl_version_info(CURLVERSION_NOW)->version;
    return curl_version_text;
}

void uni1_options_init(uni1_options *o)
{
    memset(o, 0, sizeof *o);
    o->connect_timeout = 10.0;
    o->request_timeout = 60.0;
    o->stall_timeout = 0; /* unset: see uni1_options */
    o->max_retries = 3;
    o->backoff_base = 0.5;
    o->backoff_max = 20.0;
    o->settle_window = UNI1_SETTLE_WINDOW;
    o->resend_uncertain = 1;
    o->sanity = UNI1_OPTIONS_SANITY;
}

static char *dup_or_null(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

/* Splits base into a normalised base URL and its origin. A URL with no path
 * gets "/v1"; trailing slashes go. */
static uni1_status normalise_base_url(const char *in, char **base, char **origin, char *err,
                                      size_t errlen)
{
    const char *scheme_end = strstr(in, "://");
    if (!scheme_end || !((scheme_end - in == 4 && strncmp(in, "http", 4) == 0) ||
                         (scheme_end - in == 5 && strncmp(in, "https", 5) == 0))) {
        snprintf(err, errlen, "base_url must start with http:// or https://");
        return UNI1_ERR_CONFIG;
    }
    const char *host = scheme_end + 3;
    if (!*host || *host == '/') {
        snprintf(err, errlen, "base_url has no host");
        return UNI1_ERR_CONFIG;
    }
    for (const char *p = in; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == '?' || *p == '#' || (unsigned char)*p >= 0x7f) {
            snprintf(err, errlen, "base_url must be a plain URL with no query, fragment or spaces");
            return UNI1_ERR_CONFIG;
        }
    }
    const char *path = strchr(host, '/');
    if (memchr(host, '@', path ? (size_t)(path - host) : strlen(host))) {
        snprintf(err, errlen, "base_url must not carry credentials; pass api_key/api_secret");
        return UNI1_ERR_CONFIG;
    }
    size_t origin_len = path ? (size_t)(path - in) : strlen(in);
    size_t len = strlen(in);
    while (len > origin_len && in[len - 1] == '/')
        len--;
    int add_version = (len == origin_len);
    *origin = uni1__memdup(in, origin_len);
    *base = malloc(len + 4);
    if (!*origin || !*base) {
        free(*origin);
        free(*base);
        snprintf(err, errlen, "out of memory");
        return UNI1_ERR_NOMEM;
    }
    memcpy(*base, in, len);
    strcpy(*base + len, add_version ? "/v1" : "");
    return UNI1_OK;
}

static char *basic_auth_header(const char *key, const char *secret)
{
    size_t plain_len = strlen(key) + 1 + strlen(secret);
    unsigned char *plain = malloc(plain_len + 1);
    if (!plain)
        return NULL;
    snprintf((char *)plain, plain_len + 1, "%s:%s", key, secret);
    const char prefix[] = "Authorization: Basic ";
    size_t enc_len = 4 * ((plain_len + 2) / 3);
    char *hdr = malloc(sizeof prefix + enc_len + 1);
    if (hdr) {
        memcpy(hdr, prefix, sizeof prefix - 1);
        EVP_EncodeBlock((unsigned char *)hdr + sizeof prefix - 1, plain, (int)plain_len);
    }
    OPENSSL_cleanse(plain, plain_len);
    free(plain);
    return hdr;
}

/* Durations are bounded so that every conversion to milliseconds (int or
 * long) stays far from overflow; past this they are mistakes, not settings. */
#define UNI1_SECONDS_MAX 1e6

static int seconds_ok(double v, int zero_ok)
{
    return (zero_ok ? v >= 0 : v > 0) && v <= UNI1_SECONDS_MAX; /* NaN fails both */
}

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

uni1_status uni1_client_create(const uni1_options *o, uni1_client **out, char *errbuf,
                               size_t errlen)
{
    *out = NULL;
    char scratch[8];
    if (!errbuf) {
        errbuf = scratch;
        errlen = sizeof scratch;
    }
    if (!o || o->sanity != UNI1_OPTIONS_SANITY) {
        snprintf(errbuf, errlen, "options were not set up with uni1_options_init");
        return UNI1_ERR_CONFIG;
    }
    uni1_status st = global_ready ? UNI1_OK : uni1_global_init(errbuf, errlen);
    if (st != UNI1_OK)
        return st;
    int have_basic = o->api_key && *o->api_key && o->api_secret && *o->api_secret;
    int have_bearer = o->bearer_token && *o->bearer_token;
    if (!have_basic && !have_bearer) {
        snprintf(errbuf, errlen,
                 (o->api_key && *o->api_key) || (o->api_secret && *o->api_secret)
                     ? "incomplete credentials: both an API key and an API secret are needed"
                     : "no credentials: pass an API key and secret, or a bearer token");
        return UNI1_ERR_CONFIG;
    }
    if ((have_basic && (has_ctl(o->api_key) || has_ctl(o->api_secret))) ||
        (!have_basic && has_ctl(o->bearer_token))) {
        snprintf(errbuf, errlen, "credentials contain control characters");
        return UNI1_ERR_CONFIG;
    }
    if (!seconds_ok(o->connect_timeout, 0) || !seconds_ok(o->request_timeout, 0) ||
        !seconds_ok(o->stall_timeout, 1)) {
        snprintf(errbuf, errlen,
                 "timeout and connect_timeout must be numbers of seconds above 0, stall_timeout "
                 "0 (unset) or above, all at most %.0f",
                 UNI1_SECONDS_MAX);
        return UNI1_ERR_CONFIG;
    }
    if (!seconds_ok(o->backoff_base, 1) || !seconds_ok(o->backoff_max, 1) ||
        o->backoff_max < o->backoff_base) {
        snprintf(errbuf, errlen,
                 "backoff_base and backoff_max must be numbers of seconds with "
                 "0 <= backoff_base <= backoff_max <= %.0f",
                 UNI1_SECONDS_MAX);
        return UNI1_ERR_CONFIG;
    }
    if (o->max_retries < 0 || o->max_retries > 100) {
        snprintf(errbuf, errlen, "max_retries must be within 0..100");
        return UNI1_ERR_CONFIG;
    }
    if (!(o->settle_window >= 0 && o->settle_window <= UNI1_SETTLE_WINDOW_MAX)) {
        snprintf(errbuf, errlen, "settle_window must be within 0..%g seconds",
                 UNI1_SETTLE_WINDOW_MAX);
        return UNI1_ERR_CONFIG;
    }
    if (o->project_id && (has_ctl(o->project_id) || !*o->project_id)) {
        snprintf(errbuf, errlen, "project_id must be a non-empty printable string");
        return UNI1_ERR_CONFIG;
    }
    /* These go into request headers or libcurl options verbatim: a CR or LF
     * would start a header of the caller's choosing. */
    const char *named[][2] = {{"user_agent", o->user_agent},
                              {"proxy", o->proxy},
                              {"ca_bundle", o->ca_bundle},
                              {"ca_fallback", o->ca_fallback}};
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        if (named[i][1] && has_ctl(named[i][1])) {
            snprintf(errbuf, errlen, "%s contains control characters", named[i][0]);
            return UNI1_ERR_CONFIG;
        }
    }
    uni1_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(errbuf, errlen, "out of memory");
        return UNI1_ERR_NOMEM;
    }
    st = normalise_base_url(o->base_url ? o->base_url : UNI1_DEFAULT_BASE_URL, &c->base_url,
                            &c->origin, errbuf, errlen);
    if (st != UNI1_OK) {
        free(c);
        return st;
    }
    int oom = 0;
    if (have_basic) {
        c->auth_header = basic_auth_header(o->api_key, o->api_secret);
    } else {
        size_t n = strlen(o->bearer_token) + 32;
        c->auth_header = malloc(n);
        if (c->auth_header)
            snprintf(c->auth_header, n, "Authorization: Bearer %s", o->bearer_token);
    }
    oom |= !c->auth_header;
    c->project_id_raw = dup_or_null(o->project_id, &oom);
    if (o->project_id) {
        char *esc = curl_easy_escape(NULL, o->project_id, 0);
        c->project_id = esc ? strdup(esc) : NULL;
        curl_free(esc);
        oom |= !c->project_id;
    }
    if (o->user_agent) {
        c->user_agent = dup_or_null(o->user_agent, &oom);
    } else {
        char ua[96];
        snprintf(ua, sizeof ua, "scenario-uni1/%s libcurl/%s", UNI1_VERSION, uni1_curl_version());
        c->user_agent = dup_or_null(ua, &oom);
    }
    oom |= uni1__ca_choose(c, o) < 0;
    c->proxy = (o->proxy && *o->proxy) ? dup_or_null(o->proxy, &oom) : NULL;
    c->connect_timeout = o->connect_timeout;
    c->request_timeout = o->request_timeout;
    /* Unset, a stall lasts no longer than the client's timeout: a user who
     * asked for 3 s is not held 30 s by a CDN that stopped sending. */
    c->stall_timeout = o->stall_timeout > 0 ? o->stall_timeout
                       : o->request_timeout < UNI1_STALL_TIMEOUT_DEFAULT
                           ? o->request_timeout
                           : UNI1_STALL_TIMEOUT_DEFAULT;
    c->backoff_base = o->backoff_base;
    c->backoff_max = o->backoff_max;
    c->max_retries = o->max_retries;
    c->settle_window = o->settle_window;
    c->resend_uncertain = o->resend_uncertain != 0;
    c->transport = o->transport;
    c->transport_userdata = o->transport_userdata;
    c->log = o->log;
    c->log_userdata = o->log_userdata;
    if (oom || pthread_mutex_init(&c->lock, NULL) != 0) {
        snprintf(errbuf, errlen, "out of memory");
        c->free_sessions = NULL;
        /* lock was not initialised: free the strings by hand */
        free(c->base_url);
        free(c->origin);
        free(c->project_id);
        free(c->project_id_raw);
        if (c->auth_header)
            OPENSSL_cleanse(c->auth_header, strlen(c->auth_header));
        free(c->auth_header);
        free(c->user_agent);
        free(c->ca_bundle);
        free(c->ca_path);
        free(c->ca_tried);
        free(c->proxy);
        free(c);
        return UNI1_ERR_NOMEM;
    }
    uni1__pool_register(c);
    *out = c;
    return UNI1_OK;
}

uni1_client *uni1_client_new(const uni1_options *o, char *errbuf, size_t errlen)
{
    uni1_client *c;
    uni1_client_create(o, &c, errbuf, errlen);
    return c;
}

void uni1_client_free(uni1_client *c)
{
    if (!c)
        return;
    uni1__engine_free(c); /* its tasks give their sessions back first */
    uni1__pool_free(c);
    pthread_mutex_destroy(&c->lock);
    free(c->base_url);
    free(c->origin);
    free(c->project_id);
    free(c->project_id_raw);
    OPENSSL_cleanse(c->auth_header, strlen(c->auth_header));
    free(c->auth_header);
    free(c->user_agent);
    free(c->ca_bundle);
    free(c->ca_path);
    free(c->ca_tried);
    free(c->proxy);
    free(c);
}

const char *uni1_client_base_url(const uni1_client *c)
{
    return c->base_url;
}
const char *uni1_client_project_id(const uni1_client *c)
{
    return c->project_id_raw;
}

void uni1_session_set_interrupt(uni1_session *s, uni1_interrupt_fn fn, void *userdata)
{
    s->interrupt = fn;
    s->interrupt_userdata = userdata;
}

void uni1_session_set_deadline(uni1_session *s, double deadline)
{
    s->deadline = deadline;
}

void uni1_session_wakeup(uni1_session *s)
{
    if (s->multi) /* none yet: no poll to cut short */
        curl_multi_wakeup(s->multi);
}

const uni1_error *uni1_session_error(const uni1_session *s)
{
    return &s->err;
}

uint64_t uni1_session_request_count(const uni1_session *s)
{
    return s->requests;
}

void uni1__reset_error(uni1_session *s)
{
    free(s->err.body);
    memset(&s->err, 0, sizeof s->err);
    s->err.retry_after = -1;
}

/* The message: lead (may be "") then the formatted text. */
static uni1_status set_error(uni1_session *s, uni1_status st, const char *lead, const char *fmt,
                             va_list ap)
{
    s->err.status = st;
    s->err.source = UNI1_MSG_CORE;
    int n = snprintf(s->err.message, sizeof s->err.message, "%s", lead);
    if (n >= 0 && (size_t)n < sizeof s->err.message)
        vsnprintf(s->err.message + n, sizeof s->err.message - (size_t)n, fmt, ap);
    return st;
}

uni1_status uni1__fail(uni1_session *s, uni1_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error(s, st, st == UNI1_ERR_PROTOCOL ? UNI1_MALFORMED ": " : "", fmt, ap);
    va_end(ap);
    return st;
}

uni1_status uni1__fail_answer(uni1_session *s, uni1_status st, const char *what, const char *fmt,
                              ...)
{
    char lead[96];
    snprintf(lead, sizeof lead, UNI1_MALFORMED " (%s): ", what);
    va_list ap;
    va_start(ap, fmt);
    set_error(s, st, lead, fmt, ap);
    va_end(ap);
    return st;
}

uni1_status uni1__fail_os(uni1_session *s, int errnum, const char *fmt, ...)
{
    s->err.status = UNI1_ERR_IO;
    s->err.source = UNI1_MSG_CORE;
    s->err.os_errno = errnum;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->err.message, sizeof s->err.message, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof s->err.message)
        snprintf(s->err.message + n, sizeof s->err.message - (size_t)n, ": %s", strerror(errnum));
    return UNI1_ERR_IO;
}

uni1_status uni1__same_id(uni1_session *s, const char *path, const char *what, const char *asked,
                          const char *got)
{
    if (strcmp(asked, got) == 0)
        return UNI1_OK;
    return uni1__fail(s, UNI1_ERR_PROTOCOL, "GET %s: the answer is about %s %.64s, not %s", path,
                      what, got, asked);
}

void uni1__log(uni1_session *s, uni1_log_level level, const char *fmt, ...)
{
    if (!s->client->log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->client->log(s->client->log_userdata, level, msg);
}

uni1_status uni1__sleep(uni1_session *s, double seconds)
{
    double until = uni1_monotonic() + seconds;
    int capped = 0;
    if (s->deadline > 0 && until > s->deadline) {
        until = s->deadline;
        capped = 1;
    }
    for (;;) {
        if (uni1__stopped(s))
            return uni1__fail(s, UNI1_ERR_INTERRUPTED, "interrupted");
        double left = until - uni1_monotonic();
        if (!(left > 0))
            break;
        if (s->task) {
            /* In the engine: a timer, not a thread asleep. */
            uni1__engine_park(s->task, until);
            continue;
        }
        /* Saturate in floating point before converting: any `seconds` (even
         * one whose milliseconds overflow an int) sleeps in bounded steps. */
        double step_ms = left * 1000.0 + 1.0;
        int ms = step_ms < UNI1_WAKE_INTERVAL_MS ? (int)step_ms : UNI1_WAKE_INTERVAL_MS;
        /* With no transfers added this is a plain sleep that another thread
         * can cut short with curl_multi_wakeup. */
        if (uni1__session_multi(s))
            curl_multi_poll(s->multi, NULL, 0, ms, NULL);
    }
    if (capped)
        return uni1__fail(s, UNI1_ERR_TIMEOUT, "deadline reached");
    return UNI1_OK;
}

int uni1__stopped(uni1_session *s)
{
    if (s->task)
        return uni1__task_cancelled(s->task);
    return s->interrupt && s->interrupt(s->interrupt_userdata);
}
