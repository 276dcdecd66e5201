#!/usr/bin/env bash
# scripts/bench_kernels.sh — the kernel table of docs/benchmarks.md in one
# command: every target configuration of `sparsify bench` (ours vs OpenBLAS
# cblas_sgemm, same data, same run, same threads) plus PyTorch's CSR matmul
# (torch.sparse) at 90% for the ratio to it.
#
# usage: scripts/bench_kernels.sh [SPARSIFY] [THREADS] [REPS]
#   SPARSIFY defaults to build/sparsify, THREADS to 2, REPS to 30.
set -eu
sp=${1:-build/sparsify}
thr=${2:-2}
reps=${3:-30}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() { # pattern sparsity shape batches target
    "$sp" bench --shape "$3" --batch "$4" --pattern "$1" --sparsity "$2" \
        --threads "$thr" --reps "$reps" --json >"$tmp/r.json"
    python3 - "$tmp/r.json" "$5" >>"$tmp/rows.txt" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for r in (d if isinstance(d, list) else [d]):
    print(json.dumps(dict(r, target=float(sys.argv[2]))))
PY
}

: >"$tmp/rows.txt"
for shape in 3072x768 768x3072; do
    run unstructured 0.9 $shape 64 3
    run unstructured 0.9 $shape 1 4
    run unstructured 0.8 $shape 64 1.8
    run 4x1 0.9 $shape 64 6
    run 2:4 0.5 $shape 64 1.4
done
for p in 1x4 4x4 8x8 16x16; do run $p 0.9 3072x768 64 0; done

torch_ok=0
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
    /usr/bin/python3 "$here/bench_torch_csr.py" --threads "$thr" --reps "$reps" \
        >"$tmp/torch.txt" && torch_ok=1
fi

python3 - "$tmp/rows.txt" "$tmp/torch.txt" "$torch_ok" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
torch = {}
if sys.argv[3] == "1":
    for l in open(sys.argv[2]):
        t = json.loads(l)
        torch[(t["shape"], t["batch"])] = t
print("| shape | batch | pattern | sparsity | kernel | OpenBLAS ms | sparsify ms | "
      "useful GFLOP/s | speedup | target | met | torch CSR ms | vs torch CSR |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
allmet = True
for r in rows:
    t = torch.get((r["shape"], r["batch"])) if r["pattern"] == "unstructured" and abs(r["sparsity"] - 0.9) < 1e-3 else None
    met = "" if not r["target"] else ("yes" if r["speedup"] >= r["target"] else "NO")
    if met == "NO":
        allmet = False
    print("| %s | %d | %s | %.2f | %s | %.3f | %.3f | %.1f | %.2fx | %s | %s | %s | %s |" % (
        r["shape"], r["batch"], r["pattern"], r["sparsity"], r["kernel"], r["dense_ms"],
        r["sparse_ms"], r["sparse_gflops"], r["speedup"],
        ("%.1fx" % r["target"]) if r["target"] else "-", met or "-",
        "%.3f" % t["torch_csr_ms"] if t else "-",
        "%.1fx" % (t["torch_csr_ms"] / r["sparse_ms"]) if t else "-"))
print()
print("all targets met" if allmet else "some targets NOT met")
PY
