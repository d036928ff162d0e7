"""`pip install ARGS` into the running interpreter's environment, by uv when it can be had: the
same packages from the same places in seconds where pip takes a minute (a fresh clone's `make
run`). uv reads neither pip's configuration files nor its PIP_* variables, so they are passed
on here as uv's options, with pip's rule of the best version from every index; uv is taken
from PATH or installed with pip. pip installs when uv cannot be had or fails."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

# pip's settings that choose where packages come from, and uv's option for each
OPTIONS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
           "constraint": "--constraint", "trusted-host": "--allow-insecure-host"}


def pip_config() -> dict[str, str]:
    """pip's effective settings: its files and PIP_* variables as `pip config list` shows them,
    in pip's order of precedence (a later line overrides an earlier one)."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
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
    here = Path(sys.executable).parent / "uv"
    found = shutil.which("uv") or (str(here) if here.exists() else None)
    if found is None and subprocess.run([sys.executable, "-m", "pip", "install", "-q", "uv"]).returncode == 0:
        found = str(here) if here.exists() else None
    return found


def main(args: list[str]) -> int:
    uv = find_uv()
    if uv is not None:
        options, env = uv_options(pip_config())
        # the checkout is built with this environment's setuptools (an isolated build env took seconds)
        # no --compile-bytecode: the Makefile lets each process write the bytecode of what it imports
        command = [uv, "pip", "install", "-q", "--python", sys.executable, *options,
                   "--no-build-isolation-package", "netfit", *args]
        if subprocess.run(command, env={**os.environ, **env}).returncode == 0:
            return 0
        print("uv could not install; pip tries", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
