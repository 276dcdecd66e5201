/*
 * bridge/rewrite.h — put the sparse Linear operator into a TorchScript model
 * (internal to the bridge; docs/run.md describes it for users).
 *
 * The model's forward is cloned (sharing every tensor with the original),
 * its calls inlined, its Linear products normalised to aten::linear
 * (aten::addmm(b, x, w.t()) and aten::matmul/mm(x, w.t()), with the graph
 * pattern rewriter), and every aten::linear whose weight is a module
 * attribute (any depth of submodules, several uses of one shared weight) is
 * considered: when the weight is sparse enough for the dispatcher to prefer
 * the sparse kernels at the expected batch, the product becomes
 *
 *   sparsify::linear(x, self._sparsify_values_<i>, b, self._sparsify_packed_<i>)
 *
 * with the kept values as a new parameter and the packed weight as a custom
 * class attribute of the top module. Everything else (conv, attention
 * matmuls, embeddings, norms) stays as it was. The report says, for every
 * 2-D weight forward reads, whether it runs sparse and, if not, why.
 */
#ifndef SPARSIFY_BRIDGE_REWRITE_H
#define SPARSIFY_BRIDGE_REWRITE_H

#include <torch/script.h>

#include <functional>
#include <string>
#include <vector>

#include "bridge/linear.h"

namespace sp_bridge {

struct LayerInfo {
    std::string name;   /* "blocks.0.fc1": the weight's path less ".weight" */
    std::string weight; /* "blocks.0.fc1.weight" (first path of a shared weight) */
    bool linear = false; /* feeds a Linear product */
    bool sparse = false; /* rewritten */
    std::string reason;  /* why it stays dense */
    int64_t rows = 0, cols = 0;
    double sparsity = 0; /* pruned / numel (the keep-mask's, else zeros) */
    std::string layout, kernel; /* sparse: packed layout, kernel at the batch */
    at::Tensor original;        /* the weight tensor */
    at::Tensor values;          /* sparse: the new parameter */
    c10::intrusive_ptr<PackedLinear> packed;
    std::string values_attr, packed_attr; /* sparse: their attribute names on
                                             the top module (setattr swaps a
                                             layer's weight) */
};

struct RewriteOptions {
    int64_t batch = 1;                       /* the batch the dispatcher plans for */
    sp_fallback fallback = SP_FALLBACK_AUTO; /* NEVER: every eligible layer sparse */
    std::vector<std::string> only;           /* run exactly these layers sparse */
    bool training = false; /* values require grad; a weight also read outside a
                              Linear product stays dense (its gradient) */
    bool drop_dense = false; /* rewrite m itself (no clone) and free each
                                dense weight forward no longer reads as soon
                                as it is packed; m must not have run yet */
    /* The keep-mask (bool, true = kept) of a weight by path; an undefined
     * tensor means "not masked" (stays dense). Unset: the nonzeros. */
    std::function<at::Tensor(const std::string &, const at::Tensor &)> keep;
    std::string model; /* for messages */
};

struct Rewritten {
    torch::jit::Module module;
    std::vector<LayerInfo> layers; /* in the order forward reads them */
    size_t nlinear = 0, nsparse = 0;
};

/* Graph helpers shared with the calibration pass (calibrate.cpp), which
 * instruments the same Linear products the rewrite replaces. */
/* Linear products written as addmm / matmul / mm with a transposed weight
 * become aten::linear. */
void normalise_linears(std::shared_ptr<torch::jit::Graph> &g);
/* Every node of b and of its sub-blocks, in order. */
std::vector<torch::jit::Node *> graph_nodes(torch::jit::Block *b);
/* The attribute path of v when forward reads it from self through
 * GetAttrs ("blocks", "0", "fc1", "weight"); false otherwise. */
bool graph_attr_path(torch::jit::Value *v, torch::jit::Value *self,
                     std::vector<std::string> *parts);
/* The attribute of m at that path, or None. */
c10::IValue module_attr(const torch::jit::Module &m, const std::vector<std::string> &parts);

/* Rewrite a clone of m (tensors shared, m itself untouched), or with
 * drop_dense m itself. Errors (thrown as Failed with err filled):
 * SP_ERR_INVALID_ARG (no Linear product in forward; a name in `only` that
 * is no Linear layer), SP_ERR_UNSUPPORTED (no forward method). */
Rewritten rewrite_linears(torch::jit::Module &m, const RewriteOptions &o, sp_error *err);

} // namespace sp_bridge

#endif
