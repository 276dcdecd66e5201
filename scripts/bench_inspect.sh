#!/usr/bin/env bash
# Benchmark: `sparsify inspect` against torch.load on one BERT-base-sized
# checkpoint (about 110M fp32 parameters, Hugging Face BERT names), measured
# in the same run: wall time and peak resident memory (GNU time).
#
# usage: bash scripts/bench_inspect.sh [path/to/sparsify]
# needs: /usr/bin/python3 with Debian's python3-torch, /usr/bin/time
set -euo pipefail
cd "$(dirname "$0")/.."
SPARSIFY=${1:-${SPARSIFY:-build/sparsify}}
[ -x "$SPARSIFY" ] || { echo "bench_inspect: no sparsify binary at '$SPARSIFY'" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench_inspect: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pt="$tmp/bert_base.pt"
st="$tmp/bert_base.safetensors"
/usr/bin/python3 tests/make_fixtures.py --bert-base "$pt"
/usr/bin/python3 tests/make_fixtures.py --bert-base "$st" --format safetensors >/dev/null
echo "file: $(du -h "$pt" | cut -f1) (torch zip), $(du -h "$st" | cut -f1) (safetensors)"

measure() { # label, command...: prints "label: N s M KB"
    local label=$1
    shift
    /usr/bin/time -f "%e %M" -o "$tmp/t" "$@" >/dev/null
    read -r secs kb <"$tmp/t"
    printf '%-44s %7s s %9s KB\n' "$label" "$secs" "$kb"
    echo "$secs $kb" >"$tmp/last"
}

# Warm the page cache so both sides read from memory.
cat "$pt" "$st" >/dev/null

measure "sparsify --version (startup only)" "$SPARSIFY" --version
measure "sparsify inspect --json (torch zip)" "$SPARSIFY" inspect --json "$pt"
read -r s_secs s_kb <"$tmp/last"
measure "sparsify inspect (safetensors)" "$SPARSIFY" inspect "$st"
measure "python3 -c 'torch.load(...)'" /usr/bin/python3 -c "import torch; torch.load('$pt')"
read -r t_secs t_kb <"$tmp/last"
measure "python3 -c 'import torch' (startup only)" /usr/bin/python3 -c "import torch"
awk -v a="$s_secs" -v b="$t_secs" -v c="$s_kb" -v d="$t_kb" 'BEGIN {
    printf "ratio torch.load / inspect: time %.1fx, peak RSS %.1fx\n", (a > 0 ? b / a : 0), (c > 0 ? d / c : 0) }'
