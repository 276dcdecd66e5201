#!/usr/bin/python3
"""Data-parallel fine-tuning benchmark (docs/finetune.md, docs/benchmarks.md).

For each model (the digits MLP 64-128-64-10 and a wide MLP 64-1024-1024-10,
both 90% pruned, masks held) and each kernel path (sparse: the kept values
are all-reduced; dense: the whole weights are), in one run and alternating:

  1 process  x 1 thread,  batch 64 (the work of one process alone)
  1 process  x 2 threads, batch 64
  2 processes x 1 thread, batch 32 each (sparsify finetune --nproc 2)

all a global batch of 64 on the same data, and reports the median step
time, steps per second and, for 2 processes, the median all-reduce time per
step (from the first bucket's launch to the last one's completion) and the
part of it the step waited for. On one 2-core machine this measures the
overhead of data parallelism (the two processes share the cores one process
had), not a speedup.

usage: /usr/bin/python3 scripts/bench_dist.py [--sparsify build/sparsify]
       [--epochs E] [--repeat R]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import torch

from bench_mlp import MLP, prune90

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def finetune(sp, model, data, tmp, epochs, kernels, nproc, threads):
    out, log = os.path.join(tmp, "out.pt"), os.path.join(tmp, "log.jsonl")
    args = [sp, "finetune", model, "-o", out, "--data", data, "--epochs", str(epochs),
            "--optimizer", "sgd", "--momentum", "0.9", "--lr", "1e-2", "--kernels", kernels,
            "--log", log, "--force", "-q"]
    args += ["--batch-size", str(64 // nproc), "--threads", str(threads)]
    if nproc > 1:
        args += ["--nproc", str(nproc)]
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"sparsify finetune failed: {p.stderr}")
    with open(log) as f:
        ev = [json.loads(line) for line in f if line.strip()]
    epochs_ev = [e for e in ev if e["event"] == "epoch"][1:]  # the first epoch warms up
    step = statistics.median(e["step_ms"] for e in epochs_ev)
    ar = statistics.median(e.get("allreduce_ms", 0) for e in epochs_ev)
    wait = statistics.median(e.get("allreduce_wait_ms", 0) for e in epochs_ev)
    return step, ar, wait


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sparsify", default=os.path.join(SRC, "build", "sparsify"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    with open("/proc/loadavg") as f:
        load0 = f.read().split()[:3]
    models = [("digits MLP 64-128-64-10", [64, 128, 64, 10]),
              ("wide MLP 64-1024-1024-10", [64, 1024, 1024, 10])]
    configs = [((1, 1), "1 process x 1 thread, batch 64"), ((1, 2), "1 process x 2 threads, batch 64"),
               ((2, 1), "2 processes x 1 thread, batch 32")]
    print(f"90% pruned, masks held, SGD, global batch 64, {a.epochs} epochs of the 1797 digits "
          f"(first epoch not counted); median of {a.repeat} alternating runs")
    print(f"load average at start: {' '.join(load0)} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(SRC, "examples", "digits", "digits.csv")
        for name, widths in models:
            m = MLP(widths)
            prune90(m)
            path = os.path.join(tmp, "p90.pt")
            torch.jit.script(m).save(path)
            print(f"\n{name}")
            print(f"  {'kernels':8} {'processes x threads':34} {'ms/step':>8} {'steps/s':>8} "
                  f"{'all-reduce ms/step':>19} {'waited':>7}")
            for kernels in ("sparse", "dense"):
                res = {n: [] for n, _ in configs}
                for _ in range(a.repeat):
                    for n, _ in configs:
                        res[n].append(finetune(a.sparsify, path, data, tmp, a.epochs, kernels, *n))
                med = {}
                for n, label in configs:
                    step = statistics.median(r[0] for r in res[n])
                    ar = statistics.median(r[1] for r in res[n])
                    wait = statistics.median(r[2] for r in res[n])
                    med[n] = step
                    arc = f"{ar:19.3f} {wait:7.3f}" if n[0] > 1 else f"{'-':>19} {'-':>7}"
                    print(f"  {kernels:8} {label:34} {step:8.3f} {1000.0 / step:8.0f} {arc}")
                print(f"  {kernels:8} steps/s of 2 x 1 over 1 x 2: {med[(1, 2)] / med[(2, 1)]:.2f}x, "
                      f"over 1 x 1: {med[(1, 1)] / med[(2, 1)]:.2f}x")
    with open("/proc/loadavg") as f:
        print(f"\nload average at end: {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
