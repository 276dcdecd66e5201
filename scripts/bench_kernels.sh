#!/usr/bin/env bash
# scripts/bench_kernels.sh — the kernel targets of docs/benchmarks.md from one
# run: every case of the target table, for 3072x768 and 768x3072, our kernel
# against OpenBLAS on its native core (cblas_sgemv at batch 1, cblas_sgemm at
# batch 64; same data, same run, same threads), warm or cold (--cold: W and X
# cycled through copies totalling 4x the last-level cache). Each case runs
# REPEAT times, the cases interleaved, and the table gives the median of the
# speedups (each itself dense_ms / sparse_ms of medians over REPS runs per
# side in alternating blocks). OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are
# unset for the bench commands only. The load average is printed before and
# after, each case first waits (up to QUIET_WAIT=60 s) for a quiet second,
# and the table gives the median number of cores other processes kept busy
# while the case ran: numbers from a busy machine are not the ones to quote. Also
# PyTorch's CSR matmul at 90% (scripts/bench_torch_csr.py) when
# /usr/bin/python3 has torch, for the ratio to it.
#
# usage: scripts/bench_kernels.sh [SPARSIFY] [THREADS] [REPS] [REPEAT]
#   SPARSIFY defaults to build/sparsify, THREADS to 2, REPS to 30, REPEAT to 3.
# BENCH_JSON=FILE also keeps every run's JSON row (one per line) there.
# Exit 0 when every target is met, 1 when one is not.
set -eu
sp=${1:-build/sparsify}
thr=${2:-2}
reps=${3:-30}
repeat=${4:-3}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# case: pattern sparsity batch warm|cold dtype target
cases=(
    "unstructured 0.9 1 warm float32 1.5"
    "unstructured 0.9 1 cold float32 4"
    "4x1 0.9 1 cold float32 5"
    "2:4 0.5 1 cold float32 1.5"
    "2:4 0.5 1 warm float32 1.0"
    "unstructured 0.9 64 warm float32 3"
    "4x1 0.9 64 warm float32 6"
    "2:4 0.5 64 warm float32 1.3"
    "unstructured 0.9 1 cold bfloat16 6"
)

echo "sparsify bench_kernels: $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, threads $thr, reps $reps, repeat $repeat"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Cores busy with other processes over one second (from /proc/stat; nothing
# of ours runs meanwhile).
others_1s() {
    python3 - <<'PY'
import time
def busy():
    f = [int(v) for v in open("/proc/stat").readline().split()[1:9]]
    return f[0] + f[1] + f[2] + f[5] + f[6] + f[7], sum(f)
b0, t0 = busy(); time.sleep(1); b1, t1 = busy()
import os
print("%.2f" % ((b1 - b0) / max(t1 - t0, 1) * os.cpu_count()))
PY
}
# Each case waits (up to QUIET_WAIT seconds) for a second in which other
# processes keep less than a quarter of a core busy, and records how many
# cores they kept busy while it ran (others_cores: machine busy time minus
# the bench's own CPU time, over its wall time).
quiet_wait=${QUIET_WAIT:-60}
: >"$tmp/rows.jsonl"
for r in $(seq 1 "$repeat"); do
    for shape in 3072x768 768x3072; do
        for i in "${!cases[@]}"; do
            read -r pat sp_ batch temp dtype target <<<"${cases[$i]}"
            cold=()
            [ "$temp" = cold ] && cold=(--cold)
            for _ in $(seq 1 "$quiet_wait"); do
                awk -v o="$(others_1s)" 'BEGIN { exit !(o < 0.25) }' && break
            done
            python3 - "$tmp/r.json" "$i" "$temp" "$target" -- env -u OPENBLAS_CORETYPE \
                -u OPENBLAS_L2_SIZE "$sp" bench --shape "$shape" --batch "$batch" \
                --pattern "$pat" --sparsity "$sp_" --dtype "$dtype" "${cold[@]}" \
                --threads "$thr" --reps "$reps" --json >>"$tmp/rows.jsonl" <<'PY'
import json, os, resource, subprocess, sys, time
def busy():
    f = [int(v) for v in open("/proc/stat").readline().split()[1:9]]
    return f[0] + f[1] + f[2] + f[5] + f[6] + f[7], sum(f)
cmd = sys.argv[sys.argv.index("--") + 1:]
b0, t0 = busy()
w0 = time.monotonic()
with open(sys.argv[1], "w") as out:
    subprocess.run(cmd, stdout=out, check=True)
wall = time.monotonic() - w0
b1, t1 = busy()
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
machine_cores = (b1 - b0) / max(t1 - t0, 1) * os.cpu_count()
ours_cores = (ru.ru_utime + ru.ru_stime) / wall
d = json.load(open(sys.argv[1]))
d.update(case=int(sys.argv[2]), temp=sys.argv[3], target=float(sys.argv[4]),
         others_cores=max(0.0, machine_cores - ours_cores))
print(json.dumps(d))
PY
        done
    done
done
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "${BENCH_JSON:-}" ] && cp "$tmp/rows.jsonl" "$BENCH_JSON"

torch_ok=0
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 "$here/bench_torch_csr.py" \
        --threads "$thr" --reps "$reps" >"$tmp/torch.jsonl" && torch_ok=1
fi

python3 - "$tmp/rows.jsonl" "$tmp/torch.jsonl" "$torch_ok" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in rows:
    groups.setdefault((r["case"], r["shape"]), []).append(r)
core = rows[0]["dense_core"] if rows else "?"
print("dense: OpenBLAS core %s (cblas_sgemv at batch 1, cblas_sgemm at 64)" % core)
print()
print("| case | shape | kernel | dense | dense ms | sparse ms | speedup | target | met "
      "| bytes ceiling | sparse GB/s | picks | others' cores |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
allmet = True
for key in sorted(groups, key=lambda k: (k[0], k[1] != "3072x768")):
    g = groups[key]
    r = g[0]
    sp = statistics.median(x["speedup"] for x in g)
    dms = statistics.median(x["dense_ms"] for x in g)
    sms = statistics.median(x["sparse_ms"] for x in g)
    gbps = statistics.median(x["sparse_gbps"] for x in g)
    others = statistics.median(x["others_cores"] for x in g)
    met = sp >= r["target"]
    allmet &= met
    label = "%s %s%s, batch %d, %s" % (
        "90%" if r["pattern"] != "2:4" else "", r["pattern"],
        ", bf16 values" if r["dtype"] == "bfloat16" else "", r["batch"], r["temp"])
    ceiling = r["weight_bytes_dense"] / r["weight_bytes_sparse"]
    print("| %s | %s | %s | %s | %.4f | %.4f | %.2fx | %.1fx | %s | %.1fx | %.0f | %s | %.2f |" % (
        label.strip(), r["shape"], r["kernel"], r["dense_routine"].replace("cblas_", ""),
        dms, sms, sp, r["target"], "yes" if met else "NO", ceiling, gbps,
        "/".join(sorted(set(x["dispatch"] for x in g))), others))
print()
if sys.argv[3] == "1":
    print("| vs torch.sparse CSR (torch 1.13, same threads) | shape | batch | torch CSR ms | "
          "torch dense ms | sparsify ms | sparsify vs torch CSR |")
    print("|---|---|---|---|---|---|---|")
    for l in open(sys.argv[2]):
        t = json.loads(l)
        ours = [x for x in rows if x["shape"] == t["shape"] and x["batch"] == t["batch"]
                and x["pattern"] == "unstructured" and x["dtype"] == "float32"
                and x["temp"] == "warm"]
        if not ours:
            continue
        sms = statistics.median(x["sparse_ms"] for x in ours)
        print("| 90%% unstructured | %s | %d | %.3f | %.3f | %.4f | %.0fx |" % (
            t["shape"], t["batch"], t["torch_csr_ms"], t["torch_dense_ms"], sms,
            t["torch_csr_ms"] / sms))
    print()
print("all targets met" if allmet else "some targets NOT met")
sys.exit(0 if allmet else 1)
PY
