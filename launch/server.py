"""Server runners: `run_api` (the API alone) and `serve` (embedded: API + a worker, which reconciles)."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("netfit.server")


def _uvicorn(app: object, host: str, port: int, **options: object) -> None:
    import uvicorn

    # log_config None: keep service.logs' logging (request ids on every line, access log included)
    uvicorn.run(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=5, **options)


def app_from_env() -> object:
    """The app of one of `netfit api`'s processes (uvicorn's factory: each process imports this
    module afresh and builds its own app, logging and database pool)."""
    from api.app import create_app
    from service.logs import configure_logging

    configure_logging()
    return create_app()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_auth(host: str, port: int, database_url: str, require_auth: bool) -> str:
    """The start-up line about auth; SystemExit (a message, status 1) instead of listening
    beyond this machine while anyone could act without a key."""
    from db.keys import list_keys
    from db.session import make_session_factory

    if os.environ.get("NETFIT_API_KEYS"):
        raise SystemExit("netfit: NETFIT_API_KEYS is no longer read (keys in the environment cannot be revoked "
                         "and are stored in clear). Create keys with `netfit keys create --tenant NAME` "
                         "and unset NETFIT_API_KEYS.")
    factory = make_session_factory(database_url)
    with factory() as session:
        keys = list_keys(session)
    factory.kw["bind"].dispose()
    active = sum(k.revoked_at is None for k in keys)
    if keys or require_auth:
        hint = "" if active else " (none yet: `netfit keys create --tenant NAME` on this database makes one)"
        return f"auth: on, {active} active API key(s){hint}; requests need 'Authorization: Bearer <key>'"
    if not _is_loopback(host):
        raise SystemExit(f"netfit: refusing to listen on {host}:{port} with auth off: anyone who can reach it "
                         "could run and read every job. Create a key first (`netfit keys create --tenant NAME`, "
                         "with the same NETFIT_DATABASE_URL), set NETFIT_REQUIRE_AUTH=1, or listen on 127.0.0.1.")
    return (f"auth: off (no API keys yet); only this machine can reach {host}:{port}, and every request acts "
            "as tenant 'default'. `netfit keys create --tenant NAME` turns auth on.")


def run_api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Apply migrations, then serve the API with uvicorn (NETFIT_DATABASE_URL, NETFIT_BROKER_URL)."""
    from api.app import create_app
    from service.logs import configure_logging
    from service.settings import get_settings
    from db.migrate import upgrade

    configure_logging()
    settings = get_settings()
    upgrade(settings.database_url)
    log.info(check_auth(host, port, settings.database_url, settings.require_auth))
    processes = settings.api_processes
    if processes == 1:
        _uvicorn(create_app(settings), host, port)
        return
    log.info("serving with %d API processes on one port (NETFIT_API_PROCESSES)", processes)
    # each process counts its own HTTP figures; prometheus_client's files let any of them expose
    # the sum (api.telemetry.http_registry)
    with tempfile.TemporaryDirectory(prefix="netfit-prometheus-") as shared:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
        _uvicorn("launch.server:app_from_env", host, port, factory=True, workers=processes)


def serve(host: str = "127.0.0.1", port: int = 8000, data_dir: str | os.PathLike[str] = ".") -> None:
    """Embedded mode, zero configuration: SQLite in data_dir/netfit.db and a file broker in
    data_dir/.netfit/broker (unless NETFIT_DATABASE_URL / NETFIT_BROKER_URL say otherwise),
    one worker process (which runs the reconciler, as every worker does), and the API. Real
    Celery, the stack's code path. The settings go to the app and, through its environment, to
    the worker: this process's environment is left as it was."""
    from db.migrate import upgrade
    from service.logs import configure_logging
    from service.queue import broker_settings
    from service.settings import Settings

    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    settings = Settings.embedded(data)
    ready_file = Path(settings.worker_ready_file)  # the worker creates it once warm (worker.tasks)
    configure_logging(settings)
    if settings.api_processes > 1:
        log.warning("netfit serve runs one API process (it watches its warm-up and its worker there); "
                    "NETFIT_API_PROCESSES=%d is for `netfit api`", settings.api_processes)
    upgrade(settings.database_url)
    auth = check_auth(host, port, settings.database_url, settings.require_auth)
    _, options = broker_settings(settings.broker_url)
    if "processed_folder" in options:
        # messages already consumed by an earlier run: only the DB knows what is left to do
        shutil.rmtree(options["processed_folder"], ignore_errors=True)
        os.makedirs(options["processed_folder"], exist_ok=True)

    ready_file.parent.mkdir(parents=True, exist_ok=True)
    worker = _Supervised([sys.executable, "-m", "worker"], cwd=str(data), ready_file=ready_file,
                         env={**os.environ, **settings.worker_env()})
    # imported once the worker is on its way: its start (imports, warm-up) is the longer one, and
    # the API's imports (0.6 s) then run beside it on another core instead of before it
    from api.app import create_app

    app = create_app(settings)
    app.state.worker_ready = ready_file.exists
    url = f"http://{host}:{port}"
    print(f"netfit is starting at {url} (warming up; /readyz answers 200 when done)", flush=True)
    banner = (f"netfit is serving at {url}  (database: {settings.database_url}; docs: {url}/docs)\n{auth}\n"
          f"try:\n  curl -s -X POST {url}/v1/jobs -H 'content-type: application/json' \\\n"
          f"    -d '{{\"dataset\": {{\"builtin\": \"iris\"}}, \"preprocess\": {{\"features\": \"standardize\"}}, "
          f"\"model\": {{\"layers\": [{{\"type\": \"linear\", \"units\": 16}}, {{\"type\": \"relu\"}}, "
          f"{{\"type\": \"linear\", \"units\": 3}}]}}, \"training\": {{\"epochs\": 50}}}}'")
    threading.Thread(target=_announce, args=(banner, app.state.warmed, ready_file.exists, worker.stopping),
                     name="netfit-banner", daemon=True).start()
    try:
        _uvicorn(app, host, port)
    finally:
        worker.stop()


class _Supervised:
    """serve's worker, started again if it dies (an out-of-memory kill, a crash): the new one's
    reconciler takes the dead one's job back, so the embedded service never stays without a
    worker. Restarts are spaced out so a worker that cannot start does not spin."""

    RESTART_DELAY = 2.0

    def __init__(self, args: list[str], cwd: str, ready_file: Path, env: dict[str, str]):
        self.args, self.cwd, self.ready_file, self.env = args, cwd, ready_file, env
        self.stopping = threading.Event()
        self.process = self._start()
        threading.Thread(target=self._watch, name="worker-supervisor", daemon=True).start()

    def _start(self) -> subprocess.Popen[bytes]:
        self.ready_file.unlink(missing_ok=True)  # not ready until this worker has warmed up
        return subprocess.Popen(self.args, cwd=self.cwd, env=self.env, preexec_fn=_die_with_parent)

    def _watch(self) -> None:
        while not self.stopping.is_set():
            code = self.process.wait()
            if self.stopping.wait(self.RESTART_DELAY):
                return
            log.warning("the worker exited (status %s); starting another", code)
            self.process = self._start()

    def stop(self) -> None:
        self.stopping.set()
        _stop(self.process)


def _announce(banner: str, api_warm: threading.Event, worker_warm: Callable[[], bool],
              stopping: threading.Event) -> None:
    """Print the banner when /readyz turns 200 (the API's and the worker's warm-up done): a user
    who acts on it meets no start-up costs."""
    while not stopping.wait(0.05):
        if api_warm.is_set() and worker_warm():
            print(banner, flush=True)
            return


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM (warm shutdown, job released) if serve dies abruptly."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: serve's own shutdown still stops the worker
        pass


def _stop(worker: subprocess.Popen[bytes]) -> None:
    """Warm shutdown: the worker saves its epoch and releases its job; kill it if it hangs."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
