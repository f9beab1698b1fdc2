/* libFuzzer target: uni1_parse_upload (POST /uploads, GET /uploads/{id} and
 * complete-action answers), and uni1_upload_plan on sizes taken from the
 * input.
 *
 * The fuzz build links only the pure core, so the parser is compiled here
 * from upload.c with its network half left out. */
#define UNI1_UPLOAD_PURE_ONLY
#include "upload.c"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_upload(const uni1_upload *u)
{
    fuzz_check_field(u->id, sizeof u->id);
    FUZZ_CHECK(uni1__is_url_id(u->id));
    FUZZ_CHECK((int)u->state >= UNI1_UPLOAD_UNKNOWN && (int)u->state <= UNI1_UPLOAD_FAILED);
    fuzz_check_field(u->status, sizeof u->status);
    if (u->state != UNI1_UPLOAD_UNKNOWN)
        FUZZ_CHECK(strcmp(u->status, uni1_upload_state_name(u->state)) == 0);
    FUZZ_CHECK((u->n_parts == 0) == (u->parts == NULL));
    FUZZ_CHECK(u->n_parts <= UNI1_UPLOAD_MAX_PARTS);
    for (size_t i = 0; i < u->n_parts; i++) {
        const uni1_upload_part *p = &u->parts[i];
        FUZZ_CHECK(p->number >= 1 && p->number <= UNI1_UPLOAD_MAX_PARTS);
        if (i > 0)
            FUZZ_CHECK(p->number > u->parts[i - 1].number); /* sorted, unique */
        FUZZ_CHECK(p->url != NULL);
        FUZZ_CHECK(strncasecmp(p->url, "http://", 7) == 0 ||
                   strncasecmp(p->url, "https://", 8) == 0);
        FUZZ_CHECK(fuzz_is_url_text(p->url));
        fuzz_check_field(p->expires, sizeof p->expires);
        FUZZ_CHECK(fuzz_is_url_text(p->expires));
    }
    fuzz_check_field(u->entity_id, sizeof u->entity_id);
    FUZZ_CHECK(u->entity_id[0] == 0 || uni1__is_url_id(u->entity_id));
    if (u->error_message) {
        fuzz_check_str(u->error_message);
        FUZZ_CHECK(u->error_message[0] != 0);
    }
    FUZZ_CHECK(u->raw_json && strlen(u->raw_json) == u->raw_len);
    FUZZ_CHECK(uni1__utf8_valid(u->raw_json, u->raw_len, NULL));
}

/* raw_json, parsed again, gives the same upload. */
static void check_round_trip(const uni1_upload *u)
{
    if (fuzz_has_member(u->raw_json, u->raw_len, "upload"))
        return;
    uni1_upload again;
    char err[256];
    uni1_status st = uni1_parse_upload(u->raw_json, u->raw_len, &again, err, sizeof err);
    if (st == UNI1_ERR_NOMEM)
        return;
    if (st != UNI1_OK)
        fprintf(stderr, "round trip failed: %s\n", err);
    FUZZ_CHECK(st == UNI1_OK);
    FUZZ_CHECK(strcmp(again.id, u->id) == 0);
    FUZZ_CHECK(again.state == u->state && strcmp(again.status, u->status) == 0);
    FUZZ_CHECK(again.n_parts == u->n_parts);
    for (size_t i = 0; i < u->n_parts; i++) {
        FUZZ_CHECK(again.parts[i].number == u->parts[i].number);
        FUZZ_CHECK(strcmp(again.parts[i].url, u->parts[i].url) == 0);
        FUZZ_CHECK(strcmp(again.parts[i].expires, u->parts[i].expires) == 0);
    }
    FUZZ_CHECK(strcmp(again.entity_id, u->entity_id) == 0);
    FUZZ_CHECK(fuzz_str_eq(again.error_message, u->error_message));
    FUZZ_CHECK(again.raw_len == u->raw_len && strcmp(again.raw_json, u->raw_json) == 0);
    uni1_upload_clear(&again);
}

static void check_plan(const uint8_t *data, size_t size)
{
    long long n = 0;
    memcpy(&n, data, size < sizeof n ? size : sizeof n);
    long long ps = -1;
    int parts = uni1_upload_plan(n, &ps);
    if (parts == 0) {
        FUZZ_CHECK(ps == 0);
        FUZZ_CHECK(n <= 0 || n > UNI1_UPLOAD_MAX_PART_SIZE * UNI1_UPLOAD_MAX_PARTS);
        return;
    }
    FUZZ_CHECK(n > 0 && parts <= UNI1_UPLOAD_MAX_PARTS);
    FUZZ_CHECK(ps >= UNI1_UPLOAD_PART_SIZE && ps <= UNI1_UPLOAD_MAX_PART_SIZE);
    FUZZ_CHECK((long long)(parts - 1) * ps < n && n <= (long long)parts * ps);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_plan(data, size);
    uni1_upload u;
    char err[256];
    memset(&u, 0xA5, sizeof u); /* an output: old contents never read */
    uni1_status st = uni1_parse_upload((const char *)data, size, &u, err, sizeof err);
    if (st != UNI1_OK) {
        fuzz_check_err(st, err, sizeof err);
        FUZZ_CHECK(fuzz_all_zero(&u, sizeof u));
        return 0;
    }
    check_upload(&u);
    check_round_trip(&u);
    uni1_upload_clear(&u);
    FUZZ_CHECK(fuzz_all_zero(&u, sizeof u));
    return 0;
}
