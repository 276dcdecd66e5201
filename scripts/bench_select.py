#!/usr/bin/python3
"""Time tensor selection (Python regexes on PCRE2) and the commands around it.

usage: /usr/bin/python3 scripts/bench_select.py SPARSIFY [BASELINE_SPARSIFY] [--runs N]

Writes two checkpoints with PyTorch into a temp dir (a 117 MB model of 24
1024x1024 layers plus a tied 4096x1024 embedding/lm_head; 2000 tiny
tensors), then reports the median wall time of:

  * `prune --dry-run` on the 2000 tensors with no regex, 8 and 64 includes
    (selection cost alone: nothing is pruned or written);
  * `prune --pattern 2:4`, `prune --sparsity 0.9` with includes/excludes,
    `export` to compressed-tensors and `inspect` on the 117 MB model.

With BASELINE_SPARSIFY (an older build) every command also runs with it,
alternating the two, and the ratio SPARSIFY / BASELINE is printed. Timings
on a shared machine are noisy: compare ratios from one run, not absolute
times across runs.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch


def median_time(cmd, cwd):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{cmd[0]} {' '.join(cmd[1:4])}...: exit {r.returncode}: {r.stderr.decode()[:300]}")
    return dt


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    runs = 7
    if "--runs" in sys.argv:
        runs = int(sys.argv[sys.argv.index("--runs") + 1])
        args = [a for a in args if a != str(runs)]
    if not args:
        raise SystemExit(__doc__)
    bins = {"sparsify": os.path.abspath(args[0])}
    if len(args) > 1:
        bins["baseline"] = os.path.abspath(args[1])
    tmp = tempfile.mkdtemp(prefix="bench-select-")
    try:
        torch.manual_seed(0)
        sd = {f"model.layers.{i}.mlp.{n}.weight": torch.randn(1024, 1024)
              for i in range(12) for n in ("up_proj", "down_proj")}
        sd["model.embed_tokens.weight"] = torch.randn(4096, 1024)
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
        torch.save(sd, os.path.join(tmp, "m.pt"))
        torch.save({f"blocks.{i}.{j}.weight": torch.randn(4, 4) for i in range(400) for j in range(5)},
                   os.path.join(tmp, "many.pt"))
        first = bins["sparsify"]
        subprocess.run([first, "prune", "m.pt", "-o", "p24.pt", "--pattern", "2:4", "-q"], cwd=tmp, check=True)
        inc8 = sum([["-i", r"blocks\.%d\d*\.[0-4]\.weight$" % d] for d in range(1, 9)], [])
        inc64 = sum([["-i", r"^blocks\.%d%d\.[0-4]\.weight$" % (d, e)] for d in range(8) for e in range(8)], [])
        cases = [
            ("dry-run, 2000 tensors, default rule", ["prune", "many.pt", "--dry-run", "-s", "0.5"], False),
            ("dry-run, 2000 tensors, 8 includes", ["prune", "many.pt", "--dry-run", "-s", "0.5"] + inc8, False),
            ("dry-run, 2000 tensors, 64 includes", ["prune", "many.pt", "--dry-run", "-s", "0.5"] + inc64, False),
            ("prune --pattern 2:4, 117 MB", ["prune", "m.pt", "-o", "out.pt", "--pattern", "2:4", "-q"], True),
            ("prune -s 0.9 -i -i -x, 117 MB", ["prune", "m.pt", "-o", "out.pt", "-s", "0.9", "-q", "-i",
                                               "mlp", "-i", "up_proj", "-x", "layers.1[01]"], True),
            ("export compressed-tensors, 117 MB", ["export", "p24.pt", "-o", "ctout", "-q"], True),
            ("inspect, 117 MB", ["inspect", "p24.pt"], True),
        ]
        print(f"median of {runs} runs; load before: {os.getloadavg()[0]:.2f}")
        for name, cmd, both in cases:
            use = [k for k in bins if both or k == "sparsify"]
            t = {k: [] for k in use}
            for i in range(runs):
                for k in (use if i % 2 == 0 else use[::-1]):
                    shutil.rmtree(os.path.join(tmp, "ctout"), ignore_errors=True)
                    t[k].append(median_time([bins[k]] + cmd, tmp))
            line = f"{name:38s} {statistics.median(t['sparsify']) * 1000:8.1f} ms"
            if "baseline" in t:
                b = statistics.median(t["baseline"])
                line += f"   baseline {b * 1000:8.1f} ms   ratio {statistics.median(t['sparsify']) / b:5.2f}"
            print(line, flush=True)
        print(f"load after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
