#!/usr/bin/python3
"""Write PyTorch checkpoint fixtures for the torch reader tests.

Usage: /usr/bin/python3 tests/fixtures_torch.py OUTDIR

Writes OUTDIR/<kind>.pt for every kind below and OUTDIR/manifest.json: for
each fixture the tensors sparsify must find, named the way docs/ and ckpt.h
say (dict keys joined with '.', list/tuple indices as numbers, a bare
tensor is "tensor", TorchScript by state_dict()), with dtype, shape, stride,
storage offset and a storage group number (tensors that share a storage in
PyTorch share a group). Deterministic (fixed seeds).
"""
import collections
import json
import os
import sys
import zipfile

import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.seq = torch.nn.Sequential(
            torch.nn.Linear(4, 5), torch.nn.ReLU(),
            torch.nn.Sequential(torch.nn.Linear(5, 3)))
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(3, 3) for _ in range(2)])
        self.register_buffer("scale", torch.tensor([0.5, 2.0, 1.0]))
        self.offset = torch.tensor(1.0)  # plain attribute: not in state_dict

    def forward(self, x):
        x = self.bn(self.conv(x)).mean(dim=(2, 3))
        x = self.seq(x)
        for b in self.blocks:
            x = b(x)
        return x * self.scale + self.offset


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8,
          torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64]


def flat_dtypes():
    g = torch.Generator().manual_seed(1)
    sd = collections.OrderedDict()
    for i, dt in enumerate(DTYPES):
        x = torch.randn(3, 4, generator=g) * 50
        if dt == torch.bool:
            x = x > 0
        elif dt == torch.complex64:
            x = torch.complex(x, -x)
        sd[str(dt).replace("torch.", "")] = x.to(dt)
    return sd


def training():
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = model(torch.randn(5, 4)).pow(2).mean()
    loss.backward()
    opt.step()
    return {
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": opt.state_dict(),
        "epoch": 3,
        "loss": float(loss),
        "name": "run-42",
        "history": [1.5, 1.25, (2, "x", None)],
        "nothing": None,
        "flags": (True, False),
        "big": 2 ** 40,
        "neg": -123456789012,
        "blob": b"\x00\x01binary",
        "extras": [torch.ones(2), {"inner": torch.zeros(1, 2)}],
        7: torch.full((2,), 7.0),
    }


def tied():
    torch.manual_seed(3)
    emb = torch.nn.Embedding(6, 4)
    head = torch.nn.Linear(4, 6, bias=False)
    head.weight = emb.weight
    p = torch.nn.Parameter(torch.randn(3))
    m = torch.nn.ModuleDict({"emb": emb, "head": head})
    return {"model": m.state_dict(keep_vars=False), "p": p, "again": {"p": p}}


def views():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return collections.OrderedDict([
        ("base", base), ("t", base.t()), ("slice", base[1:3, 2:5]), ("row", base[2]),
        ("step", base[:, ::2]), ("other", torch.arange(5, dtype=torch.int64)[1:]),
    ])


def scalars():
    return {"zero_d": torch.tensor(3.5), "empty": torch.zeros(0, 3),
            "empty1": torch.zeros(0, dtype=torch.int64), "one": torch.ones(1)}


def manifest_of(obj, script=False):
    """Name every tensor as sparsify does; storages grouped by data_ptr."""
    out, groups = [], {}

    def add(name, t):
        st = t.storage()
        key = (st.data_ptr(), st.size()) if st.size() else ("empty", name)
        grp = groups.setdefault(key, len(groups))
        first = None
        if t.numel():
            x = t.reshape(-1)[0]
            first = float((x.real if x.is_complex() else x).double())
        out.append({"name": name or "tensor", "dtype": str(t.dtype).replace("torch.", ""),
                    "shape": list(t.shape), "stride": list(t.stride()),
                    "offset": t.storage_offset(), "group": grp,
                    "first": first})

    def walk(o, name):
        if isinstance(o, torch.Tensor):
            add(name, o)
        elif isinstance(o, dict):
            for k, v in o.items():
                if isinstance(k, (str, int)) and not isinstance(k, bool):
                    walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                walk(v, f"{name}.{i}" if name else str(i))

    walk(obj, "")
    return out


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    man = {}
    objs = {"flat": flat_dtypes(), "training": training(), "tied": tied(), "views": views(),
            "scalars": scalars(), "bare": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    for kind, obj in objs.items():
        path = os.path.join(out, kind + ".pt")
        torch.save(obj, path)
        man[kind] = manifest_of(torch.load(path))
    # legacy (pre-1.6) stream of the training checkpoint plus views
    legacy = training()
    legacy["views"] = views()
    torch.save(legacy, os.path.join(out, "legacy.pt"), _use_new_zipfile_serialization=False)
    man["legacy"] = manifest_of(torch.load(os.path.join(out, "legacy.pt")))
    # deflated: the training checkpoint re-zipped by Python with ZIP_DEFLATED
    src = os.path.join(out, "training.pt")
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(os.path.join(out, "deflated.pt"), "w",
                                                     zipfile.ZIP_DEFLATED) as zo:
        for info in zi.infolist():
            zo.writestr(info.filename, zi.read(info.filename))
    man["deflated"] = man["training"]
    # TorchScript
    torch.manual_seed(4)
    net = Net()
    net.train()
    net(torch.randn(2, 2, 5, 5))  # move BN statistics and num_batches_tracked
    net.eval()
    sm = torch.jit.script(net)
    torch.jit.save(sm, os.path.join(out, "script.pt"))
    man["script"] = manifest_of(torch.jit.load(os.path.join(out, "script.pt")).state_dict(),
                                script=True)
    torch.save(torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(5)),
               os.path.join(out, "script_input.pt"))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)


if __name__ == "__main__":
    main()
