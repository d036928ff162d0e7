"""On a CUDA GPU (bench/gpu.sh runs these with -m cuda; without a GPU they skip, saying so):
the engine trains there in fp32 and bf16, and packed trials there match their fit() runs."""

from __future__ import annotations

import pytest
import torch

from netfit.engine.data import load_data
from netfit.engine.fit import fit
from netfit.engine.packed import fit_packed
from tests.netfit.engine.conftest import make_spec

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (bench/gpu.sh runs these on one)")]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_iris_learns_on_the_gpu(precision):
    spec = make_spec(epochs=40, device="cuda", precision=precision)
    result = fit(spec, load_data(spec))
    assert result.device.startswith("cuda")
    assert result.test_metrics["test_accuracy"] >= 0.9
    assert result.history[-1].metrics["train_loss"] < result.history[0].metrics["train_loss"]


def test_auto_device_picks_the_gpu():
    spec = make_spec(epochs=2, device="auto")
    assert fit(spec, load_data(spec)).device.startswith("cuda")


def test_packed_members_match_fit_on_the_gpu():
    # no dropout: on CUDA the pack draws its masks its own way (netfit/engine/packed.py says so)
    specs = [make_spec(p=None, seed=s, device="cuda", optimizer={"type": "adam", "lr": lr})
             for s, lr in ((0, 0.01), (1, 0.003), (2, 0.03))]
    data = load_data(specs[0])
    for spec, packed in zip(specs, fit_packed(specs, data)):
        alone = fit(spec, data)
        assert packed.device.startswith("cuda")
        for a, b in zip(packed.history, alone.history):
            assert a.metrics["train_loss"] == pytest.approx(b.metrics["train_loss"], rel=1e-3)
            assert a.metrics["val_loss"] == pytest.approx(b.metrics["val_loss"], rel=1e-3)


def test_packed_dropout_members_train_on_the_gpu():
    specs = [make_spec(p=p, seed=s, device="cuda") for s, p in ((0, 0.2), (1, 0.5))]
    results = fit_packed(specs, load_data(specs[0]))
    assert all(r.test_metrics["test_accuracy"] >= 0.8 for r in results)
