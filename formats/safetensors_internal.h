/*
 * Internal: what formats/safetensors.c shares with formats/hf.c (Hugging Face
 * folders are a set of safetensors shards). Not installed; formats/ only.
 */
#ifndef SPARSIFY_FORMATS_SAFETENSORS_INTERNAL_H
#define SPARSIFY_FORMATS_SAFETENSORS_INTERNAL_H

#include "formats/ckpt_internal.h"

/* One mapped .safetensors file. */
typedef struct sp_st_shard {
    char *path;          /* full path */
    char *name;          /* file name inside its folder (hf) or NULL */
    sp_mapfile mf;
    uint64_t data_start; /* 8 + header length: first byte of the data region */
} sp_st_shard;

/* Where storage i lives: its shard and its offset in the shard's data region
 * (the storage's size is ck->storages[i].nbytes). */
typedef struct sp_st_slot {
    size_t shard;
    uint64_t begin;
} sp_st_slot;

typedef struct sp_st_impl {
    sp_st_shard *shards;
    size_t nshards;
    sp_st_slot *slots; /* one per storage, same index */
    size_t nslots, slots_cap;
} sp_st_impl;

/* The largest header we accept (the reference implementation uses 100 MB). */
#define SP_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* Append a shard (path is copied; name may be NULL) and return its index. */
sp_status sp_st_add_shard(sp_st_impl *im, const char *path, const char *name, size_t *idx,
                          sp_error *err);
/* Map shard `shard`, validate its header and append its tensors/storages to ck
 * (one storage per tensor, header order). Errors name shard's path. */
sp_status sp_st_shard_load(sp_ckpt *ck, sp_st_impl *im, size_t shard, sp_error *err);
/* Rewrite one shard into out_path (atomic): header copied byte for byte, each
 * of the shard's storages copied or replaced by fn (see sp_ckpt_rewrite),
 * any gap or trailing byte copied. Memory: one storage. */
sp_status sp_st_shard_rewrite(sp_ckpt *ck, sp_st_impl *im, size_t shard, const char *out_path,
                              sp_rewrite_fn fn, void *ctx, sp_error *err);
/* Fails with SP_ERR_FORMAT when two tensors of ck share a name. */
sp_status sp_st_check_unique(const sp_ckpt *ck, sp_error *err);

/* Backend callbacks shared by both formats. */
sp_status sp_st_storage_data(sp_ckpt *ck, size_t i, const void **data, sp_error *err);
void sp_st_storage_release(sp_ckpt *ck, size_t i);
void sp_st_close(sp_ckpt *ck);

#endif
