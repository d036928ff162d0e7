"""Strong ETags of a response's bytes: a client that sends the tag back (If-None-Match) gets a
304 and no body when nothing changed. A finished job never changes, so its reads are always
304s after the first; a running job's tag changes with each epoch recorded."""

from __future__ import annotations

import hashlib

from fastapi import Request, Response


def tag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etagged(request: Request, body: bytes, media_type: str = "application/json") -> Response:
    """The JSON body with its ETag, or a 304 when the request already holds that version."""
    tag = tag_of(body)
    sent = request.headers.get("if-none-match")
    # "*" or a list of tags (RFC 9110); a weak W/ prefix compares equal for GET
    if sent and (sent.strip() == "*" or tag in (t.strip().removeprefix("W/") for t in sent.split(","))):
        return Response(status_code=304, headers={"ETag": tag})
    return Response(body, media_type=media_type, headers={"ETag": tag})
