/* libFuzzer target: uni1_parse_estimate (dry-run quotes, HTTP 269). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    double cost = 12345;
    uni1_status st = uni1_parse_estimate((const char *)data, size, &cost, err, sizeof err);
    if (st != UNI1_OK) {
        fuzz_check_err(st, err, sizeof err);
        FUZZ_CHECK(cost == -1);
        return 0;
    }
    FUZZ_CHECK(isfinite(cost) && cost >= 0);
    return 0;
}
