/*
 * Shared by the libFuzzer harnesses (fuzz/fuzz_*.c): walk everything a
 * command would touch in a checkpoint opened from the fuzzer's bytes, and
 * abort when a documented bound does not hold (a bound that fails is a bug
 * even when no memory error follows).
 *
 * Storages larger than FUZZ_MAX_DECODE are not decoded: a legitimate .spz
 * may describe a large all-zero tensor in a few bytes (the reader allows
 * 4 GiB + 1032 x the file size), more than libFuzzer's malloc limit. Their
 * size is still checked against that bound.
 */
#ifndef SPARSIFY_FUZZ_H
#define SPARSIFY_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/checked.h"
#include "sparsify/sparsify.h"

#define FUZZ_MAX_DECODE ((uint64_t)256 << 20)

__attribute__((noreturn)) static inline void fuzz_fail(const char *what, const char *name)
{
    fprintf(stderr, "fuzz: documented bound broken: %s ('%s')\n", what, name);
    abort();
}

/* Open-time invariants, storage bytes, every tensor gathered dense and
 * scanned like inspect does. */
static inline void fuzz_walk_ckpt(sp_ckpt *ck, uint64_t file_size)
{
    sp_error err;
    size_t nt = sp_ckpt_num_tensors(ck), ns = sp_ckpt_num_storages(ck);
    for (size_t i = 0; i < nt; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        const sp_storage *st = sp_ckpt_storage(ck, t->storage);
        uint64_t dense = 0;
        if (!st || t->numel < 0 || !sp_numel_bytes(t->numel, sp_dtype_size(t->dtype), &dense))
            fuzz_fail("tensor size", t->name);
        if (!sp_view_bound_ok(dense, st->nbytes))
            fuzz_fail("view bound (64 x storage + 64 MiB)", t->name);
        if (sp_ckpt_format(ck) == SP_FORMAT_SPZ &&
            dense > (uint64_t)1032 * file_size + ((uint64_t)1 << 32))
            fuzz_fail("spz dense bound (4 GiB + 1032 x file)", t->name);
    }
    for (size_t i = 0; i < ns; i++) {
        const sp_storage *st = sp_ckpt_storage(ck, i);
        if (st->nbytes > FUZZ_MAX_DECODE)
            continue;
        const void *d;
        if (sp_ckpt_storage_data(ck, i, &d, &err) == SP_OK) {
            const unsigned char *p = d;
            unsigned acc = 0;
            for (uint64_t k = 0; k < st->nbytes; k += 61)
                acc += p[k];
            if (st->nbytes)
                acc += p[st->nbytes - 1];
            (void)acc;
        }
        sp_ckpt_storage_release(ck, i);
    }
    for (size_t i = 0; i < nt; i++) {
        const sp_tensor *t = sp_ckpt_tensor(ck, i);
        if (sp_ckpt_storage(ck, t->storage)->nbytes > FUZZ_MAX_DECODE)
            continue;
        const void *d;
        void *owned = NULL;
        if (sp_ckpt_tensor_dense(ck, i, &d, &owned, &err) == SP_OK) {
            uint64_t zeros = 0;
            for (int64_t k = 0; k < t->numel; k++)
                zeros += sp_dtype_is_zero(t->dtype, d, (size_t)k);
            (void)zeros;
        }
        free(owned);
        sp_ckpt_storage_release(ck, t->storage);
        if (sp_ckpt_format(ck) == SP_FORMAT_SPZ) {
            sp_spz_tensor_info info;
            (void)sp_spz_tensor_info_get(ck, i, &info, &err);
        }
    }
}

/* Open data as a checkpoint from memory and walk it. */
static inline sp_ckpt *fuzz_open(const uint8_t *data, size_t size)
{
    sp_ckpt *ck = NULL;
    sp_error err;
    if (sp_ckpt_open_mem(&ck, "fuzz", data, size, &err) != SP_OK)
        return NULL;
    fuzz_walk_ckpt(ck, size);
    return ck;
}

#endif
