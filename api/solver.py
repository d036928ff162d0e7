"""A route's request handler with its dependencies resolved from a plan made once, when the route
is built, instead of FastAPI's generic `solve_dependencies` on every request.

FastAPI walks a route's dependency tree on every request: for each dependency it computes a
cache key, classifies the callable, makes the result objects, and looks up and copies each query
parameter's aliases, sequence-ness and default; ~20 % of a list page's CPU in the API. The
plan holds, for each dependency in FastAPI's order, its callable, its cache key and its
parameters with their request key and location worked out, so a request only reads its values
and validates what it sent (with FastAPI's own field validators: the same values and errors).

What the plan does not cover keeps FastAPI's handler, decided per route when it is built:
bodies, dependencies that yield or are sync, security scopes, background tasks, a `Response`
parameter, streams, param models, aliases. And per request: dependency overrides (tests) and
FastAPI's own OpenTelemetry spans. A request whose parameters are invalid is answered by
FastAPI's handler as well (the same 422 to the byte); its dependencies then run a second time,
so they must be free of side effects (ours read: settings, the principal, a session that has
not connected yet). An endpoint that returns a model rather than a Response is serialized by
FastAPI's handler of the same response model, status and class."""

from __future__ import annotations

import copy
import enum
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.dependencies.utils import request_params_to_args
from fastapi.routing import APIRoute
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

_STASH = "netfit.solver.result"  # the scope key of an endpoint's result, for its serializer
_ATOMS = (type(None), bool, int, float, str, bytes, enum.Enum)  # defaults used as they are (no copy)

try:  # a recent FastAPI's request key(s) of a parameter; without it only plain names are planned
    from fastapi.dependencies.utils import _get_param_aliases
except ImportError:  # pragma: no cover - older FastAPI
    _get_param_aliases = None
try:
    from fastapi.dependencies.utils import _get_param_model
except ImportError:  # pragma: no cover
    _get_param_model = None
try:
    from fastapi._compat import field_annotation_is_sequence
except ImportError:  # pragma: no cover
    field_annotation_is_sequence = None
try:  # FastAPI's OpenTelemetry (FastAPI(telemetry=...)): its spans come from its own handler
    from fastapi.telemetry._api import _get_request_telemetry
except ImportError:  # pragma: no cover
    def _get_request_telemetry() -> None:
        return None


class Unplannable(Exception):
    """The route needs something the plan does not do: it keeps FastAPI's handler."""


def compile_handler(route: Any, generic: Handler) -> Handler:
    """The planned handler of `route` (an APIRoute, or FastAPI's effective view of one included in
    an app), falling back to `generic` (FastAPI's handler of the same route); `generic` itself
    where the route cannot be planned."""
    try:
        plan = _plan(route.dependant)
        _check_route(route)
        serializer = _serializer(route)
    except Unplannable:
        return generic
    call = route.dependant.call
    overrides = route.dependency_overrides_provider

    async def handler(request: Request) -> Response:
        if (overrides is not None and getattr(overrides, "dependency_overrides", None)) \
                or _get_request_telemetry() is not None:
            return await generic(request)
        values: dict[str, Any] = {}
        if not await plan.solve(request, values, {}):
            return await generic(request)  # FastAPI's own 422 for these parameters
        result = await call(**values)
        if isinstance(result, Response):
            return result
        request.scope[_STASH] = result
        return await serializer(request)

    return handler


class _Field:
    """One path or query parameter: where it is read, and what stands in when it is absent."""

    __slots__ = ("field", "name", "key", "loc", "direct", "default", "copy_default", "absent_is_default")

    def __init__(self, field: Any, where: str):
        info = field.field_info
        self.field, self.name = field, field.name
        if _get_param_model is not None and _get_param_model(field) is not None:
            raise Unplannable("a param model")
        if _get_param_aliases is not None:
            keys = [key for _, key in _get_param_aliases(field)]
        elif getattr(info, "validation_alias", None) is None and info.alias is None:
            keys = [field.name]
        else:
            raise Unplannable("an alias this FastAPI cannot tell us the request key of")
        if len(keys) != 1:
            raise Unplannable("several request keys")
        self.key = keys[0]
        self.loc = (where, self.key)
        sequence = field_annotation_is_sequence is None or field_annotation_is_sequence(info.annotation)
        # a single plain value: validated here, as FastAPI validates it; anything else by FastAPI
        self.direct = not sequence and self.key == getattr(field, "alias", None) == field.name
        default = info.default
        self.absent_is_default = not info.is_required() and not info.validate_default
        self.default, self.copy_default = default, not isinstance(default, _ATOMS)


class _Plan:
    """A dependant: its sub-dependencies in FastAPI's order, then its own parameters."""

    def __init__(self, dependant: Any, top: bool = False):
        d = dependant
        for attr in ("body_params", "cookie_params"):
            if getattr(d, attr, None):
                raise Unplannable(attr)
        for attr in ("websocket_param_name", "response_param_name", "background_tasks_param_name",
                     "security_scopes_param_name", "own_oauth_scopes", "parent_oauth_scopes", "security_scopes",
                     "scope", "concurrency"):
            # a dependency's scope is part of its cache key (FastAPI gives the endpoint's "function")
            if getattr(d, attr, None) and not (top and attr == "scope"):
                raise Unplannable(attr)
        self.subs = []
        for sub in d.dependencies:
            _check_callable(sub.call)
            self.subs.append((_Plan(sub), sub.call, sub.name, sub.use_cache))
        self.path = [_Field(f, "path") for f in d.path_params]
        self.query = [_Field(f, "query") for f in d.query_params]
        self.headers = list(d.header_params)  # validated by FastAPI itself (underscores, lists)
        self.request_names = [n for n in (d.request_param_name, getattr(d, "http_connection_param_name", None)) if n]

    async def solve(self, request: Request, values: dict[str, Any], cache: dict[Any, Any]) -> bool:
        """Fill `values` with the dependant's arguments; False if a parameter was invalid (FastAPI
        then answers), after resolving every other dependency as FastAPI does."""
        ok = True
        for plan, call, name, use_cache in self.subs:
            sub_values: dict[str, Any] = {}
            if not await plan.solve(request, sub_values, cache):
                ok = False
                continue
            if use_cache and call in cache:
                solved = cache[call]
            else:
                solved = await call(**sub_values)
            if name is not None:
                values[name] = solved
            cache.setdefault(call, solved)
        if self.path and not _read(self.path, request.path_params, values):
            ok = False
        if self.query and not _read(self.query, request.query_params, values):
            ok = False
        if self.headers:
            found, errors = request_params_to_args(self.headers, request.headers)
            if errors:
                ok = False
            values.update(found)
        for name in self.request_names:
            values[name] = request
        return ok


def _read(fields: list[_Field], received: Any, values: dict[str, Any]) -> bool:
    ok, group = True, {}
    for f in fields:
        value = received.get(f.key)
        if value is None:
            if f.absent_is_default:
                group[f.name] = copy.deepcopy(f.default) if f.copy_default else f.default
                continue
        elif f.direct:
            validated, errors = f.field.validate(value, group, loc=f.loc)
            if errors:
                ok = False
            else:
                group[f.name] = validated
            continue
        found, errors = request_params_to_args([f.field], received)  # FastAPI's own reading of it
        if errors:
            ok = False
        group.update(found)
    values.update(group)
    return ok


def _plan(dependant: Any) -> _Plan:
    call = dependant.call
    if not inspect.iscoroutinefunction(call) or _is_generator(call):
        raise Unplannable("the endpoint is not a coroutine function")
    return _Plan(dependant, top=True)


def _check_callable(call: Any) -> None:
    """An async function, or an instance whose __call__ is one (a security scheme)."""
    if call is None or isinstance(call, functools.partial) or inspect.isclass(call) or _is_generator(call):
        raise Unplannable("a class, a partial or a generator")
    if inspect.iscoroutinefunction(call):
        return
    dunder = getattr(type(call), "__call__", None)
    if not inspect.isfunction(call) and dunder is not None and inspect.iscoroutinefunction(dunder) \
            and not _is_generator(dunder):
        return
    raise Unplannable("a sync dependency")


def _is_generator(call: Any) -> bool:
    for c in (call, inspect.unwrap(call) if callable(call) else call):
        if inspect.isgeneratorfunction(c) or inspect.isasyncgenfunction(c):
            return True
    return False


def _check_route(route: Any) -> None:
    if getattr(route, "body_field", None) is not None:
        raise Unplannable("a body")
    if getattr(route, "is_sse_stream", False) or getattr(route, "is_json_stream", False) \
            or getattr(route, "stream_item_field", None) is not None:
        raise Unplannable("a stream")


def _serializer(route: Any) -> Handler:
    """FastAPI's handler of the route's response model, status and class, for an endpoint that
    returns a value rather than a Response: the value is handed over in the scope."""
    try:
        twin = APIRoute(route.path, _stashed, response_model=route.response_model, status_code=route.status_code,
                        response_class=route.response_class, methods=sorted(route.methods or ["GET"]),
                        response_model_include=route.response_model_include,
                        response_model_exclude=route.response_model_exclude,
                        response_model_by_alias=route.response_model_by_alias,
                        response_model_exclude_unset=route.response_model_exclude_unset,
                        response_model_exclude_defaults=route.response_model_exclude_defaults,
                        response_model_exclude_none=route.response_model_exclude_none,
                        include_in_schema=False)
        return twin.get_route_handler()
    except Exception as exc:  # noqa: BLE001 - whatever this FastAPI refuses keeps its own handler
        raise Unplannable(f"no serializer: {exc}") from None


async def _stashed(request: Request) -> Any:
    return request.scope.pop(_STASH)
