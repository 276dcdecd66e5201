"""CLI tests of `sparsify finetune` on real data (the UCI digits shipped in
examples/digits) with real libtorch training.

Every output model is loaded back with PyTorch (torch.jit.load) and measured
here: accuracy on the held-out split, exact zero counts per layer, pruned
weights that stay zero, N:M conformance, bit-identical resumes. Held masks
train on the sparse operator by default (--kernels auto): the same run on
dense kernels ends within noise of it, and the log says which kernels ran.
Epochs are kept small so the whole file runs in well under a minute on two
cores.
"""
import json
import os
import struct
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import SRC, check, nz_round, run, summary, without_libtorch  # noqa: E402
DIGITS = os.path.join(SRC, "examples", "digits")



def split(tmp):
    """The example's split: data rows whose 0-based index % 5 == 0 validate."""
    with open(os.path.join(DIGITS, "digits.csv")) as f:
        lines = f.read().splitlines()
    header, rows = lines[0], lines[1:]
    tr = [r for i, r in enumerate(rows) if i % 5]
    va = [r for i, r in enumerate(rows) if i % 5 == 0]
    for name, part in (("train.csv", tr), ("val.csv", va)):
        with open(os.path.join(tmp, name), "w") as f:
            f.write("\n".join([header] + part) + "\n")
    data = np.array([[float(v) for v in r.split(",")] for r in va], dtype=np.float32)
    return torch.from_numpy(data[:, :-1]), torch.from_numpy(data[:, -1]).long()


def accuracy(path, x, y):
    m = torch.jit.load(path)
    m.eval()
    with torch.no_grad():
        return 100.0 * (m(x).argmax(1) == y).float().mean().item()


def weights(path):
    m = torch.jit.load(path)
    return {n: p.detach().clone() for n, p in m.named_parameters()}


def prunable(name, t):
    return name.endswith("weight") and t.dim() >= 2


def prune_python(src, dst, s):
    """Per-layer magnitude pruning to exactly round(s*n) zeros (the oracle's
    own pruning, used when `sparsify prune` cannot do it in this build)."""
    m = torch.jit.load(src)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if prunable(n, p):
                k = nz_round(s, p.numel())
                idx = p.abs().flatten().argsort(stable=True)[:k]
                p.view(-1)[idx] = 0
    m.save(dst)


def write_safetensors(path, tensors):
    names = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    hdr, off, blobs = {}, 0, []
    for k, t in tensors.items():
        raw = t.contiguous().view(torch.uint8).numpy().tobytes()
        hdr[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    torch.set_num_threads(1)
    if without_libtorch():
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        T = lambda name: os.path.join(tmp, name)
        xva, yva = split(tmp)
        train, val = T("train.csv"), T("val.csv")
        dense = os.path.join(DIGITS, "dense.pt")
        dense_acc = accuracy(dense, xva, yva)
        dense_w = weights(dense)
        check(dense_acc > 90, f"dense example model accuracy {dense_acc:.2f}% > 90%")

        # --eval-only agrees with PyTorch's own measurement.
        p = run("finetune", dense, "--val", val, "--eval-only", "--json", expect=0)
        check(p.returncode == 0, "eval-only runs")
        if p.returncode == 0:
            rep = json.loads(p.stdout)
            check(abs(100 * rep["val_accuracy"] - dense_acc) < 1e-4,
                  f"eval-only accuracy {rep['val_accuracy']} == torch's {dense_acc}")
            check(rep["val_samples"] == len(yva), "eval-only counts the val samples")

        # The 90%-pruned starting model: sparsify prune when it handles
        # TorchScript in this build, else the oracle prunes.
        p90 = T("p90.pt")
        p = run("prune", dense, "-o", p90, "--sparsity", "0.9")
        if p.returncode != 0:
            print("note: sparsify prune unavailable for TorchScript here; pruning with torch:",
                  p.stderr.strip()[:200])
            prune_python(dense, p90, 0.9)
        w90 = weights(p90)
        for n, t in w90.items():
            if prunable(n, t):
                check(int((t == 0).sum()) == nz_round(0.9, t.numel()), f"p90 {n} is 90% sparse")
        p90_acc = accuracy(p90, xva, yva)

        # 1. Sparse transfer learning with held masks recovers accuracy.
        ft, log = T("ft.pt"), T("ft.jsonl")
        args = ["finetune", p90, "-o", ft, "--data", train, "--val", val, "--epochs", 30,
                "--lr", "1e-2", "--lr-schedule", "cosine", "--warmup-epochs", 1, "--seed", 1,
                "--log", log]
        p = run(*args, expect=0)
        check(p.returncode == 0, "held-mask finetune runs")
        if p.returncode == 0:
            ft_acc = accuracy(ft, xva, yva)
            print(f"dense {dense_acc:.2f}%  pruned-90 {p90_acc:.2f}%  fine-tuned {ft_acc:.2f}%",
                  flush=True)
            check(ft_acc >= dense_acc - 1.5,
                  f"fine-tuned 90% model {ft_acc:.2f}% within 1.5 points of dense {dense_acc:.2f}%")
            wft = weights(ft)
            for n, t in wft.items():
                if prunable(n, t):
                    check(int(((w90[n] == 0) & (t != 0)).sum()) == 0, f"{n}: no pruned weight nonzero")
                    check(int((t == 0).sum()) == int((w90[n] == 0).sum()), f"{n}: zero count held")
                    check(not torch.signbit(t[t == 0]).any(), f"{n}: pruned weights are +0.0")
                else:
                    check(not torch.equal(t, w90[n]), f"{n}: trained")
            ev = read_log(log)
            epochs = [e for e in ev if e["event"] == "epoch"]
            check([e["epoch"] for e in epochs] == list(range(1, 31)), "log has one line per epoch")
            check(abs(100 * epochs[-1]["val_accuracy"] - ft_acc) < 1e-4,
                  "log's last val accuracy matches torch's measurement")
            check(abs(epochs[14]["lr"] - 0.005) < 1e-3 and epochs[-1]["lr"] < 1e-4,
                  "warm-up then cosine learning rate")
            # CPU runs repeat exactly.
            p = run(*args[:3], T("ft2.pt"), *args[4:-2], expect=0)
            w2 = weights(T("ft2.pt"))
            check(all(torch.equal(wft[n], w2[n]) for n in wft), "same seed, same weights")
            # The held masks trained on the sparse operator (auto), from the
            # first step, every layer; per-step time in every epoch line.
            kev = [e for e in ev if e["event"] == "kernels"]
            check(len(kev) == 1 and kev[0]["epoch"] == 0 and kev[0]["step"] == 0
                  and [l["name"] for l in kev[0]["layers"] if l["sparse"]] == ["fc1", "fc2", "fc3"],
                  f"kernels event: all three layers sparse from step 0: {kev}")
            check(all(e["kernels"] == "sparse" and e["step_ms"] > 0 for e in epochs),
                  "every epoch line: sparse kernels and step_ms")
            # The same run on dense kernels: within noise, same zeros.
            dlog = T("dense.jsonl")
            p = run(*args[:3], T("ftd.pt"), *args[4:-1], dlog, "--kernels", "dense", expect=0)
            check(p.returncode == 0, "--kernels dense runs")
            if p.returncode == 0:
                dacc = accuracy(T("ftd.pt"), xva, yva)
                print(f"sparse kernels {ft_acc:.2f}%  dense kernels {dacc:.2f}%", flush=True)
                check(abs(dacc - ft_acc) <= 1.5,
                      f"sparse kernels {ft_acc:.2f}% within noise (1.5 points) of dense {dacc:.2f}%")
                wd = weights(T("ftd.pt"))
                check(all(torch.equal(wd[n] == 0, wft[n] == 0) for n in wd if prunable(n, wd[n])),
                      "sparse and dense kernels keep the same zeros")
                dev = read_log(dlog)
                check(not [e for e in dev if e["event"] == "kernels"]
                      and all(e["kernels"] == "dense" and e["step_ms"] > 0
                              for e in dev if e["event"] == "epoch"),
                      "dense run: dense kernels and step_ms in every epoch line")

        # SGD with momentum writes through .data() (no version bump): the
        # sparse operator must still see every update. One epoch on each
        # kernel ends with the same weights up to rounding.
        sg = {}
        for k in ("sparse", "dense"):
            p = run("finetune", p90, "-o", T(f"sgd_{k}.pt"), "--data", train, "--epochs", 1,
                    "--optimizer", "sgd", "--momentum", "0.9", "--lr", "1e-2", "--seed", 3,
                    "--kernels", k, "-q", expect=0)
            sg[k] = weights(T(f"sgd_{k}.pt")) if p.returncode == 0 else None
        if sg["sparse"] and sg["dense"]:
            rel = max(float((sg["sparse"][n] - sg["dense"][n]).abs().max() / sg["dense"][n].abs().max())
                      for n in sg["dense"])
            moved = max(float((sg["dense"][n] - w90[n]).abs().max()) for n in sg["dense"])
            check(moved > 1e-3 and rel < 1e-5,
                  f"SGD: sparse and dense kernels give the same weights (rel diff {rel:.2g})")
        else:
            check(False, "SGD runs on both kernels")

        # 2. Gradual magnitude pruning from dense ends exactly at its target.
        rec = T("gmp.json")
        with open(rec, "w") as f:
            json.dump({"version": 1, "modifiers": [{
                "type": "GMPruningModifier", "params": ["re:fc[12]\\.weight"],
                "init_sparsity": 0.05, "final_sparsity": 0.85, "start_epoch": 0,
                "end_epoch": 2, "update_frequency": 0.5, "inter_func": "cubic"}]}, f)
        gmp, glog = T("gmp.pt"), T("gmp.jsonl")
        p = run("finetune", dense, "-o", gmp, "--data", train, "--val", val, "--epochs", 3,
                "--lr", "3e-3", "--recipe", rec, "--log", glog, expect=0)
        check(p.returncode == 0, "GMP recipe runs")
        if p.returncode == 0:
            wg = weights(gmp)
            for n in ("fc1.weight", "fc2.weight"):
                check(int((wg[n] == 0).sum()) == nz_round(0.85, wg[n].numel()),
                      f"GMP {n} exactly 85% sparse")
            check(int((wg["fc3.weight"] == 0).sum()) == int((dense_w["fc3.weight"] == 0).sum()),
                  "GMP leaves untargeted fc3 alone")
            gev = read_log(glog)
            masks = [e for e in gev if e["event"] == "mask"]
            sp = [e["tensors"]["fc1.weight"]["sparsity"] for e in masks]
            check(len(masks) >= 5 and sp == sorted(sp) and sp[0] < 0.1,
                  f"GMP mask updates logged on schedule, rising: {[round(s, 3) for s in sp]}")
            # After the last update (end_epoch 2) the masked layers move to
            # the sparse operator; the untargeted fc3 has no mask.
            kev = [e for e in gev if e["event"] == "kernels"]
            check(len(kev) == 1 and kev[0]["epoch"] == 2
                  and [l["name"] for l in kev[0]["layers"] if l["sparse"]] == ["fc1", "fc2"]
                  and [l["reason"] for l in kev[0]["layers"] if l["name"] == "fc3"]
                  == ["not masked (trained dense)"],
                  f"GMP: sparse kernels from epoch 2 for fc1, fc2: {kev}")
            check([e["kernels"] for e in gev if e["event"] == "epoch"] == ["dense", "dense", "sparse"],
                  "GMP: epochs 1-2 dense, 3 sparse")
            check(accuracy(gmp, xva, yva) > 90, "GMP model still classifies")

        # 3. Movement pruning: scores accumulate -W*grad, masks keep the top.
        with open(rec, "w") as f:
            json.dump({"version": 1, "modifiers": [{
                "type": "MovementPruningModifier", "params": "__ALL_PRUNABLE__",
                "final_sparsity": 0.9, "start_epoch": 0, "end_epoch": 4,
                "update_frequency": 0.5}]}, f)
        mv = T("mv.pt")
        p = run("finetune", dense, "-o", mv, "--data", train, "--val", val, "--epochs", 8,
                "--lr", "3e-3", "--recipe", rec, expect=0)
        check(p.returncode == 0, "movement recipe runs")
        if p.returncode == 0:
            wm = weights(mv)
            for n, t in wm.items():
                if prunable(n, t):
                    check(int((t == 0).sum()) == nz_round(0.9, t.numel()), f"movement {n} 90% sparse")
            a = accuracy(mv, xva, yva)
            check(a > 80, f"movement model {a:.2f}% > 80%")

        # A schedule that outlasts --epochs: final sparsity applied at the end, warned.
        with open(rec, "w") as f:
            json.dump({"version": 1, "modifiers": [{
                "type": "GMPruningModifier", "final_sparsity": 0.7, "start_epoch": 0,
                "end_epoch": 5, "update_frequency": 1}]}, f)
        p = run("finetune", dense, "-o", T("short.pt"), "--data", train, "--epochs", 3,
                "--optimizer", "sgd", "--momentum", "0.9", "--weight-decay", "1e-4",
                "--lr", "1e-2", "--recipe", rec, expect=0)
        check(p.returncode == 0 and "after --epochs" in p.stderr, "short run: warns")
        if p.returncode == 0:
            check(all(int((t == 0).sum()) == nz_round(0.7, t.numel())
                      for n, t in weights(T("short.pt")).items() if prunable(n, t)),
                  "short run: final sparsity met exactly")

        # 4. Global scope and N:M patterns from the engine.
        gl = T("gl.pt")
        p = run("finetune", dense, "-o", gl, "--data", train, "--epochs", 1, "--recipe",
                "global-90", expect=0)
        if p.returncode == 0:
            wl = [t for n, t in weights(gl).items() if prunable(n, t)]
            tot = sum(t.numel() for t in wl)
            check(sum(int((t == 0).sum()) for t in wl) == nz_round(0.9, tot), "global 90% exact")
        else:
            check(False, "global recipe runs")
        nm = T("nm.pt")
        p = run("finetune", dense, "-o", nm, "--data", train, "--epochs", 1, "--recipe",
                "nm-2-4", expect=0)
        if p.returncode == 0:
            ok = all(int((t.reshape(t.shape[0], -1, 4) != 0).sum(-1).max()) <= 2
                     for n, t in weights(nm).items() if prunable(n, t))
            check(ok, "2:4 pattern holds after training")
        else:
            check(False, "2:4 recipe runs")

        # 5. Distillation from the dense teacher.
        dd = T("distil.pt")
        p = run("finetune", p90, "-o", dd, "--data", train, "--val", val, "--epochs", 5,
                "--lr", "1e-2", "--teacher", dense, "--distill-hardness", "0.7",
                "--distill-temperature", "3", expect=0)
        check(p.returncode == 0, "distillation runs")
        if p.returncode == 0:
            a = accuracy(dd, xva, yva)
            check(a > 85, f"distilled model {a:.2f}% > 85%")
            wd = weights(dd)
            check(all(int(((w90[n] == 0) & (wd[n] != 0)).sum()) == 0 for n in wd if prunable(n, wd[n])),
                  "distillation keeps the masks")

        # 6. A new task: replace the head (2 classes: digit >= 5).
        for src, dst in ((train, T("tr2.csv")), (val, T("va2.csv"))):
            with open(src) as f, open(dst, "w") as g:
                lines = f.read().splitlines()
                g.write(lines[0] + "\n")
                for r in lines[1:]:
                    c = r.split(",")
                    g.write(",".join(c[:-1] + [str(int(int(c[-1]) >= 5))]) + "\n")
        hd = T("head.pt")
        p = run("finetune", p90, "-o", hd, "--data", T("tr2.csv"), "--val", T("va2.csv"),
                "--epochs", 4, "--lr", "1e-2", "--reset-head", "fc3", "--num-classes", 2,
                "--label-column", "label", expect=0)
        check(p.returncode == 0, "head replacement runs")
        if p.returncode == 0:
            m = torch.jit.load(hd)
            check(tuple(m.fc3.weight.shape) == (2, 64) and tuple(m.fc3.bias.shape) == (2,),
                  "new head has 2 outputs")
            a = accuracy(hd, xva, (yva >= 5).long())
            check(a > 85, f"new-task accuracy {a:.2f}% > 85%")

        # 7. Regression on a tensor file (.safetensors, read by sparsify's C reader).
        xtr = torch.tensor(np.loadtxt(train, delimiter=",", skiprows=1, dtype=np.float32))
        st = T("reg.safetensors")
        write_safetensors(st, {"inputs": xtr[:, :-1].half(), "labels": xtr[:, -1:] / 9.0})
        rg, rlog = T("reg.pt"), T("reg.jsonl")
        p = run("finetune", dense, "-o", rg, "--data", st, "--epochs", 4, "--task", "regression",
                "--reset-head", "fc3", "--num-classes", 1, "--optimizer", "sgd", "--lr", "0.05",
                "--momentum", "0.9", "--lr-schedule", "linear", "--log", rlog, expect=0)
        check(p.returncode == 0, "regression on a safetensors file runs")
        if p.returncode == 0:
            losses = [e["train_loss"] for e in read_log(rlog) if e["event"] == "epoch"]
            check(losses[-1] < losses[0], f"regression loss falls: {losses}")
            with torch.no_grad():
                pred = torch.jit.load(rg)(xva)
            mse = float(((pred[:, 0] - yva.float() / 9.0) ** 2).mean())
            check(pred.shape == (len(yva), 1) and mse < 0.05, f"regression val MSE {mse:.4f} < 0.05")

        # A torch.save file of inputs/labels (read by sparsify's torch zip reader).
        ptd = T("train_data.pt")
        torch.save({"inputs": xtr[:, :-1], "labels": xtr[:, -1].long()}, ptd)
        p = run("finetune", p90, "-o", T("ptdata.pt"), "--data", ptd, "--val", val, "--epochs", 3,
                "--lr", "1e-2", "--json", "-q", expect=0)
        check(p.returncode == 0, "training on a torch.save data file runs")
        if p.returncode == 0:
            a = accuracy(T("ptdata.pt"), xva, yva)
            check(a > 90, f".pt data: accuracy {a:.2f}% > 90%")

        # 8. Resume: a run stopped after a checkpoint continues bit for bit.
        common = ["--data", train, "--val", val, "--epochs", 4, "--lr", "5e-3", "--optimizer",
                  "adamw", "--weight-decay", "0.01", "--lr-schedule", "linear", "--seed", 7]
        full = T("full.pt")
        p = run("finetune", p90, "-o", full, *common, "--save-every", 2, expect=0)
        ck = full + ".ckpt"
        check(all(os.path.exists(os.path.join(ck, f)) for f in ("model.pt", "state.pt", "state.json")),
              "checkpoint folder written")
        with open(os.path.join(ck, "state.json")) as f:
            check(json.load(f)["epoch"] == 2, "checkpoint at epoch 2")
        res, rl = T("resumed.pt"), T("resumed.jsonl")
        p = run("finetune", p90, "-o", res, *common, "--resume", ck, "--log", rl, expect=0)
        check(p.returncode == 0, "resume runs")
        if p.returncode == 0:
            ep = [e["epoch"] for e in read_log(rl) if e["event"] == "epoch"]
            check(ep == [3, 4], f"resume trains epochs 3 and 4 only: {ep}")
            check([e["kernels"] for e in read_log(rl) if e["event"] == "epoch"] == ["sparse"] * 2,
                  "the resumed run trains on the sparse operator too")
            a, b = weights(full), weights(res)
            check(all(torch.equal(a[n], b[n]) for n in a), "resumed run equals the uninterrupted one")

        # 9. Bad inputs: exit 2, one clear line, no output left behind.
        bad = T("bad.pt")
        with open(T("ragged.csv"), "w") as f:
            f.write("a,b,c\n1,2,3\n4,5\n")
        with open(train) as f, open(T("narrow.csv"), "w") as g:
            for r in f.read().splitlines():
                g.write(",".join(r.split(",")[1:]) + "\n")
        cases = [
            (["--data", train, "--kernels", "fast"], "unknown value 'fast'"),
            (["--data", train, "--kernels", "sparse", "--device", "cuda"], "run on the CPU"),
            (["--data", train, "--kernels", "sparse", "--no-masks"], "--no-masks"),
            (["--data", train, "--label-column", "digit"], "no column named 'digit'"),
            (["--data", T("ragged.csv")], "ragged.csv':3: row has 2 fields, expected 3"),
            (["--data", T("narrow.csv")], "does not accept inputs of shape [2, 63]"),
            (["--data", train, "--device", "tpu"], "--device 'tpu'"),
            (["--data", train, "--task", "ranking"], "unknown value 'ranking'"),
            (["--data", T("missing.csv")], "cannot open"),
            (["--data", train, "--recipe", "no-such-recipe"], "no-such-recipe"),
        ]
        if not torch.cuda.is_available():
            cases.append((["--data", train, "--device", "cuda"], "has no CUDA"))
        for extra, msg in cases:
            p = run("finetune", p90, "-o", bad, *extra)
            check(p.returncode == 2 and msg in p.stderr,
                  f"{extra[-1]}: exit 2 with '{msg}' (got {p.returncode}: {p.stderr.strip()[:200]})")
            check(not os.path.exists(bad), f"{extra[-1]}: no output left behind")
        p = run("finetune", p90, "--data", train)
        check(p.returncode == 2 and "-o" in p.stderr, "training without -o is a usage error")

        # 10. Outputs (docs/cli.md, "Outputs"): nothing replaced without
        # --force, never an input; the library's temporaries, no PATH.partial.
        out = T("o.pt")
        with open(out, "w") as f:
            f.write("keep me\n")
        with open(out + ".partial", "w") as f:
            f.write("mine too\n")
        quick = ["--data", train, "--epochs", 1, "-q"]
        for args, msg in [
            ([p90, "-o", out, *quick], "exists; use --force"),
            ([p90, "-o", p90, *quick, "--force"], "is the input"),
            ([p90, "-o", train, *quick, "--force"], "is the input"),
            ([p90, "-o", T("fresh.pt"), *quick, "--log", out], "exists; use --force"),
        ]:
            p = run("finetune", *args)
            check(p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1,
                  f"outputs: {args[2]}: exit 2 with '{msg}' ({p.stderr.strip()[:200]})")
        with open(out) as f:
            check(f.read() == "keep me\n", "an existing -o is left untouched")
        check(not os.path.exists(T("fresh.pt")), "a refused --log: no output either")
        p = run("finetune", p90, "-o", out, *quick, "--force", "--save-every", 1, "--epochs", 2,
                expect=0)
        check(p.returncode == 0 and accuracy(out, xva, yva) > 50, "--force replaces -o")
        with open(out + ".partial") as f:
            check(f.read() == "mine too\n", "a file named OUT.partial is not sparsify's")
        check(os.path.exists(out + ".ckpt/state.json")
              and not [n for n in os.listdir(tmp) if "sparsify-tmp" in n or n.endswith(".partial")
                       and n != "o.pt.partial"],
              "checkpoint folder in place, no temporaries left")
        # OUT.ckpt/ exists (not the folder resumed from): refused without --force
        p = run("finetune", p90, "-o", T("o2.pt"), *quick, "--save-every", 1, "--epochs", 2)
        check(p.returncode == 0, "a fresh OUT.ckpt is created")
        p = run("finetune", p90, "-o", T("o3.pt"), *quick, "--save-every", 1, "--epochs", 2,
                "--force")
        os.rename(T("o3.pt.ckpt"), T("o4.pt.ckpt"))
        p = run("finetune", p90, "-o", T("o4.pt"), *quick, "--save-every", 1, "--epochs", 2)
        check(p.returncode == 2 and "o4.pt.ckpt' is not empty; use --force" in p.stderr,
              f"an existing OUT.ckpt is refused: {p.stderr.strip()[:200]}")
        # ... but the checkpoint folder resumed from is the run's own
        p = run("finetune", p90, "-o", T("o2.pt"), *quick, "--save-every", 1, "--epochs", 3,
                "--resume", T("o2.pt.ckpt"), "--force", "--log", T("o2.jsonl"))
        check(p.returncode == 0, f"resume into its own checkpoint folder: {p.stderr.strip()[:200]}")
        with open(T("o2.pt.ckpt/state.json")) as f:
            check(json.load(f)["epoch"] == 2, "the resumed run's checkpoint (epoch 2 of 3)")
        p = run("finetune", "--help")
        check(p.returncode == 0 and "--recipe" in p.stdout, "--help")

    return summary()


if __name__ == "__main__":
    sys.exit(main())
