#!/usr/bin/python3
"""Write the checkpoint fixtures that sparsify's tests read, with real PyTorch.

usage: /usr/bin/python3 tests/make_fixtures.py OUTDIR
       /usr/bin/python3 tests/make_fixtures.py --bert-base FILE [--format pt|safetensors]

The first form writes every fixture into OUTDIR plus OUTDIR/manifest.json:

    {"fixtures": [{"file": "mlp.pt", "kind": "mlp", "format": "torch-zip",
                   "oracle": "torch"}, ...]}

`file` is relative to OUTDIR (a folder for hf-folder fixtures), `format` is
the name `sparsify inspect` reports, and `oracle` says how a test reads the
same tensors back: "torch" (torch.load, then flatten nested containers: dict
keys joined with '.', list/tuple indices as decimal numbers), "torchscript"
(torch.jit.load(...).state_dict(); the fixture also has FILE.expected.json
with the names, dtypes and shapes), "safetensors" (a plain reader of the
format) or "hf-folder" (every shard read as safetensors).

Everything is seeded (and the script re-runs itself with PYTHONHASHSEED=0
and without address randomization), so two runs write the same bytes; the
default set is small (well under 5 MB, about a second). The second form writes one BERT-base-sized state
dict (about 110M fp32 parameters, Hugging Face BERT names) for benchmarks.

Python (with Debian's python3-torch) is a test oracle only: sparsify itself
never runs it.
"""
import collections
import json
import os
import shutil
import struct
import sys


def _reexec_deterministic():
    """TorchScript code lists a module's constants in set order (string hash
    seed) and legacy torch.save names storages by their memory address, so
    byte-identical output needs PYTHONHASHSEED=0 and, where setarch can turn
    it off, no address randomization. Re-run ourselves once under both."""
    if os.environ.get("SPARSIFY_FIXTURES_REEXEC") == "1":
        return
    env = dict(os.environ, PYTHONHASHSEED="0", SPARSIFY_FIXTURES_REEXEC="1")
    args = [sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    setarch = shutil.which("setarch")
    if setarch and os.system("%s -R true >/dev/null 2>&1" % setarch) == 0:
        args = [setarch, "-R"] + args
    sys.stdout.flush()
    os.execve(args[0], args, env)


if __name__ == "__main__":
    _reexec_deterministic()

import torch  # noqa: E402  (after the re-exec: importing torch is slow)
import torch.nn as nn  # noqa: E402

# ---- safetensors writer (no safetensors package here: the format is small) ----

ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
    torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
    torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def tensor_bytes(t):
    """Little-endian row-major bytes of a tensor (any dtype, bfloat16 too)."""
    t = t.detach().contiguous().cpu()
    if t.numel() == 0:
        return b""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save_safetensors(path, tensors, metadata=None):
    """Write a safetensors file as the reference implementation lays it out:
    u64 header length, JSON header (__metadata__ first, then tensors with
    contiguous data offsets in the given order) padded with spaces to a
    multiple of 8, then the data."""
    header = collections.OrderedDict()
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- helpers ----

def prune_2_4(w):
    """Zero the 2 smallest of every 4 consecutive weights along the input
    dimension (dim 1: Linear [out, in], conv [O, I, kh, kw] per (kh, kw))."""
    with torch.no_grad():
        p = w.transpose(1, -1) if w.dim() == 4 else w  # conv: I last
        shp = p.shape
        g = p.reshape(-1, 4)
        idx = g.abs().argsort(dim=1)[:, :2]
        g.scatter_(1, idx, 0.0)
        p.copy_(g.reshape(shp))
    return w


def prune_random(w, frac, gen):
    with torch.no_grad():
        w[torch.rand(w.shape, generator=gen) < frac] = 0.0
    return w


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 8)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c), nn.ReLU())

    def forward(self, x):
        return x + self.body(x)


class ScriptNet(nn.Module):
    """Conv2d, BatchNorm2d, nested Sequential, ModuleList, Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.ModuleList([Block(8), Block(8)])
        self.head = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(8, 12), nn.ReLU()),
                                  nn.Linear(12, 4))

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x.mean(dim=(2, 3), keepdim=True))


class TiedLM(nn.Module):
    def __init__(self, vocab=50, dim=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.embed.weight  # tied

    def forward(self, x):
        return self.lm_head(self.proj(self.embed(x)))


def bert_state_dict(vocab=100, hidden=32, layers=2, inter=64, max_pos=64, type_vocab=2,
                    seed=0, dtype=torch.float32):
    """A state dict with Hugging Face BertForMaskedLM-style names and shapes."""
    g = torch.Generator().manual_seed(seed)

    def w(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(dtype)

    def ones(n):
        return torch.ones(n, dtype=dtype)

    def zeros(n):
        return torch.zeros(n, dtype=dtype)

    sd = collections.OrderedDict()
    e = "bert.embeddings."
    sd[e + "position_ids"] = torch.arange(max_pos).unsqueeze(0)
    sd[e + "word_embeddings.weight"] = w(vocab, hidden)
    sd[e + "position_embeddings.weight"] = w(max_pos, hidden)
    sd[e + "token_type_embeddings.weight"] = w(type_vocab, hidden)
    sd[e + "LayerNorm.weight"] = ones(hidden)
    sd[e + "LayerNorm.bias"] = zeros(hidden)
    for i in range(layers):
        p = "bert.encoder.layer.%d." % i
        for m in ("query", "key", "value"):
            sd[p + "attention.self.%s.weight" % m] = w(hidden, hidden)
            sd[p + "attention.self.%s.bias" % m] = zeros(hidden)
        sd[p + "attention.output.dense.weight"] = w(hidden, hidden)
        sd[p + "attention.output.dense.bias"] = zeros(hidden)
        sd[p + "attention.output.LayerNorm.weight"] = ones(hidden)
        sd[p + "attention.output.LayerNorm.bias"] = zeros(hidden)
        sd[p + "intermediate.dense.weight"] = w(inter, hidden)
        sd[p + "intermediate.dense.bias"] = zeros(inter)
        sd[p + "output.dense.weight"] = w(hidden, inter)
        sd[p + "output.dense.bias"] = zeros(hidden)
        sd[p + "output.LayerNorm.weight"] = ones(hidden)
        sd[p + "output.LayerNorm.bias"] = zeros(hidden)
    sd["bert.pooler.dense.weight"] = w(hidden, hidden)
    sd["bert.pooler.dense.bias"] = zeros(hidden)
    sd["cls.predictions.bias"] = zeros(vocab)
    sd["cls.predictions.transform.dense.weight"] = w(hidden, hidden)
    sd["cls.predictions.transform.dense.bias"] = zeros(hidden)
    sd["cls.predictions.transform.LayerNorm.weight"] = ones(hidden)
    sd["cls.predictions.transform.LayerNorm.bias"] = zeros(hidden)
    return sd


def write_bert_base(path, fmt="pt"):
    """BERT-base sizes: vocab 30522, hidden 768, 12 layers, 3072 FFN (~110M)."""
    sd = bert_state_dict(vocab=30522, hidden=768, layers=12, inter=3072, max_pos=512)
    if fmt == "safetensors":
        save_safetensors(path, sd, {"format": "pt"})
    else:
        torch.save(sd, path)
    return sum(t.numel() for t in sd.values())


# ---- the fixture set ----

def make_all(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    manifest = []

    def add(file, kind, fmt, oracle, **extra):
        e = {"file": file, "kind": kind, "format": fmt, "oracle": oracle}
        e.update(extra)
        manifest.append(e)

    # flat state dict of a small MLP (plain dict), one layer 2:4, one 50% sparse
    m = MLP()
    prune_2_4(m.fc1.weight.data)
    prune_random(m.fc2.weight.data, 0.5, gen)
    torch.save({k: v for k, v in m.state_dict().items()}, os.path.join(out, "mlp.pt"))
    add("mlp.pt", "mlp", "torch-zip", "torch")

    # one tensor of every dtype, with zeros (and -0.0) in each
    dt = collections.OrderedDict()
    base = torch.tensor([[0.0, 1.5, -0.0, -2.25], [3.0, 0.0, 0.0, 4.0], [0.5, -1.0, 0.0, 0.0]])
    for name, d in (("float32", torch.float32), ("float16", torch.float16),
                    ("bfloat16", torch.bfloat16), ("float64", torch.float64)):
        dt[name] = base.to(d)
    ints = torch.tensor([[0, 1, -2, 0], [5, 0, 0, -7], [0, 0, 3, 0]])
    for name, d in (("int8", torch.int8), ("int16", torch.int16), ("int32", torch.int32),
                    ("int64", torch.int64)):
        dt[name] = ints.to(d)
    dt["int64"][0, 1] = 1 << 40
    dt["uint8"] = torch.tensor([0, 1, 255, 0, 7], dtype=torch.uint8)
    dt["bool"] = torch.tensor([True, False, True, False, False])
    torch.save(dt, os.path.join(out, "dtypes.pt"))
    add("dtypes.pt", "dtypes", "torch-zip", "torch")

    # nested training checkpoint with AdamW state after one step
    m = MLP()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    loss = m(torch.randn(4, 16, generator=gen)).pow(2).mean()
    loss.backward()
    opt.step()
    ckpt = {"model_state_dict": m.state_dict(), "optimizer_state_dict": opt.state_dict(),
            "epoch": 3, "loss": 0.25, "name": "run-1", "history": [1.0, 2.0],
            "shape": (2, 3), "extra": None, "lr_list": [1e-3, 5e-4, torch.tensor(2.5e-4)]}
    torch.save(ckpt, os.path.join(out, "training.pt"))
    add("training.pt", "training", "torch-zip", "torch")

    # model.state_dict() as is: an OrderedDict with _metadata, nested names
    cn = ConvNet()
    cn.train()
    cn(torch.randn(2, 3, 8, 8, generator=gen))  # BatchNorm running stats move
    sd = cn.state_dict()
    assert isinstance(sd, collections.OrderedDict) and hasattr(sd, "_metadata")
    torch.save(sd, os.path.join(out, "ordered.pt"))
    add("ordered.pt", "ordered", "torch-zip", "torch")

    # tied weights: the same Parameter under two keys
    lm = TiedLM()
    prune_random(lm.embed.weight.data, 0.3, gen)
    torch.save(lm.state_dict(), os.path.join(out, "tied.pt"))
    add("tied.pt", "tied", "torch-zip", "torch", shared=[["embed.weight", "lm_head.weight"]])

    # views sharing one storage: transpose, slice with offset, non-contiguous
    b = torch.arange(48, dtype=torch.float32).reshape(6, 8) - 20.0
    b[b.abs() > 15] = 0.0
    views = collections.OrderedDict()
    views["base"] = b
    views["transposed"] = b.t()
    views["rows"] = b[2:4]
    views["every_other"] = b[:, ::2]
    views["flat_offset"] = b.view(-1)[5:21]
    views["other"] = torch.ones(3)
    torch.save(views, os.path.join(out, "views.pt"))
    add("views.pt", "views", "torch-zip", "torch",
        shared=[["base", "transposed", "rows", "every_other", "flat_offset"]])

    # 0-d and empty tensors
    sc = collections.OrderedDict()
    sc["scalar"] = torch.tensor(3.5)
    sc["zero_scalar"] = torch.tensor(0.0)
    sc["int_scalar"] = torch.tensor(0, dtype=torch.int64)
    sc["empty"] = torch.empty(0)
    sc["empty_3x0"] = torch.empty(3, 0)
    torch.save(sc, os.path.join(out, "scalars.pt"))
    add("scalars.pt", "scalars", "torch-zip", "torch")

    # a conv net with BatchNorm; conv2 already 2:4 along input channels
    cn = ConvNet()
    prune_2_4(cn.conv2.weight.data)
    torch.save(cn.state_dict(), os.path.join(out, "convnet.pt"))
    add("convnet.pt", "convnet", "torch-zip", "torch")

    # legacy (pre-1.6) serialization, nested, with a view
    m = MLP()
    prune_random(m.fc1.weight.data, 0.5, gen)
    legacy = {"state_dict": m.state_dict(), "step": 7, "view": m.fc1.weight.data[1:3]}
    torch.save(legacy, os.path.join(out, "legacy.pt"), _use_new_zipfile_serialization=False)
    add("legacy.pt", "legacy", "torch-legacy", "torch",
        shared=[["state_dict.fc1.weight", "view"]])

    # TorchScript archive: names matter, so record state_dict() next to it
    sn = ScriptNet()
    sn.train()
    sn(torch.randn(2, 3, 6, 6, generator=gen))
    sn.eval()
    prune_2_4(sn.head[2].weight.data)
    scripted = torch.jit.script(sn)
    ts_path = os.path.join(out, "scripted.pt")
    torch.jit.save(scripted, ts_path)
    exp = [{"name": k, "dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
           for k, v in sn.state_dict().items()]
    with open(ts_path + ".expected.json", "w") as f:
        json.dump({"tensors": exp}, f, indent=1)
    add("scripted.pt", "torchscript", "torchscript", "torchscript",
        expected="scripted.pt.expected.json")

    # a single safetensors file with __metadata__
    st = collections.OrderedDict()
    w = torch.randn(8, 12, generator=gen)
    prune_2_4(w)
    st["encoder.weight"] = w
    st["encoder.bias"] = torch.zeros(8)
    st["half"] = torch.randn(4, 4, generator=gen).half()
    st["bf16"] = torch.randn(3, 5, generator=gen).to(torch.bfloat16)
    st["steps"] = torch.tensor([0, 3, 0, 9], dtype=torch.int64)
    st["mask"] = torch.tensor([True, False, False])
    st["scalar"] = torch.tensor(0.0)
    st["empty"] = torch.empty(0, 4)
    save_safetensors(os.path.join(out, "model.safetensors"), st,
                     {"format": "pt", "source": "make_fixtures.py"})
    add("model.safetensors", "safetensors", "safetensors", "safetensors")

    # a Hugging Face folder: 2 shards + index + config.json
    bert = bert_state_dict(seed=5)
    prune_random(bert["bert.encoder.layer.0.attention.self.query.weight"], 0.5, gen)
    hf = os.path.join(out, "hf_model")
    os.makedirs(hf, exist_ok=True)
    names = list(bert.keys())
    half = len(names) // 2
    shards = [("model-00001-of-00002.safetensors", names[:half]),
              ("model-00002-of-00002.safetensors", names[half:])]
    weight_map = {}
    total = 0
    for fname, part in shards:
        save_safetensors(os.path.join(hf, fname), collections.OrderedDict((n, bert[n]) for n in part),
                         {"format": "pt"})
        for n in part:
            weight_map[n] = fname
            total += len(tensor_bytes(bert[n]))
    with open(os.path.join(hf, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total},
                   "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    with open(os.path.join(hf, "config.json"), "w") as f:
        json.dump({"architectures": ["BertForMaskedLM"], "model_type": "bert",
                   "hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64,
                   "num_attention_heads": 4, "vocab_size": 100,
                   "max_position_embeddings": 64, "torch_dtype": "float32"}, f, indent=2)
    add("hf_model", "hf-folder", "hf-folder", "hf-folder")

    # a tiny BERT-like transformer state dict (HF names) as pytorch_model.bin
    tiny = bert_state_dict(seed=7)
    prune_2_4(tiny["bert.encoder.layer.1.intermediate.dense.weight"])
    torch.save(tiny, os.path.join(out, "bert_tiny.bin"))
    add("bert_tiny.bin", "bert-like", "torch-zip", "torch")

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"fixtures": manifest}, f, indent=1)
    return manifest


def main(argv):
    if len(argv) >= 2 and argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    if len(argv) >= 3 and argv[1] == "--bert-base":
        fmt = "pt"
        if len(argv) == 5 and argv[3] == "--format" and argv[4] in ("pt", "safetensors"):
            fmt = argv[4]
        elif len(argv) != 3:
            print("usage: make_fixtures.py --bert-base FILE [--format pt|safetensors]",
                  file=sys.stderr)
            return 2
        n = write_bert_base(argv[2], fmt)
        print("%s: %d parameters" % (argv[2], n))
        return 0
    if len(argv) != 2:
        print("usage: make_fixtures.py OUTDIR | --bert-base FILE [--format pt|safetensors]",
              file=sys.stderr)
        return 2
    make_all(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
