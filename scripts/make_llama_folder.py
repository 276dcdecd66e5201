#!/usr/bin/python3
"""Write a synthetic Llama-shaped Hugging Face folder for benchmarks.

usage: /usr/bin/python3 scripts/make_llama_folder.py OUTDIR
           [--size 0.5b|1.1b|3b] [--layers N] [--dtype bf16|fp16]
           [--max-shard-size BYTES] [--seed S]

The shapes are TinyLlama-1.1B's (hidden 2048, intermediate 5632, 32 query
heads and 4 key/value heads of 64, vocab 32000, untied lm_head); --size
picks the number of layers: 0.5b = 8 layers (0.48B parameters), 1.1b = 22
(1.10B, TinyLlama itself), 3b = 65 (2.99B). Every variant has the same
widths, so its largest tensor is the same (the 32000 x 2048 embedding and
lm_head, 131 MB in bf16) and only the depth grows: the scaling benchmark
sees time grow with the size and memory stay put.

Weights are seeded N(0, 0.02) (norm weights 1.0), rounded to the dtype, so
a bf16 tensor holds many equal magnitudes, as real checkpoints do. The
folder is laid out as transformers' save_pretrained lays it out:
model-0000k-of-0000n.safetensors shards cut in state-dict order at
--max-shard-size (default 800,000,000 bytes: 3 shards for 1.1b), each with
{"format": "pt"} metadata and tensors sorted by name, plus
model.safetensors.index.json and config.json. The safetensors format is
written directly (this machine has no `safetensors` package).

Python with torch is only the writer of this benchmark input; sparsify never
runs it.
"""
import argparse
import collections
import json
import os
import struct
import sys

import torch

SIZES = {"0.5b": 8, "1.1b": 22, "3b": 65}
HIDDEN, INTER, VOCAB, HEADS, KV_HEADS, HEAD_DIM = 2048, 5632, 32000, 32, 4, 64
DTYPES = {"bf16": (torch.bfloat16, "BF16", "bfloat16"), "fp16": (torch.float16, "F16", "float16")}


def shapes(layers):
    """(name, shape) in state-dict order, as LlamaForCausalLM names them."""
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    kv = KV_HEADS * HEAD_DIM
    for i in range(layers):
        p = "model.layers.%d." % i
        out += [
            (p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
            (p + "self_attn.k_proj.weight", (kv, HIDDEN)),
            (p + "self_attn.v_proj.weight", (kv, HIDDEN)),
            (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
            (p + "mlp.gate_proj.weight", (INTER, HIDDEN)),
            (p + "mlp.up_proj.weight", (INTER, HIDDEN)),
            (p + "mlp.down_proj.weight", (HIDDEN, INTER)),
            (p + "input_layernorm.weight", (HIDDEN,)),
            (p + "post_attention_layernorm.weight", (HIDDEN,)),
        ]
    out += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return out


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def make_tensor(name, shape, dtype, gen):
    if len(shape) == 1:
        return torch.ones(shape, dtype=dtype)
    # drawn in float32 (one tensor at a time), rounded to the dtype
    return (torch.randn(shape, generator=gen) * 0.02).to(dtype)


def write_shard(path, names, specs, dtype, st_name, seed):
    """One safetensors file: metadata first, tensors sorted by name with
    contiguous offsets, header padded with spaces to a multiple of 8."""
    header = collections.OrderedDict()
    header["__metadata__"] = {"format": "pt"}
    es = torch.tensor([], dtype=dtype).element_size()
    off = 0
    for n in sorted(names):
        nb = numel(specs[n]) * es
        header[n] = {"dtype": st_name, "shape": list(specs[n]), "data_offsets": [off, off + nb]}
        off += nb
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for n in sorted(names):
            # each tensor its own seed: the same tensor whatever the sharding
            gen = torch.Generator().manual_seed(seed * 1000003 + hash_name(n))
            t = make_tensor(n, specs[n], dtype, gen).contiguous()
            f.write(t.view(torch.int16).numpy().tobytes() if t.numel() else b"")
    return off


def hash_name(name):
    h = 0
    for c in name.encode():
        h = (h * 131 + c) % 1000000007
    return h


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--size", choices=sorted(SIZES), default="1.1b")
    ap.add_argument("--layers", type=int, help="number of layers (overrides --size)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--max-shard-size", type=int, default=800_000_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    layers = a.layers if a.layers else SIZES[a.size]
    dtype, st_name, cfg_dtype = DTYPES[a.dtype]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    specs = collections.OrderedDict(shapes(layers))
    es = torch.tensor([], dtype=dtype).element_size()
    # transformers' sharding: state-dict order, a new shard when the next
    # tensor would pass the limit
    shards, cur, cur_bytes = [], [], 0
    for n, shp in specs.items():
        nb = numel(shp) * es
        if cur and cur_bytes + nb > a.max_shard_size:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(n)
        cur_bytes += nb
    shards.append(cur)
    os.makedirs(a.out, exist_ok=True)
    weight_map, total = {}, 0
    for k, names in enumerate(shards):
        fname = "model-%05d-of-%05d.safetensors" % (k + 1, len(shards))
        total += write_shard(os.path.join(a.out, fname), names, specs, dtype, st_name, a.seed)
        for n in names:
            weight_map[n] = fname
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total},
                   "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": layers,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "vocab_size": VOCAB, "max_position_embeddings": 2048, "rms_norm_eps": 1e-05,
        "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": cfg_dtype,
        "bos_token_id": 1, "eos_token_id": 2,
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    params = sum(numel(s) for s in specs.values())
    print("%s: %d layers, %d parameters, %d shards, %d bytes of tensors"
          % (a.out, layers, params, len(shards), total))


if __name__ == "__main__":
    main(sys.argv[1:])
