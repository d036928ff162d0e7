"""Packed trials: K networks of one shape trained together as one batched model.

A sweep's trials often differ only in numbers that do not change a network's shape: learning
rate, weight decay, momentum, betas, dropout rate, seed, label smoothing, epochs, early stopping,
lr schedule, gradient clipping. `fit_packed` trains such specs side by side: every weight is
stacked along a leading member axis (K, ...), a linear layer is one batched matmul (baddbmm)
for all members, a convolution one grouped convolution (groups=K, members side by side on
the channel axis, as HFTA does), pooling and batchnorm one call over the K*C channels, and the
optimizer (netfit.engine.optimizers.BatchedOptimizer) updates one flat (K, P) tensor with
per-member hyper-parameters as (K, 1) columns. A step costs about the kernels of one trial's
step, so on a CPU, where small nets are bound by per-op dispatch, K trials cost little more
than one. Measured (bench packed, "conv approaches"): grouped convolutions against
torch.func.vmap(grad(functional_call)) over stacked parameters, the latter slower per step.

Each member keeps what fit() gives a job, computed the way fit() computes it: its own initial
weights (built under its seed), data order (its own shuffle generator), dropout masks (its own
generator, drawn as CPU dropout draws them), batchnorm statistics, optimizer state, lr schedule,
early stopping and best epoch, metrics, callbacks (on_epoch_end with a TrainingState that plain
fit() can resume, should_stop), and FitResult; its epoch's bookkeeping is netfit.engine.run's,
as fit()'s is. A member that stops (early stopping, a pruner's verdict, its own epochs,
cancel) leaves the pack at that epoch's end; the others train on in a smaller pack.

What differs from fit(), precisely:
- float rounding: batched matmuls and convolutions and an unfused optimizer (fit uses fused
  Adam/SGD) round differently, so per-epoch metrics agree to float tolerance, not bit for bit;
- on CUDA, dropout masks come from one pack generator (fit's CUDA dropout kernel draws its
  own way), so members with dropout match fit in distribution only;
- a member cancelled inside an epoch ends with the weights at that epoch's end as its last
  weights (fit keeps the half-trained ones; neither reports that epoch);
- EpochReport.seconds is the pack's epoch (what each member waited), not a share of it;
- compile and bf16 precision are not packed (netfit.packing.packable says so).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from netfit.packing import pack_key, packable
from netfit.spec import JobSpec

from .checkpoints import TrainingState, capture_rng, cpu_copy
from .data import PreparedData
from .fit import POLL_SECONDS, FitCallbacks, FitResult, epoch_order, resolve_device
from .graph import Add, Concat, GraphNet
from .layers import Plan, Reshape, build_model, check
from .losses import EVAL_BATCH, means, member_hits, member_losses, metric_names, split_metrics, to_device
from .optimizers import BatchedOptimizer, FlatLayout, make_optimizer
from .run import MemberRun, Snapshot

ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Identity)


# --------------------------------------------------------------------------- the batched network
#
# A value between layers is held in one of two layouts: "stacked" (K, batch, *sample shape), what
# linear layers, layer norm and dropout want, or "folded" (batch, K*C, H, W) for images, the
# members side by side on the channel axis, what grouped convolutions, pooling and batchnorm
# want. Each op converts its input only when it is in the other layout.


def _stacked(x: torch.Tensor, folded: bool, k: int) -> torch.Tensor:
    if not folded:
        return x
    b, kc, h, w = x.shape
    return x.view(b, k, kc // k, h, w).transpose(0, 1)


def _folded(x: torch.Tensor, folded: bool) -> torch.Tensor:
    if folded:
        return x
    k, b, c, h, w = x.shape
    return x.transpose(0, 1).reshape(b, k * c, h, w)


class PackedNet:
    """The members' networks (a sequence or a functional graph, built by build_model) as one
    network on K stacked inputs, its parameters views of a flat (K, P) tensor."""

    def __init__(self, models: list[nn.Module]):
        first = models[0]
        self.layout = FlatLayout.of(first)
        index = {name: i for i, name in enumerate(self.layout.names)}
        self.buffer_names = [name for name, _ in first.named_buffers()]
        self.buffers = [torch.stack([dict(m.named_buffers())[name] for m in models]) for name in self.buffer_names]
        held = {name: i for i, name in enumerate(self.buffer_names)}
        owner = {id(m): name for name, m in first.named_children()}
        if isinstance(first, GraphNet):
            steps = [(modules, inputs) for modules, inputs in first._steps]
        else:
            steps = [(tuple(first.children()), (0,))]
        self.rates: list[list[float]] = []  # per dropout op: each member's rate
        self.nodes = []
        for modules, inputs in steps:
            ops = []
            for m in modules:
                name = owner[id(m)]
                p = lambda what: index.get(f"{name}.{what}")  # noqa: E731
                if isinstance(m, nn.Linear):
                    ops.append(("linear", (p("weight"), p("bias"))))
                elif isinstance(m, nn.Conv2d):
                    ops.append(("conv", (p("weight"), p("bias"), m.stride, m.padding, m.dilation)))
                elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
                    ops.append(("pool", m))
                elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    stats = (held[f"{name}.running_mean"], held[f"{name}.running_var"], held[f"{name}.num_batches_tracked"])
                    ops.append(("batchnorm2d" if isinstance(m, nn.BatchNorm2d) else "batchnorm1d",
                                (p("weight"), p("bias"), stats, m.momentum, m.eps)))
                elif isinstance(m, nn.LayerNorm):
                    ops.append(("layernorm", (p("weight"), p("bias"), m.eps, m.normalized_shape)))
                elif isinstance(m, nn.Dropout):
                    ops.append(("dropout", len(self.rates)))
                    self.rates.append([float(dict(model.named_children())[name].p) for model in models])
                elif isinstance(m, nn.Flatten):
                    ops.append(("flatten", None))
                elif isinstance(m, Reshape):
                    ops.append(("reshape", m.shape))
                elif isinstance(m, (nn.Softmax, nn.LogSoftmax)):
                    ops.append(("softmax", (F.softmax if isinstance(m, nn.Softmax) else F.log_softmax, m.dim + 1)))
                elif isinstance(m, ELEMENTWISE):
                    ops.append(("act", m))
                elif isinstance(m, Add):
                    ops.append(("add", None))
                elif isinstance(m, Concat):
                    ops.append(("concat", None))
                else:  # netfit.packing.PACKED_LAYERS and this table disagree
                    raise ValueError(f"{type(m).__name__} cannot be packed")
            self.nodes.append((tuple(ops), tuple(inputs)))
        self.params: list[torch.Tensor] = []
        self.keep: list[torch.Tensor | None] = []  # per dropout op: 1 - p as (K,), None if p = 0 for all
        self.members = list(range(len(models)))

    def bind(self, flat: torch.Tensor, members: list[int]) -> None:
        """Point the parameters at `flat` (leaf views: the optimizer updates flat in place) for the
        members (original indexes) now in the pack."""
        self.params = [v.requires_grad_() for v in self.layout.views(flat)]
        self.members = list(members)
        rates = [[r[k] for k in members] for r in self.rates]
        self.current_rates = rates
        self.keep = [None if not any(r) else torch.tensor([1 - p for p in r], device=flat.device) for r in rates]

    def keep_rows(self, rows: torch.Tensor) -> None:
        self.buffers = [b[rows] for b in self.buffers]

    def __call__(self, x: torch.Tensor, training: bool, generators: list[torch.Generator] | None) -> torch.Tensor:
        k = x.shape[0]
        outs: list[tuple[torch.Tensor, bool]] = [(x, False)]  # (value, folded)
        for ops, inputs in self.nodes:
            x, folded = outs[inputs[0]]
            for kind, arg in ops:
                if kind == "linear":
                    w, b = self.params[arg[0]], arg[1]
                    x = _stacked(x, folded, k)
                    x = torch.baddbmm(self.params[b].unsqueeze(1), x, w.transpose(1, 2)) if b is not None else torch.bmm(x, w.transpose(1, 2))
                    folded = False
                elif kind == "act":
                    x = arg(x)
                elif kind == "conv":
                    wi, bi, stride, padding, dilation = arg
                    w = self.params[wi]
                    bias = self.params[bi].reshape(-1) if bi is not None else None
                    x = F.conv2d(_folded(x, folded), w.reshape(-1, *w.shape[2:]), bias, stride, padding, dilation, k)
                    folded = True
                elif kind == "pool":
                    x, folded = arg(_folded(x, folded)), True
                elif kind == "flatten":
                    x = x.reshape(x.shape[0], k, -1).transpose(0, 1) if folded else x.reshape(k, x.shape[1], -1)
                    folded = False
                elif kind == "reshape":
                    x = _stacked(x, folded, k)
                    x, folded = x.reshape(k, x.shape[1], *arg), False
                elif kind == "dropout":
                    keep = self.keep[arg]
                    if training and keep is not None:
                        x = _stacked(x, folded, k)
                        x, folded = x * _dropout_noise(x, self.current_rates[arg], keep, generators), False
                elif kind in ("batchnorm2d", "batchnorm1d"):
                    x, folded = self._batchnorm(kind, arg, x, folded, k, training)
                elif kind == "layernorm":
                    wi, bi, eps, shape = arg
                    x, folded = F.layer_norm(_stacked(x, folded, k), shape, eps=eps), False
                    extra = (1,) * (x.dim() - 1 - len(shape))  # (K, U) weights over (K, batch, ..., U)
                    x = x * self.params[wi].view(k, *extra, *shape) + self.params[bi].view(k, *extra, *shape)
                elif kind == "softmax":
                    fn, dim = arg
                    x, folded = fn(_stacked(x, folded, k), dim), False
                elif kind == "add":
                    values = [outs[i] for i in inputs]
                    fold = any(f for _, f in values)
                    parts = [_folded(v, f) if fold else v for v, f in values]
                    x, folded = parts[0], fold
                    for part in parts[1:]:
                        x = x + part
                else:  # concat on the features (channels) axis
                    values = [outs[i] for i in inputs]
                    if values[0][1] or values[0][0].dim() == 5:  # images: folded, members' channels kept together
                        parts = [_folded(v, f) for v, f in values]
                        b, h, w = parts[0].shape[0], parts[0].shape[2], parts[0].shape[3]
                        x = torch.cat([p.view(b, k, -1, h, w) for p in parts], 2).view(b, -1, h, w)
                        folded = True
                    else:
                        x, folded = torch.cat([v for v, _ in values], 2), False
            outs.append((x, folded))
        x, folded = outs[-1]
        return _stacked(x, folded, k)

    def _batchnorm(self, kind: str, arg: Any, x: torch.Tensor, folded: bool, k: int, training: bool) -> tuple[torch.Tensor, bool]:
        """Per member batchnorm: one call over the members' channels side by side (K*C), each
        channel's statistics its member's (the running ones updated in place as nn.BatchNorm does)."""
        wi, bi, (mean, var, count), momentum, eps = arg
        weight, bias = self.params[wi].reshape(-1), self.params[bi].reshape(-1)
        running = self.buffers[mean].view(-1), self.buffers[var].view(-1)
        if training:
            self.buffers[count].add_(1)
        if kind == "batchnorm2d":
            return F.batch_norm(_folded(x, folded), *running, weight, bias, training, momentum, eps), True
        b = x.shape[1]
        y = F.batch_norm(x.transpose(0, 1).reshape(b, -1), *running, weight, bias, training, momentum, eps)
        return y.view(b, k, -1).transpose(0, 1), False

    # ---- a member's weights: parameters (a row of flat) and buffers (batchnorm statistics)

    def capture(self, flat: torch.Tensor, row: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A copy of member `row`'s weights, on the device (the best epoch's)."""
        return flat[row].detach().clone(), [b[row].clone() for b in self.buffers]

    def state_dict(self, weights: tuple[torch.Tensor, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Weights (capture() or the live row) as the member's own model state_dict (views)."""
        row, buffers = weights
        return {**self.layout.row(row.detach()), **dict(zip(self.buffer_names, buffers))}

    def live(self, flat: torch.Tensor, row: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return flat[row], [b[row] for b in self.buffers]

    def weights_of(self, state: dict[str, torch.Tensor], dev: torch.device) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A member's state_dict as capture() keeps weights."""
        return self.layout.flatten(state).to(dev), [state[name].to(dev) for name in self.buffer_names]

    def load(self, flat: torch.Tensor, row: int, state: dict[str, torch.Tensor]) -> None:
        flat[row] = self.layout.flatten(state).to(flat.device)
        for name, b in zip(self.buffer_names, self.buffers):
            b[row] = state[name].to(b.device)


def _dropout_noise(x: torch.Tensor, rates: list[float], keep: torch.Tensor, generators: list[torch.Generator] | None) -> torch.Tensor:
    """The scaled keep-mask per member. With a generator per member, member k's mask is drawn as
    CPU dropout draws it from the global generator in fit() (bernoulli_(1 - p), then / (1 - p))."""
    view = (-1,) + (1,) * (x.dim() - 1)
    if generators is None:  # one draw for the pack (CUDA)
        return (torch.rand_like(x) < keep.view(view)).to(x.dtype).div_(keep.view(view))
    noise = torch.ones(x.shape, dtype=x.dtype, device=x.device)
    for k, p in enumerate(rates):
        if p:
            noise[k].bernoulli_(1 - p, generator=generators[k])
    return noise.div_(keep.view(view))


# --------------------------------------------------------------------------- members


class _LR:
    """The optimizer surface a Schedule steers: one param group holding a member's lr."""

    def __init__(self, lr: float):
        self.param_groups = [{"lr": lr}]


@dataclass
class _Member:
    index: int  # position in the caller's list
    run: MemberRun
    shuffle: torch.Generator
    dropout: torch.Generator
    optimizer_template: dict[str, Any]
    cancelled: bool = False
    spec: JobSpec = field(init=False)

    def __post_init__(self) -> None:
        self.spec = self.run.spec


class PackCallbacks:
    """Hooks for whoever runs the whole pack (the worker persists its members together)."""

    def wants_states(self, epoch: int, seconds: float) -> bool:
        """Whether the members' on_epoch_end get this epoch's resume states (None otherwise; a
        member's own FitCallbacks.wants_states is asked too): each is a copy of a member's
        weights and optimizer state, which a persister saving them every few seconds would
        mostly throw away (32 wine members: about 0.25 s of a 2.4-s sweep, measured). Default: always."""
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
        run = MemberRun(spec, data.val is not None, callbacks[k] or FitCallbacks(), _LR(cfg.optimizer.lr))
        members.append(_Member(k, run, torch.Generator(device=dev).manual_seed(cfg.seed), dropout,
                               make_optimizer(cfg.optimizer, model.parameters()).state_dict()))
        models.append(model)
    net = PackedNet(models)
    probe = models[0]  # evaluates a leaving member's test split with its own weights, as fit() does
    layout = net.layout
    flat = torch.stack([layout.flatten(dict(m.named_parameters())).detach() for m in models])
    optimizer = BatchedOptimizer(specs[0].training.optimizer.type, flat, [s.training.optimizer for s in specs],
                                 [m.run.lr for m in members], [s.training.grad_clip for s in specs])
    start = 1
    for row, (m, state) in enumerate(zip(members, resume)):
        if state is None:
            continue
        try:
            start = m.run.restore(state, lambda best: net.weights_of(best, dev))
        except ValueError:
            raise ValueError(f"resume state {row} belongs to a different spec; start the run afresh") from None
        net.load(flat, row, state.model)
        optimizer.load_member(row, layout, state.optimizer)
        m.dropout.set_state(state.rng["torch"])
        if state.rng["shuffle_device"] == dev.type:
            m.shuffle.set_state(state.rng["shuffle"])

    train = to_device(data.train, head, dev)
    val = to_device(data.val, head, dev) if data.val is not None else None
    test = to_device(data.test, head, dev) if data.test is not None else None
    x, y = train
    n, bs = len(x), specs[0].training.batch_size
    exact_dropout = dev.type == "cpu"
    results: dict[int, FitResult] = {}
    pack = pack or PackCallbacks()

    def result(m: _Member, row: int) -> FitResult:
        """A member's FitResult; its test metrics from its own network, evaluated as fit() does."""
        last = cpu_copy(net.state_dict(net.live(flat, row)))
        best = cpu_copy(net.state_dict(m.run.best_weights)) if m.run.best_weights is not None else None
        test_metrics = None
        if test is not None:
            probe.load_state_dict(best if best is not None else last)  # the job's result, as fit() measures it
            test_metrics = split_metrics(probe, head, test, names, "test", m.spec.training.label_smoothing)
        return m.run.result(test_metrics, best, last, str(dev))

    def snapshot(m: _Member, row: int) -> Snapshot:
        """Member `row`'s resume state in fit()'s own format: fit(spec, data, resume=state) goes on alone."""
        rng = capture_rng(m.shuffle)
        rng["torch"] = m.dropout.get_state()  # the member's dropout generator stands for fit()'s global one
        best = m.run.best_weights
        return Snapshot(cpu_copy(net.state_dict(net.live(flat, row))),
                        cpu_copy(optimizer.member_state(row, layout, m.optimizer_template)), rng,
                        cpu_copy(net.state_dict(best)) if best is not None else None)

    def rows_changed() -> None:
        net.bind(flat, [m.index for m in members])
        optimizer.configure([m.spec.training.optimizer for m in members], [m.run.lr for m in members],
                            [m.spec.training.grad_clip for m in members])

    rows_changed()
    next_poll = time.monotonic() + POLL_SECONDS
    epoch = start
    while members and epoch <= max(m.spec.training.epochs for m in members):
        began = time.perf_counter()
        lrs = [m.run.lr for m in members]
        k_members = len(members)
        generators = [m.dropout for m in members] if exact_dropout else None

        # ---- train: member k's batches are the slices of its own shuffle (or the data's order), as in fit()
        perms = torch.stack([epoch_order(n, m.spec.training.shuffle, m.shuffle, dev) for m in members])
        sums = torch.zeros(k_members, len(names.batch), device=dev)
        smoothing = [m.spec.training.label_smoothing for m in members]
        for i in range(0, n, bs):
            idx = perms[:, i : i + bs]
            xb, yb = x[idx], y[idx]
            out = net(xb, True, generators)
            per_sample = member_losses(head, out, yb, smoothing)
            loss = per_sample.mean(1)
            for p in net.params:
                p.grad = None
            loss.sum().backward()  # members share no weight: each gets its own loss's gradient
            grads = torch.cat([p.grad.view(k_members, -1) for p in net.params], 1)
            optimizer.step(flat, grads)
            with torch.no_grad():
                sums += torch.stack([loss.detach() * per_sample.shape[1], *member_hits(head, out.detach(), yb)], 1)
            if time.monotonic() >= next_poll:
                for m in members:
                    if m.run.polls and not m.cancelled and m.run.callbacks.should_stop():
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
                m.run.stop_reason = "cancelled"
                leaving.append(row)
                continue
            metrics: dict[str, float | None] = {key: None for key in names.epoch}
            metrics.update(means(values[row][: len(names.batch)], names, "train", y))
            if val is not None:
                metrics.update(means(values[row][len(names.batch) :], names, "val", val[1]))
            metrics["lr"] = lrs[row]
            stop, reason = m.run.end_epoch(epoch, metrics, seconds, None, lambda row=row: net.capture(flat, row),
                                           (lambda m=m, row=row: snapshot(m, row)) if states else None)
            decided.append((row, m, stop, reason))
        # the pack's own look at this epoch (all members' rows at once), then each member's end
        verdicts = pack.on_epoch_end(epoch, [m.index for _, m, _, _ in decided]) if decided else {}
        for row, m, stop, reason in decided:
            if verdicts.get(m.index) and not stop:
                stop, reason = True, verdicts[m.index]
            if m.run.settle(epoch, stop, reason):
                leaving.append(row)
        leaving.sort()

        # ---- members that stopped leave; the pack goes on with the rest
        if leaving:
            ended = {members[row].index: result(members[row], row) for row in leaving}
            results.update(ended)
            pack.on_members_end(ended)
            kept = [row for row in range(len(members)) if row not in leaving]
            rows = torch.tensor(kept, dtype=torch.long, device=dev)
            flat = flat[rows]
            optimizer.keep(rows)
            net.keep_rows(rows)
            members = [members[row] for row in kept]
            if members:
                rows_changed()
        optimizer.set_lr([m.run.lr for m in members])
        epoch += 1
    if members:  # none left normally; a resume past every member's epochs
        ended = {m.index: result(m, row) for row, m in enumerate(members)}
        results.update(ended)
        pack.on_members_end(ended)
    return [results[k] for k in range(len(specs))]


@torch.inference_mode()
def _evaluate(net: PackedNet, head, split: tuple[torch.Tensor, torch.Tensor], smoothing: list[float]) -> torch.Tensor:
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
        part = torch.stack([member_losses(head, out, ys, smoothing).sum(1), *member_hits(head, out, ys)], 1)
        total = part if total is None else total + part
    return total
