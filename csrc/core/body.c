/* Validation of generate requests and the JSON body sent to
 * POST /generate/custom/model_luma-uni-1-max. Pure functions. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uni1.h"
#include "uni1_internal.h"

#define UNI1_ASSET_PREFIX "asset_"
#define UNI1_ASSET_PREFIX_LEN (sizeof UNI1_ASSET_PREFIX - 1)

/* The list given by the contract; the server's exact list is unknown. */
const char *const uni1_aspect_ratios[] = {"1:3", "9:16", "2:3",  "3:4", "1:1",
                                          "4:3", "3:2",  "16:9", "3:1", NULL};

int uni1_is_aspect_ratio(const char *s)
{
    if (!s)
        return 0;
    for (size_t i = 0; uni1_aspect_ratios[i]; i++)
        if (strcmp(s, uni1_aspect_ratios[i]) == 0)
            return 1;
    return 0;
}

int uni1_is_asset_id(const char *s)
{
    if (!s || strncmp(s, UNI1_ASSET_PREFIX, UNI1_ASSET_PREFIX_LEN) != 0)
        return 0;
    /* "asset_" plus 1..UNI1_ID_MAX-7 characters: the whole id is then at
     * most UNI1_ID_MAX-1 bytes, which is what uni1__is_url_id checks. */
    return s[UNI1_ASSET_PREFIX_LEN] != '\0' && uni1__is_url_id(s);
}

/* Counts the code points of a NUL-terminated prompt, stopping as soon as the
 * count passes `limit` so a huge prompt costs no more than a short one.
 * Returns 0 on invalid UTF-8 with *bad_offset set. */
static int uni1_count_prompt(const char *s, size_t limit, size_t *count, size_t *bad_offset)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n = 0;
    while (p[i] && n <= limit) {
        size_t k = p[i] < 0x80 ? 1 : uni1__utf8_seq_len(p + i, SIZE_MAX);
        if (k == 0) {
            *bad_offset = i;
            return 0;
        }
        i += k;
        n++;
    }
    *count = n;
    return 1;
}

static const char uni1_id_rule[] = "expected \"asset_\" followed by 1 to 121 of A-Z a-z 0-9 _ -";

uni1_status uni1_validate_generate(const uni1_generate_params *p, char *err, size_t errlen)
{
    if (!p) {
        uni1__errf(err, errlen, "generate: no parameters given");
        return UNI1_ERR_INVALID;
    }
    if (!p->prompt) {
        uni1__errf(err, errlen, "prompt: required");
        return UNI1_ERR_INVALID;
    }
    size_t chars = 0, bad = 0;
    if (!uni1_count_prompt(p->prompt, UNI1_PROMPT_MAX_CHARS, &chars, &bad)) {
        uni1__errf(err, errlen, "prompt: invalid UTF-8 at byte %zu", bad);
        return UNI1_ERR_INVALID;
    }
    if (chars == 0) {
        uni1__errf(err, errlen, "prompt: must not be empty");
        return UNI1_ERR_INVALID;
    }
    if (chars > UNI1_PROMPT_MAX_CHARS) {
        /* The server answers 400 rather than trimming; so do we. */
        uni1__errf(err, errlen, "prompt: longer than %d characters", UNI1_PROMPT_MAX_CHARS);
        return UNI1_ERR_INVALID;
    }
    if (p->source && !uni1_is_asset_id(p->source)) {
        uni1__errf(err, errlen, "source: not an asset id (%s)", uni1_id_rule);
        return UNI1_ERR_INVALID;
    }
    size_t max_refs = p->source ? UNI1_MAX_REFS_WITH_SOURCE : UNI1_MAX_REFS;
    if (p->n_image_refs > max_refs) {
        if (p->source)
            uni1__errf(err, errlen, "imageRef: %zu references, at most %d when source is set",
                       p->n_image_refs, UNI1_MAX_REFS_WITH_SOURCE);
        else
            uni1__errf(err, errlen, "imageRef: %zu references, at most %d", p->n_image_refs,
                       UNI1_MAX_REFS);
        return UNI1_ERR_INVALID;
    }
    if (p->n_image_refs > 0 && !p->image_refs) {
        uni1__errf(err, errlen, "imageRef: n_image_refs is %zu but image_refs is NULL",
                   p->n_image_refs);
        return UNI1_ERR_INVALID;
    }
    for (size_t i = 0; i < p->n_image_refs; i++) {
        if (!uni1_is_asset_id(p->image_refs[i])) {
            uni1__errf(err, errlen, "imageRef[%zu]: not an asset id (%s)", i, uni1_id_rule);
            return UNI1_ERR_INVALID;
        }
    }
    if (p->aspect_ratio && !uni1_is_aspect_ratio(p->aspect_ratio)) {
        uni1__errf(err, errlen,
                   "aspectRatio: unknown ratio; use one of 1:3, 9:16, 2:3, 3:4, 1:1, 4:3, 3:2, "
                   "16:9, 3:1");
        return UNI1_ERR_INVALID;
    }
    if (p->output_format != UNI1_FORMAT_PNG && p->output_format != UNI1_FORMAT_JPEG) {
        uni1__errf(err, errlen, "outputFormat: unknown format %d", (int)p->output_format);
        return UNI1_ERR_INVALID;
    }
    return UNI1_OK;
}

/* Field choices, all covered by tests:
 *   - outputFormat is omitted for PNG (the server default) and sent as "jpeg";
 *   - webSearch is sent only when true (false is the default);
 *   - aspectRatio is sent whenever set, even "3:2": when editing, an unset
 *     ratio means "keep the source's", so an explicit 3:2 is not a default;
 *   - dryRun is never a body field (the server ignores it there and runs a
 *     paid job); estimates use the query parameter. */
uni1_status uni1_build_generate_body(const uni1_generate_params *p, char **out, char *err,
                                     size_t errlen)
{
    if (!out) {
        uni1__errf(err, errlen, "generate: no output pointer given");
        return UNI1_ERR_INVALID;
    }
    *out = NULL;
    uni1_status st = uni1_validate_generate(p, err, errlen);
    if (st != UNI1_OK)
        return st;

    cJSON *root = cJSON_CreateObject();
    if (!root)
        goto nomem;
    if (!cJSON_AddStringToObject(root, "prompt", p->prompt))
        goto nomem;
    if (p->source && !cJSON_AddStringToObject(root, "source", p->source))
        goto nomem;
    if (p->n_image_refs > 0) {
        /* Always an array, even for one reference: the server silently drops
         * a bare string. */
        cJSON *refs = cJSON_AddArrayToObject(root, "imageRef");
        if (!refs)
            goto nomem;
        for (size_t i = 0; i < p->n_image_refs; i++) {
            cJSON *s = cJSON_CreateString(p->image_refs[i]);
            if (!s || !cJSON_AddItemToArray(refs, s)) {
                cJSON_Delete(s);
                goto nomem;
            }
        }
    }
    if (p->aspect_ratio && !cJSON_AddStringToObject(root, "aspectRatio", p->aspect_ratio))
        goto nomem;
    if (p->output_format == UNI1_FORMAT_JPEG &&
        !cJSON_AddStringToObject(root, "outputFormat", "jpeg"))
        goto nomem;
    if (p->web_search && !cJSON_AddTrueToObject(root, "webSearch"))
        goto nomem;

    char *printed = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    root = NULL;
    if (!printed)
        goto nomem;
    /* Hand out plain malloc memory so callers free() it whatever allocator
     * cJSON was configured with. */
    *out = uni1__strdup(printed);
    cJSON_free(printed);
    if (!*out)
        goto nomem;
    return UNI1_OK;

nomem:
    cJSON_Delete(root);
    uni1__errf(err, errlen, "generate: out of memory building the request body");
    return UNI1_ERR_NOMEM;
}
