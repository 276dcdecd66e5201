/* libFuzzer harness: .spz files (formats/spz.c) opened from memory: header
 * and table of contents, every encoding decoded (Rice masks, N:M ranks,
 * block masks, byte planes, deflate, negative zeros, aliases). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || memcmp(data, "SPZ", 3))
        return 0;
    sp_ckpt_close(fuzz_open(data, size));
    return 0;
}
