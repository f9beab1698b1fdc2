/* Parsers of server data: jobs, the generate answer, job listings, assets,
 * dry-run quotes and error bodies. Pure functions, safe on hostile input.
 *
 * Every document goes through uni1__doc_parse first (json.c).
 *
 * Field policy, shared by all parsers:
 *   - absent and null mean "not given" and take the default;
 *   - a field the client acts on (ids, status, progress, assetIds, metadata,
 *     the asset URL, the pagination token) with the wrong type is an error
 *     naming the field ("job.progress: expected a number, got string");
 *   - informational fields (createdAt, mimeType, sizes, costs in the generate
 *     answer) are read when usable and otherwise ignored: a job that was paid
 *     for must not be lost to a cosmetic field;
 *   - unknown fields are kept in raw_json;
 *   - progress: a finite number, clamped to 0..1; a non-number, or a number
 *     too large to represent (1e999), is an error.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uni1.h"
#include "uni1_internal.h"

#define UNI1_TOKEN_MAX 16384     /* longest pagination token accepted */
#define UNI1_URL_MAX (64 * 1024) /* longest download URL accepted */

/* ------------------------------------------------------------------------ */
/* Jobs                                                                     */
/* ------------------------------------------------------------------------ */

/* Fills *out (zeroed by the caller) from a job object; `where` prefixes the
 * messages ("job", "jobs[3]"). On failure out is cleared. */
static uni1_status uni1_job_from_json(const cJSON *obj, const char *where, uni1_job *out, char *err,
                                      size_t errlen)
{
    uni1_status st = UNI1_ERR_PROTOCOL;
    const cJSON *v;

    /* The id: "jobId", or "id" on one help page. Strict, it goes into URLs. */
    const char *id_name = "jobId";
    const cJSON *id = uni1__member(obj, "jobId");
    if (!id) {
        id_name = "id";
        id = uni1__member(obj, "id");
    }
    if (!id) {
        uni1__errf(err, errlen, "%s: no jobId or id", where);
        goto fail;
    }
    if (!cJSON_IsString(id)) {
        uni1__errf(err, errlen, "%s.%s: expected a string, got %s", where, id_name,
                   uni1__json_type(id));
        goto fail;
    }
    if (!uni1__is_url_id(id->valuestring)) {
        uni1__errf(err, errlen, "%s.%s: not a valid id (1 to %d of A-Z a-z 0-9 _ -)", where,
                   id_name, UNI1_ID_MAX - 1);
        goto fail;
    }
    memcpy(out->id, id->valuestring, strlen(id->valuestring) + 1);

    /* Status: unknown strings are kept (truncated) and are non-terminal. */
    out->state = UNI1_JOB_UNKNOWN;
    v = uni1__member(obj, "status");
    if (v) {
        if (!cJSON_IsString(v)) {
            uni1__errf(err, errlen, "%s.status: expected a string, got %s", where,
                       uni1__json_type(v));
            goto fail;
        }
        out->state = uni1_job_state_from_string(v->valuestring);
        if (out->state == UNI1_JOB_UNKNOWN)
            uni1__copy_trunc(out->status, sizeof out->status, v->valuestring);
        else
            uni1__copy_trunc(out->status, sizeof out->status, uni1_job_state_name(out->state));
    }

    v = uni1__member(obj, "progress");
    if (v) {
        if (!cJSON_IsNumber(v)) {
            uni1__errf(err, errlen, "%s.progress: expected a number, got %s", where,
                       uni1__json_type(v));
            goto fail;
        }
        double p = v->valuedouble;
        if (!isfinite(p)) {
            uni1__errf(err, errlen, "%s.progress: not a finite number", where);
            goto fail;
        }
        out->progress = p < 0 ? 0 : p > 1 ? 1 : p;
    }

    const cJSON *meta = uni1__member(obj, "metadata");
    if (meta && !cJSON_IsObject(meta)) {
        uni1__errf(err, errlen, "%s.metadata: expected an object, got %s", where,
                   uni1__json_type(meta));
        goto fail;
    }
    if (meta) {
        const cJSON *ids = uni1__member(meta, "assetIds");
        if (ids && !cJSON_IsArray(ids)) {
            uni1__errf(err, errlen, "%s.metadata.assetIds: expected an array, got %s", where,
                       uni1__json_type(ids));
            goto fail;
        }
        int n = ids ? cJSON_GetArraySize(ids) : 0;
        if (n > 0) {
            out->asset_ids = calloc((size_t)n, sizeof *out->asset_ids);
            if (!out->asset_ids)
                goto nomem;
            size_t i = 0;
            cJSON_ArrayForEach(v, ids)
            {
                if (!cJSON_IsString(v)) {
                    uni1__errf(err, errlen, "%s.metadata.assetIds[%zu]: expected a string, got %s",
                               where, i, uni1__json_type(v));
                    goto fail;
                }
                if (!uni1__is_url_id(v->valuestring)) {
                    uni1__errf(err, errlen,
                               "%s.metadata.assetIds[%zu]: not a valid id (1 to %d of A-Z a-z "
                               "0-9 _ -)",
                               where, i, UNI1_ID_MAX - 1);
                    goto fail;
                }
                if (!(out->asset_ids[i] = uni1__strdup(v->valuestring)))
                    goto nomem;
                out->n_assets = ++i;
            }
        }
        if ((st = uni1__reason_text(uni1__member(meta, "error"), &out->error)) != UNI1_OK)
            goto nomem;
        if ((st = uni1__reason_text(uni1__member(meta, "hint"), &out->hint)) != UNI1_OK)
            goto nomem;
    }

    /* Older payloads put the failure reason at the top level. */
    static const char *const legacy_error_keys[] = {"error", "errorMessage", "failureReason",
                                                    "reason"};
    for (size_t k = 0; !out->error && k < sizeof legacy_error_keys / sizeof *legacy_error_keys; k++)
        if ((st = uni1__reason_text(uni1__member(obj, legacy_error_keys[k]), &out->error)) !=
            UNI1_OK)
            goto nomem;

    v = uni1__member(obj, "createdAt");
    if (cJSON_IsString(v))
        uni1__copy_trunc(out->created_at, sizeof out->created_at, v->valuestring);
    out->created_ts = cJSON_IsString(v) ? uni1__parse_iso8601(v->valuestring) : -1;
    out->finalizing_ts = out->success_ts = -1;
    /* The times of the status changes (informational: a malformed history
     * only loses the poll schedule's hint). */
    const cJSON *hist = uni1__member(obj, "statusHistory"), *h;
    if (cJSON_IsArray(hist))
        cJSON_ArrayForEach(h, hist)
        {
            const cJSON *hs = uni1__member(h, "status"), *hd = uni1__member(h, "date");
            if (!cJSON_IsString(hs) || !cJSON_IsString(hd))
                continue;
            if (strcmp(hs->valuestring, "finalizing") == 0)
                out->finalizing_ts = uni1__parse_iso8601(hd->valuestring);
            else if (strcmp(hs->valuestring, "success") == 0)
                out->success_ts = uni1__parse_iso8601(hd->valuestring);
        }

    if (uni1__raw_json(obj, &out->raw_json, &out->raw_len) != UNI1_OK)
        goto nomem;
    return UNI1_OK;

nomem:
    uni1__errf(err, errlen, "%s: out of memory", where);
    st = UNI1_ERR_NOMEM;
    uni1_job_clear(out);
    return st;
fail:
    uni1_job_clear(out);
    return UNI1_ERR_PROTOCOL;
}

/* The job object of a {"job": {...}} answer, or root itself for a bare job.
 * NULL (with err set) when "job" is there but not an object. */
static const cJSON *uni1_job_object(const cJSON *root, const char *what, char *err, size_t errlen)
{
    if (!cJSON_IsObject(root)) {
        uni1__errf(err, errlen, "%s: expected a JSON object, got %s", what, uni1__json_type(root));
        return NULL;
    }
    const cJSON *job = cJSON_GetObjectItemCaseSensitive(root, "job");
    if (!job)
        return root;
    if (!cJSON_IsObject(job)) {
        uni1__errf(err, errlen, "job: expected an object, got %s", uni1__json_type(job));
        return NULL;
    }
    return job;
}

uni1_status uni1_parse_job(const char *buf, size_t len, uni1_job *out, char *err, size_t errlen)
{
    if (!out) {
        uni1__errf(err, errlen, "parse_job: no output given");
        return UNI1_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    cJSON *root;
    uni1_status st = uni1__doc_parse(buf, len, "job response", &root, err, errlen);
    if (st != UNI1_OK)
        return st;
    const cJSON *job = uni1_job_object(root, "job response", err, errlen);
    st = job ? uni1_job_from_json(job, "job", out, err, errlen) : UNI1_ERR_PROTOCOL;
    cJSON_Delete(root);
    return st;
}

uni1_status uni1_parse_submit(const char *buf, size_t len, uni1_job *out, double *cost, char *err,
                              size_t errlen)
{
    if (cost)
        *cost = -1;
    if (!out) {
        uni1__errf(err, errlen, "parse_submit: no output given");
        return UNI1_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    cJSON *root;
    uni1_status st = uni1__doc_parse(buf, len, "generate response", &root, err, errlen);
    if (st != UNI1_OK)
        return st;
    const cJSON *job = uni1_job_object(root, "generate response", err, errlen);
    st = job ? uni1_job_from_json(job, "job", out, err, errlen) : UNI1_ERR_PROTOCOL;
    if (st == UNI1_OK && cost) {
        /* Lenient: the job exists and is paid for; a strange cost must not
         * hide its id. Anything unusable reads as "not given". */
        double c;
        if (uni1__number_liberal(uni1__member(root, "creativeUnitsCost"), &c) && c >= 0)
            *cost = c;
    }
    cJSON_Delete(root);
    return st;
}

uni1_status uni1_parse_job_list(const char *buf, size_t len, uni1_job_list *out, char *err,
                                size_t errlen)
{
    if (!out) {
        uni1__errf(err, errlen, "parse_job_list: no output given");
        return UNI1_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    cJSON *root;
    uni1_status st = uni1__doc_parse(buf, len, "job list", &root, err, errlen);
    if (st != UNI1_OK)
        return st;
    st = UNI1_ERR_PROTOCOL;
    if (!cJSON_IsObject(root)) {
        uni1__errf(err, errlen, "job list: expected a JSON object, got %s", uni1__json_type(root));
        goto done;
    }
    const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(root, "jobs");
    if (!jobs) {
        /* An answer without "jobs" is not a listing (a proxy page, a wrong
         * endpoint); an empty page says "jobs": []. */
        uni1__errf(err, errlen, "job list: no \"jobs\" member");
        goto done;
    }
    /* "jobs": null is not read as an empty page: reconciliation takes an
     * empty page as proof that no job was created, and re-sends a paid
     * request on it. */
    if (!cJSON_IsArray(jobs)) {
        uni1__errf(err, errlen, "jobs: expected an array, got %s", uni1__json_type(jobs));
        goto done;
    }
    int n = cJSON_GetArraySize(jobs);
    if (n > 0) {
        out->jobs = calloc((size_t)n, sizeof *out->jobs);
        if (!out->jobs)
            goto nomem;
        const cJSON *item;
        size_t i = 0;
        cJSON_ArrayForEach(item, jobs)
        {
            char where[32];
            snprintf(where, sizeof where, "jobs[%zu]", i);
            if (!cJSON_IsObject(item)) {
                uni1__errf(err, errlen, "%s: expected an object, got %s", where,
                           uni1__json_type(item));
                st = UNI1_ERR_PROTOCOL;
                goto done;
            }
            st = uni1_job_from_json(item, where, &out->jobs[i], err, errlen);
            if (st != UNI1_OK)
                goto done;
            out->n_jobs = ++i;
        }
    }

    st = UNI1_ERR_PROTOCOL;
    const cJSON *tok = uni1__member(root, "nextPaginationToken");
    if (tok) {
        if (!cJSON_IsString(tok)) {
            uni1__errf(err, errlen, "nextPaginationToken: expected a string, got %s",
                       uni1__json_type(tok));
            goto done;
        }
        if (tok->valuestring[0]) {
            /* It goes back into a query string: printable ASCII only. */
            if (!uni1__is_url_text(tok->valuestring, UNI1_TOKEN_MAX)) {
                uni1__errf(err, errlen,
                           "nextPaginationToken: not printable ASCII or longer than %d bytes",
                           UNI1_TOKEN_MAX);
                goto done;
            }
            if (!(out->next_token = uni1__strdup(tok->valuestring)))
                goto nomem;
        }
    }
    st = UNI1_OK;
    goto done;

nomem:
    uni1__errf(err, errlen, "job list: out of memory");
    st = UNI1_ERR_NOMEM;
done:
    if (st != UNI1_OK)
        uni1_job_list_clear(out);
    cJSON_Delete(root);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Assets                                                                   */
/* ------------------------------------------------------------------------ */

/* A non-negative integer from the first of the containers that has `key`
 * as a usable number (or numeric string) below `limit`. */
static int uni1_asset_int(const cJSON *const *containers, size_t n, const char *key, double limit,
                          double *out)
{
    for (size_t i = 0; i < n; i++) {
        double d;
        if (cJSON_IsObject(containers[i]) &&
            uni1__number_liberal(uni1__member(containers[i], key), &d) && d >= 0 && d < limit) {
            *out = floor(d);
            return 1;
        }
    }
    return 0;
}

static int uni1_starts_with_nocase(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++) {
        char c = *s;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != *prefix)
            return 0;
    }
    return 1;
}

uni1_status uni1_parse_asset(const char *buf, size_t len, uni1_asset *out, char *err, size_t errlen)
{
    if (!out) {
        uni1__errf(err, errlen, "parse_asset: no output given");
        return UNI1_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    out->size = -1;
    cJSON *root;
    uni1_status st = uni1__doc_parse(buf, len, "asset response", &root, err, errlen);
    if (st != UNI1_OK) {
        out->size = 0;
        return st;
    }
    st = UNI1_ERR_PROTOCOL;
    const cJSON *v;
    const cJSON *asset = uni1__envelope(root, "asset", "asset response", err, errlen);
    if (!asset || uni1__take_id(asset, "asset", "id", "assetId", out->id, err, errlen) != 0)
        goto done;

    v = uni1__member(asset, "url");
    if (v) {
        if (!cJSON_IsString(v)) {
            uni1__errf(err, errlen, "asset.url: expected a string, got %s", uni1__json_type(v));
            goto done;
        }
        if (v->valuestring[0]) {
            /* The downloader fetches it: http(s) only (never file:// or
             * anything else libcurl speaks), no spaces or control bytes. */
            if (!uni1_starts_with_nocase(v->valuestring, "https://") &&
                !uni1_starts_with_nocase(v->valuestring, "http://")) {
                uni1__errf(err, errlen, "asset.url: not an http(s) URL");
                goto done;
            }
            if (!uni1__is_url_text(v->valuestring, UNI1_URL_MAX)) {
                uni1__errf(err, errlen, "asset.url: not printable ASCII or longer than %d bytes",
                           UNI1_URL_MAX);
                goto done;
            }
            if (!(out->url = uni1__strdup(v->valuestring)))
                goto nomem;
        }
    }

    v = uni1__member(asset, "status");
    if (v) {
        if (!cJSON_IsString(v)) {
            uni1__errf(err, errlen, "asset.status: expected a string, got %s", uni1__json_type(v));
            goto done;
        }
        uni1__copy_trunc(out->status, sizeof out->status, v->valuestring);
    }

    /* Informational: kept when it is a plausible MIME type, else "". */
    v = uni1__member(asset, "mimeType");
    if (cJSON_IsString(v) && uni1__is_url_text(v->valuestring, sizeof out->mime_type - 1))
        memcpy(out->mime_type, v->valuestring, strlen(v->valuestring) + 1);

    const cJSON *containers[] = {uni1__member(asset, "properties"), uni1__member(asset, "metadata"),
                                 asset};
    size_t nc = sizeof containers / sizeof *containers;
    double d;
    /* 2^31 and 2^53: beyond these a value is nonsense, and staying below
     * them keeps the casts defined. */
    if (uni1_asset_int(containers, nc, "width", 2147483648.0, &d))
        out->width = (long)d;
    if (uni1_asset_int(containers, nc, "height", 2147483648.0, &d))
        out->height = (long)d;
    if (uni1_asset_int(containers, nc, "size", 9007199254740992.0, &d))
        out->size = (long long)d;

    if (uni1__raw_json(asset, &out->raw_json, &out->raw_len) != UNI1_OK)
        goto nomem;
    st = UNI1_OK;
    goto done;

nomem:
    uni1__errf(err, errlen, "asset: out of memory");
    st = UNI1_ERR_NOMEM;
done:
    if (st != UNI1_OK)
        uni1_asset_clear(out);
    cJSON_Delete(root);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Dry-run quote                                                            */
/* ------------------------------------------------------------------------ */

uni1_status uni1_parse_estimate(const char *buf, size_t len, double *cost, char *err, size_t errlen)
{
    if (!cost) {
        uni1__errf(err, errlen, "parse_estimate: no output given");
        return UNI1_ERR_INVALID;
    }
    *cost = -1;
    cJSON *root;
    uni1_status st = uni1__doc_parse(buf, len, "estimate", &root, err, errlen);
    if (st != UNI1_OK)
        return st;
    st = UNI1_ERR_PROTOCOL;
    if (!cJSON_IsObject(root)) {
        uni1__errf(err, errlen, "estimate: expected a JSON object, got %s", uni1__json_type(root));
        goto done;
    }
    const cJSON *v = uni1__member(root, "creativeUnitsCost");
    double c;
    if (!v) {
        uni1__errf(err, errlen, "estimate: no creativeUnitsCost");
        goto done;
    }
    if (!uni1__number_liberal(v, &c)) {
        uni1__errf(err, errlen, "estimate.creativeUnitsCost: expected a finite number, got %s",
                   uni1__json_type(v));
        goto done;
    }
    if (c < 0) {
        uni1__errf(err, errlen, "estimate.creativeUnitsCost: negative");
        goto done;
    }
    *cost = c;
    st = UNI1_OK;
done:
    cJSON_Delete(root);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Error bodies                                                             */
/* ------------------------------------------------------------------------ */

/* Copies text into dst[dstlen] for display: control characters become
 * spaces, runs of spaces collapse, the ends are trimmed. With ascii_only,
 * bytes outside printable ASCII also become spaces (for bodies that are not
 * JSON: HTML pages, binary junk); otherwise text must be valid UTF-8 and the
 * cut falls on a character boundary. */
static void uni1_display_copy(char *dst, size_t dstlen, const char *text, size_t len,
                              int ascii_only)
{
    size_t o = 0;
    int pending_space = 0;
    for (size_t i = 0; i < len && o + 1 < dstlen;) {
        unsigned char c = (unsigned char)text[i];
        size_t n = 1;
        int blank = c < 0x20 || c == 0x7F || c == ' ';
        if (c >= 0x80) {
            if (ascii_only) {
                blank = 1;
            } else {
                n = uni1__utf8_seq_len((const unsigned char *)text + i, len - i);
                if (n == 0) {
                    n = 1;
                    blank = 1;
                }
            }
        }
        if (blank) {
            pending_space = o > 0;
            i += n;
            continue;
        }
        size_t need = n + (pending_space ? 1 : 0);
        if (o + need + 1 > dstlen)
            break;
        if (pending_space)
            dst[o++] = ' ';
        pending_space = 0;
        memcpy(dst + o, text + i, n);
        o += n;
        i += n;
    }
    dst[o] = '\0';
}

void uni1_parse_error_body(const char *buf, size_t len, uni1_error *out)
{
    if (!out)
        return;
    out->message[0] = '\0';
    out->trace_id[0] = '\0';
    out->retry_after = -1;
    if (!buf || len == 0)
        return;

    cJSON *root;
    if (uni1__doc_parse(buf, len, "error body", &root, NULL, 0) != UNI1_OK) {
        uni1_display_copy(out->message, sizeof out->message, buf, len, 1);
        return;
    }

    char *msg = NULL;
    if (cJSON_IsObject(root)) {
        static const char *const message_keys[] = {"reason", "message", "error", "detail"};
        for (size_t k = 0; !msg && k < sizeof message_keys / sizeof *message_keys; k++)
            if (uni1__reason_text(uni1__member(root, message_keys[k]), &msg) != UNI1_OK)
                break; /* out of memory: fall through to what we have */

        static const char *const trace_keys[] = {"traceId", "trace_id"};
        for (size_t k = 0; k < 2 && !out->trace_id[0]; k++) {
            const cJSON *t = uni1__member(root, trace_keys[k]);
            if (cJSON_IsString(t) && uni1__is_url_text(t->valuestring, sizeof out->trace_id - 1))
                memcpy(out->trace_id, t->valuestring, strlen(t->valuestring) + 1);
        }

        /* 429 bodies: "remainingSeconds" at the top, or inside "details". */
        double secs;
        const cJSON *details = uni1__member(root, "details");
        if ((uni1__number_liberal(uni1__member(root, "remainingSeconds"), &secs) ||
             (cJSON_IsObject(details) &&
              uni1__number_liberal(uni1__member(details, "remainingSeconds"), &secs))) &&
            secs >= 0)
            out->retry_after = secs;
    }
    if (!msg) {
        /* No known member (or not an object): show the JSON itself, which
         * beats an empty message. A bare string shows as its text. */
        if (cJSON_IsString(root))
            msg = uni1__strdup(root->valuestring);
        else {
            char *printed = cJSON_PrintUnformatted(root);
            if (printed) {
                msg = uni1__strdup(printed);
                cJSON_free(printed);
            }
        }
    }
    if (msg)
        uni1_display_copy(out->message, sizeof out->message, msg, strlen(msg), 0);
    else
        uni1_display_copy(out->message, sizeof out->message, buf, len, 1);
    free(msg);
    cJSON_Delete(root);
}
