/* Helpers of the libtorch bridge (common.h). */
#include "bridge/common.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include <unistd.h>

namespace sp_bridge {

void fail(sp_error *err, sp_status st, const char *fmt, ...)
{
    char buf[SP_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sp_error_set(err, st, "%s", buf);
    throw Failed{st};
}

std::string torch_msg(const std::exception &e)
{
    std::string s;
    if (auto *ce = dynamic_cast<const c10::Error *>(&e))
        s = ce->what_without_backtrace();
    else
        s = e.what();
    std::vector<std::string> lines;
    size_t p = 0;
    while (p <= s.size()) {
        size_t nl = s.find('\n', p);
        if (nl == std::string::npos)
            nl = s.size();
        std::string line = s.substr(p, nl - p);
        while (!line.empty() && (line.back() == ' ' || line.back() == '\r'))
            line.pop_back();
        size_t b = line.find_first_not_of(' ');
        if (b != std::string::npos)
            lines.push_back(line.substr(b));
        p = nl + 1;
    }
    std::string out = lines.empty() ? std::string("unknown libtorch error") : lines.back();
    if (lines.size() > 1 && out.find("Exception raised from") == 0)
        out = lines[lines.size() - 2];
    return out;
}

std::string shape_str(at::IntArrayRef s)
{
    std::string r = "[";
    for (size_t i = 0; i < s.size(); i++)
        r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

double now_ms()
{
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v)
{
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

torch::jit::Module load_module(const std::string &path, sp_error *err)
{
    if (access(path.c_str(), R_OK) != 0)
        fail(err, errno == ENOENT ? SP_ERR_NOT_FOUND : SP_ERR_IO, "cannot open '%s': %s",
             path.c_str(), strerror(errno));
    try {
        return torch::jit::load(path, torch::Device(torch::kCPU));
    } catch (const std::exception &e) {
        fail(err, SP_ERR_FORMAT, "'%s': not a TorchScript archive that libtorch can load: %s",
             path.c_str(), torch_msg(e).c_str());
    }
}

at::Tensor dataset_inputs(const sp_dataset &ds)
{
    std::vector<int64_t> shape{ds.n};
    for (int d = 0; d < ds.sample_ndim; d++)
        shape.push_back(ds.sample_shape[d]);
    return torch::from_blob(ds.x, shape, torch::kFloat).clone();
}

at::Tensor probe_model(torch::jit::Module &m, const at::Tensor &x, const char *model_path,
                       const char *data_path, int64_t width, sp_error *err)
{
    at::Tensor xb = x.narrow(0, 0, std::min<int64_t>(2, x.size(0)));
    try {
        torch::NoGradGuard ng;
        c10::IValue r = m.forward({xb});
        if (!r.isTensor())
            fail(err, SP_ERR_UNSUPPORTED, "model '%s': forward must return one tensor (it returns %s)",
                 model_path, r.tagKind().c_str());
        return r.toTensor();
    } catch (const Failed &) {
        throw;
    } catch (const std::exception &e) {
        fail(err, SP_ERR_INVALID_ARG,
             "'%s': the model does not accept inputs of shape %s (%lld values per sample): %s",
             data_path, shape_str(xb.sizes()).c_str(), (long long)width, torch_msg(e).c_str());
    }
}

} // namespace sp_bridge
