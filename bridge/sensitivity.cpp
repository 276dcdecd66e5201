/*
 * The sensitivity analysis behind sensitivity.h: the dense model once, then
 * every selected weight at every sparsity, one at a time.
 */
#include "bridge/sensitivity.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bridge/common.h"
#include "bridge/data.h"
#include "bridge/rewrite.h"

const double sp_sens_default_sparsities[SP_SENS_NDEFAULT] = {0.5, 0.7, 0.8, 0.9, 0.95, 0.98};

namespace sp_bridge {
namespace {

struct Target {
    std::vector<std::string> names; /* first: the one reported */
    at::Tensor w;                   /* the module's own tensor */
    std::string layer;              /* the rewrite's name when a Linear weight, else "" */
};

/* Zeros of w once keep is applied. */
double zeros(const at::Tensor &w, const at::Tensor &keep)
{
    return (double)w.numel() - keep.logical_and(w.detach().ne(0)).sum().item<double>();
}

char *dup(const std::string &s)
{
    char *p = strdup(s.c_str());
    if (!p)
        throw std::bad_alloc();
    return p;
}

class Analyzer {
  public:
    Analyzer(const sp_sens_opts *o, sp_sens_result *r, sp_error *err) : o_(o), r_(r), err_(err) {}
    ~Analyzer() { sp_dataset_release(&ds_); }
    void run();

  private:
    const sp_sens_opts *o_;
    sp_sens_result *r_;
    sp_error *err_;
    sp_dataset ds_{};
    at::Tensor x_, y_;
    std::vector<double> sparsities_;

    void check_opts();
    std::vector<Target> targets(torch::jit::Module &m);
    void evaluate(torch::jit::Module &m, double *loss, double *acc);
    at::Tensor mask(const Target &t, double s);
};

void Analyzer::check_opts()
{
    if (!o_->model || !o_->data)
        fail(err_, SP_ERR_INVALID_ARG, "sensitivity needs a model and data (--data FILE)");
    if (o_->batch_size < 1)
        fail(err_, SP_ERR_INVALID_ARG, "--batch-size: %lld must be at least 1",
             (long long)o_->batch_size);
    const double implied = sp_pattern_implied_sparsity(&o_->pattern);
    if (implied >= 0) {
        if (o_->sparsities)
            fail(err_, SP_ERR_INVALID_ARG, "--sparsities: an N:M pattern has one sparsity (%g)",
                 implied);
        sparsities_ = {implied};
        return;
    }
    if (o_->sparsities)
        sparsities_.assign(o_->sparsities, o_->sparsities + o_->nsparsities);
    else
        sparsities_.assign(sp_sens_default_sparsities, sp_sens_default_sparsities + SP_SENS_NDEFAULT);
    if (sparsities_.empty())
        fail(err_, SP_ERR_INVALID_ARG, "--sparsities: no sparsity given");
    for (size_t i = 0; i < sparsities_.size(); i++)
        if (!(sparsities_[i] > (i ? sparsities_[i - 1] : 0.0) && sparsities_[i] <= 1.0))
            fail(err_, SP_ERR_INVALID_ARG,
                 "--sparsities: %g must be in (0, 1] and above the one before", sparsities_[i]);
}

/* The selected weights, each tensor once (a shared weight under all its
 * names), in the order the model lists them; which are Linear weights. */
std::vector<Target> Analyzer::targets(torch::jit::Module &m)
{
    std::map<std::string, std::string> linear; /* weight path -> layer name */
    try {
        RewriteOptions ro;
        ro.model = o_->model;
        ro.keep = [](const std::string &, const at::Tensor &) { return at::Tensor(); };
        Rewritten rw = rewrite_linears(m, ro, err_); /* nothing packed: a census */
        for (const LayerInfo &l : rw.layers)
            if (l.linear)
                linear[l.weight] = l.name;
    } catch (const Failed &) {
        /* forward has no Linear product: every weight is masked in place */
        sp_error_clear(err_);
    }
    std::vector<Target> out;
    std::map<const void *, size_t> seen;
    for (const auto &p : m.named_parameters(true)) {
        const at::Tensor &t = p.value;
        bool hit = false;
        if (!t.is_floating_point() || t.dim() < 1)
            continue;
        const sp_dtype dt = t.scalar_type() == at::kFloat ? SP_F32 : SP_F64;
        if (o_->selector) {
            if (sp_selector_match(o_->selector, p.name.c_str(), dt, (int)t.dim(), &hit, err_))
                throw Failed{err_->code};
        } else {
            hit = sp_select_default(p.name.c_str(), dt, (int)t.dim());
        }
        if (!hit)
            continue;
        if (t.scalar_type() != at::kFloat)
            fail(err_, SP_ERR_UNSUPPORTED, "weight '%s' is %s; the analysis takes float32",
                 p.name.c_str(), c10::toString(t.scalar_type()));
        auto it = seen.find(t.unsafeGetTensorImpl());
        if (it != seen.end()) {
            out[it->second].names.push_back(p.name);
            continue;
        }
        seen.emplace(t.unsafeGetTensorImpl(), out.size());
        Target tg;
        tg.names.push_back(p.name);
        tg.w = t;
        auto li = linear.find(p.name);
        if (li != linear.end() && t.dim() == 2)
            tg.layer = li->second;
        out.push_back(tg);
    }
    if (out.empty())
        fail(err_, SP_ERR_INVALID_ARG, "'%s': no weight selected to analyse", o_->model);
    return out;
}

void Analyzer::evaluate(torch::jit::Module &m, double *loss, double *acc)
{
    torch::NoGradGuard ng;
    const int64_t n = x_.size(0), bs = o_->batch_size;
    double total = 0, correct = 0;
    for (int64_t b = 0; b < n; b += bs) {
        const int64_t k = std::min(bs, n - b);
        at::Tensor out = m.forward({x_.narrow(0, b, k)}).toTensor();
        at::Tensor yb = y_.narrow(0, b, k);
        if (r_->classification) {
            total += at::nll_loss(at::log_softmax(out, 1), yb, {}, at::Reduction::Sum).item<double>();
            correct += out.argmax(1).eq(yb).sum().item<double>();
        } else {
            total += at::mse_loss(out.reshape(yb.sizes()), yb, at::Reduction::Sum).item<double>();
        }
    }
    *loss = total / (double)(r_->classification ? n : y_.numel());
    *acc = r_->classification ? correct / (double)n : -1.0;
    r_->runs++;
}

/* sparsify's own mask of t at sparsity s (prune.h), as a bool tensor. */
at::Tensor Analyzer::mask(const Target &t, double s)
{
    at::Tensor w = t.w.detach().contiguous();
    at::Tensor keep = at::empty(w.sizes(), at::kByte);
    std::vector<int64_t> shape(w.sizes().begin(), w.sizes().end());
    sp_status st = sp_mask_select(keep.data_ptr<uint8_t>(), SP_F32, w.data_ptr<float>(), nullptr,
                                  (int)w.dim(), shape.data(), &o_->pattern, s, o_->bscore, err_);
    if (st != SP_OK) {
        sp_error_prefix(err_, "'%s': weight '%s'", o_->model, t.names[0].c_str());
        throw Failed{st};
    }
    return keep.to(at::kBool);
}

void Analyzer::run()
{
    check_opts();
    sp_status st = sp_dataset_load(&ds_, o_->data, o_->label_column, SP_LABEL_LAST, err_);
    if (st != SP_OK)
        throw Failed{st};
    if (!ds_.has_labels)
        fail(err_, SP_ERR_INVALID_ARG, "'%s': the analysis needs labels ('labels' tensor)", o_->data);
    if (o_->threads > 0)
        at::set_num_threads(o_->threads);
    x_ = dataset_inputs(ds_);
    torch::jit::Module m = load_module(o_->model, err_);
    m.eval();
    at::Tensor probe = probe_model(m, x_, o_->model, o_->data, ds_.width, err_);
    /* the loss the labels call for: classes when they are whole numbers
     * that index the outputs, else regression */
    r_->classification = ds_.labels_integral && ds_.label_width == 1 && probe.dim() == 2 &&
                         probe.size(1) >= 2 && ds_.label_max < probe.size(1);
    if (r_->classification) {
        y_ = at::from_blob(ds_.y, {ds_.n}, at::kFloat).to(at::kLong);
    } else {
        if (probe.numel() != probe.size(0) * ds_.label_width)
            fail(err_, SP_ERR_INVALID_ARG,
                 "'%s': the labels fit neither classification (whole numbers below the %lld "
                 "outputs) nor regression (%lld values per sample for %lld outputs)",
                 o_->data, (long long)(probe.dim() >= 2 ? probe.size(1) : 1),
                 (long long)ds_.label_width, (long long)(probe.numel() / probe.size(0)));
        std::vector<int64_t> shape{ds_.n};
        for (int d = 0; d < ds_.label_ndim; d++)
            shape.push_back(ds_.label_shape[d]);
        y_ = at::from_blob(ds_.y, shape, at::kFloat).clone();
    }
    r_->samples = ds_.n;
    evaluate(m, &r_->base_loss, &r_->base_accuracy);

    std::vector<Target> tg = targets(m);
    r_->layers = static_cast<sp_sens_layer *>(calloc(tg.size(), sizeof(sp_sens_layer)));
    if (!r_->layers)
        throw std::bad_alloc();
    const double t0 = now_ms();
    for (const Target &t : tg) {
        sp_sens_layer &L = r_->layers[r_->n++];
        L.name = dup(t.names[0]);
        L.aliases = static_cast<char **>(calloc(t.names.size(), sizeof(char *)));
        L.points = static_cast<sp_sens_point *>(calloc(sparsities_.size(), sizeof(sp_sens_point)));
        if (!L.aliases || !L.points)
            throw std::bad_alloc();
        for (size_t i = 1; i < t.names.size(); i++)
            L.aliases[L.naliases++] = dup(t.names[i]);
        L.ndim = (int)t.w.dim();
        for (int d = 0; d < L.ndim && d < SP_MAX_DIMS; d++)
            L.shape[d] = t.w.size(d);
        L.numel = t.w.numel();
        L.sparse_op = !t.layer.empty();

        std::vector<at::Tensor> keeps;
        for (double s : sparsities_)
            keeps.push_back(mask(t, s));
        if (L.sparse_op) {
            /* rewrite this one layer onto the sparse operator once; each
             * sparsity then swaps in its packed weight and kept values */
            RewriteOptions ro;
            ro.model = o_->model;
            ro.batch = std::min<int64_t>(o_->batch_size, ds_.n);
            ro.only = {t.layer};
            const void *impl = t.w.unsafeGetTensorImpl();
            ro.keep = [&](const std::string &, const at::Tensor &w) {
                return w.unsafeGetTensorImpl() == impl ? keeps[0] : at::Tensor();
            };
            Rewritten rw = rewrite_linears(m, ro, err_);
            const LayerInfo *info = nullptr;
            for (const LayerInfo &l : rw.layers)
                if (l.sparse)
                    info = &l;
            if (!info)
                fail(err_, SP_ERR_INTERNAL, "'%s': layer '%s' did not take the sparse operator",
                     o_->model, t.layer.c_str());
            for (size_t i = 0; i < sparsities_.size(); i++) {
                auto p = PackedLinear::make(t.layer, t.w.detach(), keeps[i], SP_FALLBACK_AUTO, err_);
                if (!p)
                    throw Failed{err_->code};
                rw.module.setattr(info->values_attr, p->values());
                rw.module.setattr(info->packed_attr, c10::IValue(p));
                sp_sens_point &P = L.points[L.npoints++];
                P.target = sparsities_[i];
                P.sparsity = zeros(t.w, keeps[i]) / (double)L.numel;
                evaluate(rw.module, &P.loss, &P.accuracy);
            }
        } else {
            /* not a Linear product: mask the weight in place, then restore it */
            torch::NoGradGuard ng;
            at::Tensor orig = t.w.detach().clone();
            for (size_t i = 0; i < sparsities_.size(); i++) {
                at::Tensor w = t.w.detach();
                w.mul_(keeps[i].to(at::kFloat));
                sp_sens_point &P = L.points[L.npoints++];
                P.target = sparsities_[i];
                P.sparsity = zeros(t.w, keeps[i]) / (double)L.numel;
                evaluate(m, &P.loss, &P.accuracy);
                w.copy_(orig);
            }
        }
    }
    r_->seconds = (now_ms() - t0) / 1000.0;
}

} // namespace
} // namespace sp_bridge

extern "C" {

void sp_sens_opts_init(sp_sens_opts *o)
{
    std::memset(o, 0, sizeof *o);
    o->pattern = sp_pattern{SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};
    o->batch_size = 256;
}

sp_status sp_sensitivity(const sp_sens_opts *o, sp_sens_result *res, sp_error *err)
{
    std::memset(res, 0, sizeof *res);
    sp_error_clear(err);
    sp_status st = sp_bridge::guarded(err, "sensitivity analysis", [&] {
        sp_bridge::Analyzer a(o, res, err);
        a.run();
    });
    if (st != SP_OK)
        sp_sens_result_release(res);
    return st;
}

void sp_sens_result_release(sp_sens_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; res->layers && i < res->n; i++) {
        sp_sens_layer &L = res->layers[i];
        free(L.name);
        for (size_t k = 0; k < L.naliases; k++)
            free(L.aliases[k]);
        free(L.aliases);
        free(L.points);
    }
    free(res->layers);
    std::memset(res, 0, sizeof *res);
}

} // extern "C"
