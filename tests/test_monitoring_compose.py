"""The `monitoring` profile of docker-compose.yml: Prometheus with the repo's config and alert
rules, Flower behind basic auth. Validated by docker-compose itself (`config`), and Flower's
command run as written: it refuses to start without credentials, and with them serves only
to a caller that sends them."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import Proc, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def compose_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose missing: scripts/test-tools.sh installs Debian's")
    return subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), *args, "config"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def test_docker_compose_validates_the_file_with_and_without_the_profile():
    plain = compose_config()
    assert plain.returncode == 0, plain.stderr
    # docker-compose 1.29's `config` lists every service; the profile keeps these out of a plain `up`
    services = yaml.safe_load(plain.stdout)["services"]
    assert services["prometheus"]["profiles"] == services["flower"]["profiles"] == ["monitoring"]
    monitoring = compose_config("--profile", "monitoring")
    assert monitoring.returncode == 0, monitoring.stderr
    # the flower service is the netfit image with the same database and broker as the workers
    flower = yaml.safe_load(monitoring.stdout)["services"]["flower"]
    assert flower["environment"]["NETFIT_BROKER_URL"] == services["worker-cpu"]["environment"]["NETFIT_BROKER_URL"]


def test_prometheus_reads_the_shipped_config_and_rules():
    prom = SERVICES["prometheus"]
    assert prom["profiles"] == ["monitoring"]
    mounts = dict(v.rsplit(":", 2)[:2] for v in prom["volumes"] if v.startswith("./"))
    assert mounts["./docker/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    # the rules file is mounted where the config looks for it
    assert set(config["rule_files"]) <= set(mounts.values())
    [job] = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["api:8000"] and job["metrics_path"] == "/metrics"
    # monitoring ports answer on the host's loopback only
    assert all(p.startswith("127.0.0.1:") for p in prom["ports"] + SERVICES["flower"]["ports"])


def flower_command(port: int) -> list[str]:
    cmd = SERVICES["flower"]["command"]
    assert cmd[:2] == ["sh", "-c"]
    # Compose turns $$ into $; the port is the test's
    script = cmd[2].replace("$$", "$").replace("--port=5555", f"--port={port}").replace("0.0.0.0", "127.0.0.1")
    return ["sh", "-c", script]


def flower_env(auth: str, redis_url: str) -> dict[str, str]:
    return {"FLOWER_BASIC_AUTH": auth, "NETFIT_BROKER_URL": redis_url,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def test_flower_refuses_to_start_without_credentials(redis_url):
    result = subprocess.run(flower_command(free_port()), env={**os.environ, **flower_env("", redis_url)},
                            capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode != 0
    assert "NETFIT_FLOWER_AUTH=user:password" in result.stderr


@pytest.mark.redis
@pytest.mark.slow
def test_flower_serves_only_with_basic_auth(redis_url, tmp_path):
    port = free_port()
    proc = Proc(flower_command(port), flower_env("ops:s3cret", redis_url), tmp_path / "flower.log")
    try:
        def answered() -> int | None:
            assert proc.alive(), proc.output()[-3000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code
            except httpx.HTTPError:
                return None
        assert wait_until(answered, timeout=60, interval=0.3, what="flower to listen") == 401
        token = base64.b64encode(b"ops:s3cret").decode()
        ok = httpx.get(f"http://127.0.0.1:{port}/workers", headers={"Authorization": f"Basic {token}"}, timeout=10)
        assert ok.status_code == 200
    finally:
        proc.stop()
