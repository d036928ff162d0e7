"""Request ids: the current request's id (a context variable), and the logging set-up that
prints it on every line the request causes, uvicorn's access line included.

An incoming X-Request-ID is kept when it is 1-64 of [A-Za-z0-9._-] (a UUID, a proxy's
trace id); anything else is replaced, so a header cannot forge or break log lines.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

ACCEPTED = re.compile(r"[A-Za-z0-9._-]{1,64}")

# Set by api.middleware.RequestContext in the task that serves the request; uvicorn runs each
# request in its own task, so the value never leaks into another request.
current: ContextVar[str | None] = ContextVar("netfit_request_id", default=None)


def accept(incoming: str | None) -> str:
    """The client's id if it is safe to echo and log, else a new one."""
    if incoming is not None and ACCEPTED.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def configure_logging() -> None:
    """The server's logging set-up: worker.logs.configure_logging, shared with the worker (plain
    or NETFIT_LOG_FORMAT=json lines, each with the request id; uvicorn's access log included)."""
    from worker.logs import configure_logging as configure

    configure()
