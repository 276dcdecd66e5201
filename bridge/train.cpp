/*
 * The libtorch training loop behind train.h.
 *
 * Masks: every masked parameter has a `pruned` bool tensor and a `keep`
 * float tensor (1 kept, 0 pruned). When a mask changes, the pruned weights
 * are set to +0.0 (masked_fill, never -0.0) and their optimizer state (SGD
 * momentum, Adam moments) is zeroed. After every backward the gradient is
 * multiplied by `keep` (a vectorised mul, ~5x cheaper than masked_fill).
 * With a zero gradient and zero state, SGD (momentum, dampening, weight
 * decay) and AdamW move a +0.0 weight by exactly +0.0, so pruned weights stay
 * exactly +0.0 after every step without a second pass over the weights; that
 * halves the masking cost (docs/finetune.md). It is verified after every
 * epoch (a pruned weight that moved is an internal error, never silently
 * fixed) and the masks are applied once more before every save. Which entries are
 * pruned comes from the C pruning engine (sp_mask_select / sp_global_*) on a
 * CPU float copy of the weight, on the recipe's schedule
 * (sp_modifier_sparsity_at); with no recipe the zeros of the input model are
 * held (like SparseML's ConstantPruningModifier). Which modifier owns which
 * weight is recipes/' answer (sp_recipe_assign); the pruning modifiers of
 * oneshot stages prune before the first step. A recipe's training modifiers
 * set the epochs, the learning rate at every step and the weight decay,
 * unless the caller gave them (sp_train_opts.set).
 *
 * Soft movement (MovementPruningModifier, mask_mode: soft; Sanh et al.):
 * the dense weights are kept, and the mask is applied in the forward pass
 * only: before each step the pruned weights are set aside and zeroed, after
 * the backward pass they are put back, the scores take -W * dL/dW on the
 * dense weights (so a pruned weight's score still moves and it can come
 * back at the next mask update), and the pruned weights get no gradient.
 * When the schedule ends (or training does) the mask becomes hard: the
 * pruned weights are zeroed for good.
 *
 * Sparse kernels: once the masks can no longer change (no recipe, only
 * ConstantPruningModifiers, or past the last mask update of every schedule),
 * the model is rewritten (rewrite.h) so that its masked Linear layers run on
 * the sparse operator (linear.h) and the optimizer is rebuilt over their kept
 * values instead of their dense weights, its state gathered at the kept
 * positions. The pruned weights are then no parameters at all. The dense
 * weights are written back (unpacked) at every epoch end, checkpoint and
 * save; a checkpoint holds the dense form of the optimizer state, so a
 * resume packs again exactly where the run left off.
 *
 * Data parallel (world_size > 1, dist.h): after every input has been checked
 * the ranks meet (rank 0 serves the rendezvous only then, so bad input is
 * reported once, by the first process) and take rank 0's weights. Global
 * step s covers positions [s*B, s*B + B) of the epoch's permutation (B =
 * world x batch); rank r trains on the positions r, r + world, ... of it,
 * i.e. on perm[r::world] over the epoch, like a DistributedSampler with
 * shuffling (without its padding). Each rank's mean loss is scaled by
 * world * b_r / b (b_r its samples, b the step's) and the gradients are
 * averaged over the ranks, so every step follows the gradient of the mean
 * loss over the global batch: the same step a single process takes with
 * batch B, whatever the ranks' shares of a short last batch. Masks and
 * movement scores then come from identical tensors on every rank (scores
 * accumulate the averaged gradient: the all-reduce of every rank's score);
 * a CRC-32 of the masks and weights is compared across ranks at every mask
 * update and epoch end. Only rank 0 writes.
 */
#include "bridge/train.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/optim.h>
#include <torch/script.h>
#include <torch/serialize.h>
#include <torch/version.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <ostream>
#include <streambuf>
#include <string>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/common.h"
#include "bridge/data.h"
#include "bridge/dist.h"
#include "bridge/rewrite.h"
extern "C" {
#include "formats/ckpt_internal.h" /* sp_outfile, sp_outdir, sp_crc32 */
}
#include "sparsify/prune.h"
#include "sparsify/recipe.h"

namespace {

using namespace sp_bridge;

struct Masked {
    std::string name;
    torch::Tensor param;  /* the model's parameter (on the device) */
    torch::Tensor pruned; /* bool, true = pruned; undefined = no mask */
    torch::Tensor keep;   /* param's dtype, 1 = kept, 0 = pruned */
    torch::Tensor score;  /* movement scores (float, device) or undefined */
    torch::Tensor dense;  /* soft masks: the dense values while a step runs */
    int mod = -1;         /* recipe modifier index; -1 = held zeros */
    int oneshot = -1;     /* pruning modifier of a oneshot stage, or -1 */
    bool soft = false;    /* a soft mask: pruned weights keep their values */
    double target = -1;   /* last applied scheduled sparsity */
    bool active = false;  /* pruned has a true element */
};

/* A masked weight trained through the sparse operator. */
struct SparseParam {
    size_t masked;  /* index in masked_ */
    torch::Tensor values;
    c10::intrusive_ptr<PackedLinear> packed;
    torch::Tensor index; /* flat kept positions (int64) */
};

/* splitmix64: the shuffle depends on (seed, epoch) only, so a resumed run
 * sees the same batches as an uninterrupted one. */
uint64_t splitmix(uint64_t &s)
{
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

std::vector<int64_t> permutation(int64_t n, uint64_t seed, int epoch)
{
    std::vector<int64_t> p((size_t)n);
    for (int64_t i = 0; i < n; i++)
        p[(size_t)i] = i;
    uint64_t s = seed * 0x100000001b3ULL + (uint64_t)epoch * 0x9e3779b97f4a7c15ULL + 1;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(splitmix(s) % (uint64_t)(i + 1));
        std::swap(p[(size_t)i], p[(size_t)j]);
    }
    return p;
}

class Trainer {
  public:
    Trainer(const sp_train_opts *o, sp_train_cb cb, void *ctx, sp_error *err)
        : o_(o), cb_(cb), cbctx_(ctx), err_(err), device_(torch::kCPU)
    {
    }
    ~Trainer()
    {
        sp_dataset_release(&train_);
        sp_dataset_release(&val_);
        sp_recipe_free(recipe_);
    }
    void run(sp_train_result *res);

  private:
    const sp_train_opts *o_;
    sp_train_cb cb_;
    void *cbctx_;
    sp_error *err_;
    torch::Device device_;
    sp_dataset train_{}, val_{};
    bool have_train_ = false, have_val_ = false;
    torch::Tensor xtr_, ytr_, xva_, yva_;
    torch::jit::Module model_, teacher_;
    torch::jit::Module smodel_; /* model_ rewritten for the sparse operator */
    bool sparse_on_ = false, sparse_tried_ = false;
    double fixed_from_ = 0;     /* epoch from which the masks are fixed */
    std::vector<SparseParam> sparse_;
    bool have_teacher_ = false;
    double hardness_ = 0.5, temperature_ = 2.0;
    const char *teacher_path_ = nullptr; /* --teacher, else the recipe's */
    sp_recipe *recipe_ = nullptr;
    std::vector<Masked> masked_;
    std::unique_ptr<torch::optim::Optimizer> opt_;
    std::vector<double> global_target_; /* per modifier, global scope */
    int start_epoch_ = 0;
    int epochs_ = 0;            /* the caller's, or the recipe's */
    bool lr_from_recipe_ = false, wd_from_recipe_ = false;
    int64_t global_step_ = 0;
    int64_t out_dim_ = 0;
    /* data parallel (world_ > 1) */
    std::unique_ptr<Dist> dist_;
    int rank_ = 0, world_ = 1;
    std::vector<torch::Tensor> buffers_; /* floating buffers, rank 0's each step */
    bool collective_ = false; /* the failure is one every rank meets */
    int64_t ckpt_global_batch_ = 0; /* of the checkpoint resumed from */

    void emit(sp_train_event &ev)
    {
        if (cb_)
            cb_(cbctx_, &ev);
    }
    void warn(const std::string &msg)
    {
        sp_train_event ev{};
        ev.kind = SP_TRAIN_EV_WARNING;
        ev.epochs = epochs_;
        ev.message = msg.c_str();
        emit(ev);
    }

    void check_opts();
    void pick_device();
    void load_data();
    torch::Tensor labels_tensor(const sp_dataset &ds);
    void load_models();
    void reset_head();
    void check_model();
    void load_recipe();
    void setup_masks();
    void apply_oneshot();
    std::vector<size_t> owned(size_t mi, bool oneshot) const;
    void soft_on();
    void soft_off();
    void harden(bool all, double epoch);
    double weight_decay_at(double epoch) const;
    void make_optimizer();
    std::vector<torch::Tensor> dense_params() const;
    std::unique_ptr<torch::optim::Optimizer> new_optimizer(const std::vector<torch::Tensor> &p) const;
    double masks_fixed_from() const;
    void enable_sparse(double epoch_f);
    void sync_dense();
    std::unique_ptr<torch::optim::Optimizer> dense_form();
    torch::jit::Module &active() { return sparse_on_ ? smodel_ : model_; }
    void select(const std::vector<size_t> &idx, const sp_modifier &m, double s);
    bool update_masks(double epoch, bool final_pass);
    void apply_masks_to_weights();
    void zero_state(Masked &m);
    void verify_masks(int epoch);
    void mask_report(int epoch, double epoch_f);
    torch::Tensor loss_of(const torch::Tensor &out, const torch::Tensor &y,
                          const torch::Tensor &xb);
    void evaluate(const torch::Tensor &x, const torch::Tensor &y, double *loss, double *acc);
    double lr_at(int64_t step, int64_t total, int64_t spe) const;
    void save_model(const std::string &path, const std::string &name);
    void save_checkpoint(int epochs_done);
    void load_checkpoint();
    void counts(int64_t *zeros, int64_t *numel) const;
    void connect();
    uint32_t mask_crc() const;
    uint32_t weight_crc();
    std::vector<uint64_t> verify_ranks(const char *when, uint32_t masks);

  public:
    bool collective_failure() const { return collective_ && rank_ != 0; }
};

void Trainer::check_opts()
{
    const sp_train_opts *o = o_;
    if (o->kernels == SP_KERNELS_SPARSE && o->no_masks)
        fail(err_, SP_ERR_INVALID_ARG, "--kernels sparse trains masked layers: not with --no-masks");
    if (o->kernels == SP_KERNELS_SPARSE && o->device && strcmp(o->device, "cpu"))
        fail(err_, SP_ERR_INVALID_ARG,
             "--kernels sparse: the sparse kernels run on the CPU, not on --device %s", o->device);
    if (!o->model && !o->resume)
        fail(err_, SP_ERR_INVALID_ARG, "no model given");
    if (o->epochs < 0)
        fail(err_, SP_ERR_INVALID_ARG, "--epochs: %d is negative", o->epochs);
    if (o->epochs > 0 && !o->data)
        fail(err_, SP_ERR_INVALID_ARG, "training needs --data");
    if (o->epochs == 0 && !o->val && !o->data)
        fail(err_, SP_ERR_INVALID_ARG, "nothing to do: give --data to train or --val to evaluate");
    if (o->batch_size < 1)
        fail(err_, SP_ERR_INVALID_ARG, "--batch-size: %lld must be at least 1",
             (long long)o->batch_size);
    if (!(o->lr >= 0) || !std::isfinite(o->lr))
        fail(err_, SP_ERR_INVALID_ARG, "--lr: %g must be a finite number >= 0", o->lr);
    if (!(o->momentum >= 0 && o->momentum < 1))
        fail(err_, SP_ERR_INVALID_ARG, "--momentum: %g is out of range [0, 1)", o->momentum);
    if (!(o->weight_decay >= 0) || !std::isfinite(o->weight_decay))
        fail(err_, SP_ERR_INVALID_ARG, "--weight-decay: %g must be >= 0", o->weight_decay);
    if (!(o->warmup_epochs >= 0) || o->warmup_steps < 0)
        fail(err_, SP_ERR_INVALID_ARG, "warm-up length must be >= 0");
    if (o->distill_hardness > 1)
        fail(err_, SP_ERR_INVALID_ARG, "--distill-hardness: %g is out of range [0, 1]",
             o->distill_hardness);
    if (o->distill_temperature == 0)
        fail(err_, SP_ERR_INVALID_ARG, "--distill-temperature: must be > 0");
    if (o->reset_head && o->num_classes < 1)
        fail(err_, SP_ERR_INVALID_ARG, "--reset-head needs --num-classes K (K >= 1)");
    if (o->save_every < 0)
        fail(err_, SP_ERR_INVALID_ARG, "--save-every: %d is negative", o->save_every);
    if (o->save_every > 0 && !o->out)
        fail(err_, SP_ERR_INVALID_ARG, "--save-every needs -o (checkpoints go to OUT.ckpt/)");
    if (o->recipe && o->no_masks)
        fail(err_, SP_ERR_INVALID_ARG, "--recipe and --no-masks exclude each other");
    if (o->world_size < 1)
        fail(err_, SP_ERR_INVALID_ARG, "--world-size: %d must be at least 1", o->world_size);
    if (o->rank < 0 || o->rank >= o->world_size)
        fail(err_, SP_ERR_INVALID_ARG, "--rank: %d is not in [0, %d) (--world-size %d)", o->rank,
             o->world_size, o->world_size);
    if (!(o->dist_timeout > 0) || !std::isfinite(o->dist_timeout))
        fail(err_, SP_ERR_INVALID_ARG, "--dist-timeout: %g must be a positive number of seconds",
             o->dist_timeout);
    bool cuda = o->device && strcmp(o->device, "cpu");
    if (o->backend && strcmp(o->backend, "gloo") && strcmp(o->backend, "nccl"))
        fail(err_, SP_ERR_INVALID_ARG, "--backend '%s': expected gloo or nccl", o->backend);
    if (o->backend && !strcmp(o->backend, "nccl")) {
        if (!dist_have_nccl())
            fail(err_, SP_ERR_UNSUPPORTED,
                 "--backend nccl: the libtorch in use (%s) has no NCCL (only CUDA builds of "
                 "libtorch have it); use --backend gloo, or rebuild with -Dtorch_prefix=<a CUDA "
                 "libtorch>",
                 TORCH_VERSION);
        if (!cuda)
            fail(err_, SP_ERR_INVALID_ARG, "--backend nccl reduces CUDA tensors: it needs --device cuda");
    }
    if (o->world_size > 1) {
        if (!o->master_addr || !*o->master_addr || o->master_port < 1 || o->master_port > 65535)
            fail(err_, SP_ERR_INVALID_ARG,
                 "a run on %d processes needs the rendezvous address: --master ADDR:PORT or "
                 "MASTER_ADDR and MASTER_PORT",
                 o->world_size);
    }
    rank_ = o->world_size > 1 ? o->rank : 0;
    world_ = o->world_size;
}

void Trainer::pick_device()
{
    std::string d = o_->device ? o_->device : "cpu";
    if (d == "cpu") {
        device_ = torch::Device(torch::kCPU);
    } else if (d == "cuda" || d.rfind("cuda:", 0) == 0) {
        if (!torch::cuda::is_available())
            fail(err_, SP_ERR_UNSUPPORTED,
                 "--device %s: the libtorch in use (%s) has no CUDA or sees no GPU; "
                 "rebuild with -Dtorch_prefix=<a CUDA libtorch> or use --device cpu",
                 d.c_str(), TORCH_VERSION);
        try {
            device_ = torch::Device(d);
        } catch (const std::exception &e) {
            fail(err_, SP_ERR_INVALID_ARG, "--device '%s': %s", d.c_str(), torch_msg(e).c_str());
        }
        /* one GPU per local rank, as torchrun's workers use them */
        if (!device_.has_index() && o_->world_size > 1)
            device_ = torch::Device(torch::kCUDA, (c10::DeviceIndex)o_->local_rank);
        if (device_.has_index() && device_.index() >= (int)torch::cuda::device_count())
            fail(err_, SP_ERR_INVALID_ARG, "--device '%s': only %zu CUDA device(s)", d.c_str(),
                 (size_t)torch::cuda::device_count());
    } else {
        fail(err_, SP_ERR_INVALID_ARG, "--device '%s': expected cpu, cuda or cuda:N", d.c_str());
    }
}

torch::Tensor Trainer::labels_tensor(const sp_dataset &ds)
{
    std::vector<int64_t> shape{ds.n};
    for (int d = 0; d < ds.label_ndim; d++)
        shape.push_back(ds.label_shape[d]);
    torch::Tensor y = torch::from_blob(ds.y, shape, torch::kFloat).clone();
    if (o_->task == SP_TASK_CLASSIFICATION)
        y = y.to(torch::kLong);
    return y.to(device_);
}

void Trainer::load_data()
{
    auto load = [&](sp_dataset *ds, const char *path) {
        sp_status st = sp_dataset_load(ds, path, o_->label_column, SP_LABEL_LAST, err_);
        if (st != SP_OK)
            throw Failed{st};
        if (o_->task == SP_TASK_CLASSIFICATION) {
            if (ds->label_width != 1)
                fail(err_, SP_ERR_INVALID_ARG,
                     "'%s': classification needs one label per sample, got %lld", path,
                     (long long)ds->label_width);
            if (!ds->labels_integral)
                fail(err_, SP_ERR_INVALID_ARG,
                     "'%s': classification labels must be whole numbers >= 0 "
                     "(use --task regression for real-valued targets)",
                     path);
        }
    };
    if (o_->data) {
        load(&train_, o_->data);
        have_train_ = true;
    }
    if (o_->val) {
        load(&val_, o_->val);
        have_val_ = true;
        if (have_train_ &&
            (val_.width != train_.width || val_.label_width != train_.label_width))
            fail(err_, SP_ERR_INVALID_ARG,
                 "'%s': samples have %lld inputs and %lld labels, but '%s' has %lld and %lld",
                 o_->val, (long long)val_.width, (long long)val_.label_width, o_->data,
                 (long long)train_.width, (long long)train_.label_width);
    }
    auto inputs = [&](const sp_dataset &ds) { return dataset_inputs(ds).to(device_); };
    if (have_train_) {
        xtr_ = inputs(train_);
        ytr_ = labels_tensor(train_);
    }
    if (have_val_) {
        xva_ = inputs(val_);
        yva_ = labels_tensor(val_);
    }
}

void Trainer::load_models()
{
    std::string path = o_->resume ? std::string(o_->resume) + "/model.pt" : o_->model;
    model_ = load_module(path, err_);
    if (teacher_path_) {
        teacher_ = load_module(teacher_path_, err_);
        teacher_.eval();
        teacher_.to(device_);
        have_teacher_ = true;
    }
}

void Trainer::reset_head()
{
    std::string name = o_->reset_head;
    torch::jit::Module sub = model_;
    size_t p = 0;
    while (p <= name.size()) {
        size_t dot = name.find('.', p);
        if (dot == std::string::npos)
            dot = name.size();
        std::string part = name.substr(p, dot - p);
        if (!sub.hasattr(part) || !sub.attr(part).isModule())
            fail(err_, SP_ERR_NOT_FOUND, "--reset-head '%s': the model has no submodule '%s'",
                 name.c_str(), part.c_str());
        sub = sub.attr(part).toModule();
        p = dot + 1;
    }
    if (!sub.hasattr("weight") || !sub.attr("weight").isTensor() ||
        sub.attr("weight").toTensor().dim() != 2)
        fail(err_, SP_ERR_INVALID_ARG,
             "--reset-head '%s': not a Linear layer (no 2-D 'weight' parameter)", name.c_str());
    torch::Tensor w = sub.attr("weight").toTensor();
    int64_t in = w.size(1), k = o_->num_classes;
    double bound = 1.0 / std::sqrt((double)in); /* nn.Linear's default init */
    torch::NoGradGuard ng;
    torch::Tensor nw = torch::empty({k, in}, w.options()).uniform_(-bound, bound);
    sub.register_parameter("weight", nw, false);
    if (sub.hasattr("bias") && sub.attr("bias").isTensor()) {
        torch::Tensor b = sub.attr("bias").toTensor();
        sub.register_parameter("bias", torch::empty({k}, b.options()).uniform_(-bound, bound),
                               false);
    }
}

/* Run the model on two samples: the input width, the output shape and the
 * labels must fit, else a clear error before any training. */
void Trainer::check_model()
{
    const sp_dataset &ds = have_train_ ? train_ : val_;
    const torch::Tensor &x = have_train_ ? xtr_ : xva_;
    const char *path = have_train_ ? o_->data : o_->val;
    torch::Tensor xb = x.narrow(0, 0, std::min<int64_t>(2, ds.n));
    model_.eval();
    torch::Tensor out =
        probe_model(model_, x, o_->model ? o_->model : o_->resume, path, ds.width, err_);
    if (o_->task == SP_TASK_CLASSIFICATION) {
        if (out.dim() != 2)
            fail(err_, SP_ERR_INVALID_ARG,
                 "classification needs model outputs of shape [batch, classes], got %s",
                 shape_str(out.sizes()).c_str());
        out_dim_ = out.size(1);
        auto check_labels = [&](const sp_dataset &d, const char *p) {
            if (d.label_max >= out_dim_)
                fail(err_, SP_ERR_INVALID_ARG,
                     "'%s': label %lld does not fit the model's %lld outputs "
                     "(for a new task use --reset-head NAME --num-classes K)",
                     p, (long long)d.label_max, (long long)out_dim_);
        };
        if (have_train_)
            check_labels(train_, o_->data);
        if (have_val_)
            check_labels(val_, o_->val);
    } else {
        if (out.numel() != xb.size(0) * ds.label_width)
            fail(err_, SP_ERR_INVALID_ARG,
                 "regression: the model gives %lld outputs per sample but '%s' has %lld targets",
                 (long long)(out.numel() / std::max<int64_t>(1, xb.size(0))), path,
                 (long long)ds.label_width);
    }
    if (have_teacher_) {
        torch::Tensor t;
        try {
            torch::NoGradGuard ng;
            t = teacher_.forward({xb}).toTensor();
        } catch (const std::exception &e) {
            fail(err_, SP_ERR_INVALID_ARG, "teacher '%s' does not accept inputs of shape %s: %s",
                 teacher_path_, shape_str(xb.sizes()).c_str(), torch_msg(e).c_str());
        }
        if (t.sizes() != out.sizes())
            fail(err_, SP_ERR_INVALID_ARG,
                 "teacher '%s' gives outputs of shape %s, the student %s", teacher_path_,
                 shape_str(t.sizes()).c_str(), shape_str(out.sizes()).c_str());
    }
}

/* CPU float copy of a tensor (contiguous). */
torch::Tensor host(const torch::Tensor &t)
{
    return t.detach().to(torch::kCPU, torch::kFloat).contiguous();
}

/* Install a mask (bool, true = pruned; undefined: none). */
void set_mask(Masked &m, const torch::Tensor &pruned)
{
    m.pruned = pruned;
    m.active = pruned.defined() && pruned.any().item<bool>();
    m.keep = m.active ? pruned.logical_not().to(m.param.scalar_type()) : torch::Tensor();
}

void set_pruned(Masked &m, const std::vector<uint8_t> &keep, torch::Device dev)
{
    torch::Tensor k = torch::from_blob(const_cast<uint8_t *>(keep.data()), m.param.sizes(),
                                       torch::kUInt8);
    set_mask(m, k.eq(0).to(dev));
    torch::NoGradGuard ng;
    if (m.active && !m.soft) /* a soft mask keeps the pruned values */
        m.param.masked_fill_(m.pruned, 0.0);
}

/* Load the recipe and take what its training modifiers say, where the
 * caller left the choice open. */
void Trainer::load_recipe()
{
    epochs_ = o_->epochs;
    if (!o_->recipe)
        return;
    sp_recipe_opts ro = {};
    ro.substitute = o_->substitute;
    sp_status st = sp_recipe_load_ex(&recipe_, o_->recipe, &ro, nullptr, err_);
    if (st != SP_OK)
        throw Failed{st};
    for (size_t i = 0; i < recipe_->nmods; i++)
        if (recipe_->mods[i].score == SP_SCORE_WANDA)
            fail(err_, SP_ERR_INVALID_ARG,
                 "recipe '%s': %s scores by wanda, which needs calibration data: "
                 "prune with 'sparsify prune MODEL --recipe %s --calibration FILE', then "
                 "fine-tune the pruned model",
                 o_->recipe, recipe_->mods[i].where, o_->recipe);
    double e;
    if (!(o_->set & SP_TRAIN_SET_EPOCHS) && o_->epochs > 0 && sp_recipe_epochs(recipe_, &e))
        epochs_ = (int)std::ceil(e - 1e-9);
    lr_from_recipe_ = !(o_->set & SP_TRAIN_SET_LR) && sp_recipe_has_lr(recipe_);
    wd_from_recipe_ = !(o_->set & SP_TRAIN_SET_WEIGHT_DECAY) && sp_recipe_has_weight_decay(recipe_);
}

/* The weight decay of every parameter group (SetWeightDecayModifier). */
void set_weight_decay(torch::optim::Optimizer &opt, double wd)
{
    for (auto &g : opt.param_groups()) {
        if (auto *a = dynamic_cast<torch::optim::AdamWOptions *>(&g.options()))
            a->weight_decay(wd);
        else if (auto *sg = dynamic_cast<torch::optim::SGDOptions *>(&g.options()))
            sg->weight_decay(wd);
    }
}

void Trainer::setup_masks()
{
    if (o_->no_masks)
        return;
    std::vector<std::string> names;
    std::vector<torch::Tensor> params;
    for (const auto &p : model_.named_parameters(true))
        if (p.value.is_floating_point()) {
            names.push_back(p.name);
            params.push_back(p.value);
        }
    size_t n = names.size();
    std::vector<long> owner(n, -1), oneshot(n, -1);
    if (recipe_) {
        /* recipes/ says who owns what: the first modifier of the last
         * stage that targets a weight; module names resolved against all */
        std::vector<sp_recipe_tensor> ts(n);
        for (size_t i = 0; i < n; i++)
            ts[i] = sp_recipe_tensor{names[i].c_str(), SP_F32, (int)params[i].dim()};
        sp_recipe_problems probs{};
        sp_status st = sp_recipe_assign(recipe_, ts.data(), n,
                                        SP_MOD_PRUNING_TYPES | (1u << SP_MOD_CONSTANT),
                                        SP_RUN_TRAIN, owner.data(), nullptr, &probs, err_);
        if (st == SP_OK)
            st = sp_recipe_assign(recipe_, ts.data(), n, SP_MOD_PRUNING_TYPES, SP_RUN_ONESHOT,
                                  oneshot.data(), nullptr, &probs, err_);
        for (size_t i = 0; i < probs.n; i++) {
            char buf[SP_ERR_MSG_MAX + 256];
            warn(std::string("recipe: ") + sp_recipe_problem_str(&probs.v[i], buf, sizeof buf));
        }
        sp_recipe_problems_release(&probs);
        if (st != SP_OK)
            throw Failed{st};
    }
    for (size_t i = 0; i < n; i++) {
        Masked m;
        m.name = names[i];
        m.param = params[i];
        if (!recipe_ && !sp_select_default(m.name.c_str(), SP_F32, (int)params[i].dim()))
            continue;
        if (recipe_ && owner[i] < 0 && oneshot[i] < 0)
            continue;
        m.mod = (int)owner[i];
        m.oneshot = (int)oneshot[i];
        masked_.push_back(m);
    }
    for (auto &m : masked_) {
        if (m.mod >= 0 && recipe_->mods[m.mod].type == SP_MOD_MOVEMENT) {
            m.score = torch::zeros_like(m.param.detach());
            m.soft = recipe_->mods[m.mod].soft_mask;
        }
    }
    if (recipe_)
        global_target_.assign(recipe_->nmods, -1.0);
}

/* One threshold across a modifier's tensors (never for N:M). */
bool is_global(const sp_modifier &mod, size_t ntensors)
{
    return mod.global_sparsity && mod.mask_type.kind != SP_PATTERN_NM && ntensors > 1;
}

/* The masked weights a modifier owns: as a training modifier, or as the
 * pruning modifier of a oneshot stage. */
std::vector<size_t> Trainer::owned(size_t mi, bool oneshot) const
{
    std::vector<size_t> idx;
    for (size_t k = 0; k < masked_.size(); k++)
        if ((oneshot ? masked_[k].oneshot : masked_[k].mod) == (int)mi)
            idx.push_back(k);
    return idx;
}

/* Held masks (no recipe, ConstantPruningModifier, a oneshot stage with no
 * training modifier after it): the current zeros. */
bool held(const Masked &m, const sp_recipe *r)
{
    return m.mod < 0 || r->mods[m.mod].type == SP_MOD_CONSTANT;
}

/* The pruning modifiers of oneshot stages, at their final sparsity, before
 * the first step (a later stage overrides an earlier one: recipes/ gave each
 * weight the last one); then every held mask takes the zeros there are. */
void Trainer::apply_oneshot()
{
    for (size_t mi = 0; recipe_ && mi < recipe_->nmods; mi++) {
        std::vector<size_t> idx = owned(mi, true);
        if (idx.empty())
            continue;
        const sp_modifier &mod = recipe_->mods[mi];
        if (is_global(mod, idx.size())) {
            select(idx, mod, sp_modifier_final_for(&mod, masked_[idx[0]].name.c_str()));
            continue;
        }
        for (size_t k : idx)
            select({k}, mod, sp_modifier_final_for(&mod, masked_[k].name.c_str()));
    }
    for (auto &m : masked_)
        if (held(m, recipe_))
            set_mask(m, m.param.detach().eq(0));
}

/* Soft masks around a forward pass: set the dense values aside and zero
 * the pruned ones; soft_off puts them back. */
void Trainer::soft_on()
{
    torch::NoGradGuard ng;
    for (auto &m : masked_)
        if (m.soft && m.active) {
            if (!m.dense.defined())
                m.dense = torch::empty_like(m.param);
            m.dense.copy_(m.param);
            m.param.mul_(m.keep);
        }
}

void Trainer::soft_off()
{
    torch::NoGradGuard ng;
    for (auto &m : masked_)
        if (m.soft && m.active)
            m.param.copy_(m.dense);
}

/* Soft masks become hard - the pruned weights zeroed for good - when their
 * modifier's schedule has ended (all: at the end of training). */
void Trainer::harden(bool all, double epoch)
{
    torch::NoGradGuard ng;
    for (auto &m : masked_) {
        if (!m.soft || (!all && epoch < recipe_->mods[m.mod].end_epoch))
            continue;
        m.soft = false;
        m.dense = torch::Tensor();
        if (m.active) {
            m.param.masked_fill_(m.pruned, 0.0);
            zero_state(m);
        }
    }
}

double Trainer::weight_decay_at(double epoch) const
{
    double wd = o_->weight_decay;
    if (wd_from_recipe_)
        sp_recipe_weight_decay_at(recipe_, epoch, &wd);
    return wd;
}

void Trainer::select(const std::vector<size_t> &idx, const sp_modifier &mod, double s)
{
    bool movement = mod.type == SP_MOD_MOVEMENT;
    std::vector<torch::Tensor> w(idx.size()), sc(idx.size());
    std::vector<std::vector<int64_t>> shapes(idx.size());
    for (size_t k = 0; k < idx.size(); k++) {
        Masked &m = masked_[idx[k]];
        w[k] = host(m.param);
        shapes[k] = m.param.sizes().vec();
        /* Scores start at zero: before any step, fall back to magnitude. */
        if (movement && m.score.defined() && m.score.abs().sum().item<double>() > 0)
            sc[k] = host(m.score);
    }
    auto name_fail = [&](size_t k) {
        collective_ = true; /* every rank selects the same masks */
        sp_error_prefix(err_, "tensor '%s'", masked_[idx[k]].name.c_str());
        throw Failed{err_ ? err_->code : SP_ERR_INVALID_ARG};
    };
    if (!is_global(mod, idx.size())) {
        for (size_t k = 0; k < idx.size(); k++) {
            std::vector<uint8_t> keep((size_t)w[k].numel());
            if (sp_mask_select(keep.data(), SP_F32, w[k].data_ptr<float>(),
                               sc[k].defined() ? sc[k].data_ptr<float>() : nullptr,
                               (int)shapes[k].size(), shapes[k].data(), &mod.mask_type, s,
                               mod.block_score, err_) != SP_OK)
                name_fail(k);
            set_pruned(masked_[idx[k]], keep, device_);
            zero_state(masked_[idx[k]]);
        }
        return;
    }
    sp_global *g = nullptr;
    if (sp_global_new(&g, &mod.mask_type, s, mod.block_score, idx.size(), err_) != SP_OK) {
        collective_ = true;
        throw Failed{err_ ? err_->code : SP_ERR_INVALID_ARG};
    }
    std::unique_ptr<sp_global, void (*)(sp_global *)> guard(g, sp_global_free);
    /* Global scores must be comparable across tensors: use scores for all
     * tensors or for none. */
    bool use_scores = movement;
    for (size_t k = 0; k < idx.size(); k++)
        use_scores = use_scores && sc[k].defined();
    for (int pass = 1; pass <= 2; pass++)
        for (size_t k = 0; k < idx.size(); k++)
            if (sp_global_add(g, pass, k, SP_F32, w[k].data_ptr<float>(),
                              use_scores ? sc[k].data_ptr<float>() : nullptr,
                              (int)shapes[k].size(), shapes[k].data(), err_) != SP_OK)
                name_fail(k);
    for (size_t k = 0; k < idx.size(); k++) {
        std::vector<uint8_t> keep((size_t)w[k].numel());
        if (sp_global_mask(g, k, keep.data(), SP_F32, w[k].data_ptr<float>(),
                           use_scores ? sc[k].data_ptr<float>() : nullptr, (int)shapes[k].size(),
                           shapes[k].data(), err_) != SP_OK)
            name_fail(k);
        set_pruned(masked_[idx[k]], keep, device_);
        zero_state(masked_[idx[k]]);
    }
}

/* The invariant of the loop: every pruned weight is exactly +0.0. */
void Trainer::verify_masks(int epoch)
{
    torch::NoGradGuard ng;
    for (const auto &m : masked_) {
        if (!m.active || m.soft)
            continue;
        torch::Tensor moved = m.param.masked_select(m.pruned);
        int64_t bad = moved.ne(0).sum().item<int64_t>() + moved.signbit().sum().item<int64_t>();
        if (bad) {
            collective_ = true;
            fail(err_, SP_ERR_INTERNAL,
                 "epoch %d: %lld pruned weights of '%s' are no longer +0.0 (optimizer bug)", epoch,
                 (long long)bad, m.name.c_str());
        }
    }
}

/* Zero the optimizer state of the pruned entries, so the next steps leave
 * them at exactly zero. */
void Trainer::zero_state(Masked &m)
{
    if (!opt_ || !m.active)
        return;
    auto &state = opt_->state();
    auto it = state.find(c10::guts::to_string(m.param.unsafeGetTensorImpl()));
    if (it == state.end())
        return;
    torch::NoGradGuard ng;
    auto zero = [&](torch::Tensor t) {
        if (t.defined() && t.sizes() == m.param.sizes())
            t.masked_fill_(m.pruned, 0.0);
    };
    if (auto *a = dynamic_cast<torch::optim::AdamWParamState *>(it->second.get())) {
        zero(a->exp_avg());
        zero(a->exp_avg_sq());
        zero(a->max_exp_avg_sq());
    } else if (auto *g = dynamic_cast<torch::optim::SGDParamState *>(it->second.get())) {
        zero(g->momentum_buffer());
    }
}

/* Apply the recipe's schedule at `epoch` (fractional). final_pass: every
 * pruning modifier jumps to its final sparsity (end of training). Returns
 * whether any mask changed. */
bool Trainer::update_masks(double epoch, bool final_pass)
{
    if (!recipe_)
        return false;
    bool changed = false;
    for (size_t mi = 0; mi < recipe_->nmods; mi++) {
        const sp_modifier &mod = recipe_->mods[mi];
        if (!sp_modifier_prunes(&mod))
            continue;
        std::vector<size_t> idx = owned(mi, false);
        if (idx.empty())
            continue;
        if (!mod.leave_enabled && !final_pass && epoch >= mod.end_epoch &&
            mod.end_epoch > mod.start_epoch) {
            for (size_t k : idx) {
                if (masked_[k].pruned.defined())
                    changed = true;
                set_mask(masked_[k], torch::Tensor());
                masked_[k].target = -2;
            }
            continue;
        }
        if (is_global(mod, idx.size())) {
            const char *n0 = masked_[idx[0]].name.c_str();
            double s = final_pass ? sp_modifier_final_for(&mod, n0)
                                  : sp_modifier_sparsity_at(&mod, n0, epoch);
            if (s > 0 && s != global_target_[mi]) {
                select(idx, mod, s);
                global_target_[mi] = s;
                for (size_t k : idx)
                    masked_[k].target = s;
                changed = true;
            }
            continue;
        }
        for (size_t k : idx) {
            Masked &m = masked_[k];
            double s = final_pass ? sp_modifier_final_for(&mod, m.name.c_str())
                                  : sp_modifier_sparsity_at(&mod, m.name.c_str(), epoch);
            if (s > 0 && s != m.target) {
                select({k}, mod, s);
                m.target = s;
                changed = true;
            }
        }
    }
    return changed;
}

/* Zeros as the forward pass sees them (a soft mask's pruned weights too). */
int64_t zeros_of(const Masked &m)
{
    torch::Tensor z = m.param.detach().eq(0);
    if (m.soft && m.active)
        z = z.logical_or(m.pruned);
    return z.sum().item<int64_t>();
}

void Trainer::counts(int64_t *zeros, int64_t *numel) const
{
    int64_t z = 0, n = 0;
    for (const auto &m : masked_) {
        z += zeros_of(m);
        n += m.param.numel();
    }
    *zeros = z;
    *numel = n;
}

/* Meet the other ranks (only now: every input has been checked, so bad
 * input stops each process before anyone waits) and take rank 0's weights
 * and buffers. */
void Trainer::connect()
{
    if (world_ <= 1)
        return;
    DistOptions d;
    d.rank = rank_;
    d.world = world_;
    d.addr = o_->master_addr;
    d.port = o_->master_port;
    d.backend = o_->backend ? o_->backend : device_.is_cuda() && dist_have_nccl() ? "nccl" : "gloo";
    d.timeout_s = o_->dist_timeout;
    dist_ = std::make_unique<Dist>(d, device_, err_);
    /* Every rank must run the same training on the same data: compare what
     * shapes the steps (a different copy of the data on another machine,
     * another --batch-size) before anything diverges or waits forever. */
    const sp_train_opts *o = o_;
    char what[1024];
    int len = snprintf(what, sizeof what, "%d|%lld|%.17g|%d|%.17g|%.17g|%d|%.17g|%lld|%llu|%d|%d|%d|%lld",
                       o->epochs, (long long)o->batch_size, o->lr, (int)o->optimizer, o->momentum,
                       o->weight_decay, (int)o->lr_schedule, o->warmup_epochs,
                       (long long)o->warmup_steps, (unsigned long long)o->seed, (int)o->no_masks,
                       (int)o->kernels, (int)o->task, (long long)(have_train_ ? xtr_.size(0) : 0));
    uint32_t opt_crc = sp_crc32(0, what, (uint64_t)std::max(0, std::min(len, (int)sizeof what - 1)));
    uint32_t data_crc = 0;
    for (const torch::Tensor *t : {&xtr_, &ytr_})
        if (t->defined()) {
            torch::Tensor c = t->to(torch::kCPU).contiguous();
            data_crc = sp_crc32(data_crc, c.data_ptr(), (uint64_t)c.nbytes());
        }
    std::vector<uint64_t> all_in = dist_->allgather((uint64_t)opt_crc << 32 | data_crc);
    for (size_t r = 1; r < all_in.size(); r++)
        if (all_in[r] != all_in[0]) {
            collective_ = true;
            bool opts = all_in[r] >> 32 != all_in[0] >> 32;
            fail(err_, SP_ERR_INVALID_ARG,
                 "rank %zu was given %s than rank 0 (start every rank with the same options and "
                 "data)",
                 r, opts ? "other training options" : "other training data");
        }
    std::vector<torch::Tensor> all;
    for (const auto &p : model_.parameters(true))
        all.push_back(p);
    for (const auto &b : model_.buffers(true)) {
        all.push_back(b);
        if (b.is_floating_point())
            buffers_.push_back(b); /* BatchNorm statistics: rank 0's, every step (as DDP) */
    }
    dist_->broadcast(all);
}

/* CRC-32 of the masks (names, and which entries are pruned). */
uint32_t Trainer::mask_crc() const
{
    uint32_t c = 0;
    for (const Masked &m : masked_) {
        c = sp_crc32(c, m.name.data(), m.name.size() + 1);
        if (m.pruned.defined()) {
            torch::Tensor t = m.pruned.to(torch::kCPU).contiguous();
            c = sp_crc32(c, t.data_ptr(), (uint64_t)t.nbytes());
        }
    }
    return c;
}

/* CRC-32 of every parameter's bytes (the dense weights). */
uint32_t Trainer::weight_crc()
{
    uint32_t c = 0;
    for (const auto &p : model_.parameters(true)) {
        torch::Tensor t = p.detach().to(torch::kCPU).contiguous();
        c = sp_crc32(c, t.data_ptr(), (uint64_t)t.nbytes());
    }
    return c;
}

/* Data parallel: every rank's (mask CRC << 32 | weight CRC), in rank order,
 * after checking they are all the same; nothing for a single process. */
std::vector<uint64_t> Trainer::verify_ranks(const char *when, uint32_t masks)
{
    if (!dist_)
        return {};
    uint64_t mine = (uint64_t)masks << 32 | weight_crc();
    std::vector<uint64_t> all = dist_->allgather(mine);
    for (size_t r = 1; r < all.size(); r++)
        if (all[r] != all[0]) {
            collective_ = true;
            bool m = all[r] >> 32 != all[0] >> 32;
            fail(err_, SP_ERR_INTERNAL,
                 "ranks disagree at %s: the %s of rank %zu differ from rank 0's (CRC-32 %08x, "
                 "%08x)",
                 when, m ? "masks" : "weights", r, (unsigned)(m ? all[r] >> 32 : all[r]),
                 (unsigned)(m ? all[0] >> 32 : all[0]));
        }
    return all;
}

void Trainer::mask_report(int epoch, double epoch_f)
{
    std::vector<sp_train_tensor_info> info;
    for (const auto &m : masked_) {
        sp_train_tensor_info t{};
        t.name = m.name.c_str();
        t.numel = m.param.numel();
        t.zeros = zeros_of(m);
        t.target = m.target >= 0 ? m.target : -1;
        info.push_back(t);
    }
    /* the masks of every rank must be the same: compared at every update */
    uint32_t crc = mask_crc();
    char when[64];
    snprintf(when, sizeof when, "the mask update at epoch %.4g", epoch_f);
    std::vector<uint64_t> all = verify_ranks(when, crc);
    std::vector<uint64_t> cs;
    for (uint64_t a : all)
        cs.push_back(a >> 32);
    sp_train_event ev{};
    ev.kind = SP_TRAIN_EV_MASK;
    ev.epoch = epoch;
    ev.epochs = epochs_;
    ev.epoch_f = epoch_f;
    ev.global_step = global_step_;
    ev.world_size = world_;
    ev.mask_checksum = crc;
    ev.checksums = dist_ ? cs.data() : nullptr;
    counts(&ev.masked_zeros, &ev.masked_numel);
    ev.sparsity = ev.masked_numel ? (double)ev.masked_zeros / ev.masked_numel : 0;
    ev.tensors = info.data();
    ev.ntensors = info.size();
    emit(ev);
}

std::vector<torch::Tensor> Trainer::dense_params() const
{
    std::vector<torch::Tensor> params;
    for (const auto &p : model_.parameters(true))
        if (p.requires_grad())
            params.push_back(p);
    return params;
}

std::unique_ptr<torch::optim::Optimizer>
Trainer::new_optimizer(const std::vector<torch::Tensor> &params) const
{
    double wd = weight_decay_at(0);
    if (o_->optimizer == SP_OPTIM_SGD)
        return std::make_unique<torch::optim::SGD>(
            params, torch::optim::SGDOptions(o_->lr).momentum(o_->momentum).weight_decay(wd));
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(o_->lr).weight_decay(wd));
}

void Trainer::make_optimizer() { opt_ = new_optimizer(dense_params()); }

std::string state_key(const torch::Tensor &t)
{
    return c10::guts::to_string(t.unsafeGetTensorImpl());
}

/* An optimizer state moved between a dense weight and its kept values:
 * gathered at the kept positions (to_values) or scattered back (pruned
 * entries 0, which is what the dense loop keeps there). */
std::unique_ptr<torch::optim::OptimizerParamState>
convert_state(const torch::optim::OptimizerParamState &st, const torch::Tensor &index,
              const torch::Tensor &dense_like, bool to_values)
{
    torch::NoGradGuard ng;
    auto conv = [&](const torch::Tensor &t) -> torch::Tensor {
        if (!t.defined())
            return t;
        if (to_values)
            return t.reshape(-1).index_select(0, index);
        return torch::zeros_like(dense_like).view(-1).index_copy_(0, index, t).view(dense_like.sizes());
    };
    if (auto *a = dynamic_cast<const torch::optim::AdamWParamState *>(&st)) {
        auto r = std::make_unique<torch::optim::AdamWParamState>();
        r->step(a->step());
        r->exp_avg(conv(a->exp_avg()));
        r->exp_avg_sq(conv(a->exp_avg_sq()));
        r->max_exp_avg_sq(conv(a->max_exp_avg_sq()));
        return r;
    }
    if (auto *g = dynamic_cast<const torch::optim::SGDParamState *>(&st)) {
        auto r = std::make_unique<torch::optim::SGDParamState>();
        r->momentum_buffer(conv(g->momentum_buffer()));
        return r;
    }
    return st.clone();
}

/* The first epoch (fractional) from which no modifier changes a mask. */
double Trainer::masks_fixed_from() const
{
    double e = 0;
    for (size_t i = 0; recipe_ && i < recipe_->nmods; i++) {
        const sp_modifier &m = recipe_->mods[i];
        if (sp_modifier_prunes(&m))
            e = std::max(e, std::max(m.start_epoch, m.end_epoch));
    }
    return e;
}

/* Move the masked Linear layers onto the sparse operator (their masks are
 * fixed from here on) and rebuild the optimizer over their kept values. */
void Trainer::enable_sparse(double epoch_f)
{
    sparse_tried_ = true;
    RewriteOptions ro;
    ro.batch = o_->batch_size;
    ro.fallback = o_->kernels == SP_KERNELS_SPARSE ? SP_FALLBACK_NEVER : SP_FALLBACK_AUTO;
    ro.training = true;
    ro.model = o_->model ? o_->model : o_->resume;
    ro.keep = [&](const std::string &path, const torch::Tensor &) -> torch::Tensor {
        for (const Masked &m : masked_)
            if (m.name == path && m.pruned.defined())
                return m.pruned.logical_not();
        return torch::Tensor();
    };
    Rewritten rw;
    sp_error why{};
    try {
        rw = rewrite_linears(model_, ro, &why);
    } catch (const Failed &) {
        if (o_->kernels == SP_KERNELS_SPARSE) {
            collective_ = true;
            fail(err_, why.code, "--kernels sparse: %s", why.msg);
        }
        return; /* no Linear layer: nothing to run sparse */
    }
    if (dist_) {
        /* Every rank must train the same parameters: rank 0's choice of
         * layers wins (the dispatcher of another CPU may choose otherwise). */
        std::string mine;
        for (const LayerInfo &l : rw.layers)
            if (l.sparse)
                mine += l.name + "\n";
        std::string r0 = dist_->broadcast_string(mine);
        if (r0 != mine) {
            if (r0.empty()) {
                for (LayerInfo &l : rw.layers)
                    if (l.sparse) {
                        l.sparse = false;
                        l.reason = "dense on rank 0";
                    }
                rw.nsparse = 0;
            } else {
                RewriteOptions only = ro;
                for (size_t p = 0, nl; (nl = r0.find('\n', p)) != std::string::npos; p = nl + 1)
                    only.only.push_back(r0.substr(p, nl - p));
                rw = rewrite_linears(model_, only, err_);
            }
        }
    }
    std::vector<sp_layer_report> info;
    for (const LayerInfo &l : rw.layers)
        if (l.linear)
            info.push_back(sp_layer_report{l.name.c_str(), true, l.sparse, l.reason.c_str(),
                                           l.rows, l.cols, l.sparsity, l.layout.c_str(),
                                           l.kernel.c_str()});
    sp_train_event ev{};
    ev.kind = SP_TRAIN_EV_KERNELS;
    ev.epochs = epochs_;
    ev.epoch_f = epoch_f;
    ev.global_step = global_step_;
    ev.layers = info.data();
    ev.nlayers = info.size();
    ev.sparse_layers = rw.nsparse;
    emit(ev);
    if (rw.nsparse == 0) {
        if (o_->kernels == SP_KERNELS_SPARSE)
            warn("--kernels sparse: no masked Linear layer can run on the sparse operator");
        return;
    }
    for (const LayerInfo &l : rw.layers) {
        if (!l.sparse)
            continue;
        for (size_t k = 0; k < masked_.size(); k++)
            if (masked_[k].name == l.weight)
                sparse_.push_back(SparseParam{k, l.values, l.packed, l.packed->kept_index()});
    }
    /* the optimizer: each dense weight's place taken by its kept values */
    std::vector<torch::Tensor> dense = dense_params(), params = dense;
    std::vector<const SparseParam *> of(params.size(), nullptr);
    for (size_t i = 0; i < params.size(); i++)
        for (const SparseParam &sp : sparse_)
            if (params[i].unsafeGetTensorImpl() == masked_[sp.masked].param.unsafeGetTensorImpl()) {
                params[i] = sp.values;
                of[i] = &sp;
            }
    auto opt = new_optimizer(params);
    for (size_t i = 0; i < params.size(); i++) {
        auto it = opt_->state().find(state_key(dense[i]));
        if (it != opt_->state().end())
            opt->state()[state_key(params[i])] =
                of[i] ? convert_state(*it->second, of[i]->index, dense[i], true)
                      : it->second->clone();
    }
    opt_ = std::move(opt);
    if (dist_)
        dist_->attach(params); /* the kept values are what gets all-reduced */
    smodel_ = rw.module;
    smodel_.train();
    sparse_on_ = true;
}

/* Write the trained kept values back into the dense weights (+0.0 at the
 * pruned positions). */
void Trainer::sync_dense()
{
    torch::NoGradGuard ng;
    for (const SparseParam &sp : sparse_)
        masked_[sp.masked].param.copy_(sp.packed->dense(sp.values));
}

/* The optimizer as the dense loop has it: the dense weights as parameters,
 * the values' state scattered back to them. */
std::unique_ptr<torch::optim::Optimizer> Trainer::dense_form()
{
    sync_dense();
    std::vector<torch::Tensor> dense = dense_params();
    auto opt = new_optimizer(dense);
    for (auto &g : opt->param_groups())
        g.options().set_lr(opt_->param_groups()[0].options().get_lr());
    for (const torch::Tensor &p : dense) {
        const SparseParam *sp = nullptr;
        for (const SparseParam &q : sparse_)
            if (masked_[q.masked].param.unsafeGetTensorImpl() == p.unsafeGetTensorImpl())
                sp = &q;
        auto it = opt_->state().find(state_key(sp ? sp->values : p));
        if (it != opt_->state().end())
            opt->state()[state_key(p)] =
                sp ? convert_state(*it->second, sp->index, p, false) : it->second->clone();
    }
    return opt;
}

double Trainer::lr_at(int64_t step, int64_t total, int64_t spe) const
{
    double rlr;
    if (lr_from_recipe_) /* the recipe's modifiers; before they start, --lr */
        return spe > 0 && sp_recipe_lr_at(recipe_, (double)step / (double)spe, (long)spe, &rlr)
                   ? rlr
                   : o_->lr;
    int64_t warm = std::max<int64_t>(o_->warmup_steps, (int64_t)std::llround(o_->warmup_epochs * spe));
    if (warm > 0 && step < warm)
        return o_->lr * (double)(step + 1) / (double)warm;
    double p = total > warm ? (double)(step - warm) / (double)(total - warm) : 0.0;
    p = std::min(1.0, std::max(0.0, p));
    switch (o_->lr_schedule) {
    case SP_LR_LINEAR:
        return o_->lr * (1.0 - p);
    case SP_LR_COSINE:
        return o_->lr * 0.5 * (1.0 + std::cos(M_PI * p));
    case SP_LR_CONSTANT:
        break;
    }
    return o_->lr;
}

torch::Tensor Trainer::loss_of(const torch::Tensor &out, const torch::Tensor &y,
                               const torch::Tensor &xb)
{
    torch::Tensor task;
    if (o_->task == SP_TASK_CLASSIFICATION)
        task = torch::nll_loss(torch::log_softmax(out, 1), y);
    else
        task = torch::mse_loss(out, y.reshape(out.sizes()));
    if (!have_teacher_ || hardness_ <= 0)
        return task;
    torch::Tensor t;
    {
        torch::NoGradGuard ng;
        t = teacher_.forward({xb}).toTensor();
    }
    double T = temperature_;
    /* KL(softmax(teacher/T) || softmax(student/T)), batch mean, times T^2
     * so gradients keep their scale (Hinton et al.; SparseML). */
    torch::Tensor kl = torch::kl_div(torch::log_softmax(out / T, -1), torch::softmax(t / T, -1),
                                     at::Reduction::Sum) /
                       (double)out.size(0);
    return (1.0 - hardness_) * task + hardness_ * T * T * kl;
}

void Trainer::evaluate(const torch::Tensor &x, const torch::Tensor &y, double *loss, double *acc)
{
    torch::NoGradGuard ng;
    torch::jit::Module &m = active();
    m.eval();
    soft_on(); /* the model as its masks make it */
    const int64_t n_all = x.size(0);
    /* data parallel: each rank its share x[rank::world], the sums gathered */
    torch::Tensor xs = x, ys = y;
    if (dist_) {
        xs = x.slice(0, rank_, n_all, world_).contiguous();
        ys = y.slice(0, rank_, n_all, world_).contiguous();
    }
    int64_t n = xs.size(0), bs = std::max<int64_t>(o_->batch_size, 256);
    double total = 0;
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i += bs) {
        int64_t b = std::min(bs, n - i);
        torch::Tensor xb = xs.narrow(0, i, b), yb = ys.narrow(0, i, b);
        torch::Tensor out = m.forward({xb}).toTensor();
        if (o_->task == SP_TASK_CLASSIFICATION) {
            total += torch::nll_loss(torch::log_softmax(out, 1), yb, {}, at::Reduction::Sum)
                         .item<double>();
            correct += out.argmax(1).eq(yb).sum().item<int64_t>();
        } else {
            total += torch::mse_loss(out, yb.reshape(out.sizes()), at::Reduction::Sum)
                         .item<double>() /
                     std::max<int64_t>(1, out.numel() / std::max<int64_t>(1, b));
        }
    }
    if (dist_) {
        torch::Tensor t = torch::tensor({total, (double)correct}, torch::kDouble).to(device_);
        dist_->allreduce_sum(t);
        t = t.cpu();
        total = t[0].item<double>();
        correct = (int64_t)std::llround(t[1].item<double>());
    }
    soft_off();
    *loss = total / (double)n_all;
    *acc = o_->task == SP_TASK_CLASSIFICATION ? (double)correct / (double)n_all : -1.0;
    m.train();
}

/* A buffered ostream onto an sp_outfile: libtorch writes its archives to
 * streams, the library's writer owns the temporary and puts it in place. */
class OutfileBuf : public std::streambuf {
  public:
    OutfileBuf(sp_outfile *of, sp_error *err) : of_(of), err_(err) { setp(buf_, buf_ + sizeof buf_); }
    bool failed() const { return failed_; }

  protected:
    int sync() override
    {
        if (!failed_ && pptr() > pbase() &&
            sp_outfile_write(of_, pbase(), (size_t)(pptr() - pbase()), err_) != SP_OK)
            failed_ = true;
        setp(buf_, buf_ + sizeof buf_);
        return failed_ ? -1 : 0;
    }
    int_type overflow(int_type c) override
    {
        if (sync() != 0)
            return traits_type::eof();
        if (c != traits_type::eof()) {
            *pptr() = (char)c;
            pbump(1);
        }
        return traits_type::not_eof(c);
    }
    std::streamsize xsputn(const char *s, std::streamsize n) override
    {
        if (n < (std::streamsize)sizeof buf_)
            return std::streambuf::xsputn(s, n);
        if (sync() != 0 || sp_outfile_write(of_, s, (size_t)n, err_) != SP_OK) {
            failed_ = true;
            return 0;
        }
        return n;
    }

  private:
    sp_outfile *of_;
    sp_error *err_;
    bool failed_ = false;
    char buf_[1 << 16];
};

/* Write path as every writer of the library does (a temporary beside it,
 * ".NAME.sparsify-tmp-PID", put in place when complete; nothing left on
 * failure), fill writing the bytes to a stream. name: for messages. */
template <typename F>
void write_file(const std::string &path, const std::string &name, sp_error *err, F &&fill)
{
    sp_outfile of;
    sp_status st = sp_outfile_open(&of, path.c_str(), err);
    if (st != SP_OK)
        throw Failed{st};
    auto sb = std::make_unique<OutfileBuf>(&of, err);
    std::ostream os(sb.get());
    try {
        fill(os);
        os.flush();
    } catch (const std::exception &e) {
        sp_outfile_abort(&of);
        fail(err, SP_ERR_IO, "cannot write '%s': %s", name.c_str(), torch_msg(e).c_str());
    }
    if (sb->failed() || !os) {
        sp_outfile_abort(&of);
        if (!sb->failed())
            fail(err, SP_ERR_IO, "cannot write '%s'", name.c_str());
        throw Failed{SP_ERR_IO};
    }
    st = sp_outfile_commit(&of, err);
    if (st != SP_OK) {
        sp_outfile_abort(&of);
        throw Failed{st};
    }
}

void Trainer::save_model(const std::string &path, const std::string &name)
{
    sync_dense();
    apply_masks_to_weights();
    soft_on(); /* saved masked; the dense values stay in memory (and the
                  checkpoint's state) */
    struct SoftOff {
        Trainer *t;
        ~SoftOff() { t->soft_off(); }
    } restore{this};
    write_file(path, name, err_, [&](std::ostream &os) {
        if (device_.is_cpu()) {
            model_.save(os);
        } else {
            model_.to(torch::kCPU);
            model_.save(os);
            model_.to(device_);
        }
    });
}

/* OUT.ckpt/: model.pt (TorchScript), state.pt (optimizer state, masks,
 * movement scores, positions), state.json (for people), written into a
 * temporary folder that takes OUT.ckpt's place when complete (sp_outdir):
 * the folder always holds one whole checkpoint. Rank 0 only. */
void Trainer::save_checkpoint(int epochs_done)
{
    if (rank_ != 0)
        return;
    std::string dir = std::string(o_->out) + ".ckpt";
    sp_outdir od;
    sp_status st = sp_outdir_open(&od, dir.c_str(), err_);
    if (st != SP_OK)
        throw Failed{st};
    std::unique_ptr<sp_outdir, void (*)(sp_outdir *)> guard(&od, sp_outdir_abort);
    char buf[PATH_MAX];
    auto in_dir = [&](const char *f) { return std::string(sp_outdir_file(&od, f, buf, sizeof buf)); };
    save_model(in_dir("model.pt"), dir + "/model.pt");
    write_file(in_dir("state.pt"), dir + "/state.pt", err_, [&](std::ostream &os) {
        torch::serialize::OutputArchive a, oa;
        if (sparse_on_)
            dense_form()->save(oa); /* the checkpoint holds the dense form */
        else
            opt_->save(oa);
        a.write("optimizer", oa);
        a.write("epoch", c10::IValue((int64_t)epochs_done));
        a.write("global_step", c10::IValue(global_step_));
        a.write("world_size", c10::IValue((int64_t)world_));
        a.write("global_batch", c10::IValue(o_->batch_size * world_));
        a.write("num_masked", c10::IValue((int64_t)masked_.size()));
        for (size_t i = 0; i < masked_.size(); i++) {
            const Masked &m = masked_[i];
            std::string k = std::to_string(i);
            a.write("name_" + k, c10::IValue(m.name));
            a.write("target_" + k, c10::IValue(m.target));
            if (m.pruned.defined())
                a.write("pruned_" + k, m.pruned.to(torch::kCPU), true);
            if (m.score.defined())
                a.write("score_" + k, m.score.to(torch::kCPU), true);
            a.write("soft_" + k, c10::IValue(m.soft));
            if (m.soft && m.active) /* model.pt has them masked */
                a.write("dense_" + k, m.param.detach().to(torch::kCPU), true);
        }
        for (size_t i = 0; i < global_target_.size(); i++)
            a.write("global_target_" + std::to_string(i), c10::IValue(global_target_[i]));
        a.save_to(os);
    });
    char js[512];
    int n = snprintf(js, sizeof js,
                     "{\"format\": \"sparsify-finetune-checkpoint\", \"version\": 1, \"epoch\": %d, "
                     "\"epochs\": %d, \"global_step\": %lld, \"seed\": %llu, \"world_size\": %d, "
                     "\"global_batch\": %lld}\n",
                     epochs_done, epochs_, (long long)global_step_, (unsigned long long)o_->seed,
                     world_, (long long)(o_->batch_size * world_));
    st = sp_file_write_atomic(in_dir("state.json").c_str(), js, (size_t)n, err_);
    if (st != SP_OK)
        throw Failed{st};
    guard.release();
    st = sp_outdir_commit(&od, err_); /* aborts itself on failure */
    if (st != SP_OK)
        throw Failed{st};
    sp_train_event ev{};
    ev.kind = SP_TRAIN_EV_CHECKPOINT;
    ev.epoch = epochs_done;
    ev.epochs = epochs_;
    ev.global_step = global_step_;
    ev.message = dir.c_str();
    emit(ev);
}

void Trainer::load_checkpoint()
{
    std::string st = std::string(o_->resume) + "/state.pt";
    try {
        torch::serialize::InputArchive a, oa;
        a.load_from(st);
        a.read("optimizer", oa);
        opt_->load(oa);
        c10::IValue v;
        a.read("epoch", v);
        start_epoch_ = (int)v.toInt();
        a.read("global_step", v);
        global_step_ = v.toInt();
        if (a.try_read("global_batch", v))
            ckpt_global_batch_ = v.toInt();
        a.read("num_masked", v);
        if ((size_t)v.toInt() != masked_.size())
            fail(err_, SP_ERR_INVALID_ARG,
                 "'%s': the checkpoint has %lld masked tensors, this run %zu "
                 "(resume with the same --recipe)",
                 st.c_str(), (long long)v.toInt(), masked_.size());
        for (size_t i = 0; i < masked_.size(); i++) {
            Masked &m = masked_[i];
            std::string k = std::to_string(i);
            a.read("name_" + k, v);
            if (v.toStringRef() != m.name)
                fail(err_, SP_ERR_INVALID_ARG, "'%s': masked tensor %zu is '%s', expected '%s'",
                     st.c_str(), i, v.toStringRef().c_str(), m.name.c_str());
            a.read("target_" + k, v);
            m.target = v.toDouble();
            torch::Tensor t;
            if (a.try_read("pruned_" + k, t, true)) {
                set_mask(m, t.to(device_));
            } else {
                set_mask(m, torch::Tensor());
            }
            torch::Tensor s;
            if (a.try_read("score_" + k, s, true))
                m.score = s.to(device_);
            if (a.try_read("soft_" + k, v))
                m.soft = v.toBool();
            torch::Tensor d;
            if (m.soft && a.try_read("dense_" + k, d, true)) {
                torch::NoGradGuard ng;
                m.param.copy_(d.to(device_));
            }
        }
        for (size_t i = 0; i < global_target_.size(); i++) {
            a.read("global_target_" + std::to_string(i), v);
            global_target_[i] = v.toDouble();
        }
    } catch (const Failed &) {
        throw;
    } catch (const std::exception &e) {
        fail(err_, SP_ERR_FORMAT, "'%s': cannot resume from this checkpoint: %s", st.c_str(),
             torch_msg(e).c_str());
    }
    if (start_epoch_ > epochs_)
        fail(err_, SP_ERR_INVALID_ARG,
             "'%s': the checkpoint is at epoch %d, past --epochs %d", o_->resume, start_epoch_,
             epochs_);
}

void Trainer::run(sp_train_result *res)
{
    check_opts();
    pick_device();
    if (o_->threads > 0)
        at::set_num_threads(o_->threads);
    torch::manual_seed(o_->seed);
    load_recipe();
    /* distillation settings: CLI, else the recipe, else SparseML's defaults */
    if (recipe_)
        for (size_t i = 0; i < recipe_->nmods; i++)
            if (recipe_->mods[i].type == SP_MOD_DISTILLATION) {
                hardness_ = recipe_->mods[i].hardness;
                temperature_ = recipe_->mods[i].temperature;
                /* SparseML's "teacher": a path, "self" (the starting
                 * model) or "disable" */
                const char *t = recipe_->mods[i].teacher;
                if (t && !strcmp(t, "self"))
                    teacher_path_ = o_->model;
                else if (t && strcmp(t, "disable"))
                    teacher_path_ = t;
            }
    if (o_->teacher)
        teacher_path_ = o_->teacher;
    if (o_->distill_hardness >= 0)
        hardness_ = o_->distill_hardness;
    if (o_->distill_temperature > 0)
        temperature_ = o_->distill_temperature;
    load_data();
    load_models();
    if (o_->reset_head && !o_->resume)
        reset_head();
    model_.to(device_);
    model_.train();
    check_model();
    connect();
    setup_masks();
    make_optimizer();
    if (o_->resume) {
        load_checkpoint();
    } else {
        apply_oneshot();
        apply_masks_to_weights();
    }

    int64_t n = have_train_ ? xtr_.size(0) : 0;
    int64_t bs = o_->batch_size;
    if (bs > INT64_MAX / world_)
        fail(err_, SP_ERR_INVALID_ARG, "--batch-size %lld x %d ranks is too large", (long long)bs,
             world_);
    const int64_t gb = bs * world_; /* samples per step over all ranks */
    int64_t spe = n ? (n + gb - 1) / gb : 0;
    int64_t total = spe * epochs_;
    if (o_->resume && ckpt_global_batch_ > 0 && ckpt_global_batch_ != gb) {
        /* a different global batch: steps per epoch differ, so the
         * learning-rate schedule goes on from the epoch */
        global_step_ = (int64_t)start_epoch_ * spe;
        char buf[256];
        snprintf(buf, sizeof buf,
                 "the checkpoint was trained with %lld samples per step, this run takes %lld "
                 "(%d x %lld): the learning-rate schedule continues from epoch %d",
                 (long long)ckpt_global_batch_, (long long)gb, world_, (long long)bs, start_epoch_);
        warn(buf);
    }
    if (dist_) {
        dist_->attach(dense_params());
        verify_ranks("the start", mask_crc());
    }
    sp_train_event ev{};
    ev.kind = SP_TRAIN_EV_START;
    ev.epochs = epochs_;
    ev.epoch = start_epoch_;
    ev.steps_per_epoch = spe;
    ev.train_n = n;
    ev.val_n = have_val_ ? xva_.size(0) : 0;
    ev.world_size = world_;
    ev.global_batch = gb;
    std::string devname = device_.str();
    if (dist_)
        devname += ", " + std::to_string(world_) + " ranks (" + dist_->backend() + ")";
    ev.message = devname.c_str();
    counts(&ev.masked_zeros, &ev.masked_numel);
    ev.ntensors = masked_.size();
    ev.sparsity = ev.masked_numel ? (double)ev.masked_zeros / ev.masked_numel : 0;
    emit(ev);

    if (recipe_ && update_masks((double)start_epoch_, false))
        mask_report(start_epoch_, start_epoch_);
    /* the sparse operator runs on the CPU: CUDA training stays dense */
    const bool want_sparse = o_->kernels != SP_KERNELS_DENSE && !o_->no_masks &&
                             device_.is_cpu() && !masked_.empty();
    fixed_from_ = masks_fixed_from();

    std::vector<double> all_ms;
    double last_loss = 0;
    sp_train_result r{};
    for (int epoch = start_epoch_; epoch < epochs_; epoch++) {
        std::vector<int64_t> perm = permutation(n, o_->seed, epoch);
        torch::Tensor permt = torch::from_blob(perm.data(), {n}, torch::kLong).to(device_);
        /* random ops (dropout): one stream per rank */
        torch::manual_seed(o_->seed * 1000003ULL + (uint64_t)epoch +
                           (uint64_t)rank_ * 0x9e3779b97f4a7c15ULL);
        active().train();
        std::vector<double> ms, comm, wait;
        double loss_sum = 0;
        int64_t seen = 0;
        for (int64_t s = 0; s < spe; s++) {
            double ef = epoch + (double)s / (double)spe;
            if (dist_)
                dist_->set_where("epoch " + std::to_string(epoch + 1) + ", step " +
                                 std::to_string(s + 1));
            if (recipe_ && update_masks(ef, false))
                mask_report(epoch + 1, ef);
            if (recipe_)
                harden(false, ef);
            if (want_sparse && !sparse_tried_ && ef >= fixed_from_)
                enable_sparse(ef);
            double t0 = now_ms();
            int64_t b = std::min(gb, n - s * gb); /* the step's samples, all ranks */
            torch::Tensor idx = permt.narrow(0, s * gb, b);
            if (dist_)
                idx = idx.slice(0, rank_, b, world_); /* this rank's: every world-th */
            const int64_t bl = idx.size(0);
            double lr = lr_at(global_step_, total, spe);
            for (auto &g : opt_->param_groups())
                g.options().set_lr(lr);
            if (wd_from_recipe_)
                set_weight_decay(*opt_, weight_decay_at(ef));
            opt_->zero_grad();
            if (!buffers_.empty())
                dist_->broadcast(buffers_);
            torch::Tensor loss;
            double lv = 0; /* this rank's mean loss */
            soft_on();
            if (bl > 0) {
                torch::Tensor xb = xtr_.index_select(0, idx), yb = ytr_.index_select(0, idx);
                torch::Tensor out = active().forward({xb}).toTensor();
                loss = loss_of(out, yb, xb);
                lv = loss.item<double>();
                /* averaged over the ranks, the gradient of the mean loss
                 * over all b samples (a short last batch may split unevenly) */
                if (dist_ && bl * world_ != b)
                    loss = loss * ((double)(bl * world_) / (double)b);
            }
            double gsum = lv * (double)bl, gn = (double)bl; /* loss sum, samples: all ranks */
            if (dist_)
                dist_->step_begin(gsum, gn);
            if (bl > 0)
                loss.backward();
            if (dist_) {
                dist_->step_end(&gsum, &gn);
                comm.push_back(dist_->step_comm_ms());
                wait.push_back(dist_->step_wait_ms());
            }
            double gl = gn > 0 ? gsum / gn : 0;
            if (!std::isfinite(gl)) {
                collective_ = true;
                fail(err_, SP_ERR_CHECK,
                     "epoch %d step %lld: the loss is %g (try a smaller --lr)", epoch + 1,
                     (long long)(s + 1), gl);
            }
            {
                torch::NoGradGuard ng;
                for (auto &m : masked_) {
                    torch::Tensor g = m.param.grad();
                    if (!g.defined())
                        continue;
                    /* movement: S += -W * dL/dW, on the dense weights of a
                     * soft mask (the gradient is the masked weights') */
                    if (m.score.defined())
                        m.score.sub_((m.soft && m.active ? m.dense : m.param) * g);
                    if (m.active)
                        g.mul_(m.keep);
                }
            }
            soft_off();
            opt_->step();
            for (const SparseParam &sp : sparse_)
                sp.packed->values_changed(); /* SGD writes through .data() */
            ms.push_back(now_ms() - t0);
            loss_sum += gsum;
            seen += (int64_t)std::llround(gn);
            global_step_++;
            sp_train_event se{};
            se.kind = SP_TRAIN_EV_STEP;
            se.epoch = epoch + 1;
            se.epochs = epochs_;
            se.epoch_f = epoch + (double)(s + 1) / (double)spe;
            se.step = s + 1;
            se.steps_per_epoch = spe;
            se.global_step = global_step_;
            se.lr = lr;
            se.train_loss = loss_sum / (double)seen;
            se.train_n = n;
            emit(se);
        }
        last_loss = seen ? loss_sum / (double)seen : 0;
        sync_dense();
        verify_masks(epoch + 1);
        if (dist_) {
            dist_->set_where("the end of epoch " + std::to_string(epoch + 1));
            std::string when = "the end of epoch " + std::to_string(epoch + 1);
            verify_ranks(when.c_str(), mask_crc());
        }
        all_ms.insert(all_ms.end(), ms.begin(), ms.end());
        sp_train_event ee{};
        ee.kind = SP_TRAIN_EV_EPOCH;
        ee.epoch = epoch + 1;
        ee.epochs = epochs_;
        ee.epoch_f = epoch + 1;
        ee.steps_per_epoch = spe;
        ee.global_step = global_step_;
        ee.lr = lr_at(std::max<int64_t>(0, global_step_ - 1), total, spe);
        ee.train_loss = last_loss;
        ee.train_n = n;
        ee.step_ms = median(ms);
        ee.sparse_kernels = sparse_on_;
        ee.world_size = world_;
        ee.global_batch = gb;
        ee.allreduce_ms = comm.empty() ? 0 : median(comm);
        ee.allreduce_wait_ms = wait.empty() ? 0 : median(wait);
        if (have_val_) {
            ee.has_val = true;
            ee.val_n = xva_.size(0);
            evaluate(xva_, yva_, &ee.val_loss, &ee.val_accuracy);
        }
        counts(&ee.masked_zeros, &ee.masked_numel);
        ee.sparsity = ee.masked_numel ? (double)ee.masked_zeros / ee.masked_numel : 0;
        ee.ntensors = masked_.size();
        emit(ee);
        r.epochs_run++;
        if (o_->save_every > 0 && (epoch + 1) % o_->save_every == 0 && epoch + 1 < epochs_)
            save_checkpoint(epoch + 1);
    }

    /* Training is over: back to the dense model, whose weights now hold the
     * trained values, for the final mask pass, evaluation and save. */
    if (sparse_on_) {
        sync_dense();
        r.sparse_layers = sparse_.size();
        sparse_.clear();
        sparse_on_ = false;
    }

    /* The final model meets every modifier's final sparsity exactly, even
     * when the run ended before a schedule did; soft masks become hard. */
    if (recipe_)
        harden(true, epochs_);
    if (recipe_ && epochs_ > 0) {
        for (size_t i = 0; i < recipe_->nmods; i++) {
            const sp_modifier &m = recipe_->mods[i];
            bool owns = false;
            for (const Masked &k : masked_)
                owns = owns || k.mod == (int)i;
            if (sp_modifier_prunes(&m) && owns && m.end_epoch > epochs_) {
                char buf[512], last[64];
                if (o_->set & SP_TRAIN_SET_EPOCHS)
                    snprintf(last, sizeof last, "--epochs %d", epochs_);
                else
                    snprintf(last, sizeof last, "the last epoch, %d", epochs_);
                snprintf(buf, sizeof buf,
                         "recipe: %s (%s) ends at epoch %g, after %s; its final sparsity was "
                         "applied at the end",
                         m.where, m.cls, m.end_epoch, last);
                warn(buf);
            }
        }
        if (update_masks((double)epochs_, true) && have_val_) {
            double l, a;
            evaluate(xva_, yva_, &l, &a);
            r.val_loss = l;
            r.val_accuracy = a;
        }
    }

    r.steps = (int64_t)all_ms.size();
    r.train_loss = last_loss;
    r.step_ms = median(all_ms);
    r.masked_tensors = masked_.size();
    counts(&r.masked_zeros, &r.masked_numel);
    if (have_val_) {
        r.has_val = true;
        r.val_n = xva_.size(0);
        evaluate(xva_, yva_, &r.val_loss, &r.val_accuracy);
    } else if (epochs_ == 0 && have_train_) {
        r.has_val = true;
        r.val_n = xtr_.size(0);
        evaluate(xtr_, ytr_, &r.val_loss, &r.val_accuracy);
    }
    if (!masked_.empty())
        mask_report(epochs_, epochs_);
    r.world_size = world_;
    if (o_->out) {
        /* Rank 0 writes; the others wait to hear that it did, so that no
         * rank reports success for an output that failed. */
        sp_status st = SP_OK;
        if (rank_ == 0) {
            try {
                save_model(o_->out, o_->out);
            } catch (const Failed &f) {
                st = f.st;
            }
        }
        if (dist_) {
            dist_->set_where("the end, while rank 0 wrote the output");
            st = (sp_status)dist_->broadcast_int((int)st);
        }
        if (st != SP_OK) {
            collective_ = true;
            if (rank_ != 0)
                fail(err_, st, "rank 0 could not write '%s'", o_->out);
            throw Failed{st};
        }
    }
    if (res)
        *res = r;
}

void Trainer::apply_masks_to_weights()
{
    torch::NoGradGuard ng;
    for (auto &m : masked_)
        if (m.active && !m.soft)
            m.param.masked_fill_(m.pruned, 0.0);
}


} // namespace

extern "C" {

void sp_train_opts_init(sp_train_opts *o)
{
    std::memset(o, 0, sizeof *o);
    o->task = SP_TASK_CLASSIFICATION;
    o->epochs = 1;
    o->batch_size = 32;
    o->lr = 1e-3;
    o->optimizer = SP_OPTIM_ADAMW;
    o->momentum = 0.9;
    o->lr_schedule = SP_LR_CONSTANT;
    o->device = "cpu";
    o->distill_hardness = -1;
    o->distill_temperature = -1;
    o->world_size = 1;
    o->dist_timeout = 300;
}

sp_status sp_train_run(const sp_train_opts *opts, sp_train_cb cb, void *ctx,
                       sp_train_result *res, sp_error *err)
{
    sp_error_clear(err);
    /* Flush denormals to zero while training: Adam's second moments of tiny
     * gradients otherwise fall into denormal range and slow every step down
     * several times (measured: docs/finetune.md). The caller's floating-point
     * mode is restored on return. */
#if defined(__SSE__)
    unsigned int csr = _mm_getcsr();
#endif
    at::globalContext().setFlushDenormal(true);
    sp_status st = SP_OK;
    std::unique_ptr<Trainer> t;
    try {
        t = std::make_unique<Trainer>(opts, cb, ctx, err);
        t->run(res);
    } catch (const Failed &f) {
        st = f.st;
    } catch (const std::bad_alloc &) {
        st = sp_error_set(err, SP_ERR_NOMEM, "out of memory during fine-tuning");
    } catch (const std::exception &e) {
        st = sp_error_set(err, SP_ERR_INTERNAL, "libtorch: %s", torch_msg(e).c_str());
    }
    if (st != SP_OK && res)
        res->reported_by_rank0 = t && t->collective_failure();
    t.reset();
#if defined(__SSE__)
    _mm_setcsr(csr);
#endif
    return st;
}

bool sp_train_cuda_available(void)
{
    try {
        return torch::cuda::is_available();
    } catch (...) {
        return false;
    }
}

const char *sp_train_torch_version(void) { return TORCH_VERSION; }

bool sp_train_have_nccl(void) { return dist_have_nccl(); }

} // extern "C"
