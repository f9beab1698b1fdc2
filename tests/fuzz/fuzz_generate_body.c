/* libFuzzer target: uni1_validate_generate and uni1_build_generate_body on
 * arbitrary parameters. The input is a flags byte, then NUL-separated
 * fields: prompt, source, aspect ratio, then image references.
 *   flags bit 0: source set, bit 1: ratio set, bit 2: JPEG, bit 3: web search,
 *   bits 4-7: number of references (0..15); a second byte 0xEE makes the
 *   output format invalid.
 * Checks: validate and build agree; a built body is JSON holding exactly the
 * fields given, the prompt byte for byte; the verdict on the prompt matches an
 * independent decoder. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A plain decoder, written differently from the core's on purpose: returns
 * the code point count or -1 when s is not well-formed UTF-8. */
static long reference_count(const unsigned char *s)
{
    long n = 0;
    while (*s) {
        unsigned cp, len;
        if (*s < 0x80) {
            cp = *s;
            len = 1;
        } else if ((*s & 0xE0) == 0xC0) {
            cp = *s & 0x1F;
            len = 2;
        } else if ((*s & 0xF0) == 0xE0) {
            cp = *s & 0x0F;
            len = 3;
        } else if ((*s & 0xF8) == 0xF0) {
            cp = *s & 0x07;
            len = 4;
        } else {
            return -1;
        }
        for (unsigned i = 1; i < len; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return -1;
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        static const unsigned min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return -1;
        s += len;
        n++;
    }
    return n;
}

#define MAX_FIELDS (3 + 15)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    int bad_format = data[1] == 0xEE;
    /* Fields as NUL-terminated strings in one private buffer. */
    char *buf = malloc(size - 2 + 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 2, size - 2);
    buf[size - 2] = '\0';
    const char *field[MAX_FIELDS];
    size_t nf = 0;
    char *p = buf, *end = buf + (size - 2);
    while (nf < MAX_FIELDS) {
        field[nf++] = p;
        char *z = memchr(p, '\0', (size_t)(end - p) + 1);
        if (z >= end)
            break;
        p = z + 1;
    }

    uni1_generate_params prm;
    memset(&prm, 0, sizeof prm);
    prm.prompt = field[0];
    if ((flags & 1) && nf > 1)
        prm.source = field[1];
    if ((flags & 2) && nf > 2)
        prm.aspect_ratio = field[2];
    prm.output_format = bad_format    ? (uni1_format)7
                        : (flags & 4) ? UNI1_FORMAT_JPEG
                                      : UNI1_FORMAT_PNG;
    prm.web_search = (flags & 8) != 0;
    size_t want_refs = flags >> 4;
    const char *refs[15];
    size_t nr = 0;
    for (size_t i = 3; i < nf && nr < want_refs; i++)
        refs[nr++] = field[i];
    prm.image_refs = nr ? refs : NULL;
    prm.n_image_refs = nr;

    char err[256], err2[256];
    uni1_status v = uni1_validate_generate(&prm, err, sizeof err);
    char *body = (char *)0x1;
    uni1_status b = uni1_build_generate_body(&prm, &body, err2, sizeof err2);
    FUZZ_CHECK(v == b || b == UNI1_ERR_NOMEM);

    /* independent verdict on the parts that are easy to restate */
    long chars = reference_count((const unsigned char *)prm.prompt);
    int expect_ok = chars >= 1 && chars <= UNI1_PROMPT_MAX_CHARS && !bad_format &&
                    (!prm.source || uni1_is_asset_id(prm.source)) &&
                    (!prm.aspect_ratio || uni1_is_aspect_ratio(prm.aspect_ratio)) &&
                    nr <= (prm.source ? 8u : 9u);
    for (size_t i = 0; i < nr; i++)
        expect_ok = expect_ok && uni1_is_asset_id(refs[i]);
    FUZZ_CHECK(expect_ok == (v == UNI1_OK));

    if (b != UNI1_OK) {
        FUZZ_CHECK(body == NULL);
        fuzz_check_field(err2, sizeof err2);
        FUZZ_CHECK(err2[0] != '\0');
        free(buf);
        return 0;
    }
    cJSON *root = cJSON_ParseWithLength(body, strlen(body));
    FUZZ_CHECK(cJSON_IsObject(root));
    int members = 1;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    FUZZ_CHECK(cJSON_IsString(it) && strcmp(it->valuestring, prm.prompt) == 0);
    it = cJSON_GetObjectItemCaseSensitive(root, "source");
    if (prm.source) {
        members++;
        FUZZ_CHECK(cJSON_IsString(it) && strcmp(it->valuestring, prm.source) == 0);
    } else {
        FUZZ_CHECK(it == NULL);
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "imageRef");
    if (nr) {
        members++;
        FUZZ_CHECK(cJSON_IsArray(it) && (size_t)cJSON_GetArraySize(it) == nr);
        for (size_t i = 0; i < nr; i++)
            FUZZ_CHECK(strcmp(cJSON_GetArrayItem(it, (int)i)->valuestring, refs[i]) == 0);
    } else {
        FUZZ_CHECK(it == NULL);
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "aspectRatio");
    if (prm.aspect_ratio) {
        members++;
        FUZZ_CHECK(cJSON_IsString(it) && strcmp(it->valuestring, prm.aspect_ratio) == 0);
    } else {
        FUZZ_CHECK(it == NULL);
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "outputFormat");
    if (prm.output_format == UNI1_FORMAT_JPEG) {
        members++;
        FUZZ_CHECK(cJSON_IsString(it) && strcmp(it->valuestring, "jpeg") == 0);
    } else {
        FUZZ_CHECK(it == NULL);
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "webSearch");
    if (prm.web_search) {
        members++;
        FUZZ_CHECK(cJSON_IsTrue(it));
    } else {
        FUZZ_CHECK(it == NULL);
    }
    FUZZ_CHECK(cJSON_GetArraySize(root) == members);
    FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(root, "dryRun") == NULL);
    cJSON_Delete(root);
    free(body);
    free(buf);
    return 0;
}
