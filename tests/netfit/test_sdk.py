"""The SDK against a live embedded service (`netfit serve`): real API, real Celery worker."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import httpx
import pytest
import torch

import netfit
from netfit import Client, EpochEvent, NetfitError, StatusEvent
from netfit.models import JobItem
from netfit.spec import JobSpec
from tests.conftest import iris_spec, served


@pytest.fixture(scope="module")
def client(embedded_service: str):
    with Client(embedded_service) as c:
        yield c


@pytest.fixture(scope="module")
def finished(client: Client) -> netfit.models.Job:
    """An Iris job that ran to its end, with early stopping restoring the best weights."""
    spec = iris_spec(epochs=40, early_stopping={"monitor": "val_loss", "patience": 5})
    return client.wait(client.submit(spec).id, timeout=120)


def test_submit_returns_the_queued_job_with_its_network_summary(client: Client):
    job = client.submit(iris_spec(epochs=2))
    assert job.status in ("queued", "running") and job.epochs == 2 and job.name == "iris-test"
    assert job.summary.input_shape == [4] and job.summary.n_outputs == 3
    assert job.summary.total_params == 4 * 16 + 16 + 16 * 3 + 3
    assert client.wait(job.id, timeout=60).status == "succeeded"


def test_submit_accepts_a_spec_file_and_a_spec_object(client: Client, tmp_path: Path):
    path = tmp_path / "spec.json"
    path.write_text(JobSpec.model_validate(iris_spec(epochs=1)).model_dump_json())
    from_file = client.submit(path)
    from_object = client.submit(JobSpec.model_validate(iris_spec(epochs=1)))
    assert from_file.spec["model"] == from_object.spec["model"]
    for job in (from_file, from_object):
        assert client.wait(job.id, timeout=60).status == "succeeded"


def test_the_finished_job_records_why_it_stopped_and_its_metrics(client: Client, finished):
    assert finished.status == "succeeded"
    assert finished.stop_reason in ("early_stopping", "max_epochs")
    assert 1 <= finished.best_epoch <= finished.epochs_completed <= 40
    assert finished.test_metrics["test_accuracy"] > 0.7  # Iris is easy, even in a few epochs

    rows = client.metrics(finished.id)
    assert [r.epoch for r in rows] == list(range(1, finished.epochs_completed + 1))
    assert all(r.train_loss is not None and r.val_accuracy is not None for r in rows)
    assert rows[-1].train_loss < rows[0].train_loss  # it learned

    columns = client.metrics_columns(finished.id)
    assert {"epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy"} <= set(columns)
    assert "train_rmse" not in columns  # classification: no regression columns
    assert all(len(values) == len(rows) for values in columns.values())


def test_follow_delivers_epochs_while_the_job_runs_and_resumes_after_an_event_id(client: Client):
    job = client.submit(iris_spec(epochs=5000, batch_size=4))  # far longer than the test lets it run
    events = []
    for event in client.follow(job.id):
        events.append(event)
        if isinstance(event, EpochEvent) and event.epoch == 2:
            assert not client.job(job.id).done  # the event is live: the job is still training
            client.cancel(job.id)
    assert isinstance(events[-1], StatusEvent) and events[-1].status == "cancelled"
    epochs = [e.epoch for e in events if isinstance(e, EpochEvent)]
    assert epochs[:2] == [1, 2] and epochs == list(range(1, len(epochs) + 1))
    assert client.job(job.id).stop_reason == "cancelled"

    # a reconnecting client says where it was: it gets exactly the rest of the stream
    replay = list(client.follow(job.id))
    assert [e.id for e in replay] == [e.id for e in events]
    rest = list(client.follow(job.id, last_event_id=events[1].id))
    assert [e.id for e in rest] == [e.id for e in events[2:]]


class CutStream(httpx.SyncByteStream):
    """A real response body that breaks off, like a dropped connection, after `keep` events."""

    def __init__(self, inner: httpx.SyncByteStream, keep: int):
        self.inner, self.keep = inner, keep

    def __iter__(self):
        buffer, passed = b"", 0
        for chunk in self.inner:
            buffer += chunk
            while b"\n\n" in buffer:  # pass on whole events only, then break off
                block, buffer = buffer.split(b"\n\n", 1)
                if (b"\n" + block).find(b"\nevent:") >= 0:
                    if passed == self.keep:
                        raise httpx.RemoteProtocolError("peer closed connection (cut by the test)")
                    passed += 1
                yield block + b"\n\n"

    def close(self):
        self.inner.close()


class DropFirstStream(httpx.HTTPTransport):
    """The real transport, except that the first event stream it carries breaks off early."""

    def __init__(self, keep: int):
        super().__init__()
        self.keep, self.streams = keep, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/events"):
            self.streams += 1
            if self.streams == 1:
                response.stream = CutStream(response.stream, self.keep)
        return response


def test_follow_resumes_a_dropped_stream_without_losing_or_repeating_events(client: Client, finished):
    whole = [e.id for e in client.follow(finished.id)]
    transport = DropFirstStream(keep=3)
    with httpx.Client(transport=transport) as http:
        resumed = [e.id for e in Client(client.base_url, http=http).follow(finished.id)]
    assert transport.streams == 2 and len(whole) > 3  # cut once, resumed once
    assert resumed == whole


def test_a_second_read_of_a_finished_job_is_a_304_answered_from_the_kept_body(client: Client, finished):
    route = "/v1/jobs/{job_id}/metrics"
    first, before = client.metrics(finished.id), served(client.base_url, route, 304)
    again = client.metrics(finished.id)
    assert served(client.base_url, route, 304) == before + 1  # the server sent no body...
    assert again == first and len(again) == finished.epochs_completed  # ...and the SDK has the rows
    client.job(finished.id)
    jobs_304 = served(client.base_url, "/v1/jobs/{job_id}", 304)
    assert client.job(finished.id) == client.job(finished.id) == finished
    assert served(client.base_url, "/v1/jobs/{job_id}", 304) == jobs_304 + 2


def test_jobs_iterates_every_page_newest_first(client: Client, finished):
    jobs = list(client.jobs())
    everything = [job.id for job in jobs]
    paged = [job.id for job in client.jobs(page_size=1)]
    assert paged == everything and finished.id in everything and len(everything) >= 2
    created = [job.created_at for job in jobs]
    assert created == sorted(created, reverse=True)  # newest first
    assert [job.id for job in client.jobs(limit=2)] == everything[:2]
    succeeded = list(client.jobs(status="succeeded"))
    assert finished.id in [job.id for job in succeeded] and all(job.status == "succeeded" for job in succeeded)
    item = next(job for job in jobs if job.id == finished.id)  # a light item: what a list shows...
    assert isinstance(item, JobItem) and item.done and item.monitor == "val_loss"
    assert (item.best_metrics, item.test_metrics, item.best_epoch) == (finished.best_metrics, finished.test_metrics,
                                                                       finished.best_epoch)
    assert client.job(item.id).spec == finished.spec  # ...the whole job is its own read


def test_curves_as_png_and_svg(client: Client, finished, tmp_path: Path):
    png = client.curves(finished.id, path=tmp_path / "curves.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "curves.png").read_bytes() == png
    width, height = struct.unpack(">II", png[16:24])
    assert width > height  # loss and accuracy side by side
    svg = client.curves(finished.id, fmt="svg").decode()
    for series in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "best_epoch"):
        assert f'id="{series}' in svg


def test_downloaded_weights_rebuild_the_network_and_reproduce_the_test_accuracy(client: Client, finished, tmp_path: Path):
    from safetensors.torch import load_file

    from netfit.engine.data import load_data

    path = client.download_checkpoint(finished.id, "best", tmp_path / "best.safetensors")
    assert set(load_file(path)) == {"0.weight", "0.bias", "2.weight", "2.bias"}

    spec = JobSpec.model_validate(finished.spec)
    assert spec.preprocess.features == "standardize"
    prepared = load_data(spec)
    test = prepared.test  # the same seeded split, preprocessed
    raw_test_x = test.x * torch.tensor(prepared.preprocessing["std"]) + torch.tensor(prepared.preprocessing["mean"])

    model = client.load_model(finished.id)  # takes raw features, as a user has them
    bare = client.load_model(finished.id, raw_inputs=False)
    assert not model.training and not bare.training
    with torch.inference_mode():
        for net, x in ((model, raw_test_x), (bare, test.x)):
            accuracy = (net(x).argmax(1) == test.y).float().mean().item()
            assert accuracy == pytest.approx(finished.test_metrics["test_accuracy"], abs=1e-6)
        # the raw-input model really standardizes: the bare network on raw features disagrees
        assert not torch.allclose(bare(raw_test_x), model(raw_test_x))


def test_errors_carry_the_status_and_a_message_naming_the_problem(client: Client):
    with pytest.raises(NetfitError) as missing:
        client.job("no-such-job")
    assert missing.value.status_code == 404 and "no-such-job" in str(missing.value)
    assert missing.value.request_id  # what an operator greps the server's log for

    bad = iris_spec()
    bad["model"] = {"layers": [{"type": "linear", "units": 16}, {"type": "relu"}, {"type": "linear", "units": 5}]}
    with pytest.raises(NetfitError) as wrong_size:
        client.submit(bad)
    assert wrong_size.value.status_code == 422
    assert "3" in str(wrong_size.value) and "layer" in str(wrong_size.value)

    with pytest.raises(NetfitError) as typo:
        client.submit({**iris_spec(), "trainig": {}})
    assert typo.value.status_code == 422 and "trainig" in str(typo.value)


def test_upload_a_csv_and_train_on_it(client: Client, tmp_path: Path):
    from sklearn.datasets import load_iris

    iris = load_iris()
    path = tmp_path / "flowers.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["species", "a", "b", "c", "d"])  # the label first: --target picks it
        for features, label in zip(iris.data, iris.target):
            writer.writerow([iris.target_names[label], *features])
    dataset = client.upload_dataset(path, target="species")
    assert (dataset.name, dataset.format, dataset.n_samples, dataset.input_shape, dataset.n_classes) == \
        ("flowers", "csv", 150, [4], 3)
    assert dataset.id in [d.id for d in client.datasets()]

    job = client.wait(client.submit({**iris_spec(epochs=3), "dataset": {"id": dataset.id}}).id, timeout=60)
    assert job.status == "succeeded" and job.summary.n_outputs == 3


def test_an_unreachable_server_is_a_clear_error():
    from tests.conftest import free_port

    with Client(f"http://127.0.0.1:{free_port()}") as client, pytest.raises(NetfitError, match="cannot reach"):
        client.job("x")


def test_the_environment_picks_the_server(monkeypatch, embedded_service: str, finished):
    monkeypatch.setenv("NETFIT_API_URL", embedded_service + "/")
    with Client() as client:
        assert client.job(finished.id).id == finished.id


def test_an_injected_http_client_is_used_and_left_open(embedded_service: str, finished):
    with httpx.Client(base_url=embedded_service) as http:
        with Client(http=http) as client:
            assert client.job(finished.id).status == "succeeded"
        assert not http.is_closed  # the caller's client is the caller's to close
