/*
 * The run loop behind run.h: load, rewrite, run batch by batch, measure.
 */
#include "bridge/run.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "bridge/common.h"
#include "bridge/data.h"
#include "bridge/rewrite.h"
extern "C" {
#include "formats/ckpt_internal.h" /* sp_outfile: atomic output files */
}

namespace sp_bridge {
namespace {

/* VmRSS and VmHWM of this process, in MB (0 when /proc is not there). */
void resident_mb(double *rss, double *peak)
{
    *rss = *peak = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        long kb;
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            *rss = (double)kb / 1024.0;
        else if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            *peak = (double)kb / 1024.0;
    }
    fclose(f);
}

class Runner {
  public:
    Runner(const sp_run_opts *o, sp_run_result *r, sp_error *err) : o_(o), r_(r), err_(err) {}
    ~Runner() { sp_dataset_release(&ds_); }
    void run();

  private:
    const sp_run_opts *o_;
    sp_run_result *r_;
    sp_error *err_;
    sp_dataset ds_{};

    void check_opts();
    void write_output(const at::Tensor &out);
    void fill_layers(const std::vector<LayerInfo> &layers);
};

void Runner::check_opts()
{
    const sp_run_opts *o = o_;
    if (!o->model)
        fail(err_, SP_ERR_INVALID_ARG, "no model given");
    if (!o->data)
        fail(err_, SP_ERR_INVALID_ARG, "no data given (--data FILE)");
    if (o->batch_size < 1)
        fail(err_, SP_ERR_INVALID_ARG, "--batch-size: %lld must be at least 1",
             (long long)o->batch_size);
    if (o->warmup < 0 || o->repeat < 1)
        fail(err_, SP_ERR_INVALID_ARG, "--warmup must be >= 0 and --repeat >= 1");
    if (o->threads < 0)
        fail(err_, SP_ERR_INVALID_ARG, "--threads: %d is negative", o->threads);
    if (o->dense && (o->compare || o->nlayers))
        fail(err_, SP_ERR_INVALID_ARG, "--dense excludes %s", o->compare ? "--compare" : "--layers");
}

void Runner::run()
{
    check_opts();
    sp_status st = sp_dataset_load(&ds_, o_->data, o_->label_column, SP_LABEL_NONE, err_);
    if (st != SP_OK)
        throw Failed{st};
    if (o_->threads > 0)
        at::set_num_threads(o_->threads);
    at::Tensor x = dataset_inputs(ds_);

    torch::jit::Module dense = load_module(o_->model, err_);
    dense.eval();
    const bool use_dense = o_->dense || o_->compare, use_sparse = !o_->dense;
    if (use_dense)
        probe_model(dense, x, o_->model, o_->data, ds_.width, err_);

    torch::jit::Module sparse;
    if (use_sparse) {
        /* Alone, the sparse model is the loaded one rewritten in place, each
         * dense weight freed once packed; with --compare a clone sharing
         * every other tensor. */
        RewriteOptions ro;
        ro.batch = std::min<int64_t>(o_->batch_size, ds_.n);
        ro.drop_dense = !use_dense;
        ro.model = o_->model;
        for (size_t i = 0; i < o_->nlayers; i++)
            ro.only.push_back(o_->layers[i]);
        Rewritten rw = rewrite_linears(dense, ro, err_);
        sparse = rw.module;
        sparse.eval();
        fill_layers(rw.layers);
        r_->nsparse = rw.nsparse;
        if (!use_dense) {
            dense = torch::jit::Module();
#if defined(__GLIBC__)
            malloc_trim(0); /* freed dense weights back to the system */
#endif
        }
        probe_model(sparse, x, o_->model, o_->data, ds_.width, err_);
    }
    /* after the rewrite: tensors made in inference mode carry no version
     * counter, and the operator's values must (linear.h) */
    c10::InferenceMode guard;

    const int64_t n = ds_.n, bs = o_->batch_size, nb = (n + bs - 1) / bs;
    auto forward = [&](torch::jit::Module &m, int64_t i) {
        const int64_t b = std::min(bs, n - i * bs);
        return m.forward({x.narrow(0, i * bs, b)}).toTensor();
    };
    /* Timed passes over all batches. With both models, the passes alternate
     * between them (dense first, then sparse first, ...) on the same
     * batches, and each pass starts after a pause: the other side's idle
     * threads (OpenBLAS spins for ~0.1 s after a call, OpenMP for a while)
     * must not steal the cores from this one. The first pass's outputs are
     * kept; each model is warmed up before its first pass. */
    std::vector<double> ms_dense, ms_sparse;
    double total_dense = 0, total_sparse = 0;
    std::vector<at::Tensor> out_dense, out_sparse;
    bool warm_dense = false, warm_sparse = false;
    for (int rep = 0; rep < o_->repeat; rep++)
        for (int k = 0; k < 2; k++) {
            const bool is_dense = (k == 0) == (rep % 2 == 0);
            if ((is_dense && !use_dense) || (!is_dense && !use_sparse))
                continue;
            torch::jit::Module &m = is_dense ? dense : sparse;
            bool &warm = is_dense ? warm_dense : warm_sparse;
            if (use_dense && use_sparse)
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
            for (int w = 0; !warm && w < o_->warmup; w++)
                forward(m, w % nb);
            warm = true;
            for (int64_t i = 0; i < nb; i++) {
                const double t0 = now_ms();
                at::Tensor y = forward(m, i);
                const double t = now_ms() - t0;
                (is_dense ? ms_dense : ms_sparse).push_back(t);
                (is_dense ? total_dense : total_sparse) += t;
                if (rep == 0)
                    (is_dense ? out_dense : out_sparse).push_back(y.reshape({y.size(0), -1}).contiguous());
            }
        }

    at::Tensor out = at::cat(use_sparse ? out_sparse : out_dense);
    r_->samples = n;
    r_->batch_size = bs;
    r_->batches = nb;
    r_->outputs = out.size(1);
    r_->threads = o_->threads > 0 ? o_->threads : at::get_num_threads();
    r_->mode = use_sparse ? "sparse" : "dense";
    r_->ms_per_batch = median(use_sparse ? ms_sparse : ms_dense);
    const double total = use_sparse ? total_sparse : total_dense;
    r_->samples_per_s = total > 0 ? 1000.0 * (double)n * o_->repeat / total : 0;
    auto accuracy = [&](const at::Tensor &o) {
        at::Tensor y = at::from_blob(ds_.y, {n}, at::kFloat).to(at::kLong);
        return o.argmax(1).eq(y).sum().item<double>() / (double)n;
    };
    r_->has_accuracy = ds_.has_labels && ds_.label_width == 1 && ds_.labels_integral &&
                       out.size(1) >= 2;
    if (r_->has_accuracy)
        r_->accuracy = accuracy(out);
    if (o_->compare) {
        at::Tensor od = at::cat(out_dense);
        r_->compared = true;
        r_->dense_ms_per_batch = median(ms_dense);
        r_->sparse_ms_per_batch = median(ms_sparse);
        r_->speedup = r_->sparse_ms_per_batch > 0 ? r_->dense_ms_per_batch / r_->sparse_ms_per_batch : 0;
        r_->max_abs_diff = (out - od).abs().max().item<double>();
        const double scale = od.abs().max().item<double>();
        r_->max_rel_diff = scale > 0 ? r_->max_abs_diff / scale : r_->max_abs_diff;
        if (r_->has_accuracy)
            r_->dense_accuracy = accuracy(od);
    }
    resident_mb(&r_->rss_mb, &r_->peak_rss_mb);
    if (o_->output)
        write_output(out);
}

/* One row per sample, every output at full precision (%.9g round-trips a
 * float), after a header y0,y1,...; written to a temp file and renamed. */
void Runner::write_output(const at::Tensor &out)
{
    sp_outfile of;
    sp_status st = sp_outfile_open(&of, o_->output, err_);
    if (st != SP_OK)
        throw Failed{st};
    const int64_t n = out.size(0), c = out.size(1);
    const float *p = out.data_ptr<float>();
    std::string buf;
    for (int64_t j = 0; j < c; j++)
        buf += (j ? ",y" : "y") + std::to_string(j);
    buf += "\n";
    char num[32];
    for (int64_t i = 0; i < n && st == SP_OK; i++) {
        for (int64_t j = 0; j < c; j++) {
            snprintf(num, sizeof num, j ? ",%.9g" : "%.9g", (double)p[i * c + j]);
            buf += num;
        }
        buf += "\n";
        if (buf.size() > (1u << 20) || i == n - 1) {
            st = sp_outfile_write(&of, buf.data(), buf.size(), err_);
            buf.clear();
        }
    }
    if (st == SP_OK)
        st = sp_outfile_commit(&of, err_);
    else
        sp_outfile_abort(&of);
    if (st != SP_OK)
        throw Failed{st};
}

char *dup(const std::string &s)
{
    char *p = strdup(s.c_str());
    if (!p)
        throw std::bad_alloc();
    return p;
}

void Runner::fill_layers(const std::vector<LayerInfo> &layers)
{
    r_->layers = static_cast<sp_layer_report *>(calloc(layers.size() + 1, sizeof(sp_layer_report)));
    if (!r_->layers)
        throw std::bad_alloc();
    for (const LayerInfo &l : layers) {
        sp_layer_report &d = r_->layers[r_->nlayers++];
        d.name = dup(l.name);
        d.linear = l.linear;
        d.sparse = l.sparse;
        d.reason = dup(l.reason);
        d.rows = l.rows;
        d.cols = l.cols;
        d.sparsity = l.sparsity;
        d.layout = dup(l.layout);
        d.kernel = dup(l.kernel);
    }
}

} // namespace
} // namespace sp_bridge

extern "C" {

void sp_run_opts_init(sp_run_opts *o)
{
    std::memset(o, 0, sizeof *o);
    o->batch_size = 1;
    o->warmup = 3;
    o->repeat = 1;
}

sp_status sp_run(const sp_run_opts *opts, sp_run_result *res, sp_error *err)
{
    std::memset(res, 0, sizeof *res);
    sp_error_clear(err);
    sp_status st = sp_bridge::guarded(err, "run", [&] {
        sp_bridge::Runner r(opts, res, err);
        r.run();
    });
    if (st != SP_OK)
        sp_run_result_release(res);
    return st;
}

void sp_run_result_release(sp_run_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; res->layers && i < res->nlayers; i++) {
        free(const_cast<char *>(res->layers[i].name));
        free(const_cast<char *>(res->layers[i].reason));
        free(const_cast<char *>(res->layers[i].layout));
        free(const_cast<char *>(res->layers[i].kernel));
    }
    free(res->layers);
    std::memset(res, 0, sizeof *res);
}

} // extern "C"
