"""CLI tests of activation-aware pruning: `sparsify prune --score wanda
--calibration FILE` and the calibration pass behind it, run by the real
binaries on TorchScript models written here by PyTorch, checked against
PyTorch:

- activation norms: `sparsify-torch calibrate` (the pass `prune` runs)
  against forward pre-hooks on the same model and the same batches of 128
  rows: Linear inputs per feature, convolution inputs per channel over batch
  and positions, a grouped convolution per (output row, channel), a weight
  shared by two Linear layers (its norms under both names), the first N rows;
- Wanda masks against a PyTorch implementation of the paper (|W| * ||X||,
  per output row, stable sort: ties prune the lower index first) on small
  layers with many ties: unstructured per row and per layer, 2:4, blocks,
  global; conv weights; a recipe with "score": "wanda" gives the bytes the
  options give; kept weights bit-identical, runs byte-identical;
- bad calibration data exits 2 with one line naming the file (wrong width,
  an empty file, NaN in a CSV and in a tensor file, Inf), and so do options
  that do not go together; nothing is left behind in the output folder.
"""
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import SPARSIFY, check, run, summary  # noqa: E402

TORCH_HELPER = os.path.join(os.path.dirname(os.path.abspath(SPARSIFY)), "sparsify-torch")
BATCH = 128  # rows per forward of the calibration pass


def one_error_line(p, *words):
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    return (len(lines) == 1 and lines[0].startswith("sparsify: error: ")
            and all(w in lines[0] for w in words))


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(12, 16)
        self.fc2 = torch.nn.Linear(16, 8)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class Shared(torch.nn.Module):
    """One weight read by two Linear products."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(12, 12)
        self.b = torch.nn.Linear(12, 12)
        self.b.weight = self.a.weight
        self.out = torch.nn.Linear(12, 3)

    def forward(self, x):
        return self.out(self.a(x) + self.b(torch.tanh(x)))


class ConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.c2 = torch.nn.Conv2d(4, 6, 3, groups=2)
        self.fc = torch.nn.Linear(6 * 3 * 3, 3)

    def forward(self, x):
        x = x.reshape(-1, 2, 5, 5)
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.flatten(1))


def quantize(model, seed):
    """Weights on a grid of 1/8: many equal magnitudes (ties)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(torch.round(torch.randn(p.shape, generator=g) * 4) / 8)
    return model


def write_csv(path, x, labels=None):
    with open(path, "w") as f:
        f.write(",".join([f"x{j}" for j in range(x.shape[1])] + (["label"] if labels is not None else [])) + "\n")
        for i in range(x.shape[0]):
            row = [repr(float(v)) for v in x[i]]
            if labels is not None:
                row.append(str(int(labels[i])))
            f.write(",".join(row) + "\n")


def reference_norms(model, x):
    """PyTorch forward pre-hooks on every Linear / Conv2d, batches of 128:
    float64 sums of squares per input feature (Linear) or channel (conv),
    accumulated over batches, sqrt, float32. Grouped convolutions give
    [out, in/groups] (each row its group's channels). Keyed by weight
    name; a shared weight accumulates all its inputs."""
    acc, names = {}, {}
    for name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
            names.setdefault(id(mod.weight), []).append(name + ".weight")

    def hook(mod, inp):
        xin = inp[0].detach().double()
        if isinstance(mod, torch.nn.Linear):
            s = xin.reshape(-1, xin.shape[-1]).pow(2).sum(0)
        else:
            s = xin.pow(2).sum([0, 2, 3])
        k = id(mod.weight)
        acc[k] = acc[k] + s if k in acc else s

    hs = [m.register_forward_pre_hook(hook) for m in model.modules()
          if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    with torch.no_grad():
        for b in range(0, x.shape[0], BATCH):
            model(x[b:b + BATCH])
    for h in hs:
        h.remove()
    out = {}
    mods = {id(m.weight): m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    for k, s in acc.items():
        n = s.sqrt().float()
        m = mods[k]
        if isinstance(m, torch.nn.Conv2d) and m.groups > 1:
            per_in, per_out = m.weight.shape[1], m.weight.shape[0] // m.groups
            n = torch.stack([n[(o // per_out) * per_in:(o // per_out + 1) * per_in]
                             for o in range(m.weight.shape[0])])
        for name in names[k]:
            out[name] = n
    return out


def nz_round(s, n):
    return int(s * n + 0.5)


def wanda_metric(w, norm):
    """The paper's score |W| * ||X|| in float32; norm [in] or [out, in]
    broadcast over a conv's kernel positions."""
    if norm.dim() == 1:
        shape = [1, -1] + [1] * (w.dim() - 2)
    else:
        shape = list(norm.shape) + [1] * (w.dim() - 2)
    return w.abs() * norm.reshape(shape)


def row_counts(s, rows, cols):
    """The tensor's exact count round(s * n) spread over its rows: the first
    k % rows rows prune one more (the paper prunes int(s * cols) in each)."""
    k = nz_round(s, rows * cols)
    return [k // rows + (1 if r < k % rows else 0) for r in range(rows)]


def ref_mask_rows(w, norm, s):
    """Wanda per output row: in each row prune its count of smallest
    scores, stable sort (ties: lower index first); zero weights go first."""
    m = wanda_metric(w, norm).reshape(w.shape[0], -1)
    flat = w.reshape(w.shape[0], -1)
    key = torch.where(flat == 0, torch.full_like(m, -1.0), m)
    mask = torch.ones_like(flat, dtype=torch.bool)
    counts = row_counts(s, flat.shape[0], flat.shape[1])
    for r in range(flat.shape[0]):
        kk = max(counts[r], int((flat[r] == 0).sum()))
        idx = torch.sort(key[r], stable=True).indices[:kk]
        mask[r, idx] = False
    return mask.reshape(w.shape)


def ref_mask_layer(w, norm, s):
    m = wanda_metric(w, norm).reshape(-1)
    flat = w.reshape(-1)
    key = torch.where(flat == 0, torch.full_like(m, -1.0), m)
    k = max(nz_round(s, flat.numel()), int((flat == 0).sum()))
    mask = torch.ones_like(flat, dtype=torch.bool)
    mask[torch.sort(key, stable=True).indices[:k]] = False
    return mask.reshape(w.shape)


def ref_mask_nm(w, norm, n, m):
    """N:M along the input dimension: keep the N largest scores of every M
    consecutive weights, the earlier weight on a tie."""
    sc = wanda_metric(w, norm)
    key = torch.where(w == 0, torch.full_like(sc, -1.0), sc)
    mask = torch.zeros_like(w, dtype=torch.bool)
    rows, cols = w.shape
    for r in range(rows):
        for c0 in range(0, cols, m):
            g = key[r, c0:c0 + m]
            order = sorted(range(g.numel()), key=lambda j: (-float(g[j]), j))
            for j in order[:min(n, g.numel())]:
                mask[r, c0 + j] = True
    return mask


def ref_mask_blocks(w, norm, R, C, s):
    """Blocks scored by the mean of their elements' scores, the
    round(s * blocks) smallest pruned, ties by block index."""
    sc = wanda_metric(w, norm)
    rows, cols = w.shape
    nbr, nbc = -(-rows // R), -(-cols // C)
    keys = []
    for br in range(nbr):
        for bc in range(nbc):
            blk = sc[br * R:(br + 1) * R, bc * C:(bc + 1) * C].double()
            wb = w[br * R:(br + 1) * R, bc * C:(bc + 1) * C]
            keys.append((-1.0 if bool((wb == 0).all()) else float(blk.mean()), br * nbc + bc))
    k = nz_round(s, len(keys))
    pruned = {b for _, b in sorted(keys)[:k]}
    mask = torch.ones_like(w, dtype=torch.bool)
    for b in pruned:
        br, bc = divmod(b, nbc)
        mask[br * R:(br + 1) * R, bc * C:(bc + 1) * C] = False
    return mask


def ref_mask_global(ws, norms, s):
    """One threshold over every target's scores: (score, tensor, index)."""
    keys = []
    for t, (w, nrm) in enumerate(zip(ws, norms)):
        m = wanda_metric(w, nrm).reshape(-1)
        flat = w.reshape(-1)
        for i in range(flat.numel()):
            keys.append((-1.0 if float(flat[i]) == 0 else float(m[i]), t, i))
    k = nz_round(s, len(keys))
    masks = [torch.ones(w.numel(), dtype=torch.bool) for w in ws]
    for _, t, i in sorted(keys)[:k]:
        masks[t][i] = False
    return [mk.reshape(w.shape) for mk, w in zip(masks, ws)]


def weights(path):
    return {k: v for k, v in torch.jit.load(path).state_dict().items()}


def check_masks(what, orig, pruned, want):
    """Pruned weights are exactly the reference's; kept weights bit-identical."""
    for name, mask in want.items():
        w0, w1 = orig[name], pruned[name]
        check(torch.equal(w1 != 0, mask & (w0 != 0)) and torch.equal(w1[mask], w0[mask]),
              f"{what}: {name} mask = the PyTorch reference, kept weights unchanged "
              f"(differs at {int(((w1 != 0) != (mask & (w0 != 0))).sum())} positions)")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        T = lambda *p: os.path.join(tmp, *p)  # noqa: E731
        g = torch.Generator().manual_seed(5)
        x = torch.randn(300, 12, generator=g) * 2 + 0.5
        x[:, 3] *= 10  # an outlier feature, as Wanda expects
        labels = torch.randint(0, 5, (300,), generator=g)
        write_csv(T("cal.csv"), x, labels)
        torch.save({"inputs": x, "labels": labels}, T("cal.pt"))

        mlp = quantize(MLP(), 1).eval()
        torch.jit.script(mlp).save(T("mlp.pt"))
        shared = quantize(Shared(), 2).eval()
        torch.jit.script(shared).save(T("shared.pt"))
        conv = quantize(ConvNet(), 3).eval()
        torch.jit.script(conv).save(T("conv.pt"))
        xc = torch.randn(200, 50, generator=g)
        write_csv(T("calc.csv"), xc)

        # ---- activation norms against forward hooks
        def norms_of(*args):
            p = subprocess.run([TORCH_HELPER, "calibrate", *map(str, args)],
                                             capture_output=True, text=True)
            if p.returncode != 0:
                print("calibrate:", p.stderr)
                return None
            return torch.load(args[-1])

        cases = [
            ("mlp, CSV, 200 rows", "mlp.pt", "cal.csv", mlp, x[:200],
             ["--label-column", "label", "--calibration-samples", "200"]),
            ("mlp, tensor file, default 128 rows", "mlp.pt", "cal.pt", mlp, x[:128], []),
            ("mlp, all 300 rows (3 batches)", "mlp.pt", "cal.csv", mlp, x,
             ["--label-column", "label", "--calibration-samples", "1000"]),
            ("shared weight", "shared.pt", "cal.pt", shared, x[:128], []),
            ("convolutions, grouped", "conv.pt", "calc.csv", conv, xc.reshape(-1, 2, 5, 5), ["--calibration-samples", "200"]),
        ]
        ref_mlp = None
        for i, (what, model, data, eager, xs, extra) in enumerate(cases):
            got = norms_of(T(model), "--calibration", T(data), *extra, "-o", T(f"norms{i}.pt"))
            want = reference_norms(eager, xs)
            check(got is not None and sorted(got) == sorted(want),
                  f"norms {what}: one entry per weight ({None if got is None else sorted(got)} vs {sorted(want)})")
            if got is None:
                continue
            for k in want:
                ok = k in got and got[k].shape == want[k].shape and got[k].dtype == torch.float32
                # the same ATen ops on the same rows: bit-identical, not just close
                check(ok and torch.equal(got[k], want[k]),
                      f"norms {what}: {k} = the forward-hook reference, bit for bit "
                      f"(max rel diff {float(((got[k] - want[k]).abs() / want[k].clamp_min(1e-30)).max()) if ok else 'n/a'})")
            if i == 1:
                ref_mlp = got
        check(ref_mlp is not None and float(ref_mlp["fc1.weight"][3]) > 5 * float(ref_mlp["fc1.weight"][0]),
              "the outlier feature has the largest norm")

        # ---- Wanda masks against the paper's algorithm in PyTorch
        orig = weights(T("mlp.pt"))
        norms = reference_norms(mlp, x[:BATCH])
        targets = ["fc1.weight", "fc2.weight", "head.weight"]
        cal = ["--calibration", T("cal.pt")]
        for s in (0.5, 0.7, 0.9):
            out = T(f"row{s}.pt")
            p = run("prune", T("mlp.pt"), "-o", out, "--sparsity", s, "--score", "wanda", *cal,
                    "--include", "weight", "--json", expect=0)
            if p.returncode:
                check(False, f"prune --score wanda {s}")
                continue
            rep = json.loads(p.stdout)
            check_masks(f"rows {s}", orig, weights(out),
                        {n: ref_mask_rows(orig[n], norms[n], s) for n in targets})
            pw = weights(out)
            for e in rep["tensors"]:
                rows, cols = e["shape"]
                z = (pw[e["name"]] == 0).sum(1).tolist()
                z0 = (orig[e["name"]] == 0).sum(1).tolist()
                want = [max(c, zz) for c, zz in zip(row_counts(s, rows, cols), z0)]
                check(z == want and e["zeros_after"] == sum(want) >= nz_round(s, rows * cols),
                      f"rows {s}: {e['name']} prunes round(s * n) over its rows, evenly ({z} vs {want})")
            c = run("check", out, "--sparsity", s, "--include", "weight")
            check(c.returncode == 0, f"rows {s}: sparsify check --sparsity {s} passes ({c.stdout[-300:]})")
            out2 = T(f"row{s}-again.pt")
            run("prune", T("mlp.pt"), "-o", out2, "--sparsity", s, "--score", "wanda", *cal,
                "--include", "weight", "-q", expect=0)
            check(open(out, "rb").read() == open(out2, "rb").read(), f"rows {s}: a second run writes the same bytes")
            check(torch.equal(weights(out)["fc1.bias"], orig["fc1.bias"]), f"rows {s}: biases untouched")
            # layer groups
            outl = T(f"layer{s}.pt")
            run("prune", T("mlp.pt"), "-o", outl, "--sparsity", s, "--score", "wanda", *cal,
                "--wanda-group", "layer", "--include", "weight", "-q", expect=0)
            check_masks(f"layer {s}", orig, weights(outl),
                        {n: ref_mask_layer(orig[n], norms[n], s) for n in targets})
        run("prune", T("mlp.pt"), "-o", T("nm.pt"), "--pattern", "2:4", "--score", "wanda", *cal,
            "--include", "weight", "-q", expect=0)
        check_masks("2:4", orig, weights(T("nm.pt")), {n: ref_mask_nm(orig[n], norms[n], 2, 4) for n in targets})
        run("prune", T("mlp.pt"), "-o", T("blk.pt"), "--sparsity", 0.5, "--pattern", "2x2", "--score", "wanda",
            *cal, "--include", "weight", "-q", expect=0)
        check_masks("2x2 blocks", orig, weights(T("blk.pt")),
                    {n: ref_mask_blocks(orig[n], norms[n], 2, 2, 0.5) for n in targets})
        run("prune", T("mlp.pt"), "-o", T("glob.pt"), "--sparsity", 0.6, "--scope", "global", "--score", "wanda",
            *cal, "--include", "weight", "-q", expect=0)
        gm = ref_mask_global([orig[n] for n in targets], [norms[n] for n in targets], 0.6)
        check_masks("global", orig, weights(T("glob.pt")), dict(zip(targets, gm)))
        # Wanda differs from magnitude here: the outlier feature's weights survive
        run("prune", T("mlp.pt"), "-o", T("mag.pt"), "--sparsity", 0.7, "--include", "weight", "-q", expect=0)
        wm, ww = weights(T("mag.pt"))["fc1.weight"], weights(T("row0.7.pt"))["fc1.weight"]
        check(int((ww[:, 3] != 0).sum()) > int((wm[:, 3] != 0).sum()),
              "wanda keeps more weights of the outlier feature than magnitude does")

        # a recipe with "score": "wanda" prunes exactly as the options do
        with open(T("wanda.json"), "w") as f:
            json.dump({"version": 1, "modifiers": [{"type": "MagnitudePruningModifier", "final_sparsity": 0.7,
                                                    "params": ["re:.*weight"], "score": "wanda"}]}, f)
        run("prune", T("mlp.pt"), "-o", T("recipe.pt"), "--recipe", T("wanda.json"), *cal, "-q", expect=0)
        check(open(T("recipe.pt"), "rb").read() == open(T("row0.7.pt"), "rb").read(),
              "recipe score wanda = --score wanda, byte for byte")
        # llm-compressor's WandaPruningModifier, as its recipes write it: the same
        with open(T("wanda.yaml"), "w") as f:
            f.write("sparsity_stage:\n  run_type: oneshot\n  sparsity_modifiers:\n"
                    "    WandaPruningModifier:\n      sparsity: 0.7\n      mask_structure: '0:0'\n"
                    "      sequential_update: true\n      targets: ['re:.*weight']\n")
        p = run("prune", T("mlp.pt"), "-o", T("recipe-y.pt"), "--recipe", T("wanda.yaml"), *cal, "-q")
        check(p.returncode == 0 and open(T("recipe-y.pt"), "rb").read() == open(T("row0.7.pt"), "rb").read(),
              f"WandaPruningModifier = --score wanda, byte for byte ({p.stderr.strip()!r})")
        p = run("prune", T("mlp.pt"), "-o", T("recipe-n.pt"), "--recipe", T("wanda.yaml"), expect=2)
        check(p.returncode == 2 and p.stderr.startswith("sparsify: error: wanda scores need calibration data"),
              f"WandaPruningModifier without --calibration: exit 2 ({p.stderr.strip()!r})")
        # the default targets leave nothing to chance: head.weight is a default target here
        p = run("prune", T("mlp.pt"), "-o", T("def.pt"), "--sparsity", 0.5, "--score", "wanda", *cal, "--json", expect=0)
        check(p.returncode == 0 and [e["name"] for e in json.loads(p.stdout)["tensors"]] == targets,
              "default targets with wanda")

        # shared weight: both names carry the norms; pruned once
        sh = weights(T("shared.pt"))
        nsh = reference_norms(shared, x[:BATCH])
        run("prune", T("shared.pt"), "-o", T("shared-p.pt"), "--sparsity", 0.5, "--score", "wanda",
            *cal, "-q", expect=0)
        check_masks("shared", sh, weights(T("shared-p.pt")),
                    {n: ref_mask_rows(sh[n], nsh[n], 0.5) for n in ("a.weight", "out.weight")})

        # convolutions: per channel, grouped per row
        co = weights(T("conv.pt"))
        nco = reference_norms(conv, xc[:BATCH].reshape(-1, 2, 5, 5))
        run("prune", T("conv.pt"), "-o", T("conv-p.pt"), "--sparsity", 0.6, "--score", "wanda",
            "--calibration", T("calc.csv"), "-q", expect=0)
        check_masks("conv rows", co, weights(T("conv-p.pt")),
                    {n: ref_mask_rows(co[n], nco[n], 0.6) for n in ("c1.weight", "c2.weight", "fc.weight")})
        run("prune", T("conv.pt"), "-o", T("conv-l.pt"), "--sparsity", 0.6, "--score", "wanda",
            "--wanda-group", "layer", "--calibration", T("calc.csv"), "-q", expect=0)
        check_masks("conv layer", co, weights(T("conv-l.pt")),
                    {n: ref_mask_layer(co[n], nco[n], 0.6) for n in ("c1.weight", "c2.weight", "fc.weight")})
        # a pruned model still runs, with PyTorch
        y = torch.jit.load(T("conv-p.pt"))(xc[:4])
        check(y.shape == (4, 3), "the pruned TorchScript model loads and runs")

        # ---- bad calibration data: exit 2, one line naming the file
        write_csv(T("narrow.csv"), x[:, :11])
        open(T("empty.csv"), "w").close()
        with open(T("nan.csv"), "w") as f:
            f.write(",".join(f"x{j}" for j in range(12)) + "\n" + ",".join(["1"] * 11 + ["nan"]) + "\n")
        xn = x.clone()
        xn[7, 4] = float("nan")
        torch.save({"inputs": xn}, T("nan.pt"))
        xi = x.clone()
        xi[2, 0] = float("inf")
        torch.save({"inputs": xi}, T("inf.pt"))
        before = sorted(os.listdir(tmp))
        for what, data, words in [
            ("wrong width", "narrow.csv", ["narrow.csv", "11 values per sample"]),
            ("empty file", "empty.csv", ["empty.csv"]),
            ("NaN in a CSV", "nan.csv", ["nan.csv"]),
            ("NaN in a tensor file", "nan.pt", ["nan.pt", "non-finite"]),
            ("Inf in a tensor file", "inf.pt", ["inf.pt", "non-finite"]),
            ("missing file", "none.csv", ["none.csv"]),
        ]:
            p = run("prune", T("mlp.pt"), "-o", T("bad.pt"), "--sparsity", 0.5, "--score", "wanda",
                    "--calibration", T(data), expect=2)
            check(p.returncode == 2 and one_error_line(p, *words),
                  f"bad calibration data ({what}): exit 2, one line naming the file: {p.stderr.strip()!r}")
        check(sorted(os.listdir(tmp)) == before, "failed runs leave no file behind")

        for what, args, words in [
            ("wanda without data", ["--sparsity", 0.5, "--score", "wanda"], ["--calibration"]),
            ("data without wanda", ["--sparsity", 0.5, "--calibration", T("cal.pt")], ["--score wanda"]),
            ("unknown score", ["--sparsity", 0.5, "--score", "obs"], ["'obs'"]),
            ("group with 2:4", ["--pattern", "2:4", "--score", "wanda", "--wanda-group", "row", *cal], ["--wanda-group"]),
            ("bad group", ["--sparsity", 0.5, "--score", "wanda", "--wanda-group", "col", *cal], ["'col'"]),
            ("score with a recipe", ["--recipe", T("wanda.json"), "--score", "wanda", *cal], ["--recipe"]),
            ("recipe wanda without data", ["--recipe", T("wanda.json")], ["--calibration"]),
        ]:
            p = run("prune", T("mlp.pt"), "-o", T("bad.pt"), *args, expect=2)
            check(p.returncode == 2 and all(w in p.stderr for w in words) and "error:" in p.stderr,
                  f"{what}: exit 2 ({p.stderr.strip()!r})")
        # the input must be a model libtorch can run
        torch.save(mlp.state_dict(), T("state.pt"))
        p = run("prune", T("state.pt"), "-o", T("bad.pt"), "--sparsity", 0.5, "--score", "wanda", *cal, expect=2)
        check(p.returncode == 2 and one_error_line(p, "state.pt", "TorchScript"),
              f"a state dict cannot be calibrated: exit 2 naming it ({p.stderr.strip()!r})")
        check(not os.path.exists(T("bad.pt")), "no output after failures")
        # a dry run needs no calibration
        p = run("prune", T("mlp.pt"), "--dry-run", "--sparsity", 0.5, "--score", "wanda", expect=0)
        check(p.returncode == 0 and "fc1.weight" in p.stdout, "dry run with wanda, no data needed")
        # finetune refuses a wanda recipe (it has no calibration data)
        p = run("finetune", T("mlp.pt"), "-o", T("ft.pt"), "--data", T("cal.csv"), "--recipe", T("wanda.json"), expect=2)
        check(p.returncode == 2 and one_error_line(p, "wanda", "sparsify prune"),
              f"finetune with a wanda recipe: exit 2 pointing to prune ({p.stderr.strip()!r})")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
