"""examples/lab.ipynb through a real Jupyter kernel against the live embedded service, and a
live display: the chart and the progress line a kernel updates in place while a job trains."""

from __future__ import annotations

import queue
import time

import pytest

from netfit import Client
from tests.conftest import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
jupyter_client = pytest.importorskip("jupyter_client")

LAB = ROOT / "examples" / "lab.ipynb"


def outputs_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts.append(data.get("text/plain", "") + data.get("text/html", ""))
    return "\n".join(parts)


def test_the_lab_is_committed_without_outputs():
    notebook = nbformat.read(LAB, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_lab_runs_in_a_kernel_against_the_service(embedded_service: str, monkeypatch):
    monkeypatch.setenv("NETFIT_API_URL", embedded_service)
    notebook = nbformat.read(LAB, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code[0].source.startswith("EPOCHS = ")
    code[0].source = "EPOCHS = 4"  # a short run of every lesson step
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
                            ).execute()
    by_text = {cell.source.split("\n")[0]: cell for cell in code}
    iris_one = next(c for c in code if "one_layer = client.fit" in c.source)
    assert "best validation accuracy" in outputs_text(iris_one)
    charts = [o for o in iris_one.outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert charts, "the live chart was not displayed"
    two = next(c for c in code if c.source.startswith("two_layers = client.fit"))
    html = outputs_text(two)
    assert "succeeded" in html and "<img" in html  # the run's own view: status, results, curves
    digits = outputs_text(next(c for c in code if "digits_run = client.fit" in c.source))
    assert "test accuracy:" in digits and "epoch 1/4" in digits  # verbose=2: a line per epoch
    over = outputs_text(next(c for c in code if "no_stopping = client.fit" in c.source))
    assert "without early stopping: 4 epochs" in over and "with early stopping" in over
    sweep = outputs_text(next(c for c in code if "client.sweep(" in c.source))
    assert "units   2: val_loss" in sweep and "units  16: val_loss" in sweep
    assert by_text  # every cell ran (nbclient raises on the first error)


LIVE_FIT = """
from sklearn.datasets import load_iris
import netfit
iris = load_iris()
run = netfit.Client({url!r}).fit([{{"type": "dense", "units": 3}}], iris.data, iris.target, epochs=3000,
                                 batch_size=4, name={name!r})
print("fit returned", run.job.status)
"""


@pytest.mark.timeout(300)
def test_a_notebook_fit_updates_its_chart_and_line_in_place_while_the_job_trains(embedded_service: str):
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(ROOT))
    kernel = manager.client()
    kernel.start_channels()
    name = f"live-display-{time.time_ns()}"
    client = Client(embedded_service)
    try:
        kernel.wait_for_ready(timeout=120)
        request = kernel.execute(LIVE_FIT.format(url=embedded_service, name=name))
        shown, updates, job_id, printed = {}, [], None, ""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                msg = kernel.get_iopub_msg(timeout=5)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != request:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "display_data":
                shown[content["transient"]["display_id"]] = content["data"]
            elif kind == "update_display_data":
                updates.append((content["transient"]["display_id"], content["data"]))
                lines = [d["text/plain"] for _, d in updates if "text/plain" in d and "epoch" in d["text/plain"]]
                if job_id is None and len(lines) >= 2:
                    job = next(j for j in client.jobs(limit=20) if j.name == name)
                    assert job.status == "running"  # the display moves while the job trains
                    job_id = client.cancel(job.id).id
            elif kind == "stream":
                printed += content["text"]
            elif kind == "status" and content["execution_state"] == "idle":
                break
        assert job_id is not None, f"no live updates; shown {list(shown)}, printed {printed[-500:]}"
        assert "fit returned cancelled" in printed
        charts = [i for i, data in shown.items() if "image/png" in data]
        lines = [i for i, data in shown.items() if "image/png" not in data]
        assert len(charts) == 1 and len(lines) == 1  # one chart and one line, each updated in place
        line_updates = [d["text/plain"] for i, d in updates if i == lines[0]]
        assert "epoch    2/3000" in " ".join(line_updates) and line_updates[-1].startswith("cancelled")
        assert any(i == charts[0] and "image/png" in d for i, d in updates)  # the chart redrawn in place
    finally:
        client.close()
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)
