#!/usr/bin/env bash
# Step-time benchmark of `sparsify finetune`: masks vs no masks (same libtorch
# loop) vs an equivalent PyTorch Python loop, measured in one run.
# usage: bash scripts/bench_finetune.sh [SPARSIFY_BINARY] [THREADS]
# Needs /usr/bin/python3 with torch (Debian python3-torch) for the Python
# baseline. Results and discussion: docs/finetune.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SPARSIFY=${1:-$HERE/../build/sparsify}
THREADS=${2:-1}
exec /usr/bin/python3 "$HERE/bench_finetune.py" --sparsify "$SPARSIFY" --threads "$THREADS"
