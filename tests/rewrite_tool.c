/*
 * Test-only driver for sp_ckpt_rewrite and the checkpoint readers, used by
 * tests/cli_rewrite.py (env REWRITE_TOOL).
 *
 *   rewrite_tool copy IN OUT          rewrite with no change
 *   rewrite_tool negate IN OUT NAME   negate the storage of float tensor NAME
 *   rewrite_tool list IN              one JSON object per line per tensor:
 *                                     name dtype shape stride offset storage
 *   rewrite_tool save IN OUT          sp_torch_save of every tensor of IN
 *                                     (made contiguous)
 * Exit: 0 ok, 1 failure (message on stderr), 2 usage.
 */
#include "sparsify/ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct negate_ctx {
    size_t storage;
    sp_dtype dtype;
} negate_ctx;

static sp_status negate_fn(void *ctx, sp_ckpt *ck, size_t storage, const void *orig, void *out,
                           bool *changed, sp_error *err)
{
    negate_ctx *c = ctx;
    if (storage != c->storage)
        return SP_OK;
    const sp_storage *st = sp_ckpt_storage(ck, storage);
    size_t es = sp_dtype_size(c->dtype), n = (size_t)(st->nbytes / es);
    memcpy(out, orig, (size_t)st->nbytes);
    unsigned char *p = out;
    /* flip the sign bit of every element (little-endian: the top byte) */
    for (size_t i = 0; i < n; i++)
        p[i * es + es - 1] ^= 0x80;
    *changed = true;
    return SP_OK;
}

static void print_tensor(const sp_ckpt *ck, const sp_tensor *t)
{
    printf("{\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": [", t->name, sp_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++)
        printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
    printf("], \"stride\": [");
    for (int d = 0; d < t->ndim; d++)
        printf("%s%lld", d ? ", " : "", (long long)t->stride[d]);
    printf("], \"offset\": %lld, \"storage\": %zu, \"key\": \"%s\"}\n", (long long)t->offset,
           t->storage, sp_ckpt_storage(ck, t->storage)->key);
}

/* Gather tensor t into a contiguous buffer (elementwise via strides). */
static void *gather(sp_ckpt *ck, const sp_tensor *t, sp_error *err)
{
    const void *base;
    if (sp_ckpt_storage_data(ck, t->storage, &base, err))
        return NULL;
    size_t es = sp_dtype_size(t->dtype);
    unsigned char *out = malloc(t->numel ? (size_t)t->numel * es : 1);
    if (!out)
        return NULL;
    int64_t idx[SP_MAX_DIMS] = {0};
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t off = t->offset;
        for (int d = 0; d < t->ndim; d++)
            off += idx[d] * t->stride[d];
        memcpy(out + (size_t)i * es, (const unsigned char *)base + (size_t)off * es, es);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
    return out;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: rewrite_tool copy|negate|list|save IN [OUT [NAME]]\n");
        return 2;
    }
    const char *mode = argv[1];
    sp_error err = {0};
    sp_ckpt *ck = NULL;
    sp_status s = sp_ckpt_open(&ck, argv[2], &err);
    int rc = 1;
    if (s)
        goto out;
    if (!strcmp(mode, "list") && argc == 3) {
        printf("{\"format\": \"%s\"}\n", sp_format_name(sp_ckpt_format(ck)));
        for (size_t i = 0; i < sp_ckpt_num_tensors(ck); i++)
            print_tensor(ck, sp_ckpt_tensor(ck, i));
        rc = 0;
    } else if (!strcmp(mode, "copy") && argc == 4) {
        s = sp_ckpt_rewrite(ck, argv[3], NULL, NULL, &err);
        rc = s ? 1 : 0;
    } else if (!strcmp(mode, "negate") && argc == 5) {
        long t = sp_ckpt_find(ck, argv[4]);
        if (t < 0) {
            fprintf(stderr, "rewrite_tool: no tensor '%s'\n", argv[4]);
            goto out;
        }
        const sp_tensor *tt = sp_ckpt_tensor(ck, (size_t)t);
        if (!sp_dtype_is_float(tt->dtype)) {
            fprintf(stderr, "rewrite_tool: tensor '%s' is not floating\n", argv[4]);
            goto out;
        }
        negate_ctx c = {tt->storage, tt->dtype};
        s = sp_ckpt_rewrite(ck, argv[3], negate_fn, &c, &err);
        rc = s ? 1 : 0;
    } else if (!strcmp(mode, "save") && argc == 4) {
        size_t n = sp_ckpt_num_tensors(ck);
        sp_tensor_data *td = calloc(n ? n : 1, sizeof *td);
        void **bufs = calloc(n ? n : 1, sizeof *bufs);
        rc = 0;
        for (size_t i = 0; td && bufs && i < n; i++) {
            const sp_tensor *t = sp_ckpt_tensor(ck, i);
            td[i].name = t->name;
            td[i].dtype = t->dtype;
            td[i].ndim = t->ndim;
            memcpy(td[i].shape, t->shape, sizeof t->shape);
            if (!(bufs[i] = gather(ck, t, &err))) {
                rc = 1;
                break;
            }
            td[i].data = bufs[i];
        }
        if (!td || !bufs)
            rc = 1;
        if (!rc) {
            s = sp_torch_save(argv[3], td, n, &err);
            rc = s ? 1 : 0;
        }
        for (size_t i = 0; bufs && i < n; i++)
            free(bufs[i]);
        free(bufs);
        free(td);
    } else {
        fprintf(stderr, "rewrite_tool: bad usage\n");
        rc = 2;
    }
out:
    if (rc == 1 && err.code)
        fprintf(stderr, "rewrite_tool: %s: %s\n", sp_status_str(err.code), err.msg);
    sp_ckpt_close(ck);
    return rc;
}
