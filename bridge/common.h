/*
 * bridge/common.h — helpers shared by the C++ files of the libtorch bridge
 * (internal): errors that unwind to the C API, libtorch messages cut to
 * their useful line, timing.
 *
 * Inside the bridge a failure fills the caller's sp_error and throws Failed;
 * each C entry point (sp_train_run, sp_run) catches it and returns the
 * status, so no C++ exception ever crosses into C.
 */
#ifndef SPARSIFY_BRIDGE_COMMON_H
#define SPARSIFY_BRIDGE_COMMON_H

#include <ATen/ATen.h>
#include <torch/script.h>

#include <exception>
#include <string>
#include <vector>

#include "bridge/data.h"
#include "sparsify/common.h"

namespace sp_bridge {

/* Thrown after sp_error_set has filled the caller's error. */
struct Failed {
    sp_status st;
};

[[noreturn]] void fail(sp_error *err, sp_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The useful line of a libtorch/TorchScript error: the last non-empty line
 * without the backtrace ("mat1 and mat2 shapes cannot be multiplied ..."). */
std::string torch_msg(const std::exception &e);

/* "[2, 63]" */
std::string shape_str(at::IntArrayRef s);

double now_ms();
double median(std::vector<double> v);

/* A TorchScript archive, loaded on the CPU. Fails with SP_ERR_NOT_FOUND /
 * SP_ERR_IO (cannot open) or SP_ERR_FORMAT (not loadable), naming path. */
torch::jit::Module load_module(const std::string &path, sp_error *err);

/* The inputs of a dataset as [n, sample shape...] float32 (a copy). */
at::Tensor dataset_inputs(const sp_dataset &ds);

/* Run forward on the first (at most two) samples of x: the output, or a
 * clear error when the model does not take the data (SP_ERR_INVALID_ARG,
 * naming data_path and the shape) or returns no tensor (SP_ERR_UNSUPPORTED). */
at::Tensor probe_model(torch::jit::Module &m, const at::Tensor &x, const char *model_path,
                       const char *data_path, int64_t width, sp_error *err);

/* Run f, turning Failed, bad_alloc and libtorch errors into a status (the
 * message of `what` prefixes a libtorch error). */
template <typename F>
sp_status guarded(sp_error *err, const char *what, F &&f)
{
    try {
        f();
        return SP_OK;
    } catch (const Failed &x) {
        return x.st;
    } catch (const std::bad_alloc &) {
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory during %s", what);
    } catch (const std::exception &e) {
        return sp_error_set(err, SP_ERR_INTERNAL, "libtorch: %s", torch_msg(e).c_str());
    }
}

} // namespace sp_bridge

#endif
