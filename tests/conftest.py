"""Shared fixtures: real PostgreSQL, Redis, Celery worker and API processes.

Fixtures
--------
sqlite_url        a migrated SQLite database in tmp_path.
pg_url            a fresh, migrated PostgreSQL database ``netfit_test_<random>`` on
                  127.0.0.1:5432 (user postgres), dropped at the end of the test.
redis_url         ``redis://127.0.0.1:6379/<n>``: a database index claimed for this run
                  (other runs skip it), flushed at the end.
service_env(db, broker)  env vars for a server process: those URLs + short leases (a function).
start_worker      factory: start_worker(env, queues="cpu") -> a running ``python -m worker``
                  process (waits for its readiness file; stopped at teardown).
start_api         factory: start_api(env) -> base_url of ``launch.server.run_api`` under uvicorn
                  on a free port (waits for /healthz; stopped at teardown).
embedded_service  SESSION-scoped: ``launch.server.serve`` (SQLite + file broker + one worker
                  process + reconciler) in a tmp dir on a free port; yields its base_url.
                  Used by the SDK/CLI tests (tests/netfit) as well.
tests/stack.py    Stack / own_stack: a service of a test's or module's own (database, broker, workers,
                  the API when wanted) and what stack tests read and wait on.

Waiting is always by polling a condition with a deadline (``wait_until``), never a fixed sleep.
"""

from __future__ import annotations

import os

# One torch thread in the test processes and every server process they start (inherited): three
# test processes on two cores, each with workers beside it; a second thread only spins against
# the others. Set before anything imports torch; a value from the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import copy
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long modules first: pytest-xdist hands modules to its processes in this order
    (`--no-loadscope-reorder`: its own reorder puts the modules with most tests first, which
    ran the one-test container module last, alone, for its last ~3 minutes). A module that
    raises its own timeout is the longest; then those with more slow tests; otherwise the order
    stays as collected."""
    timeouts: dict[str, float] = {}
    slow: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        timeout = item.get_closest_marker("timeout")
        timeouts[module] = max(timeouts.get(module, 0), timeout.args[0] if timeout and timeout.args else 0)
        slow[module] = slow.get(module, 0) + (item.get_closest_marker("slow") is not None)
    items.sort(key=lambda item: (-timeouts[m := item.nodeid.split("::")[0]], -slow[m]))


PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_HOST = "127.0.0.1"

IRIS_SPEC: dict[str, Any] = {
    "name": "iris-test",
    "dataset": {"builtin": "iris"},
    "split": {"validation": 0.2, "test": 0.2, "seed": 0},
    "preprocess": {"features": "standardize"},
    "model": {"layers": [{"type": "linear", "units": 16}, {"type": "relu"}, {"type": "linear", "units": 3}]},
    "training": {"epochs": 5, "batch_size": 16, "optimizer": {"type": "adam", "lr": 0.01}, "seed": 0,
                 "device": "cpu"},
}


def iris_spec(**training: Any) -> dict[str, Any]:
    """The Iris spec with training fields overridden (e.g. epochs=3)."""
    spec = copy.deepcopy(IRIS_SPEC)
    spec["training"].update(training)
    return spec


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll until condition() is truthy; return its value or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- databases


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    from db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'netfit.db'}"
    upgrade(url)
    return url


def _migrated_template(admin: Any) -> str:
    """A database migrated to this checkout's head, named by a hash of the migrations: each
    test's database is a copy of it (0.1 s, against 1.3 s to run the migrations every time).
    Created once, under an advisory lock, by whichever test process or run needs it first."""
    import hashlib

    from sqlalchemy import text

    from db.migrate import upgrade

    digest = hashlib.sha256()
    for path in sorted((ROOT / "db" / "migrations").rglob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    name = f"netfit_template_{digest.hexdigest()[:12]}"
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(4242)"))
        try:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
                building = f"{name}_building"
                conn.execute(text(f'DROP DATABASE IF EXISTS "{building}"'))
                conn.execute(text(f'CREATE DATABASE "{building}"'))
                upgrade(f"postgresql+psycopg://postgres@127.0.0.1:5432/{building}")
                # renamed only once complete: a run killed mid-migration leaves no half template
                conn.execute(text(f'ALTER DATABASE "{building}" RENAME TO "{name}"'))
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(4242)"))
    return name


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, migrated database netfit_test_<random>; dropped (even if in use) at the end."""
    from sqlalchemy import create_engine, text

    name = f"netfit_test_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    template = _migrated_template(admin)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def claimed_redis_db() -> Iterator[str]:
    """A Redis database index no other test run holds; flushed at the end."""
    import redis

    owner = secrets.token_hex(8)
    for index in range(1, 16):
        client = redis.Redis(host=REDIS_HOST, port=6379, db=index)
        # claim the index for this run; a parallel run holding it is skipped
        if client.set("netfit-test-owner", owner, nx=True, ex=1800):
            # a run that was killed leaves its messages behind; a new worker would get them
            for key in client.scan_iter():
                if key != b"netfit-test-owner":
                    client.delete(key)
            break
        client.close()
    else:
        raise RuntimeError("no free Redis database index (1-15) for this test run")
    try:
        yield f"redis://{REDIS_HOST}:6379/{index}"
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    with claimed_redis_db() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Both backends: the same migrations and queries must work on each."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def session_factory(db_url: str) -> Iterator[Any]:
    from db.session import make_session_factory

    factory = make_session_factory(db_url)
    yield factory
    factory.kw["bind"].dispose()


# --------------------------------------------------------------------------- processes


@contextmanager
def engine_events(session_factory: Any, name: str) -> Iterator[list[tuple[Any, ...]]]:
    """What the session factory's engine fires as `name` ("commit", "before_cursor_execute")
    while the block runs: each firing's arguments, in order (len() counts them)."""
    from sqlalchemy import event

    fired: list[tuple[Any, ...]] = []
    engine = session_factory.kw["bind"]

    def listener(*args: Any) -> None:
        fired.append(args)

    event.listen(engine, name, listener)
    try:
        yield fired
    finally:
        event.remove(engine, name, listener)


def _python_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETFIT_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    return env


# The fault and recovery tests' settings: a lost worker's job is taken back fast (a reconcile
# pass every half second, a queued job re-sent after 2 s) and every epoch is written as it ends
# (no batching: the tests act on epoch counts). service_env(db, broker, **FAST, ...overrides).
FAST = {"NETFIT_RECONCILE_SECONDS": "0.5", "NETFIT_REQUEUE_SECONDS": "2", "NETFIT_FLUSH_SECONDS": "0"}


def service_env(db: str, broker: str, **extra: str) -> dict[str, str]:
    """The NETFIT_* settings of a server process; short leases so that a lost worker is
    noticed within a test's time."""
    return {"NETFIT_DATABASE_URL": db, "NETFIT_BROKER_URL": broker, "NETFIT_LEASE_SECONDS": "4",
            "NETFIT_HEARTBEAT_SECONDS": "1", **extra}


def _die_with_pytest() -> None:
    """A test run killed mid-way takes its servers and workers with it: a worker left behind
    would consume a later run's messages from the Redis database it reuses."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)


class Proc:
    """A child process with its log file; stop() sends SIGTERM, then SIGKILL after a grace period."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None):
        self.log = log
        # a worker's: it exists once the worker consumes (NETFIT_WORKER_READY_FILE)
        self.ready_file = Path(env["NETFIT_WORKER_READY_FILE"]) if "NETFIT_WORKER_READY_FILE" in env else None
        self._log_file = open(log, "wb")
        self.popen = subprocess.Popen(args, env=_python_env(env), cwd=cwd or ROOT,
                                      stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=_die_with_pytest)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, sig)

    def stop(self, grace: float = 15.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                # the process group: also a worker's children, if it has any
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log_file.close()


def start_worker_process(env: dict[str, str], log: Path, queues: str = "cpu", cwd: Path | None = None,
                         wait: bool = True) -> Proc:
    """`python -m worker`; wait=False returns at once (start several, then wait_ready each)."""
    env = {**env, "NETFIT_WORKER_READY_FILE": str(log.with_suffix(".ready"))}
    proc = Proc([sys.executable, "-m", "worker", "--queues", queues], env, log, cwd)
    if wait:
        wait_ready(proc)
    return proc


def wait_ready(worker: Proc) -> None:
    """Until the worker consumes: it writes NETFIT_WORKER_READY_FILE then (after its warm-up)."""
    assert worker.ready_file is not None, "not a worker started by start_worker_process"
    wait_until(lambda: worker.ready_file.exists() or not worker.alive(), timeout=90, what="the Celery worker to be ready")
    assert worker.alive(), f"worker died at start:\n{worker.output()[-3000:]}"


def test_accuracy_of(spec: dict[str, Any], safetensors_blob: bytes) -> float:
    """Rebuild the network from its spec, load downloaded weights, score the test split."""
    import torch

    from netfit.spec import JobSpec
    from netfit.engine.checkpoints import weights_from_bytes
    from netfit.engine.data import load_data
    from netfit.engine.layers import build_model

    job_spec = JobSpec.model_validate(spec)
    data = load_data(job_spec)
    model = build_model(job_spec, data.signature)
    weights, _meta = weights_from_bytes(safetensors_blob)
    model.load_state_dict(weights)
    model.eval()
    with torch.inference_mode():
        predicted = model(data.test.x).argmax(dim=1)
    return (predicted == data.test.y).float().mean().item()


test_accuracy_of.__test__ = False  # a helper, not a test


def start_api_process(env: dict[str, str], log: Path) -> tuple[Proc, str]:
    port = free_port()
    code = f"from launch.server import run_api; run_api('127.0.0.1', {port})"
    proc = Proc([sys.executable, "-c", code], env, log)
    base_url = f"http://127.0.0.1:{port}"
    wait_healthy(base_url, proc)
    return proc, base_url


def launch_serve(env: dict[str, str], workdir: Path) -> tuple[Proc, str]:
    """`netfit serve` in workdir (its SQLite and file broker there), just started: not waited for."""
    port = free_port()
    proc = Proc([sys.executable, "-c", f"from launch.server import serve; serve('127.0.0.1', {port})"], env,
                workdir / "serve.log", cwd=workdir)
    return proc, f"http://127.0.0.1:{port}"


def start_serve_process(env: dict[str, str], workdir: Path) -> tuple[Proc, str]:
    """`netfit serve` in workdir (its SQLite and file broker there), API healthy and worker ready."""
    proc, base_url = launch_serve(env, workdir)
    try:
        wait_healthy(base_url, proc)
        # serve's worker writes this file when it consumes (launch.server names it)
        wait_until(lambda: (workdir / ".netfit" / "worker-ready").exists(), timeout=90,
                   what="the embedded worker to be ready")
        wait_until(lambda: httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200, timeout=60,
                   what="/readyz (the warm-up)")
    except BaseException:
        proc.stop(grace=20)
        raise
    return proc, base_url


def served(base_url: str, route: str, status: int, method: str = "GET") -> float:
    """How many requests of `route` (its template, /v1/jobs/{job_id}) a service answered with
    `status`: its Prometheus counter, counted server-side (a 304 sent, not a client's cache hit)."""
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    line = f'netfit_http_requests_total{{method="{method}",route="{route}",status="{status}"}} '
    return sum(float(x[len(line):]) for x in text.splitlines() if x.startswith(line))


def wait_healthy(base_url: str, proc: Proc, timeout: float = 60) -> None:
    def up() -> bool:
        assert proc.alive(), f"server died at start:\n{proc.output()[-3000:]}"
        try:
            return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    wait_until(up, timeout=timeout, what=f"{base_url}/healthz")


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def start(env: dict[str, str], queues: str = "cpu", wait: bool = True) -> Proc:
        proc = start_worker_process(env, tmp_path / f"worker-{len(procs)}.log", queues, wait=wait)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[Callable[..., str]]:
    procs: list[Proc] = []

    def start(env: dict[str, str]) -> str:
        proc, base_url = start_api_process(env, tmp_path / f"api-{len(procs)}.log")
        procs.append(proc)
        return base_url

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture(scope="session")
def embedded_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`netfit serve` as a user runs it: no NETFIT_* settings, SQLite and the file broker in
    the working directory, one worker process. Yields the base_url (http://127.0.0.1:PORT)."""
    proc, base_url = start_serve_process({}, tmp_path_factory.mktemp("embedded"))
    try:
        yield base_url
    finally:
        proc.stop(grace=20)


EXAMPLES = ROOT / "examples"


def run_example(script: str, *args: str, url: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETFIT_")}
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--url", url, "--epochs", "2", *args],
                            env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout
