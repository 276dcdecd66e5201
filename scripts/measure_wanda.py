#!/usr/bin/python3
"""Data-aware one-shot pruning measured (docs/pruning.md, "Measured: Wanda and
sensitivity on the digits").

On the digits data (examples/digits: every 5th row validates, the others
train), for two models:
  - the digits example's dense model (examples/digits/dense.pt, 64-128-64-10);
  - a LeNet-300-100 (64-300-100-10, ReLU) trained here on the training rows
    (PyTorch, seed 0, AdamW 1e-3, 40 epochs, batch 32);
it measures the validation accuracy (`sparsify run`):
  1. right after one-shot pruning, per layer, every Linear weight: magnitude
     against Wanda (`--score wanda`, calibration: the first 128 training
     rows) with per-row groups (the paper's) and per-layer groups, at 50%,
     70%, 90% unstructured and 2:4;
  2. at 90% overall: uniform 90% per layer against the per-layer sparsities
     of `sparsify sensitivity --recipe-out --target 0.9` (loss measured on the
     training rows), right after pruning and after a 3-epoch fine-tune with
     the masks held (`sparsify finetune`, AdamW 1e-2, cosine, batch 32, seed 1).
Prints Markdown tables and every command it ran.

usage: /usr/bin/python3 scripts/measure_wanda.py [--sparsify build/sparsify]
       [--work DIR]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DIGITS = os.path.join(SRC, "examples", "digits")
COMMANDS = []


class LeNet300100(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 300)
        self.fc2 = torch.nn.Linear(300, 100)
        self.fc3 = torch.nn.Linear(100, 10)

    def forward(self, x):
        x = x / 16.0
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def sh(sparsify, *args):
    cmd = [sparsify, *map(str, args)]
    COMMANDS.append(" ".join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd)))
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p.stdout


def split(work):
    with open(os.path.join(DIGITS, "digits.csv")) as f:
        lines = f.read().splitlines()
    head, rows = lines[0], lines[1:]
    tr = [r for i, r in enumerate(rows) if i % 5 != 0]
    va = [r for i, r in enumerate(rows) if i % 5 == 0]
    for name, part in (("train.csv", tr), ("val.csv", va)):
        with open(os.path.join(work, name), "w") as f:
            f.write("\n".join([head] + part) + "\n")
    return len(tr), len(va)


def train_lenet(work):
    data = np.loadtxt(os.path.join(work, "train.csv"), delimiter=",", skiprows=1, dtype=np.float32)
    x, y = torch.from_numpy(data[:, :-1]), torch.from_numpy(data[:, -1].astype(np.int64))
    torch.manual_seed(0)
    m = LeNet300100()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        perm = torch.randperm(len(x), generator=g)
        for b in range(0, len(x), 32):
            idx = perm[b:b + 32]
            loss = torch.nn.functional.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    path = os.path.join(work, "lenet.pt")
    torch.jit.script(m).save(path)
    return path


def accuracy(sparsify, model, work):
    out = sh(sparsify, "run", model, "--data", os.path.join(work, "val.csv"), "--label-column", "label",
             "--batch-size", 128, "--dense", "--json")
    return json.loads(out)["accuracy"]


def prune(sparsify, model, out, *args):
    sh(sparsify, "prune", model, "-o", out, "--force", "-q", *args)
    return out


def finetune(sparsify, model, out, work):
    sh(sparsify, "finetune", model, "-o", out, "--data", os.path.join(work, "train.csv"),
       "--label-column", "label", "--epochs", 3, "--batch-size", 32, "--lr", "1e-2",
       "--lr-schedule", "cosine", "--seed", 1, "-q")
    return out


def measure(sparsify, name, model, work):
    cal = ["--calibration", os.path.join(work, "train.csv"), "--label-column", "label",
           "--calibration-samples", 128]
    W = lambda f: os.path.join(work, f"{name}-{f}")  # noqa: E731
    res = {"dense": accuracy(sparsify, model, work), "oneshot": [], "overall": {}}
    for s, pat in ((0.5, None), (0.7, None), (0.9, None), (None, "2:4")):
        opts = ["--sparsity", s] if s else ["--pattern", pat]
        label = f"{int(100 * s)}%" if s else pat
        row = {"setting": label}
        row["magnitude"] = accuracy(sparsify, prune(sparsify, model, W(f"mag-{label}.pt"), *opts), work)
        if s:
            row["wanda_row"] = accuracy(sparsify, prune(sparsify, model, W(f"wrow-{label}.pt"), *opts,
                                                         "--score", "wanda", *cal), work)
            row["wanda_layer"] = accuracy(sparsify, prune(sparsify, model, W(f"wlay-{label}.pt"), *opts,
                                                           "--score", "wanda", "--wanda-group", "layer", *cal), work)
        else:
            row["wanda_row"] = row["wanda_layer"] = accuracy(
                sparsify, prune(sparsify, model, W(f"w-{label}.pt"), *opts, "--score", "wanda", *cal), work)
        res["oneshot"].append(row)
    # 90% overall: uniform against the sensitivity recipe
    recipe = W("sens90.json")
    rep = json.loads(sh(sparsify, "sensitivity", model, "--data", os.path.join(work, "train.csv"),
                        "--label-column", "label", "--recipe-out", recipe, "--target", 0.9, "--force",
                        "--json"))
    res["allocation"] = {l["name"]: l["allocated"] for l in rep["layers"]}
    res["sens_seconds"] = rep["seconds"]
    for kind, args in (("uniform", ["--sparsity", 0.9]), ("sensitivity", ["--recipe", recipe])):
        p = prune(sparsify, model, W(f"{kind}90.pt"), *args)
        t = finetune(sparsify, p, W(f"{kind}90-ft.pt"), work)
        res["overall"][kind] = (accuracy(sparsify, p, work), accuracy(sparsify, t, work))
    return res


def pct(v):
    return f"{100 * v:.2f}%"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sparsify", default=os.path.join(SRC, "build", "sparsify"))
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    sparsify = os.path.abspath(a.sparsify)
    work = a.work or tempfile.mkdtemp(prefix="sparsify-wanda.")
    os.makedirs(work, exist_ok=True)
    ntr, nva = split(work)
    models = [("digits-mlp", os.path.join(DIGITS, "dense.pt")), ("lenet-300-100", train_lenet(work))]
    results = {name: measure(sparsify, name, path, work) for name, path in models}
    print(f"digits: {ntr} training rows, {nva} validation rows; accuracy on the validation rows\n")
    for name, r in results.items():
        print(f"### {name} (dense {pct(r['dense'])})\n")
        print("| one-shot, per layer | magnitude | Wanda, row groups | Wanda, layer groups |")
        print("|---|---|---|---|")
        for row in r["oneshot"]:
            if row["setting"] == "2:4":  # N:M keeps its groups of 4: one Wanda result
                print(f"| 2:4 | {pct(row['magnitude'])} | {pct(row['wanda_row'])} (groups of 4) | |")
            else:
                print(f"| {row['setting']} | {pct(row['magnitude'])} | {pct(row['wanda_row'])} | {pct(row['wanda_layer'])} |")
        print()
        print("| 90% overall | after pruning | after 3 epochs, masks held |")
        print("|---|---|---|")
        for kind in ("uniform", "sensitivity"):
            b, f = r["overall"][kind]
            print(f"| {kind} | {pct(b)} | {pct(f)} |")
        alloc = ", ".join(f"{k} {pct(v)}" for k, v in r["allocation"].items())
        print(f"\nsensitivity recipe: {alloc} (analysis: {r['sens_seconds']:.2f} s)\n")
    print("commands:")
    seen = set()
    for c in COMMANDS:
        short = c.replace(work + "/", "")
        if short not in seen:
            seen.add(short)
            print("  " + short)
    print(f"\noutputs in {work}")


if __name__ == "__main__":
    main()
