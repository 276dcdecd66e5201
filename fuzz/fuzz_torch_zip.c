/* libFuzzer harness: torch zip checkpoints and TorchScript archives
 * (formats/zip.c, pickle.c, torch.c) opened from memory. Mutations rarely
 * keep a stored record's CRC-32; fuzz_torch_zip_crc.c fixes them up. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || data[0] != 'P' || data[1] != 'K')
        return 0;
    sp_ckpt_close(fuzz_open(data, size));
    return 0;
}
