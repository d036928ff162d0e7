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
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from netfit.spec import JobSpec, Optimizer
from netfit.spec import metric_names as spec_metric_names

from .checkpoints import TrainingState, capture_rng, cpu_copy, restore_rng, spec_hash
from .data import PreparedData, Split
from .early_stopping import EarlyStopper
from .errors import SpecError
from .layers import Head, build_model, check
from .schedules import make_schedule

EVAL_BATCH = 8192  # evaluation keeps no activations for backward, so batches can be large
POLL_SECONDS = 2.0  # how often should_stop() is asked inside an epoch (a clock read per batch is ~50 ns)
# LayerStats measures gradients on this many evenly spaced steps of an epoch (all of them in a
# shorter one): every step cost ~10% at batch 64 on a CPU (bench engine), 32 of them < 1%
GRAD_SAMPLES = 32


@dataclass
class EpochReport:
    epoch: int  # 1-based
    metrics: dict[str, float | None]  # None: not measured (no validation split) or not finite
    seconds: float
    is_best: bool
    early_stopping: dict[str, Any] | None = None  # EarlyStopper.progress(): the countdown after this epoch
    # per layer with parameters: {index, type, weight_max_abs, weight_norm, grad_norm} (LayerStats)
    layers: list[dict[str, Any]] | None = None


class FitCallbacks:
    """Hooks for whoever runs the loop (the worker persists each epoch). Subclass and override."""

    def on_epoch_end(self, report: EpochReport, state: TrainingState | None) -> str | None:
        """Called after every epoch with the state to resume from (None in a pack whose
        PackCallbacks.wants_states declined this epoch's); may raise to abort the run.
        May return a stop reason (a sweep's pruner: "pruned") to end the run after this epoch."""
        return None

    def should_stop(self) -> bool:
        """Polled after each epoch and about every 2 s inside one; True ends the run as "cancelled"."""
        return False


@dataclass
class FitResult:
    stop_reason: str  # max_epochs | early_stopping | stopping_threshold | divergence | non_finite | cancelled | pruned
    epochs_completed: int
    best_epoch: int | None
    best_metrics: dict[str, float | None]
    test_metrics: dict[str, float | None] | None
    history: list[EpochReport]
    best_weights: dict[str, torch.Tensor]  # CPU; the last weights if no epoch had a finite metric
    last_weights: dict[str, torch.Tensor]  # CPU; as training ended, before any restore
    head: Head
    device: str
    spec_hash: str = field(default="")


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
    callbacks = callbacks or FitCallbacks()
    # skip the per-epoch snapshot and the clock checks when nobody listens
    listens = type(callbacks).on_epoch_end is not FitCallbacks.on_epoch_end
    polls = type(callbacks).should_stop is not FitCallbacks.should_stop
    dev = resolve_device(device or cfg.device)
    plan = check(spec, data.signature)  # every check the API makes, so a library caller gets the same errors
    head = plan.head
    names = metric_names(head)
    es = cfg.early_stopping
    # the best epoch is tracked even without early stopping: on val_loss, or train_loss without validation
    monitor = es.monitor if es is not None else ("val_loss" if data.val is not None else "train_loss")

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
    schedule = make_schedule(cfg.lr_schedule, optimizer, cfg.epochs)
    stopper = EarlyStopper(cfg.early_stopping, monitor)
    shuffle = torch.Generator(device=dev).manual_seed(cfg.seed)
    fingerprint = spec_hash(spec)

    train = _to_device(data.train, head, dev)
    val = _to_device(data.val, head, dev) if data.val is not None else None
    x, y = train
    n, bs = len(x), cfg.batch_size

    history: list[EpochReport] = []
    past: list[dict[str, Any]] = []  # history as the resume state holds it, converted once per epoch
    best_weights: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, float | None] = {}
    start = 1
    if resume is not None:
        if resume.spec_hash and resume.spec_hash != fingerprint:
            raise ValueError("the resume state belongs to a different spec; start the run afresh")
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        if schedule is not None and resume.schedule is not None:
            schedule.load_state_dict(resume.schedule)
        stopper.load_state_dict(resume.early_stopping)
        restore_rng(resume.rng, shuffle)
        history = [EpochReport(**h) for h in resume.history]
        past = list(resume.history)
        best_weights = {k: v.to(dev) for k, v in resume.best_weights.items()} if resume.best_weights else None
        best_metrics = dict(resume.best_metrics or {})
        start = resume.epoch + 1

    stats = LayerStats(model, -(-n // bs)) if layer_stats else None
    stop_reason = "max_epochs"
    next_poll = time.monotonic() + POLL_SECONDS
    for epoch in range(start, cfg.epochs + 1):
        began = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]

        # ---- train: one shuffle, then slices of it. The train metrics are running means over the
        # epoch's batches, as Keras and Lightning report them, not a second pass over the data.
        model.train()
        sums = _zeros(names, dev)
        if stats is not None:
            stats.start_epoch()
        perm = torch.randperm(n, device=dev, generator=shuffle)
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
            _accumulate(sums, head, out, yb, loss.detach(), yb.numel())
            if polls and time.monotonic() >= next_poll:
                if callbacks.should_stop():
                    stop_reason = "cancelled"
                    break
                next_poll = time.monotonic() + POLL_SECONDS
        if stop_reason == "cancelled":
            break  # a half epoch is not reported; the last resume state stays the previous epoch's

        # ---- measure: validation sums, then the epoch's one read from the device
        metrics: dict[str, float | None] = {k: None for k in names.epoch}
        if val is None:
            metrics.update(_means(torch.stack(sums).tolist(), names, "train", y))
        else:
            values = torch.stack(sums + evaluate(forward, sum_loss_fn, head, val, names, autocast)).tolist()
            metrics.update(_means(values[: len(sums)], names, "train", y))
            metrics.update(_means(values[len(sums) :], names, "val", val[1]))
        metrics["lr"] = lr
        per_layer = stats.read() if stats else None

        # ---- decide: early stopping (and best epoch), then the next epoch's lr
        stop, reason = stopper.decide(epoch, metrics)
        is_best = stopper.best_epoch == epoch
        if is_best:
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_metrics = _finite(metrics)
        if schedule is not None:
            schedule.step(metrics)

        report = EpochReport(epoch, _finite(metrics), time.perf_counter() - began, is_best,
                             _finite(stopper.progress()), per_layer)
        history.append(report)
        if listens:
            past.append(asdict(report))
            state = TrainingState(
                epoch=epoch,
                model=cpu_copy(model.state_dict()),
                optimizer=cpu_copy(optimizer.state_dict()),
                schedule=schedule.state_dict() if schedule is not None else None,
                early_stopping=stopper.state_dict(),
                rng=capture_rng(shuffle),
                best_weights=cpu_copy(best_weights),
                best_epoch=stopper.best_epoch,
                best_metrics=best_metrics or None,
                history=list(past),
                spec_hash=fingerprint,
            )
            verdict = callbacks.on_epoch_end(report, state)
            if verdict and not stop:
                stop, reason = True, verdict
        if stop:
            stop_reason = reason or "early_stopping"
            break
        if epoch < cfg.epochs and polls and callbacks.should_stop():
            stop_reason = "cancelled"
            break

    last_weights = cpu_copy(model.state_dict())
    # The test metrics are those of the job's result: the best epoch's weights (the "best"
    # checkpoint, what /predict and the export use by default), with or without early stopping.
    if best_weights is not None:
        model.load_state_dict(best_weights)
    test_metrics = None
    if data.test is not None:
        test = _to_device(data.test, head, dev)
        test_sums = evaluate(forward, sum_loss_fn, head, test, names, autocast)
        test_metrics = _finite(_means(torch.stack(test_sums).tolist(), names, "test", test[1]))

    return FitResult(
        stop_reason=stop_reason,
        epochs_completed=history[-1].epoch if history else 0,
        best_epoch=stopper.best_epoch,
        best_metrics=best_metrics,
        test_metrics=test_metrics,
        history=history,
        best_weights=cpu_copy(best_weights) if best_weights is not None else last_weights,
        last_weights=last_weights,
        head=head,
        device=str(dev),
        spec_hash=fingerprint,
    )


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


def make_loss(head: Head, label_smoothing: float = 0.0, reduction: str = "mean") -> nn.Module:
    if head.loss == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction=reduction)
    if head.loss == "bce":
        return nn.BCEWithLogitsLoss(reduction=reduction)
    return {"mse": nn.MSELoss, "mae": nn.L1Loss, "huber": nn.HuberLoss}[head.loss](reduction=reduction)


def make_optimizer(cfg: Optimizer, params: Any) -> torch.optim.Optimizer:
    # Fused kernels (one kernel for all parameters) are the fastest on CUDA and, measured with
    # torch 2.13 on a 2-core CPU, also on the CPU for Adam; RMSprop has none, so foreach.
    fused = {"fused": True}
    if cfg.type == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, **fused)
    if cfg.type in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.type == "adam" else torch.optim.AdamW
        return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True)


@dataclass(frozen=True)
class MetricNames:
    batch: tuple[str, ...]  # sums kept per batch: ("loss", "correct") or ("loss", "squared", "absolute")
    epoch: tuple[str, ...]  # the keys of EpochReport.metrics

    @property
    def regression(self) -> bool:
        return "squared" in self.batch


def metric_names(head: Head) -> MetricNames:
    batch = ("loss", "squared", "absolute") if head.task == "regression" else ("loss", "correct")
    return MetricNames(batch, (*spec_metric_names(head.task), "lr"))


def _to_device(split: Split, head: Head, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = split.x.to(dev, torch.float32)
    y = split.y
    if head.task == "binary":
        y = y.float().reshape(-1, 1)  # BCEWithLogits wants float targets shaped like the (N, 1) output
    elif head.task == "regression":
        y = y.float().reshape(len(y), -1)
    else:
        y = y.long()
    return x, y.to(dev)


def _zeros(names: MetricNames, dev: torch.device) -> list[torch.Tensor]:
    return [torch.zeros((), device=dev) for _ in names.batch]


def _accumulate(sums: list[torch.Tensor], head: Head, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor, weight: int) -> None:
    """Add a batch's loss (times `weight`: a mean loss times its number of target values makes it a
    sum) and hits or errors to the device-side sums: no host sync, and in-place adds into separate
    scalars, the fewest kernel launches per batch. `out` may require grad: argmax and comparisons
    record no graph, so only the regression error detaches it (one op fewer per classifier step)."""
    sums[0].add_(loss, alpha=weight)
    if head.task == "regression":
        err = out.detach().float() - y
        sums[1].add_(err.square().sum())
        sums[2].add_(err.abs().sum())
    elif head.task == "binary":
        sums[1].add_(((out > 0) == (y > 0.5)).sum())
    else:
        sums[1].add_((out.argmax(1) == y).sum())


@torch.inference_mode()
def evaluate(model: nn.Module, sum_loss_fn: nn.Module, head: Head, split: tuple[torch.Tensor, torch.Tensor], names: MetricNames, autocast: Any) -> list[torch.Tensor]:
    """Summed loss and hits/errors over a split, in eval mode (dropout off, batchnorm frozen)."""
    x, y = split
    was_training = model.training
    model.eval()
    sums = _zeros(names, x.device)
    for i in range(0, len(x), EVAL_BATCH):
        with autocast:
            out = model(x[i : i + EVAL_BATCH])
            loss = sum_loss_fn(out, y[i : i + EVAL_BATCH])
        _accumulate(sums, head, out, y[i : i + EVAL_BATCH], loss, 1)
    model.train(was_training)
    return sums


def _means(sums: list[float], names: MetricNames, prefix: str, y: torch.Tensor) -> dict[str, float]:
    """Means from a split's sums, over target values like the losses' own "mean" (per sample for
    classes, per sample and target for regression); `y` is the split's targets."""
    values = dict(zip(names.batch, sums))
    count = y.numel()
    metrics = {f"{prefix}_loss": values["loss"] / count}
    if names.regression:
        metrics[f"{prefix}_rmse"] = math.sqrt(values["squared"] / count)
        metrics[f"{prefix}_mae"] = values["absolute"] / count
    else:
        metrics[f"{prefix}_accuracy"] = values["correct"] / count
    return metrics


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinity become None: reports go into JSON, which has no such numbers."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
