"""One run's bookkeeping between epochs, the same for fit() and for each member of a pack.

A loop trains and measures; after each epoch it hands the metrics to its MemberRun, which
decides in a fixed order - early stopping (and the best epoch: the loop's weights kept), the
next epoch's lr, the epoch's report, the callbacks (with a resume state only when they want
one), the stop reason - and at the end gives the FitResult. What differs between the loops
(where weights and optimizer state live) comes in as functions the run calls when it needs them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from netfit.spec import JobSpec

from .checkpoints import TrainingState, spec_hash
from .early_stopping import EarlyStopper
from .losses import finite
from .schedules import make_schedule


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

    def wants_states(self, epoch: int, seconds: float) -> bool:
        """Whether on_epoch_end gets this epoch's resume state (None otherwise). Building one copies
        the weights, optimizer state and history to the CPU: a caller that saves a state every few
        seconds declines the others. Default: every epoch."""
        return True

    def on_epoch_end(self, report: EpochReport, state: TrainingState | None) -> str | None:
        """Called after every epoch with the state to resume from (None when wants_states, or a
        pack's PackCallbacks.wants_states, declined this epoch's); may raise to abort the run.
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
    device: str


@dataclass
class Snapshot:
    """What a resume state holds besides the run's own bookkeeping, in torch's formats (CPU)."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    best_weights: dict[str, torch.Tensor] | None


@dataclass
class MemberRun:
    """The bookkeeping of one run. `steered`: what the lr schedule sets (a torch optimizer, or
    anything with param_groups[0]["lr"])."""

    spec: JobSpec
    has_validation: bool
    callbacks: FitCallbacks
    steered: Any
    history: list[EpochReport] = field(default_factory=list)
    best_weights: Any = None  # whatever the loop keeps for the best epoch (on its device)
    best_metrics: dict[str, float | None] = field(default_factory=dict)
    stop_reason: str | None = None

    def __post_init__(self) -> None:
        cfg = self.spec.training
        es = cfg.early_stopping
        # the best epoch is tracked even without early stopping: on val_loss, or train_loss without validation
        self.monitor = es.monitor if es is not None else ("val_loss" if self.has_validation else "train_loss")
        self.stopper = EarlyStopper(es, self.monitor)
        self.schedule = make_schedule(cfg.lr_schedule, self.steered, cfg.epochs)
        self.fingerprint = spec_hash(self.spec)
        self.past: list[dict[str, Any]] = []  # history as the resume state holds it, converted once per epoch
        # skip the per-epoch reports and the clock checks when nobody listens
        self.listens = type(self.callbacks).on_epoch_end is not FitCallbacks.on_epoch_end
        self.polls = type(self.callbacks).should_stop is not FitCallbacks.should_stop

    @property
    def lr(self) -> float:
        return self.steered.param_groups[0]["lr"]

    def restore(self, state: TrainingState, best_weights: Callable[[dict[str, torch.Tensor]], Any]) -> int:
        """Take a resume state's bookkeeping (the loop loads weights, optimizer state and generators);
        `best_weights` turns its best weights into what the loop keeps. The next epoch to train."""
        if state.spec_hash and state.spec_hash != self.fingerprint:
            raise ValueError("the resume state belongs to a different spec; start the run afresh")
        if self.schedule is not None and state.schedule is not None:
            self.schedule.load_state_dict(state.schedule)
        else:
            self.steered.param_groups[0]["lr"] = state.optimizer["param_groups"][0]["lr"]
        self.stopper.load_state_dict(state.early_stopping)
        self.history = [EpochReport(**h) for h in state.history]
        self.past = list(state.history)
        self.best_weights = best_weights(state.best_weights) if state.best_weights else None
        self.best_metrics = dict(state.best_metrics or {})
        return state.epoch + 1

    def end_epoch(self, epoch: int, metrics: dict[str, float | None], seconds: float,
                  layers: list[dict[str, Any]] | None, keep_best: Callable[[], Any],
                  snapshot: Callable[[], Snapshot] | None) -> tuple[bool, str | None]:
        """After an epoch's metrics are measured: early stopping, the best weights (`keep_best()`),
        the next lr, the report, the callbacks (a resume state from `snapshot()` when they want one;
        None: the pack declined it). (stop, reason) as decided so far; settle() ends the epoch."""
        stop, reason = self.stopper.decide(epoch, metrics)
        is_best = self.stopper.best_epoch == epoch
        if is_best:
            self.best_weights = keep_best()
            self.best_metrics = finite(metrics)
        if self.schedule is not None:
            self.schedule.step(metrics)
        report = EpochReport(epoch, finite(metrics), seconds, is_best, finite(self.stopper.progress()), layers)
        self.history.append(report)
        if self.listens:
            self.past.append(asdict(report))
            wanted = snapshot is not None and self.callbacks.wants_states(epoch, seconds)
            verdict = self.callbacks.on_epoch_end(report, self.state(epoch, snapshot()) if wanted else None)
            if verdict and not stop:
                stop, reason = True, verdict
        return stop, reason

    def state(self, epoch: int, snap: Snapshot) -> TrainingState:
        return TrainingState(
            epoch=epoch,
            model=snap.model,
            optimizer=snap.optimizer,
            schedule=self.schedule.state_dict() if self.schedule is not None else None,
            early_stopping=self.stopper.state_dict(),
            rng=snap.rng,
            best_weights=snap.best_weights,
            best_epoch=self.stopper.best_epoch,
            best_metrics=self.best_metrics or None,
            history=list(self.past),
            spec_hash=self.fingerprint,
        )

    def settle(self, epoch: int, stop: bool, reason: str | None) -> str | None:
        """The stop reason after `epoch`, or None to train on: stopped (early stopping, a callback's
        or the pack's verdict), the last epoch done, or cancelled by should_stop()."""
        if stop:
            self.stop_reason = reason or "early_stopping"
        elif epoch >= self.spec.training.epochs:
            self.stop_reason = "max_epochs"
        elif self.polls and self.callbacks.should_stop():
            self.stop_reason = "cancelled"
        return self.stop_reason

    def result(self, test_metrics: dict[str, float | None] | None, best_weights: dict[str, torch.Tensor] | None,
               last_weights: dict[str, torch.Tensor], device: str) -> FitResult:
        return FitResult(
            stop_reason=self.stop_reason or "max_epochs",
            epochs_completed=self.history[-1].epoch if self.history else 0,
            best_epoch=self.stopper.best_epoch,
            best_metrics=self.best_metrics,
            test_metrics=test_metrics,
            history=self.history,
            best_weights=best_weights if best_weights is not None else last_weights,
            last_weights=last_weights,
            device=device,
        )
