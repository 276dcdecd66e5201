/*
 * The sparse Linear operator (linear.h): the packed weight as a TorchScript
 * custom class, the operator sparsify::linear with a CPU kernel (inference)
 * and an autograd kernel (training), built on sparsify's SpMM plans and
 * SDDMM ukernels.
 */
#include "bridge/linear.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <tuple>

#include "bridge/common.h"

namespace sp_bridge {

const char *const kLinearOp = "sparsify::linear";

namespace {

/* The plans' dense path: libtorch's own mm (its BLAS, its threads). */
void torch_gemm(void *, size_t m, size_t n, size_t k, const float *w, const float *x, size_t ldx,
                float *y, size_t ldy, int)
{
    at::Tensor W = at::from_blob(const_cast<float *>(w), {(int64_t)m, (int64_t)k});
    at::Tensor X = at::from_blob(const_cast<float *>(x), {(int64_t)k, (int64_t)n}, {(int64_t)ldx, 1});
    at::Tensor Y = at::from_blob(y, {(int64_t)m, (int64_t)n}, {(int64_t)ldy, 1});
    at::mm_out(Y, W, X);
}

/*
 * The layout for the kept positions (the nonzeros of ws, M x K): blocks when
 * the kept positions are exactly a union of RxC blocks (fewest indices, an
 * X load serves R rows), otherwise CSR. N:M weights are packed as CSR too:
 * on today's kernels CSR runs them faster than the N:M layout (2:4 FFN model
 * of docs/benchmarks.md: 1.5-1.7x over dense at batch 64 against 1.2-1.3x,
 * 1.9x at batch 1 against 0.67x); the N:M layout is there when a pattern is
 * asked for (make()'s `layout`). Returns false for CSR.
 */
bool choose_pattern(const float *ws, int64_t M, int64_t K, size_t nnz, sp_pattern *p)
{
    if (nnz == 0 || nnz == (size_t)(M * K))
        return false;
    static const int64_t blocks[][2] = {{4, 4}, {4, 1}, {1, 4}, {2, 2}};
    for (const auto &b : blocks) {
        const int64_t br = b[0], bc = b[1];
        size_t covered = 0; /* in-range elements of blocks holding a nonzero */
        for (int64_t i = 0; i < M; i += br)
            for (int64_t j = 0; j < K; j += bc) {
                bool any = false;
                for (int64_t r = i; r < std::min(M, i + br) && !any; r++)
                    for (int64_t c = j; c < std::min(K, j + bc); c++)
                        if (ws[r * K + c] != 0.0f) {
                            any = true;
                            break;
                        }
                if (any)
                    covered += (size_t)((std::min(M, i + br) - i) * (std::min(K, j + bc) - j));
            }
        if (covered == nnz) {
            *p = sp_pattern{SP_PATTERN_BLOCK, br, bc, 0, 0};
            return true;
        }
    }
    return false;
}

/* The pattern of W^T for W's: blocks transpose, N:M does not survive. */
bool transpose_pattern(bool patterned, const sp_pattern &p, sp_pattern *out)
{
    if (!patterned || p.kind != SP_PATTERN_BLOCK)
        return false;
    *out = sp_pattern{SP_PATTERN_BLOCK, p.c, p.r, 0, 0};
    return true;
}

const sp_pattern kUnstructured{SP_PATTERN_UNSTRUCTURED, 1, 1, 0, 0};

/*
 * Cut the R x C matrix src (its nonzeros are the kept positions) into at
 * most nblocks blocks of rows holding about equal numbers of them, block
 * boundaries on multiples of `align` (the block height of a BCSR layout),
 * and pack each. canon: the canonical index of each kept position of src
 * in row-major order (empty: the identity). Returns NOMEM / UNSUPPORTED
 * from the packing.
 */
sp_status pack_blocks(std::vector<PackedLinear::Block> &out, const float *src, int64_t R, int64_t C,
                      const sp_pattern &pattern, int64_t align, int nblocks,
                      const std::vector<uint32_t> &canon, sp_error *err)
{
    std::vector<size_t> cum((size_t)R + 1, 0);
    for (int64_t r = 0; r < R; r++) {
        size_t n = 0;
        for (int64_t c = 0; c < C; c++)
            n += src[r * C + c] != 0.0f;
        cum[(size_t)r + 1] = cum[(size_t)r] + n;
    }
    /* no block thinner than 16 rows: a one-row block is all overhead */
    nblocks = (int)std::max<int64_t>(1, std::min<int64_t>(nblocks, R / 16));
    std::vector<int64_t> cut{0};
    for (int t = 1; t < nblocks; t++) {
        const size_t target = cum[(size_t)R] * (size_t)t / (size_t)nblocks;
        int64_t r = std::lower_bound(cum.begin(), cum.end(), target) - cum.begin();
        r = std::min(R, (r + align - 1) / align * align);
        if (r > cut.back() && r < R)
            cut.push_back(r);
    }
    cut.push_back(R);
    out.clear();
    out.resize(cut.size() - 1);
    for (size_t i = 0; i + 1 < cut.size(); i++) {
        PackedLinear::Block &b = out[i];
        b.r0 = cut[i];
        b.r1 = cut[i + 1];
        b.k0 = cum[(size_t)b.r0];
        sp_status st = sp_spmat_pack(&b.m, src + b.r0 * C, (size_t)(b.r1 - b.r0), (size_t)C,
                                     &pattern, err);
        if (st != SP_OK)
            return st;
        b.dst.resize(b.m->nnz);
        sp_spmat_value_map(b.m, b.dst.data());
        if (!canon.empty())
            b.src.assign(canon.begin() + (ptrdiff_t)b.k0, canon.begin() + (ptrdiff_t)(b.k0 + b.m->nnz));
    }
    return SP_OK;
}

void free_blocks(std::vector<PackedLinear::Block> &blocks)
{
    for (auto &b : blocks) {
        for (auto &p : b.plans)
            sp_spmm_plan_free(p.plan);
        sp_spmat_free(b.m);
    }
    blocks.clear();
}

} // namespace

c10::intrusive_ptr<PackedLinear> PackedLinear::make(const std::string &name, const at::Tensor &w,
                                                    const at::Tensor &keep, sp_fallback fallback,
                                                    sp_error *err, const sp_pattern *layout)
{
    TORCH_INTERNAL_ASSERT(w.dim() == 2 && w.scalar_type() == at::kFloat && w.device().is_cpu());
    const int64_t M = w.size(0), K = w.size(1);
    if (M == 0 || K == 0) {
        sp_error_set(err, SP_ERR_UNSUPPORTED, "empty weight %s", shape_str(w.sizes()).c_str());
        return {};
    }
    at::Tensor wc = w.detach().contiguous();
    at::Tensor kc = keep.defined() ? keep.to(at::kBool).contiguous() : at::Tensor();
    TORCH_INTERNAL_ASSERT(!kc.defined() || kc.sizes() == w.sizes());
    const float *wp = wc.data_ptr<float>();
    const bool *kp = kc.defined() ? kc.data_ptr<bool>() : nullptr;

    auto p = c10::make_intrusive<PackedLinear>();
    p->name_ = name;
    p->rows_ = M;
    p->cols_ = K;
    p->fallback_ = fallback;
    /* The packing prunes zeros: when the kept positions are not exactly the
     * nonzeros, it packs a copy with kept zeros made nonzero (1.0) and
     * pruned values made zero; the real values are written after. */
    size_t nnz = 0;
    bool exact = true;
    for (size_t i = 0; i < (size_t)(M * K); i++) {
        const bool kept = kp ? kp[i] : wp[i] != 0.0f;
        nnz += kept;
        exact = exact && kept == (wp[i] != 0.0f);
    }
    if (nnz > UINT32_MAX) {
        sp_error_set(err, SP_ERR_UNSUPPORTED, "%zu kept weights: more than 2^32-1", nnz);
        return {};
    }
    std::vector<float> ws(exact ? 0 : (size_t)(M * K));
    p->rp_.assign((size_t)M + 1, 0);
    p->ci_.reserve(nnz);
    for (int64_t r = 0; r < M; r++) {
        for (int64_t c = 0; c < K; c++) {
            const size_t i = (size_t)(r * K + c);
            const bool kept = kp ? kp[i] : wp[i] != 0.0f;
            if (!exact)
                ws[i] = kept ? (wp[i] != 0.0f ? wp[i] : 1.0f) : 0.0f;
            if (kept)
                p->ci_.push_back((uint32_t)c);
        }
        p->rp_[(size_t)r + 1] = (uint32_t)p->ci_.size();
    }
    const float *src = exact ? wp : ws.data();
    if (layout && layout->kind != SP_PATTERN_UNSTRUCTURED) {
        p->pattern_ = *layout;
        p->patterned_ = true;
    } else if (!layout) {
        p->patterned_ = choose_pattern(src, M, K, nnz, &p->pattern_);
    }
    const sp_pattern &pat = p->patterned_ ? p->pattern_ : kUnstructured;
    const int64_t align = pat.kind == SP_PATTERN_BLOCK ? pat.r : 1;
    sp_status st = pack_blocks(p->w_, src, M, K, pat, align, std::max(1, at::get_num_threads()),
                               {}, err);
    if (st == SP_ERR_NOMEM)
        throw Failed{st};
    if (st != SP_OK)
        return {};
    /* the real values (kept zeros included) */
    for (Block &b : p->w_)
        for (int64_t r = b.r0; r < b.r1; r++)
            for (uint32_t k = p->rp_[(size_t)r]; k < p->rp_[(size_t)r + 1]; k++)
                b.m->values[b.dst[k - b.k0]] = wp[r * K + p->ci_[k]];
    return p;
}

PackedLinear::~PackedLinear()
{
    free_blocks(w_);
    free_blocks(wt_);
}

std::string PackedLinear::pattern() const
{
    char buf[32];
    return patterned_ ? sp_pattern_str(&pattern_, buf, sizeof buf) : "unstructured";
}

std::string PackedLinear::layout() const
{
    char buf[32];
    const sp_layout l = w_.front().m->layout;
    if (l == SP_LAYOUT_BCSR || l == SP_LAYOUT_NM)
        return std::string(sp_layout_name(l)) + " " + sp_pattern_str(&pattern_, buf, sizeof buf);
    return sp_layout_name(l);
}

size_t PackedLinear::bytes() const
{
    size_t n = 0;
    for (const Block &b : w_)
        n += sp_spmat_bytes(b.m);
    return n;
}

at::Tensor PackedLinear::values() const
{
    at::Tensor v = at::empty({nnz()}, at::kFloat);
    float *vp = v.data_ptr<float>();
    for (const Block &b : w_)
        for (size_t j = 0; j < b.dst.size(); j++)
            vp[b.k0 + j] = b.m->values[b.dst[j]];
    return v;
}

at::Tensor PackedLinear::kept_index() const
{
    at::Tensor idx = at::empty({nnz()}, at::kLong);
    int64_t *ip = idx.data_ptr<int64_t>();
    for (int64_t r = 0, k = 0; r < rows_; r++)
        for (uint32_t j = rp_[(size_t)r]; j < rp_[(size_t)r + 1]; j++)
            ip[k++] = r * cols_ + ci_[j];
    return idx;
}

at::Tensor PackedLinear::dense(const at::Tensor &values) const
{
    at::Tensor v = values.detach().to(at::kFloat).contiguous();
    TORCH_INTERNAL_ASSERT(v.numel() == nnz());
    at::Tensor d = at::zeros({rows_, cols_}, at::kFloat);
    float *dp = d.data_ptr<float>();
    const float *vp = v.data_ptr<float>();
    for (int64_t r = 0, k = 0; r < rows_; r++)
        for (uint32_t j = rp_[(size_t)r]; j < rp_[(size_t)r + 1]; j++)
            dp[r * cols_ + ci_[j]] = vp[k++];
    return d;
}

void PackedLinear::drop_plans(std::vector<Block> &blocks, bool only_copies)
{
    for (Block &b : blocks) {
        auto keep = std::remove_if(b.plans.begin(), b.plans.end(), [&](const Plan &p) {
            if (only_copies && !p.holds_values)
                return false;
            sp_spmm_plan_free(p.plan);
            return true;
        });
        b.plans.erase(keep, b.plans.end());
    }
}

void PackedLinear::scatter(std::vector<Block> &blocks, const float *v)
{
    for (Block &b : blocks) {
        float *dst = b.m->values;
        if (b.src.empty())
            for (size_t j = 0; j < b.dst.size(); j++)
                dst[b.dst[j]] = v[b.k0 + j];
        else
            for (size_t j = 0; j < b.dst.size(); j++)
                dst[b.dst[j]] = v[b.src[j]];
    }
}

/* Refresh the packed values when `values` changed since the last product:
 * another tensor, or the same one updated in place (its version moved).
 * The tensor last synced from is held, so that no other tensor can reuse
 * its memory and pass for it. Plans that copied the values at creation are
 * rebuilt on their next use. */
void PackedLinear::sync(const at::Tensor &values)
{
    const int64_t ver = values.is_inference() ? -2 : values._version();
    if (synced_.defined() && values.unsafeGetTensorImpl() == synced_.unsafeGetTensorImpl() &&
        values.data_ptr() == synced_ptr_ && ver == synced_version_ && ver != -2)
        return;
    scatter(w_, values.data_ptr<float>());
    drop_plans(w_, true);
    wt_synced_ = false;
    synced_ = values;
    synced_ptr_ = values.data_ptr();
    synced_version_ = ver;
}

void PackedLinear::values_changed()
{
    std::lock_guard<std::mutex> g(mu_);
    synced_ = at::Tensor();
}

/* W^T, packed on the first backward: its own layout (blocks transposed, else
 * CSR), cut into blocks of its rows (W's columns); its kept values are W's
 * in column-major order, so each block maps them back to canonical order. */
void PackedLinear::build_transpose(const at::Tensor &values)
{
    const float *v = values.data_ptr<float>();
    const size_t M = (size_t)rows_, K = (size_t)cols_, nnz = ci_.size();
    std::vector<float> wst(M * K, 0.0f);
    std::vector<uint32_t> start(K + 1, 0), seen(K, 0), canon(nnz);
    for (size_t k = 0; k < nnz; k++)
        start[ci_[k] + 1]++;
    for (size_t c = 0; c < K; c++)
        start[c + 1] += start[c];
    for (size_t r = 0, k = 0; r < M; r++)
        for (uint32_t j = rp_[r]; j < rp_[r + 1]; j++, k++) {
            const uint32_t c = ci_[j];
            wst[(size_t)c * M + r] = v[k] != 0.0f ? v[k] : 1.0f;
            canon[start[c] + seen[c]++] = (uint32_t)k; /* W^T row-major -> canonical */
        }
    sp_pattern pt;
    const bool patterned = transpose_pattern(patterned_, pattern_, &pt);
    sp_error err{};
    sp_status st = pack_blocks(wt_, wst.data(), (int64_t)K, (int64_t)M, patterned ? pt : kUnstructured,
                               patterned ? pt.r : 1, std::max(1, at::get_num_threads()), canon, &err);
    if (st == SP_ERR_NOMEM)
        throw std::bad_alloc();
    /* W^T of a packable W is packable (same count, M <= 65536 ...) */
    TORCH_CHECK(st == SP_OK, kLinearOp, " '", name_, "': cannot pack the transposed weight: ",
                err.msg);
    scatter(wt_, v); /* the real values, kept zeros included */
}

sp_spmm_plan *PackedLinear::plan(Block &b, int64_t n)
{
    for (const Plan &p : b.plans)
        if (p.n == n)
            return p.plan;
    if (b.plans.size() >= 6) { /* a few batch sizes at a time; drop the oldest */
        sp_spmm_plan_free(b.plans.front().plan);
        b.plans.erase(b.plans.begin());
    }
    sp_spmm_opts o;
    sp_spmm_opts_init(&o);
    o.threads = 1; /* the blocks are the threads (run()) */
    o.fallback = fallback_;
    o.dense = torch_gemm;
    sp_spmm_plan *pl = nullptr;
    sp_error err{};
    if (sp_spmm_plan_new(&pl, b.m, (size_t)n, &o, &err) != SP_OK)
        TORCH_CHECK(false, kLinearOp, " '", name_, "': ", err.msg);
    const sp_ukernel_info *uk = sp_ukernel_find(sp_spmm_plan_kernel(pl));
    b.plans.push_back(Plan{n, pl, sp_spmm_plan_is_dense(pl) || (uk && uk->spmv)});
    return pl;
}

/* Y[rows x n] = blocks . X[cols x n] (+ bias): one block per task of
 * libtorch's parallel_for. Plans are made first, outside the threads. */
void PackedLinear::run(std::vector<Block> &blocks, int64_t n, const float *x, float *y,
                       const float *bias)
{
    std::vector<sp_spmm_plan *> plans(blocks.size());
    for (size_t i = 0; i < blocks.size(); i++)
        plans[i] = plan(blocks[i], n);
    std::atomic<bool> bad{false};
    at::parallel_for(0, (int64_t)blocks.size(), 1, [&](int64_t b0, int64_t b1) {
        for (int64_t i = b0; i < b1; i++) {
            const Block &b = blocks[(size_t)i];
            if (sp_spmm_plan_run(plans[(size_t)i], x, (size_t)n, y + b.r0 * n, (size_t)n,
                                 bias ? bias + b.r0 : nullptr, nullptr) != SP_OK)
                bad = true;
        }
    });
    TORCH_CHECK(!bad, kLinearOp, " '", name_, "': a sparse product failed");
}

std::string PackedLinear::kernel(int64_t n)
{
    std::lock_guard<std::mutex> g(mu_);
    return sp_spmm_plan_kernel(plan(w_.front(), n));
}

bool PackedLinear::dense_for(int64_t n)
{
    std::lock_guard<std::mutex> g(mu_);
    return sp_spmm_plan_is_dense(plan(w_.front(), n));
}

at::Tensor PackedLinear::forward(const at::Tensor &x, const at::Tensor &values,
                                 const at::Tensor &bias, at::Tensor *xt)
{
    std::lock_guard<std::mutex> g(mu_);
    const int64_t B = x.size(0);
    const auto opts = x.options();
    /* X^T [K, B]: free at batch 1, and when x is itself a transposed result
     * (this operator's own output, through elementwise ops) */
    at::Tensor xtt = B == 1 ? x.reshape({cols_, 1}).contiguous() : x.t().contiguous();
    at::Tensor y = B == 1 ? at::empty({1, rows_}, opts) : at::empty_strided({B, rows_}, {1, B}, opts);
    if (xt)
        *xt = xtt;
    if (B == 0)
        return y;
    sync(values);
    run(w_, B, xtt.data_ptr<float>(), y.data_ptr<float>(),
        bias.defined() ? bias.data_ptr<float>() : nullptr);
    return y;
}

at::Tensor PackedLinear::grad_input(const at::Tensor &dyt, const at::Tensor &values)
{
    std::lock_guard<std::mutex> g(mu_);
    const int64_t B = dyt.size(1);
    at::Tensor dx = B == 1 ? at::empty({1, cols_}, dyt.options())
                           : at::empty_strided({B, cols_}, {1, B}, dyt.options());
    if (B == 0)
        return dx;
    sync(values);
    if (wt_.empty()) {
        build_transpose(values);
    } else if (!wt_synced_) {
        scatter(wt_, values.data_ptr<float>());
        drop_plans(wt_, true);
    }
    wt_synced_ = true;
    run(wt_, B, dyt.data_ptr<float>(), dx.data_ptr<float>(), nullptr);
    return dx;
}

at::Tensor PackedLinear::grad_values(const at::Tensor &dyt, const at::Tensor &xt)
{
    const int64_t B = dyt.size(1);
    at::Tensor gv = at::empty({nnz()}, dyt.options());
    if (B == 0)
        return gv.zero_();
    const sp_sddmm_ukernel_info *uk = sp_sddmm_ukernel_best(SP_ISA_COUNT);
    const float *a = dyt.data_ptr<float>(), *b = xt.data_ptr<float>();
    float *out = gv.data_ptr<float>();
    const uint32_t *rp = rp_.data(), *ci = ci_.data();
    at::parallel_for(0, rows_, 16, [&](int64_t r0, int64_t r1) {
        uk->fn(rp, ci, (size_t)r0, (size_t)r1, (size_t)B, a, (size_t)B, b, (size_t)B, out);
    });
    return gv;
}

namespace {

void check_args(const at::Tensor &x, const at::Tensor &values, const at::Tensor &bias,
                const PackedLinear &p)
{
    TORCH_CHECK(x.scalar_type() == at::kFloat, kLinearOp, " '", p.name(), "': input is ",
                x.scalar_type(), ", the sparse kernels take float32");
    TORCH_CHECK(x.device().is_cpu(), kLinearOp, " '", p.name(), "': input is on ", x.device(),
                ", the sparse kernels run on the CPU");
    TORCH_CHECK(x.dim() >= 1 && x.size(-1) == p.cols(), kLinearOp, " '", p.name(),
                "': input of shape ", x.sizes(), " has ", x.dim() ? x.size(-1) : 0,
                " features, the layer takes ", p.cols());
    TORCH_CHECK(values.scalar_type() == at::kFloat && values.device().is_cpu() &&
                    values.dim() == 1 && values.numel() == p.nnz(),
                kLinearOp, " '", p.name(), "': values must be ", p.nnz(),
                " float32 CPU numbers, got ", values.sizes());
    TORCH_CHECK(!bias.defined() || (bias.scalar_type() == at::kFloat && bias.device().is_cpu() &&
                                    bias.numel() == p.rows()),
                kLinearOp, " '", p.name(), "': bias must be ", p.rows(), " float32 numbers");
}

/* [..., K] -> [B, K] and back. */
at::Tensor flat(const at::Tensor &x, int64_t k) { return x.dim() == 2 ? x : x.reshape({-1, k}); }
at::Tensor unflat(const at::Tensor &y, const at::Tensor &x, int64_t m)
{
    if (x.dim() == 2)
        return y;
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end() - 1);
    shape.push_back(m);
    return y.reshape(shape);
}

class SparseLinearFn : public torch::autograd::Function<SparseLinearFn> {
  public:
    /* bias is optional: an undefined tensor is no autograd input */
    static at::Tensor forward(torch::autograd::AutogradContext *ctx, const at::Tensor &x,
                              const at::Tensor &values, const c10::optional<at::Tensor> &bias,
                              const c10::intrusive_ptr<PackedLinear> &p)
    {
        at::Tensor xt;
        const bool has_bias = bias.has_value() && bias->defined();
        at::Tensor y = p->forward(x, values.contiguous(),
                                  has_bias ? bias->contiguous() : at::Tensor(), &xt);
        ctx->save_for_backward({xt, values});
        ctx->saved_data["packed"] = c10::IValue(p);
        ctx->saved_data["bias"] = has_bias;
        return y;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                   torch::autograd::variable_list grads)
    {
        auto p = ctx->saved_data["packed"].toCustomClass<PackedLinear>();
        auto saved = ctx->get_saved_variables();
        const at::Tensor &xt = saved[0], &values = saved[1];
        const at::Tensor &dy = grads[0]; /* [B, M] */
        const int64_t B = dy.size(0);
        at::Tensor dyt = B == 1 ? dy.reshape({p->rows(), 1}).contiguous() : dy.t().contiguous();
        at::Tensor gx, gv, gb;
        if (ctx->needs_input_grad(0))
            gx = p->grad_input(dyt, values.contiguous());
        if (ctx->needs_input_grad(1))
            gv = p->grad_values(dyt, xt);
        if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2))
            gb = dy.sum(0);
        return {gx, gv, gb, at::Tensor()};
    }
};

at::Tensor linear_cpu(const at::Tensor &x, const at::Tensor &values,
                      const c10::optional<at::Tensor> &bias,
                      const c10::intrusive_ptr<PackedLinear> &p)
{
    const at::Tensor b = bias.has_value() ? *bias : at::Tensor();
    check_args(x, values, b, *p);
    at::Tensor y = p->forward(flat(x, p->cols()), values.contiguous(),
                              b.defined() ? b.contiguous() : b, nullptr);
    return unflat(y, x, p->rows());
}

} // namespace

at::Tensor sparse_linear(const at::Tensor &x, const at::Tensor &values,
                         const c10::optional<at::Tensor> &bias,
                         const c10::intrusive_ptr<PackedLinear> &p)
{
    const at::Tensor b = bias.has_value() ? *bias : at::Tensor();
    check_args(x, values, b, *p);
    at::Tensor y = SparseLinearFn::apply(flat(x, p->cols()), values,
                                         b.defined() ? bias : c10::optional<at::Tensor>(), p);
    return unflat(y, x, p->rows());
}

} // namespace sp_bridge

using sp_bridge::PackedLinear;

/* The state of a packed weight: ((name, layout pattern, fallback), dense
 * weight, keep-mask); loading packs it again. (Tuples of at most three:
 * libtorch stores those inline.) */
using PackedMeta = std::tuple<std::string, std::string, int64_t>;
using PackedState = std::tuple<PackedMeta, at::Tensor, at::Tensor>;

TORCH_LIBRARY(sparsify, m)
{
    m.class_<PackedLinear>("PackedLinear")
        .def_pickle(
            [](const c10::intrusive_ptr<PackedLinear> &self) -> PackedState {
                at::Tensor keep = at::zeros({self->rows(), self->cols()}, at::kBool);
                keep.view(-1).index_fill_(0, self->kept_index(), true);
                return PackedState(PackedMeta(self->name(), self->pattern(), (int64_t)self->fallback()),
                                   self->dense(self->values()), keep);
            },
            [](PackedState s) -> c10::intrusive_ptr<PackedLinear> {
                const PackedMeta &meta = std::get<0>(s);
                const std::string &name = std::get<0>(meta);
                sp_error err{};
                sp_pattern layout;
                TORCH_CHECK(sp_pattern_parse(&layout, std::get<1>(meta).c_str(), &err) == SP_OK,
                            sp_bridge::kLinearOp, " '", name, "': ", err.msg);
                auto p = PackedLinear::make(name, std::get<1>(s), std::get<2>(s),
                                            (sp_fallback)std::get<2>(meta), &err, &layout);
                TORCH_CHECK(p, sp_bridge::kLinearOp, " '", name, "': ", err.msg);
                return p;
            });
    m.def("linear(Tensor input, Tensor values, Tensor? bias, "
          "__torch__.torch.classes.sparsify.PackedLinear packed) -> Tensor");
}

TORCH_LIBRARY_IMPL(sparsify, CPU, m) { m.impl("linear", TORCH_FN(sp_bridge::linear_cpu)); }

TORCH_LIBRARY_IMPL(sparsify, Autograd, m) { m.impl("linear", TORCH_FN(sp_bridge::sparse_linear)); }
