"""`sparsify finetune --recipe` with real recipes and the training modifiers,
checked with PyTorch and against SparseML's formulas written out here.

- The real recipes of tests/data/recipes/ run a few steps on TorchScript
  models whose names match (tests/make_recipe_models.py) or on the digits
  example: sparse transfer learning holds every zero; a global GMP schedule
  ends at exactly round(0.9 n) zeros; llm-compressor's alternating SparseGPT
  recipe (with --substitute) prunes every decoder layer's Linear weights
  before the first step, to exactly their 70% smallest magnitudes, and holds
  them; without --substitute it exits 2 naming SparseGPTModifier.
- The training modifiers set the epochs and the learning rate (the log's
  rate at every epoch end equals SparseML's formula) unless an option does.
- MovementPruningModifier with mask_mode: soft keeps the pruned weights'
  values, so weights pruned at an early mask update come back later; with
  magnitude (GMP) they never do. A soft run resumed from a checkpoint ends
  bit for bit where an uninterrupted one does.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import SRC, check, nz_round, run, summary, without_libtorch  # noqa: E402

DATA = os.path.join(SRC, "tests", "data", "recipes")
DIGITS = os.path.join(SRC, "examples", "digits")


def params(path):
    return {n: p.detach().clone() for n, p in torch.jit.load(path).named_parameters()}


def log(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def lr_epoch_ends(path):
    return [(e["epoch"], e["lr"]) for e in log(path) if e["event"] == "epoch"]


def close(a, b):
    return abs(a - b) <= 1e-12 + 1e-9 * abs(b)


def digits_split(tmp):
    with open(os.path.join(DIGITS, "digits.csv")) as f:
        lines = f.read().splitlines()
    rows = lines[1:]
    for name, keep in (("train.csv", lambda i: i % 5), ("val.csv", lambda i: i % 5 == 0)):
        with open(os.path.join(tmp, name), "w") as f:
            f.write("\n".join([lines[0]] + [r for i, r in enumerate(rows) if keep(i)]) + "\n")
    return os.path.join(tmp, "train.csv"), os.path.join(tmp, "val.csv")


def transfer(tmp, train):
    """SparseML's sparse transfer-learning card: the zeros of the pruned
    model stay where they are; EpochRangeModifier sets 10 epochs and the
    MultiStepLR its rate, 0.008 then 0.0008 from epoch 5."""
    P = lambda n: os.path.join(tmp, n)  # noqa: E731
    rec = os.path.join(DATA, "classification.transfer_learn_pruned.md")
    run("prune", os.path.join(DIGITS, "dense.pt"), "-o", P("p90.pt"), "--sparsity", "0.9", "-q", expect=0)
    r = run("finetune", P("p90.pt"), "-o", P("t.pt"), "--data", train, "--recipe", rec,
            "--log", P("t.jsonl"), "--json", expect=0)
    check(r.returncode == 0, "transfer-learning card: finetune exit 0")
    if r.returncode:
        return
    done = json.loads(r.stdout.strip().splitlines()[-1])
    check(done["epochs_run"] == 10, f"EpochRangeModifier: 10 epochs ({done['epochs_run']})")
    check("from the recipe: 10 epochs, the learning rate" in r.stderr, "the note says what the recipe sets")
    lrs = lr_epoch_ends(P("t.jsonl"))
    want = [0.008 if e <= 5 else 0.0008 for e, _ in lrs]  # the last step of epoch 5 is before 5.0
    check(all(close(lr, w) for (_, lr), w in zip(lrs, want)), f"MultiStepLR rates {lrs}")
    a, b = params(P("p90.pt")), params(P("t.pt"))
    held = all(torch.equal(a[n] == 0, b[n] == 0) for n in a if n.endswith("weight") and a[n].dim() == 2)
    check(held, "ConstantPruningModifier __ALL_PRUNABLE__: every zero held, no new one")
    check(any(not torch.equal(a[n], b[n]) for n in a), "the kept weights trained")
    # an option wins over the recipe
    r = run("finetune", P("p90.pt"), "-o", P("t2.pt"), "--data", train, "--recipe", rec,
            "--epochs", 2, "--lr", "0.003", "--log", P("t2.jsonl"), "--json", expect=0)
    if r.returncode == 0:
        check(json.loads(r.stdout.strip().splitlines()[-1])["epochs_run"] == 2, "--epochs wins over the recipe")
        check(all(close(lr, 0.003) for _, lr in lr_epoch_ends(P("t2.jsonl"))), "--lr wins over the recipe")
        check("from the recipe" not in r.stderr, "no note when the options decide")


def beans(tmp, models):
    """torchvision's ResNet-50 beans recipe on a TorchScript model with its
    names: a global GMP schedule from epoch 1 (cut to 3 epochs: its final
    sparsity at the end, warned), SetLearningRateModifier then a cosine."""
    P = lambda n: os.path.join(tmp, n)  # noqa: E731
    rec = os.path.join(DATA, "resnet50-beans-pruning-recipe.yaml")
    r = run("finetune", os.path.join(models, "resnet_ts.pt"), "-o", P("b.pt"), "--data",
            os.path.join(models, "images.pt"), "--recipe", rec, "--epochs", 3, "--batch-size", 32,
            "--log", P("b.jsonl"), expect=0)
    check(r.returncode == 0 and "ends at epoch 10, after --epochs 3" in r.stderr, "beans: runs, warns about the cut schedule")
    if r.returncode:
        return
    before, after = params(os.path.join(models, "resnet_ts.pt")), params(P("b.pt"))
    targets = [n for n in before if n.endswith("weight") and before[n].dim() == 4]
    tot = sum(after[n].numel() for n in targets)
    z = sum(int((after[n] == 0).sum()) for n in targets)
    check(len(targets) == 53 and z == nz_round(0.9, tot), f"beans: global 90% over the 53 convs ({z} of {tot})")
    check(all(int((after[n] == 0).sum()) == 0 for n in after if n not in targets and after[n].dim() == 2),
          "beans: the fc layer stays dense")
    # SetLearningRateModifier 1e-4 from 0; cosine 1e-4 -> 5e-5 over epochs 1..10 (3 steps an epoch)
    spe = 3
    for epoch, lr in lr_epoch_ends(P("b.jsonl")):
        e = (epoch * spe - 1) / spe
        want = 1e-4 if e < 1 else 5e-5 + (1e-4 - 5e-5) * (1 + math.cos(math.pi * (e - 1) / 9)) / 2
        check(close(lr, want), f"beans: lr at epoch {epoch} {lr} (SparseML: {want})")


def alternating(tmp, models):
    """llm-compressor's alternating recipe: oneshot SparseGPT stages (0.5,
    then 0.7) between ConstantPruningModifier training stages."""
    P = lambda n: os.path.join(tmp, n)  # noqa: E731
    rec = os.path.join(DATA, "example_alternating_recipe.yaml")
    model, data = os.path.join(models, "tinylm_ts.pt"), os.path.join(models, "vectors.pt")
    r = run("finetune", model, "-o", P("a.pt"), "--data", data, "--recipe", rec, "--epochs", 1)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sparsify: error")]
    check(r.returncode == 2 and len(lines) == 2 and all("SparseGPTModifier is not implemented" in ln
                                                        and "MagnitudePruningModifier" in ln for ln in lines),
          f"alternating: exit 2 naming SparseGPTModifier and the closest ({lines})")
    check(not os.path.exists(P("a.pt")), "alternating: nothing written")
    r = run("finetune", model, "-o", P("a.pt"), "--data", data, "--recipe", rec, "--substitute",
            "--epochs", 2, expect=0)
    if r.returncode:
        return
    before, after = params(model), params(P("a.pt"))
    for n, w in before.items():
        if n.startswith("model.layers.") and n.endswith("_proj.weight"):
            k = nz_round(0.7, w.numel())
            smallest = torch.zeros(w.numel(), dtype=torch.bool)
            smallest[w.abs().flatten().argsort(stable=True)[:k]] = True
            check(torch.equal((after[n] == 0).flatten(), smallest),
                  f"alternating: {n} pruned before training to its 70% smallest, then held")
        elif n == "lm_head.weight":
            check(int((after[n] == 0).sum()) == 0, "alternating: lm_head stays dense")


def movement(tmp, train, val):
    """Soft movement keeps pruned weights, so some come back; GMP never
    lets a pruned weight return. A soft run resumes bit for bit."""
    P = lambda n: os.path.join(tmp, n)  # noqa: E731
    dense = os.path.join(DIGITS, "dense.pt")
    sched = ("init_sparsity: 0.0\n    final_sparsity: 0.9\n    start_epoch: 0\n    end_epoch: 4\n"
             "    update_frequency: 1\n")
    recipes = {
        "gmp": f"pruning_modifiers:\n  - !GMPruningModifier\n    {sched}",
        "soft": f"pruning_modifiers:\n  - !MovementPruningModifier\n    {sched}    mask_mode: soft\n",
    }
    common = ["--data", train, "--lr", "1e-3", "--seed", 3]
    back = {}
    for name, text in recipes.items():
        rp = P(name + ".yaml")
        with open(rp, "w") as f:
            f.write(text)
        # 6 epochs, a checkpoint after epoch 3 (mid-schedule); and the masked
        # model after epoch 2, at 52% (a 3-epoch run is the same run so far)
        r = run("finetune", dense, "-o", P(name + ".pt"), *common, "--val", val, "--epochs", 6,
                "--save-every", 3, "--recipe", rp, expect=0)
        r2 = run("finetune", dense, "-o", P(name + "2.pt"), *common, "--epochs", 3,
                 "--save-every", 2, "--recipe", rp, expect=0)
        if r.returncode or r2.returncode:
            return
        out, early = params(P(name + ".pt")), params(P(name + "2.pt.ckpt/model.pt"))
        for n, w in out.items():
            if w.dim() == 2:
                check(int((w == 0).sum()) == nz_round(0.9, w.numel()), f"{name}: {n} at exactly 90%")
                check(int((early[n] == 0).sum()) == nz_round(0.9 * (1 - 0.75 ** 3), w.numel()),
                      f"{name}: {n} at the cubic schedule's 52% after epoch 2")
        back[name] = sum(int(((early[n] == 0) & (out[n] != 0)).sum()) for n in out if out[n].dim() == 2)
    check(back.get("soft", 0) > 0, f"soft movement: weights pruned at epoch 2 come back later ({back})")
    check(back.get("gmp", 1) == 0, f"GMP: a pruned weight never comes back ({back})")
    # resume from the checkpoint after epoch 3 (soft masks, dense values kept)
    r = run("finetune", "-o", P("soft_resumed.pt"), *common, "--epochs", 6,
            "--resume", P("soft.pt.ckpt"), "--recipe", P("soft.yaml"), expect=0)
    if r.returncode == 0:
        a, b = params(P("soft.pt")), params(P("soft_resumed.pt"))
        check(all(torch.equal(a[n], b[n]) for n in a), "soft movement: a resumed run ends bit for bit the same")


def main():
    torch.set_num_threads(1)
    if without_libtorch():
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        models = os.path.join(tmp, "models")
        subprocess.run([sys.executable, os.path.join(SRC, "tests", "make_recipe_models.py"), models], check=True)
        train, val = digits_split(tmp)
        transfer(tmp, train)
        beans(tmp, models)
        alternating(tmp, models)
        movement(tmp, train, val)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
