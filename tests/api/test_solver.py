"""api.solver, the planned dependencies of OneThreadRoute's endpoints, against FastAPI's own
handler: the same answers (values, defaults, 422s, 401s, 404s), and the list really planned.

The plan leans on FastAPI's internals (pyproject.toml pins the minor version it was written
against): when an upgrade moves them, the routes quietly fall back to FastAPI's handler, and
the first test here says so instead of a slower API."""

from __future__ import annotations

import pytest
from fastapi import routing

from db import jobs as db_jobs
from db.session import make_session_factory
from tests.api.conftest import bearer, make_client, new_key
from tests.conftest import iris_spec


def _generic(client) -> None:
    """Every route on FastAPI's own handler: the planned one hands a request with dependency
    overrides to it (an override of something no route uses changes nothing else)."""
    client.app.dependency_overrides[_generic] = lambda: None


def test_the_list_and_a_job_are_served_without_fastapis_generic_solver(pg_url, redis_url, monkeypatch):
    calls = []
    solve = routing.solve_dependencies

    async def counted(*args, **kwargs):
        calls.append(kwargs.get("request") or args[0])
        return await solve(*args, **kwargs)

    monkeypatch.setattr(routing, "solve_dependencies", counted)
    key = bearer(new_key(pg_url, "team-a"))
    with make_client(pg_url, redis_url) as client:
        job = client.post("/v1/jobs", json=iris_spec(), headers=key).json()  # a body: FastAPI's handler
        posted = len(calls)
        assert posted >= 1
        for path in ("/v1/jobs?limit=5", f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/checkpoints"):
            assert client.get(path, headers=key).status_code == 200, path
        assert len(calls) == posted, "a GET went through FastAPI's solver: api.solver no longer plans it"
        _generic(client)
        assert client.get("/v1/jobs?limit=5", headers=key).status_code == 200
        assert len(calls) == posted + 1  # the fallback is FastAPI's handler


REQUESTS = [
    "/v1/jobs", "/v1/jobs?limit=2", "/v1/jobs?limit=0", "/v1/jobs?limit=abc", "/v1/jobs?limit=2&limit=3",
    "/v1/jobs?status=running", "/v1/jobs?status=bogus", "/v1/jobs?cursor=not-a-cursor", "/v1/jobs?name=iris-test",
    "/v1/jobs/unknown-id", "/v1/jobs/{job}", "/v1/jobs/{job}/metrics", "/v1/jobs/{job}/metrics?limit=x", "/v1/jobs/{job}/checkpoints",
    "/v1/sweeps", "/v1/sweeps?limit=-1", "/v1/datasets", "/v1/workers",
]


@pytest.mark.parametrize("auth", ["key", "none", "unknown key"])
def test_planned_and_fastapis_handlers_answer_alike(pg_url, redis_url, auth):
    key = new_key(pg_url, "team-a")
    factory = make_session_factory(pg_url)
    with factory() as session:
        for _ in range(3):
            job = db_jobs.create_job(session, tenant="team-a", spec=iris_spec(), summary=None, queue="cpu").id
    headers = {"key": bearer(key), "none": {}, "unknown key": bearer("nf_" + "0" * 40)}[auth]

    def answers(client) -> list[tuple[int, object]]:
        out = []
        for path in REQUESTS:
            response = client.get(path.format(job=job), headers=headers)
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") \
                else response.text
            if isinstance(body, dict):
                body.pop("request_id", None)  # each request's own
            out.append((response.status_code, body))
        return out

    with make_client(pg_url, redis_url) as client:
        planned = answers(client)
        _generic(client)
        generic = answers(client)
    for path, mine, theirs in zip(REQUESTS, planned, generic):
        assert mine == theirs, path
    assert {code for code, _ in planned} >= ({200, 404, 422} if auth == "key" else {401})
