"""CLI tests of the output policy and of interrupted runs (issue 9,
findings 1 and 5), on every command that writes: prune, export, densify.

Outputs: an existing file or non-empty folder at -o is refused (exit 2, one
line, untouched) unless --force; --force replaces atomically, replaces a
symlink as a link (its target untouched) and removes an old folder without
following the links inside it; -o equal to the input (or a folder holding
it, or inside it) is refused, export and densify always, prune unless
--in-place; no output ever keeps sparsify's temporary marker.

Interrupted runs: SIGINT, SIGTERM and SIGHUP remove the temporary folder
before the signal ends the process; SIGKILL leaves it, and the next run
writing there removes it (only with sparsify's marker, only when its PID is
dead); an input truncated while it is read gives one line and exit 2 (not
SIGBUS), leaving nothing behind.

env: SPARSIFY (binary), SPARSIFY_SRC (source tree).
"""
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import SPARSIFY, check, run, summary  # noqa: E402

MARKER = ".sparsify-tmp"


def one_error_line(p, *needles):
    lines = p.stderr.splitlines()
    return (p.returncode == 2 and len(lines) == 1 and lines[0].startswith("sparsify: error: ")
            and all(n in lines[0] for n in needles))


def tree(path):
    """{relative path: bytes or 'dir' or 'link->target'} of a folder."""
    out = {}
    for root, dirs, files in os.walk(path, followlinks=False):
        for d in dirs:
            p = os.path.join(root, d)
            out[os.path.relpath(p, path)] = "link->" + os.readlink(p) if os.path.islink(p) else "dir"
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, path)] = "link->" + os.readlink(p) if os.path.islink(p) else open(p, "rb").read()
    return out


def temporaries(folder):
    return [f for f in os.listdir(folder) if "sparsify-tmp" in f]


def has_marker(path):
    return any(MARKER in files for _, _, files in os.walk(path))


def write_safetensors(path, tensors):
    import struct
    hdr, off, blobs = {}, 0, []
    for k, t in tensors.items():
        raw = t.contiguous().numpy().tobytes()
        hdr[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def outputs(tmp):
    P = lambda *a: os.path.join(tmp, *a)  # noqa: E731
    torch.manual_seed(0)
    sd = collections.OrderedDict([("fc1.weight", torch.randn(32, 64)), ("fc1.bias", torch.randn(32)),
                                  ("fc2.weight", torch.randn(8, 32))])
    torch.save(sd, P("m.pt"))
    m_bytes = open(P("m.pt"), "rb").read()

    # a user's folder with files, a subfolder and a link out of it
    def users_folder(path):
        os.makedirs(os.path.join(path, "sub"))
        open(os.path.join(path, "notes.txt"), "w").write("mine")
        open(os.path.join(path, "sub", "data.bin"), "wb").write(b"\x01" * 100)
        os.makedirs(P("outside"), exist_ok=True)
        open(P("outside", "precious.txt"), "w").write("keep me")
        os.symlink(P("outside"), os.path.join(path, "link_out"))
        os.symlink(P("outside", "precious.txt"), os.path.join(path, "file_link"))
        return tree(path)

    # --- finding 1: a non-empty folder at -o is refused, untouched ---------
    before = users_folder(P("dir1"))
    outside = tree(P("outside"))
    for args, what in ((["export", P("m.pt"), "-o", P("dir1")], "export compressed-tensors"),
                       (["export", P("m.pt"), "-o", P("dir1"), "--format", "spz"], "export spz"),
                       (["prune", P("m.pt"), "-o", P("dir1"), "--sparsity", "0.5", "-q"], "prune"),
                       (["densify", P("m.pt"), "-o", P("dir1")], "densify")):
        p = run(*args)
        check(one_error_line(p, "dir1", "--force") and tree(P("dir1")) == before,
              f"{what} -o non-empty folder: exit 2, one line, folder untouched (rc {p.returncode}, {p.stderr!r})")
    # an HF folder pruned onto a non-empty folder
    os.makedirs(P("hf"))
    write_safetensors(P("hf", "model.safetensors"), {"l.weight": torch.randn(16, 16), "l.bias": torch.randn(16)})
    open(P("hf", "config.json"), "w").write("{}")
    p = run("prune", P("hf"), "-o", P("dir1"), "--sparsity", "0.5", "-q")
    check(one_error_line(p, "dir1") and tree(P("dir1")) == before, "prune HF folder -o non-empty folder refused")
    # an existing file at -o
    open(P("exists.spz"), "w").write("not yours")
    for args in (["export", P("m.pt"), "-o", P("exists.spz")], ["densify", P("m.pt"), "-o", P("exists.spz")],
                 ["prune", P("m.pt"), "-o", P("exists.spz"), "--sparsity", "0.5"]):
        p = run(*args)
        check(one_error_line(p, "exists.spz", "--force") and open(P("exists.spz")).read() == "not yours",
              f"{args[0]} -o existing file refused, file untouched")
    # an empty folder may be replaced without --force
    os.makedirs(P("empty_out"))
    p = run("export", P("m.pt"), "-o", P("empty_out"), "-q")
    check(p.returncode == 0 and os.path.isfile(P("empty_out", "model.safetensors")), "empty folder at -o: written")

    # --- --force: atomic replacement, links never followed ------------------
    p = run("export", P("m.pt"), "-o", P("dir1"), "--force", "-q")
    check(p.returncode == 0 and os.path.isfile(P("dir1", "model.safetensors"))
          and not os.path.exists(P("dir1", "notes.txt")), "--force replaces the folder")
    check(tree(P("outside")) == outside, "--force: the old folder's links were not followed")
    check(not has_marker(P("dir1")) and not temporaries(tmp), "no marker in the output, no temporaries left")
    # a file replaced by a folder and a folder by a file
    p = run("export", P("m.pt"), "-o", P("exists.spz"), "--format", "compressed-tensors", "--force", "-q")
    check(p.returncode == 0 and os.path.isdir(P("exists.spz")), "--force: a file replaced by a folder")
    p = run("prune", P("m.pt"), "-o", P("dir1"), "--sparsity", "0.5", "--force", "-q")
    check(p.returncode == 0 and os.path.isfile(P("dir1")) and torch.load(P("dir1")).keys() == sd.keys(),
          "--force: a folder replaced by a file")
    # symlinks given as -o: refused without --force, replaced as links with it
    users_folder(P("target_dir"))
    target_before = tree(P("target_dir"))
    outside = tree(P("outside"))
    os.symlink(P("target_dir"), P("link_dir"))
    p = run("export", P("m.pt"), "-o", P("link_dir"))
    check(one_error_line(p, "link_dir", "--force") and tree(P("target_dir")) == target_before,
          "symlink to a folder at -o refused")
    p = run("export", P("m.pt"), "-o", P("link_dir"), "--force", "-q")
    check(p.returncode == 0 and not os.path.islink(P("link_dir")) and os.path.isdir(P("link_dir"))
          and tree(P("target_dir")) == target_before and tree(P("outside")) == outside,
          "--force on a symlinked folder: the link replaced, its target untouched")
    open(P("target.pt"), "wb").write(b"target bytes")
    os.symlink(P("target.pt"), P("link.pt"))
    p = run("prune", P("m.pt"), "-o", P("link.pt"), "--sparsity", "0.5", "--force", "-q")
    check(p.returncode == 0 and not os.path.islink(P("link.pt")) and open(P("target.pt"), "rb").read() == b"target bytes",
          "--force on a symlinked file: the link replaced, its target untouched")

    # --- output equal to the input -------------------------------------------
    for cmd in ("export", "densify"):
        for extra in ([], ["--force"]):
            p = run(cmd, P("m.pt"), "-o", P("m.pt"), *extra)
            check(one_error_line(p, "m.pt", "input") and open(P("m.pt"), "rb").read() == m_bytes,
                  f"{cmd} -o IN {extra}: refused always, input untouched")
    os.symlink(P("m.pt"), P("m_link.pt"))
    p = run("export", P("m.pt"), "-o", P("m_link.pt"), "--force")
    check(one_error_line(p, "input") and open(P("m.pt"), "rb").read() == m_bytes, "export -o a link to IN refused")
    p = run("prune", P("m.pt"), "-o", P("m.pt"), "--sparsity", "0.5", "--force")
    check(one_error_line(p, "--in-place") and open(P("m.pt"), "rb").read() == m_bytes,
          "prune -o IN without --in-place refused even with --force")
    # folders holding the input, or inside the input folder
    os.makedirs(P("holder"))
    shutil.copy(P("m.pt"), P("holder", "m.pt"))
    for args in (["export", P("holder", "m.pt"), "-o", P("holder"), "--force"],
                 ["prune", P("holder", "m.pt"), "-o", P("holder"), "--force", "--in-place", "--sparsity", "0.5"],
                 ["prune", P("hf"), "-o", P("hf", "pruned"), "--sparsity", "0.5"],
                 ["export", P("hf"), "-o", P("hf", "ct")]):
        p = run(*args)
        check(one_error_line(p) and os.path.isfile(P("holder", "m.pt")) and not os.path.exists(P("hf", "pruned"))
              and not os.path.exists(P("hf", "ct")), f"{args[0]} with OUT containing or inside IN refused: {p.stderr!r}")
    # prune --in-place on a folder: replaced, no marker left in it
    p = run("prune", P("hf"), "--in-place", "--sparsity", "0.5", "-q")
    check(p.returncode == 0 and os.path.isfile(P("hf", "config.json")) and not has_marker(P("hf"))
          and not temporaries(tmp), f"prune --in-place on a folder ({p.stderr!r}, left {temporaries(tmp)})")

    # --- the report file follows the policy too -----------------------------
    open(P("report.json"), "w").write("old")
    p = run("prune", P("m.pt"), "-o", P("r.pt"), "--sparsity", "0.5", "--report", P("report.json"), "-q")
    check(one_error_line(p, "report.json") and open(P("report.json")).read() == "old" and not os.path.exists(P("r.pt")),
          "--report onto an existing file refused")
    p = run("prune", P("m.pt"), "-o", P("r.pt"), "--sparsity", "0.5", "--report", P("report.json"), "-q", "--force")
    check(p.returncode == 0 and json.load(open(P("report.json")))["input"] == P("m.pt"), "--report --force replaces it")


def wait_for(cond, timeout=20.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.001)
    return False


def interrupted(tmp):
    P = lambda *a: os.path.join(tmp, *a)  # noqa: E731
    torch.manual_seed(1)
    big = collections.OrderedDict((f"l{i}.weight", torch.randn(512, 512)) for i in range(64))  # 64 MB
    torch.save(big, P("big.pt"))
    big_bytes = os.path.getsize(P("big.pt"))

    def default_signals():
        # a test run under nohup must not pass its ignored SIGHUP on: sparsify
        # keeps a signal its caller ignores ignored, by design
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)

    def start(out, *extra):
        return subprocess.Popen([SPARSIFY, "export", P("big.pt"), "-o", out, "-q", *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=default_signals)

    def tmp_of(out, pid):
        return os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.sparsify-tmp-{pid}")

    def caught(out, ready):
        """An export to `out` stopped (SIGSTOP) while ready(proc) holds, i.e.
        mid-run with its temporary in place: the threaded writers may finish
        64 MB before a signal sent at a moment seen from here arrives, so a
        run that got past it is let go and tried again."""
        for _ in range(8):
            proc = start(out)
            seen = wait_for(lambda: ready(proc))
            proc.send_signal(signal.SIGSTOP)
            if seen and proc.poll() is None and ready(proc):
                return proc, True
            proc.send_signal(signal.SIGCONT)
            proc.communicate()
            shutil.rmtree(out, ignore_errors=True)
        return proc, False

    # --- SIGINT, SIGTERM, SIGHUP: the temporary folder goes with the run ---
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        out = P(f"ct_{sig.name}")
        proc, seen = caught(out, lambda pr: os.path.isdir(tmp_of(out, pr.pid)))
        proc.send_signal(sig)
        proc.send_signal(signal.SIGCONT)
        proc.communicate()
        check(seen and proc.returncode == -sig and not os.path.exists(out) and not temporaries(tmp),
              f"{sig.name} during a folder export: no output, no temporary (seen {seen}, rc {proc.returncode}, "
              f"left {temporaries(tmp)})")

    # --- SIGKILL leaves the temporary; the next run writing there removes it
    out = P("ct_killed")
    proc, seen = caught(out, lambda pr: os.path.isfile(os.path.join(tmp_of(out, pr.pid), MARKER)))
    stale = tmp_of(out, proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    check(seen and os.path.isdir(stale), "SIGKILL leaves a marked temporary folder")
    # a folder of that name without the marker, and one of a live process,
    # are never touched
    dead = subprocess.Popen(["true"])
    dead.wait()
    foreign = tmp_of(out, dead.pid)
    os.makedirs(foreign)
    open(os.path.join(foreign, "user.txt"), "w").write("not sparsify's")
    live = tmp_of(out, os.getpid())
    os.makedirs(live)
    open(os.path.join(live, MARKER), "w").write("")
    p = run("export", P("big.pt"), "-o", out, "-q")
    check(p.returncode == 0 and os.path.isfile(os.path.join(out, "model.safetensors")) and not os.path.exists(stale),
          "the next run writing there removes the stale temporary")
    check(os.path.isfile(os.path.join(foreign, "user.txt")) and os.path.isdir(live),
          "a folder without the marker, or of a live PID, is kept")
    shutil.rmtree(foreign)
    shutil.rmtree(live)
    # a killed file output leaves nothing (unnamed temporary)
    proc = subprocess.Popen([SPARSIFY, "prune", P("big.pt"), "-o", P("killed.pt"), "--sparsity", "0.5", "-q"])
    time.sleep(0.1)
    proc.kill()
    proc.wait()
    check(not temporaries(tmp), "a killed file output leaves no temporary")

    # --- finding 5: the input truncated while it is read ---------------------
    for args, out, what in ((["export", "-o", P("trunc_ct")], P("trunc_ct"), "export to a folder"),
                            (["export", "-o", P("trunc.spz")], P("trunc.spz"), "export to .spz"),
                            (["prune", "-o", P("trunc.pt"), "--sparsity", "0.5"], P("trunc.pt"), "prune")):
        shutil.copy(P("big.pt"), P("victim.pt"))
        proc = subprocess.Popen([SPARSIFY, args[0], P("victim.pt"), *args[1:], "-q"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        maps = f"/proc/{proc.pid}/maps"

        def mapped():
            try:
                return P("victim.pt") in open(maps).read()
            except OSError:
                return False
        seen = wait_for(mapped)
        # a slow reader: stopped while the file is truncated under its map
        proc.send_signal(signal.SIGSTOP)
        os.truncate(P("victim.pt"), 0)
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate()
        lines = err.splitlines()
        check(seen and proc.returncode == 2 and len(lines) == 1 and "victim.pt" in lines[0]
              and "truncated" in lines[0] and lines[0].startswith("sparsify: error: ")
              and not os.path.exists(out) and not temporaries(tmp),
              f"input truncated during {what}: exit 2, one line, nothing left (rc {proc.returncode}, {err!r}, "
              f"left {temporaries(tmp)})")
    check(os.path.getsize(P("big.pt")) == big_bytes, "the other input untouched")


def main():
    with tempfile.TemporaryDirectory(prefix="cli_outputs_") as tmp:
        os.makedirs(os.path.join(tmp, "a"))
        outputs(os.path.join(tmp, "a"))
        os.makedirs(os.path.join(tmp, "b"))
        interrupted(os.path.join(tmp, "b"))
    return summary()


if __name__ == "__main__":
    sys.exit(main())
