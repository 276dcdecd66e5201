/*
 * A program outside the tree that uses an installed libsparsify. Built by
 * tests/cli_install.py from the DESTDIR of `meson install` with the flags of
 * `pkg-config --cflags --libs sparsify`, once against the shared library
 * and once against the static one: the installed headers compile alone and
 * the library links and works (prunes a weight to 2:4, checks the result).
 */
#include <sparsify/sparsify.h>
#include <stdio.h>

int main(void)
{
    enum { ROWS = 4, COLS = 8, N = ROWS * COLS };
    float w[N];
    for (int i = 0; i < N; i++)
        w[i] = (float)((i * 7) % 11) - 5.0f + 0.25f * (float)i;
    const int64_t shape[2] = {ROWS, COLS};
    sp_pattern p;
    sp_error err = {0};
    uint8_t mask[N];
    if (sp_pattern_parse(&p, "2:4", &err) ||
        sp_mask_select(mask, SP_F32, w, NULL, 2, shape, &p, 0.5, SP_BLOCK_SCORE_L1, &err)) {
        fprintf(stderr, "install_probe: %s (%s)\n", err.msg, sp_status_str(err.code));
        return 1;
    }
    sp_mask_apply(w, SP_F32, N, mask);
    double measured = 0;
    char why[128] = "";
    bool ok = sp_mask_check(SP_F32, w, 2, shape, &p, 0.5, &measured, why, sizeof why);
    size_t zeros = sp_count_zeros(SP_F32, w, N);
    printf("libsparsify %s: 2:4 pruned %zu of %d weights to zero, sparsity %.2f, %s; best isa %s\n",
           SP_VERSION_STRING, zeros, N, measured, ok ? "conforms" : why,
           sp_isa_name(sp_isa_best()));
    return ok && zeros == N / 2 ? 0 : 1;
}
