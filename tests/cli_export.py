"""CLI tests of `sparsify export` and `sparsify densify` against real PyTorch.

Fixtures are written by PyTorch in a temp dir. Checks: .spz and
compressed-tensors round trips are bit-exact for every dtype (bf16, f16,
f64, ints, bool), tied tensors, 0-d and empty tensors; the compressed-tensors
folder is decoded by an independent reader written here from the published
rules (numpy.unpackbits, bitorder little) and equals the pruned weights; the
worked example row [a,0,0,b,c,d,0,0,e,0] gives bitmask bytes 0x39 0x01;
2:4 weights give sparse-24-bitmask; corrupted .spz files exit 2 with one
line naming the file and leave no output; reports and --json agree with the
files on disk.
"""
import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import check, run, summary  # noqa: E402


def bits_equal(a, b):
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    if a.numel() == 0:
        return True
    if a.dtype == torch.bool:
        return torch.equal(a, b)
    return torch.equal(a.contiguous().view(-1).view(torch.uint8), b.contiguous().view(-1).view(torch.uint8))


ST_NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
         "U8": np.uint8, "I8": np.int8, "BF16": np.uint16, "BOOL": np.bool_, "I16": np.int16}
ST_TORCH = {"F32": torch.float32, "F16": torch.float16, "F64": torch.float64, "I64": torch.int64,
            "I32": torch.int32, "U8": torch.uint8, "I8": torch.int8, "BF16": torch.bfloat16,
            "BOOL": torch.bool, "I16": torch.int16}


def read_safetensors(path):
    """An independent safetensors reader: name -> (dtype string, numpy array)."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, e = v["data_offsets"]
        arr = np.frombuffer(b[8 + n + a:8 + n + e], dtype=ST_NP[v["dtype"]]).reshape(v["shape"])
        out[k] = (v["dtype"], arr)
    return out


def read_folder(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            out.update(read_safetensors(os.path.join(folder, name)))
    return out


def to_torch(dt, arr):
    if dt == "BF16":
        return torch.from_numpy(arr.astype(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(arr.copy())


def ct_decode(folder):
    """Decode a compressed-tensors folder from the published rules only."""
    st = read_folder(folder)
    cfg = json.load(open(os.path.join(folder, "config.json")))
    fmt = cfg["quantization_config"]["sparsity_config"]["format"]
    out = {}
    used = set()
    for k in st:
        if not k.endswith(".compressed"):
            continue
        pre = k[: -len(".compressed")]
        used.update([k, pre + ".bitmask", pre + ".shape", pre + ".row_offsets"])
        dt, vals = st[k]
        shape = [int(x) for x in st[pre + ".shape"][1].reshape(-1)]
        bm = st[pre + ".bitmask"][1]
        mask = np.unpackbits(bm, axis=-1, count=shape[-1], bitorder="little").astype(bool)
        dense = np.zeros(shape, dtype=vals.dtype)
        dense[mask.reshape(shape)] = vals.reshape(-1)
        if fmt == "sparse-bitmask":
            counts = mask.sum(axis=-1)
            ro = st[pre + ".row_offsets"][1]
            check(np.array_equal(ro, np.cumsum(counts) - counts), "row_offsets of %s are the exclusive prefix sum" % pre)
        out[pre + ".weight"] = to_torch(dt, dense)
    for k, (dt, arr) in st.items():
        if k not in used:
            out[k] = to_torch(dt, arr)
    return out, cfg, st


def canon_zero(t):
    """compressed-tensors drops -0.0 (value != 0 rule): -0.0 -> +0.0."""
    if t.is_floating_point() and t.numel():
        return torch.where(t == 0, torch.zeros_like(t), t)
    return t


def prune_unstructured(w, s, gen):
    k = int(round(s * w.numel()))
    idx = torch.randperm(w.numel(), generator=gen)[:k]
    m = torch.ones(w.numel(), dtype=torch.bool)
    m[idx] = False
    return torch.where(m.view(w.shape), w, torch.zeros((), dtype=w.dtype))


def prune_24(w):
    g = w.reshape(-1, 4)
    idx = g.float().abs().topk(2, dim=1).indices
    m = torch.zeros_like(g, dtype=torch.bool).scatter_(1, idx, True)
    return torch.where(m, g, torch.zeros((), dtype=w.dtype)).reshape(w.shape)


def main():
    tmp = tempfile.mkdtemp(prefix="cli_export_")
    try:
        body(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary()


def body(tmp):
    P = lambda *a: os.path.join(tmp, *a)
    gen = torch.Generator().manual_seed(7)
    sd = {}
    sd["enc.0.weight"] = prune_unstructured(torch.randn(96, 160, generator=gen), 0.9, gen)
    sd["enc.0.bias"] = torch.randn(96, generator=gen)
    sd["enc.1.weight"] = prune_unstructured(torch.randn(64, 96, generator=gen).half(), 0.8, gen)
    sd["enc.2.weight"] = prune_unstructured(torch.randn(64, 64, generator=gen).bfloat16(), 0.7, gen)
    sd["enc.3.weight"] = prune_unstructured(torch.randn(32, 64, generator=gen).double(), 0.5, gen)
    neg = prune_unstructured(torch.randn(40, 24, generator=gen), 0.6, gen)
    neg[neg == 0] = -0.0  # torch.nn.utils.prune style: w * mask gives -0.0
    sd["neg.weight"] = neg
    sd["conv.weight"] = prune_unstructured(torch.randn(8, 16, 3, 3, generator=gen), 0.9, gen)
    sd["norm.weight"] = torch.ones(96)
    sd["step"] = torch.tensor(12)
    sd["scale"] = torch.tensor(0.5)
    sd["empty"] = torch.zeros(0, 4)
    sd["ids"] = torch.arange(17, dtype=torch.int32)
    sd["flags"] = torch.rand(33, generator=gen) > 0.5
    sd["i8"] = torch.randint(-5, 5, (20, 8), dtype=torch.int8, generator=gen)
    # the worked example as one row of a 2x10 weight
    sd["ex.weight"] = torch.tensor([[1.5, 0, 0, 2.5, 3.5, 4.5, 0, 0, 5.5, 0],
                                    [0, 6.5, 0, 0, 0, 0, 0, 0, 0, 7.5]])
    sd["head.weight"] = sd["enc.0.weight"]  # tied: one storage
    torch.save(sd, P("m.pt"))

    # ---- .spz round trip ----
    p = run("export", P("m.pt"), "-o", P("m.spz"), "--json", expect=0)
    check(p.returncode == 0, "export .spz exits 0")
    rep = json.loads(p.stdout)
    size = os.path.getsize(P("m.spz"))
    check(rep["output_bytes"] == size, "json output_bytes is the file size")
    dense = sum(t.numel() * t.element_size() for t in sd.values())
    check(rep["dense_bytes"] == dense, "json dense_bytes %d == %d" % (rep["dense_bytes"], dense))
    check(abs(rep["ratio"] - dense / size) < 1e-6, "json ratio")
    enc = {t["name"]: t["encoding"] for t in rep["tensors"]}
    check(enc.get("enc.0.weight") == "bitmask", "90%% unstructured -> bitmask (%s)" % enc.get("enc.0.weight"))
    check(enc.get("head.weight") == "alias", "tied tensor stored once (%s)" % enc.get("head.weight"))
    check(enc.get("enc.0.bias") == "dense", "bias dense")
    with open(P("m.spz"), "rb") as f:
        check(f.read(4) == b"SPZ\x1a", "magic")

    p = run("export", P("m.pt"), "-o", P("v.spz"), "--verbose", expect=0)
    check(p.returncode == 0 and "enc.0.weight" in p.stdout and "smaller" in p.stdout,
          "--verbose lists tensors and the summary")
    check(open(P("v.spz"), "rb").read() == open(P("m.spz"), "rb").read(), "export is deterministic")

    for out in ("back.pt", "back.safetensors"):
        p = run("densify", P("m.spz"), "-o", P(out), expect=0)
        check(p.returncode == 0, "densify -> %s exits 0" % out)
        if out.endswith(".pt"):
            back = torch.load(P(out))
        else:
            back = {k: to_torch(dt, a) for k, (dt, a) in read_safetensors(P(out)).items()}
        for k, v in sd.items():
            check(k in back and bits_equal(v, back[k]), "%s: %s bit-exact" % (out, k))
        check(set(back) == set(sd), "%s: same tensor names" % out)

    # kernel-ready raw variant round-trips too
    p = run("export", P("m.pt"), "-o", P("raw.spz"), "--raw", expect=0)
    run("densify", P("raw.spz"), "-o", P("raw.pt"), expect=0)
    back = torch.load(P("raw.pt"))
    check(all(bits_equal(v, back[k]) for k, v in sd.items()), "--raw round trip bit-exact")
    check(os.path.getsize(P("raw.spz")) > size, "--raw is larger than the compressed default")

    # ---- compressed-tensors ----
    p = run("export", P("m.pt"), "-o", P("ct"), "--format", "compressed-tensors", "--json", expect=0)
    check(p.returncode == 0, "export compressed-tensors exits 0")
    rep = json.loads(p.stdout)
    check(rep["sparsity_format"] == "sparse-bitmask", "unstructured -> sparse-bitmask")
    got, cfg, st = ct_decode(P("ct"))
    q = cfg["quantization_config"]
    check(q["quant_method"] == "compressed-tensors", "quant_method")
    sc = q["sparsity_config"]
    for key in ("format", "sparsity_structure", "global_sparsity", "targets", "ignore"):
        check(key in sc, "sparsity_config has %s" % key)
    check(sc["sparsity_structure"] == "unstructured", "structure unstructured")
    check("enc.0" in sc["targets"] and "ex" in sc["targets"], "targets name the compressed modules")
    check(os.path.isfile(P("ct", "model.safetensors")), "single model.safetensors")
    check("enc.0.compressed" in st and "enc.0.weight" not in st, "new key style <m>.compressed")
    check(st["enc.0.bitmask"][0] == "U8" and st["enc.0.bitmask"][1].shape == (96, 20), "bitmask U8 [R, ceil(C/8)]")
    check(st["enc.0.row_offsets"][0] == "I64" and st["enc.0.shape"][0] == "I64"
          and st["enc.0.shape"][1].shape == (2,), "row_offsets I64, shape I64 [ndim]")
    check(st["enc.0.compressed"][1].shape == (int((sd["enc.0.weight"] != 0).sum()),), "compressed is [nnz]")
    check(list(st["ex.bitmask"][1][0]) == [0x39, 0x01], "worked example: bitmask bytes 0x39 0x01 (%s)"
          % list(st["ex.bitmask"][1][0]))
    check(list(st["ex.compressed"][1][:5]) == [1.5, 2.5, 3.5, 4.5, 5.5], "worked example values in row order")
    for k, v in sd.items():
        check(k in got and bits_equal(canon_zero(v), got[k]), "independent reader: %s equals the pruned weight" % k)
    # and our own reader
    run("densify", P("ct"), "-o", P("ctback.pt"), expect=0)
    back = torch.load(P("ctback.pt"))
    for k, v in sd.items():
        check(k in back and bits_equal(canon_zero(v), back[k]), "densify compressed-tensors: %s" % k)
    # an HF-style folder input keeps its config.json
    os.makedirs(P("hf"))
    json.dump({"model_type": "bert", "hidden_size": 96}, open(P("hf", "config.json"), "w"))
    shutil.copy(P("back.safetensors"), P("hf", "model.safetensors"))
    p = run("export", P("hf"), "-o", P("hfct"), expect=0)
    if p.returncode == 0:
        cfg2 = json.load(open(P("hfct", "config.json")))
        check(cfg2.get("model_type") == "bert" and "quantization_config" in cfg2,
              "input config.json kept, quantization_config added")
    else:
        check(False, "export of an hf folder: %s" % p.stderr.strip())

    # shards
    p = run("export", P("m.pt"), "-o", P("cts"), "--format", "compressed-tensors", "--max-shard-size", "20000", expect=0)
    idx = json.load(open(P("cts", "model.safetensors.index.json")))
    shards = sorted(set(idx["weight_map"].values()))
    check(len(shards) > 1 and all(os.path.isfile(P("cts", s)) for s in shards), "sharded output with an index")
    got2, _, _ = ct_decode(P("cts"))
    check(all(bits_equal(canon_zero(v), got2[k]) for k, v in sd.items()), "sharded folder decodes")

    # ---- 2:4 ----
    sd24 = {"l0.weight": prune_24(torch.randn(64, 128, generator=gen)),
            "l1.weight": prune_24(torch.randn(32, 64, generator=gen).bfloat16()),
            "l1.bias": torch.randn(32, generator=gen)}
    torch.save(sd24, P("m24.pt"))
    p = run("export", P("m24.pt"), "-o", P("ct24"), "--json", expect=0)
    rep = json.loads(p.stdout)
    check(rep["sparsity_format"] == "sparse-24-bitmask", "2:4 -> sparse-24-bitmask")
    got, cfg, st = ct_decode(P("ct24"))
    check(cfg["quantization_config"]["sparsity_config"]["sparsity_structure"] == "2:4", "structure 2:4")
    check(st["l0.compressed"][1].shape == (64, 64), "24 compressed is [R, C/2]")
    check("l0.row_offsets" not in st, "24 has no row_offsets")
    check(st["l0.shape"][0] == "I64" and st["l0.shape"][1].shape == (2, 1)
          and st["l0.shape"][1].reshape(-1).tolist() == [64, 128],
          "24 shape is I64 [ndim, 1], as compressed-tensors writes it")
    bm = st["l0.bitmask"][1]
    cnt = np.unpackbits(bm, axis=-1, bitorder="little").reshape(64, -1, 4).sum(-1)
    check((cnt == 2).all(), "exactly two bits per group of four")
    for k, v in sd24.items():
        check(bits_equal(canon_zero(v), got[k]), "2:4 independent reader: %s" % k)
    p = run("export", P("m24.pt"), "-o", P("m24.spz"), "--raw", "--json", expect=0)
    rep = json.loads(p.stdout)
    t0 = [t for t in rep["tensors"] if t["name"] == "l0.weight"][0]
    check(t0["encoding"] == "nm 2:4", "2:4 weight -> nm 2:4 in .spz (%s)" % t0["encoding"])
    check(t0["raw_bytes"] <= 0.53 * t0["dense_bytes"], "2:4 fp32 raw <= 0.53x dense (%.4f)"
          % (t0["raw_bytes"] / t0["dense_bytes"]))
    run("densify", P("m24.spz"), "-o", P("m24back.pt"), expect=0)
    back = torch.load(P("m24back.pt"))
    check(all(bits_equal(v, back[k]) for k, v in sd24.items()), "2:4 .spz round trip bit-exact")

    ct_follows_pruned(tmp, gen)

    # ---- the older key style <name>.weight.compressed, shape [ndim, 1] ----
    w = sd["enc.0.weight"].numpy()
    mask = w != 0
    old = {"enc.0.weight.compressed": w[mask], "enc.0.weight.bitmask": np.packbits(mask, axis=-1, bitorder="little"),
           "enc.0.weight.shape": np.array(w.shape, dtype=np.int64).reshape(-1, 1),  # [ndim, 1] as some releases
           "enc.0.weight.row_offsets": (np.cumsum(mask.sum(1)) - mask.sum(1)).astype(np.int64),
           "enc.0.bias": sd["enc.0.bias"].numpy()}
    os.makedirs(P("old"))
    hdr, off, blobs = {}, 0, []
    names = {np.float32: "F32", np.uint8: "U8", np.int64: "I64"}
    for k, a in old.items():
        raw = np.ascontiguousarray(a).tobytes()
        hdr[k] = {"dtype": names[a.dtype.type], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(hdr).encode()
    with open(P("old", "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    json.dump({"quantization_config": {"quant_method": "compressed-tensors",
                                       "sparsity_config": {"format": "sparse-bitmask"}}},
              open(P("old", "config.json"), "w"))
    p = run("densify", P("old"), "-o", P("old.pt"), expect=0)
    if p.returncode == 0:
        back = torch.load(P("old.pt"))
        check(bits_equal(sd["enc.0.weight"], back.get("enc.0.weight", torch.zeros(0))), "old key style decodes")
    else:
        check(False, "old key style: %s" % p.stderr.strip())

    # ---- dense safetensors export ----
    p = run("export", P("m.spz"), "-o", P("d.safetensors"), expect=0)
    back = {k: to_torch(dt, a) for k, (dt, a) in read_safetensors(P("d.safetensors")).items()}
    check(all(bits_equal(v, back[k]) for k, v in sd.items()), "export --format safetensors (from .spz) bit-exact")

    # ---- corrupted .spz: exit 2, one line naming the file, no output ----
    good = open(P("m.spz"), "rb").read()
    toc = struct.unpack("<Q", good[16:24])[0]
    cases = {
        "magic": b"XPZ" + good[3:],
        "payload-crc": good[:200] + bytes([good[200] ^ 0xFF]) + good[201:],
        "toc-crc": good[:toc + 10] + bytes([good[toc + 10] ^ 1]) + good[toc + 11:],
        "truncated": good[: len(good) // 2],
        "header-only": good[:64],
        "empty": b"",
    }
    # a lying length with valid CRCs: the first tensor's first section
    # claims more stored bytes than the file has
    import zlib
    lie = bytearray(good)
    mlen = struct.unpack("<I", lie[toc:toc + 4])[0]
    ent = toc + ((4 + mlen + 7) & ~7)
    ndim = lie[ent + 7]
    sec = ent + 40 + 8 * ndim
    struct.pack_into("<Q", lie, sec + 24, 1 << 40)
    tsz = struct.unpack("<Q", lie[24:32])[0]
    struct.pack_into("<I", lie, 32, zlib.crc32(bytes(lie[toc:toc + tsz])))
    struct.pack_into("<I", lie, 60, zlib.crc32(bytes(lie[:60])))
    cases["lying-length"] = bytes(lie)
    for name, data in cases.items():
        with open(P("bad.spz"), "wb") as f:
            f.write(data)
        for cmd in (["densify", P("bad.spz"), "-o", P("bad.pt")], ["export", P("bad.spz"), "-o", P("bad2.spz")]):
            p = run(*cmd)
            lines = p.stderr.strip().splitlines()
            check(p.returncode == 2, "%s: %s exits 2 (got %d)" % (name, cmd[0], p.returncode))
            check(len(lines) == 1 and "bad.spz" in lines[0] and lines[0].startswith("sparsify: error:"),
                  "%s: one error line naming the file (%r)" % (name, p.stderr))
        check(not os.path.exists(P("bad.pt")) and not os.path.exists(P("bad2.spz")), "%s: no output left" % name)

    # ---- usage ----
    check(run("export", P("m.pt")).returncode == 2, "export without -o exits 2")
    check(run("export", P("m.pt"), "-o", P("x.spz"), "--format", "zip").returncode == 2, "unknown format exits 2")
    check(run("export", P("nope.pt"), "-o", P("x.spz")).returncode == 2, "missing input exits 2")
    check(run("densify", P("m.spz")).returncode == 2, "densify without -o exits 2")
    check(run("export", "--help").returncode == 0, "export --help")
    check(run("densify", "--help").returncode == 0, "densify --help")


CT_FIELDS = {"format", "global_sparsity", "ignore", "registry_requires_subclass", "sparsity_structure",
             "targets"}  # compressed-tensors' SparsityCompressionConfig.model_dump()


def ct_follows_pruned(tmp, gen):
    """The compressed-tensors format follows the weights that were pruned: a
    language model pruned 2:4 by `sparsify prune` (embeddings with a few
    chance zeros, a dense lm_head, a layer whose input size is not a
    multiple of 4) exports as sparse-24-bitmask; the odd layer is stored
    dense in `ignore`; inspect and export agree on what is 2:4."""
    P = lambda *a: os.path.join(tmp, *a)
    sd = {}
    emb = torch.randn(50, 32, generator=gen)
    emb.view(-1)[:5] = 0  # five chance zeros in a weight nobody pruned
    sd["model.embed_tokens.weight"] = emb
    for i in range(2):
        for n, (o, k) in {"q_proj": (32, 32), "k_proj": (32, 32), "up_proj": (64, 32), "down_proj": (32, 64)}.items():
            sd[f"model.layers.{i}.{n}.weight"] = torch.randn(o, k, generator=gen)
        sd[f"model.layers.{i}.norm.weight"] = torch.ones(32)
    sd["model.layers.0.odd.weight"] = torch.randn(16, 10, generator=gen)  # input size 10
    sd["lm_head.weight"] = torch.randn(50, 32, generator=gen)
    torch.save(sd, P("llm.pt"))
    run("prune", P("llm.pt"), "-o", P("llm24.pt"), "--pattern", "2:4", "-q", expect=0)
    pr = torch.load(P("llm24.pt"))
    cands = [k for k, v in pr.items() if v.dim() == 2 and k.endswith(".weight")]
    mods = lambda names: sorted(n[: -len(".weight")] for n in names)  # noqa: E731
    want_t = mods(k for k in cands if ".layers." in k and "odd" not in k)
    want_i = mods(k for k in cands if k not in [t + ".weight" for t in want_t])
    zeros = sum(int((v == 0).sum()) for v in pr.values())
    params = sum(v.numel() for v in pr.values())

    p = run("export", P("llm24.pt"), "-o", P("llmct"), "--json", expect=0)
    check(json.loads(p.stdout)["sparsity_format"] == "sparse-24-bitmask",
          "stray zeros and one odd layer do not downgrade the 2:4 model")
    got, cfg, st = ct_decode(P("llmct"))
    q = cfg["quantization_config"]
    sc = q["sparsity_config"]
    check(set(sc) == CT_FIELDS, "sparsity_config has exactly compressed-tensors' fields: %s" % sorted(sc))
    check(q["quant_method"] == "compressed-tensors" and isinstance(q["version"], str), "quant_method, version")
    check(sc["format"] == "sparse-24-bitmask" and sc["sparsity_structure"] == "2:4", "format and structure")
    check(sorted(sc["targets"]) == want_t, "targets: the 2:4 layers (%s)" % sc["targets"])
    check(sorted(sc["ignore"]) == want_i, "ignore: embeddings, lm_head, the odd layer (%s)" % sc["ignore"])
    check(sc["registry_requires_subclass"] is False, "registry_requires_subclass false")
    check(abs(sc["global_sparsity"] - zeros / params) < 1e-9, "global_sparsity over every float param")
    check("model.layers.0.odd.weight" in st and st["model.layers.0.odd.weight"][1].shape == (16, 10),
          "the odd layer is stored dense")
    for t in want_t:
        check(st[t + ".shape"][0] == "I64" and st[t + ".shape"][1].shape == (2, 1)
              and st[t + ".shape"][1].reshape(-1).tolist() == list(pr[t + ".weight"].shape),
              "%s.shape is I64 [2, 1] = the weight's shape" % t)
        check(t + ".row_offsets" not in st, "%s: no row_offsets in 2:4" % t)
    check(all(bits_equal(canon_zero(v), got[k]) for k, v in pr.items()), "decodes to the pruned model")

    # inspect and export agree on what is 2:4
    ins = json.loads(run("inspect", P("llm24.pt"), "--json", expect=0).stdout)
    yes = mods(t["name"] for t in ins["tensors"] if t["name"] in cands and t["satisfies_2_4"])
    check(yes == sorted(sc["targets"]), "inspect's 2:4 'yes' == export's 2:4 targets (%s)" % yes)

    # dense keeps the structure and the targets
    p = run("export", P("llm24.pt"), "-o", P("llmdense"), "--ct-format", "dense", expect=0)
    got, cfg, st = ct_decode(P("llmdense"))
    scd = cfg["quantization_config"]["sparsity_config"]
    check(set(scd) == CT_FIELDS and scd["format"] == "dense" and scd["sparsity_structure"] == "2:4",
          "dense: sparsity_structure 2:4 kept")
    check(sorted(scd["targets"]) == want_t and sorted(scd["ignore"]) == want_i, "dense: targets and ignore kept")
    check(not any(k.endswith(".compressed") for k in st), "dense: nothing compressed")
    check(all(bits_equal(v, got[k]) for k, v in pr.items()), "dense: every tensor as it was")

    # sparse-bitmask on request: shape [ndim]; the odd layer compresses too
    p = run("export", P("llm24.pt"), "-o", P("llmbm"), "--ct-format", "sparse-bitmask", expect=0)
    got, cfg, st = ct_decode(P("llmbm"))
    scb = cfg["quantization_config"]["sparsity_config"]
    check(scb["format"] == "sparse-bitmask" and "model.layers.0.odd" in scb["targets"], "sparse-bitmask targets")
    check(st["model.layers.0.odd.shape"][1].shape == (2,) and st["model.layers.0.odd.row_offsets"][0] == "I64",
          "sparse-bitmask: shape I64 [ndim], row_offsets")
    check(all(bits_equal(canon_zero(v), got[k]) for k, v in pr.items()), "sparse-bitmask decodes")

    # nothing pruned: dense, no targets
    torch.save({"a.weight": torch.randn(8, 8, generator=gen), "b.weight": emb}, P("dense.pt"))
    p = run("export", P("dense.pt"), "-o", P("densect"), "--json", expect=0)
    _, cfg, _ = ct_decode(P("densect"))
    scn = cfg["quantization_config"]["sparsity_config"]
    check(scn["format"] == "dense" and scn["targets"] == [] and scn["sparsity_structure"] == "unstructured",
          "a dense model exports as dense with no targets")


if __name__ == "__main__":
    sys.exit(main())
