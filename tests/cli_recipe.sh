#!/bin/bash
# CLI test: sparsify recipe list | show | validate, output and exit codes.
# Env: SPARSIFY (binary), SPARSIFY_SRC (source root).
set -u
SP=${SPARSIFY:?set SPARSIFY to the sparsify binary}
SRC=${SPARSIFY_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0

# expect NAME WANT_RC CMD... ; stdout -> $T/out, stderr -> $T/err
expect() {
    local name=$1 want=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" -eq "$want" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL $name: exit $rc, want $want"
        sed 's/^/  out: /' "$T/out" | head -5
        sed 's/^/  err: /' "$T/err" | head -5
    fi
}
check() { # NAME CONDITION-COMMAND...
    local name=$1
    shift
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $name"; fi
}

expect help 0 "$SP" recipe --help
check help-usage grep -q "usage: sparsify recipe list" "$T/out"
expect help-h 0 "$SP" recipe validate -h
expect no-sub 2 "$SP" recipe
check no-sub-msg grep -q "try 'sparsify recipe --help'" "$T/err"
expect bad-sub 2 "$SP" recipe frobnicate
check bad-sub-msg grep -q "unknown subcommand 'frobnicate'" "$T/err"

expect list 0 "$SP" recipe list
for n in unstructured-50 unstructured-80 unstructured-90 unstructured-95 global-90 \
         block4x1-90 block16x16-80 2:4 gradual-90 movement-90; do
    check "list-$n" grep -q "^$n " "$T/out"
done
check list-count test "$(wc -l <"$T/out")" -eq "$(ls "$SRC"/recipes/templates/*.json | wc -l)"
expect list-extra 2 "$SP" recipe list extra

# show prints the template byte for byte
expect show 0 "$SP" recipe show gradual-90
check show-bytes cmp -s "$T/out" "$SRC/recipes/templates/gradual-90.json"
expect show-24 0 "$SP" recipe show 2:4
check show-24-bytes cmp -s "$T/out" "$SRC/recipes/templates/nm-2-4.json"
expect show-alias 0 "$SP" recipe show nm-2-4
expect show-missing 2 "$SP" recipe show nope
check show-missing-msg grep -q "no bundled recipe named 'nope'" "$T/err"

# validate: bundled names, files written by show, and bad recipes
for n in $("$SP" recipe list | awk '{print $1}'); do
    expect "validate-$n" 0 "$SP" recipe validate "$n"
    check "validate-$n-ok" grep -q "^ok: 1 modifier$" "$T/out"
done
"$SP" recipe show movement-90 >"$T/m.json"
expect validate-file 0 "$SP" recipe validate "$T/m.json"
check validate-file-summary grep -q "MovementPruningModifier 0.9 unstructured cubic from 0 at epoch 0 to epoch 8 every 1" "$T/out"

cat >"$T/two.json" <<'J'
{"version": 1, "modifiers": [
  {"type": "!GMPruningModifier", "params": ["re:.*attention.*weight"], "init_sparsity": 0.05,
   "final_sparsity": 0.8, "start_epoch": 1, "end_epoch": 5, "update_frequency": 0.5,
   "inter_func": "linear", "mask_type": [4, 1]},
  {"type": "DistillationModifier", "hardness": 0.8, "temperature": 2, "teacher": "dense.pt"}
]}
J
expect validate-two 0 "$SP" recipe validate "$T/two.json"
check validate-two-head grep -q "^ok: 2 modifiers$" "$T/out"
check validate-two-gmp grep -q "\[0\] GMPruningModifier 0.8 4x1 linear" "$T/out"
check validate-two-kd grep -q "\[1\] DistillationModifier hardness 0.8 temperature 2" "$T/out"

echo '{"version": 1, "modifiers": [{"type": "GMPruningModifier", "final_sparsity": 0.5}, {"type": "GMPruningModifier", "final_sparsity": 1.5}]}' >"$T/r.json"
expect validate-range 2 "$SP" recipe validate "$T/r.json"
check validate-range-msg grep -qx "sparsify: error: '$T/r.json': modifiers\[1\].final_sparsity: 1.5 is out of range \[0, 1\]" "$T/err"
check validate-range-stdout test ! -s "$T/out"

echo '{"modifiers": [{"type": "magnitude", "final_sparsity": 0.5, "mask": "2:4"}]}' >"$T/u.json"
expect validate-unknown 2 "$SP" recipe validate "$T/u.json"
check validate-unknown-msg grep -q "modifiers\[0\].mask: unknown field" "$T/err"

printf '{"modifiers": [\n  {"type": }\n]}' >"$T/j.json"
expect validate-json 2 "$SP" recipe validate "$T/j.json"
check validate-json-msg grep -q "invalid JSON at line 2, column 12" "$T/err"

expect validate-missing 2 "$SP" recipe validate "$T/none.json"
check validate-missing-msg grep -q "cannot open '$T/none.json': No such file or directory" "$T/err"
expect validate-noname 2 "$SP" recipe validate not-a-recipe
check validate-noname-msg grep -q "no recipe file or bundled recipe named 'not-a-recipe'" "$T/err"
expect validate-args 2 "$SP" recipe validate
expect validate-opt 2 "$SP" recipe validate --frob x

# --json: list and validate, read back by a JSON parser
jq_py() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($1) else 1)" "$T/out"; }
expect list-json 0 "$SP" recipe list --json
check list-json-names jq_py "[r['name'] for r in d['recipes']] == '''$("$SP" recipe list | awk '{print $1}' | tr '\n' ' ')'''.split()"
check list-json-summary jq_py "all(r['summary'] for r in d['recipes'])"
expect validate-json 0 "$SP" recipe validate "$T/two.json" --json
check validate-json-ok jq_py "d['ok'] is True and [m['type'] for m in d['modifiers']] == ['GMPruningModifier', 'DistillationModifier']"
check validate-json-gmp jq_py "d['modifiers'][0]['mask_type'] == '4x1' and d['modifiers'][0]['params'] == ['re:.*attention.*weight'] and d['modifiers'][0]['final_sparsity'] == 0.8 and d['modifiers'][0]['inter_func'] == 'linear'"
check validate-json-kd jq_py "d['modifiers'][1]['hardness'] == 0.8 and d['modifiers'][1]['teacher'] == 'dense.pt'"
expect validate-json-bad 2 "$SP" recipe validate --json "$T/r.json"
check validate-json-bad-out jq_py "d['ok'] is False and 'modifiers[1].final_sparsity: 1.5 is out of range' in d['error']"
check validate-json-bad-err test "$(grep -c 'sparsify: error:' "$T/err")" -eq 1
expect show-json 2 "$SP" recipe show gradual-90 --json

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
