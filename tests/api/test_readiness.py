"""`netfit serve` says it is ready when it is: /readyz answers 503 while the API and its worker
warm up (the first job would pay those seconds), then 200, and the banner comes with the 200."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import launch_serve, wait_healthy, wait_until

pytestmark = pytest.mark.slow


def test_readyz_is_503_while_serve_warms_up_then_200_with_the_banner(tmp_path: Path):
    proc, base_url = launch_serve({}, tmp_path)
    try:
        wait_healthy(base_url, proc)
        # the worker is still importing torch and training its warm-up job: not ready yet
        first = httpx.get(f"{base_url}/readyz", timeout=5)
        assert first.status_code == 503, first.text
        assert any(d["loc"][0] == "warm_up" for d in first.json()["details"]), first.json()
        assert "netfit is serving at" not in proc.output()

        answers: list[httpx.Response] = []

        def ready() -> bool:
            answers.append(httpx.get(f"{base_url}/readyz", timeout=5))
            return answers[-1].status_code == 200

        wait_until(ready, timeout=90, interval=0.05, what="/readyz to answer 200")
        assert answers[-1].json()["status"] == "ready"
        assert answers[-1].json()["workers"]["cpu"] == 1  # the worker is registered and listens
        wait_until(lambda: "netfit is serving at" in proc.output(), timeout=5, what="the banner")
    finally:
        proc.stop(grace=20)
