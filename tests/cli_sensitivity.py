"""CLI tests of `sparsify sensitivity`, run by the real binary on TorchScript
models written here by PyTorch, checked against PyTorch:

- the table of a two-layer model (classification: cross-entropy and
  accuracy) against a PyTorch loop that prunes one layer at a time by
  magnitude (exact counts, ties to the lower index) and evaluates the model;
  the Linear layers run on the sparse operator; a model with a convolution
  (masked in place) and regression labels (mean squared error);
- --recipe-out: the per-layer sparsities follow the documented rule
  (lower convex hulls, cheapest damage per pruned weight first, whole
  weights, largest remainders), re-implemented here; the overall count is
  exact; `sparsify prune --recipe` of it prunes each layer to its share; the
  model file is never written; the output policy (an existing recipe is
  refused without --force, replaced with it);
- bad input exits 2 with one line: --metric accuracy without class labels,
  a target beyond the measured sparsities, sparsities out of order, an N:M
  pattern with --recipe-out, data without labels, --target alone.
"""
import hashlib
import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import check, run, summary  # noqa: E402


class Two(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(10, 24)
        self.fc2 = torch.nn.Linear(24, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class ConvReg(torch.nn.Module):
    """A convolution (masked in place) and a Linear; two regression outputs."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 3, 3, padding=1)
        self.fc = torch.nn.Linear(3 * 8, 2)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x.unsqueeze(1))).flatten(1))


def nz_round(s, n):
    return int(s * n + 0.5)


def magnitude_mask(w, s):
    """sparsify's rule: the round(s * n) smallest |w|, ties to the lower
    index (stable sort), zeros first."""
    flat = w.reshape(-1)
    k = max(nz_round(s, flat.numel()), int((flat == 0).sum()))
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[torch.sort(flat.abs(), stable=True).indices[:k]] = False
    return keep.reshape(w.shape)


def evaluate(model, x, y, classification):
    with torch.no_grad():
        out = model(x)
        if classification:
            loss = torch.nn.functional.cross_entropy(out.double(), y, reduction="mean").item()
            return loss, (out.argmax(1) == y).double().mean().item()
        return torch.nn.functional.mse_loss(out.double(), y.double()).item(), None


def reference_table(model, x, y, names, sparsities, classification):
    """One layer at a time, each sparsity: mask, evaluate, restore."""
    params = dict(model.named_parameters())
    table = {}
    for n in names:
        w = params[n]
        orig = w.detach().clone()
        rows = []
        for s in sparsities:
            keep = magnitude_mask(orig, s)
            with torch.no_grad():
                w.copy_(orig * keep)
            loss, acc = evaluate(model, x, y, classification)
            rows.append((1 - float(((orig * keep) != 0).sum()) / orig.numel(), loss, acc))
            with torch.no_grad():
                w.copy_(orig)
        table[n] = rows
    return table


def allocate(curves, target):
    """The allocation rule of docs/pruning.md, re-implemented: curves is a
    list of (numel, [(sparsity, damage)])."""
    segs = []
    for l, (numel, pts) in enumerate(curves):
        pts = [(0.0, 0.0)] + pts
        hull = []
        for p in pts:
            while len(hull) >= 2:
                (ax, ay), (bx, by) = hull[-2], hull[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) <= 0:
                    hull.pop()
                else:
                    break
            hull.append(p)
        for k in range(len(hull) - 1):
            w = (hull[k + 1][0] - hull[k][0]) * numel
            segs.append(((hull[k + 1][1] - hull[k][1]) / w, l, k, w))
    segs.sort()
    total = sum(n for n, _ in curves)
    left = float(int(target * total + 0.5))
    budget = left
    x = [0.0] * len(curves)
    for price, l, k, w in segs:
        if left <= 0:
            break
        take = min(w, left)
        x[l] += take
        left -= take
    out = []
    for l, (numel, _) in enumerate(curves):
        f = min(float(int(x[l] + 1e-9)), float(numel))
        out.append(f)
        x[l] -= f
    deficit = budget - sum(out)
    while deficit >= 0.5:
        best = None
        for l, (numel, _) in enumerate(curves):
            if out[l] < numel and x[l] > 1e-12 and (best is None or x[l] > x[best]):
                best = l
        if best is None:
            break
        out[best] += 1
        x[best] = 0
        deficit -= 1
    return [o / n for o, (n, _) in zip(out, curves)], int(budget)


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def one_error_line(p, *words):
    lines = [l for l in p.stderr.splitlines() if l.strip() and not l.startswith("try ")]
    return len(lines) == 1 and lines[0].startswith("sparsify: error: ") and all(w in lines[0] for w in words)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        T = lambda *p: os.path.join(tmp, *p)  # noqa: E731
        torch.manual_seed(3)
        two = Two().eval()
        x = torch.randn(400, 10)
        with torch.no_grad():  # labels the dense model mostly gets right
            y = (two(x) + 0.8 * torch.randn(400, 4)).argmax(1)
        torch.jit.script(two).save(T("two.pt"))
        with open(T("data.csv"), "w") as f:
            f.write(",".join([f"x{j}" for j in range(10)] + ["label"]) + "\n")
            for i in range(400):
                f.write(",".join([repr(float(v)) for v in x[i]] + [str(int(y[i]))]) + "\n")
        before = digest(T("two.pt"))

        sps = [0.3, 0.5, 0.7, 0.8, 0.9, 0.95]
        p = run("sensitivity", T("two.pt"), "--data", T("data.csv"), "--sparsities", ",".join(map(str, sps)),
                "--batch-size", 64, "--json", expect=0)
        got = json.loads(p.stdout) if p.returncode == 0 else None
        names = ["fc1.weight", "fc2.weight"]
        ref = reference_table(two, x, y, names, sps, True)
        base = evaluate(two, x, y, True)
        check(got is not None and [l["name"] for l in got["layers"]] == names, "one table per layer, in order")
        if got:
            check(abs(got["dense"]["loss"] - base[0]) <= 1e-5 * abs(base[0]) and got["dense"]["accuracy"] == base[1],
                  f"dense loss and accuracy = PyTorch ({got['dense']} vs {base})")
            check(got["samples"] == 400 and got["loss"] == "cross_entropy", "classification, all rows")
            for l in got["layers"]:
                check(l["sparse_operator"], f"{l['name']} measured through the sparse operator")
                for pt, (rs, rl, ra) in zip(l["points"], ref[l["name"]]):
                    check(abs(pt["sparsity"] - rs) < 1e-12, f"{l['name']} at {pt['target']}: sparsity {pt['sparsity']} = {rs}")
                    check(abs(pt["loss"] - rl) <= 1e-4 * max(1.0, abs(rl)),
                          f"{l['name']} at {pt['target']}: loss {pt['loss']} = PyTorch's {rl}")
                    check(abs(pt["accuracy"] - ra) <= 1.0 / 400 + 1e-12,
                          f"{l['name']} at {pt['target']}: accuracy {pt['accuracy']} = PyTorch's {ra} (within one sample)")
            # loss grows with sparsity for the small head at the top end
            h = [pt["loss"] for pt in got["layers"][1]["points"]]
            check(h[-1] > h[0], "pruning more moves the loss more")

        # the text table
        p = run("sensitivity", T("two.pt"), "--data", T("data.csv"), "--sparsities", "0.5,0.9", expect=0)
        check(p.returncode == 0 and "fc1.weight [24, 10], 240 weights (sparse operator)" in p.stdout
              and "50.00%" in p.stdout and "90.00%" in p.stdout, "the text table names each layer and sparsity")

        # ---- the recipe
        for metric in ("loss", "accuracy"):
            out = T(f"r-{metric}.json")
            p = run("sensitivity", T("two.pt"), "--data", T("data.csv"), "--sparsities", ",".join(map(str, sps)),
                    "--metric", metric, "--recipe-out", out, "--target", 0.8, "--json", expect=0)
            if p.returncode:
                check(False, f"recipe by {metric}")
                continue
            rep = json.loads(p.stdout)
            curves = []
            for l in rep["layers"]:
                d = [(pt["target"], (pt["loss"] - rep["dense"]["loss"]) if metric == "loss"
                      else (rep["dense"]["accuracy"] - pt["accuracy"])) for pt in l["points"]]
                curves.append((l["numel"], d))
            want, budget = allocate(curves, 0.8)
            alloc = [l["allocated"] for l in rep["layers"]]
            check(all(abs(a - w) < 1e-12 for a, w in zip(alloc, want)),
                  f"{metric}: per-layer sparsities follow the rule ({alloc} vs {want})")
            counts = [round(a * l["numel"]) for a, l in zip(alloc, rep["layers"])]
            check(sum(counts) == budget == nz_round(0.8, 240 + 96), f"{metric}: exactly round(0.8 * 336) weights ({counts})")
            r = json.load(open(out))
            m = r["modifiers"][0]
            check(m["type"] == "MagnitudePruningModifier" and m["mask_type"] == "unstructured"
                  and sorted(n for v in m["final_sparsity"].values() for n in v) == names,
                  f"{metric}: one modifier listing every layer")
            p = run("prune", T("two.pt"), "-o", T(f"p-{metric}.pt"), "--recipe", out, "--json", expect=0)
            if p.returncode == 0:
                z = {e["name"]: e["zeros_after"] for e in json.loads(p.stdout)["tensors"]}
                check([z[n] for n in names] == counts, f"{metric}: prune --recipe gives each layer its share ({z})")
                pw = torch.jit.load(T(f"p-{metric}.pt")).state_dict()
                for n, a in zip(names, alloc):
                    check(torch.equal(pw[n] != 0, magnitude_mask(two.state_dict()[n], a)),
                          f"{metric}: {n} pruned by magnitude to {a}")
        check(digest(T("two.pt")) == before, "the model file is never written")
        # the allocation prefers the layer whose loss moves least
        rep_alloc = allocate([(240, [(s, s) for s in sps]), (96, [(s, 10.0 * s) for s in sps])], 0.8)[0]
        check(rep_alloc[0] > 0.8 > rep_alloc[1], "the rule itself spends sparsity on the cheaper layer")

        # output policy
        with open(T("keep.json"), "w") as f:
            f.write("{}\n")
        p = run("sensitivity", T("two.pt"), "--data", T("data.csv"), "--recipe-out", T("keep.json"), "--target", 0.5, expect=2)
        check(p.returncode == 2 and "exists" in p.stderr and open(T("keep.json")).read() == "{}\n",
              "an existing --recipe-out is refused without --force and left alone")
        p = run("sensitivity", T("two.pt"), "--data", T("data.csv"), "--recipe-out", T("keep.json"), "--target", 0.5,
                "--force", expect=0)
        check(p.returncode == 0 and "modifiers" in open(T("keep.json")).read(), "--force replaces it")
        check(not [f for f in os.listdir(tmp) if "sparsify-tmp" in f], "no temporary left")

        # ---- a convolution (masked in place) and regression labels
        torch.manual_seed(4)
        cr = ConvReg().eval()
        xr = torch.randn(150, 8)
        with torch.no_grad():
            yr = cr(xr) + 0.1 * torch.randn(150, 2)
        torch.jit.script(cr).save(T("conv.pt"))
        torch.save({"inputs": xr, "labels": yr}, T("reg.pt"))
        p = run("sensitivity", T("conv.pt"), "--data", T("reg.pt"), "--sparsities", "0.5,0.9", "--json", expect=0)
        got = json.loads(p.stdout) if p.returncode == 0 else None
        refr = reference_table(cr, xr, yr, ["conv.weight", "fc.weight"], [0.5, 0.9], False)
        check(got is not None and got["loss"] == "mse" and "accuracy" not in got["dense"], "regression: MSE, no accuracy")
        if got:
            for l in got["layers"]:
                check(l["sparse_operator"] == (l["name"] == "fc.weight"), f"{l['name']}: sparse operator only for Linear")
                for pt, (rs, rl, _) in zip(l["points"], refr[l["name"]]):
                    check(abs(pt["sparsity"] - rs) < 1e-12 and abs(pt["loss"] - rl) <= 1e-4 * max(1.0, abs(rl)),
                          f"{l['name']} at {pt['target']}: MSE {pt['loss']} = PyTorch's {rl}")
        # --include picks the weights
        p = run("sensitivity", T("conv.pt"), "--data", T("reg.pt"), "--sparsities", "0.5", "--include", r"^fc\.weight",
                "--json", expect=0)
        check(p.returncode == 0 and [l["name"] for l in json.loads(p.stdout)["layers"]] == ["fc.weight"],
              "--include selects the analysed weights")
        # N:M: one sparsity per layer
        p = run("sensitivity", T("two.pt"), "--data", T("data.csv"), "--pattern", "2:4", "--json", expect=0)
        # (fc1 has 10 inputs: groups 4, 4 and a tail of 2 that keeps both)
        check(p.returncode == 0 and [(len(l["points"]), l["points"][0]["target"], l["points"][0]["sparsity"])
                                     for l in json.loads(p.stdout)["layers"]] == [(1, 0.5, 0.4), (1, 0.5, 0.5)],
              "2:4: one point per layer")

        # ---- bad input: exit 2, one line
        torch.save({"inputs": x}, T("nolabels.pt"))
        for what, args, words in [
            ("accuracy without class labels", [T("conv.pt"), "--data", T("reg.pt"), "--metric", "accuracy"],
             ["--metric accuracy"]),
            ("target beyond the measured sparsities", [T("two.pt"), "--data", T("data.csv"), "--sparsities", "0.5,0.6",
                                                       "--recipe-out", T("x.json"), "--target", 0.9], ["--target", "0.6"]),
            ("sparsities out of order", [T("two.pt"), "--data", T("data.csv"), "--sparsities", "0.7,0.5"], ["--sparsities"]),
            ("N:M with a recipe", [T("two.pt"), "--data", T("data.csv"), "--pattern", "2:4", "--recipe-out", T("x.json"),
                                   "--target", 0.5], ["N:M"]),
            ("no labels", [T("two.pt"), "--data", T("nolabels.pt")], ["nolabels.pt", "labels"]),
            ("--target alone", [T("two.pt"), "--data", T("data.csv"), "--target", 0.5], ["--recipe-out"]),
            ("wrong width", [T("two.pt"), "--data", T("reg.pt")], ["reg.pt"]),
        ]:
            p = run("sensitivity", *args, expect=2)
            check(p.returncode == 2 and one_error_line(p, *words), f"{what}: exit 2, one line ({p.stderr.strip()!r})")
        check(not os.path.exists(T("x.json")), "no recipe written after a failure")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
