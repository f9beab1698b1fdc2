/* Checks shared by the fuzz targets. A target aborts (a crash to libFuzzer)
 * when a parser breaks a promise of uni1.h: outputs cleared on failure,
 * strings NUL-terminated and valid UTF-8, ids safe for URLs, raw_json that
 * parses back to the same values. */
#ifndef UNI1_FUZZ_COMMON_H
#define UNI1_FUZZ_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "uni1.h"
#include "uni1_internal.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static inline int fuzz_all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* A NUL-terminated, valid UTF-8 string inside a fixed field of cap bytes. */
static inline void fuzz_check_field(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    FUZZ_CHECK(n < cap);
    FUZZ_CHECK(uni1__utf8_valid(s, n, NULL));
}

static inline void fuzz_check_str(const char *s)
{
    FUZZ_CHECK(s != NULL);
    FUZZ_CHECK(uni1__utf8_valid(s, strlen(s), NULL));
}

/* Printable ASCII without spaces: what may go into a URL. */
static inline int fuzz_is_url_text(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7F)
            return 0;
    return 1;
}

static inline void fuzz_check_err(uni1_status st, const char *err, size_t cap)
{
    FUZZ_CHECK(st == UNI1_ERR_PROTOCOL || st == UNI1_ERR_NOMEM);
    fuzz_check_field(err, cap);
    FUZZ_CHECK(err[0] != '\0');
}

static inline void fuzz_check_job(const uni1_job *j)
{
    fuzz_check_field(j->id, sizeof j->id);
    FUZZ_CHECK(uni1__is_url_id(j->id));
    FUZZ_CHECK((int)j->state >= UNI1_JOB_UNKNOWN && (int)j->state <= UNI1_JOB_CANCELED);
    fuzz_check_field(j->status, sizeof j->status);
    if (j->state != UNI1_JOB_UNKNOWN)
        FUZZ_CHECK(strcmp(j->status, uni1_job_state_name(j->state)) == 0);
    FUZZ_CHECK(j->progress >= 0 && j->progress <= 1);
    FUZZ_CHECK((j->n_assets == 0) == (j->asset_ids == NULL));
    for (size_t i = 0; i < j->n_assets; i++)
        FUZZ_CHECK(uni1__is_url_id(j->asset_ids[i]));
    if (j->error)
        fuzz_check_str(j->error);
    if (j->hint)
        fuzz_check_str(j->hint);
    fuzz_check_field(j->created_at, sizeof j->created_at);
    FUZZ_CHECK(j->raw_json != NULL);
    FUZZ_CHECK(strlen(j->raw_json) == j->raw_len);
    FUZZ_CHECK(uni1__utf8_valid(j->raw_json, j->raw_len, NULL));
}

static inline int fuzz_str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Whether the object in json has a member `key` (then a bare re-parse would
 * read the wrapper path and the round trip is not comparable). */
static inline int fuzz_has_member(const char *json, size_t len, const char *key)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    int has = cJSON_GetObjectItemCaseSensitive(root, key) != NULL;
    cJSON_Delete(root);
    return has;
}

/* Numbers survive raw_json only up to cJSON's printing: 1.7.15 writes 15
 * significant digits whenever they read back within DBL_EPSILON (relative),
 * so a value may move by an ulp or so (0.58888888888888888 comes back as
 * 0.588888888888889, 9000000000000001 as 9e+15). */
static inline int fuzz_num_close(double a, double b, double abs_slack)
{
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return fabs(a - b) <= abs_slack + 4 * m * 2.220446049250313e-16;
}

/* raw_json, parsed again as a bare job, gives the same job. */
static inline void fuzz_check_job_round_trip(const uni1_job *j)
{
    if (fuzz_has_member(j->raw_json, j->raw_len, "job"))
        return;
    uni1_job again;
    char err[256];
    uni1_status st = uni1_parse_job(j->raw_json, j->raw_len, &again, err, sizeof err);
    if (st == UNI1_ERR_NOMEM)
        return;
    if (st != UNI1_OK)
        fprintf(stderr, "round trip failed: %s\n", err);
    FUZZ_CHECK(st == UNI1_OK);
    FUZZ_CHECK(strcmp(again.id, j->id) == 0);
    FUZZ_CHECK(again.state == j->state);
    FUZZ_CHECK(strcmp(again.status, j->status) == 0);
    FUZZ_CHECK(fuzz_num_close(again.progress, j->progress, 0));
    FUZZ_CHECK(again.n_assets == j->n_assets);
    for (size_t i = 0; i < j->n_assets; i++)
        FUZZ_CHECK(strcmp(again.asset_ids[i], j->asset_ids[i]) == 0);
    FUZZ_CHECK(fuzz_str_eq(again.error, j->error));
    FUZZ_CHECK(fuzz_str_eq(again.hint, j->hint));
    FUZZ_CHECK(strcmp(again.created_at, j->created_at) == 0);
    FUZZ_CHECK(again.raw_len == j->raw_len && strcmp(again.raw_json, j->raw_json) == 0);
    uni1_job_clear(&again);
}

/* A deep copy equals the original and owns its memory. */
static inline void fuzz_check_job_copy(const uni1_job *j)
{
    uni1_job c;
    if (uni1_job_copy(&c, j) != UNI1_OK) {
        FUZZ_CHECK(fuzz_all_zero(&c, sizeof c));
        return;
    }
    FUZZ_CHECK(memcmp(c.id, j->id, sizeof c.id) == 0);
    FUZZ_CHECK(c.n_assets == j->n_assets);
    for (size_t i = 0; i < j->n_assets; i++)
        FUZZ_CHECK(c.asset_ids[i] != j->asset_ids[i] &&
                   strcmp(c.asset_ids[i], j->asset_ids[i]) == 0);
    FUZZ_CHECK(fuzz_str_eq(c.error, j->error) && fuzz_str_eq(c.hint, j->hint));
    FUZZ_CHECK(c.raw_len == j->raw_len && memcmp(c.raw_json, j->raw_json, c.raw_len + 1) == 0);
    uni1_job_clear(&c);
    FUZZ_CHECK(fuzz_all_zero(&c, sizeof c));
}

#endif /* UNI1_FUZZ_COMMON_H */
