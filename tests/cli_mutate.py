#!/usr/bin/python3
"""CLI test: mutated inputs are read or refused cleanly, never a crash.

For every fixture kind of tests/make_fixtures.py, and for .spz files written
by `sparsify export` (auto, bitmask, 2:4, block and raw encodings of a pruned
model), flip random bytes and cut the file at random points (fixed seed),
then run `sparsify inspect` on each mutant, `sparsify prune` on the mutated
checkpoints and `sparsify densify` on the .spz mutants. Every run must either succeed (exit 0) or exit 2 with nothing
on stdout and exactly one stderr line starting with "sparsify: error: ";
never a signal, never a sanitizer report. Built with
-Db_sanitize=address,undefined this is a small fuzzer of the readers.

env: SPARSIFY (binary), SPARSIFY_SRC (source tree), SPARSIFY_MUTATIONS
(mutants per input, default 24), SPARSIFY_MUTATE_SEED (the random seed).
"""
import concurrent.futures
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import SPARSIFY, SRC, check, summary  # noqa: E402

PER_INPUT = int(os.environ.get("SPARSIFY_MUTATIONS", "24"))
SEED = int(os.environ.get("SPARSIFY_MUTATE_SEED", "20240611"))


def mutate(data, rng):
    """One mutant of data: a cut, a few flipped bytes, or a smashed run."""
    n = len(data)
    kind = rng.randrange(4)
    if kind == 0 or n < 2:
        return data[:rng.randrange(n)] if n else data, "cut"
    b = bytearray(data)
    if kind == 1:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(n)] ^= rng.randint(1, 255)
        return bytes(b), "flip"
    if kind == 2:
        i = rng.randrange(n)
        for j in range(i, min(n, i + rng.randint(1, 8))):
            b[j] = rng.choice((0x00, 0xff, 0x7f, 0x80))
        return bytes(b), "smash"
    # flip one byte near the start or the end, where headers and indexes live
    i = rng.randrange(min(n, 256)) if rng.random() < 0.5 else n - 1 - rng.randrange(min(n, 256))
    b[i] ^= 1 << rng.randrange(8)
    return bytes(b), "edge"


def judge(args, what):
    p = subprocess.run([SPARSIFY, *args], capture_output=True)
    err = p.stderr.decode(errors="replace")
    if p.returncode < 0:
        return "%s: killed by signal %d: %s" % (what, -p.returncode, err[-3000:])
    if "runtime error" in err or "Sanitizer" in err:
        return "%s: sanitizer report: %s" % (what, err[-3000:])
    if p.returncode == 0:
        return None
    if p.returncode == 2 and p.stdout == b"" and p.stderr.count(b"\n") == 1 and \
            p.stderr.endswith(b"\n") and p.stderr.startswith(b"sparsify: error: "):
        return None
    return "%s: exit %d, stdout %d bytes, stderr %r" % (what, p.returncode, len(p.stdout), err[-3000:])


def main():
    tmp = tempfile.mkdtemp(prefix="sparsify-mutate-")
    try:
        fx = os.path.join(tmp, "fx")
        subprocess.run(["/usr/bin/python3", os.path.join(SRC, "tests", "make_fixtures.py"), fx],
                       check=True, stdout=subprocess.DEVNULL)
        manifest = json.load(open(os.path.join(fx, "manifest.json")))
        # (path of the file to mutate, path to give the CLI, commands)
        targets = []
        for f in manifest["fixtures"]:
            path = os.path.join(fx, f["file"])
            if os.path.isdir(path):
                for name in sorted(os.listdir(path)):
                    targets.append((os.path.join(path, name), path, ["inspect", "prune"]))
            else:
                targets.append((path, path, ["inspect", "prune"]))
        pruned = os.path.join(tmp, "pruned.pt")
        r = subprocess.run([SPARSIFY, "prune", os.path.join(fx, "convnet.pt"), "-o", pruned,
                            "--sparsity", "0.5", "-q"], capture_output=True)
        check(r.returncode == 0, "prune convnet.pt: %r" % r.stderr)
        r24 = os.path.join(tmp, "pruned24.pt")
        r = subprocess.run([SPARSIFY, "prune", os.path.join(fx, "mlp.pt"), "-o", r24,
                            "--pattern", "2:4", "-q"], capture_output=True)
        check(r.returncode == 0, "prune mlp.pt 2:4: %r" % r.stderr)
        for name, src, extra in (("auto", pruned, []), ("bitmask", pruned, ["--encoding", "bitmask"]),
                                 ("block", pruned, ["--encoding", "block", "--block", "2x2"]),
                                 ("raw", pruned, ["--raw"]), ("dense", pruned, ["--encoding", "dense"]),
                                 ("nm", r24, ["--encoding", "nm", "--nm", "2:4"]),
                                 ("dtypes", os.path.join(fx, "dtypes.pt"), [])):
            out = os.path.join(tmp, name + ".spz")
            r = subprocess.run([SPARSIFY, "export", src, "-o", out, "-q", *extra], capture_output=True)
            check(r.returncode == 0, "export %s: %r" % (name, r.stderr))
            if r.returncode == 0:
                targets.append((out, out, ["inspect", "densify"]))

        rng = random.Random(SEED)
        jobs = []
        mdir = os.path.join(tmp, "m")
        os.mkdir(mdir)
        for ti, (file, given, cmds) in enumerate(targets):
            data = open(file, "rb").read()
            for k in range(PER_INPUT):
                m, how = mutate(data, rng)
                if os.path.isdir(given):
                    dst = os.path.join(mdir, "%d_%d" % (ti, k))
                    shutil.copytree(given, dst)
                    victim = os.path.join(dst, os.path.basename(file))
                else:
                    dst = os.path.join(mdir, "%d_%d_%s" % (ti, k, os.path.basename(file)))
                    victim = dst
                open(victim, "wb").write(m)
                what = "%s %s #%d (%s)" % (os.path.relpath(file, tmp), how, k, dst)
                for c in cmds:
                    if c == "inspect":
                        jobs.append((["inspect", dst], "inspect " + what))
                        jobs.append((["inspect", "--json", dst], "inspect --json " + what))
                    elif c == "prune":
                        out = dst + ".pruned" + ("" if os.path.isdir(dst) else os.path.splitext(file)[1])
                        jobs.append((["prune", dst, "-o", out, "--sparsity", "0.5", "-q"], "prune " + what))
                    else:
                        jobs.append((["densify", dst, "-o", dst + ".dense.safetensors"],
                                     "densify " + what))
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as ex:
            for res in ex.map(lambda j: judge(*j), jobs):
                check(res is None, res)
        print("%d inputs, %d runs" % (len(targets), len(jobs)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
