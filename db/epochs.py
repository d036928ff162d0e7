"""A worker's epochs: each flush's metrics rows, events, progress and checkpoints in one
transaction (fenced by the attempt), for one job or every member of a pack at once; and the
rewind of a resumed attempt."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from db import events
from db.fencing import fenced_update
from db.models import METRIC_COLUMNS, Checkpoint, EpochMetric, JobEvent, utcnow
from db.states import EventKind


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch as record_epochs stores it: metrics (with "epoch" and "seconds"), the
    early-stopping countdown after it, and per-layer statistics when measured."""

    metrics: dict[str, Any]
    early_stopping: dict[str, Any] | None = None
    layers: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Flush:
    """One job's share of a flush: its attempt, its pending epochs, and when a checkpoint is due
    the state to resume from (epoch, bytes) and the best weights since the last save (epoch,
    metrics, bytes)."""

    job_id: str
    attempt: int
    epochs: list[EpochRecord]
    resume: tuple[int, bytes] | None = None
    best: tuple[int, dict[str, Any], bytes] | None = None


def finite_or_none(value: Any) -> Any:
    """NaN/inf cannot travel in JSON (nor in PostgreSQL's json): store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: finite_or_none(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for k, v in metrics.items()}


def scores(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics a job row or checkpoint keeps (no "seconds")."""
    return {k: v for k, v in clean_metrics(metrics).items() if k in METRIC_COLUMNS and k != "seconds"}


def put_checkpoint(session: Session, job_id: str, kind: str, epoch: int, metrics: dict[str, Any], data: bytes) -> None:
    put_checkpoints(session, [(job_id, kind, epoch, metrics, data)])


def put_checkpoints(session: Session, checkpoints: list[tuple[str, str, int, dict[str, Any], bytes]]) -> None:
    """Each (job id, kind, epoch, metrics, data) replaces the job's checkpoint of that kind: one
    DELETE per kind and one INSERT for them all (a 32-member pack's ends wrote 64 of each)."""
    if not checkpoints:
        return
    by_kind: dict[str, list[str]] = {}
    for job_id, kind, *_ in checkpoints:
        by_kind.setdefault(kind, []).append(job_id)
    for kind, job_ids in by_kind.items():
        session.execute(delete(Checkpoint).where(Checkpoint.job_id.in_(job_ids), Checkpoint.kind == kind))
    now = utcnow()
    session.execute(insert(Checkpoint.__table__), [
        {"job_id": job_id, "kind": kind, "epoch": epoch, "metrics": metrics, "data": data, "size": len(data),
         "sha256": hashlib.sha256(data).hexdigest(), "created_at": now}
        for job_id, kind, epoch, metrics, data in checkpoints])


def record_epochs(session: Session, flushes: list[Flush]) -> None:
    """Every flush given (one job's, or each member of a pack's) in ONE transaction: each epoch's
    metrics row (with its per-layer statistics) and event, the job's progress, the resume state
    and best weights when given; a pack's resume states are so saved at the same epoch or not at
    all. A job whose attempt was superseded rolls it all back with Fenced naming it (a pack drops
    it and writes the rest again)."""
    fenced_update(session, {f.job_id: (f.attempt, progress(f)) for f in flushes})
    stage_epochs(session, flushes)
    session.commit()


def stage_epochs(session: Session, flushes: list[Flush]) -> None:
    """record_epochs' writes but the fenced update of the jobs' rows (progress(), the caller's,
    run first) and the commit: db.attempts.finish_all ends members in the transaction that writes
    the pack's epochs."""
    rows = _EpochRows()
    checkpoints = []
    for f in flushes:
        for record in f.epochs:
            rows.add(f.job_id, record)
        if f.resume is not None:
            epoch, state = f.resume
            kept = next((scores(r.metrics) for r in f.epochs if r.metrics["epoch"] == epoch), {})
            checkpoints.append((f.job_id, "resume", epoch, kept, state))
        if f.best is not None:
            checkpoints.append((f.job_id, "best", f.best[0], scores(f.best[1]), f.best[2]))
    put_checkpoints(session, checkpoints)
    rows.insert(session)


def progress(f: Flush) -> dict[str, Any]:
    """A flush's new values for its job's row."""
    return _progress(f.epochs, f.best)


def _progress(epochs: list[EpochRecord], best: tuple[int, dict[str, Any], bytes] | None) -> dict[str, Any]:
    """A flush's new values for the job's row."""
    values: dict[str, Any] = {"updated_at": utcnow()}
    if epochs:
        values["epochs_completed"] = int(epochs[-1].metrics["epoch"])
    if best is not None:
        values.update(best_epoch=best[0], best_metrics=scores(best[1]))
    return values


class _EpochRows:
    """The epochs' metrics rows and events of one flush, inserted as two multi-row INSERTs (an
    ORM object per row cost ~1 ms each: a 32-member pack's flush took 0.28 s)."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def add(self, job_id: str, record: EpochRecord) -> None:
        row = {k: v for k, v in clean_metrics(record.metrics).items() if k in METRIC_COLUMNS}
        epoch = int(record.metrics["epoch"])
        layers = record.layers
        if layers is not None:
            layers = [{k: finite_or_none(v) for k, v in layer.items()} for layer in layers]
            row["layers"] = layers  # set only when measured: a None here would store JSON null, not SQL NULL
        self.metrics.append({"job_id": job_id, "epoch": epoch, **row})
        # the event also carries the engine's early-stopping countdown, so followers show it as is
        self.events.append({"job_id": job_id, "kind": str(EventKind.EPOCH), "created_at": utcnow(), "data": {
            "epoch": epoch, **row, "early_stopping": record.early_stopping, "layers": layers}})

    def insert(self, session: Session) -> None:
        # one INSERT per set of columns (rows with and without layer statistics); events in order
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in self.metrics:
            by_columns.setdefault(tuple(row), []).append(row)
        # the tables' own INSERTs: the ORM's bulk insert of the same rows cost ~40 % more CPU
        for group in by_columns.values():
            session.execute(insert(EpochMetric.__table__), group)
        if self.events:
            session.execute(insert(JobEvent.__table__), self.events)


def rewind(session: Session, job_id: str, attempt: int, epoch: int, best_epoch: int | None,
           best_metrics: dict[str, Any] | None) -> int:
    """A later attempt goes on after `epoch`, its resume state's (0: from the start): the rows a
    lost attempt wrote after that state are dropped (they are trained again, so every epoch is
    recorded once), the progress goes back to the state's, and a "resumed" event says so.
    Fenced; returns how many rows were dropped."""
    fenced_update(session, {job_id: (attempt, {
        "epochs_completed": epoch, "best_epoch": best_epoch,
        "best_metrics": scores(best_metrics) if best_metrics else None, "updated_at": utcnow()})})
    dropped = session.execute(delete(EpochMetric).where(EpochMetric.job_id == job_id, EpochMetric.epoch > epoch))
    redone = dropped.rowcount or 0
    events.add(session, job_id, EventKind.RESUMED, {"attempt": attempt, "epoch": epoch, "redone": redone})
    session.commit()
    return redone
