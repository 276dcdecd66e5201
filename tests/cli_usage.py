"""CLI test of the command line itself, across commands: `sparsify help CMD`,
"did you mean" for commands, options and bundled recipe names, exactly one
error line per failure, progress bars on a terminal (prune, export),
`check -q`, the --sparsity 90 hint and the export size report.
"""
import os
import pty
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import SPARSIFY, check, run, summary  # noqa: E402


def error_lines(stderr):
    """The lines of a failure's stderr, less the usage hint."""
    return [l for l in stderr.splitlines() if not l.startswith("try 'sparsify ")]


def on_tty(*args):
    """Run sparsify with stderr on a pseudo-terminal; returns (rc, what it drew)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([SPARSIFY, *args], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(), out.decode(errors="replace")


def main():
    tmp = tempfile.mkdtemp(prefix="sparsify-usage-")
    P = lambda n: os.path.join(tmp, n)  # noqa: E731
    torch.manual_seed(0)
    sd = {f"l{i}.weight": torch.randn(256, 256) for i in range(8)}
    sd["l0.bias"] = torch.randn(256)
    torch.save(sd, P("m.pt"))

    # help CMD == CMD --help, for every command
    for cmd in ("prune", "check", "inspect", "export", "densify", "recipe", "bench"):
        a, b = run("help", cmd), run(cmd, "--help")
        check(a.returncode == 0 and a.stdout == b.stdout and a.stdout.startswith("usage: sparsify " + cmd),
              f"'sparsify help {cmd}' prints '{cmd} --help'")
    r = run("help")
    check(r.returncode == 0 and "sparsify help <command>" in r.stdout, "'sparsify help' lists the commands")

    # "did you mean": one line each, exit 2
    cases = [
        (["prnue", P("m.pt")], "unknown command 'prnue' (did you mean 'prune'?)"),
        (["help", "exprot"], "unknown command 'exprot' (did you mean 'export'?)"),
        (["--verison"], "unknown option '--verison' (did you mean '--version'?)"),
        (["prune", P("m.pt"), "-o", P("x.pt"), "--sparisty", "0.5"], "unknown option '--sparisty' (did you mean '--sparsity'?)"),
        (["prune", P("m.pt"), "-o", P("x.pt"), "--s", "0.5"], "option '--s' is ambiguous (--sparsity, --scope, --score, --substitute)"),
        (["check", P("m.pt"), "--paterns", "2:4"], "unknown option '--paterns' (did you mean '--pattern'?)"),
        (["inspect", P("m.pt"), "--jsno"], "unknown option '--jsno' (did you mean '--json'?)"),
        (["export", P("m.pt"), "-o", P("x.spz"), "--ct-fromat", "dense"], "unknown option '--ct-fromat' (did you mean '--ct-format'?)"),
        (["recipe", "lsit"], "unknown subcommand 'lsit' (did you mean 'list'?)"),
        (["recipe", "list", "--jsn"], "unknown option '--jsn' (did you mean '--json'?)"),
        (["recipe", "show", "unstructred-90"], "no bundled recipe named 'unstructred-90' (did you mean 'unstructured-90'?)"),
        (["recipe", "validate", "gradul-90"], "no recipe file or bundled recipe named 'gradul-90' (did you mean 'gradual-90'?)"),
        (["prune", P("m.pt"), "-o", P("x.pt"), "--recipe", "glbal-90"], "(did you mean 'global-90'?)"),
        (["prune", P("m.pt"), "-o", P("x.pt"), "--sparsity", "90"], "--sparsity 90 is out of range [0, 1] (did you mean 0.9?)"),
        (["check", P("m.pt"), "--sparsity", "80"], "(did you mean 0.8?)"),
        (["prune", P("m.pt"), "-o"], "option '-o' needs a value"),
        (["prune", P("m.pt"), "--json=1"], "option '--json' takes no value"),
        (["prune", P("m.pt"), "-o", P("x.pt"), "-Z"], "unknown option '-Z'"),
    ]
    for args, want in cases:
        r = run(*args)
        lines = error_lines(r.stderr)
        check(r.returncode == 2 and len(lines) == 1 and lines[0].startswith("sparsify: error: ") and want in lines[0],
              f"{args[:2]}...: one line with {want!r} (got {r.returncode}, {r.stderr!r})")
    check(not os.path.exists(P("x.pt")) and not os.path.exists(P("x.spz")), "no output after a usage error")

    # exactly one error line per failure, whatever fails
    with open(P("bad.pt"), "wb") as f:
        f.write(b"PK\x03\x04 not really a zip")
    fails = [
        ["prune", P("nope.pt"), "-o", P("x.pt"), "-s", "0.5"],
        ["prune", P("bad.pt"), "-o", P("x.pt"), "-s", "0.5"],
        ["prune", P("m.pt"), "-o", P("x.pt")],
        ["prune", P("m.pt"), "-o", P("x.pt"), "-s", "abc"],
        ["prune", P("m.pt"), "-o", P("x.pt"), "-s", "0.5", "-i", "("],
        ["prune", P("m.pt"), "-o", P("x.pt"), "-s", "0.5", "-i", "nothing-matches"],
        ["check", P("m.pt")],
        ["check", P("bad.pt"), "-s", "0.5"],
        ["inspect", P("nope.pt")],
        ["inspect", P("bad.pt")],
        ["export", P("m.pt")],
        ["export", P("bad.pt"), "-o", P("x.spz")],
        ["export", P("m.pt"), "-o", P("x.spz"), "--level", "0"],
        ["export", P("m.pt"), "-o", P("x.spz"), "--format", "zip"],
        ["densify", P("bad.pt"), "-o", P("y.pt")],
        ["recipe", "validate", P("nope.json")],
        ["recipe"],
        ["nosuchcommand"],
    ]
    fails = [(a, 2) for a in fails]
    fails.append((["prune", P("m.pt"), "-o", os.path.join(tmp, "no", "dir", "x.pt"), "-s", "0.5"], 1))  # I/O
    for args, want_rc in fails:
        r = run(*args)
        lines = error_lines(r.stderr)
        check(r.returncode == want_rc and len(lines) == 1 and lines[0].startswith("sparsify: error: "),
              f"{args[:3]}: exit {want_rc} and exactly one error line ({r.returncode}, {r.stderr!r})")

    # progress on a terminal: prune and export draw the same bar; not with -q or off a TTY
    rc, drawn = on_tty("prune", P("m.pt"), "-o", P("p.pt"), "--sparsity", "0.9")
    check(rc == 0 and "\rprune: " in drawn and "100.0%" in drawn, f"prune shows progress on a TTY ({drawn[:80]!r})")
    rc, drawn = on_tty("prune", P("m.pt"), "-o", P("p2.pt"), "--sparsity", "0.9", "-q")
    check(rc == 0 and "\rprune:" not in drawn, "prune -q: no progress")
    r = run("prune", P("m.pt"), "-o", P("p3.pt"), "--sparsity", "0.9")
    check(r.returncode == 0 and "\rprune:" not in r.stderr, "no progress when stderr is not a terminal")
    rc, drawn = on_tty("export", P("p.pt"), "-o", P("p.spz"))
    check(rc == 0 and "\rexport: " in drawn and "100.0%" in drawn, "export shows the same bar")

    # check -q: no table, the exit code is the answer
    r = run("check", P("p.pt"), "--sparsity", "0.9", "-q")
    check(r.returncode == 0 and r.stdout == "" and r.stderr == "", "check -q passing: silent, exit 0")
    r = run("check", P("p.pt"), "--sparsity", "0.95", "-q")
    check(r.returncode == 1 and r.stdout == "" and r.stderr == "", "check -q failing: silent, exit 1")
    r = run("check", P("p.pt"), "--sparsity", "0.95")
    check(r.returncode == 1 and "FAIL l0.weight" in r.stdout, "check without -q lists the failures")

    # the size report says "larger" when the output is larger
    torch.save({"tiny.weight": torch.randn(2, 2)}, P("tiny.pt"))
    r = run("export", P("tiny.pt"), "-o", P("tiny.spz"), expect=0)
    check(r.returncode == 0 and "x larger" in r.stdout and "smaller" not in r.stdout, f"larger output: {r.stdout!r}")
    r = run("export", P("p.pt"), "-o", P("p2.spz"), expect=0)
    check("x smaller" in r.stdout, "smaller output: 'smaller'")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
