"""The training loop: a spec and prepared data in, a trained network and its history out.

Built for speed (README.md, "Benchmarks"), and meant to read top to bottom: the data set is
moved to the device once; an epoch is one randperm and index slicing (a DataLoader would
collate sample by sample); metrics are summed on the device and read once per epoch (an
.item() per batch would stall a GPU); evaluation runs under inference_mode in big batches.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import torch
from torch import nn

from netfit.spec import JobSpec

from .checkpoints import TrainingState, capture_rng, cpu_copy, restore_rng
from .data import PreparedData
from .errors import SpecError
from .layers import build_model, check
from .losses import accumulate, evaluate, make_loss, means, metric_names, split_metrics, to_device, zeros
from .optimizers import make_optimizer
from .run import EpochReport, FitCallbacks, FitResult, MemberRun, Snapshot

__all__ = ["EpochReport", "FitCallbacks", "FitResult", "LayerStats", "fit", "resolve_device"]

POLL_SECONDS = 2.0  # how often should_stop() is asked inside an epoch (a clock read per batch is ~50 ns)
# LayerStats measures gradients on this many evenly spaced steps of an epoch (all of them in a
# shorter one): every step cost ~10% at batch 64 on a CPU (bench engine), 32 of them < 1%
GRAD_SAMPLES = 32


def epoch_order(n: int, shuffle: bool, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The training samples' order for one epoch: a permutation drawn from `generator`, or, with
    shuffle off, the data's own order (the generator untouched). The packed trainer uses it too."""
    if shuffle:
        return torch.randperm(n, device=device, generator=generator)
    return torch.arange(n, device=device)


def fit(
    spec: JobSpec,
    data: PreparedData,
    *,
    callbacks: FitCallbacks | None = None,
    resume: TrainingState | None = None,
    device: str | None = None,
    layer_stats: bool = False,
) -> FitResult:
    """layer_stats: also measure each layer's weights and gradients every epoch (EpochReport.layers,
    see LayerStats); the service always does (bench engine: engine_stats / engine, goal <= 1.03)."""
    cfg = spec.training
    dev = resolve_device(device or cfg.device)
    plan = check(spec, data.signature)  # every check the API makes, so a library caller gets the same errors
    head = plan.head
    names = metric_names(head)

    # Same seed, same device => same initial weights, same shuffles, same dropout masks.
    torch.manual_seed(cfg.seed)
    model = build_model(spec, data.signature, device=dev, plan=plan)
    forward = torch.compile(model) if cfg.compile and dev.type == "cuda" else model
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cfg.precision == "bf16" and dev.type == "cuda"
        else contextlib.nullcontext()
    )
    loss_fn = make_loss(head, cfg.label_smoothing)
    sum_loss_fn = make_loss(head, cfg.label_smoothing, reduction="sum")
    optimizer = make_optimizer(cfg.optimizer, model.parameters())
    run = MemberRun(spec, data.val is not None, callbacks or FitCallbacks(), optimizer)
    shuffle = torch.Generator(device=dev).manual_seed(cfg.seed)

    train = to_device(data.train, head, dev)
    val = to_device(data.val, head, dev) if data.val is not None else None
    x, y = train
    n, bs = len(x), cfg.batch_size

    start = 1
    if resume is not None:
        start = run.restore(resume, lambda best: {k: v.to(dev) for k, v in best.items()})
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        restore_rng(resume.rng, shuffle)

    def keep_best() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def snapshot() -> Snapshot:
        return Snapshot(cpu_copy(model.state_dict()), cpu_copy(optimizer.state_dict()), capture_rng(shuffle),
                        cpu_copy(run.best_weights))

    stats = LayerStats(model, -(-n // bs)) if layer_stats else None
    polls = run.polls
    next_poll = time.monotonic() + POLL_SECONDS
    for epoch in range(start, cfg.epochs + 1):
        began = time.perf_counter()
        lr = run.lr

        # ---- train: one shuffle (or the data's order), then slices of it. The train metrics are
        # running means over the epoch's batches, as Keras and Lightning report them, not a second pass over the data.
        model.train()
        sums = zeros(names, dev)
        if stats is not None:
            stats.start_epoch()
        perm = epoch_order(n, cfg.shuffle, shuffle, dev)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            xb, yb = x[idx], y[idx]
            with autocast:
                out = forward(xb)
                loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if stats is not None:
                stats.add_grads(i // bs)  # before clipping: the gradient the loss gave
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            accumulate(sums, head, out, yb, loss.detach(), yb.numel())
            if polls and time.monotonic() >= next_poll:
                if run.callbacks.should_stop():
                    run.stop_reason = "cancelled"
                    break
                next_poll = time.monotonic() + POLL_SECONDS
        if run.stop_reason == "cancelled":
            break  # a half epoch is not reported; the last resume state stays the previous epoch's

        # ---- measure: validation sums, then the epoch's one read from the device
        metrics: dict[str, float | None] = {k: None for k in names.epoch}
        if val is None:
            metrics.update(means(torch.stack(sums).tolist(), names, "train", y))
        else:
            values = torch.stack(sums + evaluate(forward, sum_loss_fn, head, val, names, autocast)).tolist()
            metrics.update(means(values[: len(sums)], names, "train", y))
            metrics.update(means(values[len(sums) :], names, "val", val[1]))
        metrics["lr"] = lr
        per_layer = stats.read() if stats else None

        # ---- decide: early stopping and the best epoch, the next lr, the report, the callbacks
        stop, reason = run.end_epoch(epoch, metrics, time.perf_counter() - began, per_layer, keep_best, snapshot)
        if run.settle(epoch, stop, reason):
            break

    last_weights = cpu_copy(model.state_dict())
    # The test metrics are those of the job's result: the best epoch's weights (the "best"
    # checkpoint, what /predict and the export use by default), with or without early stopping.
    if run.best_weights is not None:
        model.load_state_dict(run.best_weights)
    test_metrics = None
    if data.test is not None:
        test_metrics = split_metrics(forward, head, to_device(data.test, head, dev), names, "test",
                                     cfg.label_smoothing, autocast)
    best = cpu_copy(run.best_weights) if run.best_weights is not None else None
    return run.result(test_metrics, best, last_weights, str(dev))


# --------------------------------------------------------------------------- pieces of the loop


class LayerStats:
    """Per layer with parameters: max |w| and ||w|| at the end of an epoch, and the gradient's
    norm over the epoch: the root mean square of its norm on at most GRAD_SAMPLES evenly spaced steps
    (every step when the epoch has fewer). The squared norms are summed on the device - one
    foreach kernel per measured step, no host sync - and everything is read once per epoch."""

    def __init__(self, model: nn.Module, batches: int):
        # index: the spec layer the module came from (build_model tags it), as the summary numbers layers
        held = [(getattr(m, "spec_index", i), m) for i, m in enumerate(model.children())
                if any(True for _ in m.parameters(recurse=False))]
        self.layers = [(i, type(m).__name__.lower(), list(m.parameters(recurse=False))) for i, m in held]
        self.params = [p for _, _, ps in self.layers for p in ps]
        self.owner = torch.tensor([k for k, (_, _, ps) in enumerate(self.layers) for _ in ps], dtype=torch.long)
        self.weights = [dict(m.named_parameters(recurse=False)).get("weight", ps[0])
                        for (_, m), (_, _, ps) in zip(held, self.layers)]
        self.stride = max(1, -(-batches // GRAD_SAMPLES))
        self.grad_sq: torch.Tensor | None = None
        self.steps = 0

    def start_epoch(self) -> None:
        self.grad_sq = torch.zeros(len(self.params), device=self.params[0].device) if self.params else None
        self.steps = 0

    def add_grads(self, batch: int) -> None:
        """After the backward pass of the epoch's `batch`-th step; measures every stride-th one."""
        if self.grad_sq is None or batch % self.stride:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self.grad_sq.add_(torch.stack(torch._foreach_norm(grads)).square())
        self.steps += 1

    @torch.no_grad()
    def read(self) -> list[dict[str, Any]] | None:
        if self.grad_sq is None:
            return None
        dev = self.grad_sq.device
        per_layer = torch.zeros(len(self.layers), device=dev).index_add_(0, self.owner.to(dev), self.grad_sq)
        weights = [w.detach() for w in self.weights]
        grad, norm, peak = torch.stack([
            (per_layer / max(self.steps, 1)).sqrt(),
            torch.stack(torch._foreach_norm(weights)),
            torch.stack(torch._foreach_norm(weights, math.inf)),
        ]).tolist()  # one read from the device
        return [{"index": i, "type": kind, "weight_max_abs": peak[k], "weight_norm": norm[k], "grad_norm": grad[k]}
                for k, (i, kind, _) in enumerate(self.layers)]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError.at(["training", "device"], f"device '{name}' asked for, but this worker has no CUDA GPU: use \"auto\" or \"cpu\"")
    return torch.device(name)
