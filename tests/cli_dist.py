"""CLI tests of data-parallel `sparsify finetune` on libtorch's c10d (gloo),
on the digits example, loopback only (127.0.0.1, free ports from the kernel).

- Two processes with 32 samples each per step end with the same weights as
  one process with 64, on the same data order, within fp32 rounding: SGD and
  AdamW, held masks (sparse kernels and dense) and a gradual magnitude
  recipe; ranks launched by --nproc, by the flags --rank/--world-size/
  --master and by torchrun's variables; a short last step that leaves a
  rank without samples.
- Masks are identical on both ranks at every update (every rank's CRC-32 in
  the log) and identical to the single process's.
- Only rank 0 writes; the log says the world size.
- A killed rank makes the other exit 1 with one line long before
  --dist-timeout; a stopped rank makes it exit after --dist-timeout; --nproc
  reports a killed worker, stops on SIGINT, and leaves no output behind.
- A checkpoint of a 2-process run resumes in 1 process.
"""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import SPARSIFY, SRC, check, run, summary  # noqa: E402

DIGITS = os.path.join(SRC, "examples", "digits")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weights(path):
    m = torch.jit.load(path)
    return {n: p.detach().clone() for n, p in m.named_parameters()}


def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def same_weights(a, b, what, rtol=2e-5):
    """Same names and shapes, zeros in the same places, values within fp32
    rounding of a different order of summation."""
    worst = 0.0
    for n in a:
        scale = float(a[n].abs().max()) or 1.0
        worst = max(worst, float((a[n] - b[n]).abs().max()) / scale)
    zeros = all(torch.equal(a[n] == 0, b[n] == 0) for n in a)
    check(a.keys() == b.keys() and zeros and worst <= rtol,
          f"{what}: same weights (max rel diff {worst:.2g}), same zeros {zeros}")


def temporaries(folder):
    return glob.glob(os.path.join(folder, ".*sparsify-tmp*"))


def start_rank(rank, world, port, args, env_style=False):
    """One process of a run started by hand, as on several machines."""
    env = dict(os.environ)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [SPARSIFY, "finetune", *map(str, args)]
    if env_style:
        env.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
    else:
        cmd += ["--rank", str(rank), "--world-size", str(world), "--master", f"127.0.0.1:{port}"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_ranks(world, args, env_style=False, rank_args=None):
    port = free_port()
    ps = [start_rank(r, world, port, list(args) + list((rank_args or {}).get(r, [])), env_style)
          for r in range(world)]
    out = []
    for p in ps:
        o, e = p.communicate(timeout=600)
        out.append((p.returncode, o, e))
    return out


def finish(proc, timeout):
    """stderr of proc once it ends (killed after timeout seconds)."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def wait_for(pred, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.1)
    return False


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def main():
    torch.set_num_threads(1)
    p = run("finetune", "x.pt", "-o", "y.pt", "--data", "z.csv")
    if "built without libtorch" in p.stderr:
        print("skip: this sparsify was built without libtorch")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        T = lambda name: os.path.join(tmp, name)
        with open(os.path.join(DIGITS, "digits.csv")) as f:
            lines = f.read().splitlines()
        header, rows = lines[0], lines[1:]
        train, val, small = T("train.csv"), T("val.csv"), T("small.csv")
        for name, part in ((train, [r for i, r in enumerate(rows) if i % 5]),
                           (val, [r for i, r in enumerate(rows) if i % 5 == 0]),
                           (small, rows[:129])):
            with open(name, "w") as f:
                f.write("\n".join([header] + part) + "\n")
        dense = os.path.join(DIGITS, "dense.pt")
        p90 = T("p90.pt")
        p = run("prune", dense, "-o", p90, "--sparsity", "0.9", expect=0)
        check(p.returncode == 0, "the 90% model is pruned")
        recipe = T("gmp.json")
        with open(recipe, "w") as f:
            json.dump({"version": 1, "modifiers": [{
                "type": "GMPruningModifier", "params": ["re:fc[12]\\.weight"],
                "init_sparsity": 0.05, "final_sparsity": 0.85, "start_epoch": 0,
                "end_epoch": 2, "update_frequency": 0.5, "inter_func": "cubic"}]}, f)
        movement = T("movement.json")
        with open(movement, "w") as f:
            json.dump({"version": 1, "modifiers": [{
                "type": "MovementPruningModifier", "params": "__ALL_PRUNABLE__",
                "final_sparsity": 0.8, "start_epoch": 0, "end_epoch": 1.5,
                "update_frequency": 0.25}]}, f)

        # 1. Two processes x 32 = one process x 64. 1437 samples: the last
        # step has 29, 15 and 14 on the two ranks (the loss is scaled so the
        # averaged gradient is still the mean over the 29).
        cases = [
            # name, model, extra options, how the two ranks start
            ("SGD, held masks, sparse kernels", p90,
             ["--optimizer", "sgd", "--momentum", "0.9", "--lr", "1e-2", "--epochs", 2,
              "--kernels", "sparse"], "nproc"),
            ("AdamW, held masks, dense kernels", p90,
             ["--optimizer", "adamw", "--lr", "5e-3", "--weight-decay", "0.01", "--epochs", 2,
              "--lr-schedule", "cosine", "--kernels", "dense"], "env"),
            ("SGD, gradual magnitude", dense,
             ["--optimizer", "sgd", "--momentum", "0.9", "--lr", "1e-2", "--epochs", 3,
              "--recipe", recipe], "flags"),
            ("AdamW, gradual magnitude", dense,
             ["--optimizer", "adamw", "--lr", "3e-3", "--epochs", 3, "--recipe", recipe],
             "nproc"),
            ("AdamW, movement pruning", dense,
             ["--optimizer", "adamw", "--lr", "3e-3", "--epochs", 2, "--recipe", movement],
             "nproc"),
        ]
        for i, (name, model, extra, how) in enumerate(cases):
            one, two = T(f"one{i}.pt"), T(f"two{i}.pt")
            log1, log2 = T(f"one{i}.jsonl"), T(f"two{i}.jsonl")
            common = [model, "--data", train, "--val", val, "--seed", 5, "-q", *extra]
            p = run("finetune", *common, "-o", one, "--batch-size", 64, "--log", log1, expect=0)
            check(p.returncode == 0, f"{name}: one process runs")
            if how == "nproc":
                p = run("finetune", *common, "-o", two, "--batch-size", 32, "--log", log2,
                        "--nproc", 2, expect=0)
                rcs = [p.returncode]
            else:
                # every rank gets the same command line; only rank 0 writes
                res = run_ranks(2, [*common, "-o", two, "--batch-size", 32, "--log", log2],
                                env_style=how == "env")
                rcs = [r[0] for r in res]
                if any(rcs):
                    print(res, flush=True)
                check(res[1][1] == "", f"{name}: rank 1 prints nothing on stdout")
            check(rcs == [0] * len(rcs), f"{name}: two processes run ({how})")
            if not os.path.exists(one) or not os.path.exists(two):
                check(False, f"{name}: both outputs written")
                continue
            a, b, w0 = weights(one), weights(two), weights(model)
            same_weights(a, b, name)
            check(all(not torch.equal(a[n], w0[n]) for n in a), f"{name}: training moved every tensor")
            l1, l2 = read_log(log1), read_log(log2)
            e1 = [e for e in l1 if e["event"] == "epoch"]
            e2 = [e for e in l2 if e["event"] == "epoch"]
            check(len(e1) == len(e2) and all(x["world_size"] == 1 for x in e1)
                  and all(x["world_size"] == 2 and x["global_batch"] == 64
                          and x["allreduce_ms"] > 0 for x in e2),
                  f"{name}: the log says the world size, the global batch and the all-reduce time")
            check(all(abs(x["val_accuracy"] - y["val_accuracy"]) < 1e-9 and
                      abs(x["train_loss"] - y["train_loss"]) < 1e-4 * x["train_loss"]
                      for x, y in zip(e1, e2)),
                  f"{name}: per-epoch loss and validation accuracy agree (val gathered to rank 0)")
            done = [e for e in l2 if e["event"] == "done"]
            check(len(done) == 1 and done[0]["world_size"] == 2, f"{name}: done line, world size 2")
            # masks: every update, on both ranks, and as one process selects them
            m1 = [e["mask_crc32"] for e in l1 if e["event"] == "mask"]
            m2 = [e["rank_mask_crc32"] for e in l2 if e["event"] == "mask"]
            check(len(m2) >= 1 and all(len(c) == 2 and c[0] == c[1] for c in m2),
                  f"{name}: masks identical on both ranks at every update ({len(m2)} updates)")
            check([c[0] for c in m2] == m1,
                  f"{name}: the same masks as one process at every update")
            if "--recipe" in extra:
                check(len(m2) >= 5, f"{name}: the schedule updated the masks {len(m2)} times")
                # the masks scored by movement (or magnitude) are those of one process
                check(all(torch.equal(a[n] == 0, b[n] == 0) for n in a),
                      f"{name}: the final masks are one process's")
            if "--kernels" in extra:
                k = extra[extra.index("--kernels") + 1]
                check(all(x["kernels"] == k for x in e2), f"{name}: trained on {k} kernels")

        # A rank without samples in the last step (129 samples, 2 x 32:
        # the last step has 1), by torchrun's variables.
        p = run("finetune", p90, "-o", T("s1.pt"), "--data", small, "--epochs", 2, "--seed", 2,
                "--optimizer", "sgd", "--lr", "1e-2", "--batch-size", 64, "-q", expect=0)
        res = run_ranks(2, [p90, "-o", T("s2.pt"), "--data", small, "--epochs", 2, "--seed", 2,
                            "--optimizer", "sgd", "--lr", "1e-2", "--batch-size", 32, "-q"],
                        env_style=True)
        check(p.returncode == 0 and [r[0] for r in res] == [0, 0], "small data: both runs")
        if p.returncode == 0 and res[0][0] == 0:
            same_weights(weights(T("s1.pt")), weights(T("s2.pt")), "a rank with no samples")

        # Only rank 0 writes: rank 1 told to write elsewhere writes nothing.
        res = run_ranks(2, [p90, "--data", small, "--epochs", 1, "-q", "--batch-size", 32],
                        rank_args={0: ["-o", T("w0.pt"), "--log", T("w0.jsonl")],
                                   1: ["-o", T("w1.pt"), "--log", T("w1.jsonl"),
                                       "--save-every", 1]})
        check([r[0] for r in res] == [0, 0] and os.path.exists(T("w0.pt"))
              and not any(os.path.exists(T(x)) for x in ("w1.pt", "w1.jsonl", "w1.pt.ckpt")),
              "only rank 0 writes the output, the log and checkpoints")

        # Ranks started with different options or data: rank 0 says so, once.
        with open(T("small2.csv"), "w") as f:
            f.write("\n".join([header] + rows[1:130]) + "\n")
        for r1_args, msg in (([ "--batch-size", 16, "--data", small], "other training options"),
                             (["--batch-size", 32, "--data", T("small2.csv")],
                              "other training data")):
            res = run_ranks(2, [p90, "-o", T("d.pt"), "--epochs", 1, "-q"],
                            rank_args={0: ["--batch-size", 32, "--data", small], 1: r1_args})
            check([r[0] for r in res] == [2, 2] and msg in res[0][2] and res[1][2] == ""
                  and len(res[0][2].strip().splitlines()) == 1,
                  f"rank 1 with {msg}: rank 0 reports it in one line, both exit 2: {res}")

        # 2. Resume a 2-process checkpoint in one process (same global batch).
        ropts = ["--data", train, "--val", val, "--epochs", 4, "--optimizer", "adamw", "--lr",
                 "5e-3", "--weight-decay", "0.01", "--lr-schedule", "linear", "--seed", 7, "-q"]
        p = run("finetune", p90, "-o", T("r2.pt"), *ropts, "--batch-size", 32, "--nproc", 2,
                "--save-every", 2, expect=0)
        ck = T("r2.pt.ckpt")
        ok = p.returncode == 0 and os.path.exists(os.path.join(ck, "state.pt"))
        check(ok, "2 processes write a checkpoint")
        if ok:
            with open(os.path.join(ck, "state.json")) as f:
                st = json.load(f)
            check(st["epoch"] == 2 and st["world_size"] == 2 and st["global_batch"] == 64,
                  f"checkpoint state: {st}")
            p = run("finetune", p90, "-o", T("r1.pt"), *ropts, "--batch-size", 64, "--resume", ck,
                    "--log", T("r1.jsonl"), expect=0)
            check(p.returncode == 0, "1 process resumes it")
            if p.returncode == 0:
                ep = [e["epoch"] for e in read_log(T("r1.jsonl")) if e["event"] == "epoch"]
                check(ep == [3, 4], f"the resumed run trains epochs 3 and 4: {ep}")
                same_weights(weights(T("r2.pt")), weights(T("r1.pt")),
                             "resumed in 1 process vs 2 processes throughout")

        # 3. Failures. A long run to interrupt; the log says when training is on.
        long = [p90, "--data", train, "--epochs", 1000, "--batch-size", 32, "--optimizer", "sgd",
                "--lr", "1e-3", "-q"]

        def training(log):
            return lambda: os.path.exists(log) and '"epoch"' in open(log).read()

        # A killed rank: the other exits 1 with one line, long before the timeout.
        port = free_port()
        r0 = start_rank(0, 2, port, [*long, "-o", T("k.pt"), "--log", T("k.jsonl"),
                                     "--dist-timeout", 120])
        r1 = start_rank(1, 2, port, [*long, "-o", T("k.pt"), "--dist-timeout", 120])
        on = wait_for(training(T("k.jsonl")), 120)
        check(on, "the 2-process run trains")
        t0 = time.time()
        r1.kill()
        r1.communicate()
        err = finish(r0, 60)
        took = time.time() - t0
        lines = err.strip().splitlines()
        check(r0.returncode == 1 and len(lines) == 1 and "rank 0 of 2: lost contact" in lines[0]
              and took < 30,
              f"killed rank 1: rank 0 exits 1 with one line in {took:.1f}s (timeout 120 s): "
              f"{r0.returncode} {err.strip()[:300]}")
        check(not os.path.exists(T("k.pt")) and not temporaries(tmp), "no output, no temporaries")

        # A stopped (hung) rank: the other gives up after --dist-timeout.
        port = free_port()
        r0 = start_rank(0, 2, port, [*long, "-o", T("h.pt"), "--log", T("h.jsonl"),
                                     "--dist-timeout", 3])
        r1 = start_rank(1, 2, port, [*long, "-o", T("h.pt"), "--dist-timeout", 3])
        check(wait_for(training(T("h.jsonl")), 120), "the run to hang trains")
        t0 = time.time()
        r1.send_signal(signal.SIGSTOP)
        err = finish(r0, 60)
        took = time.time() - t0
        r1.kill()
        r1.communicate()
        lines = err.strip().splitlines()
        check(r0.returncode == 1 and len(lines) == 1
              and "no answer from the other ranks within --dist-timeout 3 s" in lines[0]
              and 2.5 < took < 30,
              f"stopped rank 1: rank 0 exits 1 after the timeout ({took:.1f}s): {err.strip()[:300]}")
        check(not os.path.exists(T("h.pt")), "hang: no output")

        # --nproc: a worker killed from outside.
        log = T("n.jsonl")
        lp = subprocess.Popen([SPARSIFY, "finetune", *map(str, long), "-o", T("n.pt"), "--log",
                               log, "--nproc", "2", "--save-every", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        check(wait_for(lambda: os.path.exists(T("n.pt.ckpt/state.json")), 120),
              "--nproc 2 trains and checkpoints")
        kids = children(lp.pid)
        check(len(kids) == 2, f"--nproc 2 runs two processes: {kids}")
        if len(kids) == 2:
            os.kill(kids[1], signal.SIGKILL)
        err = finish(lp, 90)
        check(lp.returncode == 1 and "rank 0 of 2: lost contact" in err
              and "process 1 of 2" in err and "killed by signal 9" in err
              and len(err.strip().splitlines()) == 2,
              f"--nproc: a killed worker is reported, the run exits 1: {err.strip()[:400]}")
        check(not os.path.exists(T("n.pt")) and not any(alive(k) for k in kids),
              "--nproc: no output, no worker left")
        check(os.path.exists(T("n.pt.ckpt/state.json")) and not temporaries(tmp),
              f"--nproc: the last whole checkpoint stays, no temporaries {temporaries(tmp)}")

        # --nproc: SIGINT (Ctrl-C) stops every worker; no output, no temporaries.
        log = T("c.jsonl")
        lp = subprocess.Popen([SPARSIFY, "finetune", *map(str, long), "-o", T("c.pt"), "--log",
                               log, "--nproc", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        check(wait_for(training(log), 120), "--nproc 2 trains (for SIGINT)")
        kids = children(lp.pid)
        lp.send_signal(signal.SIGINT)
        err = finish(lp, 60)
        check(lp.returncode == -signal.SIGINT and len(kids) == 2
              and wait_for(lambda: not any(alive(k) for k in kids), 10),
              f"SIGINT: the launcher and its {len(kids)} workers stop (rc {lp.returncode})")
        check(not os.path.exists(T("c.pt")) and not temporaries(tmp),
              "SIGINT: no output, no temporaries")

        # Usage: bad combinations and values, exit 2 with one line.
        for args, msg in [
            (["--nproc", 2, "--rank", 0], "--nproc starts every process"),
            (["--nproc", 0], "out of range"),
            (["--rank", 0], "--rank and --world-size go together"),
            (["--rank", 2, "--world-size", 2, "--master", "127.0.0.1:1"], "not in [0, 2)"),
            (["--world-size", 2, "--rank", 0], "needs rank 0's address"),
            (["--world-size", 2, "--rank", 0, "--master", "127.0.0.1"], "not ADDR:PORT"),
            (["--backend", "mpi"], "unknown value 'mpi'"),
            (["--dist-timeout", 0], "positive number of seconds"),
        ]:
            p = run("finetune", p90, "-o", T("u.pt"), "--data", small, *args)
            check(p.returncode == 2 and msg in p.stderr and p.stderr.startswith("sparsify: error:"),
                  f"{args}: exit 2 with '{msg}' ({p.returncode}: {p.stderr.strip()[:200]})")
        env = dict(os.environ, WORLD_SIZE="two")
        p = subprocess.run([SPARSIFY, "finetune", p90, "-o", T("u.pt"), "--data", small], env=env,
                           capture_output=True, text=True)
        check(p.returncode == 2 and "environment variable WORLD_SIZE" in p.stderr,
              "a bad WORLD_SIZE is named")
        if not torch.cuda.is_available():
            p = run("finetune", p90, "-o", T("u.pt"), "--data", small, "--backend", "nccl")
            check(p.returncode == 2 and "has no NCCL" in p.stderr
                  and len(p.stderr.strip().splitlines()) == 1,
                  f"--backend nccl without a CUDA libtorch: exit 2, one line: {p.stderr.strip()}")
        # Bad input with --nproc: reported once (rank 0 checks before the others start).
        p = run("finetune", p90, "-o", T("u.pt"), "--data", T("missing.csv"), "--nproc", 2)
        check(p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
              and "missing.csv" in p.stderr, f"--nproc, bad input: one line: {p.stderr.strip()}")
        check(not os.path.exists(T("u.pt")), "no output after usage errors")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
