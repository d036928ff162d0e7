"""The error responses each route documents in the OpenAPI schema.

Every 4xx/5xx body is netfit.models.ErrorBody; documenting them (instead of FastAPI's
default 422 shape) keeps the schema true to what clients receive, which the schemathesis
run in tests/api/test_schemathesis.py checks.
"""

from __future__ import annotations

from typing import Any

from netfit.models import ErrorBody

WHY = {
    400: "the body is not valid JSON or multipart",
    401: "a valid API key is required",
    404: "no such resource for this API key",
    409: "it is in use; the message names what to cancel first",
    410: "removed by a retention rule, which the message names",
    413: "the body or upload is larger than the limit",
    415: "the upload is not a CSV or NPZ file (pickles are refused)",
    422: "the request is invalid; details name each field",
    429: "too many jobs queued or running; retry after Retry-After seconds",
    503: "the database or broker is unavailable; retry after Retry-After seconds",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """responses= for a route or router: these statuses, each an ErrorBody."""
    return {code: {"model": ErrorBody, "description": WHY[code]} for code in codes}


def link(path: str, method: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to the operation at `path`, e.g. job_id="$response.body#/id": what a
    client (and schemathesis' stateful phase) can call next with what a response returned."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    return {"operationRef": f"#/paths/{pointer}/{method}", "parameters": parameters}
