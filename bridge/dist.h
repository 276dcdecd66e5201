/*
 * bridge/dist.h — data-parallel fine-tuning on libtorch's c10d (internal to
 * the bridge; docs/finetune.md describes it for users).
 *
 * One Dist per process: a rendezvous on c10d's TCPStore (rank 0 serves it
 * at the master address) and a c10d process group (ProcessGroupGloo on the
 * CPU; ProcessGroupNCCL where the libtorch in use was built with it). On top
 * of its collectives:
 *
 *  - gradient synchronisation in the manner of DDP's Reducer (PyTorch's
 *    torch/csrc/distributed/c10d/reducer.cpp, whose header Debian's
 *    libtorch cannot compile): the trained parameters are grouped, in
 *    reverse order (the order backward produces their gradients), into
 *    buckets of one dtype and device (the first up to 1 MiB, the others up
 *    to 25 MiB, DDP's defaults); a hook on each parameter copies its gradient,
 *    divided by the world size, into its bucket when autograd has computed
 *    it, and a bucket whose gradients are all there is all-reduced at once,
 *    asynchronously, while backward goes on (buckets are launched strictly
 *    in order, so every rank issues the same collectives in the same order).
 *    After backward, parameters that got no gradient contribute zeros, the
 *    remaining buckets are launched, every one is waited for and the
 *    averaged gradients are copied back into .grad;
 *  - per-step statistics (loss sum and sample count over all ranks), so
 *    every rank sees the same global loss;
 *  - broadcasts from rank 0, gathers of checksums, sums.
 *
 * A failed collective (a worker that died, or gave no answer within the
 * timeout) throws Failed with one line naming this rank and where the run
 * was (set_where), e.g. "rank 0 of 2: lost contact with the other workers
 * at epoch 2, step 5 (connection closed by peer)".
 */
#ifndef SPARSIFY_BRIDGE_DIST_H
#define SPARSIFY_BRIDGE_DIST_H

#include <ATen/ATen.h>
#include <c10/core/Device.h>

#include <memory>
#include <string>
#include <vector>

#include "sparsify/common.h"

namespace sp_bridge {

struct DistOptions {
    int rank = 0;
    int world = 1;
    std::string addr; /* rendezvous host (rank 0's) */
    int port = 0;
    std::string backend; /* "gloo" or "nccl" */
    double timeout_s = 300;
};

/* Whether this libtorch has the NCCL process group (a CUDA build). */
bool dist_have_nccl();

class Dist {
  public:
    /* Rendezvous with the other ranks and build the process group; blocks
     * until every rank has joined or the timeout passes. Throws Failed with
     * err filled: SP_ERR_IO (cannot serve or reach the rendezvous, not every
     * rank joined in time), SP_ERR_UNSUPPORTED (backend not in this
     * libtorch). */
    Dist(const DistOptions &o, c10::Device device, sp_error *err);
    ~Dist();
    Dist(const Dist &) = delete;
    Dist &operator=(const Dist &) = delete;

    int rank() const { return o_.rank; }
    int world() const { return o_.world; }
    bool root() const { return o_.rank == 0; }
    const std::string &backend() const { return o_.backend; }
    /* Where the run is, for messages ("epoch 2, step 5"). */
    void set_where(const std::string &w) { where_ = w; }

    /* Blocking collectives, in place; every rank must call them in the same
     * order. broadcast: rank 0's values (tensors of any dtypes, flattened
     * per dtype into one message each). */
    void broadcast(const std::vector<at::Tensor> &ts);
    void allreduce_sum(at::Tensor &t);
    std::vector<uint64_t> allgather(uint64_t v);
    std::string broadcast_string(const std::string &s);
    int broadcast_int(int v);

    /* Gradient synchronisation over params (the optimizer's, in its order;
     * replaces the previous set). */
    void attach(const std::vector<at::Tensor> &params);
    void detach();
    /* One training step: step_begin before backward (this rank's loss sum
     * and sample count, reduced meanwhile), step_end after it (or instead of
     * it, for a rank with no samples this step): the gradients of every
     * attached parameter are then the mean over the ranks, and *loss_sum,
     * *count the sums over the ranks. */
    void step_begin(double loss_sum, double count);
    void step_end(double *loss_sum, double *count);
    /* The last step: from the first bucket's launch to the last one's
     * completion, and how long step_end waited for them. */
    double step_comm_ms() const { return comm_ms_; }
    double step_wait_ms() const { return wait_ms_; }

  private:
    struct Impl;
    DistOptions o_;
    sp_error *err_;
    std::string where_;
    std::unique_ptr<Impl> impl_;
    double comm_ms_ = 0, wait_ms_ = 0;

    [[noreturn]] void lost(const std::exception &e);
    void ready(size_t slot, const at::Tensor &grad);
    void launch_ready();
};

} // namespace sp_bridge

#endif
