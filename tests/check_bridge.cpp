/*
 * tests/check_bridge.cpp — the sparse Linear operator (bridge/linear.h)
 * against libtorch's own dense Linear on the masked weight, forward and
 * backward: every layout the packer chooses (CSR, BCSR 4x1 / 1x4 / 4x4,
 * N:M 2:4), shapes around the kernels' tiles, batch 1 and odd batches,
 * bias on and off, sparse and dense plans; gradients also against central
 * differences (gradcheck-style); values changed in place between products
 * (the packed copy follows); inputs of rank 1 and 3; the operator through
 * the dispatcher (autograd and inference kernels); the custom class saved
 * and loaded inside a TorchScript module; bad inputs rejected with a message
 * naming the layer. Also the calibration pass of Wanda scores
 * (bridge/calibrate.h: norms against sums computed here, the model's
 * outputs unchanged, an untaken branch left out) and the per-layer
 * sparsity allocation of the sensitivity analysis (bridge/sensitivity.h:
 * optimal against brute force on convex curves, a concave curve
 * convexified by hand, exact budgets, errors).
 */
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "bridge/calibrate.h"
#include "bridge/common.h" /* Failed */
#include "bridge/linear.h"
#include "bridge/sensitivity.h"

/* after libtorch: check.h defines a macro `fail` */
#include <check.h>

using sp_bridge::PackedLinear;

namespace {

/* A random weight pruned to a pattern ("unstructured", "RxC", "N:M"). */
at::Tensor masked_weight(int64_t m, int64_t k, const std::string &pattern, double sparsity)
{
    at::Tensor w = at::randn({m, k});
    at::Tensor keep;
    if (pattern == "unstructured") {
        keep = at::rand({m, k}).ge(sparsity);
    } else if (pattern.find('x') != std::string::npos) {
        const int64_t r = std::stoll(pattern), c = std::stoll(pattern.substr(pattern.find('x') + 1));
        at::Tensor kb = at::rand({(m + r - 1) / r, (k + c - 1) / c}).ge(sparsity);
        keep = kb.repeat_interleave(r, 0).repeat_interleave(c, 1).narrow(0, 0, m).narrow(1, 0, k);
    } else {
        const int64_t n = std::stoll(pattern), g = std::stoll(pattern.substr(pattern.find(':') + 1));
        const int64_t kp = (k + g - 1) / g * g;
        at::Tensor score = at::rand({m, kp / g, g});
        at::Tensor idx = std::get<1>(score.topk(n, -1));
        keep = at::zeros({m, kp / g, g}, at::kBool).scatter_(-1, idx, true).reshape({m, kp}).narrow(1, 0, k);
    }
    return w * keep.to(at::kFloat);
}

double max_abs(const at::Tensor &t) { return t.numel() ? t.abs().max().item<double>() : 0.0; }

void expect_close(const at::Tensor &got, const at::Tensor &want, const std::string &what)
{
    ck_assert_msg(got.sizes() == want.sizes(), "%s: shape %s, want %s", what.c_str(),
                  c10::str(got.sizes()).c_str(), c10::str(want.sizes()).c_str());
    const double err = max_abs(got - want), scale = std::max(1.0, max_abs(want));
    ck_assert_msg(err <= 2e-5 * scale, "%s: max abs diff %g (scale %g)", what.c_str(), err, scale);
}

/* The operator and libtorch's dense Linear on the same masked weight:
 * output and the three gradients. */
void check_case(const std::string &pattern, double sparsity, int64_t m, int64_t k, int64_t batch,
                bool bias, sp_fallback fb, const char *want_layout, bool force_layout = false)
{
    const std::string what = pattern + " " + std::to_string(m) + "x" + std::to_string(k) +
                              " batch " + std::to_string(batch) + (bias ? " bias" : "") +
                              " fallback " + std::to_string((int)fb);
    at::Tensor w = masked_weight(m, k, pattern, sparsity);
    sp_error err{};
    sp_pattern forced;
    if (force_layout)
        ck_assert_int_eq(sp_pattern_parse(&forced, pattern.c_str(), &err), SP_OK);
    auto p = PackedLinear::make("layer", w, at::Tensor(), fb, &err, force_layout ? &forced : nullptr);
    ck_assert_msg(p, "%s: %s", what.c_str(), err.msg);
    if (want_layout)
        ck_assert_msg(p->layout() == want_layout, "%s: layout %s, want %s", what.c_str(),
                      p->layout().c_str(), want_layout);
    ck_assert_int_eq(p->nnz(), w.ne(0).sum().item<int64_t>());
    expect_close(p->dense(p->values()), w, what + ": dense(values)");

    at::Tensor values = p->values().requires_grad_(true);
    at::Tensor x = at::randn({batch, k}).requires_grad_(true);
    at::Tensor b = bias ? at::randn({m}).requires_grad_(true) : at::Tensor();
    /* reference: W = scatter(values) so that dW at the kept positions is
     * the values' gradient */
    at::Tensor vref = values.detach().clone().requires_grad_(true);
    at::Tensor xref = x.detach().clone().requires_grad_(true);
    at::Tensor bref = bias ? b.detach().clone().requires_grad_(true) : at::Tensor();
    at::Tensor wref = at::zeros({m * k}).index_put({p->kept_index()}, vref).view({m, k});

    at::Tensor y = sp_bridge::sparse_linear(x, values, bias ? c10::optional<at::Tensor>(b) : c10::nullopt, p);
    at::Tensor yref = at::linear(xref, wref, bref);
    expect_close(y, yref, what + ": forward");
    at::Tensor g = at::randn({batch, m});
    (y * g).sum().backward();
    (yref * g).sum().backward();
    expect_close(x.grad(), xref.grad(), what + ": grad input");
    expect_close(values.grad(), vref.grad(), what + ": grad values");
    if (bias)
        expect_close(b.grad(), bref.grad(), what + ": grad bias");

    /* values changed in place (as an optimizer does): the packed copies of
     * W and W^T follow, whether the version counter moves (AdamW) or not
     * (SGD writes through .data(), then values_changed() says so) */
    {
        torch::NoGradGuard ng;
        if (batch % 2) {
            values.mul_(-0.5);
        } else {
            values.data().mul_(-0.5);
            p->values_changed();
        }
        vref.mul_(-0.5);
    }
    x.mutable_grad() = at::Tensor();
    xref.mutable_grad() = at::Tensor();
    wref = at::zeros({m * k}).index_put({p->kept_index()}, vref).view({m, k});
    y = sp_bridge::sparse_linear(x, values, bias ? c10::optional<at::Tensor>(b) : c10::nullopt, p);
    yref = at::linear(xref, wref, bref);
    expect_close(y, yref, what + ": forward after an update");
    (y * g).sum().backward();
    (yref * g).sum().backward();
    expect_close(x.grad(), xref.grad(), what + ": grad input after an update");
}

} // namespace

START_TEST(test_layouts)
{
    at::GradMode::set_enabled(true); /* a failed test before may have left it off */
    torch::manual_seed(1);
    struct {
        const char *pattern;
        double sparsity;
        const char *layout;
        bool force;
    } pats[] = {
        /* the packer's own choice: exact blocks -> BCSR, else CSR (N:M too) */
        {"unstructured", 0.9, "csr", false}, {"unstructured", 0.5, "csr", false},
        {"4x1", 0.8, "bcsr 4x1", false},     {"1x4", 0.8, "bcsr 1x4", false},
        {"4x4", 0.7, "bcsr 4x4", false},     {"2:4", 0, "csr", false},
        /* a layout asked for */
        {"2:4", 0, "nm 2:4", true},          {"1x4", 0.8, "bcsr 1x4", true},
    };
    const int64_t shapes[][2] = {{3, 5}, {37, 70}, {64, 130}, {130, 300}};
    const int64_t batches[] = {1, 2, 3, 17, 64, 65};
    for (const auto &pt : pats)
        for (const auto &s : shapes)
            for (int64_t bt : batches)
                for (int bias = 0; bias < 2; bias++) {
                    /* tiny shapes: the pattern may degenerate (say, no zero at all) */
                    const char *want = s[0] >= 37 ? pt.layout : nullptr;
                    check_case(pt.pattern, pt.sparsity, s[0], s[1], bt, bias, SP_FALLBACK_NEVER,
                               pt.force ? pt.layout : want, pt.force);
                }
    /* the plans' dense path (libtorch mm) gives the same products */
    for (const auto &pt : pats)
        check_case(pt.pattern, pt.sparsity, 37, 70, 17, true, SP_FALLBACK_ALWAYS, pt.layout, pt.force);
}
END_TEST

/* Central differences of a scalar loss: the operator is linear in x and in
 * the values, so the difference quotient is exact up to rounding. Every
 * difference packs fresh values tensors, which the allocator may place
 * where the previous one was: the operator must still see them as new. */
START_TEST(test_gradcheck)
{
    at::GradMode::set_enabled(true); /* a failed test before may have left it off */
    torch::manual_seed(2);
    at::Tensor w = masked_weight(9, 13, "unstructured", 0.6);
    sp_error err{};
    auto p = PackedLinear::make("fd", w, at::Tensor(), SP_FALLBACK_NEVER, &err);
    ck_assert(p);
    at::Tensor values = p->values().requires_grad_(true), b = at::randn({9});
    at::Tensor x = at::randn({3, 13}).requires_grad_(true), g = at::randn({3, 9});
    auto loss = [&](const at::Tensor &xx, const at::Tensor &vv) {
        return (sp_bridge::sparse_linear(xx, vv, b, p) * g).sum();
    };
    loss(x, values).backward();
    const double eps = 1e-2;
    torch::NoGradGuard ng;
    for (int64_t i = 0; i < values.numel(); i += 3) {
        at::Tensor vp = values.detach().clone(), vm = values.detach().clone();
        vp[i] += eps;
        vm[i] -= eps;
        const double fd = (loss(x.detach(), vp).item<double>() - loss(x.detach(), vm).item<double>()) / (2 * eps);
        ck_assert_msg(std::fabs(fd - values.grad()[i].item<double>()) < 2e-3 * (1 + std::fabs(fd)),
                      "d/dvalue[%lld]: %g vs %g", (long long)i, fd, values.grad()[i].item<double>());
    }
    for (int64_t i = 0; i < x.numel(); i += 5) {
        at::Tensor xp = x.detach().clone(), xm = x.detach().clone();
        xp.view(-1)[i] += eps;
        xm.view(-1)[i] -= eps;
        const double fd = (loss(xp, values.detach()).item<double>() - loss(xm, values.detach()).item<double>()) / (2 * eps);
        const double an = x.grad().view(-1)[i].item<double>();
        ck_assert_msg(std::fabs(fd - an) < 2e-3 * (1 + std::fabs(fd)), "d/dx[%lld]: %g vs %g",
                      (long long)i, fd, an);
    }
}
END_TEST

START_TEST(test_shapes)
{
    at::GradMode::set_enabled(true); /* a failed test before may have left it off */
    torch::manual_seed(3);
    at::Tensor w = masked_weight(20, 30, "unstructured", 0.8), b = at::randn({20});
    sp_error err{};
    auto p = PackedLinear::make("nd", w, at::Tensor(), SP_FALLBACK_AUTO, &err);
    ck_assert(p);
    at::Tensor v = p->values();
    at::Tensor x3 = at::randn({2, 3, 30}), x1 = at::randn({30});
    expect_close(sp_bridge::sparse_linear(x3, v, b, p), at::linear(x3, w, b), "rank 3");
    expect_close(sp_bridge::sparse_linear(x1, v, b, p), at::linear(x1, w, b), "rank 1");
    expect_close(sp_bridge::sparse_linear(at::randn({0, 30}), v, b, p), at::empty({0, 20}), "batch 0");
    /* a transposed input (this operator's own output layout) */
    at::Tensor xt = at::randn({30, 5}).t();
    expect_close(sp_bridge::sparse_linear(xt, v, b, p), at::linear(xt, w, b), "transposed input");
    /* an explicit keep-mask may keep zeros: they are values too */
    at::Tensor keep = w.ne(0);
    keep[0][0] = true;
    keep[1][1] = true;
    at::Tensor wz = w.clone();
    wz[0][0] = 0;
    wz[1][1] = 0;
    auto pk = PackedLinear::make("keep", wz, keep, SP_FALLBACK_NEVER, &err);
    ck_assert(pk);
    ck_assert_int_eq(pk->nnz(), keep.sum().item<int64_t>());
    expect_close(pk->dense(pk->values()), wz, "kept zeros");
}
END_TEST

START_TEST(test_dispatcher)
{
    at::GradMode::set_enabled(true); /* a failed test before may have left it off */
    torch::manual_seed(4);
    at::Tensor w = masked_weight(48, 40, "unstructured", 0.9), b = at::randn({48});
    sp_error err{};
    auto p = PackedLinear::make("disp", w, at::Tensor(), SP_FALLBACK_AUTO, &err);
    ck_assert(p);
    auto op = c10::Dispatcher::singleton()
                  .findSchemaOrThrow(sp_bridge::kLinearOp, "")
                  .typed<at::Tensor(const at::Tensor &, const at::Tensor &,
                                    const c10::optional<at::Tensor> &,
                                    const c10::intrusive_ptr<PackedLinear> &)>();
    at::Tensor x = at::randn({7, 40}).requires_grad_(true);
    at::Tensor v = p->values().requires_grad_(true);
    at::Tensor y = op.call(x, v, b, p);
    expect_close(y, at::linear(x.detach(), w, b), "dispatcher, autograd kernel");
    y.sum().backward();
    ck_assert(x.grad().defined() && v.grad().defined());
    {
        c10::InferenceMode im;
        at::Tensor xi = at::randn({5, 40});
        expect_close(op.call(xi, v.detach(), c10::nullopt, p), at::linear(xi, w), "inference kernel");
    }
    /* bad input: one line naming the layer */
    auto msg = [&](const at::Tensor &xx) {
        try {
            op.call(xx, v, b, p);
        } catch (const c10::Error &e) {
            return std::string(e.what_without_backtrace());
        }
        return std::string();
    };
    std::string m1 = msg(at::randn({2, 39}));
    ck_assert_msg(m1.find("'disp'") != std::string::npos && m1.find("39 features") != std::string::npos,
                  "width: %s", m1.c_str());
    std::string m2 = msg(at::randn({2, 40}, at::kDouble));
    ck_assert_msg(m2.find("float32") != std::string::npos, "dtype: %s", m2.c_str());
}
END_TEST

/* The packed weight is a TorchScript custom class: a module holding one
 * saves and loads it (its state: name, dense weight, keep-mask). */
START_TEST(test_pickle)
{
    at::GradMode::set_enabled(true); /* a failed test before may have left it off */
    torch::manual_seed(5);
    at::Tensor w = masked_weight(16, 24, "2:4", 0);
    sp_error err{};
    sp_pattern nm{SP_PATTERN_NM, 0, 0, 2, 4};
    auto p = PackedLinear::make("saved", w, at::Tensor(), SP_FALLBACK_AUTO, &err, &nm);
    ck_assert(p);
    torch::jit::Module m("holder");
    m.register_attribute("packed", c10::getCustomClassType<c10::intrusive_ptr<PackedLinear>>(),
                         c10::IValue(p));
    char path[] = "/tmp/check_bridge_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    m.save(path);
    torch::jit::Module back = torch::jit::load(path);
    unlink(path);
    auto q = back.attr("packed").toCustomClass<PackedLinear>();
    const std::string name = q->name(), layout = q->layout(), want = p->layout();
    ck_assert_str_eq(name.c_str(), "saved");
    ck_assert_str_eq(layout.c_str(), want.c_str());
    expect_close(q->dense(q->values()), w, "loaded weight");
}
END_TEST

START_TEST(test_calibration)
{
    torch::manual_seed(11);
    torch::jit::Module m("calib");
    m.register_parameter("w1", at::randn({6, 4}), false);
    m.register_parameter("w2", at::randn({3, 6}), false);
    m.register_parameter("w3", at::randn({6, 6}), false);
    m.register_parameter("cw", at::randn({2, 1, 3}), false);
    m.define(R"(
def forward(self, x):
    h = torch.relu(torch.linear(x, self.w1))
    c = torch.conv1d(x.unsqueeze(1), self.cw, None, 1, 1)
    if bool(x.sum() > 1e9):
        h = h + torch.linear(h, self.w3)
    return torch.linear(h, self.w2) + c.sum()
)");
    at::Tensor x = at::randn({300, 4});
    at::Tensor before = m.forward({x}).toTensor();
    sp_error err{};
    auto norms = sp_bridge::activation_norms(m, x, "calib.pt", "calib.csv", &err);
    ck_assert(at::equal(m.forward({x}).toTensor(), before)); /* the model is untouched */
    ck_assert_uint_eq(norms.size(), 3);                       /* w3: its branch never ran */
    std::map<std::string, at::Tensor> want;
    want["w1"] = x.to(at::kDouble).pow(2).sum(0).sqrt().to(at::kFloat);
    at::Tensor h = at::relu(at::linear(x, m.attr("w1").toTensor()));
    want["w2"] = h.to(at::kDouble).pow(2).sum(0).sqrt().to(at::kFloat);
    want["cw"] = x.to(at::kDouble).pow(2).sum().sqrt().reshape({1}).to(at::kFloat);
    for (const auto &n : norms) {
        ck_assert_msg(want.count(n.name), "unexpected weight %s", n.name.c_str());
        ck_assert_str_eq(n.op.c_str(), n.name == "cw" ? "conv" : "linear");
        ck_assert_msg(at::allclose(n.norms, want[n.name], 1e-6, 0), "norms of %s", n.name.c_str());
    }
    /* a model with no Linear product or convolution has nothing to observe */
    torch::jit::Module e("empty");
    e.define("def forward(self, x):\n    return x * 2\n");
    bool threw = false;
    try {
        sp_bridge::activation_norms(e, x, "empty.pt", "calib.csv", &err);
    } catch (const sp_bridge::Failed &f) {
        threw = f.st == SP_ERR_INVALID_ARG && std::string(err.msg).find("'empty.pt'") == 0;
    }
    ck_assert_msg(threw, "%s", err.msg);
}
END_TEST

/* Piecewise-linear value of a curve (with (0, 0)) at s. */
double curve_at(const sp_alloc_curve &c, double s)
{
    double x0 = 0, y0 = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (s <= c.sparsity[i] + 1e-12)
            return y0 + (c.damage[i] - y0) * (s - x0) / (c.sparsity[i] - x0);
        x0 = c.sparsity[i];
        y0 = c.damage[i];
    }
    return y0;
}

START_TEST(test_allocate)
{
    sp_error err{};
    /* convex curves on grids of whole weights: the rule's total damage is the
     * brute-force optimum over every whole-weight split of the budget */
    const double grid[5] = {0.2, 0.4, 0.6, 0.8, 1.0};
    const int64_t numel[3] = {10, 20, 5};
    std::srand(7);
    for (int trial = 0; trial < 40; trial++) {
        double dm[3][5];
        sp_alloc_curve c[3];
        for (int l = 0; l < 3; l++) {
            double d = 0, step = 0;
            for (int i = 0; i < 5; i++) {
                step += (double)(std::rand() % 100) / 50.0; /* rising steps: convex */
                d += step;
                dm[l][i] = d - (trial % 3 == 0 ? 0.5 : 0.0);
            }
            c[l] = sp_alloc_curve{numel[l], 5, grid, dm[l]};
        }
        const double target = 0.05 + 0.9 * (double)(trial % 10) / 9.0;
        double out[3];
        ck_assert_int_eq(sp_sparsity_allocate(c, 3, target, out, &err), SP_OK);
        const int64_t budget = (int64_t)std::floor(target * 35 + 0.5);
        int64_t k[3], sum = 0;
        double got = 0;
        for (int l = 0; l < 3; l++) {
            k[l] = (int64_t)std::llround(out[l] * (double)numel[l]);
            ck_assert(std::fabs(out[l] * (double)numel[l] - (double)k[l]) < 1e-9);
            sum += k[l];
            got += curve_at(c[l], out[l]);
        }
        ck_assert_int_eq(sum, budget);
        double best = 1e300;
        for (int64_t a = 0; a <= 10; a++)
            for (int64_t b = 0; b <= 20; b++) {
                const int64_t cc = budget - a - b;
                if (cc < 0 || cc > 5)
                    continue;
                best = std::min(best, curve_at(c[0], a / 10.0) + curve_at(c[1], b / 20.0) +
                                          curve_at(c[2], cc / 5.0));
            }
        ck_assert_msg(got <= best + 1e-9, "trial %d: %g > optimum %g", trial, got, best);
    }
    /* a concave curve is convexified: layer A's 50% point lies above the
     * chord to 90%, so A is worth pruning to 90% before B goes past 10% */
    const double sa[2] = {0.5, 0.9}, da[2] = {5, 6}, sb[2] = {0.5, 0.9}, db[2] = {4, 20};
    sp_alloc_curve ab[2] = {{100, 2, sa, da}, {100, 2, sb, db}};
    double out[2];
    ck_assert_int_eq(sp_sparsity_allocate(ab, 2, 0.5, out, &err), SP_OK);
    ck_assert_double_eq_tol(out[0], 0.9, 1e-12);
    ck_assert_double_eq_tol(out[1], 0.1, 1e-12);
    /* equal curves: the earlier layer first */
    sp_alloc_curve same[2] = {{100, 2, sb, db}, {100, 2, sb, db}};
    ck_assert_int_eq(sp_sparsity_allocate(same, 2, 0.3, out, &err), SP_OK);
    ck_assert_double_eq_tol(out[0], 0.5, 1e-12);
    ck_assert_double_eq_tol(out[1], 0.1, 1e-12);
    /* errors */
    ck_assert_int_eq(sp_sparsity_allocate(ab, 2, 0.95, out, &err), SP_ERR_INVALID_ARG);
    ck_assert_msg(std::string(err.msg).find("above what the measured sparsities reach") !=
                      std::string::npos, "%s", err.msg);
    ck_assert_int_eq(sp_sparsity_allocate(ab, 2, 1.5, out, &err), SP_ERR_INVALID_ARG);
    const double down[2] = {0.9, 0.5};
    sp_alloc_curve bad[1] = {{100, 2, down, da}};
    ck_assert_int_eq(sp_sparsity_allocate(bad, 1, 0.5, out, &err), SP_ERR_INVALID_ARG);
    const double nan2[2] = {1, NAN};
    sp_alloc_curve badd[1] = {{100, 2, sa, nan2}};
    ck_assert_int_eq(sp_sparsity_allocate(badd, 1, 0.5, out, &err), SP_ERR_INVALID_ARG);
}
END_TEST

int main()
{
    Suite *s = suite_create("bridge");
    struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"sparse_linear_layouts", test_layouts},
        {"sparse_linear_gradcheck", test_gradcheck},
        {"sparse_linear_shapes", test_shapes},
        {"sparsify_linear_op", test_dispatcher},
        {"PackedLinear_pickle", test_pickle},
        {"calibration_norms", test_calibration},
        {"sparsity_allocate", test_allocate},
    };
    for (const auto &c : cases) {
        TCase *tc = tcase_create(c.name);
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, c.fn);
        suite_add_tcase(s, tc);
    }
    at::set_num_threads(2);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
