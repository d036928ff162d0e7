"""The production stack: docker-compose.yml, docker/Dockerfile and .dockerignore.

No Docker engine runs here, so the files are checked the way a user depends on them: the
services start in the right order on healthy dependencies, every process finds the same
database and broker, every command names a real entry point of this checkout, the GPU
worker stays in its profile, the image build copies what exists. The migrate, api,
worker-cpu commands run as written against the local PostgreSQL and Redis.
`docker-compose config` validates the file as well where that binary is installed.
"""

import fnmatch
import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.conftest import Proc, free_port, iris_spec, service_env, wait_healthy, wait_ready, wait_until

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
# the design's processes; the monitoring profile (Prometheus, Flower) is tests/test_monitoring_compose.py's
SERVICES = {n: s for n, s in COMPOSE["services"].items() if "monitoring" not in s.get("profiles", [])}
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# The services built from our image, i.e. running netfit code.
NETFIT_SERVICES = sorted(name for name, svc in SERVICES.items() if "build" in svc)


def depends_on(service: str) -> dict[str, str]:
    return {dep: spec["condition"] for dep, spec in SERVICES[service]["depends_on"].items()}


def env(service: str) -> dict[str, str]:
    """The service's environment as Compose gives it when the host sets none of the variables."""
    def default(value: object) -> str:
        return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
    return {k: default(v) for k, v in SERVICES[service]["environment"].items()}


def command(service: str) -> list[str]:
    cmd = SERVICES[service]["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def test_stack_has_every_process_of_the_design():
    # no reconciler service: every worker reconciles (worker.reconciler)
    assert set(SERVICES) == {"postgres", "redis", "migrate", "api", "worker-cpu", "worker-gpu"}
    assert NETFIT_SERVICES == ["api", "migrate", "worker-cpu", "worker-gpu"]
    assert SERVICES["api"]["ports"] == ["8000:8000"]
    assert SERVICES["worker-cpu"]["deploy"]["replicas"] >= 2


def test_data_survives_restarts():
    assert "pgdata" in COMPOSE["volumes"] and "redisdata" in COMPOSE["volumes"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in SERVICES["postgres"]["volumes"])
    assert any(v.endswith(":/data") for v in SERVICES["redis"]["volumes"])
    # every worker shares one download of the built-in data sets (the image user's default cache)
    for worker in ("worker-cpu", "worker-gpu"):
        assert SERVICES[worker]["volumes"] == ["datasets:/home/netfit/.cache/netfit/datasets"]
    # Without the append-only file a Redis restart forgets every queued job message.
    redis_cmd = command("redis")
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"


def test_healthchecks_probe_the_real_service():
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert SERVICES["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert "/healthz" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_processes_start_after_a_migrated_database_and_a_live_broker():
    assert depends_on("migrate") == {"postgres": "service_healthy"}
    # A one-shot job: restarting it would keep `service_completed_successfully` from firing.
    assert SERVICES["migrate"]["restart"] == "no"
    for name in ["api", "worker-cpu", "worker-gpu"]:
        assert depends_on(name) == {
            "migrate": "service_completed_successfully",
            "redis": "service_healthy",
        }, name


def test_workers_get_time_to_save_an_epoch_on_stop():
    for name in ["worker-cpu", "worker-gpu"]:
        grace = SERVICES[name]["stop_grace_period"]
        seconds = int(grace[:-1]) * {"s": 1, "m": 60}[grace[-1]]
        assert seconds >= 60, name
    # tini forwards SIGTERM to the worker (a bare PID 1 would not get the default handler).
    assert all(SERVICES[name]["init"] is True for name in NETFIT_SERVICES)


def test_gpu_worker_runs_only_in_the_gpu_profile_with_an_nvidia_device():
    gpu = SERVICES["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert command("worker-gpu")[-2:] == ["--queues", "gpu"]
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # `docker compose up` without a profile must start everything else, on CPU only.
    for name, svc in SERVICES.items():
        if name != "worker-gpu":
            assert "profiles" not in svc, name
            assert "reservations" not in svc.get("deploy", {}).get("resources", {}), name
    assert command("worker-cpu")[-2:] == ["--queues", "cpu"]


def test_every_netfit_process_uses_the_one_database_and_broker():
    pg = SERVICES["postgres"]["environment"]
    urls = {(env(n)["NETFIT_DATABASE_URL"], env(n)["NETFIT_BROKER_URL"]) for n in NETFIT_SERVICES}
    assert len(urls) == 1, urls
    [(db_url, broker_url)] = urls
    db, broker = urlsplit(db_url), urlsplit(broker_url)
    assert db.scheme == "postgresql+psycopg"
    assert (db.hostname, db.port) == ("postgres", 5432)
    assert (db.username, db.password, db.path) == (
        pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], "/" + pg["POSTGRES_DB"])
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)


# --- every command names something this checkout provides -----------------------------

def run_python(*args: str, env_extra: dict | None = None, timeout: float = 60):
    """Run as in the image: code found through PYTHONPATH, working directory elsewhere."""
    return subprocess.run(
        [sys.executable, *args], cwd=Path.home(), capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})},
    )


@pytest.mark.parametrize("service", ["api", "worker-cpu", "worker-gpu"])
def test_netfit_commands_exist_with_their_options(service):
    program, subcommand, *options = command(service)
    # `netfit` is the console script the image's `pip install .` puts on PATH.
    assert PYPROJECT["project"]["scripts"][program] == "netfit.cli:main"
    result = run_python("-c", "import sys; from netfit.cli import main; sys.argv[0] = 'netfit'; main()",
                        subcommand, "--help")
    assert result.returncode == 0, result.stderr
    for option in (o for o in options if o.startswith("--")):
        assert option in result.stdout, f"`netfit {subcommand}` has no {option}"


@pytest.mark.postgres
def test_migrate_command_creates_the_schema_on_postgresql():
    import psycopg

    name = f"netfit_compose_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        program, flag, code = command("migrate")
        assert (program, flag) == ("python", "-c")
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        result = run_python("-c", code, env_extra={"NETFIT_DATABASE_URL": url})
        assert result.returncode == 0, result.stderr
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchone()
            tables = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert "jobs" in tables, tables
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_stack_commands_train_jobs_and_a_busy_worker_resends_a_lost_one(pg_url, redis_url, tmp_path):
    """api and worker-cpu started with their compose commands and environment (hosts pointed at
    the local servers). While the only CPU worker trains a posted job, a queued job whose message
    never reached the broker is sent again by that worker's reconciler thread (a reconcile task
    queued behind the job would wait for it to end); once the first job is cancelled it trains."""
    from db.jobs import create_job
    from db.keys import create_key
    from db.models import JobSend
    from db.session import make_session_factory

    def start(service: str, args: list[str]) -> Proc:
        extra = {**env(service), **service_env(pg_url, redis_url),
                 # the reconciler runs every second and re-sends after 1 s, not 15 s / 60 s
                 "NETFIT_RECONCILE_SECONDS": "1", "NETFIT_REQUEUE_SECONDS": "1",
                 # the image's console scripts (netfit, celery) are on PATH
                 "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        if service.startswith("worker"):  # wait_ready waits for it
            extra["NETFIT_WORKER_READY_FILE"] = str(tmp_path / f"{service}.ready")
        procs.append(Proc(args, extra, tmp_path / f"{service}.log", cwd=tmp_path))
        return procs[-1]

    procs: list[Proc] = []
    factory = make_session_factory(pg_url)
    try:
        worker = start("worker-cpu", command("worker-cpu"))
        port = str(free_port())
        api_args = [port if a == "8000" else "127.0.0.1" if a == "0.0.0.0" else a for a in command("api")]
        api = start("api", api_args)
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, api)
        wait_ready(worker)

        # the stack requires a key (NETFIT_REQUIRE_AUTH): without one, nothing
        assert httpx.get(f"{base_url}/v1/jobs", timeout=30).status_code == 401
        with factory() as session:
            _, key = create_key(session, tenant="team")
        auth = {"Authorization": f"Bearer {key}"}
        http = httpx.Client(base_url=base_url, headers=auth, timeout=30)
        posted = http.post("/v1/jobs", json=iris_spec(epochs=10_000))
        assert posted.status_code == 201, posted.text
        busy = posted.json()["id"]
        wait_until(lambda: http.get(f"/v1/jobs/{busy}").json()["epochs_completed"] >= 1, timeout=90,
                   what="the posted job to train")
        with factory() as session:  # written as the API writes it, but never sent: its message is "lost"
            job = create_job(session, tenant="team", spec=iris_spec(epochs=3), summary=None, queue="cpu")
            lost, created = job.id, session.get(JobSend, job.id).sent_at

        def resent() -> bool:
            with factory() as session:
                return session.get(JobSend, lost).sent_at > created
        wait_until(resent, timeout=60, what="the reconciler to re-send the lost job")
        assert http.get(f"/v1/jobs/{busy}").json()["status"] == "running"  # the worker is still busy

        assert http.post(f"/v1/jobs/{busy}/cancel").status_code == 200
        for job_id, status, epochs in ((busy, "cancelled", None), (lost, "succeeded", 3)):
            def finished(job_id=job_id):
                job = http.get(f"/v1/jobs/{job_id}", timeout=10).json()
                return job if job["status"] in ("succeeded", "failed", "cancelled") else None
            job = wait_until(finished, timeout=90, what=f"job {job_id} to finish")
            assert job["status"] == status, job
            assert epochs is None or job["epochs_completed"] == epochs
    finally:
        for proc in procs:
            proc.stop()
        factory.kw["bind"].dispose()


def test_api_healthcheck_fails_when_the_api_is_unhealthy():
    probe = SERVICES["api"]["healthcheck"]["test"]
    assert probe[:3] == ["CMD", "python", "-c"]
    status = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status["code"] if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = probe[3].replace("127.0.0.1:8000", f"127.0.0.1:{server.server_port}")
        assert code != probe[3], "the probe does not target the API's port 8000"
        assert run_python("-c", code).returncode == 0
        status["code"] = 503
        assert run_python("-c", code).returncode != 0
    finally:
        server.shutdown()
        server.server_close()


# --- the image ----------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_image_is_slim_non_root_with_cpu_torch_by_default():
    steps = dockerfile_instructions()
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG")
    # the base is a build argument (mirrors, air-gapped builds, tests/test_containers.py) whose
    # default is the official slim image
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.11-slim") and steps[1] == ("FROM", "${BASE_IMAGE}")
    assert args["PACKAGE_INDEX"] == ""  # empty: pip's default index
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    # A build arg the Dockerfile does not declare is silently ignored: the GPU image would be CPU.
    for name in NETFIT_SERVICES:
        assert set(SERVICES[name]["build"].get("args", {})) <= set(args), name
    assert any(op == "RUN" and "--index-url" in a and "TORCH_INDEX_URL" in a for op, a in steps)
    assert "server" in PYPROJECT["project"]["optional-dependencies"]
    # the server extra's dependencies are installed before the code is copied (a code change
    # does not re-install them), the package over them without dependencies
    deps = next(i for i, (op, a) in enumerate(steps) if op == "RUN" and "optional-dependencies']['server']" in a)
    code = steps.index(("COPY", "netfit/ ./netfit/"))
    assert deps < code and any(op == "RUN" and "--no-deps" in a for op, a in steps[code:]), steps
    assert any(op == "ENV" and "PYTHONPATH=/app" in a for op, a in steps)
    users = [a for op, a in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_image_copies_what_the_checkout_has_and_the_build_context_keeps():
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
               if p.strip() and not p.startswith("#")]
    copied = [src for op, a in dockerfile_instructions() if op == "COPY" for src in a.split()[:-1]]
    assert {"api/", "db/", "worker/", "netfit/", "pyproject.toml"} <= set(copied)
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: not in the checkout"
        assert not any(fnmatch.fnmatch(src.rstrip("/"), p) for p in ignored), f"{src} is in .dockerignore"
    assert ".venv" in ignored and ".git" in ignored


# --- Compose itself -----------------------------------------------------------------

def compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


@pytest.mark.parametrize("profile", [[], ["--profile", "gpu"]], ids=["default", "gpu"])
def test_compose_accepts_the_file(profile):
    cli = compose_cli()
    if cli is None:
        pytest.skip("neither docker-compose nor `docker compose` is installed; the structure is checked above")
    result = subprocess.run([*cli, "-f", "docker-compose.yml", *profile, "config", "-q"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
