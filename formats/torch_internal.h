/*
 * Internal: state shared by the torch reader (torch.c) and writers
 * (torch_write.c). formats/ only.
 */
#ifndef SPARSIFY_FORMATS_TORCH_INTERNAL_H
#define SPARSIFY_FORMATS_TORCH_INTERNAL_H

#include "formats/ckpt_internal.h"
#include "formats/pickle.h"
#include "formats/zip.h"

typedef struct torch_store {
    long entry;      /* zip: entry index of <prefix>/data/<key>; -1 legacy */
    uint64_t off;    /* legacy: offset of the raw bytes in the file */
    void *owned;     /* inflated copy (deflated entries), freed on release */
    bool loaded;
} torch_store;

typedef struct torch_impl {
    bool legacy;
    sp_zip zip;          /* zip and TorchScript */
    sp_mapfile mf;       /* legacy */
    char *prefix;        /* zip: the archive's top folder ("archive") */
    torch_store *st;     /* one per storage */
    size_t st_cap;
    long *ent2st;        /* zip: entry index -> storage index or -1 */
    /* legacy: the main pickle and the storage order of the data section */
    uint64_t main_off, main_len;
    size_t *order;
    size_t norder;
} torch_impl;

sp_status sp_torch_rewrite(sp_ckpt *ck, const char *out_path, sp_rewrite_fn fn, void *ctx,
                           sp_error *err);

#endif
