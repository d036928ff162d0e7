"""Sweep state on both backends: asking (service.sweeps.fill -> db.sweeps.create_trials) from
several threads at once, max_concurrent, a packing sweep's trials asked together, the end of a
sweep, the failure streak, tenants."""

from __future__ import annotations

import threading
from typing import Any

import pytest
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


def test_create_trials_refuses_a_taken_number(db_url, session_factory):
    sweep_id = _sweep(session_factory)
    trial = ({}, iris_spec(epochs=3), "cpu")
    with session_factory() as session:
        sweep = db_sweeps.sweep_for_worker(session, sweep_id)
        assert len(db_sweeps.create_trials(session, sweep, 0, [trial])) == 1
        # a second asker that read trials_asked == 0 before the first committed
        assert db_sweeps.create_trials(session, sweep, 0, [trial, trial]) == []
        assert len(db_sweeps.trials(session, sweep_id)) == 1


def _packing(session_factory: Any, n: int) -> str:
    return _sweep(session_factory, packing=True, max_trials=n, max_concurrent=n,
                  parameters={"training.optimizer.lr": {"min": 0.001, "max": 0.1, "distribution": "log_uniform"}})


def test_a_packing_sweeps_trials_are_asked_in_one_transaction(db_url, session_factory):
    """All of them queued by one commit, after one read of the trials' states: a worker that
    claims the first finds every other one queued to pack with it, never a half-asked sweep."""
    from sqlalchemy import event

    sweep_id = _packing(session_factory, 8)
    engine = session_factory.kw["bind"]
    commits, states_read = [], []
    listeners = (("commit", lambda conn: commits.append(1)),
                 ("before_cursor_execute", lambda conn, cursor, statement, *rest: states_read.append(1)
                  if "jobs.stop_reason" in statement and "jobs.params" not in statement else None))
    for name, fn in listeners:
        event.listen(engine, name, fn)
    try:
        assert sweeps.fill(session_factory, sweep_id, lambda job_id, queue: None) == 8
    finally:
        for name, fn in listeners:
            event.remove(engine, name, fn)
    assert len(commits) == 1 and len(states_read) == 1
    rows = _trials(session_factory, sweep_id)
    assert [r.trial_number for r in rows] == list(range(8)) and {r.status for r in rows} == {"queued"}
    # Optuna's asks as one at a time would make them: each trial its own draw
    assert len({r.params["training.optimizer.lr"] for r in rows}) == 8


def test_a_packing_sweep_that_fails_mid_ask_has_no_trial(db_url, session_factory):
    """The transaction fails at its last trial's row (a process killed there, a lost connection):
    none of its trials exist, the counter has not moved, and the next ask creates them all."""
    from sqlalchemy import event

    sweep_id = _packing(session_factory, 4)
    engine = session_factory.kw["bind"]
    inserted = []

    def fail_at_the_last(conn, cursor, statement, *rest):
        if statement.lstrip().upper().startswith("INSERT INTO JOBS"):
            inserted.append(1)
            if len(inserted) == 4:
                raise ConnectionError("the connection dropped mid-ask")

    event.listen(engine, "before_cursor_execute", fail_at_the_last)
    try:
        with pytest.raises(Exception, match="connection dropped"):
            sweeps.fill(session_factory, sweep_id, lambda job_id, queue: None)
    finally:
        event.remove(engine, "before_cursor_execute", fail_at_the_last)
    assert len(inserted) == 4 and _trials(session_factory, sweep_id) == []
    with session_factory() as session:
        assert db_sweeps.sweep_for_worker(session, sweep_id).trials_asked == 0
    sent: list[str] = []
    assert sweeps.fill(session_factory, sweep_id, lambda job_id, queue: sent.append(job_id)) == 4
    assert sorted(sent) == sorted(r.id for r in _trials(session_factory, sweep_id))


def test_a_packing_sweep_asks_no_more_than_its_room(db_url, session_factory):
    """max_concurrent below max_trials: the first ask fills the room, the next ones wait for it,
    and concurrent askers never take more than it between them."""
    sweep_id = _sweep(session_factory, packing=True, max_trials=10, max_concurrent=4)
    barrier = threading.Barrier(3)
    counts: list[int] = []

    def ask() -> None:
        barrier.wait()
        counts.append(sweeps.fill(session_factory, sweep_id, lambda job_id, queue: None))

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == [0, 0, 4]
    _end_trials(session_factory, sweep_id, "succeeded")
    assert sweeps.fill(session_factory, sweep_id, lambda job_id, queue: None) == 4
    _end_trials(session_factory, sweep_id, "succeeded")
    assert sweeps.fill(session_factory, sweep_id, lambda job_id, queue: None) == 2  # max_trials
    assert [r.trial_number for r in _trials(session_factory, sweep_id)] == list(range(10))


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


def _first_two_fail(session_factory: Any, error: str) -> tuple[str, int]:
    """A sweep's first 2 trials (max_concurrent) fail with `error`: (its id, what the next fill asked)."""
    sweep_id = _sweep(session_factory, max_concurrent=2, max_trials=10)
    sweeps.fill(session_factory, sweep_id, lambda job_id, queue: None)
    _end_trials(session_factory, sweep_id, "failed", error=error)
    return sweep_id, sweeps.fill(session_factory, sweep_id, lambda job_id, queue: None)


def test_trials_failing_because_of_the_spec_end_the_sweep_failed_after_max_concurrent(db_url, session_factory):
    sweep_id, asked = _first_two_fail(session_factory, "the data set has 4 features, the network expects 5")
    assert asked == 0
    with session_factory() as session:
        sweep = db_sweeps.get_sweep(session, "team-a", sweep_id)
        assert sweep.status == "failed"
        assert "2 trials in a row failed" in sweep.error and "expects 5" in sweep.error
    assert len(_trials(session_factory, sweep_id)) == 2


def test_a_lost_worker_is_not_the_specs_failure(db_url, session_factory):
    sweep_id, asked = _first_two_fail(session_factory, "worker_lost: the worker stopped responding")
    assert asked == 2
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
