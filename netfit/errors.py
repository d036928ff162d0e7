"""The SDK's error: what an error answer of the API says (netfit.client raises it)."""

from __future__ import annotations

import httpx


class NetfitError(Exception):
    """An error answer from the API: HTTP status, a short code, a sentence and per-field details."""

    def __init__(self, status_code: int, error: str, message: str, details: list[dict] | None = None,
                 request_id: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.message = message
        self.details = details or []
        self.request_id = request_id  # quote it to the operator: the server's log lines carry it

    def __str__(self) -> str:
        where = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg', '')}".lstrip(": ")
            for d in self.details
            if d.get("msg") and d.get("msg") not in self.message
        )
        return f"{self.message} ({where})" if where else self.message

    @classmethod
    def from_response(cls, response: httpx.Response) -> NetfitError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "message" in body:
            return cls(response.status_code, str(body.get("error", "error")), str(body["message"]),
                       [d for d in body.get("details") or [] if isinstance(d, dict)],
                       body.get("request_id") or response.headers.get("x-request-id"))
        # not our error body (a proxy, a server too old or too broken to answer properly)
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
        return cls(response.status_code, "http_error", f"HTTP {response.status_code} from {response.request.url}: {text}")
