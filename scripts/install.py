"""`pip install ARGS` into the running interpreter's environment, by uv when it can be had: the
same packages from the same places in seconds where pip takes a minute (a fresh clone's `make
run`). uv reads neither pip's configuration files nor its PIP_* variables, so they are passed
on here as uv's options, with pip's rule of the best version from every index.

The Makefile makes the venv without pip (ensurepip took 3.4 of a fresh run's ~20 s) and asks
for pip among ARGS, which uv installs in a fraction of a second. Until then pip's settings are
read, and uv fetched once per machine into ~/.cache/netfit/uv, by the interpreter the venv was
made from. uv is taken from PATH, the venv or that cache. pip installs (put in by ensurepip
where the venv has none) when uv cannot be had or fails."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

# pip's settings that choose where packages come from, and uv's option for each
OPTIONS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
           "constraint": "--constraint", "trusted-host": "--allow-insecure-host"}


UV_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "netfit" / "uv"


def has_pip() -> bool:
    return importlib.util.find_spec("pip") is not None


def pip_python() -> str:
    """An interpreter with pip: this one, else the one its venv was made from."""
    return sys.executable if has_pip() else getattr(sys, "_base_executable", sys.executable)


def pip_config() -> dict[str, str]:
    """pip's effective settings: its files and PIP_* variables as `pip config list` shows them,
    in pip's order of precedence (a later line overrides an earlier one)."""
    out = subprocess.run([pip_python(), "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    settings = {}
    for line in out.splitlines():  # global.find-links='/opt/wheels' or :env:.find-links='...'
        key, sep, value = line.partition("=")
        if sep and "." in key:
            settings[key.split(".", 1)[1]] = value.strip().strip("'\"")
    return settings


def uv_options(settings: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    options = ["--index-strategy", "unsafe-best-match"]  # pip's rule: the best version from every index
    for key, flag in OPTIONS.items():
        for value in shlex.split(settings.get(key, "")):
            options += [flag, value]
    if settings.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        options.append("--no-index")
    env = {"SSL_CERT_FILE": settings["cert"]} if settings.get("cert") else {}
    return options, env


def find_uv() -> str | None:
    places = (Path(sys.executable).parent / "uv", UV_CACHE / "bin" / "uv")
    found = shutil.which("uv") or next((str(p) for p in places if p.exists()), None)
    if found is None:  # once per machine: later fresh clones find it in the cache
        installed = subprocess.run([pip_python(), "-m", "pip", "install", "-q", "--target", str(UV_CACHE), "uv"])
        found = str(places[1]) if installed.returncode == 0 and places[1].exists() else None
    return found


def main(args: list[str]) -> int:
    uv = find_uv()
    if uv is not None:
        options, env = uv_options(pip_config())
        # the checkout is built with this environment's setuptools (an isolated build env took seconds)
        # no --compile-bytecode: the Makefile lets each process write the bytecode of what it imports
        command = [uv, "pip", "install", "-q", "--python", sys.executable, *options]
        # a venv made without pip has no setuptools either: first the one the build uses
        first = [] if importlib.util.find_spec("setuptools") else [[*command, "setuptools"]]
        if all(subprocess.run(c, env={**os.environ, **env}).returncode == 0
               for c in [*first, [*command, "--no-build-isolation-package", "netfit", *args]]):
            return 0
        print("uv could not install; pip tries", file=sys.stderr)
    if not has_pip():
        subprocess.run([sys.executable, "-m", "ensurepip", "-q"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
