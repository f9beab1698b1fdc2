/* libFuzzer target: uni1_parse_error_body (any non-2xx answer). It never
 * fails; what it fills must always be safe to show. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uni1_error *e)
{
    size_t n = strnlen(e->message, sizeof e->message);
    FUZZ_CHECK(n < sizeof e->message);
    FUZZ_CHECK(uni1__utf8_valid(e->message, n, NULL));
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)e->message[i] >= 0x20 && e->message[i] != 0x7F);
    /* trimmed, no doubled spaces */
    FUZZ_CHECK(n == 0 || (e->message[0] != ' ' && e->message[n - 1] != ' '));
    FUZZ_CHECK(strstr(e->message, "  ") == NULL);
    fuzz_check_field(e->trace_id, sizeof e->trace_id);
    FUZZ_CHECK(fuzz_is_url_text(e->trace_id));
    FUZZ_CHECK(e->retry_after == -1 || (isfinite(e->retry_after) && e->retry_after >= 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uni1_error e, again;
    memset(&e, 0xA5, sizeof e);
    e.status = UNI1_ERR_HTTP;
    e.http_status = 503;
    e.body = NULL;
    e.body_len = 5;
    uni1_parse_error_body((const char *)data, size, &e);
    check(&e);
    FUZZ_CHECK(e.status == UNI1_ERR_HTTP && e.http_status == 503 && e.body == NULL &&
               e.body_len == 5);
    /* deterministic */
    memset(&again, 0, sizeof again);
    uni1_parse_error_body((const char *)data, size, &again);
    FUZZ_CHECK(strcmp(e.message, again.message) == 0);
    FUZZ_CHECK(strcmp(e.trace_id, again.trace_id) == 0);
    FUZZ_CHECK(e.retry_after == again.retry_after ||
               (isnan(e.retry_after) && isnan(again.retry_after)));
    return 0;
}
