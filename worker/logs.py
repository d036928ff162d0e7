"""The one logging set-up of every server process (the API and the worker alike).

Each line carries the request id (api.request_ids.current: the HTTP request being served, or
in a worker the request that created the job, sent along in the Celery message's headers)
and, in a worker, the id of the job it is training. NETFIT_LOG_FORMAT=json prints one JSON
object per line (for log shippers); the default is one plain line. NETFIT_LOG_LEVEL sets
the level. Celery's own logging set-up is replaced by this one (its setup_logging signal).
"""

from __future__ import annotations

import json
import logging
import logging.config
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

from celery import signals

from api.request_ids import current as request_id
from api.settings import get_settings

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(context)s] %(message)s"
REQUEST_HEADER = "netfit_request_id"  # the Celery message header that carries the request id
TRAIN_TASK = "worker.tasks.train_job"

job_id: ContextVar[str | None] = ContextVar("netfit_job_id", default=None)


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


def configure_logging() -> None:
    """One stderr handler on the root logger; uvicorn's and Celery's loggers propagate to it."""
    settings = get_settings()
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


@signals.setup_logging.connect
def _celery_logging(**_: Any) -> None:
    configure_logging()


@signals.task_prerun.connect
def _task_context(task: Any = None, args: Any = None, **_: Any) -> None:
    if task is None or task.name != TRAIN_TASK or not args:
        return
    headers = getattr(task.request, "headers", None) or {}
    rid = getattr(task.request, REQUEST_HEADER, None) or headers.get(REQUEST_HEADER)
    # a re-send by the reconciler carries no request id: "-" rather than a stale one
    request_id.set(rid if isinstance(rid, str) else None)
    job_id.set(str(args[0]))


@signals.task_postrun.connect
def _task_done(**_: Any) -> None:
    request_id.set(None)
    job_id.set(None)
