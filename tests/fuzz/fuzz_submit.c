/* libFuzzer target: uni1_parse_submit (POST /generate answers). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uni1_job job;
    char err[256];
    double cost = 12345;
    memset(&job, 0xA5, sizeof job);
    uni1_status st = uni1_parse_submit((const char *)data, size, &job, &cost, err, sizeof err);
    if (st != UNI1_OK) {
        fuzz_check_err(st, err, sizeof err);
        FUZZ_CHECK(fuzz_all_zero(&job, sizeof job));
        FUZZ_CHECK(cost == -1);
        return 0;
    }
    FUZZ_CHECK(cost == -1 || (isfinite(cost) && cost >= 0));
    fuzz_check_job(&job);
    fuzz_check_job_round_trip(&job);
    /* the same bytes through uni1_parse_job give the same job */
    uni1_job same;
    if (uni1_parse_job((const char *)data, size, &same, err, sizeof err) == UNI1_OK) {
        FUZZ_CHECK(strcmp(same.id, job.id) == 0);
        FUZZ_CHECK(same.raw_len == job.raw_len && strcmp(same.raw_json, job.raw_json) == 0);
        uni1_job_clear(&same);
    }
    uni1_job_clear(&job);
    return 0;
}
