#!/usr/bin/env bash
# sparsify bootstrap: install what is missing (Debian packages), build, then
#   example  run the main job on the bundled example
#   test     run the whole test suite
# Usage: bash scripts/bootstrap.sh example|test
set -euo pipefail
cd "$(dirname "$0")/.."

want=(meson ninja-build pkg-config gcc g++ libcjson-dev libpcre2-dev libyaml-dev check zlib1g-dev
      libopenblas-dev libtorch-dev libgloo-dev python3-torch python3-numpy xz-utils gzip time
      clang libclang-rt-14-dev man-db groff-base zsh chromium)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

BUILD=${BUILD:-build}
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" --buildtype=release
fi
ninja -C "$BUILD"

case "${1:-}" in
  example) exec bash examples/digits/run.sh "$BUILD/sparsify" ;;
  test)
    rc=0
    meson test -C "$BUILD" --print-errorlogs --num-processes 2 || rc=$?
    # plain summary line from meson's JSON log (one object per test)
    log="$BUILD/meson-logs/testlog.json"
    if [ -f "$log" ]; then
      ok=$(grep -c '"result": "OK"' "$log" || true)
      bad=$(grep -c -E '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$log" || true)
      skip=$(grep -c '"result": "SKIP"' "$log" || true)
      echo "tests: $ok passed, $bad failed, $skip skipped"
    fi
    exit $rc ;;
  *) echo "usage: bash scripts/bootstrap.sh example|test" >&2; exit 2 ;;
esac
