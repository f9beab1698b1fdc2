/* Large uploads: the multipart POST /uploads flow. The parser of upload
 * objects and the part plan are pure; uni1_upload_file drives the flow on a
 * session (API requests through uni1__api, parts through uni1__put).
 *
 * The fuzz target and its replay drivers link only the pure core, so they
 * compile this file with UNI1_UPLOAD_PURE_ONLY defined, which leaves out
 * everything below the parser that needs a session. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uni1.h"
#include "uni1_internal.h"

#define UPLOAD_URL_MAX (64 * 1024) /* longest part URL accepted */

/* ------------------------------------------------------------------------ */
/* States                                                                   */
/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    uni1_upload_state state;
} upload_state_table[] = {
    {"pending", UNI1_UPLOAD_PENDING},     {"validating", UNI1_UPLOAD_VALIDATING},
    {"validated", UNI1_UPLOAD_VALIDATED}, {"imported", UNI1_UPLOAD_IMPORTED},
    {"failed", UNI1_UPLOAD_FAILED},       {"failure", UNI1_UPLOAD_FAILED},
    {"error", UNI1_UPLOAD_FAILED},
};

uni1_upload_state uni1_upload_state_from_string(const char *s)
{
    if (!s)
        return UNI1_UPLOAD_UNKNOWN;
    for (size_t i = 0; i < sizeof upload_state_table / sizeof *upload_state_table; i++)
        if (strcmp(s, upload_state_table[i].name) == 0)
            return upload_state_table[i].state;
    return UNI1_UPLOAD_UNKNOWN;
}

const char *uni1_upload_state_name(uni1_upload_state st)
{
    switch (st) {
    case UNI1_UPLOAD_PENDING:
        return "pending";
    case UNI1_UPLOAD_VALIDATING:
        return "validating";
    case UNI1_UPLOAD_VALIDATED:
        return "validated";
    case UNI1_UPLOAD_IMPORTED:
        return "imported";
    case UNI1_UPLOAD_FAILED:
        return "failed";
    default:
        return "unknown";
    }
}

void uni1_upload_clear(uni1_upload *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n_parts; i++)
        free(u->parts[i].url);
    free(u->parts);
    free(u->error_message);
    free(u->raw_json);
    memset(u, 0, sizeof *u);
}

int uni1_upload_plan(long long size, long long *part_size)
{
    long long ps = UNI1_UPLOAD_PART_SIZE;
    if (part_size)
        *part_size = 0;
    if (size <= 0 || size / UNI1_UPLOAD_MAX_PARTS > UNI1_UPLOAD_MAX_PART_SIZE)
        return 0;
    if (size > ps * UNI1_UPLOAD_MAX_PARTS) {
        /* Larger parts, rounded up to a MiB, so the count stays in bounds. */
        ps = (size + UNI1_UPLOAD_MAX_PARTS - 1) / UNI1_UPLOAD_MAX_PARTS;
        ps = (ps + (1LL << 20) - 1) & ~((1LL << 20) - 1);
        if (ps > UNI1_UPLOAD_MAX_PART_SIZE)
            return 0;
    }
    if (part_size)
        *part_size = ps;
    return (int)((size + ps - 1) / ps);
}

/* ------------------------------------------------------------------------ */
/* Parser                                                                   */
/* ------------------------------------------------------------------------ */

/* The member `key` of obj, or NULL when absent or null. */

/* Printable ASCII other than space, at most max bytes: what may go into a
 * URL or a request line. */

static int is_http_url(const char *s)
{
    static const char *const schemes[] = {"https://", "http://"};
    for (size_t k = 0; k < 2; k++) {
        size_t n = strlen(schemes[k]), i = 0;
        for (; i < n; i++) {
            char c = s[i];
            if (c >= 'A' && c <= 'Z')
                c = (char)(c - 'A' + 'a');
            if (c != schemes[k][i])
                break;
        }
        if (i == n)
            return 1;
    }
    return 0;
}

static int part_by_number(const void *a, const void *b)
{
    int x = ((const uni1_upload_part *)a)->number, y = ((const uni1_upload_part *)b)->number;
    return (x > y) - (x < y);
}

/* parts[]: fills out->parts; on failure the caller clears out. */
static uni1_status parse_parts(const cJSON *parts, uni1_upload *out, char *err, size_t errlen)
{
    if (!cJSON_IsArray(parts)) {
        uni1__errf(err, errlen, "upload.parts: expected an array, got %s", uni1__json_type(parts));
        return UNI1_ERR_PROTOCOL;
    }
    int n = cJSON_GetArraySize(parts);
    if (n == 0)
        return UNI1_OK;
    if (n > UNI1_UPLOAD_MAX_PARTS) {
        uni1__errf(err, errlen, "upload.parts: %d parts, more than %d", n, UNI1_UPLOAD_MAX_PARTS);
        return UNI1_ERR_PROTOCOL;
    }
    out->parts = calloc((size_t)n, sizeof *out->parts);
    if (!out->parts) {
        uni1__errf(err, errlen, "upload: out of memory");
        return UNI1_ERR_NOMEM;
    }
    size_t i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, parts)
    {
        uni1_upload_part *p = &out->parts[i];
        if (!cJSON_IsObject(item)) {
            uni1__errf(err, errlen, "upload.parts[%zu]: expected an object, got %s", i,
                       uni1__json_type(item));
            return UNI1_ERR_PROTOCOL;
        }
        const cJSON *num = uni1__member(item, "number");
        if (!num) {
            uni1__errf(err, errlen, "upload.parts[%zu]: no number", i);
            return UNI1_ERR_PROTOCOL;
        }
        double d = cJSON_IsNumber(num) ? num->valuedouble : NAN;
        if (!cJSON_IsNumber(num) || !isfinite(d) || d != floor(d) || d < 1 ||
            d > UNI1_UPLOAD_MAX_PARTS) {
            uni1__errf(err, errlen, "upload.parts[%zu].number: expected a whole number in 1..%d", i,
                       UNI1_UPLOAD_MAX_PARTS);
            return UNI1_ERR_PROTOCOL;
        }
        p->number = (int)d;
        const cJSON *url = uni1__member(item, "url");
        if (!url) {
            uni1__errf(err, errlen, "upload.parts[%zu]: no url", i);
            return UNI1_ERR_PROTOCOL;
        }
        if (!cJSON_IsString(url)) {
            uni1__errf(err, errlen, "upload.parts[%zu].url: expected a string, got %s", i,
                       uni1__json_type(url));
            return UNI1_ERR_PROTOCOL;
        }
        /* The client PUTs the file there: http(s) only, nothing libcurl
         * would read as another protocol, no spaces or control bytes. */
        if (!is_http_url(url->valuestring)) {
            uni1__errf(err, errlen, "upload.parts[%zu].url: not an http(s) URL", i);
            return UNI1_ERR_PROTOCOL;
        }
        if (!uni1__is_url_text(url->valuestring, UPLOAD_URL_MAX)) {
            uni1__errf(err, errlen,
                       "upload.parts[%zu].url: not printable ASCII or longer than %d bytes", i,
                       UPLOAD_URL_MAX);
            return UNI1_ERR_PROTOCOL;
        }
        /* Informational. */
        const cJSON *exp = uni1__member(item, "expires");
        if (cJSON_IsString(exp) && uni1__is_url_text(exp->valuestring, sizeof p->expires - 1))
            memcpy(p->expires, exp->valuestring, strlen(exp->valuestring) + 1);
        if (!(p->url = uni1__strdup(url->valuestring))) {
            uni1__errf(err, errlen, "upload: out of memory");
            return UNI1_ERR_NOMEM;
        }
        out->n_parts = ++i;
    }
    qsort(out->parts, out->n_parts, sizeof *out->parts, part_by_number);
    for (size_t k = 1; k < out->n_parts; k++) {
        if (out->parts[k].number == out->parts[k - 1].number) {
            uni1__errf(err, errlen, "upload.parts: part number %d given twice",
                       out->parts[k].number);
            return UNI1_ERR_PROTOCOL;
        }
    }
    return UNI1_OK;
}

uni1_status uni1_parse_upload(const char *buf, size_t len, uni1_upload *out, char *err,
                              size_t errlen)
{
    if (!out) {
        uni1__errf(err, errlen, "parse_upload: no output given");
        return UNI1_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    cJSON *root;
    uni1_status st = uni1__doc_parse(buf, len, "upload response", &root, err, errlen);
    if (st != UNI1_OK)
        return st;
    st = UNI1_ERR_PROTOCOL;
    const cJSON *v;
    /* The id goes into URL paths: strict. */
    const cJSON *up = uni1__envelope(root, "upload", "upload response", err, errlen);
    if (!up || uni1__take_id(up, "upload", "id", "uploadId", out->id, err, errlen) != 0)
        goto done;

    /* Status: an unknown string is kept (truncated) and is non-terminal. */
    out->state = UNI1_UPLOAD_UNKNOWN;
    v = uni1__member(up, "status");
    if (v) {
        if (!cJSON_IsString(v)) {
            uni1__errf(err, errlen, "upload.status: expected a string, got %s", uni1__json_type(v));
            goto done;
        }
        out->state = uni1_upload_state_from_string(v->valuestring);
        uni1__copy_trunc(out->status, sizeof out->status,
                         out->state == UNI1_UPLOAD_UNKNOWN ? v->valuestring
                                                           : uni1_upload_state_name(out->state));
    }

    v = uni1__member(up, "parts");
    if (v && (st = parse_parts(v, out, err, errlen)) != UNI1_OK)
        goto done;
    st = UNI1_ERR_PROTOCOL;

    /* The asset id once imported: strict (it goes into a URL path); an empty
     * string reads as "not yet". */
    v = uni1__member(up, "entityId");
    if (v) {
        if (!cJSON_IsString(v)) {
            uni1__errf(err, errlen, "upload.entityId: expected a string, got %s",
                       uni1__json_type(v));
            goto done;
        }
        if (v->valuestring[0]) {
            if (!uni1__is_url_id(v->valuestring)) {
                uni1__errf(err, errlen,
                           "upload.entityId: not a valid id (1 to %d of A-Z a-z 0-9 _ -)",
                           UNI1_ID_MAX - 1);
                goto done;
            }
            memcpy(out->entity_id, v->valuestring, strlen(v->valuestring) + 1);
        }
    }

    static const char *const reason_keys[] = {"errorMessage", "error", "failureReason", "reason"};
    for (size_t k = 0; !out->error_message && k < sizeof reason_keys / sizeof *reason_keys; k++)
        if (uni1__reason_text(uni1__member(up, reason_keys[k]), &out->error_message) != UNI1_OK)
            goto nomem;

    if (uni1__raw_json(up, &out->raw_json, &out->raw_len) != UNI1_OK)
        goto nomem;
    st = UNI1_OK;
    goto done;

nomem:
    uni1__errf(err, errlen, "upload: out of memory");
    st = UNI1_ERR_NOMEM;
done:
    if (st != UNI1_OK)
        uni1_upload_clear(out);
    cJSON_Delete(root);
    return st;
}

#ifndef UNI1_UPLOAD_PURE_ONLY
/* ------------------------------------------------------------------------ */
/* The flow                                                                 */
/* ------------------------------------------------------------------------ */

#include <unistd.h>

#include "platform.h"
#include "retry.h"
#include "session.h"

#define POLL_FIRST 0.2 /* seconds before the first poll after "complete" */
#define POLL_LONGEST 2.0

static uni1_status parse_fail(uni1_session *s, uni1_status st, const char *err)
{
    return uni1__fail_answer(s, st, "upload", "%s", err);
}

/* GET /uploads/{id} into *out (cleared first). */
static uni1_status get_upload(uni1_session *s, const char *id, uni1_upload *out)
{
    char path[UNI1_ID_MAX + 16];
    snprintf(path, sizeof path, "/uploads/%s", id);
    uni1_api_call call = {"GET", path, NULL, NULL, 0, 1, 0};
    char *resp = NULL;
    size_t len = 0;
    uni1_upload_clear(out);
    uni1_status st = uni1__api(s, &call, &resp, &len, NULL);
    if (st != UNI1_OK)
        return st;
    char err[256];
    st = uni1_parse_upload(resp, len, out, err, sizeof err);
    free(resp);
    if (st != UNI1_OK)
        return parse_fail(s, st, err);
    st = uni1__same_id(s, path, "upload", id, out->id);
    if (st != UNI1_OK)
        uni1_upload_clear(out);
    return st;
}

/* Reads exactly len bytes at offset; UNI1_ERR_IO when the file is shorter. */
static uni1_status read_part(uni1_session *s, int fd, unsigned char *buf, size_t len,
                             long long offset, const char *name)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = uni1__pread(fd, buf + done, len - done, offset + (long long)done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return uni1__fail_os(s, errno, "upload of %s: cannot read the file", name);
        }
        if (n == 0)
            return uni1__fail(s, UNI1_ERR_IO,
                              "upload of %s: the file ended at %lld bytes, before the size "
                              "given (it changed while being uploaded?)",
                              name, offset + (long long)done);
        done += (size_t)n;
    }
    return UNI1_OK;
}

/* The text of the XML element <tag> in an S3-style error document, printable
 * ASCII only, or "" (the CDN's answer is not trusted to be anything). */
static void xml_text(const char *doc, const char *tag, char *out, size_t n)
{
    char open[32], close[32];
    out[0] = 0;
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *a = doc ? strstr(doc, open) : NULL;
    const char *b = a ? strstr(a, close) : NULL;
    if (!b)
        return;
    a += strlen(open);
    size_t o = 0;
    for (; a < b && o + 1 < n; a++)
        if ((unsigned char)*a >= 0x20 && (unsigned char)*a < 0x7f)
            out[o++] = *a;
    out[o] = 0;
}

/* Rewrites the message of a failed part so it names the file, and for a
 * refusal, what the storage said (the status stays in http_status). */
static void describe_part_failure(uni1_session *s, uni1_status st, const char *name,
                                  const uni1_upload_part *p, size_t n_parts)
{
    if (st == UNI1_ERR_HTTP) {
        char shown[256], code[64], text[200];
        size_t ulen = strcspn(p->url, "?#"); /* the query holds the signature */
        snprintf(shown, sizeof shown, "%.*s", (int)(ulen < 255 ? ulen : 255), p->url);
        xml_text(s->err.body, "Code", code, sizeof code);
        xml_text(s->err.body, "Message", text, sizeof text);
        uni1__fail(s, st, "upload of %s: part %d of %zu refused by %s%s%s%s%s%s", name, p->number,
                   n_parts, shown, text[0] || code[0] ? ": " : "", text, code[0] ? " (" : "", code,
                   code[0] ? ")" : "");
    } else if (uni1_status_is_retryable(st, 0)) {
        char prev[sizeof s->err.message];
        memcpy(prev, s->err.message, sizeof prev);
        uni1__fail(s, st, "upload of %s: %s", name, prev);
    }
}

/* One part, retried on transient failures. */
static uni1_status put_part(uni1_session *s, const uni1_upload_part *p, const unsigned char *data,
                            size_t len, size_t n_parts)
{
    char what[64];
    snprintf(what, sizeof what, "part %d of %zu", p->number, n_parts);
    uni1_retry retry;
    uni1__retry_init(&retry, s->client->max_retries);
    for (;;) {
        uni1_status st = uni1__put(s, p->url, data, len, what);
        if (st == UNI1_OK)
            return UNI1_OK;
        if ((st = uni1__retry(s, &retry, st, what)) != UNI1_OK)
            return st;
    }
}

/* POST /uploads/{id}/action {"action":"complete"}. The action is not
 * repeatable (a second one is refused once the first went through), so
 * after a failure that may hide a success the upload's state decides:
 * anything past "pending" means the server has it. A fresh connection keeps
 * libcurl from re-sending the POST on its own when a reused connection dies
 * without an answer. *state gets the upload as the server last showed it
 * (may be left cleared). */
static uni1_status complete_upload(uni1_session *s, const char *id, uni1_upload *state)
{
    char path[UNI1_ID_MAX + 24];
    snprintf(path, sizeof path, "/uploads/%s/action", id);
    static const char body[] = "{\"action\":\"complete\"}";
    uni1_api_call call = {"POST", path, NULL, body, sizeof body - 1, 0, 1};
    uni1_retry retry;
    uni1__retry_init(&retry, s->client->max_retries);
    for (;;) {
        char *resp = NULL;
        size_t len = 0;
        uni1_status st = uni1__api(s, &call, &resp, &len, NULL);
        if (st == UNI1_OK) {
            char err[256];
            /* The answer's content is a courtesy: polling follows anyway. */
            if (uni1_parse_upload(resp, len, state, err, sizeof err) != UNI1_OK ||
                strcmp(state->id, id) != 0)
                uni1_upload_clear(state);
            free(resp);
            return UNI1_OK;
        }
        if (st == UNI1_ERR_INTERRUPTED)
            return st;
        long http = s->err.http_status;
        int transient = uni1_status_is_retryable(st, http);
        /* A refusal may be "already completed" (an earlier attempt went
         * through); a real one leaves the upload pending. */
        int maybe_done = st == UNI1_ERR_HTTP && (http == 400 || http == 409);
        if (!transient && !maybe_done)
            return st;
        uni1_error saved = s->err;
        s->err.body = NULL;
        uni1_status gst = get_upload(s, id, state);
        if (gst == UNI1_OK && state->state != UNI1_UPLOAD_PENDING &&
            state->state != UNI1_UPLOAD_UNKNOWN) {
            free(saved.body);
            uni1__reset_error(s);
            uni1__log(s, UNI1_LOG_DEBUG, "upload %s: complete went through (%s)", id,
                      state->status);
            return UNI1_OK;
        }
        uni1_upload_clear(state);
        uni1__reset_error(s);
        s->err = saved;
        if (gst == UNI1_ERR_INTERRUPTED)
            return uni1__fail(s, UNI1_ERR_INTERRUPTED, "interrupted");
        if ((st = uni1__retry(s, &retry, st, "POST /uploads/{id}/action")) != UNI1_OK)
            return st;
    }
}

static int valid_upload_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 255 || !uni1__utf8_valid(name, n, NULL))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return 0;
    return 1;
}

static char *create_body(const char *name, const char *mime_type, int parts, long long size)
{
    cJSON *obj = cJSON_CreateObject();
    char *body = NULL;
    if (obj && cJSON_AddStringToObject(obj, "fileName", name) &&
        cJSON_AddStringToObject(obj, "contentType", mime_type) &&
        cJSON_AddStringToObject(obj, "kind", "image") &&
        cJSON_AddNumberToObject(obj, "parts", parts) &&
        cJSON_AddNumberToObject(obj, "fileSize", (double)size))
        body = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    return body;
}

/* Polls until imported; on UNI1_OK, up->entity_id names the asset. */
static uni1_status wait_imported(uni1_session *s, uni1_upload *up, const char *id, const char *name)
{
    double start = uni1_monotonic();
    double delay = POLL_FIRST;
    /* The answer to "complete" may already show the end. */
    int have = up->id[0] != 0;
    for (;;) {
        if (have) {
            if (up->state == UNI1_UPLOAD_IMPORTED) {
                if (!up->entity_id[0])
                    return uni1__fail_answer(s, UNI1_ERR_PROTOCOL, "upload",
                                             "upload %s is imported but names no entityId", id);
                return UNI1_OK;
            }
            if (up->state == UNI1_UPLOAD_FAILED) {
                uni1__reset_error(s);
                uni1__fail(s, UNI1_ERR_HTTP, "upload of %s failed on the server: %s", name,
                           up->error_message ? up->error_message : "no reason given");
                s->err.source = UNI1_MSG_UPLOAD;
                if (up->raw_json) {
                    s->err.body = uni1__memdup(up->raw_json, up->raw_len);
                    s->err.body_len = s->err.body ? up->raw_len : 0;
                }
                return UNI1_ERR_HTTP;
            }
        }
        double now = uni1_monotonic();
        if (s->deadline <= 0 && now - start >= UNI1_UPLOAD_WAIT_MAX)
            return uni1__fail(s, UNI1_ERR_TIMEOUT, "upload %s is still %s after %.0f s", id,
                              up->status[0] ? up->status : "processing", now - start);
        uni1_status sl = uni1__sleep(s, delay);
        if (sl == UNI1_ERR_TIMEOUT)
            return uni1__fail(s, UNI1_ERR_TIMEOUT, "upload %s is still %s at the deadline", id,
                              up->status[0] ? up->status : "processing");
        if (sl != UNI1_OK)
            return sl;
        delay = delay * 1.5 < POLL_LONGEST ? delay * 1.5 : POLL_LONGEST;
        uni1_status st = get_upload(s, id, up);
        if (st != UNI1_OK)
            return st;
        have = 1;
        uni1__log(s, UNI1_LOG_DEBUG, "upload %s: %s", id, up->status);
    }
}

uni1_status uni1_upload_file(uni1_session *s, int fd, long long size, const char *name,
                             const char *mime_type, uni1_asset *out)
{
    memset(out, 0, sizeof *out);
    uni1__reset_error(s);
    if (fd < 0)
        return uni1__fail(s, UNI1_ERR_INVALID, "upload: no file descriptor");
    if (!name || !valid_upload_name(name))
        return uni1__fail(s, UNI1_ERR_INVALID,
                          "upload: the file name must be 1 to 255 bytes of UTF-8 without "
                          "control characters");
    if (!mime_type || strncmp(mime_type, "image/", 6) != 0 || !mime_type[6] ||
        !uni1__is_url_text(mime_type, 127) || strpbrk(mime_type, ";,\"\\"))
        return uni1__fail(s, UNI1_ERR_INVALID, "upload: mime type must be image/...");
    if (size <= 0)
        return uni1__fail(s, UNI1_ERR_INVALID, "upload of %s: the file is empty", name);
    long long part_size;
    int n_parts = uni1_upload_plan(size, &part_size);
    if (n_parts == 0)
        return uni1__fail(s, UNI1_ERR_INVALID, "upload of %s: %lld bytes is too large", name, size);

    char *body = create_body(name, mime_type, n_parts, size);
    if (!body)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    /* An upload the server made but whose answer was lost is a pending
     * record that costs nothing: creating is retried like a read. */
    uni1_api_call call = {"POST", "/uploads", NULL, body, strlen(body), 1, 0};
    char *resp = NULL;
    size_t rlen = 0;
    uni1_status st = uni1__api(s, &call, &resp, &rlen, NULL);
    free(body);
    if (st != UNI1_OK)
        return st;
    uni1_upload up;
    char err[256];
    st = uni1_parse_upload(resp, rlen, &up, err, sizeof err);
    free(resp);
    if (st != UNI1_OK)
        return parse_fail(s, st, err);
    char id[UNI1_ID_MAX];
    memcpy(id, up.id, sizeof id);
    unsigned char *buf = NULL;
    if (up.n_parts != (size_t)n_parts) {
        st = uni1__fail_answer(s, UNI1_ERR_PROTOCOL, "upload",
                               "asked for %d parts, upload %s gave %zu URLs", n_parts, id,
                               up.n_parts);
        goto done;
    }
    for (size_t i = 0; i < up.n_parts; i++) {
        if (up.parts[i].number != (int)i + 1) {
            st = uni1__fail_answer(s, UNI1_ERR_PROTOCOL, "upload",
                                   "upload %s has no URL for part %zu", id, i + 1);
            goto done;
        }
    }
    uni1__log(s, UNI1_LOG_INFO, "upload %s: %s, %lld bytes in %d part(s)", id, name, size, n_parts);

    size_t buf_len = (size_t)(size < part_size ? size : part_size);
    buf = malloc(buf_len);
    if (!buf) {
        st = uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < up.n_parts; i++) {
        long long offset = (long long)i * part_size;
        size_t len = (size_t)(size - offset < part_size ? size - offset : part_size);
        if ((st = read_part(s, fd, buf, len, offset, name)) != UNI1_OK)
            goto done;
        if ((st = put_part(s, &up.parts[i], buf, len, up.n_parts)) != UNI1_OK) {
            describe_part_failure(s, st, name, &up.parts[i], up.n_parts);
            goto done;
        }
    }
    free(buf);
    buf = NULL;

    uni1_upload_clear(&up);
    if ((st = complete_upload(s, id, &up)) != UNI1_OK)
        goto done;
    if ((st = wait_imported(s, &up, id, name)) != UNI1_OK)
        goto done;
    char asset_id[UNI1_ID_MAX];
    memcpy(asset_id, up.entity_id, sizeof asset_id);
    uni1_upload_clear(&up);
    uni1__log(s, UNI1_LOG_INFO, "upload %s: imported as %s", id, asset_id);
    st = uni1_get_asset(s, asset_id, out);

done:
    free(buf);
    uni1_upload_clear(&up);
    return st;
}
#endif /* UNI1_UPLOAD_PURE_ONLY */
