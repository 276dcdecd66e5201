#!/usr/bin/python3
"""The PyTorch script `sparsify prune` is measured against on Hugging Face
folders (scripts/bench_llm.sh).

usage: bench_llm_torch.py IN_DIR OUT_DIR 2:4|SPARSITY [THREADS]

Straightforward: for every shard of IN_DIR, load its tensors (the
safetensors format read directly: this machine has no `safetensors`
package), prune the default targets of `sparsify prune` (floating weights of
rank >= 2 whose name ends in "weight", not embeddings, norms or lm_head) by
magnitude, per tensor -- "2:4": the 2 largest |w| of every 4 consecutive
elements along a row kept (topk); a sparsity s: |w| <= the kthvalue of
round(s * numel) pruned -- and save the shard with the same header; the
index and config.json copied.
"""
import json
import os
import re
import shutil
import struct
import sys

import torch

DT = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
SKIP = re.compile(r"embed|norm|lm_head", re.I)


def load(path):
    with open(path, "rb") as f:
        buf = bytearray(f.read())
    (hlen,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        t = torch.frombuffer(buf, dtype=torch.uint8, offset=base + a, count=b - a) if b > a \
            else torch.empty(0, dtype=torch.uint8)
        out[name] = t.view(DT[e["dtype"]]).reshape(e["shape"])
    return header, hlen, buf[8:8 + hlen], out


def prune(w, mode):
    with torch.no_grad():
        if mode == "2:4":
            g = w.reshape(-1, 4)
            idx = g.abs().float().topk(2, dim=1).indices
            keep = torch.zeros_like(g, dtype=torch.bool).scatter_(1, idx, True)
            g.mul_(keep.to(w.dtype))
        else:
            k = int(float(mode) * w.numel() + 0.5)
            if k == 0:
                return
            a = w.abs().float()
            thr = a.flatten().kthvalue(k).values
            w.mul_((a > thr).to(w.dtype))


def save(path, hlen, hbytes, header, tensors):
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", hlen))
        f.write(hbytes)
        for name, e in sorted(((n, e) for n, e in header.items() if n != "__metadata__"),
                              key=lambda x: x[1]["data_offsets"][0]):
            t = tensors[name]
            if t.numel():
                f.write(t.contiguous().view(torch.uint8).numpy().tobytes())


def main(argv):
    src, dst, mode = argv[0], argv[1], argv[2]
    torch.set_num_threads(int(argv[3]) if len(argv) > 3 else 2)
    os.makedirs(dst, exist_ok=True)
    for fn in sorted(os.listdir(src)):
        p = os.path.join(src, fn)
        if not fn.endswith(".safetensors"):
            shutil.copyfile(p, os.path.join(dst, fn))
            continue
        header, hlen, hbytes, tensors = load(p)
        for name, w in tensors.items():
            if (w.is_floating_point() and w.dim() >= 2 and name.endswith("weight")
                    and not SKIP.search(name)):
                prune(w, mode)
        save(os.path.join(dst, fn), hlen, hbytes, header, tensors)


if __name__ == "__main__":
    main(sys.argv[1:])
