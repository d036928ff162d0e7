"""The one logging set-up of every server process (the API and the worker alike), and the ids
each line carries.

Each line carries the request id (`request_id`: the HTTP request being served, set by
api.middleware; in a worker the request that created the job, sent along in the Celery
message's headers by service.queue) and, in a worker, the id of the job it is training.
NETFIT_LOG_FORMAT=json prints one JSON object per line (for log shippers); the default is one
plain line. NETFIT_LOG_LEVEL sets the level.

An incoming X-Request-ID is kept when it is 1-64 of [A-Za-z0-9._-] (a UUID, a proxy's trace
id); anything else is replaced, so a header cannot forge or break log lines.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
import time
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

from service.settings import Settings, get_settings

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(context)s] %(message)s"
REQUEST_HEADER = "netfit_request_id"  # the Celery message header that carries the request id
ACCEPTED = re.compile(r"[A-Za-z0-9._-]{1,64}")

# Set by api.middleware.RequestContext in the task that serves the request (uvicorn runs each
# request in its own task, so the value never leaks into another request), and in a worker
# around each training task (service.queue).
request_id: ContextVar[str | None] = ContextVar("netfit_request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("netfit_job_id", default=None)


def accept_request_id(incoming: str | None) -> str:
    """The client's id if it is safe to echo and log, else a new one: a random (version 4)
    UUID's 32 hex digits, as uuid.uuid4().hex spells it, without building a UUID object."""
    if incoming is not None and ACCEPTED.fullmatch(incoming):
        return incoming
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return raw.hex()


class ContextFilter(logging.Filter):
    """record.request_id and record.job_id ("-" when none), and record.context for plain lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        record.job_id = job_id.get() or "-"
        record.context = record.request_id if record.job_id == "-" else f"{record.request_id} job={record.job_id}"
        return True


# the attributes every LogRecord has; anything else was passed in `extra=` and is kept
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "context"}


class PlainFormatter(logging.Formatter):
    """FORMAT, with asctime spelled as logging's default does ("2026-12-06 18:49:00,123", local
    time); the seconds' part is formatted once a second, not once a line (strftime was ~20 % of
    an access log line's CPU)."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime(self.default_time_format, self.converter(record.created)))
            self._second = cached  # one assignment: threads see the old pair or the new one
        return self.default_msec_format % (cached[1], record.msecs)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"), "job_id": getattr(record, "job_id", "-"),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: Settings | None = None) -> None:
    """One stderr handler on the root logger; uvicorn's and Celery's loggers propagate to it.

    No line shows where a call was made, or the thread's or process's name or id: a record does
    not look them up (logging's documented optimizations), ~15 % of an access log line's CPU."""
    settings = settings or get_settings()
    logging._srcfile = None  # type: ignore[attr-defined]  # no stack walk for pathname/lineno/funcName
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    level = settings.log_level.upper()
    json_lines = settings.log_format == "json"
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"plain": {"()": PlainFormatter, "format": FORMAT}, "json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json" if json_lines else "plain",
                                "filters": ["context"]}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {name: {"level": level, "handlers": [], "propagate": True}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery")},
    })


def message_headers() -> dict[str, str]:
    """What enqueue adds to a training message: the request that created the job."""
    rid = request_id.get()
    return {REQUEST_HEADER: rid} if rid else {}
