"""The `netfit` console script, run as a user runs it, against a live embedded service."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from netfit import Client
from netfit.cli import main
from tests.conftest import Proc, free_port, iris_spec, wait_healthy
from tests.netfit.conftest import NETFIT, netfit, one_line_error


@pytest.fixture(scope="module")
def followed(embedded_service: str, tmp_path_factory) -> tuple[str, str]:
    """`netfit submit SPEC --follow` on a short Iris run: (job id, output)."""
    path = tmp_path_factory.mktemp("cli") / "iris.json"
    path.write_text(json.dumps(iris_spec(epochs=12, early_stopping={"monitor": "val_loss", "patience": 30})))
    result = netfit("submit", str(path), "--follow", url=embedded_service)
    assert result.returncode == 0, result.stderr
    job_id = re.search(r"^submitted (\S+)", result.stdout, re.M).group(1)
    return job_id, result.stdout


def test_version_and_help_everywhere(capsys):
    assert netfit("--version").stdout.strip() == "netfit 0.1.0"  # the installed console script
    for command in ("submit", "follow", "jobs", "status", "metrics", "cancel", "download", "plot", "datasets",
                    "datasets upload", "datasets list", "serve", "api", "worker"):
        with pytest.raises(SystemExit) as done:
            main([*command.split(), "--help"])
        assert done.value.code == 0 and capsys.readouterr().out.startswith(f"usage: netfit {command}"), command
    for command in ("serve", "api", "worker"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "NETFIT_DATABASE_URL" in out and "NETFIT_BROKER_URL" in out, command


def test_submit_follow_prints_a_progress_line_per_epoch_then_the_outcome(followed):
    _, out = followed
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 12
    assert re.match(r"epoch  1/12 \[#*\.*\]  train loss \d\.\d{4} acc \d\.\d{4}  val loss \d\.\d{4} acc \d\.\d{4}"
                    r"  patience 0/30$", lines[0])
    assert lines[-1].startswith("epoch 12/12 [####################]")
    assert re.search(r"^succeeded · stopped by max_epochs after 12 epochs · best epoch \d+ · test loss \S+ accuracy \S+$",
                     out, re.M)


def test_status_jobs_and_metrics_in_three_formats(followed, embedded_service: str):
    job_id, _ = followed
    status = netfit("status", job_id, url=embedded_service).stdout
    assert "succeeded" in status and "max_epochs" in status and "test_accuracy" in status
    assert json.loads(netfit("status", job_id, "--json", url=embedded_service).stdout)["id"] == job_id
    assert job_id in netfit("jobs", url=embedded_service).stdout

    rows = list(csv.DictReader(io.StringIO(netfit("metrics", job_id, "--format", "csv", url=embedded_service).stdout)))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 13))
    assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy"} <= set(rows[0])
    as_json = json.loads(netfit("metrics", job_id, "--format", "json", url=embedded_service).stdout)
    assert float(rows[-1]["val_loss"]) == as_json[-1]["val_loss"]
    table = netfit("metrics", job_id, url=embedded_service).stdout.splitlines()
    assert table[0].split()[:3] == ["epoch", "train_loss", "train_accuracy"] and len(table) == 13


def test_plot_and_download(followed, embedded_service: str, tmp_path: Path):
    job_id, _ = followed
    assert netfit("plot", job_id, "-o", "curves.png", url=embedded_service, cwd=tmp_path).returncode == 0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert netfit("plot", job_id, "-o", "curves.svg", url=embedded_service, cwd=tmp_path).returncode == 0
    assert 'id="val_loss' in (tmp_path / "curves.svg").read_text()

    result = netfit("download", job_id, "--which", "last", url=embedded_service, cwd=tmp_path)
    assert result.returncode == 0
    saved = tmp_path / f"{job_id}-last.safetensors"
    header_size = int.from_bytes(saved.read_bytes()[:8], "little")
    assert b'"0.weight"' in saved.read_bytes()[8:8 + header_size]


def test_datasets_upload_and_list(embedded_service: str, tmp_path: Path):
    path = tmp_path / "points.csv"
    path.write_text("x1,x2,label\n" + "".join(f"{i},{i % 3},{'ab'[i % 2]}\n" for i in range(40)))
    result = netfit("datasets", "upload", str(path), "--target", "label", "--name", "points", url=embedded_service)
    assert result.returncode == 0, result.stderr
    dataset_id = re.search(r'"dataset": \{"id": "(\S+)"\}', result.stdout).group(1)
    assert "40 samples" in result.stdout and "2 classes" in result.stdout
    assert dataset_id in netfit("datasets", "list", url=embedded_service).stdout


def test_errors_are_one_line_and_exit_1(embedded_service: str, tmp_path: Path):
    assert "no-such-job" in one_line_error(netfit("status", "no-such-job", url=embedded_service))
    bad = tmp_path / "bad.json"
    bad.write_text('{"dataset": {"builtin": "iris"},}')
    assert "bad.json is not valid JSON" in one_line_error(netfit("submit", str(bad), url=embedded_service))
    bad.write_text(json.dumps({**iris_spec(), "model": {"layers": [{"type": "linear", "units": 4}]}}))
    assert "layer" in one_line_error(netfit("submit", str(bad), url=embedded_service))
    assert "cannot reach" in one_line_error(netfit("jobs", url="http://127.0.0.1:9"))


def test_cancel_stops_a_running_job_and_leaves_a_finished_one(followed, embedded_service: str, tmp_path: Path):
    path = tmp_path / "long.json"
    path.write_text(json.dumps(iris_spec(epochs=5000, batch_size=4)))
    job_id = re.search(r"^submitted (\S+)", netfit("submit", str(path), url=embedded_service).stdout, re.M).group(1)
    assert f"{job_id}: cancel" in netfit("cancel", job_id, url=embedded_service).stdout
    with Client(embedded_service) as client:
        assert client.wait(job_id, timeout=60).status == "cancelled"
    finished_id, _ = followed
    assert "already ended (succeeded); nothing to cancel" in netfit("cancel", finished_id, url=embedded_service).stdout


def test_netfit_api_serves_on_the_given_port(tmp_path: Path):
    port = free_port()
    env = {"NETFIT_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}"}  # migrated by the command itself
    proc = Proc([str(NETFIT), "api", "--port", str(port)], env, tmp_path / "api.log", cwd=tmp_path)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        with Client(f"http://127.0.0.1:{port}") as client:
            assert list(client.jobs()) == []
    finally:
        proc.stop()
