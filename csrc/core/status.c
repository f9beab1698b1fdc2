/* Status codes, job states, the clear and copy functions of the public data
 * types, and the small string helpers declared in uni1_internal.h (they live
 * here because every build of the core links this file). */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "platform.h"
#include "uni1.h"
#include "uni1_internal.h"

/* ------------------------------------------------------------------------ */
/* Status codes                                                             */
/* ------------------------------------------------------------------------ */

static const char *const uni1_status_names[UNI1_STATUS_COUNT] = {
    [UNI1_OK] = "UNI1_OK",
    [UNI1_ERR_INVALID] = "UNI1_ERR_INVALID",
    [UNI1_ERR_CONFIG] = "UNI1_ERR_CONFIG",
    [UNI1_ERR_NOMEM] = "UNI1_ERR_NOMEM",
    [UNI1_ERR_CONNECT] = "UNI1_ERR_CONNECT",
    [UNI1_ERR_NETWORK] = "UNI1_ERR_NETWORK",
    [UNI1_ERR_TIMEOUT] = "UNI1_ERR_TIMEOUT",
    [UNI1_ERR_TLS] = "UNI1_ERR_TLS",
    [UNI1_ERR_HTTP] = "UNI1_ERR_HTTP",
    [UNI1_ERR_PROTOCOL] = "UNI1_ERR_PROTOCOL",
    [UNI1_ERR_IO] = "UNI1_ERR_IO",
    [UNI1_ERR_EXISTS] = "UNI1_ERR_EXISTS",
    [UNI1_ERR_INTERRUPTED] = "UNI1_ERR_INTERRUPTED",
    [UNI1_ERR_JOB_FAILED] = "UNI1_ERR_JOB_FAILED",
    [UNI1_ERR_JOB_CANCELED] = "UNI1_ERR_JOB_CANCELED",
    [UNI1_ERR_UNCERTAIN] = "UNI1_ERR_UNCERTAIN",
};

const char *uni1_status_name(uni1_status st)
{
    /* The enum may be signed or unsigned depending on the compiler; compare
     * as an integer so an out-of-range value from a binding is caught. */
    int v = (int)st;
    if (v < 0 || v >= (int)UNI1_STATUS_COUNT || !uni1_status_names[v])
        return "UNI1_ERR_UNKNOWN";
    return uni1_status_names[v];
}

int uni1_status_is_retryable(uni1_status st, long http_status)
{
    switch (st) {
    case UNI1_ERR_CONNECT:
    case UNI1_ERR_NETWORK:
    case UNI1_ERR_TIMEOUT:
        return 1;
    case UNI1_ERR_HTTP:
        /* 408 Request Timeout and 429 Too Many Requests are the only 4xx a
         * repeat can cure; every other 4xx (400 validation, 401/403 auth or
         * plan, 404 unknown id) will fail the same way again. */
        return http_status == 408 || http_status == 429 ||
               (http_status >= 500 && http_status <= 599);
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Job states                                                               */
/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    uni1_job_state state;
} uni1_state_table[] = {
    /* Canonical names first: uni1_job_state_name picks the first match. */
    {"pending", UNI1_JOB_PENDING},
    {"queued", UNI1_JOB_QUEUED},
    {"warming-up", UNI1_JOB_WARMING_UP},
    {"in-progress", UNI1_JOB_IN_PROGRESS},
    {"finalizing", UNI1_JOB_FINALIZING},
    {"success", UNI1_JOB_SUCCESS},
    {"failure", UNI1_JOB_FAILURE},
    {"canceled", UNI1_JOB_CANCELED},
    /* Spellings seen on some guide pages. */
    {"succeeded", UNI1_JOB_SUCCESS},
    {"failed", UNI1_JOB_FAILURE},
    {"cancelled", UNI1_JOB_CANCELED},
};

uni1_job_state uni1_job_state_from_string(const char *s)
{
    if (!s)
        return UNI1_JOB_UNKNOWN;
    for (size_t i = 0; i < sizeof uni1_state_table / sizeof uni1_state_table[0]; i++)
        if (strcmp(s, uni1_state_table[i].name) == 0)
            return uni1_state_table[i].state;
    return UNI1_JOB_UNKNOWN;
}

const char *uni1_job_state_name(uni1_job_state st)
{
    for (size_t i = 0; i < sizeof uni1_state_table / sizeof uni1_state_table[0]; i++)
        if (uni1_state_table[i].state == st)
            return uni1_state_table[i].name;
    return "unknown";
}

int uni1_job_state_is_terminal(uni1_job_state st)
{
    return st == UNI1_JOB_SUCCESS || st == UNI1_JOB_FAILURE || st == UNI1_JOB_CANCELED;
}

/* ------------------------------------------------------------------------ */
/* Clear and copy                                                           */
/* ------------------------------------------------------------------------ */

void uni1_job_clear(uni1_job *j)
{
    if (!j)
        return;
    if (j->asset_ids) {
        for (size_t i = 0; i < j->n_assets; i++)
            free(j->asset_ids[i]);
        free(j->asset_ids);
    }
    free(j->error);
    free(j->hint);
    free(j->raw_json);
    memset(j, 0, sizeof *j);
}

uni1_status uni1_job_copy(uni1_job *dst, const uni1_job *src)
{
    if (!dst || !src)
        return UNI1_ERR_INVALID;
    if (dst == src)
        return UNI1_OK;
    /* Build into a temporary so dst is only written once, whole. */
    uni1_job tmp;
    memcpy(&tmp, src, sizeof tmp);
    tmp.asset_ids = NULL;
    tmp.n_assets = 0;
    tmp.error = tmp.hint = tmp.raw_json = NULL;
    tmp.raw_len = 0;

    if (src->n_assets > 0 && src->asset_ids) {
        tmp.asset_ids = calloc(src->n_assets, sizeof *tmp.asset_ids);
        if (!tmp.asset_ids)
            goto nomem;
        tmp.n_assets = src->n_assets;
        for (size_t i = 0; i < src->n_assets; i++) {
            if (src->asset_ids[i] && !(tmp.asset_ids[i] = uni1__strdup(src->asset_ids[i])))
                goto nomem;
        }
    }
    if (src->error && !(tmp.error = uni1__strdup(src->error)))
        goto nomem;
    if (src->hint && !(tmp.hint = uni1__strdup(src->hint)))
        goto nomem;
    if (src->raw_json) {
        if (!(tmp.raw_json = uni1__memdup(src->raw_json, src->raw_len)))
            goto nomem;
        tmp.raw_len = src->raw_len;
    }
    *dst = tmp;
    return UNI1_OK;

nomem:
    uni1_job_clear(&tmp);
    memset(dst, 0, sizeof *dst);
    return UNI1_ERR_NOMEM;
}

void uni1_job_list_clear(uni1_job_list *l)
{
    if (!l)
        return;
    if (l->jobs) {
        for (size_t i = 0; i < l->n_jobs; i++)
            uni1_job_clear(&l->jobs[i]);
        free(l->jobs);
    }
    free(l->next_token);
    memset(l, 0, sizeof *l);
}

void uni1_asset_clear(uni1_asset *a)
{
    if (!a)
        return;
    free(a->url);
    free(a->raw_json);
    memset(a, 0, sizeof *a);
    /* "absent" for size is -1, but a cleared struct is all zeros as the
     * header promises; parsers set -1 when they fill it. */
}

/* Spare download buffers. An image body is a MiB or more: malloc serves
 * that from fresh pages (mmap, or an arena top it trims again), so every
 * download paid a page fault per 4 KiB written and every free gave the
 * pages back. A few freed buffers are kept for the next download instead;
 * the engine drops them when it goes idle (uni1__spare_drop). */
#define SPARE_SLOTS 8
#define SPARE_MIN ((size_t)64 << 10)
#define SPARE_MAX_BYTES ((size_t)32 << 20)
static pthread_mutex_t spare_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    unsigned char *data;
    size_t cap;
} spare[SPARE_SLOTS];
static size_t spare_bytes;

static int spare_put(unsigned char *data, size_t cap)
{
    int kept = 0;
    pthread_mutex_lock(&spare_mu);
    if (spare_bytes + cap <= SPARE_MAX_BYTES)
        for (size_t i = 0; i < SPARE_SLOTS && !kept; i++)
            if (!spare[i].data) {
                spare[i].data = data;
                spare[i].cap = cap;
                spare_bytes += cap;
                kept = 1;
            }
    pthread_mutex_unlock(&spare_mu);
    return kept;
}

unsigned char *uni1__spare_take(size_t want, size_t *cap)
{
    if (want < SPARE_MIN)
        return NULL;
    pthread_mutex_lock(&spare_mu);
    /* The smallest that fits, and not one far larger than asked (it would
     * hold its unused pages for as long as the body lives). */
    size_t best = SPARE_SLOTS;
    for (size_t i = 0; i < SPARE_SLOTS; i++)
        if (spare[i].data && spare[i].cap >= want && spare[i].cap <= 2 * want &&
            (best == SPARE_SLOTS || spare[i].cap < spare[best].cap))
            best = i;
    unsigned char *p = NULL;
    if (best < SPARE_SLOTS) {
        p = spare[best].data;
        *cap = spare[best].cap;
        spare_bytes -= spare[best].cap;
        spare[best].data = NULL;
    }
    pthread_mutex_unlock(&spare_mu);
    return p;
}

void uni1__spare_drop(void)
{
    pthread_mutex_lock(&spare_mu);
    for (size_t i = 0; i < SPARE_SLOTS; i++) {
        free(spare[i].data);
        spare[i].data = NULL;
    }
    spare_bytes = 0;
    pthread_mutex_unlock(&spare_mu);
}

void uni1_release_spare_buffers(void)
{
    uni1__spare_drop();
}

void uni1__spare_atfork(int phase)
{
    if (phase == 0)
        pthread_mutex_lock(&spare_mu);
    else if (phase == 1)
        pthread_mutex_unlock(&spare_mu);
    else
        pthread_mutex_init(&spare_mu, NULL);
}

void uni1_buffer_clear(uni1_buffer *b)
{
    if (!b)
        return;
    if (b->data && (b->cap < SPARE_MIN || !spare_put(b->data, b->cap)))
        free(b->data);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------------ */
/* Helpers declared in uni1_internal.h                                      */
/* ------------------------------------------------------------------------ */

void uni1__errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (n < 0)
        err[0] = '\0';
    else if ((size_t)n >= errlen) {
        /* vsnprintf cut at a byte; do not leave half a UTF-8 character. */
        size_t end = errlen - 1, k = end;
        const unsigned char *u = (const unsigned char *)err;
        while (k > 0 && end - k < 4 && (u[k - 1] & 0xC0) == 0x80)
            k--;
        if (k > 0 && u[k - 1] >= 0xC0) {
            size_t need = u[k - 1] >= 0xF0 ? 4 : u[k - 1] >= 0xE0 ? 3 : 2;
            if (end - (k - 1) < need)
                err[k - 1] = '\0';
        }
    }
}

char *uni1__memdup(const void *p, size_t n)
{
    if (!p || n == SIZE_MAX)
        return NULL;
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

char *uni1__strdup(const char *s)
{
    if (!s)
        return NULL;
    return uni1__memdup(s, strlen(s));
}

size_t uni1__utf8_seq_len(const unsigned char *p, size_t avail)
{
    if (avail == 0)
        return 0;
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the 2nd byte */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlongs */
        else if (c == 0xED)
            hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* no overlongs */
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else
        return 0; /* continuation byte, C0/C1, F5..FF */
    if (avail < n)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

int uni1__utf8_valid(const char *s, size_t len, size_t *bad_offset)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = uni1__utf8_seq_len(p + i, len - i);
        if (n == 0) {
            if (bad_offset)
                *bad_offset = i;
            return 0;
        }
        i += n;
    }
    return 1;
}

static int uni1__is_id_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

int uni1__is_url_id(const char *s)
{
    if (!s)
        return 0;
    size_t i = 0;
    for (; s[i]; i++) {
        if (i >= UNI1_ID_MAX - 1 || !uni1__is_id_char((unsigned char)s[i]))
            return 0;
    }
    return i > 0;
}

int uni1__copy_trunc(char *dst, size_t dstlen, const char *src)
{
    if (!src) {
        dst[0] = '\0';
        return 1;
    }
    size_t n = strnlen(src, dstlen);
    if (n < dstlen) {
        memcpy(dst, src, n + 1);
        return 1;
    }
    /* Too long: keep dstlen-1 bytes, minus any partial character. */
    size_t end = dstlen - 1;
    const unsigned char *u = (const unsigned char *)src;
    if (end > 0 && (u[end] & 0xC0) == 0x80) {
        /* src[end] continues a character: drop back to its lead byte. */
        while (end > 0 && (u[end] & 0xC0) == 0x80)
            end--;
    }
    memcpy(dst, src, end);
    dst[end] = '\0';
    return 0;
}

/* "2026-11-23T22:05:20.123Z" to Unix seconds; -1 if it does not parse. */
double uni1__parse_iso8601(const char *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    double frac = 0;
    int n = 0;
    if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6)
        return -1;
    if (t[n] == '.') {
        char *end;
        frac = strtod(t + n, &end);
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t secs = uni1__timegm(&tm);
    return secs == (time_t)-1 ? -1 : (double)secs + frac;
}
