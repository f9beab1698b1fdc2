/* Tests of csrc/core/cdn.c: what a CDN answer to a download is trusted for
 * (Content-Range, declared sizes, Content-Type, image signatures). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uni1.h"
#include "uni1_internal.h"

#define CAP (1000LL)

/* --- Content-Range --------------------------------------------------------- */

static void test_content_range_well_formed(void **state)
{
    (void)state;
    long long a, b, t;
    assert_int_equal(uni1__parse_content_range("bytes 10-99/100", &a, &b, &t), 0);
    assert_true(a == 10 && b == 99 && t == 100);
    assert_int_equal(uni1__parse_content_range(" Bytes 0-0/1 ", &a, &b, &t), 0);
    assert_true(a == 0 && b == 0 && t == 1);
    assert_int_equal(uni1__parse_content_range("bytes 5-9/*", &a, &b, &t), 0);
    assert_true(a == 5 && b == 9 && t == -1);
}

static void test_content_range_malformed(void **state)
{
    (void)state;
    long long a, b, t;
    static const char *const bad[] = {
        "",
        "bytes",
        "bytes */100",                      /* an unsatisfied-range answer, not a range */
        "bytes 9-5/100",                    /* end before start */
        "bytes 0-100/100",                  /* end past the total */
        "bytes 0-9/100 junk",               /* trailing text */
        "bytes -1-9/100",                   /* a sign */
        "items 0-9/100",                    /* another unit */
        "bytes 0-9/1000000000000000000000", /* overflows */
        "bytes 0-9",
        NULL,
    };
    for (size_t i = 0; bad[i]; i++)
        assert_int_equal(uni1__parse_content_range(bad[i], &a, &b, &t), -1);
}

/* --- Content-Type and signatures ------------------------------------------ */

static void test_text_types(void **state)
{
    (void)state;
    assert_true(uni1__is_text_type("text/html"));
    assert_true(uni1__is_text_type("TEXT/plain"));
    assert_true(uni1__is_text_type("application/json"));
    assert_true(uni1__is_text_type("application/problem+json"));
    assert_true(uni1__is_text_type("application/xml"));
    assert_true(uni1__is_text_type("application/xhtml+xml"));
    assert_false(uni1__is_text_type("image/png"));
    assert_false(uni1__is_text_type("application/octet-stream"));
    assert_false(uni1__is_text_type("binary/octet-stream"));
    assert_false(uni1__is_text_type(""));
    assert_false(uni1__is_text_type(NULL));
}

static void test_signatures(void **state)
{
    (void)state;
    const unsigned char png[] = "\x89PNG\r\n\x1a\nrest";
    const unsigned char jpeg[] = "\xff\xd8\xff\xe0";
    const unsigned char html[] = "<html><body>502</body></html>";
    assert_true(uni1__signature_matches("image/png", png, sizeof png - 1));
    assert_false(uni1__signature_matches("image/png", html, sizeof html - 1));
    assert_false(uni1__signature_matches("image/png", png, 7)); /* too short */
    assert_true(uni1__signature_matches("image/jpeg", jpeg, 4));
    assert_false(uni1__signature_matches("image/jpeg", html, sizeof html - 1));
    assert_true(uni1__signature_matches("image/x-unknown", html, sizeof html - 1));
    assert_true(uni1__image_mime_known("image/webp"));
    assert_false(uni1__image_mime_known("application/octet-stream"));
    assert_false(uni1__image_mime_known(""));
}

/* --- the verdict ------------------------------------------------------------ */

static uni1_cdn_answer answer(long status, long long offset, long long expect, long long cl)
{
    uni1_cdn_answer a;
    memset(&a, 0, sizeof a);
    a.status = status;
    a.offset = offset;
    a.expect = expect;
    a.content_length = cl;
    a.content_type = "image/png";
    return a;
}

static uni1_cdn_answer ranged(long long offset, long long expect, long long cl, long long start,
                              long long end, long long total)
{
    uni1_cdn_answer a = answer(206, offset, expect, cl);
    a.has_range = 1;
    a.range_start = start;
    a.range_end = end;
    a.range_total = total;
    return a;
}

static void test_judge_full_answers(void **state)
{
    (void)state;
    long long total, limit;
    uni1_cdn_answer a = answer(200, 0, 100, 100);
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_KEEP);
    assert_true(total == 100 && limit == 100);
    /* close-delimited: the record's size bounds it */
    a = answer(200, 0, 100, -1);
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_KEEP);
    assert_true(total == 100 && limit == 100);
    /* nobody declares a size: the cap bounds it */
    a = answer(200, 0, 0, -1);
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_KEEP);
    assert_true(total == -1 && limit == CAP);
    /* the CDN and the record disagree */
    a = answer(200, 0, 100, 60);
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_BAD_LENGTH);
    a = answer(200, 0, 0, CAP + 1);
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_BAD_LENGTH);
    /* a 200 to a Range request: the whole body again, from zero */
    a = answer(200, 40, 100, 100);
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_RESTART);
    assert_true(total == 100 && limit == 100);
}

static void test_judge_partial_answers(void **state)
{
    (void)state;
    long long total, limit;
    uni1_cdn_answer a = ranged(40, 100, 60, 40, 99, 100);
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_KEEP);
    assert_true(total == 100 && limit == 60);
    a = ranged(40, 0, -1, 40, 99, -1); /* a total of "*", no record size */
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_KEEP);
    assert_true(total == -1 && limit == 60);
    a = ranged(40, 100, -1, 0, 99, 100); /* wrong start */
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_BAD_RANGE);
    a = ranged(40, 100, -1, 40, 99, 1100); /* wrong total */
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_BAD_RANGE);
    a = ranged(40, 100, 1060, 40, 99, 100); /* extra bytes announced */
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_BAD_RANGE);
    a = ranged(40, 0, -1, 40, 99, -1);
    a.range_total = 80; /* past its own total */
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_BAD_RANGE);
    a = answer(206, 40, 100, 60); /* no Content-Range at all */
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_BAD_RANGE);
}

static void test_judge_documents_and_errors(void **state)
{
    (void)state;
    long long total, limit;
    uni1_cdn_answer a = answer(200, 0, 100, 100);
    a.content_type = "text/html";
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_NOT_IMAGE);
    a = answer(403, 0, 100, 300);
    a.content_type = "text/xml";
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_DISCARD);
    a = answer(200, 0, 100, 100);
    a.content_type = NULL;
    assert_int_equal(uni1__cdn_judge(&a, CAP, &total, &limit), UNI1_CDN_KEEP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_range_well_formed),
        cmocka_unit_test(test_content_range_malformed),
        cmocka_unit_test(test_text_types),
        cmocka_unit_test(test_signatures),
        cmocka_unit_test(test_judge_full_answers),
        cmocka_unit_test(test_judge_partial_answers),
        cmocka_unit_test(test_judge_documents_and_errors),
    };
    return cmocka_run_group_tests_name("cdn", tests, NULL, NULL);
}
