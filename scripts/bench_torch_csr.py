#!/usr/bin/python3
"""Time PyTorch's CSR sparse x dense matmul (torch.sparse) against its dense
torch.mm on the same machine, for the comparison in docs/benchmarks.md.

usage: /usr/bin/python3 scripts/bench_torch_csr.py [--threads 2] [--reps 30]
           [--shape 3072x768 ...] [--batch 64 1] [--sparsity 0.9]

Prints one JSON object per line: shape, batch, sparsity, threads, torch_csr_ms,
torch_dense_ms (medians after 3 warm-up runs). Weights are uniform random,
pruned by magnitude to the sparsity, like `sparsify bench`.
"""
import argparse
import json
import statistics
import time
import warnings

import torch


def median_ms(fn, reps):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--shape", nargs="+", default=["3072x768", "768x3072"])
    ap.add_argument("--batch", nargs="+", type=int, default=[64, 1])
    ap.add_argument("--sparsity", type=float, default=0.9)
    a = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    for shape in a.shape:
        m, k = (int(v) for v in shape.split("x"))
        w = torch.rand(m, k) * 2 - 1
        kth = int(round(a.sparsity * w.numel()))
        if kth > 0:
            thr = w.abs().flatten().kthvalue(kth).values
            w[w.abs() <= thr] = 0
        wcsr = w.to_sparse_csr()
        for n in a.batch:
            x = torch.rand(k, n) * 2 - 1
            with torch.no_grad():
                csr = median_ms(lambda: torch.matmul(wcsr, x), a.reps)
                dense = median_ms(lambda: torch.mm(w, x), a.reps)
                err = (torch.matmul(wcsr, x) - w @ x).abs().max().item()
            print(json.dumps({"shape": shape, "batch": n, "sparsity": a.sparsity,
                              "threads": a.threads, "torch_csr_ms": csr,
                              "torch_dense_ms": dense, "max_abs_error": err}))


if __name__ == "__main__":
    main()
