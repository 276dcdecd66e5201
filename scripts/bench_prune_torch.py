"""The PyTorch script `sparsify prune --sparsity 0.9` is measured against.

Layer scope, unstructured: torch.load; for every floating tensor of rank >= 2
whose name ends in 'weight' (not embeddings or norms): a kthvalue threshold
on |w| and a mask; torch.save. Usage: bench_prune_torch.py IN OUT [SPARSITY]
"""
import re
import sys

import torch

src, dst = sys.argv[1], sys.argv[2]
s = float(sys.argv[3]) if len(sys.argv) > 3 else 0.9
torch.set_num_threads(2)
sd = torch.load(src)
skip = re.compile(r"embed|norm", re.I)
with torch.no_grad():
    for name, w in sd.items():
        if not (torch.is_tensor(w) and w.is_floating_point() and w.dim() >= 2
                and name.endswith("weight") and not skip.search(name)):
            continue
        k = int(s * w.numel() + 0.5)
        if k == 0:
            continue
        thr = w.abs().flatten().kthvalue(k).values
        w.mul_((w.abs() > thr).to(w.dtype))
torch.save(sd, dst)
