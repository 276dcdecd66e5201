#!/usr/bin/env bash
# Data-parallel fine-tuning benchmark: 1 process x 2 threads against
# 2 processes x 1 thread (sparsify finetune --nproc 2), global batch 64,
# digits MLP and a wide MLP, sparse and dense kernels, with the all-reduce
# time per step. On a 2-core machine it measures overhead, not speedup.
# usage: bash scripts/bench_dist.sh [SPARSIFY_BINARY] [EPOCHS] [REPEAT]
# Results and discussion: docs/finetune.md, docs/benchmarks.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SPARSIFY=${1:-$HERE/../build/sparsify}
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 "$HERE/bench_dist.py" \
  --sparsify "$SPARSIFY" --epochs "${2:-6}" --repeat "${3:-3}"
