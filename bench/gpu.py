"""The GPU benchmark of issue 16 §6, for a CUDA machine (bench/gpu.sh runs it after the CUDA tests).

1. bf16 autocast: engine fit() with precision "bf16" next to "fp32", MNIST MLP at batch 64 and 256.
2. CUDA graphs: the hand loop of bench/engine.py with its whole training step (forward, loss,
   backward, capturable Adam, metric sums) captured once and replayed per batch, next to the
   same loop eager and to the engine; goal: graphed >= 1.3x the eager hand loop at batch 64.
3. Packed trials: bench/packed.py's sweep-like set on the GPU, fit_packed() vs one fit() at a
   time (HFTA reports up to 15x for packed small models on a GPU).
4. Packed conv nets (issue 28): the two-branch conv net of examples/digits_two_branch_conv.json
   and a 2-conv MNIST-shaped CNN, 8, 32 and 128 trials, one at a time vs packed; goal >= 4x at
   32 (a net that packing refuses is named with the reason and skipped).

Contenders run interleaved, one epoch (or one trial set) each per round after a warm-up round;
a ratio is the median of per-round ratios. The training set is 59,904 samples (a multiple of
64 and 256) so that a graphed step never meets a short last batch.

python -m bench.gpu [--rounds N] [--out PATH]; --dry-run: on a CPU, tiny sizes, every code
path that does not need CUDA (graph capture is skipped), no goals judged.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from bench import engine as bench_engine
from bench import packed as bench_packed
from bench.report import Report, median_ratio
from netfit.engine.data import DataSignature, PreparedData, Split, load_data
from netfit.engine.fit import fit
from netfit.engine.arrays import RawArrays
from netfit.engine.packed import fit_packed
from netfit.packing import packable
from netfit.spec import JobSpec

N_TRAIN, N_VAL = 59_904, 10_000
SETUPS = [bench_engine.Setup((128,), 0.0, 64), bench_engine.Setup((128,), 0.0, 256)]
GRAPH_GOAL = (">=", 1.3)
DEFAULT_OUT = Path(__file__).parent / "results" / "gpu.json"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def engine_epoch(data: bench_engine.BenchData, setup: bench_engine.Setup, dev: torch.device, precision: str) -> Callable[[], float]:
    """fit() for one epoch on `dev`, timed by fit's own epoch report (data moved once, outside)."""
    n = len(data.x) + len(data.x_val)
    spec = JobSpec.model_validate({
        "dataset": {"synthetic": {"kind": "classification", "n_samples": n, "n_features": bench_engine.N_FEATURES,
                                  "n_informative": 8, "n_classes": bench_engine.N_CLASSES}},
        "model": {"layers": bench_engine.spec_layers(setup)},
        "training": {"epochs": 1, "batch_size": setup.batch_size, "optimizer": {"type": "adam", "lr": bench_engine.LR},
                     "device": dev.type, "precision": precision},
    })
    signature = DataSignature(input_shape=(bench_engine.N_FEATURES,), task="classification",
                              n_classes=bench_engine.N_CLASSES, n_targets=1, n_samples=n, has_test_split=False)
    prepared = PreparedData(train=Split(data.x.to(dev), data.y.to(dev)), val=Split(data.x_val.to(dev), data.y_val.to(dev)),
                            test=None, signature=signature, preprocessing={})
    return lambda: fit(spec, prepared).history[0].seconds


class HandLoop:
    """bench/engine.py's hand loop on `dev`, eager or with the training step as one CUDA graph."""

    def __init__(self, data: bench_engine.BenchData, setup: bench_engine.Setup, dev: torch.device, graphed: bool):
        self.dev, self.bs = dev, setup.batch_size
        self.x, self.y = data.x.to(dev), data.y.to(dev)
        self.x_val, self.y_val = data.x_val.to(dev), data.y_val.to(dev)
        self.model = bench_engine.mlp(setup).to(dev)
        # capturable: Adam's step count lives on the GPU, so a replayed graph advances it
        options = {"capturable": True, "foreach": True} if graphed else {"fused": dev.type == "cuda"}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=bench_engine.LR, **options)
        self.loss_fn = nn.CrossEntropyLoss()
        self.sums = torch.zeros(2, device=dev)
        self.graph = self._capture() if graphed else None

    def _step(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        out = self.model(xb)
        loss = self.loss_fn(out, yb)
        loss.backward()
        self.optimizer.step()
        self.sums[0].add_(loss.detach(), alpha=len(yb))
        self.sums[1].add_((out.argmax(1) == yb).sum())

    def _capture(self) -> torch.cuda.CUDAGraph:
        self.static_x = torch.empty(self.bs, self.x.shape[1], device=self.dev)
        self.static_y = torch.empty(self.bs, dtype=self.y.dtype, device=self.dev)
        self.static_x.copy_(self.x[: self.bs])
        self.static_y.copy_(self.y[: self.bs])
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graph asks
            for _ in range(3):
                self.optimizer.zero_grad(set_to_none=True)
                self._step(self.static_x, self.static_y)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates the grads in the graph's pool
        with torch.cuda.graph(graph):
            self._step(self.static_x, self.static_y)
        return graph

    def epoch(self) -> float:
        _sync(self.dev)
        began = time.perf_counter()
        self.model.train()
        self.sums.zero_()
        perm = torch.randperm(len(self.x), device=self.dev)
        for i in range(0, len(self.x), self.bs):
            idx = perm[i : i + self.bs]
            if self.graph is not None:
                torch.index_select(self.x, 0, idx, out=self.static_x)
                torch.index_select(self.y, 0, idx, out=self.static_y)
                self.graph.replay()
            else:
                self.optimizer.zero_grad(set_to_none=True)
                self._step(self.x[idx], self.y[idx])
        self.model.eval()
        val = torch.zeros(2, device=self.dev)
        with torch.inference_mode():
            for i in range(0, len(self.x_val), bench_engine.EVAL_BATCH):
                out = self.model(self.x_val[i : i + bench_engine.EVAL_BATCH])
                yb = self.y_val[i : i + bench_engine.EVAL_BATCH]
                val[0] += nn.functional.cross_entropy(out, yb, reduction="sum")
                val[1] += (out.argmax(1) == yb).sum()
        torch.cat([self.sums, val]).tolist()  # the epoch's one read, which also waits for the GPU
        return time.perf_counter() - began


def interleaved(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds + 1):  # round 0 warms up
        for name in names if r % 2 else names[::-1]:
            seconds = contenders[name]()
            if r:
                times[name].append(seconds)
    return times


def step_benchmarks(report: Report, dev: torch.device, rounds: int, dry_run: bool) -> None:
    data = bench_engine.make_data(512, 128) if dry_run else bench_engine.make_data(N_TRAIN, N_VAL)
    for setup in SETUPS:
        contenders: dict[str, Callable[[], float]] = {
            "hand": HandLoop(data, setup, dev, graphed=False).epoch,
            "engine_fp32": engine_epoch(data, setup, dev, "fp32"),
            "engine_bf16": engine_epoch(data, setup, dev, "bf16"),
        }
        if dev.type == "cuda":
            contenders["hand_graphed"] = HandLoop(data, setup, dev, graphed=True).epoch
        times = interleaved(contenders, rounds)
        key = f"b{setup.batch_size}"
        report.note(f"\n  {setup.label}: seconds per epoch, median of {rounds} rounds")
        for name, ts in times.items():
            report.note(f"    {name:<14} {statistics.median(ts):8.3f} s")
        report.record(f"{key}_seconds", times)
        judged = not dry_run
        report.figure(f"{key}_engine_fp32/hand", median_ratio(times["engine_fp32"], times["hand"]), "x",
                      goal=("<=", 1.05) if judged else None, label="engine fp32 / hand loop (eager)")
        report.figure(f"{key}_engine_fp32/engine_bf16", median_ratio(times["engine_fp32"], times["engine_bf16"]), "x",
                      label="bf16 autocast speed-up (engine fp32 / bf16)")
        if "hand_graphed" in times:
            report.figure(f"{key}_hand/hand_graphed", median_ratio(times["hand"], times["hand_graphed"]), "x",
                          goal=GRAPH_GOAL if setup.batch_size == 64 else None, label="CUDA graph speed-up (hand eager / graphed)")


def alone_vs_packed(specs: list[JobSpec], data: PreparedData, dev: torch.device, rounds: int) -> dict[str, list[float]]:
    """Seconds per round of the trials trained one fit() at a time ("alone") and as one
    fit_packed() ("packed"), interleaved."""

    def alone() -> None:
        for spec in specs:
            fit(spec, data, device=dev.type)

    def timed(work: Callable[[], object]) -> Callable[[], float]:
        def seconds() -> float:
            began = time.perf_counter()
            work()
            _sync(dev)
            return time.perf_counter() - began
        return seconds

    return interleaved({"alone": timed(alone), "packed": timed(lambda: fit_packed(specs, data, device=dev.type))},
                       rounds)


def packed_benchmark(report: Report, dev: torch.device, rounds: int, dry_run: bool) -> None:
    sizes, epochs = ((2, 4), 2) if dry_run else ((32, 128), 30)
    sets = {k: bench_packed.trial_specs(k, epochs=epochs) for k in sizes}
    data = load_data(sets[sizes[0]][0])
    for k in sizes:
        times = alone_vs_packed(sets[k], data, dev, rounds)
        report.note(f"\n  {k} trials on {dev.type}: one at a time {statistics.median(times['alone']):.2f} s, "
                    f"packed {statistics.median(times['packed']):.2f} s")
        report.record(f"packed_k{k}_seconds", times)
        report.figure(f"packed_k{k}_alone/packed", median_ratio(times["alone"], times["packed"]), "x",
                      goal=bench_packed.GOAL if k == bench_packed.GOAL_AT and not dry_run else None,
                      label=f"{k} trials: one at a time / packed")


CONV_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_two_branch_conv.json"
MNIST_CNN = {"name": "mnist-cnn", "dataset": {"id": "mnist-shaped"}, "preprocess": {"features": "scale"},
             "split": {"validation": 0.2, "test": 0.0, "seed": 0},
             "model": {"layers": [
                 {"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": 1, "activation": "relu"},
                 {"type": "maxpool2d", "pool_size": 2},
                 {"type": "conv2d", "filters": 32, "kernel_size": 3, "padding": 1, "activation": "relu"},
                 {"type": "maxpool2d", "pool_size": 2}, {"type": "flatten"}, {"type": "linear", "units": 10}]},
             "training": {"batch_size": 64, "optimizer": {"type": "adam", "lr": 0.001}}}


def conv_trials(base: dict, count: int, epochs: int) -> list[JobSpec]:
    """`count` trials of a conv net with the numbers a random sweep draws (lr, seed)."""
    rng = random.Random(0)
    specs = []
    for i in range(count):
        training = {**base["training"], "epochs": epochs, "seed": rng.randrange(1000), "early_stopping": None,
                    "optimizer": {"type": "adam", "lr": 10 ** rng.uniform(-3.5, -2)}}
        specs.append(JobSpec.model_validate({**base, "name": f"{base['name']}-{i}", "training": training}))
    return specs


def packed_conv_benchmark(report: Report, dev: torch.device, rounds: int, dry_run: bool) -> None:
    """Packed conv nets (issue 28 §1): the lesson's two-branch net on digits and a 2-conv
    MNIST-shaped CNN, one at a time vs packed, at 8, 32 and 128 trials."""
    sizes, epochs, n_images = ((2,), 1, 256) if dry_run else ((8, 32, 128), 5, 8192)
    gen = torch.Generator().manual_seed(0)
    images = RawArrays(torch.randint(0, 256, (n_images, 1, 28, 28), generator=gen, dtype=torch.uint8).numpy(),
                       (torch.arange(n_images) % 10).numpy(), classes=[str(c) for c in range(10)])
    for name, base, raw in (("digits_two_branch", json.loads(CONV_EXAMPLE.read_text()), None),
                            ("mnist_cnn", MNIST_CNN, images)):
        data = load_data(JobSpec.model_validate(base), raw=raw)
        for k in sizes:
            specs = conv_trials(base, k, epochs)
            if (why := packable(specs[0])) is not None:
                report.note(f"\n  {name}: not packed ({why})")
                break
            times = alone_vs_packed(specs, data, dev, rounds)
            report.note(f"\n  {name}, {k} trials of {epochs} epochs on {dev.type}: one at a time "
                        f"{statistics.median(times['alone']):.2f} s, packed {statistics.median(times['packed']):.2f} s")
            report.record(f"packed_{name}_k{k}_seconds", times)
            report.figure(f"packed_{name}_k{k}_alone/packed", median_ratio(times["alone"], times["packed"]), "x",
                          goal=(">=", 4.0) if k == 32 and not dry_run else None,
                          label=f"{name}: {k} trials, one at a time / packed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dry-run", action="store_true", help="on a CPU: tiny sizes, no CUDA-only paths, no goals")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print(f"bench.gpu needs a CUDA GPU: torch {torch.__version__} (CUDA build {torch.version.cuda}) sees none; "
              "run it on a GPU machine (bash bench/gpu.sh), or check it here with --dry-run", file=sys.stderr)
        return 2
    dev = torch.device("cpu" if args.dry_run else "cuda")
    if args.dry_run:
        torch.set_num_threads(1)  # tiny tensors: a second thread only spins against other processes
    rounds = 1 if args.dry_run else args.rounds
    report = Report()
    name = "CPU dry run (figures are not GPU figures)" if args.dry_run else torch.cuda.get_device_name(dev)
    report.begin("gpu", f"{name}, torch {torch.__version__}")
    step_benchmarks(report, dev, rounds, args.dry_run)
    packed_benchmark(report, dev, rounds, args.dry_run)
    packed_conv_benchmark(report, dev, rounds, args.dry_run)
    report.summary()
    report.write(args.out, sys.argv[1:] if argv is None else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
