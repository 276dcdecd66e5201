#!/usr/bin/env bash
# Benchmark: sparsify on a synthetic Llama-shaped bf16 Hugging Face folder
# (scripts/make_llama_folder.py) against a straightforward PyTorch script
# (scripts/bench_llm_torch.py: load shards, prune, save), in one run, page
# cache warm. Every command runs REPEAT times (default 3), interleaved;
# prints the median wall time, the median peak RSS (/usr/bin/time) and the
# targets of the table in docs/benchmarks.md.
#
# Usage: scripts/bench_llm.sh [path/to/sparsify] [workdir]
#   env: SIZE=0.5b|1.1b|3b (default 1.1b), REPEAT=N, THREADS=N (default 2),
#        TORCH=0 (leave the PyTorch script out, e.g. for the scaling runs)
# The folders (2-6 GB each, plus one output per command) go to workdir
# (default /tmp/sparsify-llm-bench), never into the source tree.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SP=${1:-$here/../build/sparsify}
W=${2:-/tmp/sparsify-llm-bench}
PY=/usr/bin/python3
SIZE=${SIZE:-1.1b}
REPEAT=${REPEAT:-3}
THREADS=${THREADS:-2}
TORCH=${TORCH:-1}
IN="$W/llama-$SIZE"
mkdir -p "$W"
[ -f "$IN/config.json" ] || $PY "$here/make_llama_folder.py" "$IN" --size "$SIZE"
# the 2:4 pruned folder export reads (made once, not timed)
P24="$W/llama-$SIZE.2of4"
[ -f "$P24/config.json" ] || "$SP" prune "$IN" -o "$P24" --pattern 2:4 -q
echo "folder: $IN, $(du -sb "$IN" | cut -f1) bytes"
echo "largest tensor: 131072000 bytes (32000 x 2048 bf16); RSS bound 2x + 150 MB = 412 MB"
echo "machine: $(nproc) cores, threads $THREADS, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

T="--threads $THREADS -q --force"
cmd_of() { # label -> command line
  case $1 in
    torch-2:4)        echo "$PY $here/bench_llm_torch.py $IN $W/out.torch24 2:4 $THREADS" ;;
    torch-0.5)        echo "$PY $here/bench_llm_torch.py $IN $W/out.torch50 0.5 $THREADS" ;;
    prune-2:4)        echo "$SP prune $IN -o $W/out.24 --pattern 2:4 $T" ;;
    prune-0.5)        echo "$SP prune $IN -o $W/out.50 --sparsity 0.5 $T" ;;
    prune-0.5-global) echo "$SP prune $IN -o $W/out.50g --sparsity 0.5 --scope global $T" ;;
    export-ct-2:4)    echo "$SP export $P24 -o $W/out.ct --format compressed-tensors $T" ;;
    export-spz-2:4)   echo "$SP export $P24 -o $W/out.spz $T" ;;
    check-2:4)        echo "$SP check $P24 --pattern 2:4 --threads $THREADS -q" ;;
    inspect)          echo "$SP inspect $P24 --threads $THREADS" ;;
    densify-spz)      echo "$SP densify $W/out.spz -o $W/out.dense.safetensors --threads $THREADS --force" ;;
  esac
}
labels="prune-2:4 prune-0.5 prune-0.5-global export-ct-2:4 export-spz-2:4 check-2:4 inspect densify-spz"
[ "$TORCH" = 1 ] && labels="torch-2:4 torch-0.5 $labels"
rm -f "$W"/time.*

warm() { # the page cache holds every input
  cat "$IN"/* "$P24"/* > /dev/null
  [ -f "$W/out.spz" ] && cat "$W/out.spz" > /dev/null
  return 0
}
measure() { # label run
  local label=$1 r=$2 f=$W/time.${1//:/_}.$2
  # no output to truncate, nothing dirty to write back, inputs cached: the
  # same starting point for every command (the spz densify reads stays)
  rm -rf "$W"/out.torch* "$W"/out.24 "$W"/out.50 "$W"/out.50g "$W"/out.ct "$W"/out.dense.*
  [ "$label" = export-spz-2:4 ] && rm -f "$W/out.spz"
  sync
  warm
  # shellcheck disable=SC2046
  /usr/bin/time -f "%e %M" -o "$f" $(cmd_of "$label") >/dev/null 2>"$W/err.$label" ||
    { cat "$W/err.$label"; exit 1; }
}
for r in $(seq 1 "$REPEAT"); do
  for l in $labels; do measure "$l" "$r"; done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf "%-18s %10s %14s   %s\n" command "median s" "peak RSS MB" "all runs (s)"
for l in $labels; do
  f="$W/time.${l//:/_}"
  t=$(cat "$f".* | awk '{print $1}' | median)
  m=$(cat "$f".* | awk '{print $2/1024}' | median)
  runs=$(cat "$f".* | awk '{printf "%s ", $1}')
  printf "%-18s %10.2f %14.1f   %s\n" "$l" "$t" "$m" "$runs"
  v=${l//[-:.]/_}
  eval "T_$v=$t; M_$v=$m"
done
if [ "$TORCH" = 1 ]; then
  echo "prune --pattern 2:4 vs torch: $(awk "BEGIN{printf \"%.1f\", $T_torch_2_4 / $T_prune_2_4}")x (target >= 10x, <= 3 s)"
  echo "prune --sparsity 0.5 vs torch: $(awk "BEGIN{printf \"%.1f\", $T_torch_0_5 / $T_prune_0_5}")x (target >= 10x, <= 3 s)"
fi
echo "targets: prune-0.5-global <= 5 s, export-ct-2:4 <= 5 s, sparsify peak RSS <= 412 MB"
