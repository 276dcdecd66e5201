#!/usr/bin/python3
"""CLI test: bad input to `sparsify inspect` gets one clear line and exit 2.

Every case must exit with status 2 (never a signal, never 0 or 1), print
nothing on stdout and exactly one line on stderr that starts with
"sparsify: error: " and names the file (or folder) given. Cases: every
fixture kind of tests/make_fixtures.py cut at several points; a flipped byte
inside a stored zip record (bad CRC); a corrupted pickle opcode (with the
CRC fixed up, so the pickle reader itself must notice); a pickle that asks
for os.system; a legacy file with a bad opcode; safetensors headers
claiming huge lengths or offsets past the end; an index.json naming a
missing shard; a truncated shard in a folder; a nonexistent path; an empty
file; random bytes; an empty folder. Hostile files (tests/hostile.py) through
every command that reads them: stride-0 views whose size overflows or
explodes, a zero dimension beside huge ones, a deflated record larger than
its storage, an .spz whose mask stream ends early, safetensors headers that
cost more to parse than they are worth; they must be refused quickly and in
bounded memory (an address-space limit and the peak RSS are checked).

env: SPARSIFY (binary), SPARSIFY_SRC (source tree).
"""
import json
import os
import pickletools
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402

SPARSIFY = os.environ.get("SPARSIFY", "sparsify")
SRC = os.environ.get("SPARSIFY_SRC", os.path.join(os.path.dirname(__file__), ".."))

passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def expect_bad(path, what, needle=None, json_too=True):
    """inspect (table, and --json unless told otherwise) must refuse path
    cleanly."""
    for extra in ([], ["--json"]) if json_too else ([],):
        p = subprocess.run([SPARSIFY, "inspect"] + extra + [path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        err = p.stderr.decode(errors="replace")
        lines = err.splitlines()
        tag = "%s%s" % (what, " --json" if extra else "")
        if p.returncode < 0:
            check(False, "%s: killed by signal %d" % (tag, -p.returncode))
            continue
        ok = (p.returncode == 2 and p.stdout == b"" and len(lines) == 1 and err.endswith("\n")
              and lines[0].startswith("sparsify: error: ") and path in lines[0]
              and (needle is None or needle in lines[0]))
        check(ok, "%s: exit %d, stdout %d bytes, stderr %r" % (tag, p.returncode, len(p.stdout), err))


def asan_build():
    """AddressSanitizer reserves terabytes of shadow address space: an
    address-space limit cannot apply to such a binary (peak RSS still does)."""
    with open(SPARSIFY, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"AddressSanitizer" in data


ASAN = asan_build()


def run_measured(args, timeout=30, as_limit=None):
    """Run args; (exit code or -signal, stdout, stderr, peak RSS in kB,
    seconds). as_limit caps the address space (bytes), so a reader that
    allocates what a hostile header claims fails instead of succeeding."""
    def limit():
        if as_limit and not ASAN:
            resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))
    # GNU time measures the peak RSS of the command alone (a child forked
    # from this Python process would count the interpreter's pages too)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        t0 = time.monotonic()
        p = subprocess.Popen(["/usr/bin/time", "-q", "-o", rss.name, "-f", "%M"] + args, stdout=out,
                             stderr=err, preexec_fn=limit)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        p.wait()
        timer.cancel()
        secs = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        text = err.read().decode(errors="replace")
        lines = rss.read().split()
        # time reports a command killed by a signal on stderr: pass it on
        rc = p.returncode
        for ln in text.splitlines():
            if ln.startswith("Command terminated by signal "):
                rc = -int(ln.split()[-1])
        text = "".join(ln + "\n" for ln in text.splitlines()
                       if not ln.startswith(("Command terminated by signal", "Command exited with")))
        return rc, out.read(), text, int(lines[-1]) if lines else 0, secs


def expect_refused(args, path, what, needle=None, as_limit=None, max_rss_kb=None, max_secs=20):
    """A command on a hostile file: exit 2 within max_secs, one error line
    naming the file (and needle), no signal, no output left behind."""
    rc, out, err, rss, secs = run_measured([SPARSIFY] + args, timeout=max_secs + 10, as_limit=as_limit)
    lines = err.splitlines()
    ok = (rc == 2 and len(lines) == 1 and lines[0].startswith("sparsify: error: ") and path in lines[0]
          and (needle is None or needle in lines[0]) and secs < max_secs
          and (max_rss_kb is None or rss < max_rss_kb))
    check(ok, "%s: exit %d in %.1fs, %d kB peak, stderr %r" % (what, rc, secs, rss, err[-300:]))


def hostile_inputs(tmp):
    """Findings of issue 9 (2-4): hostile views, a zero dimension beside
    huge ones, allocations ahead of validation, parse cost of headers."""
    d = os.path.join(tmp, "hostile")
    hostile.write_all(d)
    out = os.path.join(tmp, "hostile_out")
    os.mkdir(out)
    gib = 1 << 30
    # a stride-0 (2^31, 2^31) view of one float: numel x 4 wraps to 0
    p = os.path.join(d, "view31.pt")
    for args, tag in ((["inspect", p], "inspect"), (["inspect", "--json", p], "inspect --json"),
                      (["export", p, "-o", os.path.join(out, "v.spz")], "export spz"),
                      (["export", p, "-o", os.path.join(out, "v_ct")], "export compressed-tensors"),
                      (["prune", p, "-o", os.path.join(out, "v.pt"), "--include", "w", "--sparsity", "0.5"],
                       "prune"),
                      (["densify", p, "-o", os.path.join(out, "v.pt")], "densify")):
        expect_refused(args, p, "stride-0 (2^31, 2^31) view: " + tag, "'w'", as_limit=2 * gib,
                       max_rss_kb=300_000)
    # a stride-0 view of 2^30 elements over 4 bytes: 4 GiB to gather
    p = os.path.join(d, "view30.pt")
    expect_refused(["export", p, "-o", os.path.join(out, "v30.spz")], p, "stride-0 2^30 view: export",
                   "'w'", as_limit=2 * gib, max_rss_kb=200_000)
    # a deflated storage record larger than the tensor's storage
    p = os.path.join(d, "deflated_big.pt")
    expect_refused(["inspect", p], p, "deflated record larger than its storage", "larger than")
    # [0, 2^40, 2^40]: no elements, strides overflow int64 (three readers)
    for name in ("zero_dim.safetensors", "zero_dim.spz", "zero_dim_ct"):
        p = os.path.join(d, name)
        expect_refused(["inspect", p], p, "zero dimension beside huge ones: " + name)
    # .spz: a 2 GiB tensor whose Rice mask stream ends early (6 KB file)
    p = os.path.join(d, "short_mask.spz")
    for args, tag in ((["densify", p, "-o", os.path.join(out, "m.pt")], "densify"),
                      (["export", p, "-o", os.path.join(out, "m.spz")], "export")):
        expect_refused(args, p, "spz mask stream ends early: " + tag, "mask stream ends early",
                       as_limit=gib, max_rss_kb=200_000)
    # safetensors headers: a cheap-to-write, costly-to-parse JSON array
    # (6M values, 12 MB: under the 16 MiB cap), and a header over the cap
    p = os.path.join(d, "costly.safetensors")
    hostile.costly_header(p, 6_000_000)
    expect_refused(["inspect", p], p, "12 MB header of 6M values", "values", max_rss_kb=150_000, max_secs=5)
    p = os.path.join(d, "huge_header.safetensors")
    hostile.costly_header(p, 9_000_000)
    expect_refused(["inspect", p], p, "18 MB header", "exceeds the limit", max_rss_kb=150_000, max_secs=5)
    check(not os.listdir(out), "hostile inputs left outputs: %r" % os.listdir(out))


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def cut_points(n):
    pts = {1, 7, 9, 64, n // 4, n // 2, 3 * n // 4, n - 22, n - 1}
    return sorted(p for p in pts if 0 < p < n)


def zip_entry(path, suffix):
    """(ZipInfo, offset of its data) for the first entry ending in suffix."""
    data = read(path)
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if info.filename.endswith(suffix):
                h = info.header_offset
                nlen, xlen = struct.unpack("<HH", data[h + 26:h + 30])
                return info, h + 30 + nlen + xlen
    raise KeyError(suffix)


def set_crc(data, info, crc):
    """Patch an entry's CRC-32 in its local header and central directory."""
    data = bytearray(data)
    struct.pack_into("<I", data, info.header_offset + 14, crc)
    name = info.filename.encode()
    pos = 0
    while True:
        pos = data.find(b"PK\x01\x02", pos)
        if pos < 0:
            break
        nlen = struct.unpack("<H", data[pos + 28:pos + 30])[0]
        if bytes(data[pos + 46:pos + 46 + nlen]) == name:
            struct.pack_into("<I", data, pos + 16, crc)
        pos += 4
    return bytes(data)


def main():
    with tempfile.TemporaryDirectory(prefix="cli_badinput_") as tmp:
        fxdir = os.path.join(tmp, "fx")
        subprocess.run(["/usr/bin/python3", os.path.join(SRC, "tests", "make_fixtures.py"), fxdir],
                       check=True)
        with open(os.path.join(fxdir, "manifest.json")) as f:
            fixtures = json.load(f)["fixtures"]
        bad = os.path.join(tmp, "bad")
        os.mkdir(bad)

        # every file fixture, truncated at several points
        for fx in fixtures:
            src = os.path.join(fxdir, fx["file"])
            if os.path.isdir(src):
                continue
            data = read(src)
            for cut in cut_points(len(data)):
                p = os.path.join(bad, "cut-%d-%s" % (cut, fx["file"]))
                write(p, data[:cut])
                expect_bad(p, "%s cut at %d of %d" % (fx["file"], cut, len(data)), json_too=False)
                os.unlink(p)

        # a flipped byte inside a stored zip record: bad CRC
        mlp = os.path.join(fxdir, "mlp.pt")
        info, off = zip_entry(mlp, "/data/0")
        check(info.compress_type == zipfile.ZIP_STORED, "torch stores records uncompressed")
        data = bytearray(read(mlp))
        data[off + info.file_size // 2] ^= 0x40
        p = os.path.join(bad, "crc.pt")
        write(p, bytes(data))
        expect_bad(p, "flipped byte in a stored record")
        # the same in a TorchScript archive
        ts = os.path.join(fxdir, "scripted.pt")
        info, off = zip_entry(ts, "/data/0")
        data = bytearray(read(ts))
        data[off + 3] ^= 0x01
        p = os.path.join(bad, "crc_ts.pt")
        write(p, bytes(data))
        expect_bad(p, "flipped byte in a TorchScript record")

        # a corrupted pickle opcode, CRC fixed up so only the pickle is wrong
        info, off = zip_entry(mlp, "/data.pkl")
        data = bytearray(read(mlp))
        pkl = bytearray(data[off:off + info.file_size])
        pos = next(pos for op, _, pos in pickletools.genops(bytes(pkl)) if op.name == "GLOBAL")
        pkl[pos] = 0xff  # not an opcode
        data[off:off + info.file_size] = pkl
        p = os.path.join(bad, "opcode.pt")
        write(p, set_crc(bytes(data), info, zlib.crc32(bytes(pkl))))
        expect_bad(p, "corrupted pickle opcode")
        # a pickle cut short inside its zip record (CRC fixed up)
        data = bytearray(read(mlp))
        pkl = bytearray(data[off:off + info.file_size])
        pkl[-1:] = b"N"  # STOP replaced by NONE: runs off the end
        data[off:off + info.file_size] = pkl
        p = os.path.join(bad, "nostop.pt")
        write(p, set_crc(bytes(data), info, zlib.crc32(bytes(pkl))))
        expect_bad(p, "pickle without STOP")

        # a hostile pickle: data.pkl asks for os.system
        marker = os.path.join(tmp, "pwned")
        hostile = b"cos\nsystem\n(S'touch " + marker.encode() + b"'\ntR."
        p = os.path.join(bad, "hostile.pt")
        with zipfile.ZipFile(mlp) as zin, zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as zout:
            for item in zin.infolist():
                body = zin.read(item.filename)
                if item.filename.endswith("/data.pkl"):
                    body = hostile
                zout.writestr(item.filename, body)
        expect_bad(p, "pickle calling os.system")
        check(not os.path.exists(marker), "hostile pickle ran code")

        # legacy file with a bad opcode right after the protocol header
        leg = bytearray(read(os.path.join(fxdir, "legacy.pt")))
        leg[2] = 0xff
        p = os.path.join(bad, "legacy_opcode.pt")
        write(p, bytes(leg))
        expect_bad(p, "legacy bad opcode")

        # safetensors: huge header lengths, offsets past the end
        st = read(os.path.join(fxdir, "model.safetensors"))
        (n,) = struct.unpack("<Q", st[:8])
        for claim in (len(st), 10 ** 11, 2 ** 40, 2 ** 63 + 5, 2 ** 64 - 1):
            p = os.path.join(bad, "huge-%d.safetensors" % claim)
            write(p, struct.pack("<Q", claim) + st[8:])
            expect_bad(p, "safetensors header length %d" % claim)
        hdr = json.loads(st[8:8 + n])
        name = next(k for k in hdr if k != "__metadata__")
        b, e = hdr[name]["data_offsets"]
        data_len = len(st) - 8 - n
        for offs in ([data_len, data_len + (e - b)], [b, data_len + 4], [e, b]):
            h2 = dict(hdr)
            h2[name] = dict(hdr[name], data_offsets=offs)
            hb = json.dumps(h2).encode()
            hb += b" " * ((8 - len(hb) % 8) % 8)
            p = os.path.join(bad, "offsets.safetensors")
            write(p, struct.pack("<Q", len(hb)) + hb + st[8 + n:])
            expect_bad(p, "safetensors offsets %r (data region %d)" % (offs, data_len), name)
        for junk in (b"{not json", b"[1, 2, 3]", b'{"w": {"dtype": "F32"}}'):
            hb = junk + b" " * ((8 - len(junk) % 8) % 8)
            p = os.path.join(bad, "junk.safetensors")
            write(p, struct.pack("<Q", len(hb)) + hb)
            expect_bad(p, "safetensors header %r" % junk)

        # folders: index naming a missing shard; a truncated shard; no shards
        hf = os.path.join(bad, "hf_missing")
        shutil.copytree(os.path.join(fxdir, "hf_model"), hf)
        os.unlink(os.path.join(hf, "model-00002-of-00002.safetensors"))
        expect_bad(hf, "index names a missing shard", "model-00002-of-00002.safetensors")
        expect_bad(hf, "index names a missing shard", "model.safetensors.index.json")
        hf = os.path.join(bad, "hf_cut")
        shutil.copytree(os.path.join(fxdir, "hf_model"), hf)
        shard = os.path.join(hf, "model-00001-of-00002.safetensors")
        write(shard, read(shard)[:1000])
        expect_bad(hf, "truncated shard in a folder", "model-00001-of-00002.safetensors")
        empty_dir = os.path.join(bad, "empty_dir")
        os.mkdir(empty_dir)
        expect_bad(empty_dir, "folder without shards")

        # nonexistent path, empty file, random bytes
        expect_bad(os.path.join(bad, "does-not-exist.pt"), "missing file", "No such file")
        p = os.path.join(bad, "empty.pt")
        write(p, b"")
        expect_bad(p, "empty file")
        p = os.path.join(bad, "random.pt")
        write(p, bytes((i * 131 + 7) % 251 for i in range(4096)))
        expect_bad(p, "random bytes")
        for head in (b"PK\x03\x04", b"\x80\x02", b"PK\x05\x06" + b"\0" * 18):
            p = os.path.join(bad, "stub.pt")
            write(p, head)
            expect_bad(p, "stub %r" % head)

        hostile_inputs(tmp)

        # nothing was written next to the fixtures
        left = [f for f in os.listdir(bad) if "sparsify-tmp" in f]
        check(not left, "temp files left: %r" % left)

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
