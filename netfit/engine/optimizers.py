"""Optimizers: torch's for one network (fit), and the same update rules batched over a pack.

A pack keeps its K members' parameters as one flat (K, P) tensor (a row per member, laid out by
FlatLayout) and BatchedOptimizer updates it in a few kernels for all members, with each
member's hyper-parameters as a (K, 1) column. Its state converts to and from each member's own
torch optimizer state_dict, so a member's resume state continues in fit() and the other way
round. tests/netfit/engine/test_optimizers.py holds every step to torch.optim's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from netfit.spec import Optimizer

ADAM_EPS, RMSPROP_ALPHA, RMSPROP_EPS = 1e-8, 0.99, 1e-8  # torch's defaults, which make_optimizer keeps


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


class FlatLayout:
    """Where each named tensor of a member lies in its row of a flat (K, P) tensor."""

    def __init__(self, named: list[tuple[str, torch.Tensor]]):
        self.names, self.shapes, self.offsets = [], [], []
        offset = 0
        for name, p in named:
            self.names.append(name)
            self.shapes.append(tuple(p.shape))
            self.offsets.append(offset)
            offset += p.numel()
        self.size = offset

    @classmethod
    def of(cls, model: nn.Module) -> FlatLayout:
        return cls(list(model.named_parameters()))

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Each tensor for all members: (K, *shape) views of `flat`."""
        return [flat[:, o : o + math.prod(s)].view(len(flat), *s) for o, s in zip(self.offsets, self.shapes)]

    def row(self, flat_row: torch.Tensor) -> dict[str, torch.Tensor]:
        """One member's tensors (a row of a flat tensor) by name (views of the row)."""
        return {n: flat_row[o : o + math.prod(s)].view(s) for n, o, s in zip(self.names, self.offsets, self.shapes)}

    def flatten(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([state[n].reshape(-1) for n in self.names])


class BatchedOptimizer:
    """SGD (momentum, nesterov), Adam, AdamW or RMSprop (momentum) on flat (K, P) parameters: torch's
    update rules with a column of hyper-parameters per member; state tensors are (K, P) too.
    `configs[k]` and `clips[k]` are member k's optimizer spec and grad_clip (None: no clipping)."""

    SLOTS = {"sgd": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq"),
             "rmsprop": ("square_avg", "momentum_buffer")}

    def __init__(self, kind: str, flat: torch.Tensor, configs: list[Optimizer], lrs: list[float],
                 clips: list[float | None]):
        self.kind, self.steps = kind, 0
        self.state = {slot: torch.zeros_like(flat) for slot in self.SLOTS[kind]}
        self.configure(configs, lrs, clips)

    def configure(self, configs: list[Optimizer], lrs: list[float], clips: list[float | None]) -> None:
        """The members' hyper-parameters, row by row (again after members left the pack)."""
        dev = self.state[self.SLOTS[self.kind][0]].device
        col = lambda values: torch.tensor(values, dtype=torch.float32, device=dev).unsqueeze(1)  # noqa: E731
        self.configs = list(configs)
        self.wd = col([o.weight_decay for o in configs])
        self.any_wd = any(o.weight_decay for o in configs)
        self.momentum = col([o.momentum for o in configs])
        self.nesterov = torch.tensor([o.nesterov for o in configs], device=dev).unsqueeze(1)
        self.any_nesterov = any(o.nesterov for o in configs)
        # 1 - beta and the bias corrections in double, as torch computes them from python floats
        # (1 - float32(0.999) is 1.3e-5 off 0.001)
        self.betas = [tuple(o.betas) for o in configs]
        self.beta1, self.beta2 = col([b[0] for b in self.betas]), col([b[1] for b in self.betas])
        self.rest1, self.rest2 = col([1 - b[0] for b in self.betas]), col([1 - b[1] for b in self.betas])
        self.clip = col([c if c is not None else math.inf for c in clips]) if any(c is not None for c in clips) else None
        self.set_lr(lrs)

    def set_lr(self, lrs: list[float]) -> None:
        self.lrs = list(lrs)
        col = lambda values: torch.tensor(values, dtype=torch.float32, device=self.wd.device).unsqueeze(1)  # noqa: E731
        self.lr = col(lrs)
        if self.kind == "adamw":
            self.decay = col([1 - lr * o.weight_decay for lr, o in zip(lrs, self.configs)])

    def keep(self, rows: torch.Tensor) -> None:
        """Only these rows' state stays (the others' members left); configure() the kept ones next."""
        self.state = {k: v[rows] for k, v in self.state.items()}

    @torch.no_grad()
    def step(self, p: torch.Tensor, g: torch.Tensor) -> None:
        self.steps += 1
        if self.clip is not None:  # clip_grad_norm_ per member: its norm over all its parameters
            g.mul_((self.clip / (g.norm(dim=1, keepdim=True) + 1e-6)).clamp_(max=1.0))
        if self.kind == "adamw":
            p.mul_(self.decay)
        elif self.any_wd:
            g = g + self.wd * p
        s = self.state
        if self.kind == "sgd":
            # torch's first step with momentum starts the buffer at g: the same as 0 * momentum + g
            buf = s["momentum_buffer"].mul_(self.momentum).add_(g)
            update = torch.where(self.nesterov, g + self.momentum * buf, buf) if self.any_nesterov else buf
            p.sub_(self.lr * update)
        elif self.kind in ("adam", "adamw"):
            s["exp_avg"].lerp_(g, self.rest1)
            s["exp_avg_sq"].mul_(self.beta2).add_(self.rest2 * g * g)
            col = lambda values: torch.tensor(values, dtype=torch.float32, device=p.device).unsqueeze(1)  # noqa: E731
            step_size = self.lr / col([1 - b1**self.steps for b1, _ in self.betas])
            denom = (s["exp_avg_sq"].sqrt() / col([math.sqrt(1 - b2**self.steps) for _, b2 in self.betas])).add_(ADAM_EPS)
            p.sub_(step_size * s["exp_avg"] / denom)
        else:
            s["square_avg"].mul_(RMSPROP_ALPHA).add_((1 - RMSPROP_ALPHA) * g * g)
            buf = s["momentum_buffer"].mul_(self.momentum).add_(g / s["square_avg"].sqrt().add_(RMSPROP_EPS))
            p.sub_(self.lr * buf)

    def member_state(self, row: int, layout: FlatLayout, template: dict[str, Any]) -> dict[str, Any]:
        """Row `row`'s state as its own torch optimizer's state_dict (what fit() resumes from);
        `template`: that optimizer's state_dict before any step (its param_groups)."""
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        has_buffer = self.configs[row].momentum != 0
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
        groups = [{**g, "lr": self.lrs[row]} for g in template["param_groups"]]
        return {"state": per_param, "param_groups": groups}

    def load_member(self, row: int, layout: FlatLayout, state: dict[str, Any]) -> None:
        """Row `row` takes a torch optimizer's state_dict (a member's resume state)."""
        by_index = {int(k): v for k, v in state["state"].items()}
        for slot, tensor in self.state.items():
            parts = [by_index.get(i, {}).get(slot) for i in range(len(layout.names))]
            if all(p is not None for p in parts):
                tensor[row] = torch.cat([p.reshape(-1) for p in parts]).to(tensor.device)
        steps = [int(v["step"]) for v in by_index.values() if "step" in v]
        self.steps = steps[0] if steps else self.steps
