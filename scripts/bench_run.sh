#!/usr/bin/env bash
# scripts/bench_run.sh — the "run" section of docs/benchmarks.md in one
# command, every ratio measured in one run:
#   1. `sparsify run --compare` (the sparse operator vs dense libtorch on the
#      same batches, alternating) on a 28.4M-parameter TorchScript stack of
#      768->3072->768 feed-forward blocks (scripts/make_bench_models.py ffn)
#      pruned by `sparsify prune` three ways: 90% unstructured, 4x1 blocks at
#      90%, 2:4; at batch 1 and 64;
#   2. the resident set of `sparsify run` on the 90% model, sparse vs --dense;
#   3. the fine-tune step of a 90%-pruned MLP 64-2048-2048-2048-10 on the
#      digits (two 4.2M-weight layers; batch 64, SGD with momentum) on the
#      sparse kernels vs dense libtorch (--kernels sparse|dense), alternating
#      two runs each, with the accuracy both reach.
# The measured commands run with the native OpenBLAS core (OPENBLAS_CORETYPE
# and OPENBLAS_L2_SIZE unset for them only).
#
# usage: scripts/bench_run.sh [SPARSIFY] [THREADS] [WORK_DIR]
#   SPARSIFY defaults to build/sparsify, THREADS to 2, WORK_DIR to a new
#   temp folder (removed at the end unless given).
# Needs /usr/bin/python3 with torch (to make the models) and python3.
set -eu
sp=${1:-build/sparsify}
thr=${2:-2}
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${3:-}" ]; then
    work=$3
    mkdir -p "$work"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
bench() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"; }

echo "machine: $(nproc) cores, $(uptime | sed 's/.*load average/load average/')" >&2
/usr/bin/python3 "$here/make_bench_models.py" ffn "$work" >&2
"$sp" prune "$work/ffn.pt" -o "$work/ffn-unstructured.pt" --sparsity 0.9 >/dev/null
"$sp" prune "$work/ffn.pt" -o "$work/ffn-4x1.pt" --pattern 4x1 --sparsity 0.9 >/dev/null
"$sp" prune "$work/ffn.pt" -o "$work/ffn-2of4.pt" --pattern 2:4 >/dev/null

: >"$work/run.jsonl"
for pat in unstructured 4x1 2of4; do
    for b in 1 64; do
        if [ "$b" = 1 ]; then rep=1; else rep=10; fi
        bench "$sp" run "$work/ffn-$pat.pt" --data "$work/ffn_data.pt" --batch-size "$b" \
            --threads "$thr" --compare --warmup 4 --repeat "$rep" --json |
            python3 -c 'import json,sys; d=json.load(sys.stdin); d["pattern"]=sys.argv[1]; print(json.dumps(d))' "$pat" \
            >>"$work/run.jsonl"
    done
done
bench "$sp" run "$work/ffn-unstructured.pt" --data "$work/ffn_data.pt" --batch-size 64 \
    --threads "$thr" --json >"$work/mem-sparse.json"
bench "$sp" run "$work/ffn-unstructured.pt" --data "$work/ffn_data.pt" --batch-size 64 \
    --threads "$thr" --dense --json >"$work/mem-dense.json"

/usr/bin/python3 "$here/make_bench_models.py" mlp "$work" >&2
"$sp" prune "$work/mlp.pt" -o "$work/mlp90.pt" --sparsity 0.9 >/dev/null
awk -v tr="$work/train.csv" -v va="$work/val.csv" \
    'NR == 1 { print > tr; print > va; next }
     { if ((NR - 2) % 5 == 0) print > va; else print > tr }' "$here/../examples/digits/digits.csv"
: >"$work/ft.jsonl"
for round in 1 2; do
    for k in sparse dense; do
        bench "$sp" finetune "$work/mlp90.pt" -o "$work/mlp-$k.pt" --data "$work/train.csv" \
            --val "$work/val.csv" --epochs 5 --batch-size 64 --optimizer sgd --momentum 0.9 \
            --lr 0.01 --seed 1 --threads "$thr" --kernels "$k" --json -q |
            python3 -c 'import json,sys; d=json.load(sys.stdin); d["kernels_asked"]=sys.argv[1]; print(json.dumps(d))' "$k" \
            >>"$work/ft.jsonl"
    done
done

python3 - "$work" "$thr" <<'PY'
import json, statistics, sys
work, thr = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(f"{work}/run.jsonl")]
targets = {("unstructured", 1): 3.0, ("unstructured", 64): 2.5, ("4x1", 64): 4.0, ("2of4", 64): 1.3}
names = {"unstructured": "90% unstructured", "4x1": "4x1 blocks, 90%", "2of4": "2:4"}
print(f"threads {thr}; sparsify run --compare on ffn.pt (28.4M parameters), median ms per batch\n")
print("| model | batch | dense libtorch ms | sparse ms | speedup | target | met | max rel diff | sparse layers |")
print("|---|---|---|---|---|---|---|---|---|")
allmet = True
for r in rows:
    t = targets.get((r["pattern"], r["batch_size"]))
    met = "" if t is None else ("yes" if r["speedup"] >= t else "NO")
    allmet &= met != "NO"
    print(f"| {names[r['pattern']]} | {r['batch_size']} | {r['dense_ms_per_batch']:.3f} | "
          f"{r['sparse_ms_per_batch']:.3f} | {r['speedup']:.2f}x | {f'{t}x' if t else '-'} | {met or '-'} | "
          f"{r['max_rel_diff']:.1e} | {len(r['sparse_layers'])} of {len(r['layers'])} |")
ms, md = json.load(open(f"{work}/mem-sparse.json")), json.load(open(f"{work}/mem-dense.json"))
ok = ms["rss_mb"] < md["rss_mb"]
allmet &= ok
print(f"\nresident set after the run, 90% unstructured, batch 64: sparse {ms['rss_mb']:.0f} MB, "
      f"dense {md['rss_mb']:.0f} MB ({'smaller' if ok else 'NOT smaller'}); "
      f"peak {ms['peak_rss_mb']:.0f} MB vs {md['peak_rss_mb']:.0f} MB")
ft = [json.loads(l) for l in open(f"{work}/ft.jsonl")]
def med(k, key):
    return statistics.median(r[key] for r in ft if r["kernels_asked"] == k)
s, d = med("sparse", "step_ms"), med("dense", "step_ms")
sa, da = med("sparse", "val_accuracy"), med("dense", "val_accuracy")
ok = d / s >= 2.0
allmet &= ok
print(f"\nfine-tune step, MLP 64-2048-2048-2048-10 at 90%, batch 64, SGD momentum 0.9, 5 epochs "
      f"(median of 2 runs each, alternating):")
print(f"  sparse kernels {s:.3f} ms/step, val accuracy {100 * sa:.2f}%")
print(f"  dense libtorch {d:.3f} ms/step, val accuracy {100 * da:.2f}%")
print(f"  speedup {d / s:.2f}x (target 2x: {'met' if ok else 'NOT met'}); "
      f"accuracy difference {100 * (sa - da):+.2f} points")
print("\nall targets met" if allmet else "\nsome targets NOT met")
PY
