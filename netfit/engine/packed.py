"""Packed trials: K networks of one shape trained together as one batched model (issue 16 §3).

A sweep's trials often differ only in numbers that do not change a network's shape: learning
rate, weight decay, momentum, betas, dropout rate, seed, label smoothing, epochs, early stopping,
lr schedule, gradient clipping. `fit_packed` trains such specs side by side: every weight is
stacked along a leading member axis (K, ...), a linear layer is one batched matmul (baddbmm)
for all members, and the optimizer updates one flat (K, P) tensor with per-member
hyper-parameters as (K, 1) columns. A step costs about the kernels of one trial's step, so on a
CPU, where small nets are bound by per-op dispatch, K trials cost little more than one.
(Measured here for 32 Iris-size MLPs: stacked weights + autograd ~25 µs per member-step,
torch.func vmap(grad(functional_call)) ~130 µs, one trial alone ~700 µs per step: stacked wins.)

Each member keeps what fit() gives a job, computed the way fit() computes it: its own initial
weights (built under its seed), data order (its own shuffle generator), dropout masks (its own
generator, drawn as CPU dropout draws them), optimizer state, lr schedule, early stopping and
best epoch, metrics, callbacks (on_epoch_end with a TrainingState that plain fit() can resume,
should_stop), and FitResult. A member that stops (early stopping, a pruner's verdict, its own
epochs, cancel) leaves the pack at that epoch's end; the others train on in a smaller pack.

What differs from fit(), precisely:
- float rounding: batched matmuls and an unfused optimizer (fit uses fused Adam/SGD) round
  differently, so per-epoch metrics agree to float tolerance, not bit for bit;
- on CUDA, dropout masks come from one pack generator (fit's CUDA dropout kernel draws its
  own way), so members with dropout match fit in distribution only;
- a member cancelled inside an epoch ends with the weights at that epoch's end as its last
  weights (fit keeps the half-trained ones; neither reports that epoch);
- EpochReport.seconds is the pack's epoch (what each member waited), not a share of it;
- compile and bf16 precision are not packed (packable() says so); nor are layers other than
  linear, activations, dropout, flatten/reshape and layernorm.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from netfit.packing import MEMBER_OPTIMIZER, MEMBER_TRAINING, group_packs, pack_key, packable  # noqa: F401 (re-exported)
from netfit.spec import JobSpec

from .checkpoints import TrainingState, capture_rng, cpu_copy, spec_hash
from .data import PreparedData
from .early_stopping import EarlyStopper
from .fit import (EVAL_BATCH, POLL_SECONDS, EpochReport, FitCallbacks, FitResult, _finite, _means, _to_device,
                  evaluate, make_loss, make_optimizer, metric_names, resolve_device)
from .layers import Plan, Reshape, build_model, check
from .schedules import make_schedule

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Identity)
ADAM_EPS, RMSPROP_ALPHA, RMSPROP_EPS = 1e-8, 0.99, 1e-8  # torch's defaults, which fit() uses


# --------------------------------------------------------------------------- the batched network


class _Layout:
    """Where each parameter of a member's network lies in its row of the flat (K, P) tensor."""

    def __init__(self, model: nn.Module):
        self.names, self.shapes, self.offsets = [], [], []
        offset = 0
        for name, p in model.named_parameters():
            self.names.append(name)
            self.shapes.append(tuple(p.shape))
            self.offsets.append(offset)
            offset += p.numel()
        self.size = offset

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [flat[:, o : o + math.prod(s)].view(len(flat), *s) for o, s in zip(self.offsets, self.shapes)]

    def row(self, flat_row: torch.Tensor) -> dict[str, torch.Tensor]:
        """One member's parameters (a row of a flat tensor) as a state dict (views of the row)."""
        return {n: flat_row[o : o + math.prod(s)].view(s) for n, o, s in zip(self.names, self.offsets, self.shapes)}

    def flatten(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([state[n].reshape(-1) for n in self.names])


class _Net:
    """A member's nn.Sequential, re-expressed on (K, batch, ...) inputs with stacked weights."""

    def __init__(self, models: list[nn.Sequential], layout: _Layout):
        self.layout = layout
        self.ops: list[tuple[str, Any]] = []
        index = 0  # position in the layout's parameter list
        for pos, m in enumerate(models[0]):
            if isinstance(m, nn.Linear):
                self.ops.append(("linear", (index, m.bias is not None)))
                index += 1 + (m.bias is not None)
            elif isinstance(m, nn.LayerNorm):
                self.ops.append(("layernorm", (index, m.eps, m.normalized_shape)))
                index += 2
            elif isinstance(m, nn.Dropout):
                self.ops.append(("dropout", [float(model[pos].p) for model in models]))
            elif isinstance(m, nn.Flatten):
                self.ops.append(("reshape", (-1,)))
            elif isinstance(m, Reshape):
                self.ops.append(("reshape", m.shape))
            elif isinstance(m, ACTIVATIONS):
                self.ops.append(("act", m))
            else:
                raise ValueError(f"layer {pos} ({type(m).__name__}) cannot be packed")
        self.params: list[torch.Tensor] = []
        self.keep: list[torch.Tensor | None] = []  # per dropout op: 1 - p as (K, 1, ...), None if p = 0 for all

    def bind(self, flat: torch.Tensor, rates: list[list[float]]) -> None:
        """Point the parameters at `flat` (leaf views: the optimizer updates flat in place) and set
        the dropout rates of the members now in the pack."""
        self.params = [v.requires_grad_() for v in self.layout.views(flat)]
        self.rates = rates
        self.keep = [None if not any(r) else torch.tensor([1 - p for p in r], device=flat.device) for r in rates]

    def __call__(self, x: torch.Tensor, training: bool, generators: list[torch.Generator] | None) -> torch.Tensor:
        k_members, batch = x.shape[0], x.shape[1]
        drop = 0
        for kind, arg in self.ops:
            if kind == "linear":
                i, bias = arg
                w = self.params[i]
                x = torch.baddbmm(self.params[i + 1].unsqueeze(1), x, w.transpose(1, 2)) if bias else torch.bmm(x, w.transpose(1, 2))
            elif kind == "act":
                x = arg(x)
            elif kind == "reshape":
                x = x.reshape(k_members, batch, *arg)
            elif kind == "layernorm":
                i, eps, shape = arg
                x = F.layer_norm(x, shape, eps=eps)
                extra = (1,) * (x.dim() - 1 - len(shape))  # (K, U) weights over (K, batch, ..., U)
                x = x * self.params[i].view(k_members, *extra, *shape) + self.params[i + 1].view(k_members, *extra, *shape)
            else:
                keep = self.keep[drop]
                if training and keep is not None:
                    x = x * _dropout_noise(x, self.rates[drop], keep, generators)
                drop += 1
        return x


def _dropout_noise(x: torch.Tensor, rates: list[float], keep: torch.Tensor, generators: list[torch.Generator] | None) -> torch.Tensor:
    """The scaled keep-mask per member. With a generator per member, member k's mask is drawn as
    CPU dropout draws it from the global generator in fit() (bernoulli_(1 - p), then / (1 - p))."""
    view = (-1,) + (1,) * (x.dim() - 1)
    if generators is None:  # one draw for the pack (CUDA)
        return (torch.rand_like(x) < keep.view(view)).to(x.dtype).div_(keep.view(view))
    noise = torch.ones_like(x)
    for k, p in enumerate(rates):
        if p:
            noise[k].bernoulli_(1 - p, generator=generators[k])
    return noise.div_(keep.view(view))


# --------------------------------------------------------------------------- losses and metrics


def _losses(head, out: torch.Tensor, y: torch.Tensor, smoothing: list[float]) -> torch.Tensor:
    """Per member, per sample (and target): the loss fit()'s loss function averages or sums."""
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


def _hits(head, out: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Per member: correct predictions, or squared and absolute errors (fit's batch sums)."""
    if head.task == "regression":
        err = (out - y).flatten(1)
        return [err.square().sum(1), err.abs().sum(1)]
    if head.task == "binary":
        return [((out > 0) == (y > 0.5)).flatten(1).sum(1).float()]
    return [(out.argmax(-1) == y).sum(1).float()]


# --------------------------------------------------------------------------- the optimizer


class _Optimizer:
    """SGD, Adam, AdamW or RMSprop on the flat (K, P) parameters, torch's update rules with a
    column of hyper-parameters per member; state tensors are (K, P) like the parameters."""

    SLOTS = {"sgd": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq"),
             "rmsprop": ("square_avg", "momentum_buffer")}

    def __init__(self, kind: str, flat: torch.Tensor, members: list[Any]):
        self.kind, self.steps = kind, 0
        self.state = {slot: torch.zeros_like(flat) for slot in self.SLOTS[kind]}
        self.set_members(members, flat.device)

    def set_members(self, members: list[Any], dev: torch.device) -> None:
        col = lambda values: torch.tensor(values, dtype=torch.float32, device=dev).unsqueeze(1)  # noqa: E731
        opts = [m.spec.training.optimizer for m in members]
        self.lr = col([m.lr for m in members])
        self.wd = col([o.weight_decay for o in opts])
        self.any_wd = any(o.weight_decay for o in opts)
        self.momentum = col([o.momentum for o in opts])
        self.nesterov = torch.tensor([o.nesterov for o in opts], device=dev).unsqueeze(1)
        self.any_nesterov = any(o.nesterov for o in opts)
        self.beta1, self.beta2 = col([o.betas[0] for o in opts]), col([o.betas[1] for o in opts])
        clips = [m.spec.training.grad_clip for m in members]
        self.clip = col([c if c is not None else math.inf for c in clips]) if any(c is not None for c in clips) else None

    def set_lr(self, lrs: list[float]) -> None:
        self.lr = torch.tensor(lrs, dtype=torch.float32, device=self.lr.device).unsqueeze(1)

    def keep(self, rows: torch.Tensor) -> None:
        self.state = {k: v[rows] for k, v in self.state.items()}

    @torch.no_grad()
    def step(self, p: torch.Tensor, g: torch.Tensor) -> None:
        self.steps += 1
        if self.clip is not None:  # clip_grad_norm_ per member: its norm over all its parameters
            g.mul_((self.clip / (g.norm(dim=1, keepdim=True) + 1e-6)).clamp_(max=1.0))
        if self.kind == "adamw":
            p.mul_(1 - self.lr * self.wd)
        elif self.any_wd:
            g = g + self.wd * p
        s = self.state
        if self.kind == "sgd":
            buf = s["momentum_buffer"].mul_(self.momentum).add_(g)
            update = torch.where(self.nesterov, g + self.momentum * buf, buf) if self.any_nesterov else buf
            p.sub_(self.lr * update)
        elif self.kind in ("adam", "adamw"):
            s["exp_avg"].lerp_(g, 1 - self.beta1)
            s["exp_avg_sq"].mul_(self.beta2).add_((1 - self.beta2) * g * g)
            step_size = self.lr / (1 - self.beta1**self.steps)
            denom = (s["exp_avg_sq"].sqrt() / (1 - self.beta2**self.steps).sqrt()).add_(ADAM_EPS)
            p.sub_(step_size * s["exp_avg"] / denom)
        else:
            s["square_avg"].mul_(RMSPROP_ALPHA).add_((1 - RMSPROP_ALPHA) * g * g)
            buf = s["momentum_buffer"].mul_(self.momentum).add_(g / s["square_avg"].sqrt().add_(RMSPROP_EPS))
            p.sub_(self.lr * buf)

    def member_state(self, row: int, layout: _Layout, template: dict[str, Any], member: Any) -> dict[str, Any]:
        """Member `row`'s state as its own torch optimizer's state_dict (what fit() resumes from)."""
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        has_buffer = member.spec.training.optimizer.momentum != 0
        for i, (o, shape) in enumerate(zip(layout.offsets, layout.shapes)):
            piece = lambda slot: self.state[slot][row, o : o + math.prod(shape)].view(shape)  # noqa: E731
            if self.kind == "sgd":
                per_param[i] = {"momentum_buffer": piece("momentum_buffer")} if has_buffer else {}
            elif self.kind in ("adam", "adamw"):
                per_param[i] = {"step": torch.tensor(float(self.steps)), "exp_avg": piece("exp_avg"), "exp_avg_sq": piece("exp_avg_sq")}
            else:
                per_param[i] = {"step": torch.tensor(float(self.steps)), "square_avg": piece("square_avg")}
                if has_buffer:
                    per_param[i]["momentum_buffer"] = piece("momentum_buffer")
        groups = [{**g, "lr": member.lr} for g in template["param_groups"]]
        return {"state": per_param, "param_groups": groups}

    def load_member(self, row: int, layout: _Layout, state: dict[str, Any]) -> None:
        by_index = {int(k): v for k, v in state["state"].items()}
        for slot, tensor in self.state.items():
            parts = [by_index.get(i, {}).get(slot) for i in range(len(layout.names))]
            if all(p is not None for p in parts):
                tensor[row] = torch.cat([p.reshape(-1) for p in parts]).to(tensor.device)
        steps = [int(v["step"]) for v in by_index.values() if "step" in v]
        self.steps = steps[0] if steps else self.steps


# --------------------------------------------------------------------------- members


class _LR:
    """The optimizer surface a Schedule steers: one param group holding a member's lr."""

    def __init__(self, lr: float):
        self.param_groups = [{"lr": lr}]


@dataclass
class _Member:
    index: int  # position in the caller's list
    spec: JobSpec
    plan: Plan
    callbacks: FitCallbacks
    stopper: EarlyStopper
    lr_holder: _LR
    schedule: Any
    shuffle: torch.Generator
    dropout: torch.Generator
    optimizer_template: dict[str, Any]
    fingerprint: str
    history: list[EpochReport] = field(default_factory=list)
    past: list[dict[str, Any]] = field(default_factory=list)  # history as a resume state holds it, made once per epoch
    best_weights: torch.Tensor | None = None  # a flat row
    best_metrics: dict[str, float | None] = field(default_factory=dict)
    stop_reason: str | None = None
    cancelled: bool = False

    @property
    def lr(self) -> float:
        return self.lr_holder.param_groups[0]["lr"]

    @property
    def listens(self) -> bool:
        return type(self.callbacks).on_epoch_end is not FitCallbacks.on_epoch_end

    @property
    def polls(self) -> bool:
        return type(self.callbacks).should_stop is not FitCallbacks.should_stop


class PackCallbacks:
    """Hooks for whoever runs the whole pack (the worker persists its members together)."""

    def wants_states(self, epoch: int, seconds: float) -> bool:
        """Whether the members' on_epoch_end get this epoch's resume states (None otherwise): each
        is a copy of a member's weights and optimizer state, which a persister saving them every
        few seconds would mostly throw away (32 wine members: about 0.25 s of a 2.4-s sweep,
        measured). Default: always."""
        return True

    def on_epoch_end(self, epoch: int, members: list[int]) -> dict[int, str]:
        """Called once per pack epoch, after every member's own on_epoch_end, with the indexes of
        the members that reported this epoch. May return stop reasons ("pruned") by member index:
        one place to write all members' rows at once before their pruners judge them."""
        return {}

    def on_members_end(self, results: dict[int, FitResult]) -> None:
        """Members left the pack after the same epoch (stopped, pruned, cancelled, their own epochs
        done): their results by member index, in one call (one write for all), while the others
        train on."""


def _plans(specs: list[JobSpec], data: PreparedData) -> list[Plan]:
    """check() for each spec, once per distinct network/monitor combination (a trace costs
    10-60 ms; the per-member numbers other than these change nothing it checks)."""
    cache: dict[str, Plan] = {}
    plans = []
    for spec in specs:
        t = spec.training
        key = json.dumps([pack_key(spec), bool(t.label_smoothing), t.early_stopping and t.early_stopping.monitor,
                          getattr(t.lr_schedule, "monitor", None)])
        if key not in cache:
            cache[key] = check(spec, data.signature)
        plans.append(cache[key])
    return plans


def fit_packed(
    specs: list[JobSpec],
    data: PreparedData,
    *,
    callbacks: list[FitCallbacks | None] | None = None,
    resume: list[TrainingState | None] | None = None,
    device: str | None = None,
    pack: PackCallbacks | None = None,
) -> list[FitResult]:
    """Train `specs` (same pack_key, all packable()) together on `data`; one FitResult per spec,
    in order. callbacks[k] and resume[k] are member k's, as fit()'s callbacks and resume; `pack`
    hears each pack epoch and each member's end."""
    if not specs:
        return []
    keys = {pack_key(s) for s in specs}
    if len(keys) != 1:
        raise ValueError("these specs differ in more than per-trial numbers (lr, weight decay, momentum, betas, "
                         "dropout rate, seed, label smoothing, epochs, early stopping, lr schedule, grad clip): "
                         "group them by pack_key() first")
    for s in specs:
        if (why := packable(s)) is not None:
            raise ValueError(why)
    callbacks = callbacks or [None] * len(specs)
    resume = resume or [None] * len(specs)
    if len({r.epoch for r in resume if r is not None} | ({0} if None in resume else set())) > 1:
        raise ValueError("a pack resumes from one epoch: every member's resume state must be of the same epoch")
    dev = resolve_device(device or specs[0].training.device)
    plans = _plans(specs, data)
    head = plans[0].head
    names = metric_names(head)

    # ---- members: each built exactly as fit() builds it (same seed => same initial weights)
    models, members = [], []
    for k, (spec, plan) in enumerate(zip(specs, plans)):
        cfg = spec.training
        torch.manual_seed(cfg.seed)
        model = build_model(spec, data.signature, device=dev, plan=plan)
        dropout = torch.Generator()
        dropout.set_state(torch.get_rng_state())  # what fit()'s CPU dropout would draw from
        monitor = cfg.early_stopping.monitor if cfg.early_stopping else ("val_loss" if data.val is not None else "train_loss")
        holder = _LR(cfg.optimizer.lr)
        members.append(_Member(
            index=k, spec=spec, plan=plan, callbacks=callbacks[k] or FitCallbacks(),
            stopper=EarlyStopper(cfg.early_stopping, monitor), lr_holder=holder,
            schedule=make_schedule(cfg.lr_schedule, holder, cfg.epochs),
            shuffle=torch.Generator(device=dev).manual_seed(cfg.seed), dropout=dropout,
            optimizer_template=make_optimizer(cfg.optimizer, model.parameters()).state_dict(),
            fingerprint=spec_hash(spec)))
        models.append(model)
    layout = _Layout(models[0])
    net = _Net(models, layout)
    flat = torch.stack([layout.flatten(dict(m.named_parameters())).detach() for m in models])
    optimizer = _Optimizer(specs[0].training.optimizer.type, flat, members)
    start = 1
    for row, (m, state) in enumerate(zip(members, resume)):
        if state is None:
            continue
        if state.spec_hash and state.spec_hash != m.fingerprint:
            raise ValueError(f"resume state {row} belongs to a different spec; start the run afresh")
        flat[row] = layout.flatten(state.model).to(dev)
        optimizer.load_member(row, layout, state.optimizer)
        if m.schedule is not None and state.schedule is not None:
            m.schedule.load_state_dict(state.schedule)
        else:
            m.lr_holder.param_groups[0]["lr"] = state.optimizer["param_groups"][0]["lr"]
        m.stopper.load_state_dict(state.early_stopping)
        m.dropout.set_state(state.rng["torch"])
        if state.rng["shuffle_device"] == dev.type:
            m.shuffle.set_state(state.rng["shuffle"])
        m.history = [EpochReport(**h) for h in state.history]
        m.past = list(state.history)
        m.best_weights = layout.flatten(state.best_weights).to(dev) if state.best_weights else None
        m.best_metrics = dict(state.best_metrics or {})
        start = state.epoch + 1
    optimizer.set_lr([m.lr for m in members])

    train = _to_device(data.train, head, dev)
    val = _to_device(data.val, head, dev) if data.val is not None else None
    x, y = train
    n, bs = len(x), specs[0].training.batch_size
    exact_dropout = dev.type == "cpu"
    results: dict[int, FitResult] = {}

    pack = pack or PackCallbacks()

    def finish(rows: list[int]) -> None:
        ended = {members[row].index: _result(members[row], flat[row], layout, data, head, names, dev) for row in rows}
        results.update(ended)
        pack.on_members_end(ended)

    def rows_changed() -> None:
        net.bind(flat, [[rates[m.index] for m in members] for rates in dropout_rates])
        optimizer.set_members(members, dev)

    dropout_rates = [dict(enumerate(rates)) for kind, rates in net.ops if kind == "dropout"]
    rows_changed()
    next_poll = time.monotonic() + POLL_SECONDS
    epoch = start
    while members and epoch <= max(m.spec.training.epochs for m in members):
        began = time.perf_counter()
        lrs = [m.lr for m in members]
        k_members = len(members)
        generators = [m.dropout for m in members] if exact_dropout else None

        # ---- train: member k's batches are the slices of its own shuffle, as in fit()
        perms = torch.stack([torch.randperm(n, device=dev, generator=m.shuffle) for m in members])
        sums = torch.zeros(k_members, len(names.batch), device=dev)
        smoothing = [m.spec.training.label_smoothing for m in members]
        for i in range(0, n, bs):
            idx = perms[:, i : i + bs]
            xb, yb = x[idx], y[idx]
            out = net(xb, True, generators)
            per_sample = _losses(head, out, yb, smoothing)
            loss = per_sample.mean(1)
            for p in net.params:
                p.grad = None
            loss.sum().backward()  # members share no weight: each gets its own loss's gradient
            grads = torch.cat([p.grad.view(k_members, -1) for p in net.params], 1)
            optimizer.step(flat, grads)
            with torch.no_grad():
                sums += torch.stack([loss.detach() * per_sample.shape[1], *_hits(head, out.detach(), yb)], 1)
            if time.monotonic() >= next_poll:
                for m in members:
                    if m.polls and not m.cancelled and m.callbacks.should_stop():
                        m.cancelled = True
                next_poll = time.monotonic() + POLL_SECONDS

        # ---- measure: one read from the device for every member
        columns = [sums]
        if val is not None:
            columns.append(_evaluate(net, head, val, smoothing))
        values = torch.cat(columns, 1).tolist()
        seconds = time.perf_counter() - began  # each member waited for the whole pack's epoch

        # ---- decide, member by member, as fit() does after each epoch
        leaving: list[int] = []
        decided: list[tuple[int, _Member, bool, str | None]] = []
        states = pack.wants_states(epoch, seconds)
        for row, m in enumerate(members):
            if m.cancelled:
                m.stop_reason = "cancelled"
                leaving.append(row)
                continue
            metrics: dict[str, float | None] = {k: None for k in names.epoch}
            metrics.update(_means(values[row][: len(names.batch)], names, "train", y))
            if val is not None:
                metrics.update(_means(values[row][len(names.batch) :], names, "val", val[1]))
            metrics["lr"] = lrs[row]
            stop, reason = m.stopper.decide(epoch, metrics)
            is_best = m.stopper.best_epoch == epoch
            if is_best:
                m.best_weights = flat[row].detach().clone()
                m.best_metrics = _finite(metrics)
            if m.schedule is not None:
                m.schedule.step(metrics)
            report = EpochReport(epoch, _finite(metrics), seconds, is_best, _finite(m.stopper.progress()))
            m.history.append(report)
            if m.listens:
                m.past.append(asdict(report))
                state = _state(m, row, epoch, flat, layout, optimizer) if states else None
                verdict = m.callbacks.on_epoch_end(report, state)
                if verdict and not stop:
                    stop, reason = True, verdict
            decided.append((row, m, stop, reason))
        # the pack's own look at this epoch (all members' rows at once), then each member's end
        verdicts = pack.on_epoch_end(epoch, [m.index for _, m, _, _ in decided]) if decided else {}
        for row, m, stop, reason in decided:
            if verdicts.get(m.index) and not stop:
                stop, reason = True, verdicts[m.index]
            if stop:
                m.stop_reason = reason or "early_stopping"
            elif epoch >= m.spec.training.epochs:
                m.stop_reason = "max_epochs"
            elif epoch < m.spec.training.epochs and m.polls and m.callbacks.should_stop():
                m.stop_reason = "cancelled"
            if m.stop_reason:
                leaving.append(row)
        leaving.sort()

        # ---- members that stopped leave; the pack goes on with the rest
        if leaving:
            finish(leaving)
            kept = [row for row in range(len(members)) if row not in leaving]
            rows = torch.tensor(kept, dtype=torch.long, device=dev)
            flat = flat[rows]
            optimizer.keep(rows)
            members = [members[row] for row in kept]
            if members:
                rows_changed()
        optimizer.set_lr([m.lr for m in members])
        epoch += 1
    for m in members:  # none left normally; a resume past every member's epochs
        m.stop_reason = m.stop_reason or "max_epochs"
    if members:
        finish(list(range(len(members))))
    return [results[k] for k in range(len(specs))]


@torch.inference_mode()
def _evaluate(net: _Net, head, split: tuple[torch.Tensor, torch.Tensor], smoothing: list[float]) -> torch.Tensor:
    """(K, sums) over a split for every member: summed loss and hits/errors, dropout off."""
    x, y = split
    k_members = len(net.params[0])
    chunk = max(1, EVAL_BATCH // k_members)
    total = None
    for i in range(0, len(x), chunk):
        xb, yb = x[i : i + chunk], y[i : i + chunk]
        xs = xb.unsqueeze(0).expand(k_members, *xb.shape)
        ys = yb.unsqueeze(0).expand(k_members, *yb.shape)
        out = net(xs, False, None)
        part = torch.stack([_losses(head, out, ys, smoothing).sum(1), *_hits(head, out, ys)], 1)
        total = part if total is None else total + part
    return total


def _state(m: _Member, row: int, epoch: int, flat: torch.Tensor, layout: _Layout, optimizer: _Optimizer) -> TrainingState:
    """Member `row`'s resume state in fit()'s own format: fit(spec, data, resume=state) goes on alone."""
    rng = capture_rng(m.shuffle)
    rng["torch"] = m.dropout.get_state()  # the member's dropout generator stands for fit()'s global one
    return TrainingState(
        epoch=epoch,
        model=cpu_copy(layout.row(flat[row].detach())),
        optimizer=cpu_copy(optimizer.member_state(row, layout, m.optimizer_template, m)),
        schedule=m.schedule.state_dict() if m.schedule is not None else None,
        early_stopping=m.stopper.state_dict(),
        rng=rng,
        best_weights=cpu_copy(layout.row(m.best_weights)) if m.best_weights is not None else None,
        best_epoch=m.stopper.best_epoch,
        best_metrics=m.best_metrics or None,
        history=list(m.past),
        spec_hash=m.fingerprint,
    )


def _result(m: _Member, flat_row: torch.Tensor, layout: _Layout, data: PreparedData, head, names, dev: torch.device) -> FitResult:
    """A member's FitResult; its test metrics from its own network, evaluated as fit() does."""
    last = cpu_copy(layout.row(flat_row.detach()))
    best = cpu_copy(layout.row(m.best_weights)) if m.best_weights is not None else None
    test_metrics = None
    if data.test is not None:
        model = build_model(m.spec, data.signature, device=dev, plan=m.plan)
        model.load_state_dict(best if best is not None else last)  # the job's result, as fit() measures it
        test = _to_device(data.test, head, dev)
        sums = evaluate(model, make_loss(head, m.spec.training.label_smoothing, reduction="sum"), head, test, names,
                        contextlib.nullcontext())
        test_metrics = _finite(_means(torch.stack(sums).tolist(), names, "test", test[1]))
    return FitResult(
        stop_reason=m.stop_reason or "max_epochs",
        epochs_completed=m.history[-1].epoch if m.history else 0,
        best_epoch=m.stopper.best_epoch,
        best_metrics=m.best_metrics,
        test_metrics=test_metrics,
        history=m.history,
        best_weights=best if best is not None else last,
        last_weights=last,
        head=head,
        device=str(dev),
        spec_hash=m.fingerprint,
    )

