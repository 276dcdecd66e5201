#!/usr/bin/python3
"""Step-time benchmark of `sparsify finetune` (docs/finetune.md).

In one run, on the digits data (examples/digits), for each model:
  - sparsify finetune with masks held (90% pruned model),
  - the same libtorch loop without masks (sparsify finetune --no-masks),
  - an equivalent PyTorch Python loop (same TorchScript model, data, batch
    size, AdamW, shuffling by index_select, loss.item() per step, denormals
    flushed), with and without the same masking (the gradient multiplied by
    the keep-mask after backward, as sparsify does).
Reports the median time of one training step and the ratios.

usage: /usr/bin/python3 scripts/bench_finetune.py [--sparsify build/sparsify]
       [--threads N] [--epochs E] [--batch-size B]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from bench_mlp import MLP, prune90

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def python_loop(path, x, y, epochs, bs, masks):
    m = torch.jit.load(path)
    m.train()
    params = [p for p in m.parameters()]
    pruned = [(p, (p.detach() != 0).float()) for n, p in m.named_parameters()
              if masks and n.endswith("weight") and p.dim() == 2]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    times = []
    n = len(x)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            t0 = time.perf_counter()
            idx = perm[i:i + bs]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            opt.zero_grad()
            loss = torch.nn.functional.nll_loss(torch.log_softmax(m(xb), 1), yb)
            loss.backward()
            with torch.no_grad():
                for p, mk in pruned:
                    p.grad.mul_(mk)
            opt.step()  # zero grad + zero state keep pruned weights at +0.0
            loss.item()
            times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def sparsify_loop(sp, path, data, out, epochs, bs, threads, extra):
    p = subprocess.run([sp, "finetune", path, "-o", out, "--force", "--data", data, "--epochs", str(epochs),
                        "--batch-size", str(bs), "--lr", "1e-3", "--optimizer", "adamw",
                        "--threads", str(threads), "--json", "-q", *extra],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"sparsify finetune failed: {p.stderr}")
    return json.loads(p.stdout)["step_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sparsify", default=os.path.join(SRC, "build", "sparsify"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)  # as sparsify finetune does while training
    torch.manual_seed(0)
    data = np.loadtxt(os.path.join(SRC, "examples", "digits", "digits.csv"), delimiter=",",
                      skiprows=1, dtype=np.float32)
    x = torch.from_numpy(data[:, :-1]).contiguous()
    y = torch.from_numpy(data[:, -1]).long()
    models = [("digits MLP 64-128-64-10", [64, 128, 64, 10]),
              ("wide MLP 64-1024-1024-10", [64, 1024, 1024, 10])]
    print(f"threads {a.threads}, batch {a.batch_size}, {a.epochs} epochs of {len(x)} samples, "
          f"AdamW; median ms per training step, best of {a.repeat} runs")
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "digits.csv")
        with open(os.path.join(SRC, "examples", "digits", "digits.csv")) as f, open(csv, "w") as g:
            g.write(f.read())
        for name, widths in models:
            m = MLP(widths)
            dense_path = os.path.join(tmp, "dense.pt")
            torch.jit.script(m).save(dense_path)
            prune90(m)
            path = os.path.join(tmp, "p90.pt")
            torch.jit.script(m).save(path)
            out = os.path.join(tmp, "out.pt")
            runs = {
                "sparsify, 90% pruned, masks held": lambda: sparsify_loop(
                    a.sparsify, path, csv, out, a.epochs, a.batch_size, a.threads, []),
                "sparsify, 90% pruned, --no-masks": lambda: sparsify_loop(
                    a.sparsify, path, csv, out, a.epochs, a.batch_size, a.threads, ["--no-masks"]),
                "sparsify, dense model (no masks)": lambda: sparsify_loop(
                    a.sparsify, dense_path, csv, out, a.epochs, a.batch_size, a.threads, []),
                "python, 90% pruned, masks held": lambda: python_loop(
                    path, x, y, a.epochs, a.batch_size, True),
                "python, 90% pruned, no masks": lambda: python_loop(
                    path, x, y, a.epochs, a.batch_size, False),
            }
            r = {k: [] for k in runs}
            for _ in range(a.repeat):  # interleaved, best median of each
                for k, fn in runs.items():
                    r[k].append(fn())
            best = {k: min(v) for k, v in r.items()}
            keys = list(runs)
            print(f"\n{name}")
            for k in keys:
                print(f"  {k:36} {best[k]:9.3f} ms")
            sm = best[keys[0]]
            print(f"  mask overhead vs the same loop on the dense model: {100 * (sm / best[keys[2]] - 1):+.1f}%")
            print(f"  mask overhead vs --no-masks on the pruned model:   {100 * (sm / best[keys[1]] - 1):+.1f}%")
            print(f"  sparsify / python, masks held: {sm / best[keys[3]]:.2f}x")


if __name__ == "__main__":
    main()
