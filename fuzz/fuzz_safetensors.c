/* libFuzzer harness: one safetensors file (formats/safetensors.c) opened
 * from memory: header length, JSON header, offsets, dtypes, overlaps. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* sp_ckpt_open_mem sniffs a safetensors file by its small u64 length */
    if (size < 8 || data[5] || data[6] || data[7])
        return 0;
    sp_ckpt_close(fuzz_open(data, size));
    return 0;
}
