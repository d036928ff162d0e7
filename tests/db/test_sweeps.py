"""Sweep state on both backends: asking (service.sweeps.fill -> db.sweeps.create_trial) from
several threads at once, max_concurrent, the end of a sweep, the failure streak, tenants."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import select, update

from db import sweeps as db_sweeps
from db.models import Job
from netfit.sweep_spec import SweepSpec
from tests.conftest import iris_spec
from service import sweeps
from service.sweeps.studies import forget_kept


def _sweep(session_factory: Any, tenant: str = "team-a", **overrides: Any) -> str:
    body = {"name": "t", "spec": iris_spec(epochs=3),
            "parameters": {"training.optimizer.lr": {"min": 0.001, "max": 0.1, "distribution": "log_uniform"},
                           "model.layers.0.units": {"values": [4, 8, 16]}},
            "method": "tpe", "max_trials": 6, "max_concurrent": 2, **overrides}
    request = SweepSpec.model_validate(body)
    stored = request.model_dump(mode="json") | {"max_trials": request.trials,
                                                "objective": {"metric": "val_loss", "mode": "min"}}
    with session_factory() as session:
        return db_sweeps.create_sweep(session, tenant=tenant, request=stored, method=request.method,
                                      metric="val_loss", mode="min", max_trials=request.trials,
                                      max_concurrent=request.max_concurrent).id


def _trials(session_factory: Any, sweep_id: str) -> list[Any]:
    with session_factory() as session:
        return db_sweeps.trials(session, sweep_id)


def _end_trials(session_factory: Any, sweep_id: str, status: str, error: str | None = None) -> None:
    from db.models import utcnow

    with session_factory() as session:
        session.execute(update(Job).where(Job.sweep_id == sweep_id, Job.status.in_(("queued", "running")))
                        .values(status=status, error=error, finished_at=utcnow()))
        session.commit()


def test_concurrent_askers_create_exactly_one_next_trial(db_url, session_factory):
    sweep_id = _sweep(session_factory, max_concurrent=1)
    sent: list[str] = []
    barrier = threading.Barrier(4)

    def ask() -> None:
        barrier.wait()
        sweeps.fill(session_factory, sweep_id, lambda job_id, queue: sent.append(job_id))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = _trials(session_factory, sweep_id)
    assert [r.trial_number for r in rows] == [0] and sent == [rows[0].id]
    with session_factory() as session:
        assert db_sweeps.sweep_for_worker(session, sweep_id).trials_asked == 1


def test_create_trial_refuses_a_taken_number(db_url, session_factory):
    sweep_id = _sweep(session_factory)
    spec = iris_spec(epochs=3)
    with session_factory() as session:
        sweep = db_sweeps.sweep_for_worker(session, sweep_id)
        assert db_sweeps.create_trial(session, sweep, 0, params={}, spec=spec, queue="cpu") is not None
        # a second asker that read trials_asked == 0 before the first committed
        assert db_sweeps.create_trial(session, sweep, 0, params={}, spec=spec, queue="cpu") is None
        assert len(db_sweeps.trials(session, sweep_id)) == 1


def test_fill_holds_max_concurrent_and_the_sweep_ends_after_max_trials(db_url, session_factory):
    sweep_id = _sweep(session_factory)
    send = lambda job_id, queue: None  # noqa: E731 - no broker here
    assert sweeps.fill(session_factory, sweep_id, send) == 2
    assert sweeps.fill(session_factory, sweep_id, send) == 0  # two active: no third
    for _ in range(2):
        _end_trials(session_factory, sweep_id, "succeeded")
        assert sweeps.fill(session_factory, sweep_id, send) == 2
    _end_trials(session_factory, sweep_id, "succeeded")
    assert sweeps.fill(session_factory, sweep_id, send) == 0
    rows = _trials(session_factory, sweep_id)
    assert sorted(r.trial_number for r in rows) == list(range(6))
    # distinct params: TPE's seeded start draws differ per trial number
    assert len({repr(sorted(r.params.items())) for r in rows}) == 6
    with session_factory() as session:
        sweep = db_sweeps.get_sweep(session, "team-a", sweep_id)
        assert sweep.status == "succeeded" and sweep.finished_at is not None


def test_trials_failing_because_of_the_spec_end_the_sweep_failed_after_max_concurrent(db_url, session_factory):
    sweep_id = _sweep(session_factory, max_concurrent=2, max_trials=10)
    send = lambda job_id, queue: None  # noqa: E731
    sweeps.fill(session_factory, sweep_id, send)
    _end_trials(session_factory, sweep_id, "failed", error="the data set has 4 features, the network expects 5")
    assert sweeps.fill(session_factory, sweep_id, send) == 0
    with session_factory() as session:
        sweep = db_sweeps.get_sweep(session, "team-a", sweep_id)
        assert sweep.status == "failed"
        assert "2 trials in a row failed" in sweep.error and "expects 5" in sweep.error
    assert len(_trials(session_factory, sweep_id)) == 2


def test_a_lost_worker_is_not_the_specs_failure(db_url, session_factory):
    sweep_id = _sweep(session_factory, max_concurrent=2, max_trials=10)
    send = lambda job_id, queue: None  # noqa: E731
    sweeps.fill(session_factory, sweep_id, send)
    _end_trials(session_factory, sweep_id, "failed", error="worker_lost: the worker stopped responding")
    assert sweeps.fill(session_factory, sweep_id, send) == 2
    with session_factory() as session:
        assert db_sweeps.sweep_for_worker(session, sweep_id).status == "running"


def test_cancel_is_idempotent_and_tenant_scoped(db_url, session_factory):
    sweep_id = _sweep(session_factory)
    sweeps.fill(session_factory, sweep_id, lambda job_id, queue: None)
    with session_factory() as session:
        assert db_sweeps.get_sweep(session, "team-b", sweep_id) is None
        assert db_sweeps.request_cancel(session, "team-b", sweep_id) is None
        assert db_sweeps.list_sweeps(session, "team-b")[0] == []
        first = db_sweeps.request_cancel(session, "team-a", sweep_id)
        assert first.status == "cancelled"
        again = db_sweeps.request_cancel(session, "team-a", sweep_id)
        assert again.status == "cancelled" and again.finished_at == first.finished_at
        statuses = set(session.scalars(select(Job.status).where(Job.sweep_id == sweep_id)))
    assert statuses == {"cancelled"}
    # a cancelled sweep asks for nothing more
    assert sweeps.fill(session_factory, sweep_id, lambda job_id, queue: None) == 0


def _end_with_curves(session_factory: Any, sweep_id: str) -> None:
    """End the active trials as a worker would, each by its number: most succeed with a val_loss
    curve that depends on their lr, some are pruned after 2 epochs, some fail."""
    import math

    from db.models import EpochMetric, utcnow

    with session_factory() as session:
        for job in session.scalars(select(Job).where(Job.sweep_id == sweep_id, Job.status.in_(("queued", "running")))):
            kind = ("succeeded", "succeeded", "succeeded", "failed", "pruned")[job.trial_number % 5]
            epochs = {"succeeded": 3, "pruned": 2, "failed": 0}[kind]
            loss = abs(math.log10(job.params["training.optimizer.lr"]) + 2) + job.params["model.layers.0.units"] / 100
            session.add_all(EpochMetric(job_id=job.id, epoch=e, train_loss=loss + 1 / e, val_loss=loss + 1.1 / e,
                                        lr=0.01, seconds=0.01) for e in range(1, epochs + 1))
            job.status = "failed" if kind == "failed" else "succeeded"
            job.stop_reason = {"succeeded": "max_epochs", "pruned": "pruned", "failed": None}[kind]
            job.error = "the data set has 4 features, the network expects 5" if kind == "failed" else None
            job.epochs_completed, job.finished_at = epochs, utcnow()
        session.commit()


def test_a_process_that_keeps_its_study_asks_what_a_fresh_one_would(db_url, session_factory):
    """Each process keeps its sweeps' studies between asks and brings them up to date from the
    rows: the trials it asks must be the ones a study rebuilt from the database gives."""
    asked: dict[str, list[Any]] = {}
    for keep in (True, False):
        sweep_id = _sweep(session_factory, max_trials=16, seed=7)
        while True:
            if not keep:  # a new process at every ask
                sweeps.forget(sweep_id)
                forget_kept()
            sweeps.fill(session_factory, sweep_id, lambda job_id, queue: None)
            if all(r.status not in ("queued", "running") for r in _trials(session_factory, sweep_id)):
                break
            _end_with_curves(session_factory, sweep_id)
        asked[str(keep)] = [(r.trial_number, r.params) for r in _trials(session_factory, sweep_id)]
    assert len(asked["True"]) == 16  # past TPE's 10 start-up trials, so its model chose the last ones
    assert asked["True"] == asked["False"]
