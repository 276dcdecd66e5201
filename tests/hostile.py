"""Hostile checkpoints for the CLI tests (cli_badinput.py), each a few KB.

Torch files start from what real PyTorch (torch.save) wrote and are then
edited the way an attacker would; .spz and safetensors files follow their
specifications (docs/format-spz.md, formats/safetensors.c) with lying
fields. Run as a script to write them all into a folder:

    /usr/bin/python3 tests/hostile.py OUTDIR
"""
import json
import os
import struct
import sys
import zipfile
import zlib

import torch


def _long1(v):
    b = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(b)]) + b


def _rezip(src, dst, edit, compress=zipfile.ZIP_STORED):
    """Copy zip src to dst, passing each record through edit(name, bytes)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compress) as zout:
        for n in zin.namelist():
            zout.writestr(n, edit(n, zin.read(n)))


def expanded_view(path, shape, stride):
    """A 2-D stride view of a one-element float32 storage: torch.save of
    zeros(1).expand(2, 3), its size and stride tuples replaced."""
    tmp = path + ".src"
    torch.save({"w": torch.zeros(1).expand(2, 3)}, tmp)
    old = b"K\x00K\x02K\x03\x86q\x08K\x00K\x00\x86"

    def edit(name, data):
        if name.endswith("/data.pkl"):
            assert old in data
            new = (b"K\x00" + b"".join(_long1(v) for v in shape) + b"\x86q\x08" +
                   b"".join(_long1(v) for v in stride) + b"\x86")
            data = data.replace(old, new)
        return data

    _rezip(tmp, path, edit)
    os.unlink(tmp)


def deflated_oversized(path, extra=4096):
    """A deflated zip whose storage record inflates to more bytes than the
    tensor's persistent id says (stored records may carry slack; an
    inflated one would only make the reader allocate)."""
    tmp = path + ".src"
    torch.save({"w": torch.arange(4, dtype=torch.float32)}, tmp)
    _rezip(tmp, path, lambda n, d: d + b"\0" * extra if n.endswith("/data/0") else d,
           zipfile.ZIP_DEFLATED)
    os.unlink(tmp)


def _safetensors(path, header, data=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def empty_huge_dims(path):
    """safetensors: shape [0, 2^40, 2^40]: no elements, but its row-major
    strides overflow int64."""
    _safetensors(path, {"w": {"dtype": "F32", "shape": [0, 2 ** 40, 2 ** 40], "data_offsets": [0, 0]},
                        "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8)


def costly_header(path, values):
    """safetensors: a valid tensor plus an unknown field holding an array of
    `values` zeros (under the old 100 MB cap, a cJSON node each)."""
    body = (b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":[' +
            b"0," * (values - 1) + b"0]}}")
    body += b" " * ((8 - len(body) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(body)) + body + b"\0" * 4)


def _spz(path, entry_fields, shape, sections, name=b"w"):
    """An .spz of one tensor: entry_fields = (dtype, encoding, nkept,
    nvals); sections = [(kind, codec, plane, param, stored bytes, raw)]."""
    dtype, enc, nkept, nvals = entry_fields
    body = bytearray(64)
    secs = []
    for kind, codec, plane, param, stored, raw in sections:
        off = len(body)
        body += stored
        body += b"\0" * ((64 - len(body) % 64) % 64)
        secs.append(struct.pack("<BBBBIIIQQQ", kind, codec, plane, 0, param, zlib.crc32(stored), 0,
                                off, len(stored), raw))
    meta = b'{"producer":"hostile"}'
    toc = struct.pack("<I", len(meta)) + meta
    toc += b"\0" * ((8 - len(toc) % 8) % 8)
    entry = struct.pack("<IHBBBBHIIIQQ", 0, len(name), dtype, len(shape), enc, 0, len(secs), 0xFFFFFFFF, 0, 0,
                        nkept, nvals)
    entry += b"".join(struct.pack("<q", d) for d in shape) + b"".join(secs) + name
    entry += b"\0" * ((8 - len(entry) % 8) % 8)
    entry = struct.pack("<I", len(entry)) + entry[4:]
    toc += entry
    toc_off = len(body)
    body += toc
    hdr = bytearray(b"SPZ\x1a" + struct.pack("<IQQQIII", 1, len(body), toc_off, len(toc), zlib.crc32(toc), 1, 0))
    hdr += b"\0" * (60 - len(hdr))
    hdr += struct.pack("<I", zlib.crc32(bytes(hdr)))
    body[:64] = hdr
    with open(path, "wb") as f:
        f.write(body)


def spz_zero_dim(path):
    """.spz: a dense float32 tensor of shape [0, 2^40, 2^40] (no elements,
    no sections; its row-major strides overflow int64)."""
    _spz(path, (1, 1, 0, 0), (0, 2 ** 40, 2 ** 40), [])


def ct_zero_dim(folder):
    """compressed-tensors folder whose uncompressed tensor has shape
    [0, 2^40, 2^40]."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"quantization_config": {"sparsity_config": {"format": "sparse-bitmask"}}}, f)
    empty_huge_dims(os.path.join(folder, "model.safetensors"))


def spz_short_mask(path, rows=2 ** 15, cols=2 ** 14, nkept=1_500_000):
    """.spz with one float32 bitmask tensor of rows x cols (2 GiB dense)
    whose Rice-coded mask claims nkept ones but holds 64 bytes: the reader
    must notice before allocating the dense tensor. The values section is
    deflated zeros (nkept * 4 bytes), so every size passes the open-time
    bounds (docs/format-spz.md)."""
    numel = rows * cols
    vals = zlib.compressobj(9, zlib.DEFLATED, -15)
    vstream = vals.compress(b"\0" * (nkept * 4)) + vals.flush()
    _spz(path, (1, 2, nkept, nkept), (rows, cols),
         [(2, 2, 0, 0, b"\x01" * 64, (numel + 7) // 8), (1, 1, 255, 0, vstream, nkept * 4)])


def write_all(out):
    os.makedirs(out, exist_ok=True)
    expanded_view(os.path.join(out, "view31.pt"), (2 ** 31, 2 ** 31), (0, 0))
    expanded_view(os.path.join(out, "view30.pt"), (2 ** 15, 2 ** 15), (0, 0))
    deflated_oversized(os.path.join(out, "deflated_big.pt"))
    empty_huge_dims(os.path.join(out, "zero_dim.safetensors"))
    spz_short_mask(os.path.join(out, "short_mask.spz"))
    spz_zero_dim(os.path.join(out, "zero_dim.spz"))
    ct_zero_dim(os.path.join(out, "zero_dim_ct"))


if __name__ == "__main__":
    write_all(sys.argv[1])
