#!/usr/bin/python3
"""Write the seed corpora of the fuzz harnesses (fuzz/corpus/<harness>/).

usage: /usr/bin/python3 fuzz/make_corpus.py SPARSIFY_BINARY [OUTDIR]

Every checkpoint seed is written by real PyTorch (torch.save, torch.jit.save,
the legacy format) or, for .spz, by `sparsify export` of such a checkpoint;
safetensors seeds use the reference layout (tests/make_fixtures.py). The
seeds are tiny (a few KB per harness): libFuzzer mutates faster, and what
matters is that each one reaches a different part of its reader (views,
tied storages, nested containers, 0-d and empty tensors, dtypes, deflated
records, TorchScript code, every .spz encoding). OUTDIR defaults to
fuzz/corpus next to this script; existing seeds are replaced.
"""
import collections
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import torch  # noqa: E402
from make_fixtures import save_safetensors  # noqa: E402


def state_dicts():
    """Small state dicts covering the shapes readers must handle."""
    g = torch.Generator().manual_seed(0)
    lin = torch.randn(4, 8, generator=g)
    lin[:, ::2] = 0
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    yield "flat", collections.OrderedDict([("fc.weight", lin), ("fc.bias", torch.zeros(4)),
                                           ("steps", torch.tensor(3, dtype=torch.int64))])
    yield "dtypes", {"h": torch.randn(3, 4, generator=g).half(), "b": torch.randn(2, 4, generator=g).bfloat16(),
                     "d": torch.randn(2, 2, generator=g).double(), "i8": torch.arange(6, dtype=torch.int8),
                     "m": torch.tensor([True, False, True]), "e": torch.zeros(0, 5)}
    yield "views", {"base": base, "t": base.t(), "row": base[1], "col": base[:, 2], "exp": torch.zeros(1).expand(3, 4),
                    "off": base.view(-1)[5:9]}
    w = torch.randn(8, 8, generator=g)
    yield "tied", {"emb.weight": w, "head.weight": w}
    yield "training", {"epoch": 2, "model": {"l.weight": torch.randn(2, 4, generator=g)},
                       "optimizer": {"state": {0: {"exp_avg": torch.zeros(2, 4), "step": torch.tensor(1.0)}},
                                     "param_groups": [{"lr": 0.1, "params": [0], "betas": (0.9, 0.99)}]},
                       "names": ["a", None, 1.5], "flag": True}


def write_torch(out):
    os.makedirs(out, exist_ok=True)
    for name, sd in state_dicts():
        torch.save(sd, os.path.join(out, name + ".pt"))
    # a deflated copy of one checkpoint (torch itself writes stored records)
    src = os.path.join(out, "flat.pt")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(os.path.join(out, "deflated.pt"), "w",
                                                    zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    m = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()))
    m.save(os.path.join(out, "script.pt"))


def write_legacy(out):
    os.makedirs(out, exist_ok=True)
    for name, sd in state_dicts():
        torch.save(sd, os.path.join(out, name + ".pt"), _use_new_zipfile_serialization=False)


def write_safetensors(out):
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(1)
    save_safetensors(os.path.join(out, "one.safetensors"),
                     collections.OrderedDict([("w", torch.randn(3, 4, generator=g)), ("b", torch.zeros(3))]),
                     {"format": "pt"})
    save_safetensors(os.path.join(out, "dtypes.safetensors"),
                     collections.OrderedDict([("h", torch.randn(2, 3, generator=g).half()),
                                              ("bf", torch.randn(5, generator=g).bfloat16()),
                                              ("i", torch.arange(4, dtype=torch.int64)),
                                              ("m", torch.tensor([True, False])),
                                              ("e", torch.zeros(0, 3)), ("s", torch.tensor(2.5))]))


def write_hf_index(out):
    os.makedirs(out, exist_ok=True)
    idx = {"metadata": {"total_size": 1234},
           "weight_map": {"model.embed.weight": "model-00001-of-00002.safetensors",
                          "model.layers.0.mlp.weight": "model-00001-of-00002.safetensors",
                          "lm_head.weight": "model-00002-of-00002.safetensors"}}
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(idx, f, indent=2)
    with open(os.path.join(out, "one.json"), "w") as f:
        json.dump({"weight_map": {"w": "model.safetensors"}}, f)


def write_pickle(out, torch_dir):
    os.makedirs(out, exist_ok=True)
    for name in ("flat", "training", "views", "script"):
        with zipfile.ZipFile(os.path.join(torch_dir, name + ".pt")) as z:
            pk = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
            with open(os.path.join(out, name + ".pkl"), "wb") as f:
                f.write(z.read(pk))
    obj = {"a": [1, 2.5, None, True, "s", b"by"], "b": (1, (2, 3)), 7: {3, 4}, "big": 2 ** 70,
           "neg": -(2 ** 40), "od": collections.OrderedDict(x=1)}
    with open(os.path.join(out, "values.pkl"), "wb") as f:
        f.write(pickle.dumps(obj, protocol=2))
    shared = [1, 2]
    with open(os.path.join(out, "memo.pkl"), "wb") as f:
        f.write(pickle.dumps({"x": shared, "y": shared}, protocol=2))


def write_spz(out, sparsify, torch_dir):
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp()
    try:
        g = torch.Generator().manual_seed(2)
        w = torch.randn(8, 16, generator=g)
        w[torch.rand(8, 16, generator=g) < 0.7] = 0
        w[0, 1] = -0.0
        w24 = torch.randn(8, 16, generator=g).reshape(-1, 4)
        w24.scatter_(1, w24.abs().argsort(dim=1)[:, :2], 0.0)
        blk = torch.randn(8, 16, generator=g)
        blk[:4, :4] = 0
        blk[4:, 8:12] = 0
        sd = {"sparse.weight": w, "nm.weight": w24.reshape(8, 16), "block.weight": blk,
              "dense.bias": torch.randn(8, generator=g), "tied.weight": w,
              "half.weight": w.half(), "empty": torch.zeros(0, 4), "scalar": torch.tensor(1.0)}
        src = os.path.join(tmp, "src.pt")
        torch.save(sd, src)
        runs = {"auto": [], "raw": ["--raw"], "bitmask": ["--encoding", "bitmask"],
                "nm": ["--encoding", "nm", "--nm", "2:4"], "block": ["--encoding", "block", "--block", "4x4"],
                "dense": ["--encoding", "dense"]}
        for name, extra in runs.items():
            dst = os.path.join(out, name + ".spz")
            if os.path.exists(dst):
                os.remove(dst)
            subprocess.run([sparsify, "export", src, "-o", dst, "-q"] + extra, check=True,
                           stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(tmp)


def write_recipes(out):
    os.makedirs(out, exist_ok=True)
    tpl = os.path.join(HERE, "..", "recipes", "templates")
    for name in ("gradual-90.json", "nm-2-4.json", "block4x1-90.json", "movement-90.json"):
        shutil.copy(os.path.join(tpl, name), os.path.join(out, name))
    sparseml = {"version": 1, "modifiers": [
        {"type": "GMPruningModifier", "params": ["re:.*layers\\.\\d+\\.mlp.*weight", "fc1.weight"],
         "ignore": ["re:^((?!dfl).)*$"], "init_sparsity": 0.05, "final_sparsity": {"0.8": ["re:.*q_proj.*"], "0.5": "__ALL__"},
         "start_epoch": 1, "end_epoch": 5, "update_frequency": 0.5, "inter_func": "inverse_cubic"},
        {"type": "ConstantPruningModifier", "params": "__ALL_PRUNABLE__", "start_epoch": 0},
        {"type": "GlobalMagnitudePruningModifier", "params": ["re:[\\d]+"], "final_sparsity": 0.9,
         "mask_type": "2:4", "leave_enabled": False}]}
    with open(os.path.join(out, "sparseml.json"), "w") as f:
        json.dump(sparseml, f, indent=1)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    sparsify = argv[1]
    out = argv[2] if len(argv) > 2 else os.path.join(HERE, "corpus")
    for sub in ("torch_zip", "torch_zip_crc", "torch_legacy", "safetensors", "hf_index", "spz",
                "pickle"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    torch.manual_seed(0)
    write_torch(os.path.join(out, "torch_zip"))
    shutil.copytree(os.path.join(out, "torch_zip"), os.path.join(out, "torch_zip_crc"))
    write_legacy(os.path.join(out, "torch_legacy"))
    write_safetensors(os.path.join(out, "safetensors"))
    write_hf_index(os.path.join(out, "hf_index"))
    write_pickle(os.path.join(out, "pickle"), os.path.join(out, "torch_zip"))
    write_spz(os.path.join(out, "spz"), sparsify, os.path.join(out, "torch_zip"))
    shutil.rmtree(os.path.join(out, "recipe_json"), ignore_errors=True)
    write_recipes(os.path.join(out, "recipe_json"))
    for sub in sorted(os.listdir(out)):
        d = os.path.join(out, sub)
        total = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"{sub}: {len(os.listdir(d))} seeds, {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
