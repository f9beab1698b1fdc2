/* Tests of csrc/core/body.c: validation of generate parameters and the JSON
 * body sent to the generate endpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "uni1.h"

static uni1_generate_params base_params(const char *prompt)
{
    uni1_generate_params p;
    memset(&p, 0, sizeof p);
    p.prompt = prompt;
    p.output_format = UNI1_FORMAT_PNG;
    return p;
}

/* A string of n copies of the UTF-8 character ch (malloc'd). */
static char *repeat(const char *ch, size_t n)
{
    size_t k = strlen(ch);
    char *s = malloc(n * k + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * k, ch, k);
    s[n * k] = '\0';
    return s;
}

static uni1_status validate(const uni1_generate_params *p, char *err, size_t errlen)
{
    err[0] = '\0';
    return uni1_validate_generate(p, err, errlen);
}

/* --- ids and ratios ------------------------------------------------------ */

static void test_is_asset_id(void **state)
{
    (void)state;
    assert_true(uni1_is_asset_id("asset_abc"));
    assert_true(uni1_is_asset_id("asset_A1b2-C3_d4"));
    assert_true(uni1_is_asset_id("asset_x"));
    assert_false(uni1_is_asset_id("asset_"));
    assert_false(uni1_is_asset_id("asset"));
    assert_false(uni1_is_asset_id("Asset_abc"));
    assert_false(uni1_is_asset_id("job_abc"));
    assert_false(uni1_is_asset_id(" asset_abc"));
    assert_false(uni1_is_asset_id("asset_abc "));
    assert_false(uni1_is_asset_id("asset_a/b"));
    assert_false(uni1_is_asset_id("asset_a.b"));
    assert_false(uni1_is_asset_id("asset_a%2e"));
    assert_false(uni1_is_asset_id("asset_a?b"));
    assert_false(uni1_is_asset_id("asset_\xC3\xA9"));
    assert_false(uni1_is_asset_id(""));
    assert_false(uni1_is_asset_id(NULL));
}

static void test_is_asset_id_length_bounds(void **state)
{
    (void)state;
    char id[UNI1_ID_MAX + 2];
    /* "asset_" + 121 characters = 127 bytes: the longest accepted */
    memcpy(id, "asset_", 6);
    memset(id + 6, 'z', UNI1_ID_MAX - 7);
    id[UNI1_ID_MAX - 1] = '\0';
    assert_int_equal(strlen(id), UNI1_ID_MAX - 1);
    assert_true(uni1_is_asset_id(id));
    id[UNI1_ID_MAX - 1] = 'z';
    id[UNI1_ID_MAX] = '\0';
    assert_false(uni1_is_asset_id(id));
}

static void test_aspect_ratios(void **state)
{
    (void)state;
    static const char *const want[] = {"1:3", "9:16", "2:3",  "3:4", "1:1",
                                       "4:3", "3:2",  "16:9", "3:1"};
    size_t n = 0;
    while (uni1_aspect_ratios[n])
        n++;
    assert_int_equal(n, 9);
    for (size_t i = 0; i < 9; i++) {
        assert_string_equal(uni1_aspect_ratios[i], want[i]);
        assert_true(uni1_is_aspect_ratio(want[i]));
    }
    assert_false(uni1_is_aspect_ratio("16:10"));
    assert_false(uni1_is_aspect_ratio("3:2 "));
    assert_false(uni1_is_aspect_ratio("3/2"));
    assert_false(uni1_is_aspect_ratio("1:1\n"));
    assert_false(uni1_is_aspect_ratio(""));
    assert_false(uni1_is_aspect_ratio(NULL));
}

/* --- validation ---------------------------------------------------------- */

static void test_validate_minimal_ok(void **state)
{
    (void)state;
    char err[256];
    uni1_generate_params p = base_params("a cat");
    assert_int_equal(validate(&p, err, sizeof err), UNI1_OK);
    p.prompt = "x"; /* one character is the minimum */
    assert_int_equal(validate(&p, err, sizeof err), UNI1_OK);
}

static void test_validate_missing_or_empty_prompt(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(validate(NULL, err, sizeof err), UNI1_ERR_INVALID);
    uni1_generate_params p = base_params(NULL);
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    assert_string_equal(err, "prompt: required");
    p.prompt = "";
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    assert_non_null(strstr(err, "empty"));
}

static void test_validate_prompt_length_ascii(void **state)
{
    (void)state;
    char err[256];
    char *s = repeat("a", 6000);
    uni1_generate_params p = base_params(s);
    assert_int_equal(validate(&p, err, sizeof err), UNI1_OK);
    free(s);
    s = repeat("a", 6001);
    p.prompt = s;
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    assert_non_null(strstr(err, "6000"));
    assert_int_equal(strncmp(err, "prompt:", 7), 0);
    free(s);
}

static void test_validate_prompt_counts_code_points(void **state)
{
    (void)state;
    char err[256];
    static const char *const chars[] = {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
    for (size_t i = 0; i < 3; i++) {
        /* 6000 characters are 12000..24000 bytes: still within the limit */
        char *s = repeat(chars[i], 6000);
        uni1_generate_params p = base_params(s);
        assert_int_equal(validate(&p, err, sizeof err), UNI1_OK);
        free(s);
        s = repeat(chars[i], 6001);
        p.prompt = s;
        assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
        free(s);
    }
    /* mixed: 5999 ASCII + one 4-byte character = 6000 */
    char *s = repeat("a", 5999);
    char *m = malloc(5999 + 5);
    memcpy(m, s, 5999);
    memcpy(m + 5999, "\xF0\x9F\x98\x80", 5);
    uni1_generate_params p = base_params(m);
    assert_int_equal(validate(&p, err, sizeof err), UNI1_OK);
    free(s);
    free(m);
}

static void test_validate_prompt_huge_is_cheap_and_rejected(void **state)
{
    (void)state;
    char err[256];
    char *s = repeat("b", 4 * 1024 * 1024);
    uni1_generate_params p = base_params(s);
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    free(s);
}

static void test_validate_prompt_invalid_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "abc\x80",          /* lone continuation */
        "\xC0\xAF",         /* overlong */
        "x\xE0\x80\xAF",    /* overlong */
        "\xED\xA0\x80 cat", /* surrogate */
        "\xF4\x90\x80\x80", /* above U+10FFFF */
        "cat \xFF",         /* never valid */
        "cat \xC3",         /* cut at the end */
        "cat \xE2\x82",     /* cut at the end */
        "\xC3\x28",         /* bad continuation */
    };
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uni1_generate_params p = base_params(bad[i]);
        assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
        assert_non_null(strstr(err, "invalid UTF-8"));
    }
    uni1_generate_params p = base_params("abc \xFF");
    validate(&p, err, sizeof err);
    assert_string_equal(err, "prompt: invalid UTF-8 at byte 4");
}

static const char *const ten_refs[] = {"asset_r0", "asset_r1", "asset_r2", "asset_r3", "asset_r4",
                                       "asset_r5", "asset_r6", "asset_r7", "asset_r8", "asset_r9"};

static void test_validate_ref_counts(void **state)
{
    (void)state;
    char err[256];
    uni1_generate_params p = base_params("cat");
    p.image_refs = ten_refs;
    p.n_image_refs = 9;
    assert_int_equal(validate(&p, err, sizeof err), UNI1_OK);
    p.n_image_refs = 10;
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    assert_non_null(strstr(err, "imageRef"));
    assert_non_null(strstr(err, "9"));
    p.source = "asset_src";
    p.n_image_refs = 8;
    assert_int_equal(validate(&p, err, sizeof err), UNI1_OK);
    p.n_image_refs = 9;
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    assert_non_null(strstr(err, "source"));
    assert_non_null(strstr(err, "8"));
    p.n_image_refs = 0;
    assert_int_equal(validate(&p, err, sizeof err), UNI1_OK);
}

static void test_validate_bad_ids(void **state)
{
    (void)state;
    char err[256];
    uni1_generate_params p = base_params("cat");
    p.source = "job_abc";
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    assert_int_equal(strncmp(err, "source:", 7), 0);
    p.source = "asset_../../x";
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);

    p.source = NULL;
    const char *refs[] = {"asset_ok", "asset_ok2", "asset bad"};
    p.image_refs = refs;
    p.n_image_refs = 3;
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    assert_int_equal(strncmp(err, "imageRef[2]:", 12), 0);

    const char *null_ref[] = {"asset_ok", NULL};
    p.image_refs = null_ref;
    p.n_image_refs = 2;
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    assert_int_equal(strncmp(err, "imageRef[1]:", 12), 0);

    p.image_refs = NULL;
    p.n_image_refs = 1;
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
}

static void test_validate_ratio_and_format(void **state)
{
    (void)state;
    char err[256];
    uni1_generate_params p = base_params("cat");
    p.aspect_ratio = "16:9";
    assert_int_equal(validate(&p, err, sizeof err), UNI1_OK);
    p.aspect_ratio = "16:10";
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    assert_int_equal(strncmp(err, "aspectRatio:", 12), 0);
    p.aspect_ratio = "";
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    p.aspect_ratio = NULL;
    p.output_format = UNI1_FORMAT_JPEG;
    assert_int_equal(validate(&p, err, sizeof err), UNI1_OK);
    p.output_format = (uni1_format)2;
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    assert_int_equal(strncmp(err, "outputFormat:", 13), 0);
    p.output_format = (uni1_format)-1;
    assert_int_equal(validate(&p, err, sizeof err), UNI1_ERR_INVALID);
    p.output_format = UNI1_FORMAT_PNG;
    p.web_search = 7; /* any non-zero value means true */
    assert_int_equal(validate(&p, err, sizeof err), UNI1_OK);
}

static void test_validate_tolerates_null_err(void **state)
{
    (void)state;
    uni1_generate_params p = base_params("");
    assert_int_equal(uni1_validate_generate(&p, NULL, 0), UNI1_ERR_INVALID);
    char tiny[4];
    assert_int_equal(uni1_validate_generate(&p, tiny, sizeof tiny), UNI1_ERR_INVALID);
    assert_int_equal(strlen(tiny), 3);
}

/* --- body building ------------------------------------------------------- */

static char *build(const uni1_generate_params *p, uni1_status want)
{
    char err[256] = "";
    char *out = (char *)0x1;
    uni1_status st = uni1_build_generate_body(p, &out, err, sizeof err);
    assert_int_equal(st, want);
    if (st != UNI1_OK) {
        assert_null(out);
        assert_true(err[0] != '\0');
    }
    return out;
}

static void test_build_minimal(void **state)
{
    (void)state;
    uni1_generate_params p = base_params("a cat");
    char *body = build(&p, UNI1_OK);
    /* PNG and webSearch=false are defaults and are left out */
    assert_string_equal(body, "{\"prompt\":\"a cat\"}");
    free(body);
}

static void test_build_full(void **state)
{
    (void)state;
    uni1_generate_params p = base_params("a cat");
    const char *refs[] = {"asset_r1", "asset_r2"};
    p.source = "asset_src";
    p.image_refs = refs;
    p.n_image_refs = 2;
    p.aspect_ratio = "16:9";
    p.output_format = UNI1_FORMAT_JPEG;
    p.web_search = 1;
    char *body = build(&p, UNI1_OK);
    assert_string_equal(body, "{\"prompt\":\"a cat\",\"source\":\"asset_src\","
                              "\"imageRef\":[\"asset_r1\",\"asset_r2\"],\"aspectRatio\":\"16:9\","
                              "\"outputFormat\":\"jpeg\",\"webSearch\":true}");
    free(body);
}

static void test_build_single_ref_is_array(void **state)
{
    (void)state;
    uni1_generate_params p = base_params("cat");
    const char *refs[] = {"asset_only"};
    p.image_refs = refs;
    p.n_image_refs = 1;
    char *body = build(&p, UNI1_OK);
    assert_non_null(strstr(body, "\"imageRef\":[\"asset_only\"]"));
    cJSON *j = cJSON_ParseWithLength(body, strlen(body));
    assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "imageRef")));
    cJSON_Delete(j);
    free(body);
}

static void test_build_nine_refs(void **state)
{
    (void)state;
    uni1_generate_params p = base_params("cat");
    p.image_refs = ten_refs;
    p.n_image_refs = 9;
    char *body = build(&p, UNI1_OK);
    cJSON *j = cJSON_ParseWithLength(body, strlen(body));
    const cJSON *refs = cJSON_GetObjectItemCaseSensitive(j, "imageRef");
    assert_int_equal(cJSON_GetArraySize(refs), 9);
    assert_string_equal(cJSON_GetArrayItem(refs, 8)->valuestring, "asset_r8");
    cJSON_Delete(j);
    free(body);
    p.n_image_refs = 10;
    assert_null(build(&p, UNI1_ERR_INVALID));
}

static void test_build_defaults_omitted_and_set_fields_sent(void **state)
{
    (void)state;
    uni1_generate_params p = base_params("cat");
    p.output_format = UNI1_FORMAT_PNG;
    p.web_search = 0;
    char *body = build(&p, UNI1_OK);
    assert_null(strstr(body, "outputFormat"));
    assert_null(strstr(body, "webSearch"));
    assert_null(strstr(body, "aspectRatio"));
    assert_null(strstr(body, "imageRef"));
    assert_null(strstr(body, "source"));
    free(body);
    /* 3:2 is the default only when creating; an explicit one is sent */
    p.aspect_ratio = "3:2";
    body = build(&p, UNI1_OK);
    assert_non_null(strstr(body, "\"aspectRatio\":\"3:2\""));
    free(body);
}

static void test_build_never_sends_dry_run(void **state)
{
    (void)state;
    uni1_generate_params p = base_params("dryRun");
    const char *refs[] = {"asset_a"};
    p.image_refs = refs;
    p.n_image_refs = 1;
    p.source = "asset_s";
    p.aspect_ratio = "1:1";
    p.output_format = UNI1_FORMAT_JPEG;
    p.web_search = 1;
    char *body = build(&p, UNI1_OK);
    cJSON *j = cJSON_ParseWithLength(body, strlen(body));
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "dryRun"));
    assert_int_equal(cJSON_GetArraySize(j), 6);
    cJSON_Delete(j);
    free(body);
}

static void test_build_escapes_prompt(void **state)
{
    (void)state;
    const char *prompt = "say \"hi\"\\ \n\ttab \x01 caf\xC3\xA9 \xF0\x9F\x98\x80 </script>";
    uni1_generate_params p = base_params(prompt);
    char *body = build(&p, UNI1_OK);
    assert_non_null(strstr(body, "\\\"hi\\\""));
    assert_non_null(strstr(body, "\\\\"));
    assert_non_null(strstr(body, "\\n"));
    assert_non_null(strstr(body, "\\t"));
    assert_non_null(strstr(body, "\\u0001"));
    assert_null(strchr(body, '\n'));
    assert_null(strchr(body, '\x01'));
    /* parsed back, the prompt is exactly what was given: never trimmed */
    cJSON *j = cJSON_ParseWithLength(body, strlen(body));
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "prompt")->valuestring, prompt);
    cJSON_Delete(j);
    free(body);
}

static void test_build_long_multibyte_prompt_round_trips(void **state)
{
    (void)state;
    char *s = repeat("\xE2\x82\xAC", 6000);
    uni1_generate_params p = base_params(s);
    char *body = build(&p, UNI1_OK);
    cJSON *j = cJSON_ParseWithLength(body, strlen(body));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "prompt")->valuestring, s);
    cJSON_Delete(j);
    free(body);
    free(s);
    s = repeat(" ", 6001);
    p.prompt = s;
    assert_null(build(&p, UNI1_ERR_INVALID));
    free(s);
}

static void test_build_rejects_invalid(void **state)
{
    (void)state;
    uni1_generate_params p = base_params("cat");
    p.aspect_ratio = "7:5";
    assert_null(build(&p, UNI1_ERR_INVALID));
    p = base_params("bad \xFF");
    assert_null(build(&p, UNI1_ERR_INVALID));
    assert_null(build(NULL, UNI1_ERR_INVALID));
    char err[64];
    p = base_params("cat");
    assert_int_equal(uni1_build_generate_body(&p, NULL, err, sizeof err), UNI1_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_asset_id),
        cmocka_unit_test(test_is_asset_id_length_bounds),
        cmocka_unit_test(test_aspect_ratios),
        cmocka_unit_test(test_validate_minimal_ok),
        cmocka_unit_test(test_validate_missing_or_empty_prompt),
        cmocka_unit_test(test_validate_prompt_length_ascii),
        cmocka_unit_test(test_validate_prompt_counts_code_points),
        cmocka_unit_test(test_validate_prompt_huge_is_cheap_and_rejected),
        cmocka_unit_test(test_validate_prompt_invalid_utf8),
        cmocka_unit_test(test_validate_ref_counts),
        cmocka_unit_test(test_validate_bad_ids),
        cmocka_unit_test(test_validate_ratio_and_format),
        cmocka_unit_test(test_validate_tolerates_null_err),
        cmocka_unit_test(test_build_minimal),
        cmocka_unit_test(test_build_full),
        cmocka_unit_test(test_build_single_ref_is_array),
        cmocka_unit_test(test_build_nine_refs),
        cmocka_unit_test(test_build_defaults_omitted_and_set_fields_sent),
        cmocka_unit_test(test_build_never_sends_dry_run),
        cmocka_unit_test(test_build_escapes_prompt),
        cmocka_unit_test(test_build_long_multibyte_prompt_round_trips),
        cmocka_unit_test(test_build_rejects_invalid),
    };
    return cmocka_run_group_tests_name("body", tests, NULL, NULL);
}
