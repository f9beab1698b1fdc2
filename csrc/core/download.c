/* Downloads on the transport of http.c: the checks that keep a lying CDN
 * from losing or faking data (a short body framed as complete, a 206 for
 * another range, a text page, a body that never ends, a server that ignores
 * Range), Range resume, and parallel transfers. files.c puts the bytes in
 * memory or in files; the rules themselves are in cdn.c. */
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

int uni1__sink_rewind(uni1_sink *k)
{
    if (k->fd >= 0)
        return ftruncate(k->fd, (off_t)k->origin) == 0 &&
                       lseek(k->fd, (off_t)k->origin, SEEK_SET) >= 0
                   ? 0
                   : -1;
    if (k->buf)
        k->buf->len = (size_t)k->origin;
    return 0;
}

/* Judges the answer once its head is complete (the first body byte, or the
 * end of a transfer that had none). 0 to go on, -1 to refuse it. */
static int download_begin(uni1_sink *k)
{
    uni1_response_meta *m = k->meta;
    uni1_cdn_answer a = {m->head_status,    k->offset,      k->expect,
                         m->content_length, m->has_range,   m->range_start,
                         m->range_end,      m->range_total, m->content_type};
    long long cap = UNI1_DOWNLOAD_CAP;
    if (k->fd < 0 && (long long)k->cap - 1 < cap)
        cap = (long long)k->cap - 1;
    uni1_cdn_verdict v = uni1__cdn_judge(&a, cap, &k->total, &k->limit);
    k->begun = 1;
    /* A body of known size goes to memory in one allocation, not grown chunk
     * by chunk (each growth copies what came before and touches fresh
     * pages). If that much cannot be had now, the writes grow it as usual
     * and say so if they fail. */
    if (k->fd < 0 && k->buf && k->total > 0 && (v == UNI1_CDN_KEEP || v == UNI1_CDN_RESTART))
        (void)uni1__sink_reserve(k, (size_t)k->total + 1);
    switch (v) {
    case UNI1_CDN_DISCARD:
        k->begun = 2;
        return 0;
    case UNI1_CDN_RESTART:
        if (uni1__sink_rewind(k) != 0) {
            k->failed = 2;
            k->saved_errno = errno;
            return -1;
        }
        k->offset = 0;
        k->restarted = 1;
        return 0;
    case UNI1_CDN_KEEP:
        return 0;
    default:
        k->failed = 10 + (int)v;
        return -1;
    }
}

/* The write callback of downloads: judges the answer first, drops an error
 * page, and stops a body that runs past its declared size at once (a CDN
 * that never ends a body must not fill memory or the disk). */
static size_t download_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    uni1_sink *k = userdata;
    size_t n = size * nmemb;
    if (!k->begun && download_begin(k) < 0)
        return 0;
    if (k->begun == 2)
        return n;
    if (k->written + (long long)n > k->limit) {
        k->failed = 20;
        return 0;
    }
    return uni1__sink_write(ptr, size, nmemb, userdata);
}

/* The header callback of downloads: uni1__header_cb, plus the status line and the
 * Content-Range, which only downloads look at. */
static size_t download_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    uni1_response_meta *m = userdata;
    size_t n = size * nitems;
    if (n > 5 && strncmp(buf, "HTTP/", 5) == 0) {
        const char *sp = memchr(buf, ' ', n);
        m->head_status = sp ? strtol(sp + 1, NULL, 10) : 0;
        m->has_range = 0;
    } else if (n > 14 && strncasecmp(buf, "content-range:", 14) == 0) {
        char val[128];
        size_t vlen = n - 14 < sizeof val - 1 ? n - 14 : sizeof val - 1;
        memcpy(val, buf + 14, vlen);
        val[vlen] = 0;
        val[strcspn(val, "\r\n")] = 0;
        m->has_range =
            uni1__parse_content_range(val, &m->range_start, &m->range_end, &m->range_total) == 0;
    }
    return uni1__header_cb(buf, size, nitems, userdata);
}

int uni1__download_complete(const uni1_sink *k)
{
    if (k->begun != 1)
        return 0;
    return k->total < 0 || k->offset + k->written == k->total;
}

void uni1__setup_download(uni1_session *s, CURL *e, uni1_response_meta *m, uni1_sink *sink,
                          const char *url)
{
    curl_easy_reset(e);
    uni1__set_common(s, e, m, sink);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(e, CURLOPT_FAILONERROR, 0L);
    /* Never any credential here: no Authorization header is set on this
     * handle, and none may follow a redirect. */
    curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, download_write);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, download_header);
    /* An image body is a MiB or more: read it in 128 KiB pieces, not
     * libcurl's 16 KiB (eight times fewer reads and write callbacks). At
     * most UNI1_ENGINE_HOST_CONNECTIONS such buffers fill at once. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 128L << 10);
    m->head_status = 0;
    m->has_range = 0;
    sink->easy = e;
    sink->meta = m;
    sink->written = 0;
    sink->failed = 0;
    sink->begun = 0;
    sink->restarted = 0;
    sink->total = -1;
    sink->limit = 0;
    /* Bytes already kept: ask for the rest. Not CURLOPT_RESUME_FROM, which
     * makes libcurl fail a 200 answer for good; download_begin judges it. */
    if (sink->offset > 0) {
        char range[48];
        snprintf(range, sizeof range, "%lld-", sink->offset);
        curl_easy_setopt(e, CURLOPT_RANGE, range);
    }
}

uni1_status uni1__run_parallel(uni1_session *s, CURL **easies, size_t n, CURLcode *results,
                               uni1_response_meta *metas)
{
    size_t added = 0, left = n;
    uni1_status st = UNI1_OK;
    uni1_xfer *xs = calloc(n ? n : 1, sizeof *xs);
    if (!xs)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        results[i] = CURLE_FAILED_INIT;
        if (uni1__loop_add(s, easies[i], &xs[i]) != CURLM_OK) {
            st = uni1__fail(s, UNI1_ERR_NOMEM, "download: cannot start a transfer");
            break;
        }
        added++;
        s->requests++;
    }
    s->last_interrupt_check = uni1_monotonic();
    /* One stall clock for the batch: it fails when no transfer of it has
     * moved a byte for stall_timeout; the careful second pass then deals
     * with the laggards one by one. */
    curl_off_t moved = 0;
    double moved_at = s->last_interrupt_check;
    while (st == UNI1_OK && left > 0) {
        CURLMcode mc = uni1__loop_pump(s);
        if (mc != CURLM_OK) {
            st = uni1__fail(s, UNI1_ERR_NOMEM, "download: %s", curl_multi_strerror(mc));
            break;
        }
        for (size_t i = 0; i < added; i++) {
            if (xs[i].done && results[i] == CURLE_FAILED_INIT) {
                results[i] = xs[i].result;
                left--;
            }
        }
        if (left == 0)
            break;
        double now = uni1_monotonic();
        if (s->deadline > 0 && now >= s->deadline) {
            st = uni1__fail(s, UNI1_ERR_TIMEOUT, "download: deadline reached");
            break;
        }
        curl_off_t total = 0;
        int queued = 0;
        for (size_t i = 0; i < added; i++) {
            total += uni1__bytes_moved(easies[i]);
            queued |= results[i] == CURLE_FAILED_INIT && uni1__xfer_queued(easies[i]);
        }
        if (total != moved || queued) {
            moved = total;
            moved_at = now;
        } else if (now - moved_at >= s->client->stall_timeout) {
            break; /* not an error: the unfinished ones go to the second pass */
        }
        double wake_at = moved_at + s->client->stall_timeout;
        if (wake_at > now + UNI1_STALL_LOOK)
            wake_at = now + UNI1_STALL_LOOK; /* see uni1__run_transfer */
        if (s->deadline > 0 && s->deadline < wake_at)
            wake_at = s->deadline;
        if ((st = uni1__loop_wait(s, now, wake_at)) != UNI1_OK)
            break;
    }
    for (size_t i = 0; i < added; i++) {
        long code = 0;
        curl_easy_getinfo(easies[i], CURLINFO_RESPONSE_CODE, &code);
        metas[i].status = code;
        uni1__loop_remove(s, easies[i]);
    }
    free(xs);
    return st;
}

uni1_status uni1__download(uni1_session *s, const char *url, uni1_sink *sink, char *content_type,
                           size_t ct_len)
{
    uni1_client *c = s->client;
    CURL *e = uni1__session_easy(s, 1);
    char shown[256];
    uni1__url_for_log(url, shown, sizeof shown);
    uni1__reset_error(s);
    if (!e)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        return uni1__fail(s, UNI1_ERR_PROTOCOL, "asset URL is not http(s)");
    sink->origin = 0;
    if (sink->fd >= 0) {
        off_t start = lseek(sink->fd, 0, SEEK_CUR);
        sink->origin = start > 0 ? (long long)start : 0;
    } else if (sink->buf) {
        sink->origin = (long long)sink->buf->len;
    }
    long long have = 0; /* bytes kept from earlier attempts */
    uni1_status st = UNI1_OK;
    uni1_retry retry;
    uni1__retry_init(&retry, c->max_retries);
    /* A refused answer (a document, not the image; more bytes than declared)
     * is the CDN's or a proxy's passing fault as often as not: it gets one
     * fresh attempt from zero before it is reported. */
    int second_chance = 1;
    for (;;) {
        uni1_response_meta m;
        memset(&m, 0, sizeof m);
        sink->offset = have;
        uni1__setup_download(s, e, &m, sink, url);
        st = uni1__run_transfer(s, e, &m, sink, "download", 1);
        long status = m.status;
        if (st == UNI1_OK && !sink->begun && download_begin(sink) < 0)
            st = uni1__map_curl(s, CURLE_WRITE_ERROR, &m, sink, "download");
        if (sink->restarted)
            have = 0;
        if (sink->begun == 1)
            have += sink->written;
        if (st == UNI1_OK && (status == 200 || status == 206)) {
            if (uni1__download_complete(sink)) {
                if (content_type && ct_len)
                    snprintf(content_type, ct_len, "%s", m.content_type);
                uni1__log(s, UNI1_LOG_DEBUG, "GET %s -> %ld (%lld bytes)", shown, status, have);
                sink->written = have;
                return UNI1_OK;
            }
            /* Framed as complete (a closed connection, a last chunk) but
             * short of the declared size: resume after what arrived. */
            st = uni1__fail(s, UNI1_ERR_NETWORK,
                            "download: the body ended after %lld of %lld bytes", have, sink->total);
        } else if (st == UNI1_OK) {
            /* An HTTP error from the CDN: its page was not kept. */
            st = uni1__fail(s, UNI1_ERR_HTTP, "download: HTTP %ld from %s", status, shown);
            s->err.http_status = status;
            s->err.retry_after = m.retry_after;
        } else if (sink->failed == 10 + UNI1_CDN_BAD_RANGE ||
                   (sink->failed == 20 && status == 206)) {
            /* A 206 that cannot be trusted: what was kept may be just as
             * wrong. Start again from zero, without Range. */
            if (uni1__sink_rewind(sink) != 0)
                return uni1__fail(s, UNI1_ERR_IO, "download: cannot rewind the file");
            have = 0;
            char why[sizeof s->err.message];
            snprintf(why, sizeof why, "%s", s->err.message);
            st = uni1__fail(s, UNI1_ERR_NETWORK, "%s; starting again from zero", why);
        }
        if (st == UNI1_ERR_PROTOCOL && second_chance &&
            (sink->failed == 10 + UNI1_CDN_NOT_IMAGE || (sink->failed == 20 && status == 200))) {
            second_chance = 0;
            if (uni1__sink_rewind(sink) != 0)
                return uni1__fail(s, UNI1_ERR_IO, "download: cannot rewind the file");
            have = 0;
            uni1__log(s, UNI1_LOG_INFO, "%s; one more attempt from zero", s->err.message);
            if ((st = uni1__sleep(s, c->backoff_base)) != UNI1_OK)
                break;
            continue;
        }
        char what[320];
        snprintf(what, sizeof what, "download %s (resume at %lld)", shown, have);
        if ((st = uni1__retry(s, &retry, st, what)) != UNI1_OK)
            break;
    }
    sink->written = have;
    return st;
}
