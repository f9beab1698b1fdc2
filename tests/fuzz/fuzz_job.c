/* libFuzzer target: uni1_parse_job (GET /jobs/{id} answers). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uni1_job job;
    char err[256];
    memset(&job, 0xA5, sizeof job); /* an output: old contents never read */
    uni1_status st = uni1_parse_job((const char *)data, size, &job, err, sizeof err);
    if (st != UNI1_OK) {
        fuzz_check_err(st, err, sizeof err);
        FUZZ_CHECK(fuzz_all_zero(&job, sizeof job));
        return 0;
    }
    fuzz_check_job(&job);
    fuzz_check_job_round_trip(&job);
    fuzz_check_job_copy(&job);
    uni1_job_clear(&job);
    FUZZ_CHECK(fuzz_all_zero(&job, sizeof job));
    return 0;
}
