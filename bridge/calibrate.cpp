/*
 * The calibration pass (calibrate.h): an observing operator before every
 * Linear product and convolution of a clone of forward, run over the
 * calibration rows, its sums of squares turned into norms.
 */
#include "bridge/calibrate.h"

#include <ATen/Parallel.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/custom_class.h>
#include <torch/library.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>

#include <unistd.h>

#include "bridge/common.h"
#include "bridge/data.h"
#include "bridge/rewrite.h"
#include "sparsify/ckpt.h" /* sp_file_write_atomic */

namespace sp_bridge {

/* The running sums of squares of one weight's inputs, per input feature
 * (Linear) or input channel (convolution). A TorchScript custom class so
 * the graph can hand it to sparsify::observe. */
class Observer : public torch::CustomClassHolder {
  public:
    Observer(std::string name, bool conv, int64_t wdim, int64_t rows, int64_t cols)
        : name_(std::move(name)), conv_(conv), wdim_(wdim), rows_(rows), cols_(cols)
    {
    }

    void observe(const at::Tensor &x, int64_t groups)
    {
        at::Tensor s;
        if (!conv_) {
            TORCH_CHECK(x.dim() >= 1 && x.size(-1) == cols_, "calibration of '", name_,
                        "': input of shape ", shape_str(x.sizes()), " for ", cols_, " features");
            s = x.detach().reshape({-1, cols_}).to(at::kDouble).pow(2).sum(0);
        } else {
            TORCH_CHECK(x.dim() == wdim_ || x.dim() == wdim_ - 1, "calibration of '", name_,
                        "': convolution input of shape ", shape_str(x.sizes()));
            TORCH_CHECK(groups >= 1 && (groups_ < 0 || groups_ == groups), "calibration of '",
                        name_, "': groups ", groups);
            const int64_t cd = x.dim() == wdim_ ? 1 : 0; /* batched or not */
            TORCH_CHECK(x.size(cd) == cols_ * groups, "calibration of '", name_, "': ",
                        x.size(cd), " input channels for ", cols_, " x ", groups, " groups");
            groups_ = groups;
            std::vector<int64_t> dims;
            for (int64_t d = 0; d < x.dim(); d++)
                if (d != cd)
                    dims.push_back(d);
            s = x.detach().to(at::kDouble).pow(2).sum(dims);
        }
        acc_ = acc_.defined() ? acc_ + s : s;
    }

    bool seen() const { return acc_.defined(); }
    bool conv() const { return conv_; }

    /* float32 norms: [cols], or [rows, cols] for a grouped convolution */
    at::Tensor norms() const
    {
        at::Tensor n = acc_.sqrt().to(at::kFloat);
        if (!conv_ || groups_ <= 1)
            return n;
        const int64_t per = rows_ / groups_; /* output channels per group */
        at::Tensor out = at::empty({rows_, cols_}, at::kFloat);
        for (int64_t o = 0; o < rows_; o++)
            out[o].copy_(n.narrow(0, (o / std::max<int64_t>(per, 1)) * cols_, cols_));
        return out;
    }

  private:
    std::string name_;
    bool conv_;
    int64_t wdim_, rows_, cols_;
    int64_t groups_ = -1;
    at::Tensor acc_; /* float64 sums of squares */
};

namespace {

const char *const kObserveOp = "sparsify::observe";

void observe_op(const at::Tensor &x, const c10::intrusive_ptr<Observer> &obs, int64_t groups)
{
    obs->observe(x, groups);
}

bool is_conv(c10::Symbol k)
{
    return k == c10::aten::conv1d || k == c10::aten::conv2d || k == c10::aten::conv3d ||
           k == c10::aten::_convolution || k == c10::aten::convolution;
}

struct Watched {
    std::vector<std::string> names; /* every path forward reads it by */
    c10::intrusive_ptr<Observer> obs;
    std::string attr;
};

std::string join(const std::vector<std::string> &parts)
{
    std::string s;
    for (const auto &p : parts)
        s += (s.empty() ? "" : ".") + p;
    return s;
}

} // namespace

std::vector<WeightNorms> activation_norms(torch::jit::Module &m, const at::Tensor &x,
                                          const char *model_path, const char *data_path,
                                          sp_error *err)
{
    using torch::jit::Node;
    using torch::jit::Value;
    torch::jit::Module s = m.clone(true);
    std::shared_ptr<torch::jit::Graph> g = s.get_method("forward").graph();
    torch::jit::Inline(*g);
    normalise_linears(g);
    Value *self = g->inputs()[0];

    std::vector<Watched> watched;
    std::map<const void *, size_t> by_impl;
    for (Node *n : graph_nodes(g->block())) {
        const c10::Symbol k = n->kind();
        const bool conv = is_conv(k);
        if (k != c10::aten::linear && !conv)
            continue;
        Value *groups = nullptr;
        if (k == c10::aten::_convolution || k == c10::aten::convolution) {
            auto tr = torch::jit::toIValue(n->input(6));
            if (!tr || !tr->isBool() || tr->toBool())
                continue; /* transposed: its weight is [in, out], not ours to score */
            groups = n->input(8);
        } else if (conv) {
            groups = n->input(6);
        }
        std::vector<std::string> parts;
        if (!graph_attr_path(n->input(1), self, &parts))
            continue;
        c10::IValue v = module_attr(s, parts);
        if (!v.isTensor())
            continue;
        at::Tensor w = v.toTensor();
        if (!w.is_floating_point() || w.dim() < 2)
            continue;
        auto it = by_impl.find(w.unsafeGetTensorImpl());
        if (it == by_impl.end()) {
            it = by_impl.emplace(w.unsafeGetTensorImpl(), watched.size()).first;
            Watched wt;
            wt.obs = c10::make_intrusive<Observer>(join(parts), conv, w.dim(), w.size(0),
                                                   w.size(1));
            wt.attr = "_sparsify_observer_" + std::to_string(watched.size());
            while (s.hasattr(wt.attr))
                wt.attr += "_";
            s.register_attribute(wt.attr, c10::getCustomClassType<c10::intrusive_ptr<Observer>>(),
                                 c10::IValue(wt.obs));
            watched.push_back(wt);
        }
        Watched &wt = watched[it->second];
        if (wt.obs->conv() != conv)
            continue; /* one tensor as a Linear and a convolution weight: keep the first */
        const std::string name = join(parts);
        if (std::find(wt.names.begin(), wt.names.end(), name) == wt.names.end())
            wt.names.push_back(name);
        torch::jit::WithInsertPoint ip(n);
        Value *ov = g->insertGetAttr(self, wt.attr);
        Value *gv = groups ? groups : g->insertConstant(int64_t(1));
        g->insertNode(g->create(c10::Symbol::fromQualString(kObserveOp), {n->input(0), ov, gv}, 0));
    }
    if (watched.empty())
        fail(err, SP_ERR_INVALID_ARG,
             "'%s': forward reads no weight through a Linear product or a convolution, so "
             "there are no activations to calibrate",
             model_path);

    s.eval();
    {
        torch::NoGradGuard ng;
        const int64_t n = x.size(0);
        for (int64_t b = 0; b < n; b += SP_CALIB_BATCH)
            s.forward({x.narrow(0, b, std::min<int64_t>(SP_CALIB_BATCH, n - b))});
    }

    std::vector<WeightNorms> out;
    for (const Watched &wt : watched) {
        if (!wt.obs->seen())
            continue; /* its product never ran on this data (an untaken branch) */
        at::Tensor nv = wt.obs->norms();
        if (!at::isfinite(nv).all().item<bool>())
            fail(err, SP_ERR_INVALID_ARG,
                 "'%s': the inputs of '%s' overflow float32 on this data (an activation norm "
                 "is Inf)",
                 data_path, wt.names[0].c_str());
        for (const std::string &name : wt.names)
            out.push_back(WeightNorms{name, wt.obs->conv() ? "conv" : "linear", nv});
    }
    return out;
}

/* A dict of tensors as torch.save writes it (a zip with data.pkl and one
 * record per storage), by libtorch's own pickler and archive writer; unlike
 * torch::pickle_save, the dict is not wrapped in a TorchScript type tag, so
 * it is a plain state dict to every reader. */
std::vector<char> state_dict_bytes(const c10::IValue &dict)
{
    std::vector<char> pickle, out;
    torch::jit::Pickler p([&](const char *b, size_t n) { pickle.insert(pickle.end(), b, b + n); },
                          nullptr, nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
    p.protocol();
    p.pushIValue(dict);
    p.stop();
    caffe2::serialize::PyTorchStreamWriter w([&](const void *b, size_t n) {
        out.insert(out.end(), static_cast<const char *>(b), static_cast<const char *>(b) + n);
        return n;
    });
    torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), p.tensorData(), w);
    w.writeEndOfFile();
    return out;
}

namespace {

class Calibrator {
  public:
    Calibrator(const sp_calib_opts *o, sp_calib_result *r, sp_error *err) : o_(o), r_(r), err_(err) {}
    ~Calibrator() { sp_dataset_release(&ds_); }
    void run();

  private:
    const sp_calib_opts *o_;
    sp_calib_result *r_;
    sp_error *err_;
    sp_dataset ds_{};
};

void Calibrator::run()
{
    if (!o_->model || !o_->data)
        fail(err_, SP_ERR_INVALID_ARG, "calibration needs a model and data");
    if (o_->samples < 1)
        fail(err_, SP_ERR_INVALID_ARG, "--calibration-samples: %lld must be at least 1",
             (long long)o_->samples);
    sp_status st = sp_dataset_load(&ds_, o_->data, o_->label_column, SP_LABEL_NONE, err_);
    if (st != SP_OK)
        throw Failed{st};
    if (ds_.n < 1 || ds_.width < 1)
        fail(err_, SP_ERR_FORMAT, "'%s': no calibration rows", o_->data);
    const int64_t n = std::min<int64_t>(o_->samples, ds_.n);
    /* (the reader refuses NaN and Inf: CSV fields and tensor files alike) */
    if (o_->threads > 0)
        at::set_num_threads(o_->threads);
    at::Tensor x = dataset_inputs(ds_).narrow(0, 0, n);
    torch::jit::Module m = load_module(o_->model, err_);
    m.eval();
    probe_model(m, x, o_->model, o_->data, ds_.width, err_);
    std::vector<WeightNorms> norms = activation_norms(m, x, o_->model, o_->data, err_);

    r_->samples = n;
    r_->layers = static_cast<sp_calib_norms *>(calloc(norms.size() + 1, sizeof(sp_calib_norms)));
    if (!r_->layers)
        throw std::bad_alloc();
    for (const WeightNorms &w : norms) {
        sp_calib_norms &d = r_->layers[r_->n];
        d.name = strdup(w.name.c_str());
        d.op = w.op == "conv" ? "conv" : "linear";
        d.ndim = (int)w.norms.dim();
        d.shape[0] = w.norms.size(0);
        d.shape[1] = d.ndim == 2 ? w.norms.size(1) : 0;
        d.norms = static_cast<float *>(malloc(sizeof(float) * (size_t)w.norms.numel()));
        r_->n++;
        if (!d.name || !d.norms)
            throw std::bad_alloc();
        memcpy(d.norms, w.norms.contiguous().data_ptr<float>(), sizeof(float) * (size_t)w.norms.numel());
    }
}

} // namespace
} // namespace sp_bridge

using torch::CustomClassHolder;

TORCH_LIBRARY_FRAGMENT(sparsify, m)
{
    m.class_<sp_bridge::Observer>("Observer");
    /* CONSERVATIVE: the operator has an effect (it fills the observer), so
     * dead-code elimination keeps it though it returns nothing */
    m.def(torch::schema("observe(Tensor input, __torch__.torch.classes.sparsify.Observer observer, "
                        "int groups) -> ()",
                        c10::AliasAnalysisKind::CONSERVATIVE),
          sp_bridge::observe_op);
}

extern "C" {

void sp_calib_opts_init(sp_calib_opts *o)
{
    std::memset(o, 0, sizeof *o);
    o->samples = SP_CALIB_SAMPLES;
}

sp_status sp_calibrate(const sp_calib_opts *o, sp_calib_result *res, sp_error *err)
{
    std::memset(res, 0, sizeof *res);
    sp_error_clear(err);
    sp_status st = sp_bridge::guarded(err, "calibration", [&] {
        sp_bridge::Calibrator c(o, res, err);
        c.run();
    });
    if (st != SP_OK)
        sp_calib_result_release(res);
    return st;
}

void sp_calib_result_release(sp_calib_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; res->layers && i < res->n; i++) {
        free(res->layers[i].name);
        free(res->layers[i].norms);
    }
    free(res->layers);
    std::memset(res, 0, sizeof *res);
}

sp_status sp_calib_save(const sp_calib_result *res, const char *path, int fd, sp_error *err)
{
    std::vector<char> bytes;
    sp_status st = sp_bridge::guarded(err, "saving the calibration norms", [&] {
        c10::Dict<std::string, at::Tensor> d;
        for (size_t i = 0; i < res->n; i++) {
            const sp_calib_norms &l = res->layers[i];
            std::vector<int64_t> shape(l.shape, l.shape + l.ndim);
            d.insert(l.name, torch::from_blob(l.norms, shape, at::kFloat).clone());
        }
        bytes = sp_bridge::state_dict_bytes(c10::IValue(d));
    });
    if (st != SP_OK)
        return st;
    if (fd < 0)
        return sp_file_write_atomic(path, bytes.data(), bytes.size(), err);
    for (size_t off = 0; off < bytes.size();) {
        ssize_t w = write(fd, bytes.data() + off, bytes.size() - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return sp_error_set(err, SP_ERR_IO, "cannot write the calibration norms: %s",
                                strerror(errno));
        off += (size_t)w;
    }
    return SP_OK;
}

} // extern "C"
