"""CLI tests of `sparsify run`: the sparse Linear operator inside real
TorchScript models, run by the real binary, checked against PyTorch
(torch.jit.load on the same model and data).

- the digits example pruned to 90%: accuracy equals PyTorch's, --output rows
  equal PyTorch's outputs, --compare reports both runs and their difference,
  for several batch sizes (1, odd, larger than the data) and thread counts;
- a model written to exercise the rewrite: nested submodules, a weight
  shared by two Linear layers, Linear products written as matmul and addmm
  with a transposed weight, a convolution (a non-Linear path), a dense Linear
  layer, a branch; blocks (4x1) and 2:4 patterns: the rewritten model gives
  PyTorch's outputs, and the report says which layers run sparse and why
  the others do not; a traced model too;
- bad input exits 2 with one line: no Linear layer, wrong input width, an
  unknown name in --layers, an existing --output without --force (left
  untouched), a missing data file.
"""
import json
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import SRC, check, run, summary  # noqa: E402

DIGITS = os.path.join(SRC, "examples", "digits")


def run_json(*args):
    p = run("run", *args, "--json", expect=0)
    return json.loads(p.stdout) if p.returncode == 0 else None


def read_pred(path):
    with open(path) as f:
        lines = f.read().splitlines()
    return lines[0].split(","), np.array([[float(v) for v in l.split(",")] for l in lines[1:]],
                                         dtype=np.float64)


def one_error_line(p):
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    return len(lines) == 1 and lines[0].startswith("sparsify: error: ")


class Inner(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 32)

    def forward(self, x):
        return torch.relu(self.lin(x))


class Net(torch.nn.Module):
    """Every way forward can reach a Linear product that the rewrite knows."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Sequential(Inner(), torch.nn.Linear(32, 32))
        self.shared = torch.nn.Linear(32, 32)
        self.shared2 = torch.nn.Linear(32, 32)
        self.shared2.weight = self.shared.weight  # one weight, two layers
        self.conv = torch.nn.Conv1d(1, 2, 3, padding=1)
        self.proj = torch.nn.Parameter(torch.randn(32, 32) / 6)
        self.w_e = torch.nn.Parameter(torch.randn(32, 32) / 6)
        self.b_e = torch.nn.Parameter(torch.randn(32) / 6)
        self.blocky = torch.nn.Linear(32, 32)
        self.nm = torch.nn.Linear(32, 32)
        self.dense_layer = torch.nn.Linear(32, 32)
        self.head = torch.nn.Linear(64, 5)

    def forward(self, x):
        h = self.enc(x)
        a = self.shared(h) + self.shared2(torch.tanh(h))
        c = self.conv(h.unsqueeze(1)).flatten(1)[:, :32]
        d = torch.matmul(h, self.proj.t())
        e = torch.addmm(self.b_e, h, self.w_e.t())
        f = self.dense_layer(h) + self.blocky(h) + self.nm(h)
        z = torch.cat([a + c, d + e + f], 1)
        if bool(z.sum() > 1e9):
            z = z * 0.5
        return self.head(z)


def prune_(t, pattern, s):
    """Zero a weight in place to a pattern (the fixture's own pruning)."""
    with torch.no_grad():
        if pattern == "unstructured":
            k = int(s * t.numel())
            t.view(-1)[t.abs().flatten().argsort()[:k]] = 0
        elif pattern == "4x1":
            r, c = t.shape
            blk = t.abs().reshape(r // 4, 4, c).sum(1)
            keep = torch.zeros_like(blk).view(-1)
            keep[blk.flatten().argsort()[int(s * blk.numel()):]] = 1
            t.mul_(keep.view(r // 4, 1, c).expand(r // 4, 4, c).reshape(r, c))
        else:  # 2:4
            g = t.abs().reshape(t.shape[0], -1, 4)
            idx = g.argsort(-1)[..., :2]
            t.view(t.shape[0], -1, 4).scatter_(-1, idx, 0)


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    p = run("run", "x.pt", "--data", "z.csv")
    if "built without libtorch" in p.stderr:
        print("skip: this sparsify was built without libtorch")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        T = lambda name: os.path.join(tmp, name)
        data = os.path.join(DIGITS, "digits.csv")
        raw = np.loadtxt(data, delimiter=",", skiprows=1, dtype=np.float32)
        x, y = torch.from_numpy(raw[:, :-1]), torch.from_numpy(raw[:, -1]).long()
        p90 = T("p90.pt")
        p = run("prune", os.path.join(DIGITS, "dense.pt"), "-o", p90, "--sparsity", "0.9", expect=0)
        check(p.returncode == 0, "prune the digits model")
        m = torch.jit.load(p90).eval()
        with torch.no_grad():
            ref = m(x)
        ref_acc = (ref.argmax(1) == y).double().mean().item()

        # 1. The digits model: accuracy, outputs, comparison.
        for bs, thr in ((1, 1), (7, 2), (64, 2), (5000, 1)):
            out = T(f"pred{bs}.csv")
            d = run_json(p90, "--data", data, "--label-column", "label", "--batch-size", bs,
                         "--threads", thr, "--compare", "--output", out)
            check(d is not None, f"digits batch {bs}: runs")
            if d is None:
                continue
            check(abs(d["accuracy"] - ref_acc) < 1e-9,
                  f"batch {bs}: accuracy {d['accuracy']} == PyTorch's {ref_acc}")
            check(d["dense_accuracy"] == d["accuracy"], f"batch {bs}: dense accuracy equal")
            check(d["samples"] == len(y) and d["batch_size"] == bs and d["threads"] == thr,
                  f"batch {bs}: samples, batch_size, threads")
            check(d["batches"] == (len(y) + bs - 1) // bs, f"batch {bs}: batch count")
            check(d["sparse_layers"] == ["fc1", "fc2", "fc3"] and d["dense_layers"] == [],
                  f"batch {bs}: every layer sparse: {d['sparse_layers']} {d['dense_layers']}")
            for k in ("ms_per_batch", "samples_per_s", "dense_ms_per_batch", "sparse_ms_per_batch",
                      "speedup"):
                check(d[k] > 0, f"batch {bs}: {k} > 0")
            check(d["max_rel_diff"] <= 1e-4 and d["max_abs_diff"] <= 1e-4 * ref.abs().max().item(),
                  f"batch {bs}: sparse vs dense max rel diff {d['max_rel_diff']} <= 1e-4")
            check(abs(d["speedup"] - d["dense_ms_per_batch"] / d["sparse_ms_per_batch"]) < 1e-9,
                  "speedup = dense / sparse")
            hdr, pred = read_pred(out)
            check(hdr == [f"y{i}" for i in range(10)], f"batch {bs}: header y0..y9")
            diff = np.abs(pred - ref.double().numpy()).max() / ref.abs().max().item()
            check(pred.shape == (len(y), 10) and diff <= 1e-5,
                  f"batch {bs}: --output rows equal PyTorch's (rel diff {diff:.2g})")
            lay = {l["name"]: l for l in d["layers"]}
            check(lay["fc1"]["layout"] == "csr" and abs(lay["fc1"]["sparsity"] - 0.9) < 1e-3
                  and lay["fc1"]["shape"] == [128, 64] and lay["fc1"]["kernel"].startswith("sp_f32_"),
                  f"batch {bs}: fc1 report {lay['fc1']}")

        # label column by index; no label column: every column an input (65
        # columns do not fit the 64-input model); tensor files with labels.
        d = run_json(p90, "--data", data, "--label-column", "-1", "--batch-size", 32)
        check(d is not None and abs(d["accuracy"] - ref_acc) < 1e-9 and d["mode"] == "sparse",
              "--label-column -1")
        p = run("run", p90, "--data", data)
        check(p.returncode == 2 and "shape [2, 65]" in p.stderr and one_error_line(p),
              f"no label column: 65 inputs do not fit: {p.stderr.strip()}")
        torch.save({"inputs": x, "labels": y}, T("digits.pt"))
        d = run_json(p90, "--data", T("digits.pt"), "--batch-size", 16)
        check(d is not None and abs(d["accuracy"] - ref_acc) < 1e-9, "tensor file with labels")
        torch.save({"inputs": x[:50]}, T("nolabels.pt"))
        d = run_json(p90, "--data", T("nolabels.pt"))
        check(d is not None and "accuracy" not in d and d["samples"] == 50, "tensor file without labels")
        d = run_json(p90, "--data", data, "--label-column", "label", "--dense", "--batch-size", 8,
                     "--warmup", 0, "--repeat", 2)
        check(d is not None and d["mode"] == "dense" and d["sparse_layers"] == []
              and abs(d["accuracy"] - ref_acc) < 1e-9 and "speedup" not in d, "--dense")
        d = run_json(p90, "--data", data, "--label-column", "label", "--layers", "fc2,fc3")
        check(d is not None and d["sparse_layers"] == ["fc2", "fc3"] and d["dense_layers"] == ["fc1"]
              and [l["reason"] for l in d["layers"] if l["name"] == "fc1"] == ["not in --layers"],
              "--layers runs exactly those sparse")
        p = run("run", p90, "--data", data, "--label-column", "label", expect=0)
        check(p.returncode == 0 and "accuracy:" in p.stdout and "sparse layers: 3 of 3" in p.stdout
              and "ms/batch" in p.stdout, "text report")

        # 2. The rewrite on a model with every kind of Linear product.
        net = Net().eval()
        prune_(net.enc[0].lin.weight, "unstructured", 0.8)
        prune_(net.enc[1].weight, "unstructured", 0.9)
        prune_(net.shared.weight, "unstructured", 0.85)
        prune_(net.proj, "unstructured", 0.9)
        prune_(net.w_e, "unstructured", 0.9)
        prune_(net.blocky.weight, "4x1", 0.75)
        prune_(net.nm.weight, "2:4", 0.5)
        prune_(net.head.weight, "unstructured", 0.9)
        xs = torch.randn(23, 16)
        torch.save({"inputs": xs}, T("xs.pt"))
        with torch.no_grad():
            nref = net(xs)
        scripted, traced = T("net.pt"), T("traced.pt")
        torch.jit.script(net).save(scripted)
        mlp = torch.nn.Sequential(torch.nn.Linear(16, 40), torch.nn.ReLU(), torch.nn.Linear(40, 3))
        prune_(mlp[0].weight, "unstructured", 0.9)
        prune_(mlp[2].weight, "unstructured", 0.9)
        torch.jit.trace(mlp, xs).save(traced)
        with torch.no_grad():
            tref = mlp(xs)
        for bs in (1, 5, 23):
            out = T(f"net{bs}.csv")
            d = run_json(scripted, "--data", T("xs.pt"), "--batch-size", bs, "--compare",
                         "--output", out)
            check(d is not None, f"rewrite model batch {bs}: runs")
            if d is None:
                continue
            want_sparse = {"enc.0.lin", "enc.1", "shared", "proj", "w_e", "blocky", "nm", "head"}
            check(set(d["sparse_layers"]) == want_sparse,
                  f"batch {bs}: sparse layers {sorted(d['sparse_layers'])}")
            lay = {l["name"]: l for l in d["layers"]}
            check(lay.get("dense_layer", {}).get("reason") == "no zeros",
                  f"dense Linear stays dense: {lay.get('dense_layer')}")
            conv = lay.get("conv", {})
            check(not conv.get("sparse", True) and conv.get("reason", "").startswith("not a Linear product"),
                  f"conv weight reported, not a Linear product: {conv}")
            check("shared2" not in lay, "a shared weight is one layer")
            # blocks from the zeros; 2:4 weights run as CSR (faster than the
            # N:M layout on today's kernels: docs/run.md)
            check(lay["blocky"]["layout"] == "bcsr 4x1" and lay["nm"]["layout"] == "csr",
                  f"layouts from the zeros: {lay['blocky']['layout']}, {lay['nm']['layout']}")
            check(d["max_rel_diff"] <= 1e-4, f"batch {bs}: rewritten model max rel diff {d['max_rel_diff']}")
            _, pred = read_pred(out)
            diff = np.abs(pred - nref.double().numpy()).max() / nref.abs().max().item()
            check(diff <= 1e-4, f"batch {bs}: outputs equal PyTorch's (rel diff {diff:.2g})")
        out = T("traced.csv")
        d = run_json(traced, "--data", T("xs.pt"), "--batch-size", 4, "--output", out)
        check(d is not None and d["sparse_layers"] == ["0", "2"], f"traced model: {d and d['sparse_layers']}")
        if d is not None:
            _, pred = read_pred(out)
            check(np.abs(pred - tref.double().numpy()).max() <= 1e-4 * tref.abs().max().item(),
                  "traced model outputs equal PyTorch's")

        # 3. Bad input: exit 2, one line.
        convnet = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3), torch.nn.Flatten())
        torch.jit.script(convnet).save(T("conv.pt"))
        torch.save({"inputs": torch.randn(4, 1, 8)}, T("cx.pt"))
        with open(T("narrow.csv"), "w") as f:
            f.write("\n".join(",".join(["1"] * 63) for _ in range(3)) + "\n")
        with open(T("exists.csv"), "w") as f:
            f.write("keep me\n")
        cases = [
            (["run", T("conv.pt"), "--data", T("cx.pt")], "no Linear layer"),
            (["run", p90, "--data", T("narrow.csv")], "does not accept inputs of shape [2, 63]"),
            (["run", p90, "--data", data, "--label-column", "label", "--layers", "fc1,fc9"],
             "no Linear layer 'fc9'"),
            (["run", p90, "--data", data, "--label-column", "label", "--output", T("exists.csv")],
             "exists"),
            (["run", p90, "--data", data, "--label-column", "label", "--output", data, "--force"],
             "is the input"),
            (["run", p90, "--data", data, "--label-column", "label", "--output", p90, "--force"],
             "is the input"),
            (["run", p90, "--data", T("missing.csv")], "cannot open"),
            (["run", p90, "--data", data, "--label-column", "digit"], "no column named 'digit'"),
            (["run", p90, "--data", data, "--dense", "--compare"], "exclude"),
            (["run", p90, "--data", data, "--batch-size", "0"], "--batch-size"),
            (["run", T("nomodel.pt"), "--data", data], "cannot open"),
        ]
        for i, (args, msg) in enumerate(cases):
            p = run(*args)
            check(p.returncode == 2 and msg in p.stderr and p.stderr.startswith("sparsify: error: "),
                  f"{args[1:]}: exit 2 with '{msg}' (got {p.returncode}: {p.stderr.strip()[:300]})")
            if i < 8:  # bad input (not usage): one line, nothing else
                check(one_error_line(p), f"{args[1:]}: one line: {p.stderr.strip()[:300]}")
        with open(T("exists.csv")) as f:
            check(f.read() == "keep me\n", "an existing --output is left untouched")
        p = run("run", p90, "--data", data, "--label-column", "label", "--output", T("exists.csv"),
                "--force", expect=0)
        check(p.returncode == 0 and read_pred(T("exists.csv"))[1].shape == (len(y), 10),
              "--force replaces it")
        check(not [f for f in os.listdir(tmp) if "sparsify-tmp" in f], "no temp file left")
        p = run("run", "--help")
        check(p.returncode == 0 and "--compare" in p.stdout, "--help")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
