"""`netfit sweep FILE --follow`, `netfit sweeps`, `netfit trials ID --format ...` and
`netfit sweep cancel ID`, run as a user runs them, against a live embedded service."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from tests.conftest import iris_spec
from tests.netfit.conftest import netfit

pytestmark = [pytest.mark.slow]


def test_sweep_follow_then_list_trials_in_three_formats_then_cancel(embedded_service: str, tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({
        "name": "cli-sweep", "spec": iris_spec(epochs=3),
        "parameters": {"model.layers.0.units": {"values": [4, 16]}}, "method": "grid", "max_concurrent": 2}))
    result = netfit("sweep", str(path), "--follow", url=embedded_service)
    assert result.returncode == 0, result.stderr
    sweep_id = re.search(r"^started sweep (\S+):", result.stdout, re.M).group(1)
    assert f"sweep {sweep_id} (cli-sweep): succeeded" in result.stdout
    assert re.search(r"^#\s+job\s+status", result.stdout, re.M)  # the leaderboard's header

    assert sweep_id in netfit("sweeps", url=embedded_service).stdout
    rows = list(csv.DictReader(io.StringIO(netfit("trials", sweep_id, "--format", "csv", url=embedded_service).stdout)))
    assert sorted(r["model.layers.0.units"] for r in rows) == ["16", "4"]
    assert float(rows[0]["value"]) <= float(rows[1]["value"])  # best first
    as_json = json.loads(netfit("trials", sweep_id, "--format", "json", url=embedded_service).stdout)
    assert {t["number"] for t in as_json} == {0, 1} and all(t["status"] == "succeeded" for t in as_json)
    assert "succeeded" in netfit("trials", sweep_id, url=embedded_service).stdout

    # cancel: of an ended sweep it changes nothing and says so; of an unknown one it is one line
    assert ": succeeded" in netfit("sweep", "cancel", sweep_id, url=embedded_service).stdout
    missing = netfit("sweep", "cancel", "nosuchsweep", url=embedded_service)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr and "nosuchsweep" in missing.stderr
