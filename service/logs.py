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
import re
import uuid
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
    """The client's id if it is safe to echo and log, else a new one."""
    if incoming is not None and ACCEPTED.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """record.request_id and record.job_id ("-" when none), and record.context for plain lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        record.job_id = job_id.get() or "-"
        record.context = record.request_id if record.job_id == "-" else f"{record.request_id} job={record.job_id}"
        return True


# the attributes every LogRecord has; anything else was passed in `extra=` and is kept
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "context"}


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
    """One stderr handler on the root logger; uvicorn's and Celery's loggers propagate to it."""
    settings = settings or get_settings()
    level = settings.log_level.upper()
    json_lines = settings.log_format == "json"
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"plain": {"format": FORMAT}, "json": {"()": JsonFormatter}},
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
