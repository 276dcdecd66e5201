#!/usr/bin/python3
"""Make examples/digits/dense.pt: the dense starting model of the example.

A small TorchScript MLP (64 -> 128 -> 64 -> 10, ReLU) trained on the train
split of digits.csv (rows whose 0-based data index is not a multiple of 5;
run.sh makes the same split with awk). The model divides its input by 16
itself, so it takes the raw 0..16 pixel values of the CSV.

Run with Debian's python3-torch:  /usr/bin/python3 examples/digits/make_model.py
The committed dense.pt keeps the example free of Python at run time.
"""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 128)
        self.fc2 = torch.nn.Linear(128, 64)
        self.fc3 = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = x / 16.0
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def load_split(path):
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
    idx = np.arange(len(data))
    val = idx % 5 == 0
    x, y = data[:, :-1], data[:, -1].astype(np.int64)
    return (torch.from_numpy(x[~val]), torch.from_numpy(y[~val]),
            torch.from_numpy(x[val]), torch.from_numpy(y[val]))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "dense.pt")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    xtr, ytr, xva, yva = load_split(os.path.join(HERE, "digits.csv"))
    model = MLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for epoch in range(30):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 32):
            b = perm[i:i + 32]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xtr[b]), ytr[b])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xva).argmax(1) == yva).float().mean().item()
    torch.jit.script(model).save(out)
    print(f"wrote {out}: val accuracy {100 * acc:.2f}% ({len(xva)} samples)")


if __name__ == "__main__":
    main()
