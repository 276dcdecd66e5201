/*
 * The model rewrite (rewrite.h): find the Linear products of a TorchScript
 * forward and run the sparse ones through sparsify::linear.
 */
#include "bridge/rewrite.h"

#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/ir/subgraph_matcher.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/subgraph_rewrite.h>

#include <map>

#include "bridge/common.h"

namespace sp_bridge {

namespace {

using torch::jit::Block;
using torch::jit::Graph;
using torch::jit::Match;
using torch::jit::Node;
using torch::jit::SubgraphRewriter;
using torch::jit::Value;
using ValueMap = std::unordered_map<std::string, Value *>;

bool is_one(Value *v)
{
    auto iv = torch::jit::toIValue(v);
    return iv && ((iv->isInt() && iv->toInt() == 1) || (iv->isDouble() && iv->toDouble() == 1.0));
}

/* Linear products written another way become aten::linear: addmm with a
 * transposed weight (traced and older scripted Linear layers) and matmul/mm
 * with a transposed weight and no bias. The matcher only takes a match whose
 * inner values (the transpose) have no other use. */
void normalise(std::shared_ptr<Graph> &g)
{
    SubgraphRewriter addmm;
    addmm.RegisterRewritePattern(R"IR(
graph(%b, %x, %w, %beta, %alpha):
    %wt = aten::t(%w)
    %y = aten::addmm(%b, %x, %wt, %beta, %alpha)
    return (%y))IR",
                                 R"IR(
graph(%b, %x, %w, %beta, %alpha):
    %y = aten::linear(%x, %w, %b)
    return (%y))IR");
    addmm.runOnGraph(g, [](const Match &m, const ValueMap &vm) {
        return is_one(m.values_map.at(vm.at("beta"))) && is_one(m.values_map.at(vm.at("alpha")));
    });
    for (const char *op : {"matmul", "mm"}) {
        SubgraphRewriter mm;
        mm.RegisterRewritePattern(std::string(R"IR(
graph(%x, %w):
    %wt = aten::t(%w)
    %y = aten::)IR") + op + R"IR((%x, %wt)
    return (%y))IR",
                                  R"IR(
graph(%x, %w):
    %b : Tensor? = prim::Constant()
    %y = aten::linear(%x, %w, %b)
    return (%y))IR");
        mm.runOnGraph(g);
    }
}

void all_nodes(Block *b, std::vector<Node *> *out)
{
    for (Node *n : b->nodes()) {
        out->push_back(n);
        for (Block *sb : n->blocks())
            all_nodes(sb, out);
    }
}

/* The attribute path of v when it is read from self through GetAttrs. */
bool attr_path(Value *v, Value *self, std::vector<std::string> *parts)
{
    if (v == self)
        return true;
    Node *n = v->node();
    if (n->kind() != c10::prim::GetAttr || !attr_path(n->input(0), self, parts))
        return false;
    parts->push_back(n->s(c10::attr::name));
    return true;
}

c10::IValue resolve(const torch::jit::Module &m, const std::vector<std::string> &parts,
                    size_t count)
{
    c10::IValue cur = m._ivalue();
    for (size_t i = 0; i < count; i++) {
        if (!cur.isObject())
            return {};
        auto obj = cur.toObject();
        if (!obj->type()->hasAttribute(parts[i]))
            return {};
        cur = obj->getAttr(parts[i]);
    }
    return cur;
}

std::string join(const std::vector<std::string> &parts)
{
    std::string s;
    for (const auto &p : parts)
        s += (s.empty() ? "" : ".") + p;
    return s;
}

/* One weight tensor (several paths when shared) and how forward reads it. */
struct Weight {
    std::vector<std::vector<std::string>> paths;
    at::Tensor t;
    std::vector<Node *> linears; /* aten::linear nodes taking it as weight */
    std::string other;           /* the first other op reading it */
};

std::string layer_name(const std::string &weight)
{
    const std::string suffix = ".weight";
    if (weight.size() > suffix.size() &&
        weight.compare(weight.size() - suffix.size(), suffix.size(), suffix) == 0)
        return weight.substr(0, weight.size() - suffix.size());
    return weight;
}

std::string fresh_name(const torch::jit::Module &s, const char *base, size_t i)
{
    std::string name;
    do
        name = std::string(base) + std::to_string(i++);
    while (s.hasattr(name));
    return name;
}

/* Decide one Linear weight: an empty string when it runs sparse (and
 * `info` gets its packed form), else the reason it stays dense. */
std::string decide(LayerInfo &info, const Weight &w, const RewriteOptions &o, bool forced)
{
    const at::Tensor &t = w.t;
    if (!o.only.empty() && !forced)
        return "not in --layers";
    if (t.scalar_type() != at::kFloat)
        return std::string("weight is ") + c10::toString(t.scalar_type()) +
               ", the sparse kernels take float32";
    if (!t.device().is_cpu())
        return "weight is on " + t.device().str() + ", the sparse kernels run on the CPU";
    if (t.dim() != 2)
        return "weight is not 2-D";
    if (o.training && !w.other.empty())
        return "also read by " + w.other + " (trained dense)";
    at::Tensor keep;
    if (o.keep) {
        keep = o.keep(info.weight, t);
        if (!keep.defined())
            return "not masked (trained dense)";
    }
    const int64_t numel = t.numel();
    const int64_t kept = keep.defined() ? keep.sum().item<int64_t>()
                                        : t.ne(0).sum().item<int64_t>();
    info.sparsity = numel ? 1.0 - (double)kept / (double)numel : 0.0;
    if (kept == numel && !forced)
        return "no zeros";
    sp_error err{};
    auto p = PackedLinear::make(info.name, t.detach(), keep,
                                forced ? SP_FALLBACK_NEVER : o.fallback, &err);
    if (!p)
        return err.msg;
    info.layout = p->layout();
    info.kernel = p->kernel(o.batch);
    if (p->dense_for(o.batch) && !forced) {
        char buf[160];
        snprintf(buf, sizeof buf, "dense is faster at batch %lld (%s at %.1f%% sparsity)",
                 (long long)o.batch, info.layout.c_str(), 100.0 * info.sparsity);
        info.layout.clear();
        info.kernel.clear();
        return buf;
    }
    info.packed = p;
    return "";
}

} // namespace

void normalise_linears(std::shared_ptr<Graph> &g) { normalise(g); }

std::vector<Node *> graph_nodes(Block *b)
{
    std::vector<Node *> out;
    all_nodes(b, &out);
    return out;
}

bool graph_attr_path(Value *v, Value *self, std::vector<std::string> *parts)
{
    return attr_path(v, self, parts);
}

c10::IValue module_attr(const torch::jit::Module &m, const std::vector<std::string> &parts)
{
    return resolve(m, parts, parts.size());
}

Rewritten rewrite_linears(torch::jit::Module &m, const RewriteOptions &o, sp_error *err)
{
    Rewritten r;
    const char *model = o.model.empty() ? "model" : o.model.c_str();
    if (!m.find_method("forward"))
        fail(err, SP_ERR_UNSUPPORTED, "'%s': the model has no forward method", model);
    r.module = o.drop_dense ? m : m.clone(true);
    torch::jit::Module &s = r.module;
    std::shared_ptr<Graph> g = s.get_method("forward").graph();
    torch::jit::Inline(*g);
    normalise(g);
    Value *self = g->inputs()[0];

    /* every tensor forward reads from the module, grouped by identity */
    std::vector<Node *> nodes;
    all_nodes(g->block(), &nodes);
    std::vector<Weight> weights;
    std::map<const void *, size_t> by_impl;
    for (Node *n : nodes) {
        if (n->kind() != c10::prim::GetAttr || n->output()->type()->kind() != c10::TypeKind::TensorType)
            continue;
        std::vector<std::string> parts;
        if (!attr_path(n->output(), self, &parts))
            continue;
        c10::IValue v = resolve(s, parts, parts.size());
        if (!v.isTensor())
            continue;
        at::Tensor t = v.toTensor();
        if (t.dim() < 2 || !t.is_floating_point())
            continue; /* biases, norms, buffers: never a Linear weight */
        auto it = by_impl.find(t.unsafeGetTensorImpl());
        if (it == by_impl.end()) {
            it = by_impl.emplace(t.unsafeGetTensorImpl(), weights.size()).first;
            weights.push_back(Weight{{}, t, {}, {}});
        }
        Weight &w = weights[it->second];
        if (std::find(w.paths.begin(), w.paths.end(), parts) == w.paths.end())
            w.paths.push_back(parts);
        for (const auto &u : n->output()->uses()) {
            if (u.user->kind() == c10::aten::linear && u.offset == 1)
                w.linears.push_back(u.user);
            else if (w.other.empty())
                w.other = u.user->kind().toQualString();
        }
    }

    std::vector<LayerInfo> infos(weights.size());
    std::vector<std::string> linear_names;
    for (size_t i = 0; i < weights.size(); i++) {
        infos[i].weight = join(weights[i].paths[0]);
        infos[i].name = layer_name(infos[i].weight);
        infos[i].original = weights[i].t;
        if (!weights[i].linears.empty()) {
            infos[i].linear = true;
            r.nlinear++;
            linear_names.push_back(infos[i].name);
        }
    }
    if (r.nlinear == 0)
        fail(err, SP_ERR_INVALID_ARG,
             "'%s': forward has no Linear layer (aten::linear, or addmm/matmul with a "
             "transposed weight, on a weight of the module)",
             model);
    for (const auto &name : o.only)
        if (std::find(linear_names.begin(), linear_names.end(), name) == linear_names.end()) {
            std::string all;
            for (const auto &n : linear_names)
                all += (all.empty() ? "" : ", ") + n;
            if (all.size() > 300)
                all = all.substr(0, 300) + ", ...";
            fail(err, SP_ERR_INVALID_ARG, "--layers: '%s' has no Linear layer '%s' (it has: %s)",
                 model, name.c_str(), all.c_str());
        }

    size_t attr_i = 0;
    for (size_t i = 0; i < weights.size(); i++) {
        Weight &w = weights[i];
        LayerInfo &info = infos[i];
        info.rows = w.t.dim() >= 1 ? w.t.size(0) : 0;
        info.cols = w.t.dim() >= 2 ? w.t.numel() / std::max<int64_t>(1, w.t.size(0)) : 0;
        if (!info.linear) {
            info.reason = "not a Linear product (" + w.other + ")";
            continue;
        }
        const bool forced = std::find(o.only.begin(), o.only.end(), info.name) != o.only.end();
        info.reason = decide(info, w, o, forced);
        if (!info.reason.empty())
            continue;
        info.sparse = true;
        r.nsparse++;
        info.values = info.packed->values().set_requires_grad(o.training);
        const std::string vname = fresh_name(s, "_sparsify_values_", attr_i);
        s.register_parameter(vname, info.values, false);
        const std::string pname = fresh_name(s, "_sparsify_packed_", attr_i);
        s.register_attribute(pname, c10::getCustomClassType<c10::intrusive_ptr<PackedLinear>>(),
                             c10::IValue(info.packed));
        info.values_attr = vname;
        info.packed_attr = pname;
        attr_i++;
        for (Node *n : w.linears) {
            torch::jit::WithInsertPoint ip(n);
            Value *vals = g->insertGetAttr(self, vname);
            Value *pk = g->insertGetAttr(self, pname);
            Value *out = g->insert(c10::Symbol::fromQualString(kLinearOp),
                                   {n->input(0), vals, n->input(2), pk});
            n->output()->replaceAllUsesWith(out);
            n->destroy();
        }
        if (o.drop_dense && w.other.empty()) {
            /* forward no longer reads the dense weight: its memory goes back
             * now, before the next layer is packed */
            const at::TensorOptions opts = w.t.options();
            for (const auto &parts : w.paths) {
                c10::IValue owner = resolve(s, parts, parts.size() - 1);
                if (owner.isObject())
                    owner.toObject()->setAttr(parts.back(), at::empty({0}, opts));
            }
            info.original = at::Tensor();
            w.t = at::Tensor();
        }
    }
    torch::jit::EliminateDeadCode(g);
    r.layers = std::move(infos);
    return r;
}

} // namespace sp_bridge
