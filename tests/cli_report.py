"""CLI tests of the reports written to files: the HTML report
(--report-html on prune, check, inspect and bench) rendered by a real
browser, and the JUnit XML of check (--junit) read by Python's XML parser.

HTML: headless Chromium loads each page from a file (no network), takes
screenshots at 1400x900 and at a phone's width (390 px), which must be real
pictures holding the bar colours; its DOM (--dump-dom) must hold one row and
one bar per tensor of the command's JSON report, and names taken from the
file (markup, quotes, a control byte) must come out as text, never as
elements. The page fetches nothing and runs no script.

JUnit: one testcase per checked tensor, a <failure> whose message is the
violation `check --json` reports, the counts in the testsuite, a testcase for
a global target, a passing run without failures.

Both follow the output policy: an existing file is kept unless --force.

env: SPARSIFY (binary), SPARSIFY_SRC (source tree).
"""
import collections
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import check, run, summary  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BAR = (0x2b, 0x6c, 0xb0)      # --after in cmd/report.c
TARGET = (0xd5, 0x3f, 0x8c)   # --target
FAST = (0x38, 0xa1, 0x69)     # --fast
EVIL = 'evil<b>bold</b>&"quote\'\x07.weight'


def chromium(*args):
    """Run headless Chromium with a fresh profile; returns the process."""
    profile = tempfile.mkdtemp(prefix="cli_report_chromium_")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=" + profile, *args],
            capture_output=True, text=True, timeout=180)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def png_pixels(path):
    """(width, height, set of RGB colours) of an 8-bit RGB/RGBA PNG."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    w = h = ctype = None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), f"PNG depth {depth} colour type {ctype}"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    colours = set()
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        for x in range(0, stride, bpp):
            colours.add((line[x], line[x + 1], line[x + 2]))
        prev = line
    return w, h, colours


def near(colours, rgb, tol=6):
    return any(all(abs(c[i] - rgb[i]) <= tol for i in range(3)) for c in colours)


def one_error_line(p, *needles):
    lines = p.stderr.splitlines()
    return (p.returncode == 2 and len(lines) == 1 and lines[0].startswith("sparsify: error: ")
            and all(n in lines[0] for n in needles))


def dom_rows(dom):
    """The text of each report row's name cell, from Chromium's DOM."""
    cells = re.findall(r'<tr class="layer[^"]*"><td class="name">(.*?)(?:<span|</td>)', dom)
    return [html.unescape(c) for c in cells]


def browser_checks(page, nrows, what, speed=False):
    """Render page: DOM rows and bars, screenshots at desktop and phone width."""
    p = chromium("--dump-dom", "file://" + page)
    dom = p.stdout
    check(p.returncode == 0 and "</html>" in dom, f"{what}: Chromium loads the page (rc {p.returncode})")
    check(len(dom_rows(dom)) == nrows, f"{what}: one row per tensor in the DOM ({len(dom_rows(dom))} of {nrows})")
    bars = dom.count('<svg class="bar"')
    check(bars == nrows, f"{what}: one sparsity bar per tensor ({bars} of {nrows})")
    if speed:
        check(dom.count('<svg class="speed"') == nrows, f"{what}: one speedup bar per layer")
    for width, height, name in ((1400, 900, "desktop"), (390, 844, "phone")):
        shot = page + f".{name}.png"
        p = chromium(f"--screenshot={shot}", f"--window-size={width},{height}", "file://" + page)
        ok = p.returncode == 0 and os.path.isfile(shot)
        check(ok, f"{what}: {name} screenshot written (rc {p.returncode})")
        if not ok:
            continue
        w, h, colours = png_pixels(shot)
        check((w, h) == (width, height), f"{what}: {name} screenshot is {width}x{height} (got {w}x{h})")
        check(len(colours) > 50, f"{what}: {name} screenshot is a picture ({len(colours)} colours)")
        check(near(colours, BAR), f"{what}: {name} screenshot shows the sparsity bars")
        if speed:
            check(near(colours, FAST), f"{what}: {name} screenshot shows the speedup bars")
    return dom


def self_contained(text, what):
    """No script, nothing fetched: no src/href/url()/@import, no http."""
    check("<script" not in text.lower(), f"{what}: no script element")
    check(not re.search(r"\b(src|href)\s*=|url\(|@import|https?:", text),
          f"{what}: references nothing outside the file")


def make_model(path):
    torch.manual_seed(0)
    sd = collections.OrderedDict()
    for i in range(4):
        # layers of different scales: a global threshold prunes them unevenly
        sd[f"layers.{i}.fc1.weight"] = torch.randn(48, 32) * (1 + i)
        sd[f"layers.{i}.fc1.bias"] = torch.randn(48)
        sd[f"layers.{i}.fc2.weight"] = torch.randn(32, 48) * (4 - i)
    sd["norm.weight"] = torch.ones(32)
    sd[EVIL] = torch.randn(16, 16)
    w = sd["layers.0.fc1.weight"]
    w[w.abs() < 0.5] = 0  # some zeros already: a before bar to see
    torch.save(sd, path)


def prune_reports(P):
    p = run("prune", P("m.pt"), "-o", P("g.pt"), "--sparsity", "0.8", "--scope", "global",
            "--include", r"\.weight$", "--exclude", "norm", "--report", P("g.json"),
            "--report-html", P("g.html"), "-q", expect=0)
    check(p.returncode == 0 and os.path.isfile(P("g.html")), "prune --report-html: written")
    rep = json.load(open(P("g.json")))
    text = open(P("g.html"), encoding="utf-8").read()
    self_contained(text, "prune report")
    rows = text.count('<tr class="layer')
    check(rows == len(rep["tensors"]) == 9, f"prune report: one row per pruned tensor ({rows})")
    for t in rep["tensors"]:
        before = f'{100 * t["sparsity_before"]:.2f}%'
        after = f'{100 * t["sparsity_after"]:.2f}%'
        check(f"{before} &#8594; {after}" in text, f"prune report: {t['name']!r} {before} -> {after}")
    check("evil&lt;b&gt;bold&lt;/b&gt;&amp;&quot;quote&#39;\\x07.weight" in text,
          "prune report: a name with markup, quotes and a control byte is escaped")
    dom = browser_checks(P("g.html"), len(rep["tensors"]), "prune report")
    names = dom_rows(dom)
    check(names == [t["name"].replace("\x07", "\\x07") for t in rep["tensors"]],
          "prune report: the DOM rows name the tensors in order, as text")
    check("<b>bold</b>" not in dom, "prune report: markup in a tensor name made no element")

    # dry run: the plan, before and target only
    p = run("prune", P("m.pt"), "--dry-run", "--pattern", "2:4", "--report-html", P("plan.html"), expect=0)
    text = open(P("plan.html"), encoding="utf-8").read() if os.path.isfile(P("plan.html")) else ""
    check(p.returncode == 0 and text.count('<tr class="layer') == 9 and '&#8594;' not in
          text.split("<tbody>")[-1].split("</tbody>")[0], "prune --dry-run --report-html: the plan, no after")

    # the output policy
    open(P("keep.html"), "w").write("mine")
    p = run("prune", P("m.pt"), "-o", P("k.pt"), "--sparsity", "0.5", "--report-html", P("keep.html"))
    check(one_error_line(p, "keep.html", "--force") and open(P("keep.html")).read() == "mine"
          and not os.path.exists(P("k.pt")), "prune --report-html onto a file: refused, untouched, nothing written")
    p = run("prune", P("m.pt"), "-o", P("k.pt"), "--sparsity", "0.5", "--report-html", P("keep.html"), "--force", "-q")
    check(p.returncode == 0 and open(P("keep.html")).read().startswith("<!DOCTYPE html>"),
          "prune --report-html --force: replaced")
    p = run("prune", P("m.pt"), "-o", P("k2.pt"), "--sparsity", "0.5", "--report", P("same"),
            "--report-html", P("same"))
    check(p.returncode == 2 and not os.path.exists(P("same")), "prune: --report and --report-html the same file: exit 2")


def check_reports(P):
    # fails: the 2:4 layers pass, the global-pruned ones miss 0.6 here and there
    run("prune", P("m.pt"), "-o", P("nm.pt"), "--pattern", "2:4", "--include", r"fc1\.weight", "-q", expect=0)
    pj = run("check", P("nm.pt"), "--sparsity", "0.5", "--pattern", "2:4", "--json")
    js = json.loads(pj.stdout)
    p = run("check", P("nm.pt"), "--sparsity", "0.5", "--pattern", "2:4", "--junit", P("c.xml"),
            "--report-html", P("c.html"))
    nfail = sum(not t["ok"] for t in js["tensors"])
    check(p.returncode == 1 and pj.returncode == 1 and nfail > 0,
          f"check: some tensors miss 2:4 (rc {p.returncode}, {nfail} failed)")
    root = ET.parse(P("c.xml")).getroot()
    suites = root.findall("testsuite")
    check(root.tag == "testsuites" and len(suites) == 1, "junit: one testsuite in testsuites")
    suite = suites[0]
    cases = suite.findall("testcase")
    check(len(cases) == len(js["tensors"]) == int(suite.get("tests")) == int(root.get("tests")),
          f"junit: one testcase per tensor ({len(cases)} of {len(js['tensors'])})")
    check(int(suite.get("failures")) == nfail == sum(c.find("failure") is not None for c in cases),
          "junit: failures counted")
    for c, t in zip(cases, js["tensors"]):
        f = c.find("failure")
        if t["ok"]:
            check(f is None, f"junit: {t['name']!r} passes")
        else:
            check(f is not None and f.get("message") == t["violation"] and t["violation"] in f.text,
                  f"junit: {t['name']!r} fails with its violation ({t['violation']!r})")
        check(c.get("name") == t["name"].replace("\x07", "\\x07") and c.get("classname") == P("nm.pt"),
              f"junit: testcase named {t['name']!r}")
    text = open(P("c.html"), encoding="utf-8").read()
    self_contained(text, "check report")
    check(text.count('class="sub viol"') == nfail, "check report: each violation shown on its row")
    browser_checks(P("c.html"), len(js["tensors"]), "check report")

    # passes: no failure elements
    p = run("check", P("nm.pt"), "--sparsity", "0.3", "--include", r"fc1\.weight", "--junit", P("ok.xml"), "-q")
    root = ET.parse(P("ok.xml")).getroot()
    check(p.returncode == 0 and int(root.get("failures")) == 0 and not list(root.iter("failure"))
          and len(list(root.iter("testcase"))) > 0, "junit: a passing check has test cases and no failure")

    # a global target: its own testcase
    p = run("check", P("g.pt"), "--sparsity", "0.95", "--scope", "global", "--include", r"\.weight$",
            "--exclude", "norm", "--junit", P("gl.xml"))
    root = ET.parse(P("gl.xml")).getroot()
    glob = [c for c in root.iter("testcase") if c.get("name") == "global sparsity"]
    check(p.returncode == 1 and len(glob) == 1 and glob[0].find("failure") is not None
          and "< target 0.9500" in glob[0].find("failure").get("message"),
          "junit: a missed global target is a failing testcase of its own")

    # the output policy
    open(P("keep.xml"), "w").write("mine")
    p = run("check", P("nm.pt"), "--sparsity", "0.3", "--junit", P("keep.xml"))
    check(one_error_line(p, "keep.xml", "--force") and open(P("keep.xml")).read() == "mine",
          "check --junit onto a file: refused, untouched")
    p = run("check", P("nm.pt"), "--sparsity", "0.3", "--include", r"fc1\.weight", "--junit", P("keep.xml"),
            "--force", "-q")
    check(p.returncode == 0 and ET.parse(P("keep.xml")).getroot().tag == "testsuites",
          "check --junit --force: replaced")
    p = run("check", P("nm.pt"), "--sparsity", "0.3", "--junit", P("x"), "--report-html", P("x"))
    check(p.returncode == 2 and not os.path.exists(P("x")), "check: --junit and --report-html the same file: exit 2")


def inspect_reports(P):
    run("export", P("g.pt"), "-o", P("g.spz"), "-q", expect=0)
    ji = json.loads(run("inspect", P("g.spz"), "--json").stdout)
    p = run("inspect", P("g.spz"), "--report-html", P("i.html"))
    text = open(P("i.html"), encoding="utf-8").read() if os.path.isfile(P("i.html")) else ""
    n = len(ji["tensors"])
    check(p.returncode == 0 and text.count('<tr class="layer') == n, f"inspect --report-html: one row per tensor ({n})")
    check("dense &#8594; stored" in text and text.count(" &#8594; ") >= n,
          "inspect report of an .spz: dense and stored bytes per tensor")
    for t in ji["tensors"]:
        check(f'{100 * t["sparsity"]:.2f}%' in text, f"inspect report: sparsity of {t['name']!r}")
    self_contained(text, "inspect report")
    browser_checks(P("i.html"), n, "inspect report")
    p = run("inspect", P("g.spz"), "--report-html", P("i.html"))
    check(one_error_line(p, "i.html", "--force"), "inspect --report-html onto a file: refused")
    p = run("inspect", P("g.spz"), "--report-html", P("i.html"), "--force", "--json")
    check(p.returncode == 0 and json.loads(p.stdout)["tensors"], "inspect --report-html --force --json: replaced, JSON still printed")


def bench_report(P):
    torch.manual_seed(1)
    sd = collections.OrderedDict([("a.weight", torch.randn(64, 64)), ("b.weight", torch.randn(32, 64))])
    torch.save(sd, P("small.pt"))
    p = run("bench", P("small.pt"), "--sparsity", "0.9", "--batch", "8", "--reps", "3", "--threads", "1",
            "--json", "--report-html", P("b.html"), expect=0)
    layers = json.loads(p.stdout)["layers"] if p.returncode == 0 else []
    text = open(P("b.html"), encoding="utf-8").read() if os.path.isfile(P("b.html")) else ""
    check(len(layers) == 2 and text.count('<svg class="speed"') == 2, "bench --report-html: a speedup bar per layer")
    for l in layers:
        check(f'{l["speedup"]:.2f}x' in text, f"bench report: speedup of {l['layer']}")
    browser_checks(P("b.html"), 2, "bench report", speed=True)
    p = run("bench", "--shape", "64x64", "--report-html", P("b2.html"))
    check(p.returncode == 2 and not os.path.exists(P("b2.html")), "bench --report-html without MODEL: exit 2")


def main():
    check(CHROMIUM is not None, "chromium is installed (scripts/bootstrap.sh installs it)")
    if CHROMIUM is None:
        return summary()
    with tempfile.TemporaryDirectory(prefix="cli_report_") as tmp:
        P = lambda *a: os.path.join(tmp, *a)  # noqa: E731
        make_model(P("m.pt"))
        prune_reports(P)
        check_reports(P)
        inspect_reports(P)
        bench_report(P)
        left = [f for f in os.listdir(tmp) if "sparsify-tmp" in f]
        check(not left, f"no temporaries left ({left})")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
