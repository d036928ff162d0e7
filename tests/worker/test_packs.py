"""Packed trials in the service (issue 16 §3), on real processes: PostgreSQL, a Redis of the
module's own, the API under uvicorn and ONE `python -m worker` process. A packing sweep's trials
train as one pack on that worker; each trial keeps what a job has (its epochs equal the same spec
trained alone, its checkpoints, its own end: pruned, cancelled); a kill -9 mid-pack is resumed
whole by a second worker."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from db.attempts import resume_epoch
from db.models import EpochMetric, Job
from tests.conftest import FAST, iris_spec, wait_until
from tests.stack import Stack, own_stack
from tests.worker.promise import assert_recomputed_within

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

CHECKPOINT_SECONDS = 0.3
# a lost worker is noticed fast; rows batched by time as in production, the resume state often;
# one torch thread (tiny tensors: a second one only spins against the suite's other processes)
PACKED = {**FAST, "NETFIT_FLUSH_SECONDS": "0.05", "NETFIT_CHECKPOINT_SECONDS": str(CHECKPOINT_SECONDS),
          "OMP_NUM_THREADS": "1"}


def dropout_spec(epochs: int) -> dict[str, Any]:
    spec = iris_spec(epochs=epochs)
    spec["model"]["layers"] = [{"type": "linear", "units": 16}, {"type": "relu"}, {"type": "dropout", "p": 0.1},
                               {"type": "linear", "units": 3}]
    return spec


def packing_sweep(n: int, epochs: int, **overrides: Any) -> dict[str, Any]:
    """n trials of one shape: their own lr, weight decay, dropout rate and seed."""
    return {"name": "packed", "spec": dropout_spec(epochs), "method": "random", "max_trials": n,
            "max_concurrent": n, "seed": 3, "packing": True,
            "parameters": {"training.optimizer.lr": {"min": 0.003, "max": 0.1, "distribution": "log_uniform"},
                           "training.optimizer.weight_decay": {"values": [0.0, 0.001]},
                           "model.layers.2.p": {"values": [0.0, 0.2]},
                           "training.seed": {"min": 0, "max": 1000, "distribution": "int_uniform"}},
            **overrides}


class PackStack(Stack):
    """The shared stack (tests/stack.py) and what these tests ask of a packing sweep."""

    def post(self, body: dict[str, Any]) -> str:
        response = self.http.post("/v1/sweeps", json=body)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def ended(self, sweep_id: str, timeout: float = 120) -> list[Job]:
        wait_until(lambda: self.http.get(f"/v1/sweeps/{sweep_id}").json()["status"] != "running", timeout=timeout,
                   interval=0.1, what="the sweep to end")
        return self.trials(sweep_id)

    def packs(self, job_id: str) -> list[dict[str, Any]]:
        """The job's "pack" events: which pack it trained in, of how many members."""
        import json

        from netfit.sse import parse_sse

        with self.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=30) as response:
            return [json.loads(e.data) for e in parse_sse(response.iter_lines()) if e.event == "pack"]

    def curve(self, job_id: str) -> list[float]:
        return [row["val_loss"] for row in self.http.get(f"/v1/jobs/{job_id}/metrics").json()["items"]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackStack]:
    """A fresh database and Redis, the API and one worker for the module."""
    with own_stack(tmp_path_factory.mktemp("packs"), PackStack, **PACKED) as s:
        s.start_api()
        s.worker()
        yield s


def test_a_packing_sweep_trains_as_one_pack_and_each_trial_as_it_would_alone(stack):
    s = stack
    sweep_id = s.post(packing_sweep(6, epochs=8))
    trials = s.ended(sweep_id)
    assert [(t.status, t.stop_reason, t.epochs_completed) for t in trials] == [("succeeded", "max_epochs", 8)] * 6
    for t in trials:  # one pack of all six, trained once
        [pack] = s.packs(t.id)
        assert (pack["members"], pack["resume_after"], t.attempts) == (6, 0, 1), pack
    assert len({s.packs(t.id)[0]["leader"] for t in trials}) == 1
    # the same specs as plain jobs, one at a time on the same worker: the same curves
    alone = {}
    for t in trials:
        response = s.http.post("/v1/jobs", json={**t.spec, "name": f"alone #{t.trial_number}"})
        assert response.status_code == 201, response.text
        alone[t.id] = response.json()["id"]
    for t in trials:
        wait_until(lambda: s.http.get(f"/v1/jobs/{alone[t.id]}").json()["status"] == "succeeded", timeout=60,
                   what="the plain job")
        assert s.curve(t.id) == pytest.approx(s.curve(alone[t.id]), rel=1e-4, abs=1e-5), t.trial_number
        kinds = {c["kind"]: c["epoch"] for c in s.http.get(f"/v1/jobs/{t.id}/checkpoints").json()["items"]}
        assert kinds.keys() == {"best", "last"} and kinds["last"] == 8
        assert s.http.get(f"/v1/jobs/{t.id}/checkpoints/best").status_code == 200
    assert len({tuple(s.curve(t.id)) for t in trials}) == 6  # six trials, not one copied


def test_on_a_cpu_a_pack_of_conv_nets_holds_at_most_eight_trials(stack):
    """A CPU runs a pack's grouped convolutions no faster than its members' one at a time, and a
    32-member pack of a small CNN trained slower than its members alone (bench packed): there a
    conv net's pack stops at 8 members. Ten trials, all queued at once: two packs, 8 and 2."""
    s = stack
    body = packing_sweep(10, epochs=2)
    body["spec"]["model"]["layers"] = [
        {"type": "reshape", "shape": [1, 2, 2]}, {"type": "conv2d", "filters": 4, "kernel_size": 1}, {"type": "relu"},
        {"type": "flatten"}, {"type": "dropout", "p": 0.1}, {"type": "linear", "units": 3}]
    body["parameters"]["model.layers.4.p"] = body["parameters"].pop("model.layers.2.p")
    trials = s.ended(s.post(body))
    assert [(t.status, t.epochs_completed) for t in trials] == [("succeeded", 2)] * 10
    packs = {(p["leader"], p["members"]) for t in trials for p in s.packs(t.id)}
    assert sorted(members for _, members in packs) == [2, 8], packs


def test_pruned_members_leave_the_pack_and_the_others_go_on(stack):
    """ASHA's one rung (epoch 2; the next, 6, is past the trials' 5 epochs) judges all six members
    at once: those with a hopeless lr end pruned there (and maybe a fast one: it keeps the top
    third); the pack trains on without them."""
    s = stack
    body = packing_sweep(6, epochs=5, method="grid", max_trials=None,
                         parameters={"training.optimizer.lr": {"values": [0.05, 0.000001]},
                                     "training.seed": {"values": [1, 2, 3]}},
                         pruning={"type": "asha", "min_epochs": 2, "reduction_factor": 3})
    trials = s.ended(s.post(body))
    pruned = [t for t in trials if t.stop_reason == "pruned"]
    kept = [t for t in trials if t.stop_reason != "pruned"]
    shown = [(t.params, t.stop_reason, t.epochs_completed) for t in trials]
    assert kept and all(t.params["training.optimizer.lr"] == 0.05 for t in kept), shown
    assert all(t.params["training.optimizer.lr"] == 0.05 for t in trials if t not in pruned), shown
    assert len(pruned) >= 3 and all((t.status, t.epochs_completed, t.pruned_rung) == ("succeeded", 2, 0)
                                    for t in pruned), shown
    assert all((t.status, t.stop_reason, t.epochs_completed) == ("succeeded", "max_epochs", 5) for t in kept)
    # they left when pruned, each with its own finish, while the others trained on
    assert max(t.finished_at for t in pruned) < min(t.finished_at for t in kept)
    assert all(s.packs(t.id)[0]["members"] == 6 for t in trials)


def test_cancel_of_one_member_ends_only_it(stack):
    s = stack
    sweep_id = s.post(packing_sweep(3, epochs=5000))
    wait_until(lambda: all(t.status == "running" and t.epochs_completed >= 2 for t in s.trials(sweep_id)),
               timeout=60, what="the pack to train")
    victim, *others = s.trials(sweep_id)
    assert s.http.post(f"/v1/jobs/{victim.id}/cancel").status_code == 200
    wait_until(lambda: s.http.get(f"/v1/jobs/{victim.id}").json()["status"] == "cancelled", timeout=30,
               what="the cancelled member to end")
    before = {t.id: t.epochs_completed for t in s.trials(sweep_id) if t.id != victim.id}
    wait_until(lambda: all(t.epochs_completed > before[t.id] + 2 for t in s.trials(sweep_id) if t.id in before),
               timeout=30, what="the other members to train on")
    assert all(t.status == "running" for t in s.trials(sweep_id) if t.id != victim.id)
    assert s.http.get(f"/v1/jobs/{victim.id}/checkpoints/last").status_code == 200
    s.http.post(f"/v1/sweeps/{sweep_id}/cancel")
    wait_until(lambda: all(t.status == "cancelled" for t in s.trials(sweep_id)), timeout=30,
               what="the rest to stop")


def test_kill_9_mid_pack_a_second_worker_resumes_the_whole_pack(stack):
    s = stack
    [first] = [w for w in s.workers if w.alive()]
    n, epochs = 4, 400
    sweep_id = s.post(packing_sweep(n, epochs=epochs))

    def saved() -> bool:  # every member past its first saved state, none finished
        rows = s.trials(sweep_id)
        with s.factory() as session:
            return len(rows) == n and all(t.status == "running" and resume_epoch(session, t.id) > 0
                                          for t in rows)

    wait_until(saved, timeout=60, interval=0.02, what="the pack to save a state")
    first.signal(signal.SIGKILL)
    second = s.worker()
    trials = s.ended(sweep_id, timeout=180)
    assert all((t.status, t.attempts) == ("succeeded", 2) for t in trials), \
        [(t.status, t.error, t.attempts) for t in trials]
    # resumed as one pack, all from the same saved epoch
    resumed = [s.packs(t.id)[-1] for t in trials]
    assert {(p["members"], p["attempt"]) for p in resumed} == {(n, 2)} and len({p["leader"] for p in resumed}) == 1
    after = resumed[0]["resume_after"]
    assert all(p["resume_after"] == after > 0 for p in resumed)
    with s.factory() as session:
        for t in trials:  # every epoch recorded exactly once
            count, distinct = session.execute(select(func.count(), func.count(EpochMetric.epoch.distinct()))
                                              .where(EpochMetric.job_id == t.id)).one()
            assert count == distinct == t.epochs_completed, (t.trial_number, count, distinct, t.epochs_completed)
            seconds = dict(session.execute(select(EpochMetric.epoch, EpochMetric.seconds)
                                           .where(EpochMetric.job_id == t.id)).all())
            assert assert_recomputed_within(s.factory, t.id, seconds, CHECKPOINT_SECONDS) == after
    first.stop()


def test_packing_with_a_parameter_that_changes_the_shape_is_a_422_naming_it(stack):
    body = packing_sweep(4, epochs=3)
    body["parameters"]["model.layers.0.units"] = {"values": [8, 16]}
    response = stack.http.post("/v1/sweeps", json=body)
    assert response.status_code == 422, response.text
    text = response.text
    assert "model.layers.0.units" in text and "training.optimizer.lr" in text and "packing" in text
    body = packing_sweep(4, epochs=3, spec={**dropout_spec(3), "training": {**dropout_spec(3)["training"],
                                                                           "precision": "bf16"}})
    response = stack.http.post("/v1/sweeps", json=body)
    assert response.status_code == 422 and "not packed" in response.text, response.text
    response = stack.http.post("/v1/sweeps", json={**packing_sweep(4, epochs=3), "packing": False,
                                                   "max_concurrent": 100})
    assert response.status_code == 422 and "packing" in response.text, response.text
