"""Server-Sent Events: a small parser for `text/event-stream` and the typed job events.

The job stream (`GET /v1/jobs/{id}/events`) sends `event: epoch` with one metrics row,
`event: status` with the job's new status, and the events of its life on the shared cluster
(`waiting`, `lost`, `preempted`, `resumed`: a LifeEvent); every event carries an increasing `id:` so a
client that lost its connection resumes with `Last-Event-ID` and misses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from netfit.models import TERMINAL_STATUSES, EarlyStoppingProgress, EpochMetrics, LayerStat


@dataclass(frozen=True)
class ServerEvent:
    """One dispatched event as the SSE standard defines it (before we give it a meaning)."""

    event: str
    data: str
    id: str | None = None
    retry_ms: int | None = None


def parse_sse(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """Turn the stream's lines into events; a blank line dispatches what was collected."""
    event, data, event_id, retry = "message", [], None, None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerEvent(event=event, data="\n".join(data), id=event_id, retry_ms=retry)
            event, data, retry = "message", [], None
            continue
        if line.startswith(":"):  # a comment, used by servers as a keep-alive
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\0" not in value:
            event_id = value  # per the standard the last id persists across events
        elif field == "retry" and value.isdigit():
            retry = int(value)


@dataclass(frozen=True)
class EpochEvent:
    """An epoch finished: its metrics row as `GET /v1/jobs/{id}/metrics` returns it."""

    id: str | None
    metrics: EpochMetrics
    early_stopping: EarlyStoppingProgress | None = None  # the engine's countdown, as it decided
    layers: list[LayerStat] | None = None  # per-layer statistics, as GET /v1/jobs/{id}/layer-stats has them

    @property
    def epoch(self) -> int:
        return self.metrics.epoch

    def __str__(self) -> str:  # the CLI's line, without the bar (an event does not know the epoch count)
        from netfit.progress import progress_line

        return progress_line(self.metrics, None, self.early_stopping)


@dataclass(frozen=True)
class StatusEvent:
    """The job changed status; `data` holds everything the server sent with it."""

    id: str | None
    status: str
    stop_reason: str | None = None
    error: str | None = None
    data: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def __str__(self) -> str:
        from netfit.progress import status_line

        return status_line(self.status, self.stop_reason, self.error)


@dataclass(frozen=True)
class LifeEvent:
    """What happened to the job on the cluster: `waiting` {reason, position, workers, message},
    `lost` {attempt, epoch}: its worker stopped beating, `preempted` {by, after_epoch}: a job of
    higher priority took its worker, `resumed` {attempt, epoch, redone}."""

    id: str | None
    kind: str
    data: dict[str, Any]

    def __str__(self) -> str:
        from netfit.progress import life_line

        return life_line(self.kind, self.data)


LIFE_KINDS = ("waiting", "lost", "preempted", "resumed")
JobEvent = EpochEvent | StatusEvent | LifeEvent


def job_event(raw: ServerEvent) -> JobEvent | None:
    """Give a raw event its type; None for kinds this SDK does not know (newer servers)."""
    if raw.event not in ("epoch", "status", *LIFE_KINDS):
        return None
    payload = json.loads(raw.data)
    if raw.event in LIFE_KINDS:
        return LifeEvent(id=raw.id, kind=raw.event, data=payload)
    if raw.event == "epoch":
        countdown = payload.get("early_stopping")
        return EpochEvent(id=raw.id, metrics=EpochMetrics.model_validate(payload),
                          early_stopping=countdown and EarlyStoppingProgress.model_validate(countdown),
                          layers=[LayerStat.model_validate(layer) for layer in payload.get("layers") or []] or None)
    return StatusEvent(
        id=raw.id,
        status=payload["status"],
        stop_reason=payload.get("stop_reason"),
        error=payload.get("error"),
        data=payload,
    )
