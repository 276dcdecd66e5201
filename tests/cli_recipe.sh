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
    check "validate-$n-ok" grep -q "^ok: 1 modifier (json)$" "$T/out"
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
check validate-two-head grep -q "^ok: 2 modifiers (json)$" "$T/out"
check validate-two-gmp grep -q "\[0\] GMPruningModifier 0.8 4x1 linear" "$T/out"
check validate-two-kd grep -q "\[1\] DistillationModifier hardness 0.8 temperature 2" "$T/out"

echo '{"version": 1, "modifiers": [{"type": "GMPruningModifier", "final_sparsity": 0.5}, {"type": "GMPruningModifier", "final_sparsity": 1.5}]}' >"$T/r.json"
expect validate-range 2 "$SP" recipe validate "$T/r.json"
check validate-range-msg grep -qx "sparsify: error: '$T/r.json': line 1: modifiers\[1\].final_sparsity: 1.5 is out of range \[0, 1\]" "$T/err"
check validate-range-stdout test ! -s "$T/out"

echo '{"modifiers": [{"type": "magnitude", "final_sparsity": 0.5, "mask": "2:4"}]}' >"$T/u.json"
expect validate-unknown 2 "$SP" recipe validate "$T/u.json"
check validate-unknown-msg grep -q "modifiers\[0\].mask: unknown field" "$T/err"

printf '{"modifiers": [\n  {"type": "constant"}\n}' >"$T/j.json"
expect validate-json 2 "$SP" recipe validate "$T/j.json"
check validate-json-msg grep -qx "sparsify: error: '$T/j.json': line 3, column 1: invalid JSON" "$T/err"

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

# YAML and Markdown recipes, found by their content
cat >"$T/r.yaml" <<'Y'
# SparseML-style: variables, anchors, tags, eval()
num_epochs: &ne 10
final: 0.85
training_modifiers:
  - !EpochRangeModifier
    start_epoch: 0
    end_epoch: *ne
pruning_modifiers:
  - !GMPruningModifier
    params: __ALL_PRUNABLE__
    init_sparsity: 0.05
    final_sparsity: eval(final)
    start_epoch: 1
    end_epoch: eval(num_epochs - 2)
    update_frequency: 0.5
Y
expect validate-yaml 0 "$SP" recipe validate "$T/r.yaml"
check validate-yaml-head grep -q "^ok: 2 modifiers (yaml)$" "$T/out"
check validate-yaml-gmp grep -q "\[1\] GMPruningModifier 0.85 unstructured cubic from 0.05 at epoch 1 to epoch 8 every 0.5 params __ALL_PRUNABLE__  (pruning_modifiers\[0\], line 9)" "$T/out"
cp "$T/r.yaml" "$T/card.txt"
{ printf '<!-- licence -->\n---\n'; cat "$T/r.yaml"; printf -- '---\n\n# A recipe card\n\nText: [not yaml\n'; } >"$T/card.md"
expect validate-md 0 "$SP" recipe validate "$T/card.md"
check validate-md-head grep -q "^ok: 2 modifiers (markdown)$" "$T/out"
check validate-md-line grep -q "(pruning_modifiers\[0\], line 11)" "$T/out"

# every problem, one line each, with its line and field
cat >"$T/bad.yaml" <<'Y'
pruning_modifiers:
  - !GMPruningModifier
    final_sparsity: 1.5
    end_epoch: eval(num_epoch)
  - !MagnitudePruningModifier
    final_sparsity: 0.5
    mask_typ: 2:4
Y
expect validate-all 2 "$SP" recipe validate "$T/bad.yaml"
check validate-all-count test "$(grep -c '^sparsify: error:' "$T/err")" -eq 3
check validate-all-1 grep -qx "sparsify: error: '$T/bad.yaml': line 4: pruning_modifiers\[0\].end_epoch: eval(num_epoch): unknown variable 'num_epoch'" "$T/err"
check validate-all-2 grep -qx "sparsify: error: '$T/bad.yaml': line 3: pruning_modifiers\[0\].final_sparsity: 1.5 is out of range \[0, 1\]" "$T/err"
check validate-all-3 grep -qx "sparsify: error: '$T/bad.yaml': line 7: pruning_modifiers\[1\].mask_typ: unknown field (did you mean 'mask_type'?)" "$T/err"
check validate-all-stdout test ! -s "$T/out"
expect validate-all-json 2 "$SP" recipe validate "$T/bad.yaml" --json
check validate-all-json-out jq_py "d['ok'] is False and [(p['line'], p['path']) for p in d['problems']] == [(3, 'pruning_modifiers[0].final_sparsity'), (4, 'pruning_modifiers[0].end_epoch'), (7, 'pruning_modifiers[1].mask_typ')]"

# modifiers sparsify does not implement: exit 2 naming the closest; --substitute runs it
cat >"$T/sgpt.yaml" <<'Y'
sparsity_stage:
  run_type: oneshot
  sparsity_modifiers:
    SparseGPTModifier:
      sparsity: 0.5
      mask_structure: "2:4"
      sequential_update: false
quantization_stage:
  run_type: oneshot
  quantization_modifiers:
    GPTQModifier:
      ignore: ["lm_head"]
Y
expect validate-sgpt 2 "$SP" recipe validate "$T/sgpt.yaml"
check validate-sgpt-msg grep -q "line 4: sparsity_stage.sparsity_modifiers.SparseGPTModifier: SparseGPTModifier is not implemented by sparsify; the closest it has is MagnitudePruningModifier" "$T/err"
check validate-sgpt-one test "$(grep -c '^sparsify: error:' "$T/err")" -eq 1
expect validate-sgpt-sub 0 "$SP" recipe validate "$T/sgpt.yaml" --substitute
check validate-sgpt-sub-warn grep -q "warning: .*SparseGPTModifier runs as MagnitudePruningModifier (--substitute)" "$T/err"
check validate-sgpt-quant grep -q "warning: .*GPTQModifier is not applied: sparsify does not quantize" "$T/err"
check validate-sgpt-sub-out grep -q "MagnitudePruningModifier 0.5 2:4 one-shot at epoch 0 params __ALL_PRUNABLE__ (for SparseGPTModifier) \[stage sparsity_stage\]" "$T/out"

# convert: stdout, -o, never replacing what exists without --force
expect convert 0 "$SP" recipe convert "$T/r.yaml"
cp "$T/out" "$T/conv1.json"
check convert-json jq_py "d['version'] == 1 and [m['type'] for m in d['modifiers']] == ['EpochRangeModifier', 'GMPruningModifier'] and d['modifiers'][1]['final_sparsity'] == 0.85 and d['modifiers'][1]['end_epoch'] == 8"
expect convert-o 0 "$SP" recipe convert "$T/r.yaml" -o "$T/conv.json"
check convert-o-same cmp -s "$T/conv.json" "$T/conv1.json"
expect convert-reread 0 "$SP" recipe convert "$T/conv.json"
check convert-fixpoint cmp -s "$T/out" "$T/conv1.json"
echo keep >"$T/exists.json"
expect convert-exists 2 "$SP" recipe convert "$T/r.yaml" -o "$T/exists.json"
check convert-exists-msg grep -qx "sparsify: error: output '$T/exists.json' exists; use --force to replace it" "$T/err"
check convert-exists-kept grep -qx keep "$T/exists.json"
expect convert-force 0 "$SP" recipe convert "$T/r.yaml" -o "$T/exists.json" --force
check convert-force-same cmp -s "$T/exists.json" "$T/conv1.json"
expect convert-self 2 "$SP" recipe convert "$T/conv.json" -o "$T/conv.json" --force
check convert-self-msg grep -q "output '$T/conv.json' is the input; this command writes a new file and never replaces its input" "$T/err"
expect convert-bad 2 "$SP" recipe convert "$T/bad.yaml" -o "$T/none.json"
check convert-bad-nothing test ! -e "$T/none.json"
check convert-no-temp test -z "$(ls -A "$T" | grep '^\.')"
expect convert-sgpt 2 "$SP" recipe convert "$T/sgpt.yaml"
expect convert-sgpt-sub 0 "$SP" recipe convert "$T/sgpt.yaml" --substitute
check convert-sgpt-sub-out jq_py "[m['type'] for m in d['modifiers']] == ['MagnitudePruningModifier', 'GPTQModifier'] and d['modifiers'][0]['mask_type'] == '2:4' and d['modifiers'][1]['ignore'] == ['lm_head']"
expect convert-usage 2 "$SP" recipe validate "$T/r.yaml" -o x.json
expect convert-usage2 2 "$SP" recipe list --substitute

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
