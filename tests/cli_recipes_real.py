"""Real SparseML and llm-compressor recipes, unchanged (tests/data/recipes/,
sources in its README), read and applied by the real binary.

For each recipe: `recipe validate` (exit 0, or exit 2 naming each modifier
sparsify does not implement and the closest one it has, then exit 0 with
--substitute), `recipe convert` (and the converted JSON converts to itself),
and `sparsify prune` on a small checkpoint whose names match (written by
tests/make_recipe_models.py), checked with PyTorch: exactly the tensors the
recipe names are pruned, each to round(s * n) zeros (blocks, N:M groups and
global thresholds as the recipe says, smallest magnitudes first), everything
else bit-identical; pruning with the converted JSON gives the same bytes.
The evaluator is compared with Python's own eval() on a table of
expressions, through a recipe.
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import SRC, check, nz_round, run, summary  # noqa: E402

DATA = os.path.join(SRC, "tests", "data", "recipes")


def rx(p):
    return re.compile(p)


BERT_PRUNED = rx(r"bert\.encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|"
                 r"intermediate\.dense|output\.dense)\.weight$")
LLAMA_PRUNABLE = rx(r"model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$")


def yolact_target(n):
    if n == "backbone.layers.0.0.0.weight" or not n.endswith(".weight"):
        return None
    if re.match(r"backbone\.layers\.(0\.1|1\.\d+)\.(conv\d\.0|0)\.weight$", n) or re.match(r"backbone\.layers\.1\.0\.0\.weight$", n):
        return 0.6
    if re.match(r"backbone\.layers\.2\.\d+\.(conv\d\.0\.|0\.)weight$", n):
        return 0.7
    if re.match(r"backbone\.layers\.[34]\.\d+\.(conv\d\.0\.|0\.)weight$", n):
        return 0.85
    if re.match(r"(proto_net\.\d+|fpn\.\w+\.\d+|prediction_layers\.0\.(upfeature\.0|\w+_layer)|semantic_seg_conv)\.weight$", n):
        return 0.8
    return None


MFAC = {0.90: ["sections.1.0", "sections.1.1", "sections.2.0"],
        0.95: ["sections.2.1", "sections.3.0", "sections.3.1", "sections.3.5"],
        0.97: ["sections.3.2", "sections.3.3", "sections.3.4", "sections.4.0", "sections.4.1"]}


def mfac_target(n):
    for s, blocks in MFAC.items():
        if n in [b + ".point.conv.weight" for b in blocks]:
            return s
    return None


# recipe, model, needs --substitute (the unimplemented classes), target(name) -> sparsity or
# None, pattern, global threshold
CASES = [
    ("resnet50-pruned.md", "sparseml_resnet50", [],
     lambda n: 0.88 if re.match(r"sections\.\d\.\d\.(conv[123]|identity\.conv)\.weight$", n) else None,
     "unstructured", False),
    ("30epochs_4block80_squad.yaml", "bert", ["OBSPruningModifier"],
     lambda n: 0.8 if BERT_PRUNED.match(n) else None, "1x4", True),
    ("yolact.pruned_quant.md", "yolact", [], yolact_target, "1x4", False),
    ("recipe_short_prune_quant_distil.md", "bert", [],
     lambda n: 0.9 if BERT_PRUNED.match(n) or n == "qa_outputs.weight" else None, "1x4", False),
    ("llama7b-2of4_w4a16_recipe.yaml", "llama", ["SparseGPTModifier"],
     lambda n: 0.5 if LLAMA_PRUNABLE.match(n) else None, "2:4", False),
    ("example_alternating_recipe.yaml", "llama", ["SparseGPTModifier", "SparseGPTModifier"],
     lambda n: 0.7 if LLAMA_PRUNABLE.match(n) else None, "unstructured", False),
    ("pruning-mobilenet-imagenette-mfac-short-95.md", "sparseml_mobilenet", ["MFACPruningModifier"],
     mfac_target, "unstructured", False),
    ("resnet50-beans-pruning-recipe.yaml", "torchvision_resnet50", [],
     lambda n: 0.9 if re.match(r"(conv1|layer\d\.\d\.(conv[123]|downsample\.0))\.weight$", n) else None,
     "unstructured", True),
    ("sparse_24_fp8.yaml", "llama", ["SparseGPTModifier"],
     lambda n: 0.5 if LLAMA_PRUNABLE.match(n) else None, "2:4", False),
    ("test_tiny2.yaml", "llama", ["SparseGPTModifier"],
     lambda n: 0.5 if LLAMA_PRUNABLE.match(n) else None, "unstructured", False),
]


def matrices(w):
    """The [out, in] matrices of a weight: a conv is one per (kh, kw)."""
    if w.dim() == 2:
        return [w]
    return [w[:, :, i, j] for i in range(w.shape[2]) for j in range(w.shape[3])]


def block_scores(w, c):
    """Mean |w| of the 1 x c blocks along the input dimension."""
    out = []
    for m in matrices(w):
        assert m.shape[1] % c == 0
        out.append(m.abs().reshape(m.shape[0], m.shape[1] // c, c).mean(-1).reshape(-1))
    return torch.cat(out)


def check_tensor(name, before, after, s, pattern):
    """Per-layer pruning of one tensor to s in pattern, smallest first."""
    n = before.numel()
    zero = after == 0
    kept = after != 0
    check(torch.equal(after[kept], before[kept]), f"{name}: kept weights unchanged")
    if pattern == "unstructured":
        check(int(zero.sum()) == nz_round(s, n), f"{name}: {int(zero.sum())} zeros, want {nz_round(s, n)}")
        if zero.any() and kept.any():
            check(before.abs()[zero].max() <= before.abs()[kept].min(), f"{name}: smallest magnitudes pruned")
    elif pattern == "1x4":
        nb = n // 4
        zb = torch.cat([(m == 0).reshape(m.shape[0], -1, 4).all(-1).reshape(-1) for m in matrices(after)])
        partial = torch.cat([((m == 0).reshape(m.shape[0], -1, 4).sum(-1) % 4 != 0).reshape(-1)
                             & ((m == 0).reshape(m.shape[0], -1, 4).any(-1)).reshape(-1) for m in matrices(after)])
        check(not partial.any(), f"{name}: 1x4 blocks pruned whole")
        check(int(zb.sum()) == nz_round(s, nb), f"{name}: {int(zb.sum())} zero blocks, want {nz_round(s, nb)}")
        sc = block_scores(before, 4)
        if zb.any() and (~zb).any():
            check(sc[zb].max() <= sc[~zb].min(), f"{name}: lowest-scoring blocks pruned")
    elif pattern == "2:4":
        for m, mb in zip(matrices(after), matrices(before)):
            g = (m == 0).reshape(m.shape[0], -1, 4)
            check(bool((g.sum(-1) == 2).all()), f"{name}: exactly 2 of every 4 inputs pruned")
            a = mb.abs().reshape(m.shape[0], -1, 4)
            pr = torch.where(g, a, torch.zeros_like(a)).max(-1).values
            kp = torch.where(~g, a, torch.full_like(a, float("inf"))).min(-1).values
            check(bool((pr <= kp).all()), f"{name}: the 2 smallest of every 4 pruned")


def prune_case(tmp, models, rec, model, unimpl, target, pattern, glob):
    P = lambda n: os.path.join(tmp, n)  # noqa: E731
    path = os.path.join(DATA, rec)
    sub = ["--substitute"] if unimpl else []
    # validate: unimplemented modifiers are named with the closest one
    r = run("recipe", "validate", path)
    errs = [ln for ln in r.stderr.splitlines() if ln.startswith("sparsify: error:")]
    if unimpl:
        check(r.returncode == 2 and len(errs) == len(unimpl)
              and all(u + " is not implemented by sparsify" in e and "the closest it has is" in e
                      for u, e in zip(unimpl, errs)),
              f"{rec}: exit 2 naming {unimpl} and the closest ({r.returncode}, {errs})")
    else:
        check(r.returncode == 0 and not errs and r.stdout.startswith("ok: "), f"{rec}: validates ({r.stderr})")
    r = run("recipe", "validate", path, *sub, "--json", expect=0)
    v = json.loads(r.stdout)
    check(v["ok"] is True, f"{rec}: validates with {sub}")
    quant = {m["type"] for m in v["modifiers"] if not m["applied"] and not m.get("substitute_for")}
    warned = [p for p in v["problems"] if "is not applied: sparsify does not quantize" in p["message"]]
    check(len(warned) == len(quant), f"{rec}: one warning per quantization modifier type ({quant}, {len(warned)})")
    # convert; the normalised form converts to itself
    conv = P(rec + ".json")
    run("recipe", "convert", path, *sub, "-o", conv, expect=0)
    r2 = run("recipe", "convert", conv, expect=0)
    check(r2.stdout == open(conv).read(), f"{rec}: the converted recipe converts to itself")
    # prune and verify against the input
    ck = os.path.join(models, model + ".pt")
    out = P(rec + ".pt")
    r = run("prune", ck, "-o", out, "--recipe", path, *sub, "--json", expect=0)
    check(r.returncode == 0, f"{rec}: prune exit 0")
    if r.returncode:
        return
    rep = json.loads(r.stdout)
    subs = [m.get("substitute_for") for m in rep["recipe"]["modifiers"] if m.get("substitute_for")]
    check(sorted(set(subs)) == sorted(set(unimpl)), f"{rec}: the report names what ran in place of {unimpl}: {subs}")
    check("selects no tensor" not in r.stderr, f"{rec}: every params entry names a tensor of the model ({r.stderr})")
    before, after = torch.load(ck), torch.load(out)
    targets = {n: target(n) for n in before if target(n) is not None}
    check(sorted(t["name"] for t in rep["tensors"]) == sorted(targets), f"{rec}: pruned exactly the named tensors")
    for n, w in before.items():
        if n not in targets:
            check(torch.equal(after[n], w), f"{rec}: {n} untouched")
    if glob:
        s = next(iter(set(targets.values())))
        if pattern == "unstructured":
            tot = sum(before[n].numel() for n in targets)
            z = sum(int((after[n] == 0).sum()) for n in targets)
            check(z == nz_round(s, tot), f"{rec}: global {z} zeros, want {nz_round(s, tot)}")
            thr = max(float(before[n].abs()[after[n] == 0].max()) for n in targets if (after[n] == 0).any())
            low = min(float(before[n].abs()[after[n] != 0].min()) for n in targets if (after[n] != 0).any())
            check(thr <= low, f"{rec}: one global magnitude threshold")
        else:
            sc = torch.cat([block_scores(before[n], 4) for n in targets])
            zb = torch.cat([torch.cat([(m == 0).reshape(m.shape[0], -1, 4).all(-1).reshape(-1)
                                       for m in matrices(after[n])]) for n in targets])
            check(int(zb.sum()) == nz_round(s, sc.numel()), f"{rec}: global {int(zb.sum())} zero blocks")
            check(sc[zb].max() <= sc[~zb].min(), f"{rec}: one global block threshold")
    else:
        for n, s in targets.items():
            check_tensor(f"{rec}: {n}", before[n], after[n], s, pattern)
    # the CI gate agrees: every target at its sparsity and pattern
    r = run("check", out, "--recipe", path, *sub, "-q")
    check(r.returncode == 0, f"{rec}: check --recipe passes on the pruned model ({r.stderr})")
    r = run("check", ck, "--recipe", path, *sub, "-q")
    check(r.returncode == 1, f"{rec}: check --recipe fails on the dense model")
    # the converted JSON means the same
    out2 = P(rec + ".conv.pt")
    run("prune", ck, "-o", out2, "--recipe", conv, "-q", expect=0)
    check(open(out, "rb").read() == open(out2, "rb").read(), f"{rec}: the converted recipe prunes the same bytes")


# expressions for the evaluator, compared with Python's eval()
EXPRS = [
    "1 + 2 * 3", "(1 + 2) * 3", "7 / 2", "7 // 2", "-7 // 2", "7 % 3", "-7 % 3", "7 % -3",
    "7.5 // 2", "-7.5 // 2", "7.5 % 2", "-7.5 % 2", "2 ** 10", "2 ** -1", "-2 ** 2", "2 ** 3 ** 2",
    "4 ** 0.5", "min(3, 1, 2)", "max(1, 2.5)", "int(2.9)", "int(-2.9)", "float(3)", "abs(-4)",
    "round(2.5)", "round(3.5)", "round(-0.5)", "round(2.675, 2)", "round(1234.5, -1)",
    "round(1250, -2)", "1e-3 * 1000", "1_000 + 1", "0x10 + 0o10 + 0b10", ".5 + 5.",
    "num_epochs * 0.1", "num_epochs - num_quant", "0.01 * init_lr", "init_lr / 3",
    "num_epochs // 7 * 7 + num_epochs % 7", "max(0, min(1, 1.5))", "-(-3)", "1 / 3 * 3",
    "2 ** 0.5 * 2 ** 0.5", "10 ** -3", "num_epochs - (0.5 * num_quant)", "abs(-0.0)",
]


def eval_case(tmp):
    env = {"num_epochs": 62, "num_quant": 2, "init_lr": 0.001}
    lines = [f"{k}: {v}" for k, v in env.items()]
    lines += ["modifiers:", "  - !QuantizationModifier"]
    lines += [f"    e{i}: eval({e})" for i, e in enumerate(EXPRS)]
    p = os.path.join(tmp, "eval.yaml")
    with open(p, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = run("recipe", "convert", p, expect=0)
    got = json.loads(r.stdout)["modifiers"][0]
    for i, e in enumerate(EXPRS):
        want = eval(e, {"__builtins__": {}}, dict(env, min=min, max=max, int=int, float=float, abs=abs, round=round))
        g = got.get(f"e{i}")
        check(g == want and (isinstance(want, float) or float(g).is_integer()),
              f"eval({e}): sparsify {g!r}, Python {want!r}")
    # calls, attributes, strings, unknown names and division by zero: refused, with the line
    bad = ["1 / 0", "x + 1", "__import__('os').getcwd()", "open('f')", "num_epochs.real", "'a' * 3"]
    for e in bad:
        try:
            eval(e, {"__builtins__": {}}, {"num_epochs": 62})
            python_ok = True
        except Exception:  # noqa: BLE001 - any refusal counts
            python_ok = False
        q = os.path.join(tmp, "bad.yaml")
        with open(q, "w") as f:
            f.write(f"num_epochs: 62\nmodifiers:\n  - !GMPruningModifier\n    final_sparsity: 0.5\n"
                    f"    end_epoch: eval({e})\n")
        r = run("recipe", "validate", q)
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2 and len(lines) == 1 and "line 5: modifiers[0].end_epoch: eval(" in lines[0],
              f"eval({e}) refused with its line ({lines}; Python {'accepts' if python_ok else 'refuses'} it)")


def main():
    tmp = tempfile.mkdtemp(prefix="sparsify-recipes-real-")
    models = os.path.join(tmp, "models")
    subprocess.run([sys.executable, os.path.join(SRC, "tests", "make_recipe_models.py"), models], check=True)
    check(len(os.listdir(DATA)) - 1 >= 8, "at least eight real recipes")
    for case in CASES:
        prune_case(tmp, models, *case)
    # a training recipe: prune says where it belongs
    r = run("prune", os.path.join(models, "llama.pt"), "-o", os.path.join(tmp, "x.pt"),
            "--recipe", os.path.join(DATA, "classification.transfer_learn_pruned.md"))
    check(r.returncode == 2 and "has no pruning modifier (a training recipe: run it with 'sparsify finetune"
          in r.stderr, f"transfer-learning recipe in prune: exit 2 pointing to finetune ({r.stderr})")
    eval_case(tmp)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
