"""The production stack in real containers: the image built from docker/Dockerfile (through
its build arguments only) and the stack's own docker-compose.yml run by docker-compose, with
an override that only sets host networking, this machine's PostgreSQL and Redis (their images
cannot be pulled here), the loopback address and short leases.

Checked as an operator meets it: migrate exits 0, the API's own healthcheck turns healthy,
`netfit keys create` through `docker-compose run`, a job trains; then a long job survives
`docker kill` and `docker stop` of the worker running it and a restart of the API container,
with every epoch saved exactly once. Caches (base image, wheelhouse, image layers) make a
warm run cost about a minute or two of building-free stack time.

Where no Docker daemon can start the test skips with the reason; with NETFIT_REQUIRE_DOCKER=1
(CI) it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests import stack_images
from tests.conftest import claimed_redis_db, free_port, fresh_pg_database, iris_spec, wait_until

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(900)]


class Stack:
    def __init__(self, project: str, base: Path, override: Path, base_url: str):
        self.project, self.base, self.override, self.base_url = project, base, override, base_url
        self.headers: dict[str, str] = {}

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["docker-compose", "-p", self.project, "--project-directory", str(ROOT), "-f", str(self.base),
             "-f", str(self.override), *args],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} -> {result.returncode}\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def containers(self, service: str) -> list[str]:
        out = stack_images.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}",
                                  "--filter", f"label=com.docker.compose.service={service}").stdout
        return out.split()

    def inspect(self, container: str, fmt: str) -> str:
        return stack_images.docker("inspect", "-f", fmt, container).stdout.strip()

    def logs(self, container: str) -> str:
        r = stack_images.docker("logs", container, check=False)
        return r.stdout + r.stderr

    def get(self, path: str) -> dict | list:
        return httpx.get(f"{self.base_url}{path}", headers=self.headers, timeout=10).json()

    def job(self, job_id: str) -> dict:
        return self.get(f"/v1/jobs/{job_id}")

    def epochs(self, job_id: str) -> list[int]:
        return [row["epoch"] for row in self.get(f"/v1/jobs/{job_id}/metrics")["items"]]

    def runner_of(self, job_id: str, attempt: int) -> str:
        """The worker container whose log says it started this attempt of the job."""
        line = f"job {job_id}: attempt {attempt} started"

        def find() -> str | None:
            return next((c for c in self.containers("worker-cpu") if line in self.logs(c)), None)
        return wait_until(find, timeout=60, interval=0.3, what=f"the container running attempt {attempt}")


def _override(image: str, db_url: str, broker_url: str, port: int) -> dict:
    env = {"NETFIT_DATABASE_URL": db_url, "NETFIT_BROKER_URL": broker_url,
           # short leases: a killed worker's job is taken back within seconds, not half a minute
           "NETFIT_LEASE_SECONDS": "4", "NETFIT_HEARTBEAT_SECONDS": "1", "NETFIT_RECONCILE_SECONDS": "1"}
    services = {}
    for name, svc in COMPOSE["services"].items():
        if "build" in svc and "profiles" not in svc:
            services[name] = {"image": image, "network_mode": "host", "environment": env}
    # the API on loopback at a free port; its healthcheck is the compose file's own, at that port
    api = COMPOSE["services"]["api"]
    services["api"]["command"] = [*api["command"][:2], "--host", "127.0.0.1", "--port", str(port)]
    services["api"]["healthcheck"] = {
        **api["healthcheck"], "test": [t.replace(":8000", f":{port}") for t in api["healthcheck"]["test"]],
        "interval": "2s", "start_period": "5s"}
    return {"version": COMPOSE.get("version", "3.8"), "services": services} if "version" in COMPOSE else {"services": services}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    log = Path(tempfile.gettempdir()) / "netfit-dockerd.log"
    reason = stack_images.ensure_daemon(log)
    if reason or shutil.which("docker-compose") is None:
        reason = reason or "docker-compose is not installed (scripts/test-tools.sh installs it)"
        if os.environ.get("NETFIT_REQUIRE_DOCKER") == "1":
            pytest.fail(f"NETFIT_REQUIRE_DOCKER=1 but: {reason}")
        pytest.skip(f"no Docker daemon here: {reason}")
    t0 = time.monotonic()
    image, build_seconds = stack_images.build_image()
    timings = {"prepare_and_build_s": round(time.monotonic() - t0, 1), "docker_build_s": round(build_seconds, 1)}
    tmp = tmp_path_factory.mktemp("stack")
    with fresh_pg_database() as db_url, claimed_redis_db() as broker_url:
        port = free_port()
        # The stack's file with two keys taken out, which host networking forbids and Compose
        # cannot remove through an override: published ports, and depends_on (docker-compose
        # run links a service to its dependencies; here those are the machine's PostgreSQL and
        # Redis, and the test starts migrate first itself)
        stack_file = {**COMPOSE, "services": {n: {k: v for k, v in svc.items() if k not in ("ports", "depends_on")}
                                              for n, svc in COMPOSE["services"].items()}}
        base = tmp / "docker-compose.yml"
        base.write_text(yaml.safe_dump(stack_file, sort_keys=False))
        override = tmp / "override.yml"
        override.write_text(yaml.safe_dump(_override(image, db_url, broker_url, port)))
        s = Stack(f"netfit-test-{uuid.uuid4().hex[:8]}", base, override, f"http://127.0.0.1:{port}")
        s.timings = timings
        try:
            yield s
        finally:
            for container in s.containers("worker-cpu") + s.containers("api"):
                (tmp / f"{container}.log").write_text(s.logs(container))
            s.compose("down", "--remove-orphans", "-t", "5", check=False, timeout=120)
            print("container test timings:", json.dumps(s.timings))


def test_the_stack_runs_in_containers_and_loses_nothing(stack: Stack):
    t0 = time.monotonic()
    # --no-deps: PostgreSQL and Redis are this machine's (the override points there)
    stack.compose("up", "--no-deps", "migrate", timeout=180)  # attached: returns when it exited
    [migrate] = stack.containers("migrate")
    assert stack.inspect(migrate, "{{.State.ExitCode}}") == "0", stack.logs(migrate)

    stack.compose("up", "-d", "--no-deps", "--scale", "worker-cpu=2", "api", "worker-cpu", timeout=180)
    [api] = stack.containers("api")
    wait_until(lambda: stack.inspect(api, "{{.State.Health.Status}}") == "healthy", timeout=90, interval=0.5,
               what=f"the API's healthcheck (logs: {stack.logs(api)[-1500:]})")
    stack.timings["up_to_healthy_s"] = round(time.monotonic() - t0, 1)
    workers = stack.containers("worker-cpu")
    assert len(workers) == 2
    # nothing but loopback: every container is on the host's network namespace, bound to 127.0.0.1
    for c in [api, *workers]:
        assert stack.inspect(c, "{{.HostConfig.NetworkMode}}") == "host"

    # auth is on before any key (NETFIT_REQUIRE_AUTH=1 in the compose file)
    assert httpx.get(f"{stack.base_url}/v1/jobs", timeout=10).status_code == 401
    # through migrate's service (same image and settings): docker-compose 1.29 links a one-off
    # container to its service's running ones, which host networking refuses, and api runs
    made = stack.compose("run", "--rm", "--no-deps", "migrate", "netfit", "keys", "create", "--tenant", "team-a",
                         timeout=120)
    key = made.stdout.strip().splitlines()[-1]
    stack.headers = {"Authorization": f"Bearer {key}"}
    wait_until(lambda: httpx.get(f"{stack.base_url}/v1/jobs", headers=stack.headers, timeout=10).status_code == 200,
               timeout=20, what="the new key to be accepted")

    # a job trains
    t1 = time.monotonic()
    # timeout: a cold container's first POST may wait for torch's import to check the spec
    short = httpx.post(f"{stack.base_url}/v1/jobs", json=iris_spec(epochs=5), headers=stack.headers,
                       timeout=180).json()
    done = wait_until(lambda: (j := stack.job(short["id"]))["status"] in ("succeeded", "failed") and j,
                      timeout=120, what="the first job")
    assert done["status"] == "succeeded", done
    assert stack.epochs(short["id"]) == list(range(1, done["epochs_completed"] + 1))
    stack.timings["first_job_s"] = round(time.monotonic() - t1, 1)

    # a long job, disturbed three ways
    t2 = time.monotonic()
    spec = iris_spec(epochs=5000, batch_size=2)  # minutes of epochs; cancelled once disturbed
    spec["training"]["early_stopping"] = None
    long = httpx.post(f"{stack.base_url}/v1/jobs", json=spec, headers=stack.headers, timeout=60)
    assert long.status_code == 201, long.text
    job_id = long.json()["id"]

    def past(epoch: int) -> int:
        return wait_until(lambda: (n := stack.job(job_id)["epochs_completed"]) >= epoch and n,
                          timeout=120, interval=0.2, what=f"job past epoch {epoch}")

    # 1. docker kill (SIGKILL, no chance to save): the other worker takes it over after the lease
    first = stack.runner_of(job_id, 1)
    at_kill = past(2)
    stack_images.docker("kill", first)
    second = stack.runner_of(job_id, 2)
    assert second != first
    past(at_kill + 2)
    stack_images.docker("start", first)  # back for the next round

    # 2. docker stop (SIGTERM through tini): the worker saves its epoch, releases the job, exits
    stopped_at = time.monotonic()
    stack_images.docker("stop", second, timeout=330)
    stop_seconds = time.monotonic() - stopped_at
    assert "released after epoch" in stack.logs(second), stack.logs(second)[-3000:]
    assert stack.inspect(second, "{{.State.ExitCode}}") == "0"
    third = stack.runner_of(job_id, 3)
    assert third == first
    at_restart = past(stack.job(job_id)["epochs_completed"] + 2)

    # 3. the API container restarted mid-job: training goes on, the API comes back healthy
    stack_images.docker("restart", api)
    wait_until(lambda: stack.inspect(api, "{{.State.Health.Status}}") == "healthy", timeout=90, interval=0.5,
               what="the API healthy again")
    past(at_restart + 2)

    cancelled = httpx.post(f"{stack.base_url}/v1/jobs/{job_id}/cancel", headers=stack.headers, timeout=10)
    assert cancelled.status_code == 200
    final = wait_until(lambda: (j := stack.job(job_id))["status"] == "cancelled" and j, timeout=60,
                       what="the long job to end cancelled")
    # every epoch once: no gap where a worker died, no repeat where another resumed
    assert stack.epochs(job_id) == list(range(1, final["epochs_completed"] + 1))
    assert final["attempts"] == 3, final
    stack.timings.update(disturbed_job_s=round(time.monotonic() - t2, 1), docker_stop_s=round(stop_seconds, 1),
                         stack_total_s=round(time.monotonic() - t0, 1))
