"""Shared helpers of the CLI tests: run the real binary, count checks.

env: SPARSIFY (the binary), SPARSIFY_SRC (the source tree).
"""
import os
import subprocess

SPARSIFY = os.environ.get("SPARSIFY", "build/sparsify")
SRC = os.environ.get("SPARSIFY_SRC", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

failures = []
_passed = [0]


def check(cond, what):
    """Count one assertion; print it when it fails."""
    if cond:
        _passed[0] += 1
    else:
        failures.append(what)
        print("FAIL:", what, flush=True)


def run(*args, expect=None):
    """Run sparsify with args; print stderr when the exit code is not `expect`."""
    p = subprocess.run([SPARSIFY, *map(str, args)], capture_output=True, text=True)
    if expect is not None and p.returncode != expect:
        print("command:", args, "rc", p.returncode, "stderr:", p.stderr[-2000:], flush=True)
    return p


def without_libtorch():
    """True (after saying so) when this sparsify was built without libtorch:
    the caller exits 77, skipped."""
    p = run("finetune", "x.pt", "-o", "y.pt", "--data", "z.csv")
    if "built without libtorch" in p.stderr:
        print("skip: this sparsify was built without libtorch (-Dtorch=disabled or not found)")
        return True
    return False


def nz_round(s, n):
    """round(s*n), half away from zero: the exact zero count of a pruned tensor."""
    return int(s * n + 0.5)


def summary():
    """Print the closing line and return the process exit code."""
    print(f"{_passed[0]} passed, {len(failures)} failed")
    return 1 if failures else 0
