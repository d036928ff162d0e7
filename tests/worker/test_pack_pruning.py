"""A pack's members judged by their sweep's pruner after the same epoch are judged together
(service.sweeps.prune_decisions, what worker.persist asks): each gets the verdict it would get
judged alone (prune_decision), from one read of the sweep's trials and one study, not one each.
On SQLite and PostgreSQL, with the rows a worker writes."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from db import sweeps as db_sweeps
from db.models import EpochMetric, Job, JobEvent, utcnow
from netfit.sweep_spec import SweepSpec
from service import sweeps
from service.sweeps.studies import forget_kept
from tests.conftest import engine_events, iris_spec

EPOCH = 4  # ASHA's third rung (1, 2, 4 with reduction factor 2); the median pruner judges every epoch


def _sweep(session_factory: Any, pruning: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    """A sweep of 24 trials: 12 ended (10 epochs each), 12 running (the pack, EPOCH epochs written)."""
    body = {"name": "pack", "spec": iris_spec(epochs=10), "method": "random", "max_trials": 24, "max_concurrent": 12,
            "seed": 5, "pruning": pruning,
            "parameters": {"training.optimizer.lr": {"min": 0.001, "max": 0.1, "distribution": "log_uniform"}}}
    request = SweepSpec.model_validate(body)
    stored = request.model_dump(mode="json") | {"max_trials": request.trials,
                                                "objective": {"metric": "val_loss", "mode": "min"}}
    with session_factory() as s:
        sweep_id = db_sweeps.create_sweep(s, tenant="default", request=stored, method=request.method, metric="val_loss",
                                          mode="min", max_trials=request.trials,
                                          max_concurrent=request.max_concurrent).id
    rng = random.Random(7)

    def curves(job_ids: list[str], epochs: int, status: str) -> None:
        scale = {j: rng.choice([0.5, 1.0, 3.0]) for j in job_ids}  # some far worse than the rest
        with session_factory() as s:
            s.execute(insert(EpochMetric), [{"job_id": j, "epoch": e,
                                             "val_loss": scale[j] * rng.uniform(0.2, 1.0) / e ** 0.3}
                                            for j in job_ids for e in range(1, epochs + 1)])
            s.execute(update(Job).where(Job.id.in_(job_ids)).values(
                status=status, epochs_completed=epochs, finished_at=utcnow() if status == "succeeded" else None,
                stop_reason="max_epochs" if status == "succeeded" else None))
            s.commit()

    sweeps.fill(session_factory, sweep_id, lambda job_id, queue: None)
    with session_factory() as s:
        ended = [r.id for r in db_sweeps.trials(s, sweep_id)]
    curves(ended, 10, "succeeded")
    sweeps.fill(session_factory, sweep_id, lambda job_id, queue: None)
    with session_factory() as s:
        pack = [r.id for r in db_sweeps.trials(s, sweep_id) if r.id not in ended]
    curves(pack, EPOCH, "running")
    return sweep_id, ended, pack


def _pruned_events(session_factory: Any, job_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    with session_factory() as s:
        rows = s.execute(select(JobEvent.job_id, JobEvent.data).where(JobEvent.job_id.in_(job_ids),
                                                                    JobEvent.kind == "pruned")).all()
    out: dict[str, list[dict[str, Any]]] = {}
    for job_id, data in rows:
        out.setdefault(job_id, []).append(data)
    return out


@pytest.mark.parametrize("pruning", [{"type": "asha", "min_epochs": 1, "reduction_factor": 2},
                                     {"type": "median", "min_epochs": 2}], ids=["asha", "median"])
def test_a_packs_members_judged_together_get_the_verdicts_each_gets_alone(session_factory, pruning):
    sweep_id, _, pack = _sweep(session_factory, pruning)
    forget_kept()
    with engine_events(session_factory, "before_cursor_execute") as alone_statements:
        alone = {j: v for j in pack if (v := sweeps.prune_decision(session_factory, j, EPOCH))}
    assert alone and len(alone) < len(pack)  # some pruned, some not: the verdicts tell members apart
    marked = _pruned_events(session_factory, pack)
    with session_factory() as s:  # judged alone again, the same trials start unjudged
        s.execute(update(Job).where(Job.id.in_(pack)).values(pruned_rung=None))
        s.execute(JobEvent.__table__.delete().where(JobEvent.job_id.in_(pack), JobEvent.kind == "pruned"))
        s.commit()
    forget_kept()
    with engine_events(session_factory, "before_cursor_execute") as together_statements:
        together = sweeps.prune_decisions(session_factory, pack, EPOCH)
    assert together == alone
    assert _pruned_events(session_factory, pack) == marked  # the same rung recorded, once each
    with session_factory() as s:
        rungs = dict(s.execute(select(Job.id, Job.pruned_rung).where(Job.id.in_(pack))).all())
    assert {j for j, rung in rungs.items() if rung is not None} == set(alone)
    # one read of the sweep and one commit, whatever the pack's size (alone: ~6 statements a member)
    assert len(together_statements) <= 12 < len(alone_statements)
