/* libFuzzer harness: the safe pickle VM (formats/pickle.c) on raw bytes,
 * then the writer on what it read (a parse must serialize again). */
#include "formats/pickle.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_pickle pk;
    sp_error err;
    size_t used;
    if (sp_pickle_parse(&pk, data, size, &used, "fuzz", &err) != SP_OK)
        return 0;
    unsigned char *out = NULL;
    size_t len;
    if (sp_pickle_write(pk.root, &out, &len, &err) == SP_OK)
        free(out);
    sp_pickle_release(&pk);
    return 0;
}
