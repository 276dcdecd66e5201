/* libFuzzer harness: the model.safetensors.index.json of a Hugging Face
 * folder (formats/hf.c): JSON cost bounds, weight_map, shard names. */
#include "formats/safetensors_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n;
    sp_error err;
    (void)sp_hf_index_parse("fuzz", data, size, &n, &err);
    return 0;
}
