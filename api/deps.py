"""Dependencies: a DB session per request and the principal (tenant) making it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


def get_principal(request: Request) -> str:
    """The tenant: "default" while no API keys are configured, else the bearer key's tenant."""
    keys = request.app.state.settings.api_keys
    if not keys:
        return "default"
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    tenant = keys.get(token.strip()) if scheme.lower() == "bearer" else None
    if tenant is None:
        raise ApiError(401, "a valid API key is required: send 'Authorization: Bearer <key>' (NETFIT_API_KEY in the SDK/CLI)",
                       headers={"WWW-Authenticate": "Bearer"})
    return tenant


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
PrincipalDep = Annotated[str, Depends(get_principal)]
