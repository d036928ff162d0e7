"""Strong ETags of a response's bytes: a client that sends the tag back (If-None-Match) gets a
304 and no body when nothing changed. A finished job never changes, so its reads are always
304s after the first; a running job's tag changes with each epoch recorded.

Sent with `Cache-Control: private, no-cache`: a browser keeps the body and asks again each time
(a 304 costs no body), and no shared cache keeps a tenant's data (api.middleware's no-store
default would make the browser drop the body, and so never revalidate)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fastapi import Request, Response

CACHE_CONTROL = "private, no-cache"


def tag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


@dataclass(frozen=True, slots=True)
class Tagged:
    """A body with its tag, hashed once: what a cache keeps (a 1,000-epoch page is ~150 KB,
    and hashing it on every read cost more than the rest of a kept read)."""

    body: bytes
    tag: str

    @classmethod
    def of(cls, body: bytes) -> Tagged:
        return cls(body, tag_of(body))


def matches(request: Request, tag: str) -> bool:
    """Whether If-None-Match holds `tag`: "*" or a list of tags (RFC 9110); a weak W/ prefix
    compares equal for GET."""
    sent = request.headers.get("if-none-match")
    return bool(sent) and (sent.strip() == "*" or tag in (t.strip().removeprefix("W/") for t in sent.split(",")))


def etagged(request: Request, body: bytes | Tagged, media_type: str = "application/json", *,
            tag: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """The body with its ETag (`tag`, else the body's hash), or a 304 when the request already
    holds that version."""
    if isinstance(body, Tagged):
        body, tag = body.body, body.tag
    tag = tag or tag_of(body)
    sent = {"ETag": tag, "Cache-Control": CACHE_CONTROL}
    if matches(request, tag):
        return Response(status_code=304, headers=sent)
    return Response(body, media_type=media_type, headers={**(headers or {}), **sent})
