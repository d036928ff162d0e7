"""Dependencies: a DB session per request, the principal (tenant) making it, a list's page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPBearer
from sqlalchemy.orm import Session

from api.errors import ApiError, invalid
from api.settings import Settings
from db import keys as db_keys
from db.pages import decode_cursor


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


AUTH_OFF_RECHECK_S = 1.0


def auth_required(state: Any) -> bool:
    """On once any key exists (or NETFIT_REQUIRE_AUTH). Keys are revoked, never deleted, so
    once seen the answer is kept and a locked API asks the database nothing more. "Off" is
    kept for AUTH_OFF_RECHECK_S only: a first key (made by the CLI, in another process)
    locks the API within a second, and an open API does not ask on every request."""
    if not state.auth_on:
        now = time.monotonic()
        if now - state.auth_checked_at < AUTH_OFF_RECHECK_S:
            return False
        with state.session_factory() as session:
            state.auth_on = state.settings.require_auth or db_keys.any_keys(session)
        state.auth_checked_at = now
    return state.auth_on


# only for the OpenAPI schema (the docs' "Authorize" button); get_principal reads the header itself
_bearer = HTTPBearer(auto_error=False, description="an API key from `netfit keys create`")


def get_principal(request: Request, _credentials: Annotated[object, Depends(_bearer)] = None) -> str:
    """The tenant of the bearer key. With auth off (no key was ever made) requests without a
    key act as tenant "default"; a key that is sent is always checked."""
    state = request.app.state
    header = request.headers.get("authorization")
    if header is None:
        if not auth_required(state):
            return "default"
        raise _unauthorized("a valid API key is required: send 'Authorization: Bearer <key>' "
                            "(NETFIT_API_KEY in the SDK/CLI; `netfit keys create` makes one)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <key>'")
    # looked up on every request (one indexed equality), so a revoked key is refused at once
    with state.session_factory() as session:
        tenant = db_keys.tenant_for(session, token.strip())
    if tenant is None:
        raise _unauthorized("this API key is unknown or revoked; ask for a new one (`netfit keys create`)")
    return tenant


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
PrincipalDep = Annotated[str, Depends(get_principal)]


def get_cursor(cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None) -> str | None:
    """The cursor of a newest-first list, checked here so no router handles a bad one."""
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except ValueError as exc:
            raise invalid({"loc": ["query", "cursor"], "msg": str(exc)}) from None
    return cursor


CursorDep = Annotated[str | None, Depends(get_cursor)]
LimitQuery = Annotated[int, Query(ge=1, le=200, description="at most this many items")]
