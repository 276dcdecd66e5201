"""CLI tests of sharded bf16/fp16 Hugging Face folders: prune, export,
check, inspect and densify against PyTorch references.

The folders are written here by a writer unlike sparsify's and unlike
transformers': header keys in a shuffled order with "__metadata__" last
(or absent), tensor data in yet another order, JSON with spaces, headers
padded to 16 bytes, an index with its own key order and extra fields.
Values are bf16/fp16 rounded to a coarse grid, so tensors are full of ties,
+0 and -0; one tensor is large enough to be cut into several chunks. Every
pruned tensor is compared with a reference computed by torch (stable sorts
of the magnitude keys: the earlier index first among equals); outputs must
be the same bytes with --threads 1 and --threads 2.
"""
import filecmp
import json
import os
import random
import struct
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import check, run, summary  # noqa: E402

ST_DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
DT_ST = {v: k for k, v in ST_DT.items()}


def model(dtype, seed):
    """An ordered dict of a 2-layer Llama-shaped model."""
    g = torch.Generator().manual_seed(seed)

    def w(*shape):
        t = torch.randn(*shape, generator=g) * 0.05
        # a coarse grid: many equal magnitudes and zeros; then some -0
        t = (t * 64).round() / 64
        t[torch.rand(*shape, generator=g) < 0.02] = -0.0
        return t.to(dtype)

    sd = {"model.embed_tokens.weight": w(96, 64)}
    for i in range(2):
        p = "model.layers.%d." % i
        sd[p + "self_attn.q_proj.weight"] = w(64, 64)
        sd[p + "self_attn.k_proj.weight"] = w(16, 64)
        sd[p + "self_attn.v_proj.weight"] = w(16, 64)
        sd[p + "self_attn.o_proj.weight"] = w(64, 64)
        # the input dimension 3001 ends in a tail group; 3M elements: chunks
        sd[p + "mlp.up_proj.weight"] = w(1000 if i == 0 else 30, 3001)
        sd[p + "mlp.down_proj.weight"] = w(64, 150)
        sd[p + "input_layernorm.weight"] = torch.ones(64, dtype=dtype)
    sd["model.norm.weight"] = torch.ones(64, dtype=dtype)
    sd["lm_head.weight"] = w(96, 64)
    return sd


def write_shard(path, tensors, rnd, meta=True):
    """Header keys shuffled, metadata last, data in another shuffled order,
    JSON with spaces, header padded with spaces to a multiple of 16."""
    names = list(tensors)
    data_order = names[:]
    rnd.shuffle(data_order)
    offs, off, blobs = {}, 0, []
    for n in data_order:
        raw = tensors[n].contiguous().view(torch.uint8).numpy().tobytes()
        offs[n] = (off, off + len(raw))
        off += len(raw)
        blobs.append(raw)
    hdr_order = names[:]
    rnd.shuffle(hdr_order)
    hdr = {}
    for n in hdr_order:
        t = tensors[n]
        hdr[n] = {"shape": list(t.shape), "dtype": ST_DT[t.dtype], "data_offsets": list(offs[n])}
    if meta:
        hdr["__metadata__"] = {"writer": "cli_llm", "format": "pt"}
    h = json.dumps(hdr, separators=(", ", ": ")).encode()
    h += b" " * ((16 - len(h) % 16) % 16)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_folder(d, sd, seed):
    rnd = random.Random(seed)
    os.makedirs(d)
    names = list(sd)
    cuts = [names[:5], names[5:9], names[9:]]
    wm = {}
    for k, part in enumerate(cuts):
        fn = "model-%05d-of-%05d.safetensors" % (k + 1, len(cuts))
        write_shard(os.path.join(d, fn), {n: sd[n] for n in part}, rnd, meta=k != 1)
        for n in part:
            wm[n] = fn
    items = list(wm.items())
    rnd.shuffle(items)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": dict(items), "metadata": {"total_size": 0, "note": "x"}}, f)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "torch_dtype": "bfloat16"}, f)


def read_folder(d):
    """name -> (dtype, shape, raw bytes) over every shard; header bytes."""
    out, headers = {}, {}
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".safetensors"):
            continue
        b = open(os.path.join(d, fn), "rb").read()
        (n,) = struct.unpack("<Q", b[:8])
        headers[fn] = b[:8 + n]
        for k, e in json.loads(b[8:8 + n]).items():
            if k == "__metadata__":
                continue
            a, z = e["data_offsets"]
            out[k] = (e["dtype"], e["shape"], b[8 + n + a:8 + n + z])
    return out, headers


def as_tensor(entry):
    dt, shape, raw = entry
    return torch.frombuffer(bytearray(raw), dtype=DT_ST[dt]).reshape(shape) if raw else \
        torch.empty(shape, dtype=DT_ST[dt])


def keys16(t):
    """The 15-bit magnitude key of each element (its order is |w|'s)."""
    return (t.view(torch.int16).to(torch.int32) & 0x7FFF)


def ref_nm(t, n, m):
    """Per group of m along a row (tail groups shorter), the n largest keys,
    the earlier first among equals; pruned -> +0 bits."""
    rows, cols = t.shape
    k = keys16(t)
    keep = torch.zeros(rows, cols, dtype=torch.bool)
    for c0 in range(0, cols, m):
        g = k[:, c0:c0 + m]
        order = torch.sort(g, dim=1, descending=True, stable=True).indices
        keep[:, c0:c0 + m].scatter_(1, order[:, :min(n, g.shape[1])], True)
    return torch.where(keep, t.view(torch.int16), torch.zeros_like(t.view(torch.int16))).view(t.dtype)


def ref_unstructured(t, s):
    """The round(s * numel) smallest (key, flat index) pruned, zeros first."""
    k = keys16(t).flatten()
    cnt = max(int(s * k.numel() + 0.5), int((k == 0).sum()))
    order = torch.sort(k, stable=True).indices
    bits = t.contiguous().view(torch.int16).flatten().clone()
    bits[order[:cnt]] = 0
    return bits.view(t.dtype).reshape(t.shape)


def is_target(name):
    return name.endswith("proj.weight")


def same_dirs(a, b):
    fa, fb = sorted(os.listdir(a)), sorted(os.listdir(b))
    return fa == fb and all(filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False) for f in fa)


def prune_case(tmp, src, label, args, ref):
    outs = []
    for th in (1, 2):
        o = os.path.join(tmp, "%s.t%d" % (label, th))
        p = run("prune", src, "-o", o, *args, "--threads", th, "-q", expect=0)
        check(p.returncode == 0, "%s: prune --threads %d exits 0" % (label, th))
        outs.append(o)
    check(same_dirs(*outs), "%s: the same bytes with --threads 1 and 2" % label)
    before, hin = read_folder(src)
    after, hout = read_folder(outs[1])
    check(hin == hout, "%s: every shard keeps its header bytes (layout)" % label)
    for f in ("config.json", "model.safetensors.index.json"):
        check(filecmp.cmp(os.path.join(src, f), os.path.join(outs[1], f), shallow=False),
              "%s: %s copied" % (label, f))
    for name, e in before.items():
        if not is_target(name):
            check(after[name] == e, "%s: %s untouched, byte-identical" % (label, name))
            continue
        want = ref(as_tensor(e)).contiguous().view(torch.uint8).numpy().tobytes()
        check(after[name][2] == want, "%s: %s matches the torch reference" % (label, name))
    return outs[1]


def main():
    with tempfile.TemporaryDirectory(prefix="sparsify-llm-") as tmp:
        bf = os.path.join(tmp, "bf16")
        write_folder(bf, model(torch.bfloat16, 1), 7)
        fp = os.path.join(tmp, "fp16")
        write_folder(fp, model(torch.float16, 2), 8)

        p24 = prune_case(tmp, bf, "bf16 2:4", ["--pattern", "2:4"], lambda t: ref_nm(t, 2, 4))
        prune_case(tmp, bf, "bf16 1:4", ["--pattern", "1:4"], lambda t: ref_nm(t, 1, 4))
        prune_case(tmp, fp, "fp16 2:4", ["--pattern", "2:4"], lambda t: ref_nm(t, 2, 4))
        prune_case(tmp, fp, "fp16 3:8", ["--pattern", "3:8"], lambda t: ref_nm(t, 3, 8))
        prune_case(tmp, bf, "bf16 50%", ["--sparsity", "0.5"], lambda t: ref_unstructured(t, 0.5))
        prune_case(tmp, fp, "fp16 70%", ["--sparsity", "0.7"], lambda t: ref_unstructured(t, 0.7))

        # global scope: one threshold over all targets (exact count), and the
        # same bytes whatever the thread count
        g = []
        for th in (1, 2):
            o = os.path.join(tmp, "global.t%d" % th)
            run("prune", bf, "-o", o, "--sparsity", "0.6", "--scope", "global", "--threads", th, "-q",
                expect=0)
            g.append(o)
        check(same_dirs(*g), "global: the same bytes with --threads 1 and 2")
        before, _ = read_folder(bf)
        after, _ = read_folder(g[0])
        tot = sum(as_tensor(e).numel() for n, e in before.items() if is_target(n))
        nz = sum(int((keys16(as_tensor(e)) == 0).sum()) for n, e in after.items() if is_target(n))
        check(nz == int(0.6 * tot + 0.5), "global: round(0.6 * %d) zeros across the targets (%d)" % (tot, nz))

        # check and inspect read the sharded folders on several threads
        r = run("check", p24, "--pattern", "2:4", "--threads", 2, "-q")
        check(r.returncode == 0, "check: the 2:4 output passes")
        r = run("check", bf, "--pattern", "2:4", "--threads", 2, "-q")
        check(r.returncode == 1, "check: the dense input fails 2:4 with exit 1")
        i1 = run("inspect", p24, "--json", "--threads", 1, expect=0)
        i2 = run("inspect", p24, "--json", "--threads", 2, expect=0)
        check(i1.returncode == 0 and i1.stdout == i2.stdout, "inspect: the same report with 1 and 2 threads")
        rep = json.loads(i2.stdout) if i2.returncode == 0 else {}
        up = [t for t in rep.get("tensors", []) if t["name"] == "model.layers.0.mlp.up_proj.weight"]
        check(len(up) == 1 and up[0]["dtype"] == "bfloat16", "inspect: the large bf16 tensor listed")

        # exports: the same bytes whatever the thread count; values back exact
        for fmt, ext in (("compressed-tensors", ".ct"), ("spz", ".spz")):
            outs = []
            for th in (1, 2):
                o = os.path.join(tmp, "export%d%s" % (th, ext))
                r = run("export", p24, "-o", o, "--format", fmt, "--threads", th, "-q", expect=0)
                check(r.returncode == 0, "export %s --threads %d exits 0" % (fmt, th))
                outs.append(o)
            if fmt == "spz":
                check(filecmp.cmp(outs[0], outs[1], shallow=False), "export spz: the same bytes with 1 and 2 threads")
            else:
                check(same_dirs(*outs), "export ct: the same bytes with 1 and 2 threads")
            dens = []
            for th in (1, 2):
                o = os.path.join(tmp, "dense%d%s.safetensors" % (th, ext))
                run("densify", outs[0], "-o", o, "--threads", th, expect=0)
                dens.append(o)
            check(filecmp.cmp(dens[0], dens[1], shallow=False), "densify %s: the same bytes with 1 and 2 threads" % fmt)
            back, _ = read_folder_file(dens[0])
            pruned, _ = read_folder(p24)
            check(set(back) == set(pruned) and all(back[n][2] == pruned[n][2] for n in pruned),
                  "densify %s: every tensor back bit for bit" % fmt)

        # NaN in one bf16 tensor: refused by name, nothing written
        bad = os.path.join(tmp, "bad")
        sd = model(torch.bfloat16, 1)
        sd["model.layers.1.mlp.up_proj.weight"][3, 7] = float("nan")
        write_folder(bad, sd, 9)
        for args in (["--sparsity", "0.5"], ["--pattern", "2:4"], ["--sparsity", "0.5", "--scope", "global"]):
            o = os.path.join(tmp, "bad.out")
            r = run("prune", bad, "-o", o, *args, "--threads", 2, "-q")
            check(r.returncode == 2 and "'model.layers.1.mlp.up_proj.weight'" in r.stderr and "NaN" in r.stderr,
                  "NaN %s: exit 2 naming the tensor (%d: %s)" % (args, r.returncode, r.stderr.strip()))
            check(not os.path.exists(o), "NaN %s: no output left" % args)
        leftovers = [f for f in os.listdir(tmp) if f.startswith("bad.out") or f.startswith(".bad.out")]
        check(not leftovers, "NaN: no temporary files left (%s)" % leftovers)
    return summary()


def read_folder_file(path):
    """One safetensors file read like a folder's shards."""
    d = tempfile.mkdtemp(prefix="sparsify-llm-one-")
    try:
        os.symlink(os.path.abspath(path), os.path.join(d, "x.safetensors"))
        return read_folder(d)
    finally:
        os.unlink(os.path.join(d, "x.safetensors"))
        os.rmdir(d)


if __name__ == "__main__":
    sys.exit(main())
