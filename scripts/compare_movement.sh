#!/usr/bin/env bash
# Movement pruning, hard and soft masks, against gradual magnitude pruning
# (GMP) on the digits example: the same dense start (examples/digits/dense.pt,
# converged), the same cubic schedule to 90% sparsity, the same optimizer,
# batches and seeds; validation accuracy of the fine-tuned 90%-sparse model.
#
#   hard  MovementPruningModifier (SparseML): pruned weights are zeroed; their
#         scores stop moving
#   soft  MovementPruningModifier with mask_mode: soft (Sanh et al.): dense
#         weights kept, the mask applied in the forward pass only, so pruned
#         weights can come back until the schedule ends
#
# usage: bash scripts/compare_movement.sh [SPARSIFY] [SEEDS]
#   SPARSIFY  default build/sparsify (built with libtorch)
#   SEEDS     default "1 2 3"
# Two schedules: short (epochs 0-8 of 10, the bundled gradual-90 and
# movement-90 templates) and long (epochs 0-20 of 30). Results in
# docs/pruning.md.
set -euo pipefail
SPARSIFY=${1:-build/sparsify}
SEEDS=${2:-1 2 3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/sparsify-movement.XXXXXX")
trap 'rm -rf "$W"' EXIT

awk -v tr="$W/train.csv" -v va="$W/val.csv" \
    'NR == 1 { print > tr; print > va; next }
     { if ((NR - 2) % 5 == 0) print > va; else print > tr }' "$HERE/examples/digits/digits.csv"

recipe() { # CLASS END SOFT -> a recipe file
    local f="$W/$1-$2-$3.yaml"
    {
        printf 'pruning_modifiers:\n  - !%s\n' "$1"
        printf '    params: __ALL_PRUNABLE__\n    init_sparsity: 0.0\n    final_sparsity: 0.9\n'
        printf '    start_epoch: 0\n    end_epoch: %s\n    update_frequency: 1\n    inter_func: cubic\n' "$2"
        [ "$3" = soft ] && printf '    mask_mode: soft\n'
    } >"$f"
    echo "$f"
}

accuracy() { # RECIPE EPOCHS SEED
    "$SPARSIFY" finetune "$HERE/examples/digits/dense.pt" -o "$W/out.pt" --force --data "$W/train.csv" \
        --val "$W/val.csv" --epochs "$2" --lr 1e-3 --batch-size 32 --seed "$3" --recipe "$1" \
        --json -q | tail -n 1 | sed -n 's/.*"val_accuracy":\([0-9.eE+-]*\).*/\1/p' |
        awk '{ printf "%.2f", 100 * $1 }'
}

dense=$("$SPARSIFY" finetune "$HERE/examples/digits/dense.pt" --val "$W/val.csv" --eval-only --json -q |
    sed -n 's/.*"val_accuracy":\([0-9.eE+-]*\).*/\1/p' | awk '{ printf "%.2f", 100 * $1 }')
echo "dense model: $dense% validation accuracy (360 samples: one sample is 0.28 points)"
for sched in "8 10" "20 30"; do
    set -- $sched
    end=$1 epochs=$2
    printf '\nschedule 0 -> 90%% over epochs 0-%s, %s epochs, AdamW lr 1e-3, batch 32\n' "$end" "$epochs"
    printf '%-24s' "method"
    for s in $SEEDS; do printf ' %8s' "seed $s"; done
    printf ' %8s\n' "mean"
    for m in "GMP GMPruningModifier hard" "movement-hard MovementPruningModifier hard" \
             "movement-soft MovementPruningModifier soft"; do
        set -- $m
        r=$(recipe "$2" "$end" "$3")
        printf '%-24s' "$1"
        sum=0 n=0
        for s in $SEEDS; do
            a=$(accuracy "$r" "$epochs" "$s")
            printf ' %7s%%' "$a"
            sum=$(awk -v x="$sum" -v y="$a" 'BEGIN { print x + y }')
            n=$((n + 1))
        done
        awk -v x="$sum" -v n="$n" 'BEGIN { printf " %7.2f%%\n", x / n }'
    done
done
