/* Weight geometry: which [rows, cols] matrices a tensor is pruned as. */
#include "sparsify/prune.h"

void sp_wgeom_init(sp_wgeom *g, int ndim, const int64_t *shape)
{
    if (ndim == 4) {
        /* conv [O, I, kh, kw]: for each kernel position an [O, I] matrix;
         * the input dimension is the input channel. */
        int64_t k = shape[2] * shape[3];
        g->nmat = k;
        g->rows = shape[0];
        g->cols = shape[1];
        g->mat_stride = 1;
        g->row_stride = shape[1] * k;
        g->col_stride = k;
        return;
    }
    int64_t rows = 1, cols = 1;
    if (ndim >= 2) {
        rows = shape[0];
        for (int d = 1; d < ndim; d++)
            cols *= shape[d];
    } else if (ndim == 1) {
        cols = shape[0];
    }
    g->nmat = 1;
    g->rows = rows;
    g->cols = cols;
    g->mat_stride = rows * cols;
    g->row_stride = cols;
    g->col_stride = 1;
}
