/* libFuzzer harness: torch zip checkpoints whose CRC-32s are fixed up
 * before opening, so mutated records, pickles and headers get past the
 * CRC check into the pickle VM, the tensor walk and the rewriter
 * (sp_ckpt_rewrite of every checkpoint that opens, into a scratch file). */
#include "fuzz.h"

#include <unistd.h>
#include <zlib.h>

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* CRC-32 of entry data: stored bytes, or deflate output (capped). */
static bool entry_crc(const uint8_t *src, uint64_t csize, uint64_t usize, unsigned method,
                      uint32_t *crc)
{
    if (method == 0) {
        *crc = (uint32_t)crc32(0, src, (uInt)csize);
        return true;
    }
    if (method != 8 || usize > (1u << 24))
        return false;
    uint8_t *out = malloc(usize ? usize : 1);
    if (!out)
        return false;
    z_stream z;
    memset(&z, 0, sizeof z);
    bool ok = false;
    if (inflateInit2(&z, -MAX_WBITS) == Z_OK) {
        z.next_in = (Bytef *)src;
        z.avail_in = (uInt)csize;
        z.next_out = out;
        z.avail_out = (uInt)usize;
        inflate(&z, Z_FINISH);
        *crc = (uint32_t)crc32(0, out, (uInt)z.total_out);
        ok = true;
        inflateEnd(&z);
    }
    free(out);
    return ok;
}

/* Walk the central directory of buf and rewrite every CRC it can. */
static void fix_crcs(uint8_t *b, size_t n)
{
    if (n < 22)
        return;
    size_t lo = n > 22 + 65535 ? n - 22 - 65535 : 0, eocd = SIZE_MAX;
    for (size_t p = n - 22 + 1; p-- > lo;)
        if (rd32(b + p) == 0x06054b50u) {
            eocd = p;
            break;
        }
    if (eocd == SIZE_MAX)
        return;
    uint64_t cnt = rd16(b + eocd + 10), cd = rd32(b + eocd + 16);
    if (eocd >= 20 && rd32(b + eocd - 20) == 0x07064b50u) {
        uint64_t z64 = rd64(b + eocd - 20 + 8);
        if (n >= 56 && z64 <= n - 56 && rd32(b + z64) == 0x06064b50u) {
            cnt = rd64(b + z64 + 32);
            cd = rd64(b + z64 + 48);
        }
    }
    uint64_t off = cd;
    for (uint64_t i = 0; i < cnt && i < 4096; i++) {
        if (off > n || n - off < 46 || rd32(b + off) != 0x02014b50u)
            return;
        uint8_t *h = b + off;
        uint64_t nl = rd16(h + 28), xl = rd16(h + 30), cl = rd16(h + 32);
        uint64_t csize = rd32(h + 20), usize = rd32(h + 24), lho = rd32(h + 42);
        if (46 + nl + xl + cl > n - off)
            return;
        const uint8_t *x = h + 46 + nl, *xe = x + xl;
        while (xe - x >= 4) {
            unsigned id = rd16(x), sz = rd16(x + 2);
            if (sz > xe - x - 4)
                break;
            if (id == 1) {
                const uint8_t *f = x + 4, *fe = f + sz;
                if (usize == 0xffffffffu && fe - f >= 8)
                    usize = rd64(f), f += 8;
                if (csize == 0xffffffffu && fe - f >= 8)
                    csize = rd64(f), f += 8;
                if (lho == 0xffffffffu && fe - f >= 8)
                    lho = rd64(f);
            }
            x += 4 + sz;
        }
        if (lho <= n - 30 && n >= 30 && rd32(b + lho) == 0x04034b50u) {
            uint64_t data = lho + 30 + rd16(b + lho + 26) + rd16(b + lho + 28);
            uint32_t crc;
            if (data <= n && csize <= n - data && entry_crc(b + data, csize, usize, rd16(h + 10), &crc)) {
                wr32(h + 16, crc);
                if (!(rd16(b + lho + 6) & 8))
                    wr32(b + lho + 14, crc);
            }
        }
        off += 46 + nl + xl + cl;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || data[0] != 'P' || data[1] != 'K')
        return 0;
    uint8_t *b = malloc(size);
    if (!b)
        return 0;
    memcpy(b, data, size);
    fix_crcs(b, size);
    sp_ckpt *ck = fuzz_open(b, size);
    if (ck) {
        static char out[256];
        if (!out[0]) {
            const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
            snprintf(out, sizeof out, "%s/sparsify-fuzz-%ld.pt", dir, (long)getpid());
        }
        sp_error err;
        if (sp_ckpt_rewrite(ck, out, NULL, NULL, &err) == SP_OK)
            unlink(out);
        sp_ckpt_close(ck);
    }
    free(b);
    return 0;
}
