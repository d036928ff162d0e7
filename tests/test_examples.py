"""Every example in examples/ runs against a live embedded service, with short epochs."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLES, run_example

# job specs: mnist_npz.json needs an upload; *_builtin.json download their data (no internet here:
# checked by a dry run only); sweep_*.json are sweeps (test_sweep_examples)
SPECS = sorted(p.name for p in EXAMPLES.glob("*.json") if p.name != "mnist_npz.json" and not p.name.startswith("sweep_")
               and not p.name.endswith("_builtin.json"))
DOWNLOADING = sorted(p.name for p in EXAMPLES.glob("*_builtin.json"))
SWEEPS = sorted(p.name for p in EXAMPLES.glob("sweep_*.json"))


def leaderboard_rows(out: str) -> dict[str, list[str]]:
    """name → the leaderboard row's cells."""
    lines = out[out.index("rank  name"):].splitlines()[1:]
    return {cells[1]: cells for cells in (line.split() for line in lines) if cells and cells[0].isdigit()}


@pytest.mark.slow
def test_every_spec_trains_and_compare_ranks_them(embedded_service: str, tmp_path: Path):
    out = run_example("compare.py", *SPECS, "--plots", "curves", url=embedded_service, cwd=tmp_path)
    rows = leaderboard_rows(out)
    assert len(rows) == len(SPECS) == len(list((tmp_path / "curves").glob("*.png")))
    assert all(cells[3] == "succeeded" and cells[5] == "2" for cells in rows.values())
    # ranked by validation, never by test (choosing on the test set is the lesson's mistake), and it says so
    assert "ranked by validation loss" in out
    val_losses = [float(cells[7]) for cells in rows.values()]
    assert val_losses == sorted(val_losses), val_losses
    assert all(cells[9] != "-" for cells in rows.values())  # the test loss beside it
    assert rows["iris-one-layer"][2] == "15"  # 4*3 weights + 3 biases
    assert rows["iris-one-layer"][10] != "-" and rows["overfitting-small-es"][11] != "-"  # accuracy / RMSE


@pytest.mark.parametrize("spec", DOWNLOADING)
def test_specs_on_downloaded_builtins_pass_the_dry_run(spec: str, embedded_service: str):
    dry = httpx.post(f"{embedded_service}/v1/jobs", params={"dry_run": "true"}, content=(EXAMPLES / spec).read_bytes(),
                     headers={"content-type": "application/json"}, timeout=30)
    assert dry.status_code == 200, dry.text
    assert dry.json()["summary"]["layers"][-1]["output_shape"] == [10]


def test_iris_script_saves_the_curves(embedded_service: str, tmp_path: Path):
    out = run_example("iris.py", "-o", "iris.png", url=embedded_service, cwd=tmp_path)
    assert "epoch   2" in out and "status: succeeded" in out
    assert (tmp_path / "iris.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("script", ["overfitting.py", "dropout.py"])
def test_overfitting_and_dropout_demos(script: str, embedded_service: str, tmp_path: Path):
    out = run_example(script, url=embedded_service, cwd=tmp_path)
    assert "lowest val loss (epoch)" in out
    assert all(cells[3] == "succeeded" for cells in leaderboard_rows(out).values())


def test_mnist_like_npz_is_made_uploaded_and_trained(embedded_service: str, tmp_path: Path):
    out = run_example("mnist_npz.py", "--samples", "350", url=embedded_service, cwd=tmp_path)
    assert re.search(r"uploaded \S+: 3[05]0 samples \[(1, )?28, 28\], 10 classes, test split given: True", out)
    assert leaderboard_rows(out)["mnist-mlp"][3] == "succeeded"


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_examples_are_accepted_and_start(name: str, embedded_service: str):
    """Each sweep example passes the API's validation (every value dry-run) and asks its first
    trials; it is cancelled at once (the full runs' figures are in examples/README.md)."""
    from netfit.client import Client

    with Client(base_url=embedded_service) as client:
        sweep = client.sweep(EXAMPLES / name)
        assert sweep.status == "running" and sweep.trials["queued"] + sweep.trials["running"] == sweep.max_concurrent
        assert client.cancel_sweep(sweep.id).status == "cancelled"


@pytest.mark.slow
def test_predict_examples_name_new_flowers_and_digits(embedded_service: str, tmp_path: Path):
    out = run_example("predict_iris.py", url=embedded_service, cwd=tmp_path)
    assert out.count(" -> ") == 4 and "load_model:" in out and "onnxruntime:" in out
    out = run_example("predict_digits_images.py", url=embedded_service, cwd=tmp_path)
    assert len(out.split("predicted:")[1].splitlines()[0].split()) == 10
