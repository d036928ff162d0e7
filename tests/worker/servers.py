"""Private Redis and PostgreSQL servers for the fault tests that kill or stop them.

The servers on 6379 and 5432 are shared by everyone running tests on this machine and must
never be stopped; these run on a free port from a temporary folder and go away afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import Proc, free_port, wait_until


class PrivateRedis:
    """redis-server without persistence: a restart forgets every queued message."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.proc = folder, free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = Proc(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"], {}, self.folder / "redis.log", cwd=self.folder)
        client = redis.Redis(port=self.port)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False
        wait_until(answers, timeout=30, what=f"redis-server on port {self.port}")
        client.close()

    def kill(self) -> None:
        self.proc.signal(signal.SIGKILL)
        self.proc.popen.wait(10)
        self.proc.stop()  # closes its log


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    folder = Path(tempfile.mkdtemp(prefix="netfit-redis-"))
    server = PrivateRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.proc.stop()
        shutil.rmtree(folder, ignore_errors=True)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (trust auth, no fsync); stop() and start() keep its data."""

    def __init__(self, bindir: Path, folder: Path):
        self.bindir, self.folder, self.port = bindir, folder, free_port()
        self.data = folder / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{tool} failed:\n{result.stdout}\n{result.stderr}"

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "postgres.log"), "-w", "start")

    def stop(self) -> None:
        """Fast shutdown: open sessions are cut off, as when the server restarts."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running, migrated private cluster; netfit's tables are in its `postgres` database."""
    from db.migrate import upgrade

    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    folder = Path(tempfile.mkdtemp(prefix="netfit-pg-"))
    server = PrivatePostgres(bindir, folder)
    server.init()
    server.start()
    try:
        upgrade(server.url)
        yield server
    finally:
        try:
            server.stop()
        except AssertionError:
            pass  # already stopped
        shutil.rmtree(folder, ignore_errors=True)
