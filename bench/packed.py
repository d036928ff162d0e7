"""Packed trials (issue 16 §3): a sweep-like set of small-net trials, packed vs one at a time.

The set: wine (178 x 13, 3 classes) or Iris, an MLP 13-32-3 with a dropout layer, batch 16,
Adam, early stopping on val_loss (patience 10), each trial with its own log-uniform learning
rate and weight decay, dropout rate, label smoothing and seed, as a random sweep would draw
them. "One at a time" is engine fit() per trial on this one process (a single worker);
"packed" is one fit_packed() of all of them. Both include each trial's set-up (checks, model
build, test evaluation), as a worker pays it per job. Rounds alternate which goes first; the
ratio is the median of per-round ratios (side by side, so a shared machine's load hits both).

Then the same through the service (issue 16 §3's goal): Redis + PostgreSQL with ONE worker, a
random sweep of K such trials (wine), POST -> the sweep's finished_at, `"packing": true`
(max_concurrent K: one pack) against `"packing": false` (max_concurrent min(K, 64): the worker
takes them one after another from the queue, no ask between two), side by side in one run.

Then conv nets (issue 28 §1): a random sweep's draws (lr, weight decay, dropout, seed) over a
digits_two_branch_conv-like graph (digits 8x8, two conv branches joined, max pooling) and a
2-conv MNIST-shaped CNN with batchnorm (synthetic 28x28, 2,000 training images), packed vs one at
a time, engine level; and the two ways to batch a conv net's members side by side, per
training step: grouped convolutions (the pack's way) vs torch.func.vmap over stacked parameters.

python -m bench packed [--quick] [--rounds N]
"""

from __future__ import annotations

import random
import statistics
import time

from bench.report import Report, median_ratio
from netfit.engine.data import load_data
from netfit.engine.fit import fit
from netfit.engine.packed import fit_packed
from netfit.spec import JobSpec

SIZES = (8, 32, 128)
GOAL_AT = 32  # the goal: >= 8x for a 32-trial sweep
GOAL = (">=", 8.0)
SERVICE_GOALS = {GOAL_AT: GOAL, 128: (">=", 10.0)}  # through the service: 32 trials >= 8 x, 128 >= 10 x
SERVICE_PAIRS = 3


def base_spec(dataset: str, epochs: int) -> dict:
    return {"dataset": {"builtin": dataset}, "split": {"validation": 0.2, "test": 0.2, "seed": 0},
            "preprocess": {"features": "standardize"},
            "model": {"layers": [{"type": "linear", "units": 32}, {"type": "relu"}, {"type": "dropout", "p": 0.1},
                                 {"type": "linear", "units": 3}]},
            "training": {"epochs": epochs, "batch_size": 16, "device": "cpu", "optimizer": {"type": "adam", "lr": 0.01},
                         "early_stopping": {"monitor": "val_loss", "patience": 10}}}


def sweep_body(count: int, *, packing: bool, epochs: int, dataset: str = "wine") -> dict:
    """trial_specs' draws as a random sweep of `count` trials."""
    return {"name": f"bench-packed-{count}-{packing}", "spec": base_spec(dataset, epochs), "method": "random",
            "max_trials": count, "max_concurrent": count if packing else min(count, 64), "seed": 0,
            "packing": packing,
            "parameters": {"training.optimizer.lr": {"min": 10 ** -3.5, "max": 10 ** -1.5, "distribution": "log_uniform"},
                           "training.optimizer.weight_decay": {"min": 1e-5, "max": 1e-2, "distribution": "log_uniform"},
                           "model.layers.2.p": {"values": [0.0, 0.1, 0.2, 0.3]},
                           "training.label_smoothing": {"values": [0.0, 0.05, 0.1]},
                           "training.seed": {"min": 0, "max": 999, "distribution": "int_uniform"}}}


def trial_specs(count: int, *, dataset: str = "wine", epochs: int = 60, seed: int = 0) -> list[JobSpec]:
    """`count` trials of one shape with the numbers a random sweep would draw."""
    rng = random.Random(seed)
    specs = []
    for i in range(count):
        specs.append(JobSpec.model_validate({
            "name": f"trial-{i}",
            "dataset": {"builtin": dataset},
            "split": {"validation": 0.2, "test": 0.2, "seed": 0},
            "preprocess": {"features": "standardize"},
            "model": {"layers": [{"type": "linear", "units": 32}, {"type": "relu"},
                                 {"type": "dropout", "p": rng.choice([0.0, 0.1, 0.2, 0.3])},
                                 {"type": "linear", "units": 3}]},
            "training": {
                "epochs": epochs, "batch_size": 16, "device": "cpu", "seed": rng.randrange(1000),
                "optimizer": {"type": "adam", "lr": 10 ** rng.uniform(-3.5, -1.5), "weight_decay": 10 ** rng.uniform(-5, -2)},
                "label_smoothing": rng.choice([0.0, 0.05, 0.1]),
                "early_stopping": {"monitor": "val_loss", "patience": 10},
            },
        }))
    return specs


def one_at_a_time(specs: list[JobSpec], data) -> float:
    began = time.perf_counter()
    for spec in specs:
        fit(spec, data)
    return time.perf_counter() - began


def packed(specs: list[JobSpec], data) -> float:
    began = time.perf_counter()
    fit_packed(specs, data)
    return time.perf_counter() - began


def run(report: Report, *, quick: bool = False, rounds: int | None = None) -> None:
    run_engine(report, quick=quick, rounds=rounds)
    run_conv(report, quick=quick, rounds=rounds)
    run_service(report, quick=quick)


def run_engine(report: Report, *, quick: bool = False, rounds: int | None = None) -> None:
    rounds = rounds or (1 if quick else 3)
    epochs = 8 if quick else 60
    sizes = SIZES[:2] if quick else SIZES
    report.begin("packed", f"packed trials: wine MLP 13-32-3 + dropout, batch 16, Adam, <= {epochs} epochs with early "
                           f"stopping, per-trial lr / weight decay / dropout / label smoothing / seed; engine level, one process")
    sets = {k: trial_specs(k, epochs=epochs) for k in sizes}
    data = load_data(sets[sizes[0]][0])
    fit_packed(sets[sizes[0]][:2], data)  # warm-up: the first batched kernels and the allocator
    fit(sets[sizes[0]][0], data)
    for k in sizes:
        alone, pack = [], []
        for r in range(rounds):
            for name in (("alone", "packed") if r % 2 == 0 else ("packed", "alone")):
                (alone if name == "alone" else pack).append(
                    one_at_a_time(sets[k], data) if name == "alone" else packed(sets[k], data))
        ratio = median_ratio(alone, pack)
        report.note(f"\n  {k} trials: one at a time {statistics.median(alone):7.2f} s, packed {statistics.median(pack):6.2f} s"
                    f" (median of {rounds})")
        report.record(f"k{k}_seconds", {"alone": alone, "packed": pack})
        report.figure(f"k{k}_alone/packed", ratio, "x", goal=GOAL if k == GOAL_AT else None,
                      label=f"{k} trials: one at a time / packed")


def service_sweep(stack, count: int, *, packing: bool, epochs: int) -> float:
    """POST -> the sweep's finished_at (the server's stamp), seconds."""
    from bench.services import stamp
    from tests.conftest import wait_until

    sent = time.time()
    response = stack.client.post("/v1/sweeps", json=sweep_body(count, packing=packing, epochs=epochs))
    if response.is_error:
        raise RuntimeError(f"POST /v1/sweeps: {response.status_code} {response.text}")
    sweep_id = response.json()["id"]
    sweep = wait_until(lambda: (s := stack.client.get(f"/v1/sweeps/{sweep_id}").json())["status"] != "running" and s,
                       timeout=120 + count * 10, interval=0.1, what="the sweep to end")
    if sweep["status"] != "succeeded" or sweep["trials"]["succeeded"] != count:
        raise RuntimeError(f"the benchmark sweep ended {sweep['status']}: {sweep['error']} {sweep['trials']}")
    return stamp(sweep["finished_at"]) - sent


def run_service(report: Report, *, quick: bool = False) -> None:
    import tempfile
    from pathlib import Path

    import torch

    from bench import stacks

    epochs = 8 if quick else 60
    sizes = SIZES[:1] if quick else SIZES
    report.begin("packed_service", f"packed trials through the service: Redis + PostgreSQL, ONE worker, a random sweep "
                                   f"of K wine trials (<= {epochs} epochs, early stopping), POST -> sweep finished, "
                                   "packing on vs off")
    env = {"OMP_NUM_THREADS": str(torch.get_num_threads()), "NETFIT_MAX_ACTIVE_TRIALS": str(max(SIZES))}
    with tempfile.TemporaryDirectory() as tmp, stacks.redis_pg(Path(tmp), env, workers=1) as stack:
        service_sweep(stack, 2, packing=True, epochs=2)  # warm-up: the worker's first pack, the API's first sweep
        for i, k in enumerate(sizes):
            # a packed sweep of 8 or 32 trials takes 0.5-1.5 s and one pair's ratio varied 6.5-11 x
            # (5 pairs, one quiet run): the median of alternated pairs
            pairs = 1 if quick or k > GOAL_AT else SERVICE_PAIRS
            runs = []
            for j in range(pairs):
                seconds = {}
                for packing in ((False, True) if (i + j) % 2 == 0 else (True, False)):
                    seconds[packing] = service_sweep(stack, k, packing=packing, epochs=epochs)
                report.note(f"\n  {k} trials: one at a time {seconds[False]:7.2f} s, packed {seconds[True]:6.2f} s")
                runs.append(seconds)
            report.record(f"k{k}_seconds", {"alone": [r[False] for r in runs], "packed": [r[True] for r in runs]})
            report.figure(f"k{k}_alone/packed", statistics.median(r[False] / r[True] for r in runs), "x",
                          goal=SERVICE_GOALS.get(k), label=f"{k}-trial sweep: packing off / on"
                          + (f", median of {pairs} pairs" if pairs > 1 else ""))


# --------------------------------------------------------------------------- conv nets

CONV_GOAL = (">=", 4.0)  # issue 28 §1: a 32-trial conv sweep >= 4x packed vs one at a time
TWO_BRANCH = {"blocks": {"two_branch": {"layers": [
    {"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": 1, "activation": "relu", "name": "small"},
    {"type": "conv2d", "filters": 8, "kernel_size": 5, "padding": 2, "activation": "relu", "name": "wide", "inputs": ["input"]},
    {"type": "concat", "inputs": ["small", "wide"]}]}},
    "layers": [{"type": "reshape", "shape": [1, 8, 8]}, {"type": "block", "block": "two_branch", "name": "branches"},
               {"type": "maxpool2d", "pool_size": 2}, {"type": "flatten"}, {"type": "dropout", "p": 0.0},
               {"type": "linear", "units": 10}]}
MNIST_CNN = {"layers": [{"type": "reshape", "shape": [1, 28, 28]},
                        {"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
                        {"type": "relu"}, {"type": "maxpool2d", "pool_size": 2},
                        {"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": 1, "activation": "relu"},
                        {"type": "maxpool2d", "pool_size": 2}, {"type": "flatten"}, {"type": "dropout", "p": 0.0},
                        {"type": "linear", "units": 10}]}
MNIST_TRAIN, MNIST_VAL = 2_000, 500


def conv_trials(count: int, net: str, *, epochs: int, seed: int = 0) -> list[JobSpec]:
    """`count` trials of one conv net with a random sweep's draws (lr, weight decay, dropout, seed)."""
    rng = random.Random(seed)
    model = TWO_BRANCH if net == "two_branch" else MNIST_CNN
    if net == "two_branch":
        data = {"dataset": {"builtin": "digits"}, "split": {"validation": 0.2, "test": 0.2, "stratify": True, "seed": 0},
                "preprocess": {"features": "scale"}}
    else:  # the data come from mnist_data(); the dataset entry only describes their shape
        data = {"dataset": {"synthetic": {"kind": "classification", "n_samples": MNIST_TRAIN + MNIST_VAL,
                                          "n_features": 784, "n_informative": 8, "n_classes": 10}}}
    specs = []
    for i in range(count):
        p = rng.choice([0.0, 0.1, 0.2, 0.3])
        layers = [dict(layer, p=p) if layer["type"] == "dropout" else layer for layer in model["layers"]]
        specs.append(JobSpec.model_validate({
            "name": f"conv-trial-{i}", **data, "model": {**model, "layers": layers},
            "training": {"epochs": epochs, "batch_size": 32, "device": "cpu", "seed": rng.randrange(1000),
                         "optimizer": {"type": "adam", "lr": 10 ** rng.uniform(-3.3, -2),
                                       "weight_decay": 10 ** rng.uniform(-5, -3)},
                         "early_stopping": {"monitor": "val_loss", "patience": 5, "restore_best_weights": True}},
        }))
    return specs


def mnist_data():
    from bench.engine import make_data
    from netfit.engine.data import DataSignature, PreparedData, Split

    d = make_data(MNIST_TRAIN, MNIST_VAL)
    signature = DataSignature(input_shape=(784,), task="classification", n_classes=10, n_targets=1,
                              n_samples=MNIST_TRAIN + MNIST_VAL, has_test_split=False)
    return PreparedData(train=Split(d.x, d.y), val=Split(d.x_val, d.y_val), test=None, signature=signature,
                        preprocessing={})


def conv_approaches(report: Report, members: int, steps: int) -> None:
    """Seconds per training step (forward + backward, K two-branch members at batch 32): grouped
    convolutions (PackedNet) vs torch.func.vmap(grad(functional_call)) over stacked parameters."""
    import torch
    from torch.func import functional_call, grad, vmap
    from torch.nn import functional as F

    from netfit.engine.layers import build_model
    from netfit.engine.packed import PackedNet

    specs = conv_trials(members, "two_branch", epochs=1)
    data = load_data(specs[0])
    models = []
    for spec in specs:  # dropout off in all three (vmap would draw its own masks): the same arithmetic
        torch.manual_seed(spec.training.seed)
        models.append(build_model(spec, data.signature).eval())
    g = torch.Generator().manual_seed(0)
    xb = data.train.x[torch.randint(len(data.train.x), (members, 32), generator=g)].float()
    yb = data.train.y[torch.randint(len(data.train.y), (members, 32), generator=g)].long()

    net = PackedNet(models)
    flat = torch.stack([net.layout.flatten(dict(m.named_parameters())).detach() for m in models])
    net.bind(flat, list(range(members)))

    def grouped() -> None:
        loss = F.cross_entropy(net(xb, False, None).reshape(-1, 10), yb.reshape(-1), reduction="none").view(members, -1)
        for p in net.params:
            p.grad = None
        loss.mean(1).sum().backward()

    stacked = {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]) for name, _ in models[0].named_parameters()}
    template = models[0]

    def member_loss(params, x, y):
        return F.cross_entropy(functional_call(template, params, (x,)), y)

    batched_grad = vmap(grad(member_loss))

    def vmapped() -> None:
        batched_grad(stacked, xb, yb)

    def alone() -> None:  # context: the members' steps one after another, as one-at-a-time trials take them
        for k, m in enumerate(models):
            m.zero_grad(set_to_none=True)
            F.cross_entropy(m(xb[k]), yb[k]).backward()

    seconds: dict[str, list[float]] = {"grouped": [], "vmap": [], "alone": []}
    for r in range(steps + 1):
        for name, step in (("grouped", grouped), ("vmap", vmapped), ("alone", alone))[:: 1 if r % 2 else -1]:
            began = time.perf_counter()
            step()
            if r:
                seconds[name].append(time.perf_counter() - began)
    medians = {k: statistics.median(v) * 1000 for k, v in seconds.items()}
    report.note(f"\n  conv approaches, {members} two-branch members, batch 32, forward + backward per step "
                f"(median of {steps}): grouped conv {medians['grouped']:.2f} ms, vmap {medians['vmap']:.2f} ms, "
                f"one member after another {medians['alone']:.2f} ms")
    report.record(f"conv_step_ms_k{members}", medians)
    report.figure(f"conv_k{members}_vmap/grouped", median_ratio(seconds["vmap"], seconds["grouped"]), "x",
                  label=f"{members} members: vmap step / grouped-conv step")


def run_conv(report: Report, *, quick: bool = False, rounds: int | None = None) -> None:
    rounds = rounds or (1 if quick else 3)
    epochs = 1 if quick else 20  # quick: the suite's smoke test, which must stay short
    sizes = SIZES[:1] if quick else SIZES  # quick: 32 CNNs one at a time would be half the smoke test's time
    report.begin("packed_conv", f"packed conv trials: a digits_two_branch_conv-like graph (digits) and a 2-conv "
                                f"MNIST-shaped CNN with batchnorm ({MNIST_TRAIN} images), batch 32, Adam, <= {epochs} "
                                "epochs with early stopping, per-trial lr / weight decay / dropout / seed; engine level, one process")
    conv_approaches(report, 8 if quick else 32, 5 if quick else 20)
    for net in ("two_branch", "mnist_cnn"):
        # the CNN is compute-bound on a CPU at one member already (packing gains ~1 x): at 20
        # epochs, 3 rounds and 128 trials its section took about an hour. On a CPU it trains 3
        # epochs, one round, up to 32 trials; bench/gpu.sh measures 8, 32 and 128 on a GPU.
        cnn = net == "mnist_cnn" and not quick
        net_sizes = tuple(k for k in sizes if k <= GOAL_AT) if cnn else sizes
        net_epochs = min(epochs, 3) if cnn else epochs
        if cnn:
            report.note(f"\n  mnist_cnn on this CPU: {net_epochs} epochs, one round, {' and '.join(map(str, net_sizes))} trials"
                        " (bench/gpu.sh measures 8, 32 and 128 on a GPU)")
        sets = {k: conv_trials(k, net, epochs=net_epochs) for k in net_sizes}
        data = load_data(sets[net_sizes[0]][0]) if net == "two_branch" else mnist_data()
        fit_packed(sets[net_sizes[0]][:2], data)  # warm-up
        fit(sets[net_sizes[0]][0], data)
        for k in net_sizes:
            alone, pack = [], []
            for r in range(1 if k > GOAL_AT or cnn else rounds):  # 128 one at a time is long: one round
                for name in (("alone", "packed") if r % 2 == 0 else ("packed", "alone")):
                    (alone if name == "alone" else pack).append(
                        one_at_a_time(sets[k], data) if name == "alone" else packed(sets[k], data))
            report.note(f"\n  {net}, {k} trials: one at a time {statistics.median(alone):7.2f} s, packed "
                        f"{statistics.median(pack):6.2f} s (median of {len(alone)})")
            report.record(f"{net}_k{k}_seconds", {"alone": alone, "packed": pack})
            report.figure(f"{net}_k{k}_alone/packed", median_ratio(alone, pack), "x",
                          goal=CONV_GOAL if k == GOAL_AT else None, label=f"{net}, {k} trials: one at a time / packed")
