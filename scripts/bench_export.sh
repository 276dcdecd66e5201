#!/bin/bash
# Export benchmark: .spz size against the information-theoretic bound and
# against xz -9, 2:4 raw size, and export/densify speed against gzip -1 —
# every baseline measured in the same run (docs/benchmarks.md, "export").
#
# usage: scripts/bench_export.sh [BUILD_DIR] [WORK_DIR]
#   BUILD_DIR  holds the sparsify binary (default: build)
#   WORK_DIR   scratch folder (default: a new temp dir, removed at the end)
# Needs /usr/bin/python3 with Debian's python3-torch (fixtures and the bound
# only), xz and gzip. Set SKIP_BERT=1 to skip the BERT-base-sized part.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
SP=$BUILD/sparsify
PY=/usr/bin/python3
if [ -n "${2:-}" ]; then W=$2; mkdir -p "$W"; KEEP=1; else W=$(mktemp -d); KEEP=0; fi
[ "$KEEP" = 1 ] || trap 'rm -rf "$W"' EXIT

now() { date +%s.%N; }
secs() { $PY -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }

# The bound: sum over pruned tensors (the prune report's targets) of
# kept values x dtype bytes + numel x H(s)/8, plus the dense bytes of every
# other tensor. s is each tensor's own measured sparsity.
bound() { # PRUNED.pt REPORT.json
    $PY - "$1" "$2" <<'EOF'
import json, math, sys, torch
sd = torch.load(sys.argv[1])
targets = {t["name"] for t in json.load(open(sys.argv[2]))["tensors"]}
b = 0.0
for k, v in sd.items():
    es = v.element_size()
    if k in targets:
        n = v.numel(); kept = int((v != 0).sum()); s = 1 - kept / n
        h = 0 if s in (0, 1) else -(s * math.log2(s) + (1 - s) * math.log2(1 - s))
        b += kept * es + n * h / 8
    else:
        b += v.numel() * es
print("%.0f" % b)
EOF
}

size() { stat -c %s "$1"; }
ratio() { $PY -c "import sys; print('%.4f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }

echo "== sparsify export benchmark ($(date -u +%Y-%m-%d), $(nproc) cores, $($SP --version))"

# ---- A: real trained weights, 90% unstructured fp32 ----
echo
echo "-- A. real weights: digits MLP (scripts/make_digits_weights.py, UCI digits), 90% unstructured fp32"
$PY "$SRC/scripts/make_digits_weights.py" "$W/digits.pt"
$SP prune "$W/digits.pt" -o "$W/digits90.pt" --force --sparsity 0.9 -q --report "$W/digits90.json"
$SP export "$W/digits90.pt" -o "$W/digits90.spz" --force >/dev/null
xz -9 -k -c "$W/digits90.pt" > "$W/digits90.pt.xz"
B=$(bound "$W/digits90.pt" "$W/digits90.json")
S=$(size "$W/digits90.spz"); X=$(size "$W/digits90.pt.xz"); D=$(size "$W/digits90.pt")
echo "pruned .pt            $D bytes"
echo "bound                 $B bytes"
echo "spz                   $S bytes   spz/bound = $(ratio "$S" "$B")   (bar: <= 1.03)"
echo "xz -9 of pruned .pt   $X bytes   spz/xz    = $(ratio "$S" "$X")   (bar: < 1)"
$SP densify "$W/digits90.spz" -o "$W/digits90.back.pt" --force >/dev/null
$PY - "$W/digits90.pt" "$W/digits90.back.pt" <<'EOF'
import sys, torch
a, b = torch.load(sys.argv[1]), torch.load(sys.argv[2])
ok = a.keys() == b.keys() and all(torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)) for k in a)
print("densify bit-exact     %s" % ok)
sys.exit(0 if ok else 1)
EOF

# ---- B: 2:4 fp32 ----
echo
echo "-- B. real weights, 2:4 fp32 (raw = kernel-ready, before compression)"
$SP prune "$W/digits.pt" -o "$W/digits24.pt" --force --pattern 2:4 -q
$SP export "$W/digits24.pt" -o "$W/digits24.raw.spz" --force --raw --json > "$W/digits24.raw.json"
$SP export "$W/digits24.pt" -o "$W/digits24.spz" --force >/dev/null
$PY - "$W/digits24.raw.json" "$(size "$W/digits24.spz")" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
nm = [t for t in r["tensors"] if t["encoding"].startswith("nm")]
raw = sum(t["raw_bytes"] for t in nm); dense = sum(t["dense_bytes"] for t in nm)
print("2:4 tensors           %s" % ", ".join("%s (%s)" % (t["name"], t["encoding"]) for t in nm))
print("raw/dense (2:4 only)  %.4f   (bar: <= 0.53)" % (raw / dense))
print("whole file raw        %d of %d dense bytes = %.4f" % (r["output_bytes"], r["dense_bytes"], r["output_bytes"] / r["dense_bytes"]))
print("whole file default    %s bytes = %.4f of dense" % (sys.argv[2], int(sys.argv[2]) / r["dense_bytes"]))
EOF

[ "${SKIP_BERT:-0}" = 1 ] && exit 0

# ---- C: BERT-base-sized (synthetic Gaussian weights, labelled so) ----
echo
echo "-- C. BERT-base-sized state dict (SYNTHETIC N(0, 0.02) weights, tests/make_fixtures.py --bert-base), 90% unstructured"
$PY "$SRC/tests/make_fixtures.py" --bert-base "$W/bert.pt" >/dev/null
$SP prune "$W/bert.pt" -o "$W/bert90.pt" --force --sparsity 0.9 -q --report "$W/bert90.json"
cat "$W/bert90.pt" > /dev/null # warm the page cache for everyone alike
t0=$(now); gzip -1 -c "$W/bert90.pt" > "$W/bert90.pt.gz"; t1=$(now)
t2=$(now); $SP export "$W/bert90.pt" -o "$W/bert90.spz" --force -q >/dev/null; t3=$(now)
t4=$(now); $SP densify "$W/bert90.spz" -o "$W/bert90.back.pt" --force >/dev/null; t5=$(now)
t6=$(now); $SP export "$W/bert90.pt" -o "$W/bert90.ct" --force -q >/dev/null; t7=$(now)
t8=$(now); $SP densify "$W/bert90.ct" -o "$W/bert90.ct.pt" --force >/dev/null; t9=$(now)
G=$(secs "$t0" "$t1"); E=$(secs "$t2" "$t3"); DS=$(secs "$t4" "$t5")
B=$(bound "$W/bert90.pt" "$W/bert90.json")
S=$(size "$W/bert90.spz"); Z=$(size "$W/bert90.pt.gz"); D=$(size "$W/bert90.pt")
echo "pruned .pt            $D bytes"
echo "gzip -1               $G s   ($Z bytes)"
echo "export .spz           $E s   ($S bytes; spz/bound = $(ratio "$S" "$B"))   export/gzip = $(ratio "$E" "$G")   (bar: < 1)"
echo "densify .spz -> .pt   $DS s   densify/gzip = $(ratio "$DS" "$G")   (bar: < 1)"
echo "export ct folder      $(secs "$t6" "$t7") s   ($(du -sb "$W/bert90.ct" | cut -f1) bytes)"
echo "densify ct -> .pt     $(secs "$t8" "$t9") s"
cmp -s <($PY -c "
import sys, torch
a = torch.load('$W/bert90.pt'); b = torch.load('$W/bert90.back.pt')
print(a.keys() == b.keys() and all(torch.equal(a[k].reshape(-1).view(torch.uint8), b[k].reshape(-1).view(torch.uint8)) for k in a))") <(echo True) \
    && echo "densify bit-exact     True" || { echo "densify bit-exact     False"; exit 1; }
