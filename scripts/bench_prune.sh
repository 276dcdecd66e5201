#!/usr/bin/env bash
# Benchmark: `sparsify prune` on a BERT-base-sized checkpoint (~110M params,
# ~85M in 2-D weights, written by PyTorch) against the equivalent PyTorch
# script (scripts/bench_prune_torch.py), in one run. Every command runs
# REPEAT times (default 5), interleaved; prints the median wall time and the
# median peak RSS of each, and the ratios.
# Usage: scripts/bench_prune.sh [path/to/sparsify] [workdir]
#   env: REPEAT=N (runs per command), FORMAT=pt|safetensors (input format)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SP=${1:-$here/../build/sparsify}
W=${2:-$(mktemp -d)}
PY=/usr/bin/python3
REPEAT=${REPEAT:-5}
FORMAT=${FORMAT:-pt}
IN="$W/bert.$FORMAT"
[ -f "$IN" ] || $PY "$here/../tests/make_fixtures.py" --bert-base "$IN" --format "$FORMAT" >/dev/null
ls -l "$IN" | awk '{printf "checkpoint: %s bytes\n", $5}'
echo "machine: $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

cmd_of() { # label -> command line
  case $1 in
    torch-script)    echo "$PY $here/bench_prune_torch.py $IN $W/out.torch 0.9" ;;
    sparsify-layer)  echo "$SP prune $IN -o $W/out.layer --force --sparsity 0.9 -q" ;;
    sparsify-global) echo "$SP prune $IN -o $W/out.global --force --sparsity 0.9 --scope global -q" ;;
    sparsify-4x1)    echo "$SP prune $IN -o $W/out.4x1 --force --sparsity 0.9 --pattern 4x1 -q" ;;
    sparsify-2of4)   echo "$SP prune $IN -o $W/out.2of4 --force --pattern 2:4 -q" ;;
  esac
}
labels="torch-script sparsify-layer sparsify-global sparsify-4x1 sparsify-2of4"
rm -f "$W"/time.*

measure() { # label run
  local label=$1 r=$2
  # no output file to truncate, nothing dirty to write back, input cached:
  # the same starting point for every command
  rm -f "$W"/out.*
  sync
  cat "$IN" > /dev/null
  # shellcheck disable=SC2046
  /usr/bin/time -f "%e %M" -o "$W/time.$label.$r" $(cmd_of "$label") >/dev/null 2>"$W/err.$label" ||
    { cat "$W/err.$label"; exit 1; }
}
for r in $(seq 1 "$REPEAT"); do
  for l in $labels; do measure "$l" "$r"; done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf "%-18s %10s %10s %14s   %s\n" command "median s" "min s" "peak RSS MB" "all runs (s)"
for l in $labels; do
  t=$(cat "$W"/time."$l".* | awk '{print $1}' | median)
  tmin=$(cat "$W"/time."$l".* | awk '{print $1}' | sort -g | head -1)
  m=$(cat "$W"/time."$l".* | awk '{print $2/1024}' | median)
  runs=$(cat "$W"/time."$l".* | awk '{printf "%s ", $1}')
  printf "%-18s %10.2f %10.2f %14.1f   %s\n" "$l" "$t" "$tmin" "$m" "$runs"
  eval "T_${l//-/_}=$t"
done
echo "speedup layer/unstructured vs torch script: $(awk "BEGIN{printf \"%.2f\", $T_torch_script / $T_sparsify_layer}")x (target >= 5)"
for v in global 4x1 2of4; do
  eval "t=\$T_sparsify_$v"
  echo "sparsify $v time / layer time: $(awk "BEGIN{printf \"%.2f\", $t / $T_sparsify_layer}") (target <= 1.5)"
done
rm -f "$W"/out.*
