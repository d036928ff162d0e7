"""Learning-rate schedules, stepped once per epoch.

Written out rather than wrapping torch.optim.lr_scheduler: each is a line of arithmetic, the
state is two or three plain numbers (a resume checkpoint stores it as JSON), and cosine stays
at eta_min after t_max instead of climbing back up.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from netfit.spec import CosineLR, ExponentialLR, LRSchedule, ReduceOnPlateau, StepLR, metric_mode


class Schedule:
    """Sets the optimizer's lr for the next epoch after each finished one."""

    def __init__(self, config: LRSchedule, optimizer: torch.optim.Optimizer, epochs: int):
        self.config = config
        self.optimizer = optimizer
        self.base_lr = optimizer.param_groups[0]["lr"]
        self.t_max = getattr(config, "t_max", None) or epochs
        self.epochs_done = 0
        self.lr = self.base_lr
        self.best: float | None = None  # reduce_on_plateau only
        self.bad_epochs = 0

    def step(self, metrics: dict[str, float | None]) -> None:
        self.epochs_done += 1
        cfg = self.config
        if isinstance(cfg, ReduceOnPlateau):
            self._plateau(cfg, metrics.get(cfg.monitor))
        else:
            self.lr = self._closed_form(cfg, self.epochs_done)
        self._apply()

    def _closed_form(self, cfg: StepLR | ExponentialLR | CosineLR, done: int) -> float:
        if isinstance(cfg, StepLR):
            return self.base_lr * cfg.gamma ** (done // cfg.step_size)
        if isinstance(cfg, ExponentialLR):
            return self.base_lr * cfg.gamma**done
        progress = min(done, self.t_max) / self.t_max
        return cfg.eta_min + (self.base_lr - cfg.eta_min) * (1 + math.cos(math.pi * progress)) / 2

    def _plateau(self, cfg: ReduceOnPlateau, value: float | None) -> None:
        if value is None or not math.isfinite(value):
            return
        sign = 1 if metric_mode(cfg.monitor) == "min" else -1
        # relative threshold, as in torch's ReduceLROnPlateau (threshold_mode="rel")
        if self.best is None or sign * value < sign * self.best - cfg.threshold * abs(self.best):
            self.best, self.bad_epochs = value, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > cfg.patience:
            self.lr, self.bad_epochs = max(self.lr * cfg.factor, cfg.min_lr), 0

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr

    STATE = ("epochs_done", "lr", "best", "bad_epochs")  # plain numbers: JSON in the resume state

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.STATE:
            setattr(self, name, state[name])
        self._apply()


def make_schedule(config: LRSchedule | None, optimizer: torch.optim.Optimizer, epochs: int) -> Schedule | None:
    return Schedule(config, optimizer, epochs) if config is not None else None
