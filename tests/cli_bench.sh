#!/usr/bin/env bash
# tests/cli_bench.sh — `sparsify bench` end to end: the synthetic form with
# every pattern family (text and --json), the result check against the dense
# product, --list, usage errors (exit 2), and the MODEL form on a checkpoint
# written by PyTorch (when /usr/bin/python3 has torch). Few repetitions: this
# checks behaviour, not speed (no timing thresholds).
set -u
: "${SPARSIFY:?set SPARSIFY to the sparsify binary}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

# json_get FILE EXPR: evaluate a Python expression on the parsed JSON as d.
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

for pat in unstructured 4x1 1x4 4x4 8x8 16x16 2:4; do
    if "$SPARSIFY" bench --shape 96x130 --batch 17 --pattern "$pat" --sparsity 0.9 \
        --threads 2 --reps 3 --json >"$tmp/o.json" 2>"$tmp/e.txt"; then
        ok
    else
        bad "bench --pattern $pat exited $?: $(cat "$tmp/e.txt")"
        continue
    fi
    got=$(json_get "$tmp/o.json" "all(k in d for k in ['shape','batch','pattern','sparsity','threads','kernel','dense_ms','sparse_ms','dense_gflops','sparse_gflops','speedup','max_rel_error'])")
    [ "$got" = True ] && ok || bad "$pat: missing JSON fields: $(cat "$tmp/o.json")"
    got=$(json_get "$tmp/o.json" "(d['shape'], d['batch'], d['threads'], d['max_rel_error'] < 1e-4, d['sparse_ms'] > 0)")
    [ "$got" = "('96x130', 17, 2, True, True)" ] && ok || bad "$pat: fields $got"
    got=$(json_get "$tmp/o.json" "d['pattern']")
    [ "$got" = "$pat" ] && ok || bad "$pat: pattern field says $got"
done

# Measured sparsity: unstructured 0.9 of 96x130 is exactly round(0.9*12480) zeros.
"$SPARSIFY" bench --shape 96x130 --batch 1,3,65 --sparsity 0.9 --reps 3 --json >"$tmp/l.json" \
    && ok || bad "bench with a batch list failed"
got=$(json_get "$tmp/l.json" "[(r['batch'], round(r['sparsity'] * 12480)) for r in d]")
[ "$got" = "[(1, 11232), (3, 11232), (65, 11232)]" ] && ok || bad "batch list: $got"

# Sparsity 0 and 1, every forced ISA kernel this CPU runs, and the table.
for s in 0 1; do
    "$SPARSIFY" bench --shape 40x50 --batch 5 --sparsity $s --fallback never --reps 3 \
        >"$tmp/t.txt" 2>&1 && ok || bad "sparsity $s: $(cat "$tmp/t.txt")"
done
grep -q "speedup" "$tmp/t.txt" && ok || bad "table has no header: $(cat "$tmp/t.txt")"
"$SPARSIFY" bench --list >"$tmp/list.txt" && ok || bad "--list failed"
while read -r name isa layout cpu; do
    [ "$cpu" = yes ] || { echo "skipped $name ($isa not supported here)"; continue; }
    case $layout in
        csr) pat=unstructured ;;
        bcsr) pat=4x4 ;;
        nm) pat=2:4 ;;
        dense) pat=unstructured ;;
        *) continue ;;
    esac
    "$SPARSIFY" bench --shape 37x70 --batch 3,64 --pattern $pat --sparsity 0.5 --kernel "$name" \
        --reps 3 --json >"$tmp/k.json" 2>"$tmp/e.txt" && ok || bad "--kernel $name: $(cat "$tmp/e.txt")"
    got=$(json_get "$tmp/k.json" "all(r['kernel'] == '$name' and r['max_rel_error'] < 1e-4 for r in d)")
    [ "$got" = True ] && ok || bad "--kernel $name: $(cat "$tmp/k.json")"
done < <(tail -n +2 "$tmp/list.txt")

# Fallback: a dense weight goes to the dense path and says so.
"$SPARSIFY" bench --shape 64x64 --batch 16 --sparsity 0 --reps 3 --json >"$tmp/f.json" && ok || bad "fallback run failed"
got=$(json_get "$tmp/f.json" "d['kernel'] == 'dense-fallback' or d['kernel'].startswith('sp_f32_gemm_')")
[ "$got" = True ] && ok || bad "fallback kernel: $(cat "$tmp/f.json")"

# Usage errors exit 2.
for args in "" "--shape 3x" "--shape 8x8 --pattern 3x" "--shape 8x8 --sparsity 2" \
    "--shape 8x8 --threads 0" "--shape 8x8 --kernel nope" "--shape 8x8 --bogus" \
    "--shape 8x8 --batch 0"; do
    # shellcheck disable=SC2086
    "$SPARSIFY" bench $args >/dev/null 2>"$tmp/e.txt"
    rc=$?
    [ $rc -eq 2 ] && ok || bad "bench $args exited $rc, want 2"
done
"$SPARSIFY" bench --help | grep -q "cblas_sgemm" && ok || bad "--help"
"$SPARSIFY" bench "$tmp/missing.pt" >/dev/null 2>"$tmp/e.txt"
[ $? -ne 0 ] && grep -q "missing.pt" "$tmp/e.txt" && ok || bad "missing model: $(cat "$tmp/e.txt")"

# MODEL form on a real torch checkpoint.
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
    /usr/bin/python3 - "$tmp/m.pt" <<'PY'
import sys, torch
torch.manual_seed(0)
sd = {"fc1.weight": torch.randn(48, 40), "fc1.bias": torch.randn(48),
      "conv.weight": torch.randn(16, 8, 1, 1), "norm.weight": torch.ones(48),
      "fc2.weight": torch.randn(10, 48)}
for k in ("fc1.weight", "fc2.weight"):
    w = sd[k]
    w[w.abs() < w.abs().flatten().kthvalue(int(0.8 * w.numel())).values] = 0
torch.save(sd, sys.argv[1])
PY
    "$SPARSIFY" bench "$tmp/m.pt" --batch 8 --reps 3 --json >"$tmp/m.json" 2>"$tmp/e.txt" \
        && ok || bad "bench MODEL: $(cat "$tmp/e.txt")"
    got=$(json_get "$tmp/m.json" "([l['layer'] for l in d['layers']], d['total']['layers'], all(l['max_rel_error'] < 1e-4 for l in d['layers']))")
    [ "$got" = "(['fc1.weight', 'conv.weight', 'fc2.weight'], 3, True)" ] && ok || bad "bench MODEL layers: $got"
    got=$(json_get "$tmp/m.json" "['%.2f' % l['sparsity'] for l in d['layers']]")
    [ "$got" = "['0.80', '0.00', '0.80']" ] && ok || bad "bench MODEL sparsity: $got"
    "$SPARSIFY" bench "$tmp/m.pt" --batch 8 --pattern 2:4 --reps 3 >"$tmp/m.txt" 2>"$tmp/e.txt" \
        && grep -q "^total: 3 layers" "$tmp/m.txt" && ok || bad "bench MODEL 2:4: $(cat "$tmp/e.txt" "$tmp/m.txt")"
else
    echo "skipped the MODEL form: /usr/bin/python3 has no torch"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
