"""Losses and the metrics measured with them, for one network (fit) or a pack of K (fit_packed).

An epoch's metrics are sums kept on the device - a batch's loss times its size, hits or
squared and absolute errors - read once per epoch and turned into means by `means`: no host
sync per batch. The pack's versions take (K, batch, ...) outputs and give one row per member,
computed as the one-network versions compute them.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from netfit.spec import metric_names as spec_metric_names

from .data import Split
from .layers import Head

EVAL_BATCH = 8192  # evaluation keeps no activations for backward, so batches can be large


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


def make_loss(head: Head, label_smoothing: float = 0.0, reduction: str = "mean") -> nn.Module:
    if head.loss == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction=reduction)
    if head.loss == "bce":
        return nn.BCEWithLogitsLoss(reduction=reduction)
    return {"mse": nn.MSELoss, "mae": nn.L1Loss, "huber": nn.HuberLoss}[head.loss](reduction=reduction)


def to_device(split: Split, head: Head, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A split's inputs as float32 and its targets shaped and typed as the head's loss wants them."""
    x = split.x.to(dev, torch.float32)
    y = split.y
    if head.task == "binary":
        y = y.float().reshape(-1, 1)  # BCEWithLogits wants float targets shaped like the (N, 1) output
    elif head.task == "regression":
        y = y.float().reshape(len(y), -1)
    else:
        y = y.long()
    return x, y.to(dev)


def zeros(names: MetricNames, dev: torch.device) -> list[torch.Tensor]:
    return [torch.zeros((), device=dev) for _ in names.batch]


def accumulate(sums: list[torch.Tensor], head: Head, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor, weight: int) -> None:
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
def evaluate(model: nn.Module, sum_loss_fn: nn.Module, head: Head, split: tuple[torch.Tensor, torch.Tensor],
             names: MetricNames, autocast: Any) -> list[torch.Tensor]:
    """Summed loss and hits/errors over a split, in eval mode (dropout off, batchnorm frozen)."""
    x, y = split
    was_training = model.training
    model.eval()
    sums = zeros(names, x.device)
    for i in range(0, len(x), EVAL_BATCH):
        with autocast:
            out = model(x[i : i + EVAL_BATCH])
            loss = sum_loss_fn(out, y[i : i + EVAL_BATCH])
        accumulate(sums, head, out, y[i : i + EVAL_BATCH], loss, 1)
    model.train(was_training)
    return sums


def means(sums: list[float], names: MetricNames, prefix: str, y: torch.Tensor) -> dict[str, float]:
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


def finite(metrics: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinity become None: reports go into JSON, which has no such numbers."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


# --------------------------------------------------------------------------- a pack's members


def member_losses(head: Head, out: torch.Tensor, y: torch.Tensor, smoothing: list[float]) -> torch.Tensor:
    """Per member, per sample (and target) of (K, batch, ...) outputs: the loss that make_loss's
    function averages or sums; `smoothing` is each member's label smoothing."""
    k_members = out.shape[0]
    if head.loss == "cross_entropy":
        flat_out, flat_y = out.reshape(-1, out.shape[-1]), y.reshape(-1)
        if len(set(smoothing)) == 1:
            return F.cross_entropy(flat_out, flat_y, reduction="none", label_smoothing=smoothing[0]).view(k_members, -1)
        # torch's smoothed cross entropy: (1 - e) * nll + e * mean over classes of -log p
        logp = F.log_softmax(flat_out, -1).view(*out.shape)
        nll = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        e = torch.tensor(smoothing, device=out.device).unsqueeze(1)
        return (1 - e) * nll - e * logp.mean(-1)
    if head.loss == "bce":
        return F.binary_cross_entropy_with_logits(out, y, reduction="none").view(k_members, -1)
    fn = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}[head.loss]
    return fn(out, y, reduction="none").view(k_members, -1)


def member_hits(head: Head, out: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Per member of (K, batch, ...) outputs: correct predictions, or squared and absolute errors."""
    if head.task == "regression":
        err = (out - y).flatten(1)
        return [err.square().sum(1), err.abs().sum(1)]
    if head.task == "binary":
        return [((out > 0) == (y > 0.5)).flatten(1).sum(1).float()]
    return [(out.argmax(-1) == y).sum(1).float()]


def split_metrics(model: nn.Module, head: Head, split: tuple[torch.Tensor, torch.Tensor], names: MetricNames,
                  prefix: str, label_smoothing: float = 0.0, autocast: Any = None) -> dict[str, float | None]:
    """A network's metrics over a whole split (the test metrics of a FitResult)."""
    sums = evaluate(model, make_loss(head, label_smoothing, reduction="sum"), head, split, names,
                    autocast if autocast is not None else contextlib.nullcontext())
    return finite(means(torch.stack(sums).tolist(), names, prefix, split[1]))
