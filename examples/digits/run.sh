#!/usr/bin/env bash
# The main job end to end on real data (UCI handwritten digits, README.md):
#   dense model -> sparsify prune to 90% -> sparsify finetune (masks held, on
#   the sparse kernels) -> sparsify export (.spz) / inspect -> sparsify run
#   --compare (the fine-tuned model on the sparse kernels against dense
#   libtorch), printing the accuracy at each stage and the speedup.
#
# usage: bash examples/digits/run.sh [SPARSIFY_BINARY] [WORK_DIR]
#   SPARSIFY_BINARY  default build/sparsify
#   WORK_DIR         where outputs go (default: a new temp folder, kept)
# Needs nothing but the sparsify binary (built with libtorch) and awk: the
# dense starting model is the committed dense.pt (made by make_model.py).
set -euo pipefail

SPARSIFY=${1:-build/sparsify}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=${2:-$(mktemp -d "${TMPDIR:-/tmp}/sparsify-digits.XXXXXX")}
mkdir -p "$WORK"
case $SPARSIFY in */*) SPARSIFY=$(cd "$(dirname "$SPARSIFY")" && pwd)/$(basename "$SPARSIFY") ;; esac

step() { printf '\n== %s\n' "$*"; }

# Deterministic split: every 5th data row (0-based index % 5 == 0) validates.
awk -v tr="$WORK/train.csv" -v va="$WORK/val.csv" \
    'NR == 1 { print > tr; print > va; next }
     { if ((NR - 2) % 5 == 0) print > va; else print > tr }' "$HERE/digits.csv"
echo "data: $(($(wc -l < "$WORK/train.csv") - 1)) training rows, $(($(wc -l < "$WORK/val.csv") - 1)) validation rows in $WORK"

# Accuracy of a model on the validation split, measured by libtorch.
accuracy() {
    "$SPARSIFY" run "$1" --data "$WORK/val.csv" --label-column label --batch-size 64 --json |
        sed -n 's/.*"accuracy":\([0-9.eE+-]*\).*/\1/p' |
        awk '{ printf "%.2f", 100 * $1 }'
}

step "dense model"
cp "$HERE/dense.pt" "$WORK/dense.pt"
DENSE=$(accuracy "$WORK/dense.pt")
echo "dense accuracy: $DENSE%"

step "sparsify prune to 90% (unstructured, per layer)"
"$SPARSIFY" prune "$WORK/dense.pt" -o "$WORK/pruned90.pt" --sparsity 0.9 --force
PRUNED=$(accuracy "$WORK/pruned90.pt")
echo "pruned accuracy: $PRUNED%"

step "sparsify finetune, masks held (sparse transfer learning, on the sparse kernels)"
"$SPARSIFY" finetune "$WORK/pruned90.pt" -o "$WORK/finetuned90.pt" \
    --data "$WORK/train.csv" --val "$WORK/val.csv" \
    --epochs 30 --batch-size 32 --lr 1e-2 --lr-schedule cosine --warmup-epochs 1 \
    --seed 1 --log "$WORK/finetune.jsonl"
TUNED=$(accuracy "$WORK/finetuned90.pt")
echo "fine-tuned accuracy: $TUNED%"

step "sparsify check / inspect / export"
"$SPARSIFY" check "$WORK/finetuned90.pt" --sparsity 0.9
"$SPARSIFY" inspect "$WORK/finetuned90.pt"
"$SPARSIFY" export "$WORK/finetuned90.pt" -o "$WORK/finetuned90.spz" --force
size() { wc -c < "$1" | tr -d ' '; }

step "sparsify run --compare: the fine-tuned model on the sparse kernels vs dense libtorch"
"$SPARSIFY" run "$WORK/finetuned90.pt" --data "$WORK/val.csv" --label-column label \
    --batch-size 1 --compare --repeat 3 | tee "$WORK/run.txt"
SPEEDUP=$(sed -n 's/^speedup: \([0-9.]*\)x.*/\1/p' "$WORK/run.txt")

step "summary"
printf '%-28s %10s %12s\n' "model" "accuracy" "bytes"
printf '%-28s %9s%% %12s\n' "dense.pt" "$DENSE" "$(size "$WORK/dense.pt")"
printf '%-28s %9s%% %12s\n' "pruned90.pt" "$PRUNED" "$(size "$WORK/pruned90.pt")"
printf '%-28s %9s%% %12s\n' "finetuned90.pt" "$TUNED" "$(size "$WORK/finetuned90.pt")"
printf '%-28s %10s %12s\n' "finetuned90.spz" "" "$(size "$WORK/finetuned90.spz")"
echo "sparse kernels vs dense libtorch (sparsify run --compare, batch 1): ${SPEEDUP}x"
echo "outputs in $WORK"
