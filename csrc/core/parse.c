/* Parsers of server data: jobs, the generate answer, job listings, assets,
 * dry-run quotes and error bodies. Pure functions, safe on hostile input.
 *
 * Every document goes through uni1_doc_parse first, which
 *   - rejects a body that is not well-formed UTF-8 or holds a raw NUL byte
 *     (RFC 8259 requires UTF-8; a NUL is never valid JSON), so every string
 *     handed out is valid UTF-8 the binding can decode;
 *   - rejects nesting deeper than cJSON's limit with a clear message;
 *   - parses a private, NUL-padded copy, so even an older cJSON with a
 *     one-byte over-read (CVE-2023-53154, fixed upstream in 1.7.18) never
 *     reads outside memory we own;
 *   - rewrites the escape \u0000 to \ufffd in that copy: cJSON would cut the
 *     string at the NUL, so "job_a\u0000/../x" would silently become "job_a".
 *     After the rewrite the string keeps U+FFFD, which every check of a value
 *     bound for a URL (ids, tokens, download URLs: ASCII only) rejects.
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
#define UNI1_PAD 8               /* NUL bytes after the private copy */

/* ------------------------------------------------------------------------ */
/* Document level                                                           */
/* ------------------------------------------------------------------------ */

typedef enum { UNI1_SCAN_OK, UNI1_SCAN_NUL, UNI1_SCAN_UTF8, UNI1_SCAN_DEPTH } uni1_scan_result;

/* One pass over the private copy: checks UTF-8, raw NULs and nesting depth,
 * and rewrites \u0000 escapes inside strings to \ufffd (same length). It only
 * tracks string boundaries and brackets; everything else is cJSON's job. */
static uni1_scan_result uni1_prescan(unsigned char *p, size_t len, size_t *where)
{
    int in_string = 0;
    size_t depth = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c == 0) {
            *where = i;
            return UNI1_SCAN_NUL;
        }
        if (c >= 0x80) {
            size_t n = uni1__utf8_seq_len(p + i, len - i);
            if (n == 0) {
                *where = i;
                return UNI1_SCAN_UTF8;
            }
            i += n;
            continue;
        }
        if (in_string) {
            if (c == '"') {
                in_string = 0;
            } else if (c == '\\' && i + 1 < len) {
                if (p[i + 1] == 'u' && i + 5 < len && p[i + 2] == '0' && p[i + 3] == '0' &&
                    p[i + 4] == '0' && p[i + 5] == '0') {
                    memcpy(p + i + 2, "fffd", 4);
                    i += 6;
                    continue;
                }
                /* Skip the escaped character, unless it is not ASCII: then
                 * cJSON rejects the escape, and the byte still gets its UTF-8
                 * check on the next turn. */
                if (p[i + 1] < 0x80 && p[i + 1] != 0)
                    i++;
            }
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > CJSON_NESTING_LIMIT) {
                *where = i;
                return UNI1_SCAN_DEPTH;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
        i++;
    }
    return UNI1_SCAN_OK;
}

/* Parses buf[0..len) into *root. `what` names the document in messages.
 * With err NULL the messages are dropped (used by the error-body parser). */
uni1_status uni1__doc_parse(const char *buf, size_t len, const char *what, cJSON **root, char *err,
                            size_t errlen)
{
    *root = NULL;
    if (!buf || len == 0) {
        uni1__errf(err, errlen, "%s: empty body", what);
        return UNI1_ERR_PROTOCOL;
    }
    if (len > SIZE_MAX - UNI1_PAD) {
        uni1__errf(err, errlen, "%s: body too large", what);
        return UNI1_ERR_PROTOCOL;
    }
    unsigned char *copy = malloc(len + UNI1_PAD);
    if (!copy) {
        uni1__errf(err, errlen, "%s: out of memory", what);
        return UNI1_ERR_NOMEM;
    }
    memcpy(copy, buf, len);
    memset(copy + len, 0, UNI1_PAD);

    size_t where = 0;
    switch (uni1_prescan(copy, len, &where)) {
    case UNI1_SCAN_OK:
        break;
    case UNI1_SCAN_NUL:
        free(copy);
        uni1__errf(err, errlen, "%s: NUL byte at offset %zu", what, where);
        return UNI1_ERR_PROTOCOL;
    case UNI1_SCAN_UTF8:
        free(copy);
        uni1__errf(err, errlen, "%s: invalid UTF-8 at offset %zu", what, where);
        return UNI1_ERR_PROTOCOL;
    case UNI1_SCAN_DEPTH:
        free(copy);
        uni1__errf(err, errlen, "%s: JSON nested deeper than %d levels", what, CJSON_NESTING_LIMIT);
        return UNI1_ERR_PROTOCOL;
    }

    /* Bounded by len; the padding is only a guard. cJSON cannot tell a
     * syntax error from an allocation failure, so both read as syntax. */
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts((const char *)copy, len, &end, 0);
    if (!*root) {
        free(copy);
        uni1__errf(err, errlen, "%s: not valid JSON", what);
        return UNI1_ERR_PROTOCOL;
    }
    /* One document and nothing after it: cJSON stops at the end of the first
     * value, and trailing bytes mean a damaged or concatenated answer. */
    size_t at = end ? (size_t)(end - (const char *)copy) : len;
    while (at < len &&
           (copy[at] == ' ' || copy[at] == '\t' || copy[at] == '\r' || copy[at] == '\n'))
        at++;
    free(copy);
    if (at < len) {
        cJSON_Delete(*root);
        *root = NULL;
        uni1__errf(err, errlen, "%s: unexpected data after the JSON value at offset %zu", what, at);
        return UNI1_ERR_PROTOCOL;
    }
    return UNI1_OK;
}

const char *uni1__json_type(const cJSON *v)
{
    if (!v)
        return "nothing";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    return "an unknown value";
}

/* The member `key` of obj, or NULL when absent or null. */
const cJSON *uni1__member(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(v) ? NULL : v;
}

const cJSON *uni1__envelope(const cJSON *root, const char *name, const char *what, char *err,
                            size_t errlen)
{
    if (!cJSON_IsObject(root)) {
        uni1__errf(err, errlen, "%s: expected a JSON object, got %s", what, uni1__json_type(root));
        return NULL;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v)
        return root;
    if (!cJSON_IsObject(v)) {
        uni1__errf(err, errlen, "%s: expected an object, got %s", name, uni1__json_type(v));
        return NULL;
    }
    return v;
}

int uni1__take_id(const cJSON *obj, const char *what, const char *key, const char *alt_key,
                  char out[UNI1_ID_MAX], char *err, size_t errlen)
{
    const char *name = key;
    const cJSON *id = uni1__member(obj, key);
    if (!id) {
        name = alt_key;
        id = uni1__member(obj, alt_key);
    }
    if (!id) {
        uni1__errf(err, errlen, "%s: no id", what);
        return -1;
    }
    if (!cJSON_IsString(id)) {
        uni1__errf(err, errlen, "%s.%s: expected a string, got %s", what, name,
                   uni1__json_type(id));
        return -1;
    }
    if (!uni1__is_url_id(id->valuestring)) {
        uni1__errf(err, errlen, "%s.%s: not a valid id (1 to %d of A-Z a-z 0-9 _ -)", what, name,
                   UNI1_ID_MAX - 1);
        return -1;
    }
    memcpy(out, id->valuestring, strlen(id->valuestring) + 1);
    return 0;
}

/* Whether s matches the JSON number grammar exactly (no spaces, no
 * trailing text). */
static int uni1_is_json_number(const char *s)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return 0;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

/* A finite number, or a string holding exactly one (as some servers send
 * "remainingSeconds": "30"). The string goes through cJSON too, which reads
 * numbers independently of the C locale. Returns 1 and sets *out, or 0. */
static int uni1_get_number_liberal(const cJSON *v, double *out)
{
    double d;
    if (cJSON_IsNumber(v)) {
        d = v->valuedouble;
    } else if (cJSON_IsString(v) && v->valuestring && uni1_is_json_number(v->valuestring)) {
        size_t n = strlen(v->valuestring);
        if (n > 64)
            return 0;
        cJSON *num = cJSON_ParseWithLength(v->valuestring, n);
        if (!cJSON_IsNumber(num)) {
            cJSON_Delete(num);
            return 0;
        }
        d = num->valuedouble;
        cJSON_Delete(num);
    } else {
        return 0;
    }
    if (!isfinite(d))
        return 0;
    *out = d;
    return 1;
}

/* Whether every byte of s is printable ASCII other than space, and s is no
 * longer than max bytes. This is the test for anything that ends up in a URL. */
int uni1__is_url_text(const char *s, size_t max)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= max || (unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7F)
            return 0;
    return 1;
}

/* A human-readable reason from any JSON value: a non-empty string as is;
 * numbers, objects and arrays serialised; booleans, empty strings and empty
 * containers count as absent. Returns UNI1_OK with *out NULL when absent. */
uni1_status uni1__reason_text(const cJSON *v, char **out)
{
    *out = NULL;
    if (!v || cJSON_IsNull(v) || cJSON_IsBool(v))
        return UNI1_OK;
    if (cJSON_IsString(v)) {
        if (!v->valuestring || !v->valuestring[0])
            return UNI1_OK;
        *out = uni1__strdup(v->valuestring);
        return *out ? UNI1_OK : UNI1_ERR_NOMEM;
    }
    if ((cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child)
        return UNI1_OK;
    if (!cJSON_IsNumber(v) && !cJSON_IsObject(v) && !cJSON_IsArray(v))
        return UNI1_OK;
    if (cJSON_IsNumber(v) && !isfinite(v->valuedouble))
        return UNI1_OK; /* 1e999: cJSON would print it as "null" */
    char *printed = cJSON_PrintUnformatted(v);
    if (!printed)
        return UNI1_ERR_NOMEM;
    *out = uni1__strdup(printed);
    cJSON_free(printed);
    return *out ? UNI1_OK : UNI1_ERR_NOMEM;
}

/* obj re-serialised into malloc'd memory. */
uni1_status uni1__raw_json(const cJSON *obj, char **out, size_t *out_len)
{
    char *printed = cJSON_PrintUnformatted(obj);
    if (!printed)
        return UNI1_ERR_NOMEM;
    size_t n = strlen(printed);
    *out = uni1__memdup(printed, n);
    cJSON_free(printed);
    if (!*out)
        return UNI1_ERR_NOMEM;
    *out_len = n;
    return UNI1_OK;
}

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
        if (uni1_get_number_liberal(uni1__member(root, "creativeUnitsCost"), &c) && c >= 0)
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
            uni1_get_number_liberal(uni1__member(containers[i], key), &d) && d >= 0 && d < limit) {
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
    if (!uni1_get_number_liberal(v, &c)) {
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
        if ((uni1_get_number_liberal(uni1__member(root, "remainingSeconds"), &secs) ||
             (cJSON_IsObject(details) &&
              uni1_get_number_liberal(uni1__member(details, "remainingSeconds"), &secs))) &&
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
