/* What a CDN answer to a download may be trusted for: the Content-Range of a
 * 206, the sizes it declares against the asset record, its Content-Type and
 * the first bytes of an image. Pure functions, so the rules are tested
 * without a network (tests/c/test_cdn.c); http.c and files.c apply them. */
#include <string.h>
#include <strings.h>

#include "uni1_internal.h"

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* A decimal number without sign, at most 18 digits (no overflow). */
static int read_number(const char **pp, long long *out)
{
    const char *p = *pp;
    long long v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (++digits > 18)
            return -1;
        v = v * 10 + (*p - '0');
        p++;
    }
    if (!digits)
        return -1;
    *pp = p;
    *out = v;
    return 0;
}

int uni1__parse_content_range(const char *v, long long *start, long long *end, long long *total)
{
    const char *p = skip_spaces(v);
    if (strncasecmp(p, "bytes", 5) != 0)
        return -1;
    p = skip_spaces(p + 5);
    if (read_number(&p, start) < 0 || *p++ != '-' || read_number(&p, end) < 0 || *end < *start ||
        *p++ != '/')
        return -1;
    if (*p == '*') {
        *total = -1;
        p++;
    } else if (read_number(&p, total) < 0 || *total <= *end) {
        return -1;
    }
    return *skip_spaces(p) ? -1 : 0;
}

int uni1__is_text_type(const char *ct)
{
    if (!ct || !*ct)
        return 0;
    if (strncasecmp(ct, "text/", 5) == 0)
        return 1;
    /* application/json, application/xml, application/xhtml+xml,
     * application/problem+json, ...: an error document, never an image. */
    static const char *const marks[] = {"json", "xml", "html", NULL};
    for (size_t i = 0; marks[i]; i++) {
        size_t n = strlen(marks[i]);
        for (const char *p = ct; *p; p++)
            if (strncasecmp(p, marks[i], n) == 0)
                return 1;
    }
    return 0;
}

int uni1__image_mime_known(const char *mime)
{
    return mime && (strcmp(mime, "image/png") == 0 || strcmp(mime, "image/jpeg") == 0 ||
                    strcmp(mime, "image/jpg") == 0 || strcmp(mime, "image/webp") == 0 ||
                    strcmp(mime, "image/gif") == 0);
}

int uni1__signature_matches(const char *mime, const unsigned char *b, size_t n)
{
    if (strcmp(mime, "image/png") == 0)
        return n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0;
    if (strcmp(mime, "image/jpeg") == 0 || strcmp(mime, "image/jpg") == 0)
        return n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff;
    if (strcmp(mime, "image/webp") == 0)
        return n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0;
    if (strcmp(mime, "image/gif") == 0)
        return n >= 6 && memcmp(b, "GIF8", 4) == 0;
    return 1;
}

uni1_cdn_verdict uni1__cdn_judge(const uni1_cdn_answer *a, long long cap, long long *total,
                                 long long *limit)
{
    *total = -1;
    *limit = 0;
    if (a->status != 200 && a->status != 206)
        return UNI1_CDN_DISCARD;
    if (uni1__is_text_type(a->content_type))
        return UNI1_CDN_NOT_IMAGE;
    long long declared = a->expect > 0 ? a->expect : -1;
    if (a->status == 200) {
        /* The whole body, whatever was asked: from byte 0. */
        if (declared > 0 && a->content_length >= 0 && a->content_length != declared)
            return UNI1_CDN_BAD_LENGTH;
        *total = declared > 0 ? declared : a->content_length;
        *limit = *total >= 0 ? *total : cap;
        if (*limit > cap)
            return UNI1_CDN_BAD_LENGTH;
        return a->offset > 0 ? UNI1_CDN_RESTART : UNI1_CDN_KEEP;
    }
    /* 206: exactly the bytes asked for, of the object the record describes. */
    if (!a->has_range || a->range_start != a->offset)
        return UNI1_CDN_BAD_RANGE;
    long long span = a->range_end - a->range_start + 1;
    if (a->range_total >= 0 && declared > 0 && a->range_total != declared)
        return UNI1_CDN_BAD_RANGE;
    if (a->content_length >= 0 && a->content_length != span)
        return UNI1_CDN_BAD_RANGE;
    *total = a->range_total >= 0 ? a->range_total : declared;
    if (*total >= 0 && a->range_end >= *total)
        return UNI1_CDN_BAD_RANGE;
    if (a->range_end + 1 > cap)
        return UNI1_CDN_BAD_LENGTH;
    *limit = span;
    return UNI1_CDN_KEEP;
}
