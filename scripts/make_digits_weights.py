#!/usr/bin/python3
"""Train a small real model on real data and save its weights (torch.save).

usage: /usr/bin/python3 scripts/make_digits_weights.py OUT.pt [--hidden H] [--epochs E]

No pretrained checkpoint can be had on the build machines (no network, and no
Debian package ships float PyTorch weights), so the export benchmark's "real
weights" are an MLP trained here on the UCI handwritten digits shipped in the
repository's shared data (/work/shared/data/digits.csv, 1797 8x8 images,
64 features, 10 classes): 64 -> H -> H -> 10 with ReLU, AdamW with weight
decay, full-batch-ish minibatches, seeded. The default H = 1024 gives about
1.2M parameters (4.6 MB fp32). Prints the held-out accuracy.

Python with Debian's python3-torch is a benchmark/test helper only.
"""
import argparse
import csv
import os

import torch


def load_digits(path):
    with open(path) as f:
        rows = list(csv.reader(f))[1:]
    x = torch.tensor([[float(v) for v in r[:64]] for r in rows]) / 16.0
    y = torch.tensor([int(r[64]) for r in rows])
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--data", default=os.environ.get("DIGITS_CSV", "/work/shared/data/digits.csv"))
    a = ap.parse_args()
    torch.manual_seed(0)
    x, y = load_digits(a.data)
    perm = torch.randperm(len(x))
    x, y = x[perm], y[perm]
    ntest = 297
    xtr, ytr, xte, yte = x[ntest:], y[ntest:], x[:ntest], y[:ntest]
    h = a.hidden
    model = torch.nn.Sequential(
        torch.nn.Linear(64, h), torch.nn.ReLU(),
        torch.nn.Linear(h, h), torch.nn.ReLU(),
        torch.nn.Linear(h, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    for epoch in range(a.epochs):
        model.train()
        p = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            idx = p[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    sd = {k.replace("0.", "fc1.", 1) if k.startswith("0.") else
          k.replace("2.", "fc2.", 1) if k.startswith("2.") else
          k.replace("4.", "fc3.", 1): v for k, v in model.state_dict().items()}
    torch.save(sd, a.out)
    n = sum(v.numel() for v in sd.values())
    print("digits MLP 64-%d-%d-10: %d parameters, held-out accuracy %.4f -> %s" % (h, h, n, acc, a.out))


if __name__ == "__main__":
    main()
