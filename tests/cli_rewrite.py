#!/usr/bin/python3
"""sp_ckpt_rewrite / sp_torch_save against real PyTorch (the oracle).

Env: REWRITE_TOOL (tests/rewrite_tool), SPARSIFY_SRC. For every fixture
kind written by tests/fixtures_torch.py:
  list    names/dtypes/shapes/strides/offsets/storage sharing == PyTorch's
  copy    torch.load of the copy == the original (tensors and everything
          else, recursively); every zip record byte-identical; aligned data
  negate  only the tensors on the negated storage change; only that storage
          record changes; TorchScript still loads and runs forward
  legacy  the copy is a modern zip checkpoint torch.load reads equal
  save    sp_torch_save of the tensors reads back identical
Prints "N passed, M failed"; exits 1 on any failure.
"""
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import torch

TOOL = os.environ.get("REWRITE_TOOL")
SRC = os.environ.get("SPARSIFY_SRC", os.path.join(os.path.dirname(__file__), ".."))
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def tool(*args):
    r = subprocess.run([TOOL, *args], capture_output=True, text=True)
    if r.returncode != 0:
        print("rewrite_tool", *args, "->", r.returncode, r.stderr.strip())
    return r


def same(a, b, path="root"):
    """Recursive equality that also checks tensor dtype/shape/stride."""
    if type(a) is not type(b):
        return f"{path}: type {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        if a.dtype != b.dtype or a.shape != b.shape or a.stride() != b.stride() \
                or a.storage_offset() != b.storage_offset():
            return f"{path}: tensor layout differs"
        if not torch.equal(a, b):
            return f"{path}: tensor values differ"
        return None
    if isinstance(a, dict):
        if list(a.keys()) != list(b.keys()):
            return f"{path}: keys differ"
        if getattr(a, "_metadata", None) != getattr(b, "_metadata", None):
            return f"{path}: _metadata differs"
        for k in a:
            r = same(a[k], b[k], f"{path}.{k}")
            if r:
                return r
        return None
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: length differs"
        for i, (x, y) in enumerate(zip(a, b)):
            r = same(x, y, f"{path}.{i}")
            if r:
                return r
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def flat(o, name=""):
    """name -> tensor, named as sparsify names them."""
    out = {}
    if isinstance(o, torch.Tensor):
        out[name or "tensor"] = o
    elif isinstance(o, dict):
        for k, v in o.items():
            if isinstance(k, (str, int)) and not isinstance(k, bool):
                out.update(flat(v, f"{name}.{k}" if name else str(k)))
    elif isinstance(o, (list, tuple)):
        for i, v in enumerate(o):
            out.update(flat(v, f"{name}.{i}" if name else str(i)))
    return out


def listing(path):
    r = tool("list", path)
    lines = [json.loads(l) for l in r.stdout.splitlines()] if r.returncode == 0 else [{}]
    return lines[0].get("format"), lines[1:]


def records(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def aligned(path):
    """Offsets of stored records' data, as (name, offset % 64)."""
    out = {}
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for i in z.infolist():
            f.seek(i.header_offset + 26)
            h = f.read(4)
            off = i.header_offset + 30 + int.from_bytes(h[:2], "little") + \
                int.from_bytes(h[2:], "little")
            if i.compress_type == zipfile.ZIP_STORED:
                out[i.filename] = off % 64
    return out


def load(path, script):
    return torch.jit.load(path) if script else torch.load(path)


def main():
    if not TOOL:
        print("REWRITE_TOOL is not set")
        return 1
    tmp = tempfile.mkdtemp(prefix="sp_rewrite_")
    subprocess.run(["/usr/bin/python3", os.path.join(SRC, "tests", "fixtures_torch.py"), tmp],
                   check=True)
    manifest = json.load(open(os.path.join(tmp, "manifest.json")))
    x = torch.load(os.path.join(tmp, "script_input.pt"))
    kinds = ["flat", "training", "tied", "views", "scalars", "bare", "deflated", "legacy",
             "script"]
    for kind in kinds:
        src = os.path.join(tmp, kind + ".pt")
        script = kind == "script"
        fmt, tensors = listing(src)
        want = {"legacy": "torch-legacy", "script": "torchscript"}.get(kind, "torch-zip")
        check(fmt == want, f"{kind}: format {fmt} != {want}")
        # listing == PyTorch's view of the tensors
        man = {e["name"]: e for e in manifest[kind]}
        got = {t["name"]: t for t in tensors}
        check(sorted(man) == sorted(got), f"{kind}: names {sorted(got)} != {sorted(man)}")
        ok = True
        for n in set(man) & set(got):
            m, g = man[n], got[n]
            ok &= m["dtype"] == g["dtype"] and m["shape"] == g["shape"] and \
                m["stride"] == g["stride"] and m["offset"] == g["offset"]
        check(ok, f"{kind}: dtype/shape/stride/offset mismatch")
        pairs = [(a, b) for a in man for b in man if a in got and b in got]
        check(all((man[a]["group"] == man[b]["group"]) == (got[a]["storage"] == got[b]["storage"])
                  for a, b in pairs), f"{kind}: storage sharing differs")

        orig = load(src, script)
        # copy
        out = os.path.join(tmp, kind + ".copy.pt")
        r = tool("copy", src, out)
        check(r.returncode == 0, f"{kind}: copy failed")
        if r.returncode != 0:
            continue
        back = load(out, script)
        if script:
            check(same(orig.state_dict(), back.state_dict()) is None, f"{kind}: copy state_dict")
            check(torch.equal(orig(x), back(x)), f"{kind}: copy forward differs")
        else:
            d = same(orig, back)
            check(d is None, f"{kind}: copy differs: {d}")
        check(zipfile.is_zipfile(out), f"{kind}: copy is not a zip")
        if kind != "legacy":
            check(records(src) == records(out), f"{kind}: copied records differ")
            with open(src, "rb") as f1, open(out, "rb") as f2:
                check(f1.read() == f2.read(), f"{kind}: plain copy is not byte-identical")
            a0, a1 = aligned(src), aligned(out)
            check(all(a1[k] == 0 for k in a0 if a0[k] == 0), f"{kind}: alignment lost")
        else:
            check(all(v == 0 for v in aligned(out).values()), "legacy: copy not aligned")
        # negate one floating tensor (the largest)
        floats = [t for t in tensors if t["dtype"] in ("float32", "float64", "float16", "bfloat16")
                  and 0 not in t["shape"]]
        if not floats:
            continue
        target = max(floats, key=lambda t: (len(t["shape"]), t["shape"]))
        out = os.path.join(tmp, kind + ".neg.pt")
        r = tool("negate", src, out, target["name"])
        check(r.returncode == 0, f"{kind}: negate failed")
        if r.returncode != 0:
            continue
        back = load(out, script)
        fo = flat(orig.state_dict() if script else orig)
        fb = flat(back.state_dict() if script else back)
        on_target = {t["name"] for t in tensors if t["storage"] == target["storage"]}
        ok = sorted(fo) == sorted(fb)
        for n in fo:
            if n in fb:
                want_t = -fo[n] if n in on_target else fo[n]
                ok &= torch.equal(want_t, fb[n])
        check(ok, f"{kind}: negate changed the wrong values")
        if kind != "legacy":
            ro, rn = dict(records(src)), dict(records(out))
            key = target["key"]
            diff = sorted(k for k in ro if ro[k] != rn.get(k))
            check(len(diff) == 1 and diff[0].endswith("/data/" + key),
                  f"{kind}: negate changed records {diff}")
            check(list(ro) == [n for n, _ in records(out)], f"{kind}: record order changed")
        if script:
            check(not torch.equal(orig(x), back(x)), f"{kind}: negated forward unchanged")
    # sp_torch_save round trip
    for kind in ["flat", "views", "training", "scalars", "legacy"]:
        src = os.path.join(tmp, kind + ".pt")
        out = os.path.join(tmp, kind + ".saved.pt")
        r = tool("save", src, out)
        check(r.returncode == 0, f"{kind}: save failed")
        if r.returncode != 0:
            continue
        back = torch.load(out)
        fo = flat(torch.load(src))
        check(type(back).__name__ == "OrderedDict", f"{kind}: saved object is not an OrderedDict")
        check(list(back.keys()) == [t["name"] for t in listing(src)[1]],
              f"{kind}: saved names differ")
        check(all(torch.equal(fo[n].contiguous(), back[n]) and back[n].is_contiguous()
                  for n in back), f"{kind}: saved values differ")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
