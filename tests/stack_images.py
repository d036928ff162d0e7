"""What tests/test_containers.py needs before a container runs: a Docker daemon, the stand-in
base image, a wheelhouse of the project's dependencies served as a package index on loopback,
and the project's image built from docker/Dockerfile through its build arguments only.
Everything slow is cached by its inputs, so a warm run costs seconds.

`python -m tests.stack_images` warms the caches (prints the image tag).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("NETFIT_TEST_CACHE", Path.home() / ".cache" / "netfit"))
BASE_TAG = "netfit-test/python:3.11-slim"
# setuptools: the build backend of the image's `pip install .`; async-timeout: redis needs it
# below Python 3.11.3, and Debian's 3.11 is 3.11.2 (this machine's newer Python skips it)
EXTRA_WHEELS = ("setuptools>=68", "async-timeout>=4.0.3")
INDEX_PORT = 38741


def docker(*args: str, timeout: float = 600, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check, **kw)


def daemon_up() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=20).returncode == 0


def ensure_daemon(log: Path) -> str | None:
    """Start dockerd if none answers. None when it runs, else why it cannot (the skip reason)."""
    if daemon_up():
        return None
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (scripts/test-tools.sh installs Debian's docker.io)"
    if os.geteuid() != 0:
        return "dockerd is not running and this user cannot start it (not root)"
    # No bridge and no iptables: every container here uses host networking on loopback.
    with open(log, "ab") as out:
        subprocess.Popen(["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false"],
                         stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if daemon_up():
            return None
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-1500:]
    return f"dockerd did not start within 60 s; its log ends:\n{tail}"


def base_image() -> str:
    subprocess.run(["bash", str(ROOT / "scripts" / "base-image.sh"), BASE_TAG], check=True,
                   capture_output=True, text=True, timeout=900)
    return BASE_TAG


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def torch_version() -> str:
    return re.search(r"ARG TORCH_VERSION=(\S+)", (ROOT / "docker" / "Dockerfile").read_text()).group(1)


def wheelhouse() -> Path:
    """Every wheel the image installs, keyed by pyproject.toml and the Dockerfile, laid out as
    a PEP 503 simple index (simple/<project>/ with links to the wheels)."""
    folder = CACHE / "wheelhouse" / (_digest(ROOT / "pyproject.toml", ROOT / "docker" / "Dockerfile")
                                     + hashlib.sha256(" ".join(EXTRA_WHEELS).encode()).hexdigest()[:8])
    if (folder / "simple" / "index.html").exists():
        return folder
    wheels = folder / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    # pip as this machine has it configured (its index, mirrors, local wheels); the same
    # Python 3.11 on Linux x86_64 as the base image. setuptools: the build backend of `pip install .`
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels),
                    f"torch=={torch_version()}", f"{ROOT}[server]", *EXTRA_WHEELS],
                   check=True, capture_output=True, text=True, timeout=1800)
    simple = folder / "simple.tmp"
    shutil.rmtree(simple, ignore_errors=True)
    projects: dict[str, list[str]] = {}
    for wheel in sorted(wheels.iterdir()):
        name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        projects.setdefault(name, []).append(wheel.name)
    for name, files in projects.items():
        (simple / name).mkdir(parents=True)
        links = "".join(f'<a href="../../wheels/{f}">{f}</a>\n' for f in files)
        (simple / name / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    (simple / "index.html").write_text("".join(f'<a href="{n}/">{n}</a>\n' for n in projects))
    shutil.rmtree(folder / "simple", ignore_errors=True)
    simple.rename(folder / "simple")
    return folder


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """The folder over HTTP on 127.0.0.1 (a thread); yields its base URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    # a fixed port where it is free: the index URL is a build argument, and Docker's layer cache
    # keys every RUN on the arguments' values, so a new port would rebuild every layer
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", INDEX_PORT), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def build_image(tag: str = "netfit:test") -> tuple[str, float]:
    """The project's image from docker/Dockerfile, changed only through build arguments.
    Returns (tag, seconds the build took)."""
    base, house = base_image(), wheelhouse()
    started = time.monotonic()
    with serve(house) as url:
        index = f"{url}/simple"
        result = docker("build", "--network", "host", "-f", "docker/Dockerfile", "-t", tag,
                        "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"TORCH_INDEX_URL={index}",
                        "--build-arg", f"PACKAGE_INDEX={index}", ".",
                        # NETFIT_IMAGE_CONTEXT: build another tree (e.g. `git archive HEAD`) than this checkout
                        cwd=os.environ.get("NETFIT_IMAGE_CONTEXT") or ROOT, timeout=1800, check=False, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    if result.returncode != 0:
        raise RuntimeError(f"docker build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return tag, time.monotonic() - started


if __name__ == "__main__":
    reason = ensure_daemon(Path(tempfile.gettempdir()) / "netfit-dockerd.log")
    if reason:
        sys.exit(reason)
    tag, seconds = build_image()
    print(tag, f"{seconds:.0f}s")
