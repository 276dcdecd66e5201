#!/usr/bin/env bash
# tests/cli_bench.sh — `sparsify bench` end to end: the synthetic form with
# every pattern family (text and --json), the result check against the dense
# product, --list and every kernel forced, the dense baseline's routine and
# core (and the warning for a forced older core), --cold copies, bf16 values,
# the dispatcher's dense fallback, usage errors (exit 2), and the MODEL form
# with its cold sweep on a checkpoint written by PyTorch (when
# /usr/bin/python3 has torch). Few repetitions: this checks behaviour, not
# speed (no timing thresholds).
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
    got=$(json_get "$tmp/o.json" "all(k in d for k in ['shape','batch','pattern','sparsity','threads','kernel','dense_ms','sparse_ms','dense_gflops','sparse_gflops','speedup','max_rel_error','dense_routine','dense_core','dispatch','dispatch_kernel','cold','copies_dense','copies_sparse','dtype','layout','weight_bytes_dense','weight_bytes_sparse','dense_gbps','sparse_gbps','effective_gflops'])")
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
grep -q "sp_bf16_spmm_sell_ukernel__scalar .*bfloat16" "$tmp/list.txt" && ok || bad "--list: $(cat "$tmp/list.txt")"
while read -r name isa layout values cpu; do
    [ "$cpu" = yes ] || { echo "skipped $name ($isa not supported here)"; continue; }
    case $layout in
        csr | sell) pat=unstructured ;;
        bcsr) pat=4x4 ;;
        nm) pat=2:4 ;;
        dense) pat=unstructured ;;
        *) continue ;;
    esac
    "$SPARSIFY" bench --shape 37x70 --batch 1,3,64 --pattern $pat --sparsity 0.5 --kernel "$name" \
        --dtype "$values" --reps 3 --json >"$tmp/k.json" 2>"$tmp/e.txt" && ok || bad "--kernel $name: $(cat "$tmp/e.txt")"
    got=$(json_get "$tmp/k.json" "all(r['kernel'] == '$name' and r['max_rel_error'] < 1e-4 and r['dtype'] == '$values' for r in d)")
    [ "$got" = True ] && ok || bad "--kernel $name: $(cat "$tmp/k.json")"
done < <(tail -n +2 "$tmp/list.txt")

# The dense baseline is OpenBLAS's routine for the shape, named with its core.
"$SPARSIFY" bench --shape 96x130 --batch 1,17 --reps 3 --json >"$tmp/r.json" 2>"$tmp/e.txt" \
    && ok || bad "bench batch 1,17: $(cat "$tmp/e.txt")"
got=$(json_get "$tmp/r.json" "[(r['batch'], r['dense_routine'], r['baseline']) for r in d]")
[ "$got" = "[(1, 'cblas_sgemv', 'openblas cblas_sgemv'), (17, 'cblas_sgemm', 'openblas cblas_sgemm')]" ] \
    && ok || bad "dense routine: $got"
got=$(json_get "$tmp/r.json" "all(isinstance(r['dense_core'], str) and len(r['dense_core']) > 0 and r['dense_ms'] > 0 and r['dense_gbps'] > 0 and r['sparse_gbps'] > 0 and r['weight_bytes_dense'] == 96 * 130 * 4 and 0 < r['weight_bytes_sparse'] < r['weight_bytes_dense'] for r in d)")
[ "$got" = True ] && ok || bad "dense fields: $(cat "$tmp/r.json")"
got=$(json_get "$tmp/r.json" "all(r['cold'] is False and r['copies_dense'] == 1 and r['copies_sparse'] == 1 and r['dispatch'] in ('sparse', 'dense') and r['dtype'] == 'float32' for r in d)")
[ "$got" = True ] && ok || bad "warm fields: $(cat "$tmp/r.json")"
# batch 1 runs the SELL layout where the CPU has AVX-512
if grep -q "sp_f32_spmv_sell_ukernel_16x128__avx512 .* yes" "$tmp/list.txt"; then
    got=$(json_get "$tmp/r.json" "(d[0]['layout'], d[0]['kernel'], d[1]['layout'])")
    [ "$got" = "('sell', 'sp_f32_spmv_sell_ukernel_16x128__avx512', 'csr')" ] && ok || bad "batch-1 layout: $got"
fi

# A forced older OpenBLAS core is named in one warning line; none without it.
if grep -q "avx512 .* yes" "$tmp/list.txt"; then
    OPENBLAS_CORETYPE=Haswell "$SPARSIFY" bench --shape 16x16 --batch 1 --reps 3 >/dev/null 2>"$tmp/e.txt" \
        && ok || bad "bench with Haswell core failed"
    [ "$(grep -c "warning: OPENBLAS_CORETYPE=Haswell" "$tmp/e.txt")" = 1 ] && ok || bad "no core warning: $(cat "$tmp/e.txt")"
fi
env -u OPENBLAS_CORETYPE "$SPARSIFY" bench --shape 16x16 --batch 1 --reps 3 >/dev/null 2>"$tmp/e.txt" \
    && ok || bad "bench with the native core failed"
grep -q "OPENBLAS_CORETYPE" "$tmp/e.txt" && bad "warning without OPENBLAS_CORETYPE: $(cat "$tmp/e.txt")" || ok

# Cold: both sides cycle through copies totalling the cold size.
"$SPARSIFY" bench --shape 64x256 --batch 1,8 --cold-mib 2 --reps 3 --json >"$tmp/c.json" 2>"$tmp/e.txt" \
    && ok || bad "--cold: $(cat "$tmp/e.txt")"
got=$(json_get "$tmp/c.json" "all(r['cold'] is True and r['copies_dense'] * (r['weight_bytes_dense'] + (256 + 64) * r['batch'] * 4) >= 2 << 20 and r['copies_sparse'] > r['copies_dense'] and r['max_rel_error'] < 1e-4 for r in d)")
[ "$got" = True ] && ok || bad "cold fields: $(cat "$tmp/c.json")"

# bf16 values: checked against the product of the rounded operands, dense
# baseline f32, OpenBLAS's bf16 routine reported when it has one.
for pat in unstructured 2:4 4x1; do
    "$SPARSIFY" bench --shape 96x130 --batch 1,5 --pattern $pat --dtype bfloat16 --reps 3 --json \
        >"$tmp/b.json" 2>"$tmp/e.txt" && ok || bad "--dtype bfloat16 $pat: $(cat "$tmp/e.txt")"
    got=$(json_get "$tmp/b.json" "all(r['dtype'] == 'bfloat16' and r['kernel'].startswith('sp_bf16_') and r['max_rel_error'] < 1e-4 and 'bf16_dense_routine' in r and r['dense_routine'].startswith('cblas_s') for r in d)")
    [ "$got" = True ] && ok || bad "bf16 $pat: $(cat "$tmp/b.json")"
done
"$SPARSIFY" bench --shape 8x8 --dtype float16 >/dev/null 2>"$tmp/e.txt"
[ $? -eq 2 ] && ok || bad "--dtype float16 should be a usage error"
"$SPARSIFY" bench --shape 8x8 --kernel sp_bf16_spmm_sell_ukernel__scalar >/dev/null 2>"$tmp/e.txt"
[ $? -eq 2 ] && grep -q "bfloat16" "$tmp/e.txt" && ok || bad "bf16 kernel on f32 values: $(cat "$tmp/e.txt")"

# Dispatch never loses: a dense weight is left to the dense path by the
# estimate, while the sparse kernel is still timed (the measured decision
# is tested in tests/check_kernels.c, where the margin does not depend on
# the OpenBLAS core the environment forces); a 99%-sparse one runs sparse
# by the estimate and by measurement.
"$SPARSIFY" bench --shape 256x256 --batch 64 --sparsity 0 --fallback auto --reps 3 --json >"$tmp/f.json" \
    && ok || bad "fallback auto run failed"
got=$(json_get "$tmp/f.json" "(d['dispatch'], d['dispatch_kernel'] == 'dense-fallback', d['kernel'].startswith('sp_f32_spmm_csr'))")
[ "$got" = "('dense', True, True)" ] && ok || bad "fallback auto: $(cat "$tmp/f.json")"
for fb in auto measure; do
    "$SPARSIFY" bench --shape 256x256 --batch 64 --sparsity 0.99 --fallback $fb --reps 3 --json >"$tmp/f.json" \
        && ok || bad "sparse run failed"
    got=$(json_get "$tmp/f.json" "d['dispatch']")
    [ "$got" = sparse ] && ok || bad "99% sparse dispatch ($fb): $got"
done

# Usage errors exit 2.
for args in "" "--shape 3x" "--shape 8x8 --pattern 3x" "--shape 8x8 --sparsity 2" \
    "--shape 8x8 --threads 0" "--shape 8x8 --kernel nope" "--shape 8x8 --bogus" \
    "--shape 8x8 --batch 0" "--shape 8x8 --cold-mib 0" "--shape 8x8 --dtype int8"; do
    # shellcheck disable=SC2086
    "$SPARSIFY" bench $args >/dev/null 2>"$tmp/e.txt"
    rc=$?
    [ $rc -eq 2 ] && ok || bad "bench $args exited $rc, want 2"
done
"$SPARSIFY" bench --help | grep -q "cblas_sgemv" && ok || bad "--help"
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
    "$SPARSIFY" bench "$tmp/m.pt" --batch 8 --reps 3 --json --cold-mib 1 >"$tmp/m.json" 2>"$tmp/e.txt" \
        && ok || bad "bench MODEL: $(cat "$tmp/e.txt")"
    got=$(json_get "$tmp/m.json" "([l['layer'] for l in d['layers']], d['total']['layers'], all(l['max_rel_error'] < 1e-4 for l in d['layers']))")
    [ "$got" = "(['fc1.weight', 'conv.weight', 'fc2.weight'], 3, True)" ] && ok || bad "bench MODEL layers: $got"
    got=$(json_get "$tmp/m.json" "['%.2f' % l['sparsity'] for l in d['layers']]")
    [ "$got" = "['0.80', '0.00', '0.80']" ] && ok || bad "bench MODEL sparsity: $got"
    # the cold sweep of all layers: copies of the whole model past 1 MiB
    got=$(json_get "$tmp/m.json" "(d['sweep']['cold'], d['sweep']['batch'], d['sweep']['bytes_dense'] == 4 * (48 * 40 + 16 * 8 + 10 * 48), d['sweep']['copies_dense'] * d['sweep']['bytes_dense'] < (1 << 20) <= d['sweep']['copies_dense'] * (d['sweep']['bytes_dense'] + 8 * 4 * (40 + 48 + 8 + 16 + 48 + 10)), d['sweep']['sparse_ms'] > 0, d['sweep']['dense_ms'] > 0, d['sweep']['speedup'] > 0)")
    [ "$got" = "(True, 8, True, True, True, True, True)" ] && ok || bad "bench MODEL sweep: $(cat "$tmp/m.json")"
    "$SPARSIFY" bench "$tmp/m.pt" --batch 8 --pattern 2:4 --reps 3 --cold-mib 1 >"$tmp/m.txt" 2>"$tmp/e.txt" \
        && grep -q "^total: 3 layers" "$tmp/m.txt" && grep -q "^sweep (cold" "$tmp/m.txt" \
        && ok || bad "bench MODEL 2:4: $(cat "$tmp/e.txt" "$tmp/m.txt")"
else
    echo "skipped the MODEL form: /usr/bin/python3 has no torch"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
