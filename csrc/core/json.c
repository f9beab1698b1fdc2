/* The document-level rules every parser of server data applies, and the
 * small JSON helpers the parsers share (uni1_internal.h). Pure functions,
 * safe on hostile input.
 *
 * Every document goes through uni1__doc_parse first, which
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
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uni1.h"
#include "uni1_internal.h"

#define UNI1_PAD 8 /* NUL bytes after the private copy */

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

int uni1__number_liberal(const cJSON *v, double *out)
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
