"""The lab's question through the whole service: examples/layer_stats.py trains a deep sigmoid
and a deep ReLU network on a live embedded service (real worker, SQLite); the statistics the
worker kept come back through the SDK, the CLI's `plot --layers` and the example's table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netfit import Client
from tests.netfit.conftest import netfit
from tests.conftest import run_example


@pytest.mark.slow  # two trainings through the worker and three processes: ~10 s quiet, ~30 s on a busy machine
def test_a_deep_sigmoid_networks_first_layer_gradient_is_decades_below_its_last_a_relu_ones_not(
        embedded_service: str, tmp_path: Path):
    out = run_example("layer_stats.py", "--plots", "plots", url=embedded_service, cwd=tmp_path)
    # "digits-deep-sigmoid   2   1.4e-05   0.39   29,088x": the last layer's gradient over the first's
    ratios = {(name, int(epoch)): float(ratio.replace(",", ""))
              for name, epoch, ratio in re.findall(r"^(digits-deep-\w+)\s+(\d+)\s+\S+\s+\S+\s+([\d,.]+)x$", out, re.M)}
    assert set(ratios) == {(f"digits-deep-{a}", e) for a in ("sigmoid", "relu") for e in (1, 2)}, out
    for epoch in (1, 2):
        assert ratios["digits-deep-sigmoid", epoch] >= 100 > ratios["digits-deep-relu", epoch], out
    assert (tmp_path / "plots" / "digits-deep-sigmoid-layers.png").read_bytes()[:4] == b"\x89PNG"

    with Client(embedded_service) as client:
        job = next(j for j in client.jobs() if j.name == "digits-deep-sigmoid")
        stats = client.layer_stats(job.id)
        assert [row.epoch for row in stats] == [1, 2]
        assert [layer.index for layer in stats[-1].layers] == [1, 3, 5, 7, 9, 11, 13]  # after the flatten
    done = netfit("plot", job.id, "--layers", url=embedded_service, cwd=tmp_path)
    assert done.returncode == 0 and "layer statistics" in done.stdout, done.stderr
    assert (tmp_path / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
