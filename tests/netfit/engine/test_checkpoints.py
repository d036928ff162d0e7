"""Checkpoints: safetensors weights with metadata, and a pickle-free resume state."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from netfit.engine.checkpoints import (
    TrainingState,
    capture_rng,
    restore_rng,
    weights_from_bytes,
    weights_to_bytes,
)


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_weights_round_trip_with_metadata_readable_by_any_safetensors_reader(tmp_path):
    net = small_net()
    meta = {"epoch": 7, "metrics": {"val_loss": 0.25, "val_accuracy": None}, "spec_hash": "0123456789abcdef", "kind": "best"}
    blob = weights_to_bytes(net.state_dict(), meta)

    tensors, decoded = weights_from_bytes(blob)
    assert set(tensors) == set(net.state_dict())
    assert all(torch.equal(tensors[k], v) for k, v in net.state_dict().items())
    assert {k: decoded[k] for k in meta} == meta
    assert decoded["format"] == "pt"

    path = tmp_path / "best.safetensors"
    path.write_bytes(blob)
    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["epoch"]) == 7
        assert torch.equal(f.get_tensor("2.weight"), net[2].weight.detach())


def trained_state(epochs: int = 3) -> tuple[nn.Sequential, torch.optim.Optimizer, torch.Generator, TrainingState]:
    """A net and Adam a few steps in, and the state that snapshots them."""
    net = small_net()
    opt = torch.optim.Adam(net.parameters(), lr=0.01, fused=True)
    shuffle = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    state = TrainingState(
        epoch=epochs,
        model={k: v.clone() for k, v in net.state_dict().items()},
        optimizer=opt.state_dict(),
        schedule={"epochs_done": epochs, "lr": 0.01, "best": None, "bad_epochs": 0},
        early_stopping={"best": 0.5, "best_epoch": 2, "reference": 0.5, "wait": 1},
        rng=capture_rng(shuffle),
        best_weights={k: v.clone() for k, v in net.state_dict().items()},
        best_epoch=2,
        best_metrics={"val_loss": 0.5, "lr": 0.01},
        history=[{"epoch": 1, "metrics": {"val_loss": 0.7}, "seconds": 0.1, "is_best": True}],
        spec_hash="abc",
    )
    return net, opt, shuffle, state


def step(net: nn.Module, opt: torch.optim.Optimizer) -> None:
    torch.manual_seed(5)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    opt.zero_grad()
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()


def test_training_state_round_trip_restores_optimizer_so_training_continues_identically():
    net, opt, _, state = trained_state()
    restored = TrainingState.from_bytes(state.to_bytes())

    assert (restored.epoch, restored.best_epoch, restored.spec_hash) == (3, 2, "abc")
    assert restored.schedule == state.schedule and restored.early_stopping == state.early_stopping
    assert restored.history == state.history and restored.best_metrics == state.best_metrics
    assert restored.optimizer["param_groups"][0]["lr"] == 0.01

    twin = small_net()
    twin.load_state_dict(restored.model)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=0.01, fused=True)
    twin_opt.load_state_dict(restored.optimizer)
    step(net, opt)
    step(twin, twin_opt)
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)  # Adam's moments and step counts came back, not just the weights


def test_rng_state_round_trips_so_shuffles_and_dropout_repeat():
    _, _, shuffle, state = trained_state()
    restored = TrainingState.from_bytes(state.to_bytes())
    expected = (torch.randperm(10, generator=shuffle), torch.rand(3), np.random.rand(2), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99), shuffle.manual_seed(99)
    restore_rng(restored.rng, shuffle)
    again = (torch.randperm(10, generator=shuffle), torch.rand(3), np.random.rand(2), random.random())
    assert torch.equal(expected[0], again[0]) and torch.equal(expected[1], again[1])
    assert np.array_equal(expected[2], again[2]) and expected[3] == again[3]


def test_state_is_plain_safetensors_with_json_metadata_not_pickle():
    _, _, _, state = trained_state()
    blob = state.to_bytes()
    header_len = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + header_len])
    skeleton = json.loads(header["__metadata__"]["netfit.training_state"])
    assert skeleton["epoch"] == 3
    assert "optimizer.state.0.exp_avg" in header  # optimizer moments are tensors in the file

    # a weights file, or a pickled torch checkpoint, is refused instead of being unpickled
    with pytest.raises(ValueError, match="not a netfit training state"):
        TrainingState.from_bytes(weights_to_bytes(small_net().state_dict(), {}))
    pickled = io.BytesIO()
    torch.save({"epoch": 1}, pickled)
    with pytest.raises(ValueError, match="not a safetensors file"):
        TrainingState.from_bytes(pickled.getvalue())
