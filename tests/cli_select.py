"""CLI test of tensor selection: sparsify's regexes against Python's `re`.

Users write --include/--exclude patterns and recipe "re:" params as Python
regexes, so every pattern below must select exactly the tensors Python's
`re` selects: re.search for the CLI options, re.match for recipe params
(as SparseML matches them). The checkpoint is written by PyTorch with many
realistic names (Llama, BERT, YOLO, Unicode digits and letters); sparsify
runs with --dry-run --json, so nothing is written. Also: hostile patterns
fail fast with exit 2 and one line naming the pattern.
"""
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import SPARSIFY, check, run, summary  # noqa: E402

warnings.simplefilter("ignore", FutureWarning)  # "[[:alpha:]]" is a nested-set warning in Python

PATTERNS = [
    r"layers\.\d\.mlp",
    r"layers\.\d+\.mlp",
    r"layers\.[\d]\.",
    r"layers\.[^\d]",
    r"\w+_proj",
    r"\bup_proj\b",
    r"\bproj\b",
    r"(?:q|k|v)_proj",
    r"(?i)encoder\.layer",
    r"(?i)DENSE",
    r"^((?!dfl).)*$",
    r"^(?!.*layernorm).*weight$",
    r"(?<=self_attn\.)q",
    r"(?<!mlp\.)down",
    r"(?P<blk>layers)\.(?P<idx>1\d)\.",
    r"layers\.(?P<d>\d)(?P=d)\.",
    r"layers\..*?\.weight",
    r"model\.layers\.1+?\.",
    r"q_proj|k_proj",
    r"^lm_head",
    r"weight$",
    r"bias\Z",
    r"^model\.layers\.[0-3]\.",
    r"\d{2}",
    r"layers\.\d{,1}\.mlp",
    r"attention\.self\.(query|key)",
    r"[[:alpha:]]",
    r"\s",
    r"\W",
    r"blocks\.\d\.",
    r"caf\w",
    r"\u00e9",
    r"(?x) mlp \. up  # verbose",
    r"(?s)self.attn",
    r"\.(?:gate|up)_proj\.weight$",
    r"^(model|bert)\.",
    r"norm\.weight$",
    r"dfl",
    r".*dfl",
    r"\bk",
    r"(?i)^ENCODER",
    r"o_proj\.weight\b",
    r"(?x) layers \. [0-9] \.  # a comment with [ and ( in it",
    r"(m)?(?(1)odel\.norm|lm_head)",
    r"(?>layers\.\d+)\.mlp",
    r"layers\.\d++\.self",
]


def names():
    out = ["model.embed_tokens.weight"]
    for i in range(14):
        p = f"model.layers.{i}."
        out += [p + f"self_attn.{x}_proj.weight" for x in "qkvo"]
        out += [p + f"mlp.{x}_proj.weight" for x in ("gate", "up", "down")]
        out += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
    out += ["model.norm.weight", "lm_head.weight"]
    for i in range(2):
        p = f"bert.encoder.layer.{i}."
        for x in ("query", "key", "value"):
            out += [p + f"attention.self.{x}.weight", p + f"attention.self.{x}.bias"]
        out += [p + "attention.output.dense.weight", p + "intermediate.dense.weight",
                p + "output.LayerNorm.weight"]
    out += ["Encoder.Layer.0.Dense.weight", "model.22.dfl.conv.weight", "model.22.cv2.0.weight",
            "blocks.\u0663.fc.weight", "blocks.3.fc.weight", "caf\u00e9.weight", "head.proj.weight",
            "up_proj.bias"]
    return out


def selected(args):
    """Names sparsify would prune, or None when it selects nothing (exit 2)."""
    r = run("prune", *args, "--dry-run", "--json")
    if r.returncode == 2 and "no tensor matches the selection" in r.stderr:
        return None
    if r.returncode != 0:
        print("unexpected:", args, r.returncode, r.stderr)
        return "error"
    return sorted(t["name"] for t in json.loads(r.stdout)["tensors"])


def run_bounded(*args):
    """Run sparsify under 1 GiB of address space and 60 s (a regression here
    must fail the test, not take the machine down). AddressSanitizer builds
    reserve terabytes of shadow address space, so they get the time limit
    only."""
    with open(SPARSIFY, "rb") as f:
        asan = b"__asan_init" in f.read()

    def limit():
        if not asan:
            resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    try:
        return subprocess.run([SPARSIFY, *args], capture_output=True, text=True, timeout=60,
                              preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, -1, "", "timed out")


def want(ns):
    return sorted(ns) or None


def main():
    tmp = tempfile.mkdtemp(prefix="sparsify-select-")
    P = lambda n: os.path.join(tmp, n)  # noqa: E731
    torch.manual_seed(0)
    all_names = names()
    sd = {n: torch.randn(4, 4) if n.endswith("weight") else torch.randn(4) for n in all_names}
    torch.save(sd, P("m.pt"))
    before = sorted(os.listdir(tmp))

    check(len(PATTERNS) >= 30, f"{len(PATTERNS)} patterns")
    for i, pat in enumerate(PATTERNS):
        rx = re.compile(pat)
        # CLI: --include selects by re.search; --exclude removes by re.search
        got = selected([P("m.pt"), "--sparsity", "0.5", "--include", pat])
        check(got == want(n for n in all_names if rx.search(n)), f"--include {pat!r}: {got}")
        got = selected([P("m.pt"), "--sparsity", "0.5", "--include", ".", "--exclude", pat])
        check(got == want(n for n in all_names if not rx.search(n)), f"--exclude {pat!r}: {got}")
        # recipes: "re:" params and ignore by re.match, as SparseML
        for kind in ("params", "ignore"):
            mod = {"type": "MagnitudePruningModifier", "final_sparsity": 0.5}
            if kind == "params":
                mod["params"] = ["re:" + pat]
                exp = want(n for n in all_names if rx.match(n))
            else:
                mod["params"] = "__ALL__"
                mod["ignore"] = ["re:" + pat]
                exp = want(n for n in all_names if not rx.match(n))
            rp = P(f"r{i}{kind}.json")
            with open(rp, "w", encoding="utf-8") as f:
                json.dump({"version": 1, "modifiers": [mod]}, f)
            got = selected([P("m.pt"), "--recipe", rp])
            check(got == exp, f"recipe {kind} 're:{pat}': {got} != {exp}")
    check(sorted(os.listdir(tmp)) == before + sorted(
        f"r{i}{k}.json" for i in range(len(PATTERNS)) for k in ("params", "ignore")),
        "--dry-run wrote nothing")

    # the regression of a POSIX ERE: '\d' meant 'd', so this excluded nothing
    got = selected([P("m.pt"), "--sparsity", "0.5", "--exclude", r"layers\.\d\.mlp"])
    check(got is not None and "model.layers.3.mlp.up_proj.weight" not in got
          and "model.layers.13.mlp.up_proj.weight" in got, "--exclude 'layers\\.\\d\\.mlp' excludes layers 0-9")

    # hostile patterns: exit 2 fast, one line that names the pattern
    hostile = "a" + "+" * 24
    with open(P("h.json"), "w") as f:
        json.dump({"version": 1, "modifiers": [{"type": "magnitude", "final_sparsity": 0.5,
                                                "params": ["re:" + hostile]}]}, f)
    t0 = time.time()
    r = run_bounded("prune", P("m.pt"), "-o", P("h.pt"), "--recipe", P("h.json"))
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and hostile in lines[0] and time.time() - t0 < 5,
          f"recipe re:a+++...: exit 2, one line naming it ({r.returncode}, {lines})")
    slow = r"^(\w+\.?)+\d$"
    t0 = time.time()
    r = run_bounded("prune", P("m.pt"), "--dry-run", "--sparsity", "0.5", "--include", slow)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and slow in lines[0] and "backtracks" in lines[0]
          and time.time() - t0 < 5, f"catastrophic backtracking: exit 2 fast ({lines})")
    r = run("prune", P("m.pt"), "--dry-run", "--sparsity", "0.5", "--include", "x" * 5000)
    check(r.returncode == 2 and "limit is 4096" in r.stderr, "patterns over 4096 bytes refused")
    r = run("prune", P("m.pt"), "--dry-run", "--sparsity", "0.5", "--exclude", r"mlp\K")
    check(r.returncode == 2 and r.stderr.startswith("sparsify: error: --exclude: regex 'mlp\\K': bad escape \\K"),
          f"a PCRE2-only escape is refused as Python does: {r.stderr!r}")
    check(not os.path.exists(P("h.pt")), "no output after a bad pattern")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
