/* libFuzzer target: uni1_parse_job_list (GET /jobs answers). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uni1_job_list l;
    char err[256];
    memset(&l, 0xA5, sizeof l);
    uni1_status st = uni1_parse_job_list((const char *)data, size, &l, err, sizeof err);
    if (st != UNI1_OK) {
        fuzz_check_err(st, err, sizeof err);
        FUZZ_CHECK(fuzz_all_zero(&l, sizeof l));
        return 0;
    }
    FUZZ_CHECK((l.n_jobs == 0) == (l.jobs == NULL));
    for (size_t i = 0; i < l.n_jobs; i++) {
        fuzz_check_job(&l.jobs[i]);
        fuzz_check_job_round_trip(&l.jobs[i]);
    }
    if (l.next_token) {
        FUZZ_CHECK(l.next_token[0] != '\0');
        FUZZ_CHECK(fuzz_is_url_text(l.next_token));
    }
    uni1_job_list_clear(&l);
    FUZZ_CHECK(fuzz_all_zero(&l, sizeof l));
    return 0;
}
