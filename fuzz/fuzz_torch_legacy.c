/* libFuzzer harness: legacy (pre-1.6) torch checkpoints: a chain of pickles
 * and raw storages (formats/torch.c, pickle.c) opened from memory. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || data[0] != 0x80)
        return 0;
    sp_ckpt_close(fuzz_open(data, size));
    return 0;
}
