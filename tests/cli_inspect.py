#!/usr/bin/python3
"""CLI test: `sparsify inspect --json` on every fixture against PyTorch.

Fixtures come from tests/make_fixtures.py (real torch.save / torch.jit.save
output, safetensors files and a Hugging Face folder) written into a temp dir.
The oracle reads each one with torch.load (nested containers flattened: dict
keys joined with '.', list/tuple indices as decimal numbers), with
torch.jit.load(...).state_dict() for TorchScript, or with the small
safetensors reader below, and the test compares names (same set and order),
dtype, shape, numel, zeros ((t == 0).sum()), sparsity, the 2:4 verdict, the
totals and which tensors share a storage. The table output and the usage
errors are checked too.

env: SPARSIFY (binary), SPARSIFY_SRC (source tree).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch

SPARSIFY = os.environ.get("SPARSIFY", "sparsify")
SRC = os.environ.get("SPARSIFY_SRC", os.path.join(os.path.dirname(__file__), ".."))

passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def run(*args):
    p = subprocess.run([SPARSIFY] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


# ---- oracles ----

def flatten(obj, prefix, out):
    """The naming rule of docs/architecture.md: tensors only, dict keys joined
    with '.', list/tuple indices as decimal numbers."""
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, "%s.%s" % (prefix, k) if prefix else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, "%s.%d" % (prefix, i) if prefix else str(i), out)


ST_DT = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
         "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
         "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def read_safetensors(path):
    """A plain safetensors reader: returns an ordered {name: tensor}."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    hdr = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in hdr.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        dt = ST_DT[e["dtype"]]
        if en == b:
            t = torch.empty(e["shape"], dtype=dt)
        else:
            t = torch.frombuffer(bytearray(data[base + b:base + en]), dtype=dt).reshape(e["shape"])
        out[name] = t
    return out


def oracle(fx, path):
    """{name: tensor} in file order, as PyTorch (or the format) sees it."""
    o = fx["oracle"]
    if o == "torch":
        out = {}
        flatten(torch.load(path), "", out)
        return out
    if o == "torchscript":
        return dict(torch.jit.load(path).state_dict())
    if o == "safetensors":
        return read_safetensors(path)
    if o == "hf-folder":
        out = {}
        for f in sorted(os.listdir(path)):
            if f.endswith(".safetensors"):
                out.update(read_safetensors(os.path.join(path, f)))
        return out
    raise ValueError(o)


def satisfies_2_4(t):
    """2:4 as 2:4 runtimes and compressed-tensors' sparse-24-bitmask need it:
    the input dimension ([out, in]; conv [O, I, kh, kw] per (kh, kw);
    otherwise [dim0, rest], rank 0 and 1 one row) is a multiple of 4 and
    every aligned group of 4 has at most 2 nonzeros. Empty tensors pass."""
    if not t.dtype.is_floating_point:
        return None
    if t.numel() == 0:
        return True
    if t.dim() == 4:
        m = t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])
    elif t.dim() >= 2:
        m = t.reshape(t.shape[0], -1)
    else:
        m = t.reshape(1, -1)
    if m.shape[1] % 4:
        return False
    return bool(((m != 0).reshape(m.shape[0], -1, 4).sum(dim=2) <= 2).all())


def storage_groups(tensors):
    """Groups (size >= 2) of names whose tensors share a non-empty storage."""
    by = {}
    for name, t in tensors.items():
        st = t.storage()
        if st.size() == 0:
            continue
        by.setdefault(st.data_ptr(), []).append(name)
    return sorted(sorted(g) for g in by.values() if len(g) >= 2)


# ---- the comparison ----

def compare(fx, path):
    tag = fx["file"]
    rc, out, err = run("inspect", "--json", path)
    check(rc == 0 and err == "", "%s: exit %d, stderr %r" % (tag, rc, err))
    if rc != 0:
        return
    try:
        got = json.loads(out)
    except ValueError as e:
        check(False, "%s: stdout is not json: %s" % (tag, e))
        return
    check(got["format"] == fx["format"], "%s: format %s, expected %s" % (tag, got["format"], fx["format"]))
    check(got["path"] == path, "%s: path %r" % (tag, got["path"]))
    ref = oracle(fx, path)
    names = [t["name"] for t in got["tensors"]]
    check(names == list(ref.keys()),
          "%s: names/order differ:\n  got %s\n  ref %s" % (tag, names, list(ref.keys())))
    total_params = total_zeros = 0
    for t in got["tensors"]:
        name = t["name"]
        if name not in ref:
            continue
        r = ref[name]
        zeros = int((r == 0).sum())
        total_params += r.numel()
        total_zeros += zeros
        want = {"dtype": str(r.dtype).replace("torch.", ""), "shape": list(r.shape),
                "numel": r.numel(), "zeros": zeros,
                "satisfies_2_4": satisfies_2_4(r)}
        for k, v in want.items():
            check(t[k] == v, "%s: tensor '%s' %s = %r, expected %r" % (tag, name, k, t[k], v))
        sp = zeros / r.numel() if r.numel() else 0.0
        check(abs(t["sparsity"] - sp) < 1e-12, "%s: '%s' sparsity %r" % (tag, name, t["sparsity"]))
    tot = got["totals"]
    check(tot["tensors"] == len(ref), "%s: totals.tensors %r" % (tag, tot["tensors"]))
    check(tot["params"] == total_params, "%s: totals.params %r != %r" % (tag, tot["params"], total_params))
    check(tot["zeros"] == total_zeros, "%s: totals.zeros %r != %r" % (tag, tot["zeros"], total_zeros))
    # storage sharing, as a partition of the names (empty storages aside)
    nonempty = {n for n, r in ref.items() if r.storage().size() > 0}
    by = {}
    for t in got["tensors"]:
        by.setdefault(t["storage"], []).append(t["name"])
    got_groups = sorted(sorted(g) for g in by.values() if len(g) >= 2)
    got_groups2 = sorted(sorted(g) for g in got["shared_storages"])
    check(got_groups == got_groups2, "%s: shared_storages %r vs storage indices %r" % (tag, got_groups2, got_groups))
    got_groups = [g for g in ([n for n in g if n in nonempty] for g in got_groups) if len(g) >= 2]
    want_groups = storage_groups(ref)
    check(got_groups == want_groups, "%s: shared storages %r, expected %r" % (tag, got_groups, want_groups))
    if "shared" in fx:  # what the fixture was built to contain
        check(sorted(sorted(g) for g in fx["shared"]) == want_groups,
              "%s: fixture sharing %r, torch sees %r" % (tag, fx["shared"], want_groups))
    if "expected" in fx:  # the TorchScript names recorded at save time
        with open(os.path.join(os.path.dirname(path), fx["expected"])) as f:
            exp = json.load(f)["tensors"]
        check([(e["name"], e["dtype"], e["shape"]) for e in exp] ==
              [(t["name"], t["dtype"], t["shape"]) for t in got["tensors"]],
              "%s: differs from %s" % (tag, fx["expected"]))


def main():
    with tempfile.TemporaryDirectory(prefix="cli_inspect_") as tmp:
        fxdir = os.path.join(tmp, "fx")
        subprocess.run(["/usr/bin/python3", os.path.join(SRC, "tests", "make_fixtures.py"), fxdir],
                       check=True)
        with open(os.path.join(fxdir, "manifest.json")) as f:
            fixtures = json.load(f)["fixtures"]
        kinds = {fx["kind"] for fx in fixtures}
        for k in ("mlp", "dtypes", "training", "ordered", "tied", "views", "scalars", "convnet",
                  "legacy", "torchscript", "safetensors", "hf-folder", "bert-like"):
            check(k in kinds, "manifest lacks kind %s" % k)
        for fx in fixtures:
            compare(fx, os.path.join(fxdir, fx["file"]))

        # the same hf folder without its index: every *.safetensors, by name
        hf = os.path.join(fxdir, "hf_model")
        noidx = os.path.join(tmp, "hf_noindex")
        os.mkdir(noidx)
        for f in os.listdir(hf):
            if f.endswith(".safetensors"):
                os.link(os.path.join(hf, f), os.path.join(noidx, f))
        compare({"file": "hf_noindex", "format": "hf-folder", "oracle": "hf-folder"}, noidx)

        # the table: header, one row per tensor, totals, sharing
        rc, out, err = run("inspect", os.path.join(fxdir, "tied.pt"))
        check(rc == 0 and err == "", "table: exit %d %r" % (rc, err))
        lines = out.splitlines()
        check(lines and lines[0].split() == ["name", "dtype", "shape", "numel", "zeros", "sparsity", "2:4"],
              "table header %r" % (lines[:1],))
        row = [l for l in lines if l.startswith("lm_head.weight")]
        check(len(row) == 1 and row[0].split()[1] == "float32" and "[50, 16]" in row[0],
              "table row %r" % row)
        check(any(l.startswith("format:") and "torch-zip" in l for l in lines), "table format line")
        check(any("embed.weight lm_head.weight" in l for l in lines), "table sharing line")
        rc, out, _ = run("inspect", os.path.join(fxdir, "dtypes.pt"))
        row = [l.split() for l in out.splitlines() if l.startswith("int8 ")]
        check(row and row[0][-1] == "-", "non-float 2:4 column is '-': %r" % row)
        row = [l.split() for l in out.splitlines() if l.startswith("float32 ")]
        check(row and row[0][-1] == "yes" and row[0][-2] == "50.00%", "float32 row %r" % row)

        # options and usage
        rc, out, err = run("inspect", "--help")
        check(rc == 0 and out.startswith("usage: sparsify inspect"), "--help: %d %r" % (rc, out[:40]))
        rc, out, err = run("inspect", "-h")
        check(rc == 0 and "--json" in out, "-h")
        rc, out, err = run("inspect")
        check(rc == 2 and err.startswith("sparsify: error: "), "no path: %d %r" % (rc, err))
        rc, out, err = run("inspect", "--bogus", os.path.join(fxdir, "mlp.pt"))
        check(rc == 2 and "--bogus" in err, "unknown option: %d %r" % (rc, err))
        rc, out, err = run("inspect", os.path.join(fxdir, "mlp.pt"), os.path.join(fxdir, "tied.pt"))
        check(rc == 2, "two paths: %d" % rc)
        rc, out, err = run("inspect", os.path.join(fxdir, "mlp.pt"), "--json")
        check(rc == 0 and json.loads(out)["format"] == "torch-zip", "--json after the path")

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
