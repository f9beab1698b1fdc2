/* libFuzzer target: uni1_parse_asset (GET /assets/{id} answers). */
#include <strings.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int starts_with_http(const char *u)
{
    return strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0;
}

/* Sizes are floor()ed after cJSON's rounding, hence 1 of slack; a value
 * just under the limit may round up to it and then read as absent. */
static int int_close(long long a, long long b, long long absent, double limit)
{
    if (fuzz_num_close((double)a, (double)b, 1))
        return 1;
    if (a == absent)
        return (double)b >= limit - 2;
    if (b == absent)
        return (double)a >= limit - 2;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uni1_asset a;
    char err[256];
    memset(&a, 0xA5, sizeof a);
    uni1_status st = uni1_parse_asset((const char *)data, size, &a, err, sizeof err);
    if (st != UNI1_OK) {
        fuzz_check_err(st, err, sizeof err);
        FUZZ_CHECK(fuzz_all_zero(&a, sizeof a));
        return 0;
    }
    fuzz_check_field(a.id, sizeof a.id);
    FUZZ_CHECK(uni1__is_url_id(a.id));
    if (a.url) {
        FUZZ_CHECK(starts_with_http(a.url));
        FUZZ_CHECK(fuzz_is_url_text(a.url));
    }
    fuzz_check_field(a.mime_type, sizeof a.mime_type);
    FUZZ_CHECK(fuzz_is_url_text(a.mime_type));
    fuzz_check_field(a.status, sizeof a.status);
    FUZZ_CHECK(a.width >= 0 && a.height >= 0 && a.size >= -1);
    FUZZ_CHECK(a.raw_json && strlen(a.raw_json) == a.raw_len);
    FUZZ_CHECK(uni1__utf8_valid(a.raw_json, a.raw_len, NULL));

    /* raw_json parsed again gives the same asset */
    if (!fuzz_has_member(a.raw_json, a.raw_len, "asset")) {
        uni1_asset b;
        st = uni1_parse_asset(a.raw_json, a.raw_len, &b, err, sizeof err);
        if (st != UNI1_ERR_NOMEM) {
            FUZZ_CHECK(st == UNI1_OK);
            FUZZ_CHECK(strcmp(a.id, b.id) == 0);
            FUZZ_CHECK(fuzz_str_eq(a.url, b.url));
            FUZZ_CHECK(strcmp(a.mime_type, b.mime_type) == 0);
            FUZZ_CHECK(strcmp(a.status, b.status) == 0);
            FUZZ_CHECK(int_close(a.width, b.width, 0, 2147483648.0));
            FUZZ_CHECK(int_close(a.height, b.height, 0, 2147483648.0));
            FUZZ_CHECK(int_close(a.size, b.size, -1, 9007199254740992.0));
            FUZZ_CHECK(strcmp(a.raw_json, b.raw_json) == 0);
            uni1_asset_clear(&b);
        }
    }
    uni1_asset_clear(&a);
    FUZZ_CHECK(fuzz_all_zero(&a, sizeof a));
    return 0;
}
