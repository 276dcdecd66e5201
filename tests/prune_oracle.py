#!/usr/bin/python3
"""PyTorch reference masks for tests/check_prune.c (test oracle only).

usage: prune_oracle.py OUTDIR

Writes, for fixed seeds, weights and the keep-masks PyTorch computes:
torch.nn.utils.prune.l1_unstructured / global_unstructured (L1Unstructured),
N:M as "top-N |w| of every M consecutive input weights" (conv: along input
channels for each kernel position), and RxC blocks scored by avg_pool2d
(mean |w| or sqrt(mean w^2) over each block's own elements, ragged edges
included via ceil_mode). Layout: OUTDIR/cases.txt lists
  case NAME PATTERN SCOPE SPARSITY NTENSORS
  tensor NDIM D0 D1 ...
and OUTDIR/NAME.T.w (float32 LE) / NAME.T.m (uint8, 1 = keep).
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune as prune

out = sys.argv[1]
lines = []


def emit(name, pattern, scope, sparsity, tensors):
    lines.append(f"case {name} {pattern} {scope} {sparsity!r} {len(tensors)}")
    for t, (w, m) in enumerate(tensors):
        lines.append("tensor %d %s" % (w.dim(), " ".join(str(d) for d in w.shape)))
        w.detach().contiguous().numpy().astype("<f4").tofile(os.path.join(out, f"{name}.{t}.w"))
        m.detach().contiguous().to(torch.uint8).numpy().tofile(os.path.join(out, f"{name}.{t}.m"))


def check_no_half(amount, n):
    # torch rounds amount*n with Python's round (half to even); sparsify rounds
    # half away from zero. Keep the cases away from .5 so both agree.
    assert abs(amount * n - math.floor(amount * n) - 0.5) > 1e-6


def l1(name, module, amount):
    n = module.weight.numel()
    check_no_half(amount, n)
    prune.l1_unstructured(module, "weight", amount=amount)
    emit(name, "unstructured", "layer", amount, [(module.weight_orig, module.weight_mask)])


torch.manual_seed(1234)
l1("l1_linear", nn.Linear(100, 64), 0.7)
l1("l1_conv", nn.Conv2d(8, 16, 3), 0.9)
l1("l1_big", nn.Linear(1024, 256), 0.95)
l1("l1_low", nn.Linear(33, 21), 0.1)

# global_unstructured across three layers
mods = [nn.Linear(48, 32), nn.Linear(20, 48), nn.Conv2d(4, 8, 3)]
total = sum(m.weight.numel() for m in mods)
check_no_half(0.8, total)
prune.global_unstructured([(m, "weight") for m in mods], pruning_method=prune.L1Unstructured, amount=0.8)
emit("global_l1", "unstructured", "global", 0.8, [(m.weight_orig, m.weight_mask) for m in mods])


def nm_mask(w, n, m):
    """Keep the n largest |w| in every m consecutive weights along the input
    dimension (dim 1); conv weights are grouped along input channels."""
    if w.dim() == 4:
        o, i, kh, kw = w.shape
        wt = w.permute(0, 2, 3, 1)  # [O, kh, kw, I]
    else:
        wt = w
    g = wt.abs().reshape(-1, m)
    idx = torch.topk(g, n, dim=1).indices
    keep = torch.zeros_like(g, dtype=torch.bool).scatter_(1, idx, True)
    keep = keep.reshape(wt.shape)
    if w.dim() == 4:
        keep = keep.permute(0, 3, 1, 2)
    return keep


for name, shape, n, m in [("nm24_linear", (32, 64), 2, 4), ("nm24_conv", (16, 24, 3, 3), 2, 4),
                          ("nm14_linear", (8, 32), 1, 4), ("nm48_linear", (12, 40), 4, 8)]:
    w = torch.randn(*shape)
    emit(name, f"{n}:{m}", "layer", 0.0, [(w, nm_mask(w, n, m))])


def block_mask(w, r, c, s, l2):
    x = w.double()
    x = x * x if l2 else x.abs()
    sc = F.avg_pool2d(x[None, None], (r, c), stride=(r, c), ceil_mode=True)[0, 0]
    if l2:
        sc = sc.sqrt()
    # ragged edge blocks are averaged over their own elements
    rows, cols = w.shape
    br, bc = sc.shape[0] - 1, sc.shape[1] - 1
    edge = x[br * r:, bc * c:]
    want = edge.mean().sqrt() if l2 else edge.mean()
    assert torch.allclose(sc[br, bc], want)
    flat = sc.flatten()
    k = math.floor(s * flat.numel() + 0.5)
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.topk(flat, k, largest=False).indices] = False
    keep = keep.reshape(sc.shape)
    return keep.repeat_interleave(r, 0).repeat_interleave(c, 1)[:rows, :cols]


for name, shape, r, c, s, l2 in [("block4x4_l1", (33, 70), 4, 4, 0.6, False),
                                 ("block8x8_l2", (33, 70), 8, 8, 0.5, True),
                                 ("block1x4_l1", (40, 66), 1, 4, 0.9, False)]:
    w = torch.randn(*shape)
    emit(name, f"{r}x{c}", "layer_l2" if l2 else "layer", s, [(w, block_mask(w, r, c, s, l2))])

with open(os.path.join(out, "cases.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
