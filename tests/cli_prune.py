"""CLI tests of `sparsify prune` and `sparsify check` against real PyTorch.

Fixtures are written by PyTorch in a temp dir; every output is loaded back
with torch.load / torch.jit.load and checked against the rules in
docs/pruning.md: exact zero counts, magnitude order, N:M and block
conformance, untouched tensors and non-tensor content identical, tied
storage still tied, determinism, atomic outputs, and exit codes.
"""
import collections
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import torch
import torch.nn.utils.prune  # noqa: F401  (submodule used as torch.nn.utils.prune)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import SPARSIFY, check, nz_round, run, summary  # noqa: E402



ST_DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64", torch.int64: "I64"}


def write_safetensors(path, tensors, meta=None):
    import struct
    hdr, off, blobs = {}, 0, []
    if meta:
        hdr["__metadata__"] = meta
    for k, t in tensors.items():
        raw = t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
        hdr[k] = {"dtype": ST_DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors_raw(path):
    import struct
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    return data[:8 + n], data[8 + n:]


def read_safetensors(path):
    hdr, body = read_safetensors_raw(path)
    meta = json.loads(hdr[8:])
    inv = {v: k for k, v in ST_DT.items()}
    out = {}
    for k, v in meta.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        t = torch.frombuffer(bytearray(body[b:e]), dtype=torch.uint8) if e > b else torch.empty(0, dtype=torch.uint8)
        out[k] = t.view(inv[v["dtype"]]).reshape(v["shape"])
    return out


def mlp_state(seed=0):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 10))
    return m.state_dict()


def main():
    tmp = tempfile.mkdtemp(prefix="sparsify-prune-")
    P = lambda name: os.path.join(tmp, name)

    # --- 1. unstructured layer scope on an OrderedDict state dict ----------
    sd = mlp_state()
    torch.save(sd, P("mlp.pt"))
    r = run("prune", P("mlp.pt"), "-o", P("mlp90.pt"), "--sparsity", "0.9", "--json", expect=0)
    check(r.returncode == 0, "prune mlp exit 0")
    out = torch.load(P("mlp90.pt"))
    check(list(out.keys()) == list(sd.keys()), "key order kept")
    check(hasattr(out, "_metadata"), "OrderedDict _metadata kept")
    for k, v in sd.items():
        w = out[k]
        if k.endswith("weight"):
            z = int((w == 0).sum())
            check(z == nz_round(0.9, v.numel()), f"{k}: {z} zeros == round(0.9*{v.numel()})")
            kept = v[w != 0].abs()
            pruned = v[w == 0].abs()
            check(pruned.max() <= kept.min(), f"{k}: pruned |w| <= kept |w|")
            check(torch.equal(w[w != 0], v[w != 0]), f"{k}: kept values identical")
            check(not torch.any(torch.signbit(w[w == 0])), f"{k}: pruned written as +0.0")
            # same mask as torch.nn.utils.prune.l1_unstructured (no ties in random floats)
            lin = torch.nn.Linear(v.shape[1], v.shape[0])
            with torch.no_grad():
                lin.weight.copy_(v)
            torch.nn.utils.prune.l1_unstructured(lin, "weight", amount=0.9)
            check(torch.equal(lin.weight_mask.bool(), w != 0), f"{k}: mask == l1_unstructured")
        else:
            check(torch.equal(w, v), f"{k}: untouched (bias) identical")
    rep = json.loads(r.stdout)
    check(len(rep["tensors"]) == 2, "report lists the 2 weights")
    check(all(abs(t["sparsity_after"] - 0.9) < 0.01 for t in rep["tensors"]), "report sparsity")

    # determinism: same bytes twice
    run("prune", P("mlp.pt"), "-o", P("mlp90b.pt"), "--sparsity", "0.9", "-q", expect=0)
    check(open(P("mlp90.pt"), "rb").read() == open(P("mlp90b.pt"), "rb").read(),
          "same input gives the same output bytes")

    # zip records other than the weight storages are byte-identical
    zin, zout = zipfile.ZipFile(P("mlp.pt")), zipfile.ZipFile(P("mlp90.pt"))
    check(zin.namelist() == zout.namelist(), "same zip records in the same order")
    changed = [n for n in zin.namelist() if zin.read(n) != zout.read(n)]
    check(all("/data/" in n for n in changed) and len(changed) == 2,
          f"only the two weight storages changed: {changed}")

    # --- 2. global scope ----------------------------------------------------
    r = run("prune", P("mlp.pt"), "-o", P("mlpg.pt"), "--sparsity", "0.8", "--scope", "global", "-q", expect=0)
    check(r.returncode == 0, "global prune exit 0")
    g = torch.load(P("mlpg.pt"))
    ws = [k for k in sd if k.endswith("weight")]
    total = sum(sd[k].numel() for k in ws)
    zeros = sum(int((g[k] == 0).sum()) for k in ws)
    check(zeros == nz_round(0.8, total), f"global: {zeros} zeros == round(0.8*{total})")
    kept = torch.cat([sd[k][g[k] != 0].abs() for k in ws])
    pruned = torch.cat([sd[k][g[k] == 0].abs() for k in ws])
    check(pruned.max() <= kept.min(), "global: every pruned |w| <= every kept |w|")
    mods = []
    for k in ws:
        lin = torch.nn.Linear(sd[k].shape[1], sd[k].shape[0])
        with torch.no_grad():
            lin.weight.copy_(sd[k])
        mods.append(lin)
    torch.nn.utils.prune.global_unstructured([(m, "weight") for m in mods],
                                             pruning_method=torch.nn.utils.prune.L1Unstructured, amount=0.8)
    check(all(torch.equal(m.weight_mask.bool(), g[k] != 0) for m, k in zip(mods, ws)),
          "global mask == torch global_unstructured")

    # --- 3. 2:4 on linear + conv (groups along the input channels) ---------
    torch.manual_seed(1)
    conv = {"conv.weight": torch.randn(8, 12, 3, 3), "fc.weight": torch.randn(6, 10), "fc.bias": torch.randn(6)}
    torch.save(conv, P("conv.pt"))
    r = run("prune", P("conv.pt"), "-o", P("conv24.pt"), "--pattern", "2:4", "-q", expect=0)
    check(r.returncode == 0, "2:4 prune exit 0")
    c = torch.load(P("conv24.pt"))
    w0, w = conv["conv.weight"], c["conv.weight"]
    ok = True
    for kh in range(3):
        for kw in range(3):
            for g0 in range(0, 12, 4):
                grp = w0[:, g0:g0 + 4, kh, kw].abs()
                keep = torch.zeros_like(grp, dtype=torch.bool)
                top = grp.topk(2, dim=1).indices
                keep.scatter_(1, top, True)
                ok &= torch.equal(keep, w[:, g0:g0 + 4, kh, kw] != 0)
    check(ok, "conv 2:4 == top-2 of each 4 input channels per (kh, kw)")
    f0, f = conv["fc.weight"], c["fc.weight"]
    ok = True
    for g0 in range(0, 10, 4):
        grp = f0[:, g0:g0 + 4].abs()
        n = grp.shape[1]
        keep = torch.zeros_like(grp, dtype=torch.bool)
        keep.scatter_(1, grp.topk(min(2, n), dim=1).indices, True)
        ok &= torch.equal(keep, f[:, g0:g0 + 4] != 0)
    check(ok, "linear 2:4 with a ragged tail group (in=10)")
    check(torch.equal(c["fc.bias"], conv["fc.bias"]), "bias untouched")
    check(run("check", P("conv24.pt"), "--pattern", "2:4").returncode == 0, "check 2:4 passes on pruned")
    r = run("check", P("conv.pt"), "--pattern", "2:4")
    check(r.returncode == 1 and "FAIL" in r.stdout, "check 2:4 fails on dense with a list")
    r = run("prune", P("conv.pt"), "-o", P("x.pt"), "--pattern", "2:4", "--sparsity", "0.7")
    check(r.returncode == 2 and not os.path.exists(P("x.pt")), "2:4 with sparsity 0.7 is exit 2, no output")

    # --- 4. blocks with ragged edges ----------------------------------------
    torch.manual_seed(2)
    b = {"layer.weight": torch.randn(33, 70)}
    torch.save(b, P("blk.pt"))
    run("prune", P("blk.pt"), "-o", P("blk44.pt"), "--pattern", "4x4", "--sparsity", "0.5", "-q", expect=0)
    w = torch.load(P("blk44.pt"))["layer.weight"]
    w0 = b["layer.weight"]
    scores = []
    for r0 in range(0, 33, 4):
        for c0 in range(0, 70, 4):
            blk = w[r0:r0 + 4, c0:c0 + 4]
            scores.append((w0[r0:r0 + 4, c0:c0 + 4].abs().mean().item(), bool((blk == 0).all())))
            if not (blk == 0).all():
                check(torch.equal(blk, w0[r0:r0 + 4, c0:c0 + 4]), "kept block intact")
    nb = len(scores)
    zb = sum(1 for s, z in scores if z)
    check(zb == nz_round(0.5, nb), f"blocks: {zb} zero blocks == round(0.5*{nb})")
    check(max(s for s, z in scores if z) <= min(s for s, z in scores if not z), "blocks by mean |w|")
    check(run("check", P("blk44.pt"), "--pattern", "4x4", "--sparsity", "0.5").returncode == 0,
          "check 4x4 passes")

    # --- 5. nested training checkpoint, tied weights, views -----------------
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 16))
    model[1].weight = torch.nn.Parameter(model[0].weight.t().contiguous())
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 16)).sum().backward()
    opt.step()
    emb = torch.nn.Parameter(torch.randn(20, 16))
    base = torch.randn(12, 16)
    ck = {"model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict(),
          "epoch": 7, "loss": 0.125, "tag": "run-1", "hist": [1, 2.5, None], "pair": (1, "a"),
          "tied": {"enc.weight": emb, "dec.weight": emb},
          "views": {"full.weight": base, "half.weight": base[2:8], "t.weight": base.t()}}
    torch.save(ck, P("train.pt"))
    r = run("prune", P("train.pt"), "-o", P("train50.pt"), "--sparsity", "0.5", "--json", expect=0)
    check(r.returncode == 0, "nested checkpoint prune exit 0")
    o = torch.load(P("train50.pt"))
    check(o["epoch"] == 7 and o["loss"] == 0.125 and o["tag"] == "run-1" and o["hist"] == [1, 2.5, None]
          and o["pair"] == (1, "a"), "non-tensor content identical")
    st0, st1 = ck["optimizer_state_dict"]["state"], o["optimizer_state_dict"]["state"]
    check(all(torch.equal(st0[i]["exp_avg"], st1[i]["exp_avg"]) for i in st0), "optimizer state untouched")
    check(o["tied"]["enc.weight"].data_ptr() == o["tied"]["dec.weight"].data_ptr(), "tied weights still share storage")
    z = int((o["tied"]["enc.weight"] == 0).sum())
    check(z == nz_round(0.5, 320), "tied weight pruned once to exact count")
    check(o["views"]["half.weight"].storage().data_ptr() == o["views"]["full.weight"].storage().data_ptr(),
          "views still share one storage")
    names = [t["name"] for t in json.loads(r.stdout)["tensors"]]
    check("model_state_dict.0.weight" in names and "optimizer_state_dict.state.0.exp_avg" not in names,
          "default selection: weights yes, optimizer state no")

    # --- 6. every float dtype, kept values bit-identical --------------------
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        torch.manual_seed(4)
        t = {"l.weight": torch.randn(24, 40).to(dt), "ids": torch.arange(5)}
        torch.save(t, P("dt.pt"))
        rr = run("prune", P("dt.pt"), "-o", P("dt80.pt"), "--sparsity", "0.8", "-q", "--force", expect=0)
        w = torch.load(P("dt80.pt"))["l.weight"]
        zeros = int((w == 0).sum())
        check(rr.returncode == 0 and w.dtype == dt and zeros >= nz_round(0.8, 960), f"{dt}: exact zeros ({zeros})")
        check(torch.equal(w[w != 0], t["l.weight"][w != 0]), f"{dt}: kept bits identical")

    # --- 7. include/exclude, recipe, report ---------------------------------
    run("prune", P("mlp.pt"), "-o", P("inc.pt"), "--sparsity", "0.5", "--include", "^2\\.", "-q", expect=0)
    inc = torch.load(P("inc.pt"))
    check(torch.equal(inc["0.weight"], sd["0.weight"]) and int((inc["2.weight"] == 0).sum()) == 240,
          "--include selects by regex")
    run("prune", P("mlp.pt"), "-o", P("exc.pt"), "--sparsity", "0.5", "--exclude", "^0", "-q", expect=0)
    exc = torch.load(P("exc.pt"))
    check(torch.equal(exc["0.weight"], sd["0.weight"]), "--exclude skips")
    recipe = {"version": 1, "modifiers": [{"type": "GMPruningModifier",
                                           "init_sparsity": 0.05, "final_sparsity": {"0.7": ["0.weight"], "0.6": ["2.weight"]},
                                           "start_epoch": 0, "end_epoch": 5, "update_frequency": 1}]}
    with open(P("r.json"), "w") as fh:
        json.dump(recipe, fh)
    rr = run("prune", P("mlp.pt"), "-o", P("rec.pt"), "--recipe", P("r.json"), "--report", P("rep.json"), "-q", expect=0)
    rec = torch.load(P("rec.pt"))
    check(rr.returncode == 0 and int((rec["0.weight"] == 0).sum()) == nz_round(0.7, 3072)
          and int((rec["2.weight"] == 0).sum()) == nz_round(0.6, 480), "recipe per-layer final_sparsity map")
    check(json.load(open(P("rep.json")))["tensors"][0]["name"] == "0.weight", "--report writes JSON")
    check(run("check", P("rec.pt"), "--recipe", P("r.json")).returncode == 0, "check --recipe passes")
    check(run("check", P("mlp90.pt"), "--sparsity", "0.95").returncode == 1, "check fails below target")
    rr = run("prune", P("mlp.pt"), "-o", P("b.pt"), "--recipe", "unstructured-90", "-q")
    check(rr.returncode == 0 and int((torch.load(P("b.pt"))["0.weight"] == 0).sum()) == nz_round(0.9, 3072),
          "bundled recipe by name")

    # --- 8. bad input: NaN, OUT == IN, bad options, no partial file ----------
    bad = {"x.weight": torch.randn(8, 8)}
    bad["x.weight"][3, 3] = float("nan")
    torch.save(bad, P("nan.pt"))
    rr = run("prune", P("nan.pt"), "-o", P("nan90.pt"), "--sparsity", "0.9")
    check(rr.returncode == 2 and "x.weight" in rr.stderr and not os.path.exists(P("nan90.pt")),
          "NaN: exit 2 naming the tensor, no output")
    check(len([f for f in os.listdir(tmp) if "sparsify-tmp" in f]) == 0, "no temp files left")
    before = open(P("mlp.pt"), "rb").read()
    rr = run("prune", P("mlp.pt"), "-o", P("mlp.pt"), "--sparsity", "0.5")
    check(rr.returncode == 2 and open(P("mlp.pt"), "rb").read() == before, "OUT == IN refused, input untouched")
    for args in (["--sparsity", "1.5"], ["--sparsity", "abc"], ["--pattern", "3:2"], ["--scope", "world", "--sparsity", "0.5"],
                 ["--include", "(", "--sparsity", "0.5"], []):
        rr = run("prune", P("mlp.pt"), "-o", P("bad.pt"), *args)
        check(rr.returncode == 2 and rr.stderr.startswith("sparsify: error:") and not os.path.exists(P("bad.pt")),
              f"bad options {args} -> exit 2")
    rr = run("prune", P("missing.pt"), "-o", P("m.pt"), "--sparsity", "0.5")
    check(rr.returncode == 2 and "missing.pt" in rr.stderr, "missing input -> exit 2 naming it")
    import shutil
    shutil.copy(P("mlp.pt"), P("inplace.pt"))
    rr = run("prune", P("inplace.pt"), "--in-place", "--sparsity", "0.9", "-q")
    check(rr.returncode == 0 and open(P("inplace.pt"), "rb").read() == open(P("mlp90.pt"), "rb").read(),
          "--in-place replaces the input with the pruned file")

    # --- 9. TorchScript, legacy, safetensors keep their formats -------------
    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 6 * 6, 10)).eval()
    sm = torch.jit.script(net)
    sm.save(P("net.ts"))
    rr = run("prune", P("net.ts"), "-o", P("net90.ts"), "--sparsity", "0.9", "-q", expect=0)
    check(rr.returncode == 0, "TorchScript prune exit 0")
    try:
        ts = torch.jit.load(P("net90.ts"))
        y = ts(torch.randn(2, 3, 8, 8))
        w = ts.state_dict()["3.weight"]
        check(y.shape == (2, 10) and int((w == 0).sum()) == nz_round(0.9, w.numel()), "TorchScript output runs and is pruned")
        check(torch.equal(ts.state_dict()["1.running_mean"], sm.state_dict()["1.running_mean"]), "BN buffers untouched")
    except Exception as e:  # noqa: BLE001
        check(False, f"torch.jit.load of pruned TorchScript: {e}")
    torch.save(sd, P("legacy.pt"), _use_new_zipfile_serialization=False)
    rr = run("prune", P("legacy.pt"), "-o", P("legacy90.pt"), "--sparsity", "0.9", "-q", expect=0)
    check(rr.returncode == 0 and zipfile.is_zipfile(P("legacy90.pt")), "legacy input -> modern zip output")
    if rr.returncode == 0:
        lg = torch.load(P("legacy90.pt"))
        check(torch.equal(lg["0.weight"], out["0.weight"]) and torch.equal(lg["0.bias"], sd["0.bias"]),
              "legacy output equals zip output")

    # --- 10. safetensors file and a sharded Hugging Face folder ------------
    torch.manual_seed(6)
    st = collections.OrderedDict([("enc.weight", torch.randn(16, 32)), ("enc.bias", torch.randn(16)),
                                  ("norm.weight", torch.randn(16, 16)), ("dec.weight", torch.randn(8, 16).half())])
    write_safetensors(P("m.safetensors"), st, {"format": "pt"})
    rr = run("prune", P("m.safetensors"), "-o", P("m90.safetensors"), "--sparsity", "0.75", "-q", expect=0)
    check(rr.returncode == 0, "safetensors prune exit 0")
    if rr.returncode == 0:
        hdr0, body0 = read_safetensors_raw(P("m.safetensors"))
        hdr1, body1 = read_safetensors_raw(P("m90.safetensors"))
        check(hdr0 == hdr1, "safetensors header bytes identical")
        o = read_safetensors(P("m90.safetensors"))
        check(int((o["enc.weight"] == 0).sum()) == nz_round(0.75, 512), "safetensors weight pruned")
        check(int((o["dec.weight"] == 0).sum()) == nz_round(0.75, 128), "safetensors f16 weight pruned")
        check(torch.equal(o["norm.weight"], st["norm.weight"]), "norm weight not pruned by default")
        check(torch.equal(o["enc.bias"], st["enc.bias"]), "bias untouched")
    os.makedirs(P("hf"))
    a = collections.OrderedDict(list(st.items())[:2])
    b = collections.OrderedDict(list(st.items())[2:])
    write_safetensors(P("hf/model-00001-of-00002.safetensors"), a, {"format": "pt"})
    write_safetensors(P("hf/model-00002-of-00002.safetensors"), b, {"format": "pt"})
    idx = {"metadata": {"total_size": 0}, "weight_map": {k: "model-00001-of-00002.safetensors" for k in a}}
    idx["weight_map"].update({k: "model-00002-of-00002.safetensors" for k in b})
    json.dump(idx, open(P("hf/model.safetensors.index.json"), "w"))
    open(P("hf/config.json"), "w").write('{"model_type": "toy"}')
    rr = run("prune", P("hf"), "-o", P("hf90"), "--sparsity", "0.75", "-q", expect=0)
    check(rr.returncode == 0 and os.path.isdir(P("hf90")), "HF folder prune -> folder")
    if rr.returncode == 0:
        check(open(P("hf90/config.json")).read() == '{"model_type": "toy"}', "other files copied")
        o = read_safetensors(P("hf90/model-00001-of-00002.safetensors"))
        check(int((o["enc.weight"] == 0).sum()) == nz_round(0.75, 512), "sharded weight pruned")
        check(read_safetensors(P("hf90/model-00002-of-00002.safetensors"))["norm.weight"].equal(st["norm.weight"]),
              "second shard untouched tensor identical")

    # --- 11. interrupted runs leave no partial output -----------------------
    import signal
    import time
    torch.manual_seed(7)
    big = {f"l{i}.weight": torch.randn(512, 512) for i in range(24)}
    torch.save(big, P("big.pt"))
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2):
        target = P(f"int{delay}.pt")
        proc = subprocess.Popen([SPARSIFY, "prune", P("big.pt"), "-o", target, "--sparsity", "0.9", "-q"])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        leftovers = [f for f in os.listdir(tmp) if "sparsify-tmp" in f]
        ok = not leftovers
        if os.path.exists(target):  # finished before the kill: must be whole
            try:
                ok = ok and int((torch.load(target)["l0.weight"] == 0).sum()) == nz_round(0.9, 512 * 512)
            except Exception:  # noqa: BLE001
                ok = False
        check(ok, f"killed after {delay}s: no partial output, no temp files")

    defaults_and_ties(tmp)
    return summary()


def defaults_and_ties(tmp):
    """Output heads stay dense by default; tied storage is pruned only when
    every name over it is targeted; --dry-run writes nothing; movement
    recipes are refused by one-shot prune."""
    P = lambda name: os.path.join(tmp, name)  # noqa: E731
    torch.manual_seed(8)
    emb = torch.randn(40, 16)
    lm = collections.OrderedDict([("model.embed_tokens.weight", emb),
                                  ("model.layers.0.mlp.up_proj.weight", torch.randn(32, 16)),
                                  ("model.norm.weight", torch.ones(16)),
                                  ("lm_head.weight", emb)])  # tied, as most small LMs
    torch.save(lm, P("lm.pt"))
    r = run("prune", P("lm.pt"), "-o", P("lm50.pt"), "--sparsity", "0.5", "--json", expect=0)
    o = torch.load(P("lm50.pt"))
    names = [t["name"] for t in json.loads(r.stdout)["tensors"]]
    check(names == ["model.layers.0.mlp.up_proj.weight"], f"default targets leave lm_head dense: {names}")
    check(torch.equal(o["model.embed_tokens.weight"], emb) and torch.equal(o["lm_head.weight"], emb),
          "embeddings tied to lm_head untouched")
    # an untied lm_head (and Meta's "output") is not a default target either
    untied = {"lm_head.weight": torch.randn(40, 16), "output.weight": torch.randn(40, 16), "fc.weight": torch.randn(8, 16)}
    torch.save(untied, P("untied.pt"))
    r = run("prune", P("untied.pt"), "--dry-run", "--sparsity", "0.5", "--json", expect=0)
    check([t["name"] for t in json.loads(r.stdout)["tensors"]] == ["fc.weight"], "untied heads not pruned by default")
    r = run("prune", P("untied.pt"), "-o", P("untied50.pt"), "--sparsity", "0.5", "--include", "^lm_head", "-q", expect=0)
    check(int((torch.load(P("untied50.pt"))["lm_head.weight"] == 0).sum()) == 320, "--include can still select lm_head")
    # a tied head asked for alone: its storage is also the embedding's
    r = run("prune", P("lm.pt"), "-o", P("x.pt"), "--sparsity", "0.5", "--include", "lm_head")
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and "'lm_head.weight' shares its storage with "
          "'model.embed_tokens.weight'" in lines[0] and not os.path.exists(P("x.pt")),
          f"tied lm_head alone: exit 2, nothing pruned ({lines})")
    r = run("prune", P("lm.pt"), "-o", P("x.pt"), "--sparsity", "0.5", "--include", "lm_head|up_proj", "--json")
    check(r.returncode == 0 and "'lm_head.weight' left dense" in r.stderr
          and json.loads(r.stdout)["skipped"] == [{"name": "lm_head.weight",
                                                  "shares_storage_with": "model.embed_tokens.weight"}],
          "a skipped alias is warned about and reported")
    check(torch.equal(torch.load(P("x.pt"))["lm_head.weight"], emb), "the skipped head stayed dense")
    # both names targeted: pruned once, both named, still tied
    r = run("prune", P("lm.pt"), "-o", P("both.pt"), "--sparsity", "0.5", "--include", "lm_head|embed", "--json", expect=0)
    rep = {t["name"]: t for t in json.loads(r.stdout)["tensors"]}
    check(rep["lm_head.weight"]["aliases"] == ["model.embed_tokens.weight"]
          and rep["model.embed_tokens.weight"]["aliases"] == ["lm_head.weight"], "the report names every alias")
    b = torch.load(P("both.pt"))
    check(b["lm_head.weight"].data_ptr() == b["model.embed_tokens.weight"].data_ptr()
          and int((b["lm_head.weight"] == 0).sum()) == 320, "tied pair pruned once, still tied")
    r = run("prune", P("lm.pt"), "-o", P("both2.pt"), "--sparsity", "0.5", "--include", "lm_head|embed", expect=0)
    check("shares storage with model.embed_tokens.weight" in r.stderr, "the table names the alias")
    # views: a weight inside an untargeted buffer is left dense; one beside it is pruned
    flat = torch.randn(64 + 64 + 8)
    views = {"buf": flat, "in.weight": flat[:64].view(8, 8)}
    torch.save(views, P("views.pt"))
    r = run("prune", P("views.pt"), "-o", P("x2.pt"), "--sparsity", "0.5")
    check(r.returncode == 2 and "'in.weight' shares its storage with 'buf'" in r.stderr, "a view of an untargeted buffer is left dense")
    side = {"a.weight": flat[:64].view(8, 8), "b.bias": flat[64:72], "c.weight": flat[72:].view(8, 8)}
    torch.save(side, P("side.pt"))
    r = run("prune", P("side.pt"), "-o", P("side50.pt"), "--sparsity", "0.5", "-q", expect=0)
    so = torch.load(P("side50.pt"))
    check(int((so["a.weight"] == 0).sum()) == 32 and torch.equal(so["b.bias"], side["b.bias"]),
          "views that do not overlap an untargeted tensor are pruned")
    # --dry-run: what would be pruned and to what, nothing written
    before = sorted(os.listdir(tmp))
    r = run("prune", P("lm.pt"), "--dry-run", "--sparsity", "0.7", "--include", "lm_head|embed|up", expect=0)
    check(r.returncode == 0 and "would prune 3 tensors" in r.stdout and "70.00%" in r.stdout
          and "model.embed_tokens.weight" in r.stdout.split("lm_head.weight", 2)[-1], "--dry-run table with aliases")
    r = run("prune", P("lm50.pt"), "-o", P("never.pt"), "--dry-run", "--sparsity", "0.7", "--json", expect=0)
    d = json.loads(r.stdout)
    check(d["dry_run"] is True and d["tensors"][0]["target"] == 0.7
          and d["tensors"][0]["sparsity_before"] == 0.5 and "zeros_after" not in d["tensors"][0],
          "--dry-run --json: target and current sparsity")
    check(sorted(os.listdir(tmp)) == before, "--dry-run wrote nothing")
    # movement needs gradients: one-shot prune refuses it
    for rec in ("movement-90", P("mv.json")):
        if rec.endswith(".json"):
            json.dump({"modifiers": [{"type": "MovementPruningModifier", "final_sparsity": 0.8,
                                      "start_epoch": 0, "end_epoch": 2}]}, open(rec, "w"))
        r = run("prune", P("lm.pt"), "-o", P("mv.pt"), "--recipe", rec)
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2 and len(lines) == 1 and "sparsify finetune" in lines[0]
              and "MovementPruningModifier" in lines[0] and not os.path.exists(P("mv.pt")),
              f"movement recipe {os.path.basename(rec)}: exit 2 pointing to finetune ({lines})")
    check(run("check", P("lm.pt"), "--recipe", "movement-90").returncode == 1, "check still takes a movement recipe")


if __name__ == "__main__":
    sys.exit(main())
