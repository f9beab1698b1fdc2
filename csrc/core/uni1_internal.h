/* Private helpers shared by the core's .c files. Not part of the public API
 * and never installed. Kept small on purpose: string and UTF-8 utilities that
 * more than one file needs. Session-level helpers live in session.h. */
#ifndef UNI1_INTERNAL_H
#define UNI1_INTERNAL_H

#include <stddef.h>

#include "platform.h"

#include "uni1.h"

/* Formats into err when err is non-NULL and errlen > 0; always
 * NUL-terminates, silently truncates. Returns nothing: callers return their
 * own status code right after. */
void uni1__errf(char *err, size_t errlen, const char *fmt, ...) UNI1_PRINTF(3, 4);

/* malloc'd copies; NULL when s is NULL or on allocation failure. They call
 * malloc directly (not strdup) so the tests can inject allocation failures.
 * uni1__memdup copies n bytes and adds a NUL terminator. */
char *uni1__strdup(const char *s);
char *uni1__memdup(const void *p, size_t n);

/* Length (1..4) of the well-formed UTF-8 sequence starting at p, or 0 when
 * it is ill-formed (overlong, surrogate, above U+10FFFF, truncated) or
 * avail is 0. Reads each continuation byte only after checking the previous
 * one, so a NUL-terminated string may be passed with avail = SIZE_MAX: the
 * terminator is never a valid continuation. U+0000 counts as valid (1). */
size_t uni1__utf8_seq_len(const unsigned char *p, size_t avail);

/* Whether s[0..len) is entirely well-formed UTF-8. On failure *bad_offset
 * (may be NULL) gets the offset of the first bad byte. */
int uni1__utf8_valid(const char *s, size_t len, size_t *bad_offset);

/* Whether s is usable as a job or asset id inside a URL path: 1 to
 * UNI1_ID_MAX-1 bytes, each in [A-Za-z0-9_-]. Never reads more than
 * UNI1_ID_MAX bytes of s. NULL gives 0. */
int uni1__is_url_id(const char *s);

/* Copies src into dst[dstlen], truncating at a UTF-8 character boundary so
 * the result stays valid UTF-8 when src is. NULL src gives "". Returns 1 when
 * all of src fitted, 0 when it was truncated. dstlen must be > 0. */
int uni1__copy_trunc(char *dst, size_t dstlen, const char *src);

/* The document-level rules every parser of server data applies first
 * (json.c): well-formed UTF-8 without raw NUL bytes, nesting within cJSON's
 * limit, a private NUL-padded copy for cJSON, the escape \u0000 rewritten to
 * \ufffd so cJSON cannot cut a string short, and one JSON value with nothing
 * but whitespace after it. `what` names the document in messages. On success
 * *root is the caller's to cJSON_Delete. */
struct cJSON;
uni1_status uni1__doc_parse(const char *buf, size_t len, const char *what, struct cJSON **root,
                            char *err, size_t errlen);
/* "null", "a number", "an object", ...: for messages. */
const char *uni1__json_type(const struct cJSON *v);
/* obj[key], with a JSON null read as absent (NULL). */
const struct cJSON *uni1__member(const struct cJSON *obj, const char *key);
/* "2026-11-29T12:00:00[.fff]Z" as Unix seconds, or -1. */
double uni1__parse_iso8601(const char *t);
/* The object a response is about: root itself, or root[name] when that
 * member is present ({"asset": {...}} or a bare asset). NULL, with a message
 * in err, when root or the member is not an object. */
const struct cJSON *uni1__envelope(const struct cJSON *root, const char *name, const char *what,
                                   char *err, size_t errlen);
/* Copies obj[key] (or obj[alt_key]) into out after checking it is a string
 * usable in a URL path (uni1__is_url_id). -1 with a message naming what. */
int uni1__take_id(const struct cJSON *obj, const char *what, const char *key, const char *alt_key,
                  char out[UNI1_ID_MAX], char *err, size_t errlen);

/* A finite number, or a string holding exactly one (as some servers send
 * "remainingSeconds": "30"). The string goes through cJSON too, which reads
 * numbers independently of the C locale. Returns 1 and sets *out, or 0. */
int uni1__number_liberal(const struct cJSON *v, double *out);
/* Whether s is printable ASCII without spaces, at most max bytes: the test
 * for anything that ends up in a URL or a request line. */
int uni1__is_url_text(const char *s, size_t max);
/* Spare download buffers (status.c): uni1_buffer_clear keeps a few large
 * ones; take one of at least want bytes (its size in *cap) or NULL; drop
 * them all (an idle engine); the lock around fork (0 prepare, 1 parent,
 * 2 child). */
unsigned char *uni1__spare_take(size_t want, size_t *cap);
void uni1__spare_drop(void);
void uni1__spare_atfork(int phase);
/* A failure reason from any JSON value: a non-empty string as is; a finite
 * number, a non-empty object or array serialised; anything else counts as
 * absent (UNI1_OK, *out NULL). UNI1_ERR_NOMEM when out of memory. */
uni1_status uni1__reason_text(const struct cJSON *v, char **out);
/* obj re-serialised (unformatted) into malloc'd memory, with its length. */
uni1_status uni1__raw_json(const struct cJSON *obj, char **out, size_t *out_len);

/* ---- CDN answers to downloads (cdn.c) ---------------------------------- */

/* "bytes START-END/TOTAL" (TOTAL may be "*": *total -1). 0 when well formed
 * with START <= END < TOTAL, else -1. */
int uni1__parse_content_range(const char *v, long long *start, long long *end, long long *total);
/* Whether a Content-Type (parameters stripped) names a document, never an
 * image: text/..., or anything json, xml or html. "" gives 0. */
int uni1__is_text_type(const char *ct);
/* Whether mime is one of the image types whose signature is known. */
int uni1__image_mime_known(const char *mime);
/* Whether the first n bytes agree with the image type mime. Unknown types
 * pass: only a clear contradiction is an error. */
int uni1__signature_matches(const char *mime, const unsigned char *b, size_t n);

/* What the head of one CDN answer says, and what the client asked. */
typedef struct uni1_cdn_answer {
    long status;
    long long offset;         /* the Range start asked for (bytes kept), 0: no Range */
    long long expect;         /* the asset record's size; <= 0: not given */
    long long content_length; /* -1: none */
    int has_range;            /* a well-formed Content-Range came */
    long long range_start, range_end, range_total; /* range_total -1: "*" */
    const char *content_type;                      /* parameters stripped; "" or NULL: none */
} uni1_cdn_answer;

typedef enum uni1_cdn_verdict {
    UNI1_CDN_KEEP,       /* append the body after the offset bytes */
    UNI1_CDN_RESTART,    /* a 200 to a Range request: the whole body, from byte 0 */
    UNI1_CDN_DISCARD,    /* not 200/206: an error page, never written */
    UNI1_CDN_BAD_RANGE,  /* a 206 that is not the range asked for, or not of this object */
    UNI1_CDN_BAD_LENGTH, /* Content-Length disagrees with the record, or above cap */
    UNI1_CDN_NOT_IMAGE,  /* a text/html (json, xml, ...) answer */
} uni1_cdn_verdict;

/* Judges an answer before its first body byte is kept. For KEEP/RESTART,
 * *total is the full size of the object (-1: nobody said) and *limit the
 * most bytes this answer may carry (cap when nothing is declared). */
uni1_cdn_verdict uni1__cdn_judge(const uni1_cdn_answer *a, long long cap, long long *total,
                                 long long *limit);

#endif /* UNI1_INTERNAL_H */
