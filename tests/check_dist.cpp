/*
 * tests/check_dist.cpp — the data-parallel layer of the bridge (bridge/dist.h)
 * on real c10d: two ranks in two threads of this process, meeting on
 * 127.0.0.1 (a free port from the kernel) over ProcessGroupGloo.
 *
 * Gradient synchronisation against the gradients each rank computes alone:
 * after step_end every parameter's gradient is the mean over the ranks, the
 * same on both, with several buckets (more than 1 MiB of float32, and a
 * float64 parameter in a bucket of its own), a parameter forward never
 * reads, and a rank that has no samples (no backward at all); the step's
 * loss sums and counts are summed over the ranks. Broadcast, gather and
 * strings from rank 0. A rank that goes away makes the other's collective
 * fail with one line naming it.
 */
#include <torch/torch.h>

#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge/common.h"
#include "bridge/dist.h"

/* after libtorch: check.h defines a macro `fail` */
#include <check.h>

using sp_bridge::Dist;
using sp_bridge::DistOptions;

namespace {

int free_port()
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, (sockaddr *)&a, sizeof a);
    getsockname(fd, (sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

DistOptions opts(int rank, int port, double timeout = 30)
{
    DistOptions o;
    o.rank = rank;
    o.world = 2;
    o.addr = "127.0.0.1";
    o.port = port;
    o.backend = "gloo";
    o.timeout_s = timeout;
    return o;
}

/* A small model's parameters: w1 alone is over the first bucket's 1 MiB,
 * d is float64 (a bucket of its own), u is never read by forward. */
std::vector<at::Tensor> initial()
{
    at::manual_seed(11);
    return {at::randn({600, 600}) * 0.05, at::randn({600}), at::randn({300, 600}) * 0.05,
            at::randn({5}, at::kDouble), at::randn({10})};
}

struct Model {
    std::vector<at::Tensor> p;
    explicit Model(const std::vector<at::Tensor> &init)
    {
        for (const auto &t : init)
            p.push_back(t.clone().requires_grad_(true));
    }
    at::Tensor loss(const at::Tensor &x) const
    {
        at::Tensor h = at::relu(at::matmul(x, p[0].t()) + p[1]);
        at::Tensor y = at::matmul(h, p[2].t());
        return y.pow(2).mean() + p[3].sum().to(at::kFloat) * x.mean();
    }
    void zero_grad()
    {
        for (auto &t : p)
            if (t.grad().defined())
                t.mutable_grad().zero_();
    }
    std::vector<at::Tensor> grads() const
    {
        std::vector<at::Tensor> g;
        for (const auto &t : p)
            g.push_back(t.grad().defined() ? t.grad().clone() : at::zeros_like(t));
        return g;
    }
};

at::Tensor input(int rank, int step) { return at::randn({8, 600}, at::TensorOptions()).mul(1 + rank + step); }

/* Run f(rank) on two threads (rank 1 on its own); exceptions become
 * failures. */
void two_ranks(const std::function<void(int)> &f)
{
    std::string err1;
    std::thread t([&] {
        try {
            f(1);
        } catch (const std::exception &e) {
            err1 = e.what();
        } catch (const sp_bridge::Failed &) {
            err1 = "Failed";
        }
    });
    f(0);
    t.join();
    ck_assert_msg(err1.empty(), "rank 1: %s", err1.c_str());
}

} // namespace

START_TEST(test_gradients)
{
    const int port = free_port();
    const std::vector<at::Tensor> init = initial();
    std::vector<at::Tensor> xs[2][2];
    /* every rank's local gradients, computed alone first */
    std::vector<at::Tensor> local[2][2];
    for (int r = 0; r < 2; r++)
        for (int s = 0; s < 2; s++) {
            at::manual_seed(100 + 10 * r + s);
            xs[r][s] = {input(r, s)};
            Model m(init);
            m.loss(xs[r][s][0]).backward();
            local[r][s] = m.grads();
        }
    std::vector<at::Tensor> got[2][2];
    double sums[2][2][2];
    two_ranks([&](int rank) {
        sp_error err{};
        Dist d(opts(rank, port), c10::Device(c10::kCPU), &err);
        Model m(init);
        d.attach(m.p);
        for (int s = 0; s < 2; s++) {
            m.zero_grad();
            /* step 1: rank 1 has no samples (no forward, no backward) */
            const bool none = s == 1 && rank == 1;
            at::Tensor loss = none ? at::Tensor() : m.loss(xs[rank][s][0]);
            d.step_begin(none ? 0.0 : loss.item<double>() * 8, none ? 0.0 : 8.0);
            if (!none)
                loss.backward();
            d.step_end(&sums[rank][s][0], &sums[rank][s][1]);
            got[rank][s] = m.grads();
        }
    });
    for (int s = 0; s < 2; s++) {
        ck_assert_msg(sums[0][s][1] == (s == 0 ? 16.0 : 8.0) && sums[1][s][1] == sums[0][s][1],
                      "step %d: sample counts %g, %g", s, sums[0][s][1], sums[1][s][1]);
        ck_assert(sums[0][s][0] == sums[1][s][0]);
        for (size_t i = 0; i < got[0][s].size(); i++) {
            at::Tensor want = s == 0 ? (local[0][s][i] + local[1][s][i]) / 2 : local[0][s][i] / 2;
            ck_assert_msg(at::equal(got[0][s][i], got[1][s][i]),
                          "step %d, parameter %zu: the ranks' gradients differ", s, i);
            double e = (got[0][s][i] - want).abs().max().item<double>();
            double scale = std::max(1e-30, want.abs().max().item<double>());
            ck_assert_msg(e <= 1e-6 * scale, "step %d, parameter %zu: %g from the mean (scale %g)",
                          s, i, e, scale);
        }
        /* the unused parameter: zeros on both */
        ck_assert(got[0][s][4].abs().max().item<double>() == 0);
    }
}
END_TEST

START_TEST(test_collectives)
{
    const int port = free_port();
    std::string strs[2];
    std::vector<uint64_t> gathered[2];
    at::Tensor bc[2], other[2], sum[2];
    int ints[2];
    bool who[2];
    /* no assertion inside the threads: Check's failures must not jump
     * across them */
    two_ranks([&](int rank) {
        sp_error err{};
        Dist d(opts(rank, port), c10::Device(c10::kCPU), &err);
        who[rank] = d.rank() == rank && d.root() == (rank == 0);
        strs[rank] = d.broadcast_string(rank == 0 ? "fc1\nfc2\n" : "other");
        gathered[rank] = d.allgather(1000 + (uint64_t)rank);
        bc[rank] = at::full({3}, (double)rank);
        other[rank] = at::full({2}, (int64_t)rank + 7);
        d.broadcast({bc[rank], other[rank]});
        sum[rank] = at::full({4}, 1.5 * (rank + 1), at::kDouble);
        d.allreduce_sum(sum[rank]);
        ints[rank] = d.broadcast_int(rank == 0 ? 42 : -1);
    });
    for (int r = 0; r < 2; r++) {
        ck_assert(who[r]);
        ck_assert(other[r].eq(7).all().item<bool>());
        ck_assert_str_eq(strs[r].c_str(), "fc1\nfc2\n");
        ck_assert(gathered[r] == (std::vector<uint64_t>{1000, 1001}));
        ck_assert(bc[r].eq(0).all().item<bool>());
        ck_assert(sum[r].eq(4.5).all().item<bool>());
        ck_assert_int_eq(ints[r], 42);
    }
}
END_TEST

START_TEST(test_lost_rank)
{
    const int port = free_port();
    std::string msg;
    bool threw = false;
    sp_status st = SP_OK;
    two_ranks([&](int rank) {
        sp_error err{};
        if (rank == 1) {
            Dist d(opts(1, port), c10::Device(c10::kCPU), &err);
            return; /* goes away: its process group closes its connections */
        }
        Dist d(opts(0, port), c10::Device(c10::kCPU), &err);
        d.set_where("epoch 3, step 7");
        usleep(300000);
        at::Tensor t = at::ones({1000});
        try {
            for (int i = 0; i < 50; i++)
                d.allreduce_sum(t);
        } catch (const sp_bridge::Failed &f) {
            threw = true;
            msg = err.msg;
            st = f.st;
        }
    });
    ck_assert_int_eq(st, SP_ERR_IO);
    ck_assert_msg(threw, "rank 0's collective did not fail");
    ck_assert_msg(msg.find("rank 0 of 2: lost contact with the other ranks at epoch 3, step 7") == 0 &&
                      msg.find('\n') == std::string::npos,
                  "message: %s", msg.c_str());
}
END_TEST

START_TEST(test_nobody_joins)
{
    sp_error err{};
    bool threw = false;
    try {
        Dist d(opts(0, free_port(), 1), c10::Device(c10::kCPU), &err);
    } catch (const sp_bridge::Failed &f) {
        threw = true;
        ck_assert_int_eq(f.st, SP_ERR_IO);
    }
    ck_assert(threw);
    ck_assert_msg(strstr(err.msg, "not every rank joined the rendezvous") &&
                      strstr(err.msg, "--dist-timeout 1 s"),
                  "message: %s", err.msg);
}
END_TEST

int main()
{
    Suite *s = suite_create("dist");
    struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"Dist_gradients", test_gradients},
        {"Dist_collectives", test_collectives},
        {"Dist_lost_rank", test_lost_rank},
        {"Dist_rendezvous_timeout", test_nobody_joins},
    };
    for (const auto &c : cases) {
        TCase *tc = tcase_create(c.name);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, c.fn);
        suite_add_tcase(s, tc);
    }
    at::set_num_threads(1);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
