/* Data-parallel fine-tuning on libtorch's c10d (dist.h). */
#include "bridge/dist.h"

#include <ATen/core/grad_mode.h>

#include "bridge/common.h"

#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef SP_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>

namespace sp_bridge {

namespace {

/* DDP's bucket sizes (reducer.hpp: kDefaultFirstBucketBytes,
 * kDefaultBucketBytesCap): a small first bucket so that communication
 * starts early in backward, larger ones after it. */
constexpr size_t kFirstBucketBytes = 1u << 20;
constexpr size_t kBucketBytes = 25u << 20;

/* gloo prefixes its messages with "[./gloo/transport/tcp/pair.cc:598] ". */
std::string clean(std::string m)
{
    if (!m.empty() && m[0] == '[') {
        size_t e = m.find("] ");
        if (e != std::string::npos)
            m = m.substr(e + 2);
    }
    if (!m.empty() && m.back() == '.')
        m.pop_back();
    if (!m.empty() && m[0] >= 'A' && m[0] <= 'Z' && !(m.size() > 1 && m[1] >= 'A' && m[1] <= 'Z'))
        m[0] = (char)(m[0] - 'A' + 'a');
    return m;
}

/* "Address already in use" out of c10d's "... (errno: 98 - Address already
 * in use)", else the whole message. */
std::string errno_text(const std::string &m)
{
    size_t e = m.find("(errno: ");
    if (e != std::string::npos) {
        size_t d = m.find(" - ", e), c = m.find(')', e);
        if (d != std::string::npos && c != std::string::npos && d < c)
            return clean(m.substr(d + 3, c - d - 3));
    }
    return clean(m);
}

bool loopback(const std::string &addr)
{
    return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

} // namespace

bool dist_have_nccl()
{
#ifdef SP_HAVE_NCCL
    return true;
#else
    return false;
#endif
}

struct Dist::Impl {
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<c10d::ProcessGroup> pg;
    c10::Device device{c10::kCPU};

    struct Slot {
        at::Tensor param;
        size_t bucket = 0;
        int64_t offset = 0, numel = 0;
        bool ready = false;
        unsigned hook = 0;
    };
    struct Bucket {
        at::Tensor flat;
        std::vector<size_t> slots;
        size_t pending = 0;
        c10::intrusive_ptr<c10d::Work> work;
    };
    std::vector<Slot> slots;
    std::vector<Bucket> buckets;
    size_t next = 0;     /* first bucket not launched yet */
    double t_first = -1; /* first launch of the step */
    at::Tensor stats;
    c10::intrusive_ptr<c10d::Work> stats_work;
    std::exception_ptr hook_error; /* a launch that failed inside backward */
    std::mutex mu;
    bool broken = false; /* a collective failed: the group may hold stuck work */
};

Dist::Dist(const DistOptions &o, c10::Device device, sp_error *err)
    : o_(o), err_(err), where_("the start"), impl_(new Impl)
{
    impl_->device = device;
    const auto ms = std::chrono::milliseconds((int64_t)(o.timeout_s * 1000.0));
    c10d::TCPStoreOptions so;
    so.port = (uint16_t)o.port;
    so.isServer = o.rank == 0;
    so.numWorkers = (size_t)o.world;
    so.waitWorkers = true;
    so.timeout = ms;
    /* Every rank waits there for the others: rank 0 within the process
     * group's construction (TCPStore does not wait for its workers here). */
    auto not_joined = [&]() {
        if (o.rank == 0)
            fail(err_, SP_ERR_IO,
                 "rank 0 of %d: not every rank joined the rendezvous on port %d within "
                 "--dist-timeout %g s (start all %d with the same --master and --world-size)",
                 o.world, o.port, o.timeout_s, o.world);
        fail(err_, SP_ERR_IO,
             "rank %d of %d: not every rank joined the rendezvous at %s:%d within "
             "--dist-timeout %g s (start all %d with the same --master and --world-size)",
             o.rank, o.world, o.addr.c_str(), o.port, o.timeout_s, o.world);
    };
    try {
        impl_->store = c10::make_intrusive<c10d::TCPStore>(o.addr, so);
    } catch (const std::exception &e) {
        std::string m = torch_msg(e);
        if (o.rank == 0 && (m.find("bind") != std::string::npos ||
                            m.find("listen") != std::string::npos))
            fail(err_, SP_ERR_IO, "rank 0 of %d: cannot serve the rendezvous on port %d: %s",
                 o.world, o.port, errno_text(m).c_str());
        if (o.rank == 0)
            not_joined();
        fail(err_, SP_ERR_IO,
             "rank %d of %d: cannot reach the rendezvous at %s:%d within --dist-timeout %g s "
             "(is rank 0 running?): %s",
             o.rank, o.world, o.addr.c_str(), o.port, o.timeout_s, clean(m).c_str());
    }
    try {
        if (o.backend == "gloo") {
            auto go = c10d::ProcessGroupGloo::Options::create(ms);
            /* PyTorch's choice of interface: GLOO_SOCKET_IFNAME, else the
             * loopback for a loopback rendezvous, else the host's name */
            const char *ifn = std::getenv("GLOO_SOCKET_IFNAME");
            if (ifn && *ifn) {
                std::string s = ifn;
                for (size_t p = 0; p <= s.size();) {
                    size_t c = std::min(s.find(',', p), s.size());
                    if (c > p)
                        go->devices.push_back(
                            c10d::ProcessGroupGloo::createDeviceForInterface(s.substr(p, c - p)));
                    p = c + 1;
                }
            } else if (loopback(o.addr)) {
                go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
            } else {
                go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
            }
            impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, o.rank, o.world, go);
        } else {
#ifdef SP_HAVE_NCCL
            auto no = c10d::ProcessGroupNCCL::Options::create();
            no->timeout = ms;
            impl_->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, o.rank, o.world, no);
#else
            fail(err_, SP_ERR_UNSUPPORTED, "--backend nccl: this libtorch has no NCCL");
#endif
        }
    } catch (const Failed &) {
        throw;
    } catch (const std::exception &e) {
        impl_->broken = true;
        std::string m = clean(torch_msg(e));
        if (m.find("imeout") != std::string::npos || m.find("imed out") != std::string::npos)
            not_joined();
        fail(err_, SP_ERR_IO, "rank %d of %d: cannot connect to the other ranks (%s): %s", o.rank,
             o.world, o.backend.c_str(), m.c_str());
    }
}

Dist::~Dist()
{
    detach();
    /* After a failed collective the process group may still hold work that
     * waits out its timeout, and its destructor would join those threads:
     * the process is about to report the failure and exit, so it is left
     * to the exit rather than waited for. */
    if (impl_->broken) {
        (void)impl_->pg.release();
        (void)impl_->store.release();
    }
}

void Dist::lost(const std::exception &e)
{
    impl_->broken = true;
    std::string m = clean(torch_msg(e));
    if (m.find("imed out") != std::string::npos || m.find("imeout") != std::string::npos)
        fail(err_, SP_ERR_IO,
             "rank %d of %d: no answer from the other ranks within --dist-timeout %g s at %s "
             "(a rank stopped or hangs): %s",
             o_.rank, o_.world, o_.timeout_s, where_.c_str(), m.c_str());
    fail(err_, SP_ERR_IO, "rank %d of %d: lost contact with the other ranks at %s: %s", o_.rank,
         o_.world, where_.c_str(), m.c_str());
}

void Dist::broadcast(const std::vector<at::Tensor> &ts)
{
    at::NoGradGuard ng;
    std::map<at::ScalarType, std::vector<at::Tensor>> by;
    for (const at::Tensor &t : ts)
        if (t.defined() && t.numel() > 0)
            by[t.scalar_type()].push_back(t);
    try {
        for (auto &kv : by) {
            std::vector<at::Tensor> flat_parts;
            for (const at::Tensor &t : kv.second)
                flat_parts.push_back(t.detach().reshape({-1}).to(impl_->device));
            std::vector<at::Tensor> v{at::cat(flat_parts)};
            c10d::BroadcastOptions bo;
            bo.rootRank = 0;
            impl_->pg->broadcast(v, bo)->wait();
            int64_t off = 0;
            for (const at::Tensor &t : kv.second) {
                at::Tensor d = t.detach();
                d.copy_(v[0].narrow(0, off, t.numel()).view(t.sizes()));
                off += t.numel();
            }
        }
    } catch (const Failed &) {
        throw;
    } catch (const std::exception &e) {
        lost(e);
    }
}

void Dist::allreduce_sum(at::Tensor &t)
{
    try {
        std::vector<at::Tensor> v{t};
        impl_->pg->allreduce(v)->wait();
    } catch (const std::exception &e) {
        lost(e);
    }
}

std::vector<uint64_t> Dist::allgather(uint64_t v)
{
    auto opt = at::TensorOptions().dtype(at::kLong).device(impl_->device);
    std::vector<at::Tensor> in{at::full({1}, (int64_t)v, opt)};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < o_.world; r++)
        out[0].push_back(at::zeros({1}, opt));
    try {
        impl_->pg->allgather(out, in)->wait();
    } catch (const std::exception &e) {
        lost(e);
    }
    std::vector<uint64_t> r;
    for (const at::Tensor &t : out[0])
        r.push_back((uint64_t)t.cpu().item<int64_t>());
    return r;
}

int Dist::broadcast_int(int v)
{
    at::Tensor t = at::full({1}, (int64_t)v, at::TensorOptions().dtype(at::kLong).device(impl_->device));
    broadcast({t});
    return (int)t.cpu().item<int64_t>();
}

std::string Dist::broadcast_string(const std::string &s)
{
    auto opt = at::TensorOptions().dtype(at::kLong).device(impl_->device);
    at::Tensor n = at::full({1}, (int64_t)s.size(), opt);
    broadcast({n});
    int64_t len = n.cpu().item<int64_t>();
    if (len == 0)
        return std::string();
    at::Tensor b = at::zeros({len}, at::TensorOptions().dtype(at::kByte));
    if (root())
        std::memcpy(b.data_ptr<uint8_t>(), s.data(), (size_t)len);
    b = b.to(impl_->device);
    broadcast({b});
    b = b.cpu();
    return std::string((const char *)b.data_ptr<uint8_t>(), (size_t)len);
}

void Dist::detach()
{
    for (Impl::Slot &s : impl_->slots)
        s.param.remove_hook(s.hook);
    impl_->slots.clear();
    impl_->buckets.clear();
    impl_->next = 0;
}

void Dist::attach(const std::vector<at::Tensor> &params)
{
    detach();
    Impl &I = *impl_;
    /* Buckets by (dtype, device), filled in reverse parameter order. */
    std::map<std::pair<int, std::string>, size_t> open;
    std::vector<std::vector<size_t>> members;
    std::vector<size_t> bytes;
    for (size_t k = params.size(); k-- > 0;) {
        const at::Tensor &p = params[k];
        Impl::Slot s;
        s.param = p;
        s.numel = p.numel();
        auto key = std::make_pair((int)p.scalar_type(), p.device().str());
        size_t cap = I.buckets.empty() ? kFirstBucketBytes : kBucketBytes;
        auto it = open.find(key);
        if (it == open.end() || bytes[it->second] >= cap) {
            I.buckets.emplace_back();
            members.emplace_back();
            bytes.push_back(0);
            open[key] = I.buckets.size() - 1;
            it = open.find(key);
        }
        size_t b = it->second;
        s.bucket = b;
        s.offset = 0;
        for (size_t j : members[b])
            s.offset += I.slots[j].numel;
        bytes[b] += (size_t)p.numel() * p.element_size();
        members[b].push_back(I.slots.size());
        I.slots.push_back(s);
    }
    for (size_t b = 0; b < I.buckets.size(); b++) {
        Impl::Bucket &bk = I.buckets[b];
        int64_t n = 0;
        for (size_t j : members[b])
            n += I.slots[j].numel;
        const at::Tensor &p0 = I.slots[members[b][0]].param;
        bk.flat = at::zeros({n}, at::TensorOptions().dtype(p0.scalar_type()).device(p0.device()));
        bk.slots = members[b];
        bk.pending = bk.slots.size();
    }
    for (size_t j = 0; j < I.slots.size(); j++)
        I.slots[j].hook = I.slots[j].param.register_hook(
            [this, j](const at::Tensor &g) { this->ready(j, g); });
}

/* A gradient is complete (autograd calls this once per parameter and
 * backward): into its bucket, divided by the world size. */
void Dist::ready(size_t slot, const at::Tensor &g)
{
    Impl &I = *impl_;
    std::lock_guard<std::mutex> lock(I.mu);
    Impl::Slot &s = I.slots[slot];
    if (s.ready || !g.defined())
        return;
    at::NoGradGuard ng;
    at::Tensor view = I.buckets[s.bucket].flat.narrow(0, s.offset, s.numel);
    view.copy_(g.reshape({-1}));
    view.div_(o_.world);
    s.ready = true;
    if (--I.buckets[s.bucket].pending == 0)
        launch_ready();
}

/* Launch the complete buckets in index order (the same order on every
 * rank, whatever order their gradients came in). Called with mu held. */
void Dist::launch_ready()
{
    Impl &I = *impl_;
    while (I.next < I.buckets.size() && I.buckets[I.next].pending == 0) {
        Impl::Bucket &b = I.buckets[I.next];
        if (I.t_first < 0)
            I.t_first = now_ms();
        try {
            std::vector<at::Tensor> v{b.flat};
            b.work = I.pg->allreduce(v);
        } catch (...) {
            if (!I.hook_error)
                I.hook_error = std::current_exception();
        }
        I.next++;
    }
}

void Dist::step_begin(double loss_sum, double count)
{
    Impl &I = *impl_;
    I.t_first = -1;
    I.hook_error = nullptr;
    I.stats = at::tensor({loss_sum, count}, at::TensorOptions().dtype(at::kDouble)).to(I.device);
    try {
        std::vector<at::Tensor> v{I.stats};
        I.stats_work = I.pg->allreduce(v);
    } catch (const std::exception &e) {
        lost(e);
    }
}

void Dist::step_end(double *loss_sum, double *count)
{
    Impl &I = *impl_;
    {
        std::lock_guard<std::mutex> lock(I.mu);
        /* parameters backward did not reach (or a rank with no samples):
         * zeros, so that every bucket is reduced on every rank */
        at::NoGradGuard ng;
        for (Impl::Bucket &b : I.buckets)
            for (size_t j : b.slots) {
                Impl::Slot &s = I.slots[j];
                if (s.ready)
                    continue;
                b.flat.narrow(0, s.offset, s.numel).zero_();
                s.ready = true;
                b.pending--;
            }
        launch_ready();
    }
    double t0 = now_ms();
    try {
        if (I.hook_error)
            std::rethrow_exception(I.hook_error);
        I.stats_work->wait();
        for (Impl::Bucket &b : I.buckets)
            if (b.work)
                b.work->wait();
    } catch (const std::exception &e) {
        lost(e);
    }
    double t1 = now_ms();
    wait_ms_ = t1 - t0;
    comm_ms_ = I.t_first >= 0 ? t1 - I.t_first : 0;
    at::Tensor st = I.stats.cpu();
    *loss_sum = st[0].item<double>();
    *count = st[1].item<double>();
    at::NoGradGuard ng;
    for (Impl::Bucket &b : I.buckets) {
        for (size_t j : b.slots) {
            Impl::Slot &s = I.slots[j];
            at::Tensor v = b.flat.narrow(0, s.offset, s.numel).view(s.param.sizes());
            at::Tensor &g = s.param.mutable_grad();
            if (g.defined())
                g.copy_(v);
            else
                g = v.clone();
            s.ready = false;
        }
        b.pending = b.slots.size();
        b.work.reset();
    }
    I.next = 0;
}

} // namespace sp_bridge
#else /* no gloo headers at build time: distributed runs are refused */

namespace sp_bridge {

bool dist_have_nccl() { return false; }
struct Dist::Impl {};
Dist::Dist(const DistOptions &o, c10::Device, sp_error *err) : o_(o), err_(err)
{
    fail(err_, SP_ERR_UNSUPPORTED,
         "this sparsify was built without c10d's gloo process group, so it cannot train on "
         "%d processes; install libgloo-dev and reconfigure",
         o.world);
}
Dist::~Dist() = default;
void Dist::lost(const std::exception &) { fail(err_, SP_ERR_INTERNAL, "no process group"); }
void Dist::broadcast(const std::vector<at::Tensor> &) {}
void Dist::allreduce_sum(at::Tensor &) {}
std::vector<uint64_t> Dist::allgather(uint64_t v) { return {v}; }
std::string Dist::broadcast_string(const std::string &s) { return s; }
int Dist::broadcast_int(int v) { return v; }
void Dist::attach(const std::vector<at::Tensor> &) {}
void Dist::detach() {}
void Dist::ready(size_t, const at::Tensor &) {}
void Dist::launch_ready() {}
void Dist::step_begin(double, double) {}
void Dist::step_end(double *, double *) {}

} // namespace sp_bridge

#endif
