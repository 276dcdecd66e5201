/*
 * bridge/linear.h — the sparse Linear operator (internal to the bridge;
 * docs/run.md describes it for users).
 *
 *   sparsify::linear(Tensor input, Tensor values, Tensor? bias,
 *                    __torch__.torch.classes.sparsify.PackedLinear packed) -> Tensor
 *
 * computes input @ W^T + bias like aten::linear, where W [out, in] is the
 * packed sparse weight: `packed` holds its layout (CSR, BCSR blocks, N:M or
 * dense, chosen from the weight's zeros) and the kernels' plans; `values`
 * holds its kept values, in row-major order of their positions (the
 * canonical order). `values` is what an optimizer trains: the operator's
 * autograd gives its gradient at the kept positions only (SDDMM), so pruned
 * weights are not parameters at all and stay zero by construction. Before a
 * product the packed copy is refreshed from `values` when they changed (the
 * tensor's version counter moved, or values_changed() was called): an
 * O(nnz) scatter through sp_spmat_value_map.
 *
 * Products: forward Y^T = W X^T with sparsify's SpMM plans (X^T is X itself
 * at batch 1, a transpose otherwise; Y is written in place with strides
 * (1, batch) so no copy back is needed); backward dX^T = W^T dY^T with a
 * second packed matrix W^T (built on the first backward), dvalues by SDDMM
 * at the kept positions, dbias = sum of dY over the batch.
 *
 * Threads: a packed matrix is cut into at::get_num_threads() blocks of rows
 * with equal numbers of kept values, each packed on its own with a
 * one-thread plan, and the blocks run inside libtorch's own parallel_for.
 * So the operator runs on libtorch's threads, the ones every other op of the
 * model uses, instead of a second pool of workers competing with them for
 * the cores (measured: docs/run.md). Plans fall back to libtorch's dense mm
 * where the dispatcher says dense is faster.
 */
#ifndef SPARSIFY_BRIDGE_LINEAR_H
#define SPARSIFY_BRIDGE_LINEAR_H

#include <ATen/ATen.h>
#include <torch/custom_class.h>

#include <mutex>
#include <string>
#include <vector>

/* kernels.h and sddmm.h are C: `restrict` is `__restrict__` in C++ */
#define restrict __restrict__
#include "sparsify/kernels.h"
#include "sparsify/sddmm.h"
#undef restrict

namespace sp_bridge {

class PackedLinear : public torch::CustomClassHolder {
  public:
    /*
     * Pack weight w (2-D, float32, CPU) keeping the positions where keep is
     * true (keep undefined: where w != 0; a kept position may hold 0). The
     * layout is `layout` when given (unstructured -> CSR, RxC -> BCSR,
     * N:M -> N:M), else chosen from the kept positions (exact blocks ->
     * BCSR, else CSR); fallback says when the plans run dense. Returns NULL
     * with err filled when the weight cannot be packed (too many columns for
     * 16-bit indices, kept positions that break the asked N:M, ...); throws
     * Failed on NOMEM.
     */
    static c10::intrusive_ptr<PackedLinear> make(const std::string &name, const at::Tensor &w,
                                                 const at::Tensor &keep, sp_fallback fallback,
                                                 sp_error *err, const sp_pattern *layout = nullptr);
    PackedLinear() = default;
    ~PackedLinear() override;
    PackedLinear(const PackedLinear &) = delete;
    PackedLinear &operator=(const PackedLinear &) = delete;

    const std::string &name() const { return name_; }
    int64_t rows() const { return rows_; }
    int64_t cols() const { return cols_; }
    int64_t nnz() const { return (int64_t)ci_.size(); }
    /* "csr", "bcsr 4x1", "nm 2:4", "dense" */
    std::string layout() const;
    /* The pattern packed: "unstructured", "4x1", "2:4" */
    std::string pattern() const;
    sp_fallback fallback() const { return fallback_; }
    /* Bytes of the packed forward matrix. */
    size_t bytes() const;

    /* The kept values as packed (a new tensor, canonical order). */
    at::Tensor values() const;
    /* Flat row-major indices (int64) of the kept positions. */
    at::Tensor kept_index() const;
    /* The dense [rows, cols] weight for `values`: kept positions get them,
     * the others +0.0. */
    at::Tensor dense(const at::Tensor &values) const;
    /* The kernel that runs a batch of n, and whether the plan is dense. */
    std::string kernel(int64_t n);
    bool dense_for(int64_t n);

    /* The values were written in a way their version counter does not see
     * (libtorch's SGD updates p.data(), a new version counter): refresh
     * before the next product. */
    void values_changed();

    /* The products, on contiguous float32 CPU tensors (the operator checks
     * its arguments before calling them). forward: x [B, K] -> y [B, M];
     * *xt gets X^T [K, B] for the backward. grad_input: dY^T [M, B] ->
     * dX [B, K]. grad_values: dY^T, X^T -> [nnz]. */
    at::Tensor forward(const at::Tensor &x, const at::Tensor &values, const at::Tensor &bias,
                       at::Tensor *xt);
    at::Tensor grad_input(const at::Tensor &dyt, const at::Tensor &values);
    at::Tensor grad_values(const at::Tensor &dyt, const at::Tensor &xt);

    struct Plan {
        int64_t n;
        sp_spmm_plan *plan;
        bool holds_values; /* keeps its own copy of the values (dense, SpMV) */
    };
    /* Rows [r0, r1) of W or W^T, packed on their own. Kept value j of the
     * block is canonical value src[j] (src empty: k0 + j) and lives at
     * m->values[dst[j]]. */
    struct Block {
        int64_t r0 = 0, r1 = 0;
        sp_spmat *m = nullptr;
        size_t k0 = 0;
        std::vector<uint32_t> src, dst;
        std::vector<Plan> plans;
    };

  private:
    std::string name_;
    int64_t rows_ = 0, cols_ = 0;
    sp_pattern pattern_{};
    bool patterned_ = false;
    sp_fallback fallback_ = SP_FALLBACK_AUTO;
    std::vector<Block> w_, wt_;     /* W and (after the first backward) W^T */
    std::vector<uint32_t> rp_, ci_; /* the kept positions as plain CSR */
    at::Tensor synced_; /* the values last scattered into w_ (held) */
    const void *synced_ptr_ = nullptr;
    int64_t synced_version_ = -1;
    bool wt_synced_ = false;
    std::mutex mu_;

    void sync(const at::Tensor &values);
    void build_transpose(const at::Tensor &values);
    void scatter(std::vector<Block> &blocks, const float *values);
    void run(std::vector<Block> &blocks, int64_t n, const float *x, float *y, const float *bias);
    sp_spmm_plan *plan(Block &b, int64_t n);
    static void drop_plans(std::vector<Block> &blocks, bool only_copies);
};

/* The operator with autograd (what sparsify::linear runs): input [..., K]
 * of any rank >= 1. Throws c10::Error with a message naming the layer on
 * bad input (dtype, device, width). */
at::Tensor sparse_linear(const at::Tensor &input, const at::Tensor &values,
                         const c10::optional<at::Tensor> &bias,
                         const c10::intrusive_ptr<PackedLinear> &packed);

/* The qualified name of the operator, for graph rewrites. */
extern const char *const kLinearOp; /* "sparsify::linear" */

} // namespace sp_bridge

#endif
