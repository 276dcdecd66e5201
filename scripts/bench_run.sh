#!/usr/bin/env bash
# scripts/bench_run.sh — the "run" section of docs/benchmarks.md in one
# command, every ratio measured in one run:
#   1. `sparsify run --compare` (the sparse operator vs dense libtorch on the
#      same batches, alternating) on a 28.4M-parameter TorchScript stack of
#      768->3072->768 feed-forward blocks (scripts/make_bench_models.py ffn)
#      pruned by `sparsify prune` three ways: 90% unstructured, 4x1 blocks at
#      90%, 2:4; at batch 1 and 64; with THREADS threads and with one (on a
#      small shared VM either side may be faster on one thread than on two:
#      the targets are judged on each side's faster run, "best vs best");
#   2. the resident set of `sparsify run` on the 90% model, sparse vs --dense;
#   3. the fine-tune step of a 90%-pruned MLP 64-2048-2048-2048-10 on the
#      digits (two 4.2M-weight layers; batch 64, SGD with momentum) on the
#      sparse kernels vs dense libtorch (--kernels sparse|dense), THREADS and
#      one thread, alternating two runs each, with the accuracy both reach.
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
        if [ "$b" = 1 ]; then rep=2; else rep=6; fi
        for t in "$thr" 1; do
            bench "$sp" run "$work/ffn-$pat.pt" --data "$work/ffn_data.pt" --batch-size "$b" \
                --threads "$t" --compare --warmup 4 --repeat "$rep" --json |
                python3 -c 'import json,sys; d=json.load(sys.stdin); d["pattern"]=sys.argv[1]; print(json.dumps(d))' "$pat" \
                >>"$work/run.jsonl"
        done
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
    for t in "$thr" 1; do
        for k in sparse dense; do
            bench "$sp" finetune "$work/mlp90.pt" -o "$work/mlp-$k.pt" --force --data "$work/train.csv" \
                --val "$work/val.csv" --epochs 5 --batch-size 64 --optimizer sgd --momentum 0.9 \
                --lr 0.01 --seed 1 --threads "$t" --kernels "$k" --json -q |
                python3 -c 'import json,sys; d=json.load(sys.stdin); d["kernels_asked"]=sys.argv[1]; d["threads"]=int(sys.argv[2]); print(json.dumps(d))' "$k" "$t" \
                >>"$work/ft.jsonl"
        done
    done
done

python3 - "$work" "$thr" <<'PY'
import json, statistics, sys
work, thr = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for l in open(f"{work}/run.jsonl")]
targets = {("unstructured", 1): 3.0, ("unstructured", 64): 2.5, ("4x1", 64): 4.0, ("2of4", 64): 1.3}
names = {"unstructured": "90% unstructured", "4x1": "4x1 blocks, 90%", "2of4": "2:4"}
by = {(r["pattern"], r["batch_size"], r["threads"]): r for r in rows}
print(f"sparsify run --compare on ffn.pt (28.4M parameters), median ms per batch; "
      f"speedup = dense / sparse in the same run\n")
print(f"| model | batch | dense {thr}T | sparse {thr}T | speedup {thr}T | dense 1T | sparse 1T | "
      f"speedup 1T | best vs best | target | met | max rel diff |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
allmet = True
for pat in names:
    for b in (1, 64):
        r, q = by[(pat, b, thr)], by[(pat, b, 1)]
        best = (min(r["dense_ms_per_batch"], q["dense_ms_per_batch"]) /
                min(r["sparse_ms_per_batch"], q["sparse_ms_per_batch"]))
        t = targets.get((pat, b))
        met = "-" if t is None else ("yes" if best >= t else "NO")
        allmet &= met != "NO"
        print(f"| {names[pat]} | {b} | {r['dense_ms_per_batch']:.3f} | {r['sparse_ms_per_batch']:.3f} | "
              f"{r['speedup']:.2f}x | {q['dense_ms_per_batch']:.3f} | {q['sparse_ms_per_batch']:.3f} | "
              f"{q['speedup']:.2f}x | {best:.2f}x | {f'{t}x' if t else '-'} | {met} | "
              f"{max(r['max_rel_diff'], q['max_rel_diff']):.1e} |")
print(f"\n(all {len(by[('unstructured', 64, thr)]['sparse_layers'])} Linear layers run sparse in every row; "
      f"'best vs best': the faster dense run over the faster sparse run)")
ms, md = json.load(open(f"{work}/mem-sparse.json")), json.load(open(f"{work}/mem-dense.json"))
ok = ms["rss_mb"] < md["rss_mb"]
allmet &= ok
print(f"\nresident set after the run, 90% unstructured, batch 64: sparse {ms['rss_mb']:.0f} MB, "
      f"dense {md['rss_mb']:.0f} MB ({'smaller' if ok else 'NOT smaller'}); "
      f"peak {ms['peak_rss_mb']:.0f} MB vs {md['peak_rss_mb']:.0f} MB")
ft = [json.loads(l) for l in open(f"{work}/ft.jsonl")]
def med(k, t, key):
    return statistics.median(r[key] for r in ft if r["kernels_asked"] == k and r["threads"] == t)
print(f"\nfine-tune step, MLP 64-2048-2048-2048-10 at 90%, batch 64, SGD momentum 0.9, 5 epochs "
      f"(median ms/step of 2 runs each, alternating):")
print("| threads | sparse kernels ms | dense libtorch ms | speedup | val accuracy sparse | dense |")
print("|---|---|---|---|---|---|")
for t in (thr, 1):
    s, d = med("sparse", t, "step_ms"), med("dense", t, "step_ms")
    print(f"| {t} | {s:.3f} | {d:.3f} | {d / s:.2f}x | {100 * med('sparse', t, 'val_accuracy'):.2f}% | "
          f"{100 * med('dense', t, 'val_accuracy'):.2f}% |")
best = (min(med("dense", thr, "step_ms"), med("dense", 1, "step_ms")) /
        min(med("sparse", thr, "step_ms"), med("sparse", 1, "step_ms")))
ok = best >= 2.0
allmet &= ok
print(f"best vs best: {best:.2f}x (target 2x: {'met' if ok else 'NOT met'})")
import os
print(f"load average at the end: {os.getloadavg()[0]:.2f}")
print("\nall targets met" if allmet else "\nsome targets NOT met")
PY
