#!/usr/bin/env bash
# Build the libFuzzer harnesses of fuzz/ with clang and run each briefly.
#
#   bash fuzz/run.sh [SECONDS_PER_HARNESS] [HARNESS...]
#
# env: SPARSIFY_SRC (source tree; default: this script's parent),
#      FUZZ_BUILD (clang build folder; default: $SPARSIFY_BUILD/fuzz-clang,
#      else build-fuzz in the source tree).
#
# The harnesses are the fuzz/fuzz_*.c files (fuzz/meson.build lists them);
# each starts from a scratch copy of its seeds in fuzz/corpus/<name>/, so
# the committed corpus never changes. Any crash, leak, UBSan report,
# timeout (10 s) or out-of-memory (2 GB) fails the run; its input is kept
# under $FUZZ_BUILD/artifacts/. Exit 77 (skipped) only when clang or its
# libFuzzer runtime is missing (Debian: clang, libclang-rt-14-dev).
# Long runs: docs/fuzzing.md.
set -uo pipefail
SRC=${SPARSIFY_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
SECS=${1:-10}
shift || true
if [ -n "${FUZZ_BUILD:-}" ]; then B=$FUZZ_BUILD
elif [ -n "${SPARSIFY_BUILD:-}" ]; then B=$SPARSIFY_BUILD/fuzz-clang
else B=$SRC/build-fuzz; fi

CLANG=${FUZZ_CC:-clang}
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$probe/p.c"
if ! command -v "$CLANG" >/dev/null 2>&1 ||
   ! "$CLANG" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
  echo "fuzz: skipped: no clang with the libFuzzer runtime (apt-get install clang libclang-rt-14-dev)"
  exit 77
fi

if [ ! -f "$B/build.ninja" ]; then
  CC=$CLANG CXX=${CLANG/clang/clang++} meson setup "$B" "$SRC" -Dfuzz=true -Dtorch=disabled \
    -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debugoptimized >"$B.setup.log" 2>&1 ||
    { cat "$B.setup.log"; echo "fuzz: meson setup failed"; exit 1; }
fi

if [ $# -gt 0 ]; then names=("$@")
else names=(); for f in "$SRC"/fuzz/fuzz_*.c; do n=$(basename "$f" .c); names+=("${n#fuzz_}"); done; fi
targets=(); for n in "${names[@]}"; do targets+=("fuzz/fuzz_$n"); done
ninja -C "$B" "${targets[@]}" >"$B/fuzz-build.log" 2>&1 || { tail -40 "$B/fuzz-build.log"; echo "fuzz: build failed"; exit 1; }

mkdir -p "$B/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
fail=0
for n in "${names[@]}"; do
  work=$(mktemp -d)
  cp -r "$SRC/fuzz/corpus/$n/." "$work/"
  args=(-max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$B/artifacts/$n-")
  mode="$SECS s"
  log="$B/artifacts/$n.log"
  "$B/fuzz/fuzz_$n" "${args[@]}" "$work" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rm -rf "$work"
  if [ $rc -ne 0 ]; then
    echo "FAIL fuzz_$n ($mode): exit $rc"
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -5
    fail=1
  else
    echo "ok   fuzz_$n ($mode): ${execs:-?} executions"
  fi
done
exit $fail
