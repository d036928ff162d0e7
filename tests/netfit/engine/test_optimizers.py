"""A pack's BatchedOptimizer takes, member by member, the steps torch.optim takes (fit's optimizer),
and its state is each member's torch state_dict both ways."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netfit.engine.optimizers import BatchedOptimizer, FlatLayout, make_optimizer
from netfit.spec import Optimizer

CONFIGS = {
    "sgd": [{"type": "sgd", "lr": 0.1}, {"type": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.01},
            {"type": "sgd", "lr": 0.02, "momentum": 0.8, "nesterov": True, "weight_decay": 0.001}],
    "adam": [{"type": "adam", "lr": 0.01}, {"type": "adam", "lr": 0.003, "weight_decay": 0.01, "betas": [0.8, 0.99]}],
    "adamw": [{"type": "adamw", "lr": 0.01, "weight_decay": 0.1}, {"type": "adamw", "lr": 0.02, "betas": [0.5, 0.9]}],
    "rmsprop": [{"type": "rmsprop", "lr": 0.003, "momentum": 0.5, "weight_decay": 0.01}, {"type": "rmsprop", "lr": 0.001}],
}


def net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(12, 2))


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_each_members_step_equals_torch_optims(kind):
    configs = [Optimizer.model_validate(c) for c in CONFIGS[kind]]
    clips = [None, 0.5] + [None] * (len(configs) - 2)
    models = [net(k) for k in range(len(configs))]
    alone = [make_optimizer(c, m.parameters()) for c, m in zip(configs, models)]
    layout = FlatLayout.of(models[0])
    flat = torch.stack([layout.flatten(dict(m.named_parameters())).detach() for m in models])
    batched = BatchedOptimizer(kind, flat, configs, [c.lr for c in configs], clips)
    g = torch.Generator().manual_seed(0)
    for step in range(6):
        grads = torch.randn(flat.shape, generator=g)
        for k, (model, opt) in enumerate(zip(models, alone)):
            for p, grad in zip(model.parameters(), layout.row(grads[k]).values()):
                p.grad = grad.clone()
            if clips[k] is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clips[k])
            opt.step()
        batched.step(flat, grads.clone())
        for k, model in enumerate(models):
            mine = layout.flatten(dict(model.named_parameters())).detach()
            assert torch.allclose(flat[k], mine, rtol=1e-6, atol=1e-6), (kind, step, k, (flat[k] - mine).abs().max())
    # the state each member's torch optimizer holds, and back: a resumed member steps as before
    for k, opt in enumerate(alone):
        mine = batched.member_state(k, layout, make_optimizer(configs[k], net(0).parameters()).state_dict())
        theirs = opt.state_dict()
        assert mine["param_groups"] == theirs["param_groups"]
        for i, slots in theirs["state"].items():
            assert mine["state"][i].keys() == slots.keys()
            for slot, value in slots.items():
                assert torch.allclose(mine["state"][i][slot].float(), value.float(), rtol=1e-5, atol=1e-8), (k, i, slot)
    again = BatchedOptimizer(kind, flat.clone(), configs, [c.lr for c in configs], clips)
    for k, opt in enumerate(alone):
        again.load_member(k, layout, opt.state_dict())
    if kind != "sgd":  # SGD keeps no step count
        assert again.steps == batched.steps
    for slot in batched.state:
        # a member without momentum keeps no buffer in torch (the pack's row of it is never used)
        rows = [k for k, c in enumerate(configs) if slot != "momentum_buffer" or c.momentum]
        assert torch.allclose(again.state[slot][rows], batched.state[slot][rows], rtol=1e-6, atol=1e-7), slot
