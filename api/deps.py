"""Dependencies: a DB session per request, the principal (tenant) making it, a list's page;
and OneThreadRoute, the route every router uses, so that a sync endpoint and its session are
one thread-pool call."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from sqlalchemy.orm import Session

from api.errors import ApiError, invalid
from api.solver import compile_handler
from api.threads import run_in_thread
from service.settings import Settings
from db import keys as db_keys
from db.pages import decode_cursor


# async where nothing blocks: FastAPI runs a plain `def` dependency in a thread, ~50 µs a request

async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session that connects at its first query (making one is no I/O). OneThreadRoute closes
    it in the endpoint's own thread; a session still in a transaction here (an endpoint of
    another route class) is closed in a thread, as a sync dependency would have been."""
    session = request.app.state.session_factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_thread(session.close)
        else:
            session.close()


async def _thread_session(request: Request) -> Session:
    """SessionDep of an endpoint that OneThreadRoute runs: the session alone, closed by the
    endpoint's thread. A dependency that yields costs FastAPI an exit stack and a shielded
    context manager, ~10 % of a list page's CPU."""
    return request.app.state.session_factory()


class OneThreadRoute(APIRoute):
    """A sync endpoint, run with the closing of its sessions in one thread call (api.threads).
    FastAPI itself runs a plain `def` in a thread, a sync dependency's setup and teardown in two
    more and the validation of a returned model in a fourth: ~50 µs of CPU and a wait each.
    Its dependencies are resolved from a plan made when the route is built (api.solver), not by
    FastAPI's generic solver on every request."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not (inspect.iscoroutinefunction(endpoint) or inspect.isasyncgenfunction(endpoint)
                or inspect.isgeneratorfunction(endpoint)):
            endpoint = _in_one_thread(endpoint)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Any]:
        generic = super().get_route_handler()
        return compile_handler(_effective_route(self), generic)


def _effective_route(route: APIRoute) -> Any:
    """The route as FastAPI handles it: a recent FastAPI (0.165 here) serves an included router's
    route through an "effective" view of it (the include's prefix, dependencies and responses),
    which it sets while it asks the route for its handler; an older one copies the route."""
    try:
        from fastapi.routing import _effective_route_context_var
    except ImportError:  # an older FastAPI copies the route itself
        return route
    context = _effective_route_context_var.get()
    return context if context is not None and getattr(context, "original_route", None) is route else route


def _in_one_thread(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    def call(**values: Any) -> Any:
        try:
            return endpoint(**values)
        finally:  # while still in this thread: the ROLLBACK that returns the connection
            for value in values.values():
                if isinstance(value, Session):
                    value.close()

    @functools.wraps(endpoint)  # FastAPI reads the parameters through __wrapped__
    async def one_thread(**values: Any) -> Any:
        return await run_in_thread(call, **values)

    signature = _signature(endpoint)
    if signature is not None:  # its sessions made without a generator: `call` closes them
        one_thread.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
            p.replace(annotation=_ThreadSessionDep) if p.annotation == SessionDep else p
            for p in signature.parameters.values()])
    return one_thread


def _signature(endpoint: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(endpoint, eval_str=True)
    except NameError:  # an annotation FastAPI cannot see either: the endpoint is left as it is
        return None


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
        if not (state.auth_on or (_recheck_due(state) and await run_in_thread(auth_required, state))):
            return "default"
        raise _unauthorized("a valid API key is required: send 'Authorization: Bearer <key>' "
                            "(NETFIT_API_KEY in the SDK/CLI; `netfit keys create` makes one)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <key>'")
    # looked up on every request (one indexed equality), so a revoked key is refused at once
    tenant = await run_in_thread(_tenant_for, state.session_factory, token.strip())
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
_ThreadSessionDep = Annotated[Session, Depends(_thread_session)]
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
