/*
 * sparsify — pruning engine: patterns, weight geometry, mask selection
 * (per layer and global), schedules and tensor selection.
 *
 * Conventions (docs/pruning.md):
 *  - A keep-mask is one byte per element of the tensor in row-major order of
 *    its shape: 1 = keep, 0 = prune.
 *  - Geometry: a 2-D weight is [out, in]; a 4-D conv weight [O, I, kh, kw] is,
 *    for each (kh, kw), an [O, I] matrix; any other rank is [dim0, rest]
 *    (rank 1 and 0: one row).
 *  - Blocks RxC: R along out, C along in, anchored at (0,0); ragged edge
 *    blocks are scored over their own elements (mean |w|, or L2 norm).
 *  - N:M: AT MOST N nonzeros in every M consecutive weights along the input
 *    dimension (2:4 keeps 2 of 4). Tail groups of t < M keep min(N, t).
 *  - Exactness: a tensor pruned to s has exactly round(s*n) zeros (blocks:
 *    round(s*nblocks) zero blocks), or more if it already had more; every
 *    pruned score <= every kept score; ties: the lower flat index is pruned
 *    first (global scope: earlier tensor first, then lower index).
 */
#ifndef SPARSIFY_PRUNE_H
#define SPARSIFY_PRUNE_H

#include "sparsify/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_pattern_kind {
    SP_PATTERN_UNSTRUCTURED = 0,
    SP_PATTERN_BLOCK = 1, /* r x c blocks */
    SP_PATTERN_NM = 2,    /* n:m */
} sp_pattern_kind;

typedef struct sp_pattern {
    sp_pattern_kind kind;
    int64_t r, c; /* block rows (out) x cols (in) */
    int n, m;     /* N:M */
} sp_pattern;

/* Parse "unstructured", "RxC" (e.g. "4x1"), "N:M" (e.g. "2:4"), and the
 * SparseML names "block4" (= 1x4) and "tensorrt" (= 2:4). A 1x1 block is
 * unstructured. Errors: SP_ERR_INVALID_ARG with the reason. */
sp_status sp_pattern_parse(sp_pattern *out, const char *text, sp_error *err);
/* Canonical text ("unstructured", "4x1", "2:4") into buf; returns buf. */
const char *sp_pattern_str(const sp_pattern *p, char *buf, size_t len);
/* 1 - N/M for N:M patterns, -1 otherwise. */
double sp_pattern_implied_sparsity(const sp_pattern *p);

typedef enum sp_block_score {
    SP_BLOCK_SCORE_L1 = 0, /* mean |w| over the block's own elements */
    SP_BLOCK_SCORE_L2 = 1, /* sqrt(mean w^2) */
} sp_block_score;

/* The [rows, cols] matrices of a weight (see geometry above). Element (r, c)
 * of matrix k is at flat index k*mat_stride + r*row_stride + c*col_stride of
 * the row-major tensor. */
typedef struct sp_wgeom {
    int64_t nmat, rows, cols;
    int64_t mat_stride, row_stride, col_stride;
} sp_wgeom;
void sp_wgeom_init(sp_wgeom *g, int ndim, const int64_t *shape);

/*
 * Per-layer selection. data: numel elements of a floating dtype (f32, f16,
 * bf16, f64), row-major dense; scores: optional per-element scores (e.g.
 * movement), NULL for magnitude |w|. Writes the keep-mask (numel bytes).
 * sparsity is ignored for N:M. Errors: SP_ERR_INVALID_ARG (NaN/Inf in data
 * or scores: the message says which; the caller prefixes the tensor name),
 * SP_ERR_NOMEM. Linear time (selection, not a sort).
 */
sp_status sp_mask_select(uint8_t *mask, sp_dtype dtype, const void *data,
                         const float *scores, int ndim, const int64_t *shape,
                         const sp_pattern *pattern, double sparsity,
                         sp_block_score bscore, sp_error *err);

/*
 * Activation-aware scores (Wanda, Sun et al. 2023): a weight's score is
 * |w| times the L2 norm, over calibration data, of the input feature it
 * multiplies. Feature = the column in the geometry above (a conv weight's
 * input channel). norms: one value per column (nnorms = cols), or one per
 * (row, column) (nnorms = rows * cols: grouped convolutions, whose input
 * channel differs from row group to row group). Writes numel float scores
 * (the product in float32: fabsf(w) * norm); a non-finite weight scores 0
 * (selection then reports it). Errors: SP_ERR_INVALID_ARG (a norm count
 * that fits neither form; a norm that is negative, NaN or Inf).
 */
typedef enum sp_score_kind {
    SP_SCORE_MAGNITUDE = 0, /* |w| (blocks: l1/l2 of the block) */
    SP_SCORE_WANDA = 1,     /* |w| * ||x_feature||_2 */
} sp_score_kind;
/* Comparison groups of Wanda's unstructured selection. */
typedef enum sp_score_group {
    SP_SCORE_GROUP_ROW = 0,   /* each output row (dim-0 slice) on its own, as
                                 in the paper: every row gets round(s * len) */
    SP_SCORE_GROUP_LAYER = 1, /* the whole tensor, as magnitude */
} sp_score_group;
sp_status sp_wanda_scores(float *scores, sp_dtype dtype, const void *data, int ndim,
                          const int64_t *shape, const float *norms, size_t nnorms,
                          sp_error *err);

/*
 * Unstructured selection per output row: each dim-0 slice of the tensor
 * (a row of [out, in], an output channel of a conv weight: all its I*kh*kw
 * weights) is one comparison group. The tensor still prunes exactly
 * k = round(s * numel) elements, spread over its rows as evenly as they
 * go: row r prunes floor(k / rows) + (r < k % rows ? 1 : 0) of its
 * elements (or keeps the zeros it already has), the smallest by (score,
 * index within the row). Tensors of rank < 2 are one row. Arguments and
 * errors as sp_mask_select.
 */
sp_status sp_mask_select_rows(uint8_t *mask, sp_dtype dtype, const void *data,
                              const float *scores, int ndim, const int64_t *shape,
                              double sparsity, sp_error *err);

/* Zero the pruned elements in place: +0.0 for floats (never -0.0); kept
 * elements are not touched (bit-identical). */
void sp_mask_apply(void *data, sp_dtype dtype, size_t numel, const uint8_t *mask);

/* Number of zero elements of a buffer (+0 and -0). */
size_t sp_count_zeros(sp_dtype dtype, const void *data, size_t numel);

/*
 * Global scope: one threshold across several tensors, exact count
 * round(sparsity * total units) where a unit is an element (unstructured) or
 * a block. Memory stays bounded (no copy of all scores): two streaming passes
 * over the tensors (a histogram, then the boundary bucket).
 *   sp_global_new(&g, pattern, sparsity, bscore, ntensors)
 *   pass 1: sp_global_add(g, 1, i, ...) for every tensor i in 0..ntensors-1
 *   pass 2: sp_global_add(g, 2, i, ...) for every tensor again (same data)
 *   then sp_global_mask(g, i, ...) gives tensor i's keep-mask.
 * N:M patterns are not global (SP_ERR_INVALID_ARG).
 */
typedef struct sp_global sp_global;
sp_status sp_global_new(sp_global **out, const sp_pattern *pattern, double sparsity,
                        sp_block_score bscore, size_t ntensors, sp_error *err);
sp_status sp_global_add(sp_global *g, int pass, size_t tensor, sp_dtype dtype,
                        const void *data, const float *scores, int ndim,
                        const int64_t *shape, sp_error *err);
sp_status sp_global_mask(sp_global *g, size_t tensor, uint8_t *mask, sp_dtype dtype,
                         const void *data, const float *scores, int ndim,
                         const int64_t *shape, sp_error *err);
void sp_global_free(sp_global *g); /* accepts NULL */

/*
 * Checking: does a tensor meet a pattern and a minimum sparsity?
 * Fills the measured sparsity (zeros/numel; blocks: zero blocks/nblocks) and
 * returns true when it is >= target - 0.5/n (so round() targets pass) and,
 * for N:M, no group has more than N nonzeros (blocks: every block is either
 * all zero or counted as kept). violation (may be NULL) gets a short reason.
 */
bool sp_mask_check(sp_dtype dtype, const void *data, int ndim, const int64_t *shape,
                   const sp_pattern *pattern, double target, double *measured,
                   char *violation, size_t vlen);

/* Schedules (SparseML inter_func). */
typedef enum sp_inter_func {
    SP_INTER_CUBIC = 0,         /* Zhu & Gupta 2017: fast early, slow late */
    SP_INTER_LINEAR = 1,
    SP_INTER_INVERSE_CUBIC = 2, /* slow early, fast late */
} sp_inter_func;

sp_status sp_inter_func_parse(sp_inter_func *out, const char *text, sp_error *err);
const char *sp_inter_func_str(sp_inter_func f);

/* Sparsity at `epoch` (fractional) for a gradual schedule from init to final
 * between start and end epochs, updated every update_frequency epochs
 * (<= 0: continuously). Before start: init; from end on: final. With
 * start == end the schedule is one-shot (final from start on). */
double sp_schedule_sparsity(double init, double final, double start_epoch,
                            double end_epoch, double update_frequency,
                            sp_inter_func f, double epoch);

/*
 * Regular expressions in Python `re` syntax (PCRE2 underneath, UTF + UCP:
 * \d, \w, \s, \b are Unicode-aware as in Python 3 str patterns; lookaround,
 * (?P<name>...), lazy and possessive quantifiers, inline flags i m s x).
 * Spellings where PCRE2 and Python differ are translated (\Z, \v, \uXXXX,
 * {,n}, '[' inside a set) and Python-invalid escapes and flags are refused,
 * so a pattern means what it means in Python. Compiled once; every match
 * runs under backtracking limits. Patterns longer than SP_REGEX_MAX_LEN
 * bytes are refused.
 */
#define SP_REGEX_MAX_LEN 4096
typedef struct sp_regex sp_regex;
/* Compile pattern. anchored: match at the start only (Python re.match);
 * else anywhere (re.search). Returns a new object in *out; free with
 * sp_regex_free. Errors: SP_ERR_INVALID_ARG "regex 'PAT': <reason>". */
sp_status sp_regex_new(sp_regex **out, const char *pattern, bool anchored, sp_error *err);
/* Does subject match? Errors: SP_ERR_INVALID_ARG when the pattern hits the
 * backtracking limits (catastrophic backtracking) or subject is not valid
 * UTF-8; the message names the pattern and the subject. Thread-safe. */
sp_status sp_regex_match(const sp_regex *re, const char *subject, bool *matched, sp_error *err);
const char *sp_regex_pattern(const sp_regex *re); /* as given */
void sp_regex_free(sp_regex *re);                  /* accepts NULL */

/* Tensor selection: regexes (above) matched anywhere in the dotted name
 * (like Python's re.search). With no include regex, the defaults apply
 * (sp_select_default). With include regexes, any floating tensor matching
 * one is a candidate (an output head too: the user asked). Excludes always
 * win. */
typedef struct sp_selector {
    sp_regex **inc, **exc; /* owned */
    size_t ninc, nexc;
} sp_selector;
/* Errors: SP_ERR_INVALID_ARG naming the option and the pattern
 * ("--include regex '(': missing closing parenthesis"). */
sp_status sp_selector_init(sp_selector *s, const char *const *include, size_t ninc,
                           const char *const *exclude, size_t nexc, sp_error *err);
/* *selected: is the tensor a candidate? Errors: those of sp_regex_match. */
sp_status sp_selector_match(const sp_selector *s, const char *name, sp_dtype dtype, int ndim,
                            bool *selected, sp_error *err);
void sp_selector_release(sp_selector *s);
/* The default rule alone: floating tensors of rank >= 2 whose name ends in
 * "weight" and that are not embeddings, norms (sp_name_is_embedding_or_norm)
 * or output heads (sp_name_is_output_head). */
bool sp_select_default(const char *name, sp_dtype dtype, int ndim);
/* Embeddings and norms by name: "embed"/"norm" anywhere (any case), GPT-2's
 * wte/wpe/ln_f, ln_* and bn* components. */
bool sp_name_is_embedding_or_norm(const char *name);
/* Language-model output heads by name: a module whose last component is
 * lm_head, embed_out (GPT-NeoX), generator_lm_head (ELECTRA), the
 * top-level "output" (Meta's Llama layout) or cls.predictions.decoder
 * (BERT's masked-LM head). SparseGPT, Wanda and llm-compressor keep them
 * dense. */
bool sp_name_is_output_head(const char *name);

#ifdef __cplusplus
}
#endif
#endif
