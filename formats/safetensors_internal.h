/*
 * Internal: what formats/safetensors.c shares with formats/hf.c (Hugging Face
 * folders are a set of safetensors shards). Not installed; formats/ only.
 */
#ifndef SPARSIFY_FORMATS_SAFETENSORS_INTERNAL_H
#define SPARSIFY_FORMATS_SAFETENSORS_INTERNAL_H

#include "formats/ckpt_internal.h"
#include "formats/checked.h"

/* One mapped .safetensors file. */
typedef struct sp_st_shard {
    char *path;          /* full path */
    char *name;          /* file name inside its folder (hf) or NULL */
    sp_mapfile mf;
    bool mapped;         /* mf set before sp_st_shard_load (in-memory open) */
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

/* The largest header we accept. The reference implementation allows 100 MB,
 * but cJSON spends ~80 bytes per JSON value: a 90 MB header of zeros took
 * 3.6 GB and 21 s to refuse. Real headers are a few MB at most, so the cap
 * is SP_JSON_MAX_BYTES (16 MiB) and the value count is bounded before
 * parsing (formats/checked.h). */
#define SP_ST_MAX_HEADER SP_JSON_MAX_BYTES

/* Append a shard (path is copied; name may be NULL) and return its index. */
sp_status sp_st_add_shard(sp_st_impl *im, const char *path, const char *name, size_t *idx,
                          sp_error *err);
/* Map shard `shard`, validate its header and append its tensors/storages to ck
 * (one storage per tensor, header order). Errors name shard's path. */
sp_status sp_st_shard_load(sp_ckpt *ck, sp_st_impl *im, size_t shard, sp_error *err);
/* sp_ckpt_rewrite_par for shards shards[0..nout) of im, into out_paths
 * (atomic each; committed only when all are complete). */
sp_status sp_st_rewrite_par(sp_ckpt *ck, sp_st_impl *im, const size_t *shards,
                            const char *const *out_paths, size_t nout, const sp_rewrite_ops *ops,
                            sp_error *err);
/* Fails with SP_ERR_FORMAT when two tensors of ck share a name. */
sp_status sp_st_check_unique(const sp_ckpt *ck, sp_error *err);

/* Parse a Hugging Face index (model.safetensors.index.json) held in memory
 * as sp_hf_folder_open does, without the folder: *nshards receives the
 * number of distinct shard files its weight_map names. dir names the
 * folder in messages. For the fuzz harness. */
sp_status sp_hf_index_parse(const char *dir, const void *json, size_t len, size_t *nshards,
                            sp_error *err);

/* Backend callbacks shared by both formats. */
sp_status sp_st_storage_data(sp_ckpt *ck, size_t i, const void **data, sp_error *err);
void sp_st_storage_release(sp_ckpt *ck, size_t i);
bool sp_st_storage_file(const sp_ckpt *ck, size_t i, const sp_mapfile **mf, uint64_t *off);
void sp_st_close(sp_ckpt *ck);

#endif
