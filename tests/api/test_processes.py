"""`netfit api` with NETFIT_API_PROCESSES=2: two uvicorn processes behind one port, and a
Prometheus scrape that any of them answers counts the requests of both."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import served, service_env, start_api_process, wait_until


@pytest.mark.slow
def test_two_api_processes_share_the_port_and_a_scrape_counts_both(pg_url: str, redis_url: str, tmp_path: Path):
    api, base_url = start_api_process(service_env(pg_url, redis_url, NETFIT_API_PROCESSES="2"), tmp_path / "api.log")
    try:
        wait_until(lambda: len(set(re.findall(r"Started server process \[(\d+)\]", api.output()))) == 2,
                   timeout=60, what="two API processes")
        before, sent = served(base_url, "/healthz", 200), 16  # the start-up's polls
        for _ in range(sent):  # a connection each, so that both processes take some
            assert httpx.get(f"{base_url}/healthz", timeout=10).status_code == 200
        # each process counts its own; any one answering the scrape shows all of them
        assert {served(base_url, "/healthz", 200) for _ in range(3)} == {before + sent}
    finally:
        api.stop(grace=45)  # on a loaded machine a process may still warm up: its shutdown waits up to 30 s for it
    assert "Finished server process" in api.output()  # each stopped cleanly on SIGTERM
