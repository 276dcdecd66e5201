/* Training data readers: CSV and tensor files (see data.h). */
#include "bridge/data.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparsify/ckpt.h"

void sp_dataset_release(sp_dataset *ds)
{
    if (!ds)
        return;
    free(ds->x);
    free(ds->y);
    memset(ds, 0, sizeof *ds);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* ---- CSV ---- */

/* Split line (modified in place) at commas into fields; trims blanks and one
 * pair of double quotes. Returns the number of fields (at most cap are
 * stored; the count goes on). */
static size_t csv_split(char *line, char **fields, size_t cap)
{
    size_t n = 0;
    char *p = line;
    for (;;) {
        char *end = strchr(p, ',');
        if (end)
            *end = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r'))
            p[--len] = '\0';
        if (len >= 2 && p[0] == '"' && p[len - 1] == '"') {
            p[len - 1] = '\0';
            p++;
        }
        if (n < cap)
            fields[n] = p;
        n++;
        if (!end)
            break;
        p = end + 1;
    }
    return n;
}

static bool parse_num(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r')
            return false;
    return true;
}

static sp_status csv_load(sp_dataset *ds, const char *path, const char *label_column,
                          sp_label_default def, sp_error *err)
{
    sp_status st = SP_OK;
    char *text = NULL, **fields = NULL, **header = NULL;
    char *header_line = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return sp_error_set(err, errno == ENOENT ? SP_ERR_NOT_FOUND : SP_ERR_IO,
                            "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    text = malloc(cap + 1);
    if (!text) {
        st = sp_error_set(err, SP_ERR_NOMEM, "'%s': out of memory", path);
        goto out;
    }
    for (;;) {
        if (len == cap) {
            char *t = realloc(text, 2 * cap + 1);
            if (!t) {
                st = sp_error_set(err, SP_ERR_NOMEM, "'%s': out of memory", path);
                goto out;
            }
            text = t;
            cap *= 2;
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                st = sp_error_set(err, SP_ERR_IO, "cannot read '%s': %s", path,
                                  strerror(errno));
                goto out;
            }
            break;
        }
    }
    text[len] = '\0';
    if (memchr(text, '\0', len)) {
        st = sp_error_set(err, SP_ERR_FORMAT, "'%s': not a text CSV file (NUL byte)", path);
        goto out;
    }

    /* Pass 1: the first non-blank row decides the column count and whether
     * there is a header; count the data rows. */
    size_t ncols = 0, nrows = 0, fcap = 0;
    long label = -1;
    size_t lineno = 0;
    bool have_first = false, has_header = false;
    char *p = text;
    while (p && *p) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        char *line = p;
        p = nl ? nl + 1 : NULL;
        if (is_blank(line))
            continue;
        if (!have_first) {
            /* count fields on a copy */
            size_t k = 1;
            for (const char *c = line; *c; c++)
                k += *c == ',';
            fcap = k;
            fields = calloc(fcap, sizeof *fields);
            header = calloc(fcap, sizeof *header);
            header_line = strdup(line);
            if (!fields || !header || !header_line) {
                st = sp_error_set(err, SP_ERR_NOMEM, "'%s': out of memory", path);
                goto out;
            }
            ncols = csv_split(header_line, header, fcap);
            const size_t need = label_column || def == SP_LABEL_LAST ? 2 : 1;
            if (ncols < need) {
                st = sp_error_set(err, SP_ERR_FORMAT,
                                  "'%s':%zu: need at least %zu columns (inputs%s), got %zu",
                                  path, lineno, need, need == 2 ? " and a label" : "", ncols);
                goto out;
            }
            for (size_t i = 0; i < ncols; i++) {
                double v;
                if (!parse_num(header[i], &v))
                    has_header = true;
            }
            have_first = true;
            /* choose the label column */
            if (!label_column) {
                label = def == SP_LABEL_LAST ? (long)ncols - 1 : -1;
            } else {
                char *end;
                errno = 0;
                long v = strtol(label_column, &end, 10);
                if (*label_column && !*end && !errno) {
                    if (v < 0)
                        v += (long)ncols;
                    if (v < 0 || v >= (long)ncols) {
                        st = sp_error_set(err, SP_ERR_INVALID_ARG,
                                          "'%s': label column %s is out of range (%zu columns)",
                                          path, label_column, ncols);
                        goto out;
                    }
                    label = v;
                } else if (!has_header) {
                    st = sp_error_set(err, SP_ERR_INVALID_ARG,
                                      "'%s': no header row, so there is no column named '%s' "
                                      "(give --label-column an index)",
                                      path, label_column);
                    goto out;
                } else {
                    for (size_t i = 0; i < ncols; i++)
                        if (!strcmp(header[i], label_column))
                            label = (long)i;
                    if (label < 0) {
                        st = sp_error_set(err, SP_ERR_INVALID_ARG,
                                          "'%s': no column named '%s' in the header "
                                          "(first: '%s', last: '%s')",
                                          path, label_column, header[0], header[ncols - 1]);
                        goto out;
                    }
                }
            }
            if (has_header)
                continue;
        }
        nrows++;
    }
    if (!have_first || nrows == 0) {
        st = sp_error_set(err, SP_ERR_FORMAT, "'%s': no data rows", path);
        goto out;
    }

    /* Pass 2: parse (the lines are now NUL-separated). */
    const size_t width = ncols - (label >= 0);
    ds->n = (int64_t)nrows;
    ds->width = (int64_t)width;
    ds->sample_ndim = 1;
    ds->sample_shape[0] = ds->width;
    ds->label_ndim = 0;
    ds->label_width = 1;
    ds->has_labels = label >= 0;
    if (nrows > SIZE_MAX / sizeof(float) / width) {
        st = sp_error_set(err, SP_ERR_FORMAT, "'%s': %zu rows of %zu values are too many", path,
                          nrows, width);
        goto out;
    }
    ds->x = malloc(nrows * width * sizeof(float));
    ds->y = ds->has_labels ? malloc(nrows * sizeof(float)) : NULL;
    if (!ds->x || (ds->has_labels && !ds->y)) {
        st = sp_error_set(err, SP_ERR_NOMEM, "'%s': out of memory for %zu rows", path, nrows);
        goto out;
    }
    ds->labels_integral = true;
    ds->label_max = 0;
    size_t row = 0;
    bool skipped_header = !has_header;
    char *q = text, *end_text = text + len;
    lineno = 0;
    while (q < end_text) {
        char *line = q;
        q += strlen(q) + 1;
        lineno++;
        if (is_blank(line))
            continue;
        if (!skipped_header) {
            skipped_header = true;
            continue;
        }
        size_t k = csv_split(line, fields, fcap);
        if (k != ncols) {
            st = sp_error_set(err, SP_ERR_FORMAT, "'%s':%zu: row has %zu fields, expected %zu",
                              path, lineno, k, ncols);
            goto out;
        }
        float *xr = ds->x + row * width;
        for (size_t i = 0, j = 0; i < ncols; i++) {
            double v;
            if (!parse_num(fields[i], &v)) {
                st = sp_error_set(err, SP_ERR_FORMAT,
                                  "'%s':%zu: field %zu '%.40s' is not a finite number", path,
                                  lineno, i + 1, fields[i]);
                goto out;
            }
            if ((long)i == label) {
                ds->y[row] = (float)v;
                if (v < 0 || v != floor(v) || v > 1e9)
                    ds->labels_integral = false;
                else if ((int64_t)v > ds->label_max)
                    ds->label_max = (int64_t)v;
            } else {
                xr[j++] = (float)v;
            }
        }
        row++;
    }
out:
    if (f)
        fclose(f);
    free(text);
    free(fields);
    free(header);
    free(header_line);
    if (st != SP_OK)
        sp_dataset_release(ds);
    return st;
}

/* ---- tensor files ---- */

/* Copy tensor ti of ck (any float/int dtype, any strides) into a new float
 * array. */
static sp_status tensor_to_float(sp_ckpt *ck, long ti, float **out, sp_error *err)
{
    const sp_tensor *t = sp_ckpt_tensor(ck, (size_t)ti);
    const void *base;
    sp_status st = sp_ckpt_tensor_data(ck, (size_t)ti, &base, err);
    if (st != SP_OK)
        return st;
    if (t->dtype == SP_C64 || t->dtype == SP_C128 || t->dtype == SP_DTYPE_INVALID)
        return sp_error_set(err, SP_ERR_UNSUPPORTED, "'%s': tensor '%s' has dtype %s",
                            sp_ckpt_path(ck), t->name, sp_dtype_name(t->dtype));
    float *v = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    if (!v)
        return sp_error_set(err, SP_ERR_NOMEM, "'%s': out of memory", sp_ckpt_path(ck));
    int64_t idx[SP_MAX_DIMS] = {0};
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++)
            off += idx[d] * t->stride[d];
        double x = sp_dtype_load(t->dtype, base, (size_t)off);
        if (!isfinite(x)) {
            free(v);
            return sp_error_set(err, SP_ERR_FORMAT, "'%s': tensor '%s' has a non-finite value",
                                sp_ckpt_path(ck), t->name);
        }
        v[i] = (float)x;
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
    *out = v;
    return SP_OK;
}

static sp_status tensor_load(sp_dataset *ds, const char *path, sp_label_default def,
                             sp_error *err)
{
    sp_ckpt *ck = NULL;
    sp_status st = sp_ckpt_open(&ck, path, err);
    if (st != SP_OK)
        return st;
    long xi = sp_ckpt_find(ck, "inputs"), yi = sp_ckpt_find(ck, "labels");
    if (xi < 0 || (yi < 0 && def == SP_LABEL_LAST)) {
        st = sp_error_set(err, SP_ERR_INVALID_ARG,
                          "'%s': a tensor data file needs tensors 'inputs' and 'labels' (missing '%s')",
                          path, xi < 0 ? "inputs" : "labels");
        goto out;
    }
    const sp_tensor *x = sp_ckpt_tensor(ck, (size_t)xi);
    const sp_tensor *y = yi >= 0 ? sp_ckpt_tensor(ck, (size_t)yi) : x;
    if (x->ndim < 1 || y->ndim < 1 || x->shape[0] != y->shape[0] || x->shape[0] == 0) {
        st = sp_error_set(err, SP_ERR_INVALID_ARG,
                          "'%s': 'inputs' and 'labels' must have the same non-zero first "
                          "dimension (samples)",
                          path);
        goto out;
    }
    ds->has_labels = yi >= 0;
    ds->n = x->shape[0];
    ds->sample_ndim = x->ndim - 1;
    ds->width = 1;
    for (int d = 1; d < x->ndim; d++) {
        ds->sample_shape[d - 1] = x->shape[d];
        ds->width *= x->shape[d];
    }
    ds->label_ndim = y->ndim - 1;
    ds->label_width = 1;
    for (int d = 1; d < y->ndim; d++) {
        ds->label_shape[d - 1] = y->shape[d];
        ds->label_width *= y->shape[d];
    }
    if ((st = tensor_to_float(ck, xi, &ds->x, err)) != SP_OK)
        goto out;
    if (!ds->has_labels) {
        ds->label_ndim = 0;
        ds->label_width = 0;
        goto out;
    }
    if ((st = tensor_to_float(ck, yi, &ds->y, err)) != SP_OK)
        goto out;
    ds->labels_integral = true;
    ds->label_max = 0;
    for (int64_t i = 0; i < ds->n * ds->label_width; i++) {
        double v = ds->y[i];
        if (v < 0 || v != floor(v) || v > 1e9)
            ds->labels_integral = false;
        else if ((int64_t)v > ds->label_max)
            ds->label_max = (int64_t)v;
    }
out:
    sp_ckpt_close(ck);
    if (st != SP_OK)
        sp_dataset_release(ds);
    return st;
}

sp_status sp_dataset_load(sp_dataset *ds, const char *path, const char *label_column,
                          sp_label_default def, sp_error *err)
{
    memset(ds, 0, sizeof *ds);
    if (ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".bin") ||
        ends_with(path, ".safetensors")) {
        if (label_column)
            return sp_error_set(err, SP_ERR_INVALID_ARG,
                                "'%s': --label-column applies to CSV files only "
                                "(tensor files hold 'labels')",
                                path);
        return tensor_load(ds, path, def, err);
    }
    return csv_load(ds, path, label_column, def, err);
}
