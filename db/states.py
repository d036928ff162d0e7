"""What a job can be and what its event stream holds, named once.

A job's status and its events' kinds are stored as these strings (StrEnum members compare and
store as their values), and GET /v1/jobs/{id}/events names each event by its kind.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = (Status.QUEUED, Status.RUNNING)
FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)


class EventKind(StrEnum):
    """A job event's kind; its data says the rest. Every kind a user can read in the stream."""

    STATUS = "status"  # {status, ...}: queued, running (attempt), and the end (stop_reason, error)
    EPOCH = "epoch"  # {epoch, metrics..., early_stopping, layers}
    PACK = "pack"  # {leader, members, attempt, resume_after}: the pack a trial trains in
    PRUNED = "pruned"  # {epoch, rung}: its sweep's pruner stopped the trial
    LOST = "lost"  # {attempt, epoch}: its worker stopped renewing the lease; taken back at that epoch
    RESUMED = "resumed"  # {attempt, epoch, redone}: goes on after that saved epoch; `redone` epochs train again
    WAITING = "waiting"  # {reason, position, workers, message}: why a queued job has not started (db.schedule)
    SUPERSEDED = "superseded"  # {attempt}: that attempt woke to find the job taken over; its writes were refused
    PREEMPTED = "preempted"  # {by, by_priority, after_epoch}: stopped after that epoch for the higher-priority job `by` (null: another tenant's); queued again
