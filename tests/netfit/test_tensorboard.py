"""`netfit export ID --format tensorboard -o DIR` (GET /v1/jobs/{id}/tensorboard) against a live
embedded service, read back with TensorBoard's own reader: every epoch's metrics, the
learning rate, the per-layer statistics and the spec are there as recorded; jobs exported
into one folder are that many runs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from netfit import Client
from tests.conftest import iris_spec
from tests.netfit.conftest import netfit


# TensorBoard keeps scalars as float32: "exactly" is to that precision
as_recorded = np.float32


def _named(name: str, lr: float) -> dict:
    spec = iris_spec(epochs=4, optimizer={"type": "adam", "lr": lr}, lr_schedule={"type": "step", "step_size": 2,
                                                                                  "gamma": 0.5})
    return {**spec, "name": name}


@pytest.mark.slow
def test_tensorboard_reads_back_each_jobs_epochs_layers_and_spec_and_sees_one_run_per_job(
        embedded_service: str, tmp_path: Path) -> None:
    logdir = tmp_path / "runs"
    with Client(embedded_service) as client:
        ids = [client.submit(_named(name, lr)).id for name, lr in (("tb-fast", 0.05), ("tb-slow", 0.005), ("tb-fast", 0.01))]
        jobs = [client.wait(job_id, timeout=180) for job_id in ids]
        assert all(j.status == "succeeded" for j in jobs), jobs
        for job in jobs:
            result = netfit("export", job.id, "--format", "tensorboard", "-o", str(logdir), url=embedded_service)
            assert result.returncode == 0, result.stderr
        # the second "tb-fast" is a run of its own, not merged into the first's
        folders = {"tb-fast": jobs[0], "tb-slow": jobs[1], f"tb-fast-{jobs[2].id}": jobs[2]}
        multiplexer = EventMultiplexer().AddRunsFromDirectory(str(logdir))
        multiplexer.Reload()
        assert set(multiplexer.Runs()) == set(folders)

        for folder, job in folders.items():
            accumulator = event_accumulator.EventAccumulator(str(logdir / folder))
            accumulator.Reload()
            metrics = client.metrics(job.id)
            assert [m.epoch for m in metrics] == [1, 2, 3, 4]
            for tag, field in (("loss/train", "train_loss"), ("loss/val", "val_loss"),
                               ("accuracy/val", "val_accuracy"), ("learning_rate", "lr")):
                events = accumulator.Scalars(tag)
                assert [e.step for e in events] == [m.epoch for m in metrics]
                assert [e.value for e in events] == [as_recorded(getattr(m, field)) for m in metrics], tag
            # the step schedule halves the rate after epoch 2
            assert [e.value for e in accumulator.Scalars("learning_rate")][1:3] == [
                as_recorded(job.spec["training"]["optimizer"]["lr"]), as_recorded(job.spec["training"]["optimizer"]["lr"] / 2)]
            (test_accuracy,) = accumulator.Scalars("accuracy/test")
            assert test_accuracy.value == as_recorded(job.test_metrics["test_accuracy"])

            stats = client.layer_stats(job.id)
            assert stats, "the worker records layer statistics with each epoch"
            for layer in stats[-1].layers:
                tag = f"layers/{layer.index}_{layer.type}/grad_norm"
                assert [e.value for e in accumulator.Scalars(tag)] == [
                    as_recorded(next(s for s in row.layers if s.index == layer.index).grad_norm) for row in stats]

            (text,) = accumulator.Tensors("spec/text_summary")
            markdown = text.tensor_proto.string_val[0].decode()
            assert json.loads(markdown.removeprefix("```json\n").removesuffix("\n```")) == job.spec

        response = httpx.get(f"{embedded_service}/v1/jobs/nosuchjob123/tensorboard", timeout=30)
        assert response.status_code == 404 and "no job with id 'nosuchjob123'" in response.json()["message"]
