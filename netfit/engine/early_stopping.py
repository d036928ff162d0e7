"""Early stopping and best-epoch tracking (the job spec's training.early_stopping): one ordered decision chain per epoch.

The chain runs in a fixed order so that the recorded reason is the most specific one:
non-finite loss → stopping_threshold reached → divergence_threshold crossed → patience used up.
The best epoch is tracked on the monitored metric on every run, with or without an
early_stopping config, because the service keeps the best weights either way.
"""

from __future__ import annotations

import math
from typing import Any

from netfit.spec import SPLITS, EarlyStopping, metric_mode

LOSSES = tuple(f"{split}_loss" for split in SPLITS)


class EarlyStopper:
    """Watches one metric. `decide()` after each epoch; `best_epoch == epoch` means it was the best.

    Without a config it only tracks the best epoch and stops on a non-finite loss, so a
    diverged run ends with a reason instead of training NaNs until the last epoch.
    """

    def __init__(self, config: EarlyStopping | None, monitor: str):
        self.config = config
        self.monitor = monitor
        self.mode = config.resolved_mode if config else metric_mode(monitor)
        self.best: float | None = None  # best finite value seen, for the best weights
        self.best_epoch: int | None = None
        # the value an epoch must beat (by min_delta) to reset patience; starts at the baseline
        self.reference: float | None = config.baseline if config else None
        self.wait = 0

    def decide(self, epoch: int, metrics: dict[str, float | None]) -> tuple[bool, str | None]:
        """Record `epoch`'s metrics; return (stop, reason)."""
        value = metrics.get(self.monitor)
        check_finite = self.config.check_finite if self.config else True
        watched = [metrics.get(name) for name in (*LOSSES, self.monitor)]
        if check_finite and any(v is not None and not math.isfinite(v) for v in watched):
            return True, "non_finite"
        if value is None:
            return False, None
        # with check_finite off, a NaN is simply an epoch that did not improve
        finite = math.isfinite(value)
        if finite and (self.best is None or self._better(value, self.best)):
            self.best, self.best_epoch = value, epoch

        cfg = self.config
        if cfg is None or epoch <= cfg.start_from_epoch:
            return False, None
        if cfg.stopping_threshold is not None and (
            value == cfg.stopping_threshold or self._better(value, cfg.stopping_threshold)
        ):
            return True, "stopping_threshold"
        if cfg.divergence_threshold is not None and self._better(cfg.divergence_threshold, value):
            return True, "divergence"
        if finite and self._improves(value):
            self.reference, self.wait = value, 0
            return False, None
        self.wait += 1
        if self.wait >= cfg.patience:
            return True, "early_stopping"
        return False, None

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def _improves(self, value: float) -> bool:
        if self.reference is None:
            return True
        cfg = self.config
        assert cfg is not None
        delta = cfg.min_delta * abs(self.reference) if cfg.min_delta_mode == "rel" else cfg.min_delta
        target = self.reference - delta if self.mode == "min" else self.reference + delta
        return self._better(value, target)

    def progress(self) -> dict[str, Any]:
        """The countdown as users see it after each epoch (the CLI's and dashboard's one source):
        epochs without improvement (`wait`) of `patience`, and the best value so far."""
        return {"monitor": self.monitor, "mode": self.mode, "best": self.best, "best_epoch": self.best_epoch,
                "wait": self.wait, "patience": self.config.patience if self.config else None}

    STATE = ("best", "best_epoch", "reference", "wait")  # all that a resumed run needs

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.STATE:
            setattr(self, name, state[name])
