#!/usr/bin/python3
"""The models of the run and sparse fine-tune benchmarks (docs/benchmarks.md,
"run"), made with PyTorch; `sparsify prune` prunes them afterwards.

  ffn OUT_DIR [--blocks 6] [--samples 256]
      OUT_DIR/ffn.pt: a TorchScript stack of transformer feed-forward blocks,
      x -> LayerNorm(x + fc2(relu(fc1(x)))), fc1 768 -> 3072, fc2 3072 -> 768,
      then a 768 -> 10 head: 28.4M parameters, 113 MB of fp32 Linear weights
      (more than the 32 MB last-level cache of the machine we measure on);
      OUT_DIR/ffn_data.pt: {"inputs": [samples, 768]} random inputs.
  mlp OUT_DIR [--width 2048] [--epochs 3]
      OUT_DIR/mlp.pt: a TorchScript MLP for the 8x8 digits,
      64 -> W -> W -> W -> 10 with ReLU, input divided by 16 (two W x W
      layers: 4.2M weights each at W = 2048), trained dense with Adam on the
      training split of examples/digits/digits.csv (data rows whose 0-based
      index is not a multiple of 5, the example's split), so that pruning and
      fine-tuning it is the real job.

Seeded: the same files every time (on the same PyTorch).
"""
import argparse
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


class Block(torch.nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.fc1 = torch.nn.Linear(d, h)
        self.fc2 = torch.nn.Linear(h, d)
        self.norm = torch.nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(x + self.fc2(torch.relu(self.fc1(x))))


class FFN(torch.nn.Module):
    def __init__(self, blocks, d=768, h=3072, classes=10):
        super().__init__()
        self.blocks = torch.nn.ModuleList([Block(d, h) for _ in range(blocks)])
        self.head = torch.nn.Linear(d, classes)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


class MLP(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, width)
        self.fc2 = torch.nn.Linear(width, width)
        self.fc3 = torch.nn.Linear(width, width)
        self.fc4 = torch.nn.Linear(width, 10)

    def forward(self, x):
        x = x / 16.0
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        x = torch.relu(self.fc3(x))
        return self.fc4(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["ffn", "mlp"])
    ap.add_argument("out")
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    if a.kind == "ffn":
        m = FFN(a.blocks).eval()
        torch.jit.script(m).save(os.path.join(a.out, "ffn.pt"))
        torch.save({"inputs": torch.randn(a.samples, 768)}, os.path.join(a.out, "ffn_data.pt"))
        extra = f" and {a.out}/ffn_data.pt ({a.samples} samples)"
    else:
        m = MLP(a.width)
        data = np.loadtxt(os.path.join(HERE, "..", "examples", "digits", "digits.csv"),
                          delimiter=",", skiprows=1, dtype=np.float32)
        train = np.arange(len(data)) % 5 != 0
        x, y = torch.from_numpy(data[train, :-1]), torch.from_numpy(data[train, -1]).long()
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(a.epochs):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), 64):
                b = perm[i:i + 64]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(m(x[b]), y[b]).backward()
                opt.step()
        m.eval()
        torch.jit.script(m).save(os.path.join(a.out, "mlp.pt"))
        extra = f", trained {a.epochs} epochs"
    n = sum(p.numel() for p in m.parameters())
    print(f"wrote {a.out}/{a.kind}.pt ({n / 1e6:.1f}M parameters){extra}")


if __name__ == "__main__":
    main()
