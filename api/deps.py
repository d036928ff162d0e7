"""Dependencies: a DB session per request, the principal (tenant) making it, a list's page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPBearer
from sqlalchemy.orm import Session

from api.errors import ApiError, invalid
from api.settings import Settings
from db import keys as db_keys
from db.pages import decode_cursor


# async where nothing blocks: FastAPI runs a plain `def` dependency in a thread, ~50 µs a request

async def get_settings_dep(request: Request) -> Settings:
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
    if not state.auth_on and _recheck_due(state):
        with state.session_factory() as session:
            state.auth_on = state.settings.require_auth or db_keys.any_keys(session)
        state.auth_checked_at = time.monotonic()
    return state.auth_on


def _recheck_due(state: Any) -> bool:
    return time.monotonic() - state.auth_checked_at >= AUTH_OFF_RECHECK_S


# only for the OpenAPI schema (the docs' "Authorize" button); get_principal reads the header itself
_bearer = HTTPBearer(auto_error=False, description="an API key from `netfit keys create`")


async def get_principal(request: Request, _credentials: Annotated[object, Depends(_bearer)] = None) -> str:
    """The tenant of the bearer key. With auth off (no key was ever made) requests without a
    key act as tenant "default"; a key that is sent is always checked. Async, and a thread
    only when the database is asked: most reads of an open API ask it nothing."""
    state = request.app.state
    header = request.headers.get("authorization")
    if header is None:
        if not (state.auth_on or (_recheck_due(state) and await run_in_threadpool(auth_required, state))):
            return "default"
        raise _unauthorized("a valid API key is required: send 'Authorization: Bearer <key>' "
                            "(NETFIT_API_KEY in the SDK/CLI; `netfit keys create` makes one)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <key>'")
    # looked up on every request (one indexed equality), so a revoked key is refused at once
    tenant = await run_in_threadpool(_tenant_for, state.session_factory, token.strip())
    if tenant is None:
        raise _unauthorized("this API key is unknown or revoked; ask for a new one (`netfit keys create`)")
    return tenant


def _tenant_for(factory: Any, token: str) -> str | None:
    with factory() as session:
        return db_keys.tenant_for(session, token)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
PrincipalDep = Annotated[str, Depends(get_principal)]


async def get_cursor(cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None) -> str | None:
    """The cursor of a newest-first list, checked here so no router handles a bad one."""
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except ValueError as exc:
            raise invalid({"loc": ["query", "cursor"], "msg": str(exc)}) from None
    return cursor


CursorDep = Annotated[str | None, Depends(get_cursor)]
LimitQuery = Annotated[int, Query(ge=1, le=200, description="at most this many items")]
