"""The import rules of DESIGN §2, read from the source of every module (imports inside
functions count too), plus a fresh interpreter for what a process actually loads."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = {"fastapi", "starlette", "uvicorn", "celery", "kombu", "sqlalchemy", "alembic", "redis", "psycopg"}
OURS_UNPUBLISHED = {"launch", "api", "worker", "service", "db"}

# package prefix -> (forbidden top-level imports, forbidden module prefixes)
RULES: dict[str, tuple[set[str], tuple[str, ...]]] = {
    # the SDK/CLI and the wire contract: light, and never our server code
    "netfit": (SERVER | {"torch", "numpy", "sklearn", "safetensors"} | OURS_UNPUBLISHED, ()),
    # the engine: torch + netfit only
    "netfit.engine": (SERVER | OURS_UNPUBLISHED, ()),
    # db: netfit + SQLAlchemy only
    "db": ({"fastapi", "starlette", "celery", "torch", "launch", "api", "worker", "service"}, ("netfit.engine",)),
    # the API may validate with the engine's shape inference, never train
    "api": (set(), ("netfit.engine.fit", "worker.tasks", "worker.main")),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _rule_for(module: str) -> str | None:
    matches = [p for p in RULES if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def _violations() -> list[str]:
    found = []
    for package in ("netfit", "db", "service", "api", "worker", "launch"):
        for path in sorted((ROOT / package).rglob("*.py")):
            module = _module_name(path)
            rule = _rule_for(module)
            if rule is None:
                continue
            top_forbidden, prefixes = RULES[rule]
            for name in _imports(path):
                top = name.split(".")[0]
                if rule == "netfit" and name.startswith("netfit."):
                    continue  # the SDK's load_model runs the published engine, lazily
                if module == "netfit.cli.server" and top in OURS_UNPUBLISHED:
                    continue  # the server commands import the checkout's server inside the command
                if top in top_forbidden or any(name == p or name.startswith(p + ".") for p in prefixes):
                    found.append(f"{module} imports {name} (rule of {rule})")
    return found


def test_every_module_keeps_the_import_rules():
    assert _violations() == []


@pytest.mark.parametrize("source, rule", [
    ("import worker.engine\n", "netfit"), ("from db import jobs\n", "netfit"),
    ("import torch\n", "netfit"), ("from api.app import create_app\n", "netfit.engine"),
    ("import torch\n", "db"), ("from netfit.engine.fit import fit\n", "api"),
])
def test_the_rule_checker_catches_a_bad_import(tmp_path, monkeypatch, source, rule):
    """The checker itself can fail: a planted bad import in a package is reported."""
    package_dir = ROOT / Path(*rule.split("."))
    planted = package_dir / "_planted_bad_import.py"
    planted.write_text(source)
    try:
        assert any(v.startswith(f"{rule}._planted_bad_import imports") for v in _violations())
    finally:
        planted.unlink()


CHECK = """
import sys
import netfit, netfit.cli
assert not {"torch", "numpy", "fastapi", "sqlalchemy", "celery"} & set(sys.modules), "the SDK loaded a heavy library"
import db.jobs, db.datasets, db.migrate
assert not {"fastapi", "celery", "torch"} & set(sys.modules), "db imported a server/training library"
import service.queue
assert "torch" not in sys.modules, "service.queue imported torch"
from api.app import create_app
from service.settings import Settings
create_app(Settings(database_url="sqlite://", broker_url="redis://127.0.0.1:6379/0"))
import netfit.engine.data, netfit.engine.layers   # what the API's validation uses
assert "netfit.engine.fit" not in sys.modules and "worker.tasks" not in sys.modules, "the API loaded the training loop"
"""


def test_processes_load_only_what_their_rules_allow():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_test_module_imports_another():
    """What several test modules share lives in a conftest module, so each test module can
    change (or go) alone."""
    offenders = [f"{path.relative_to(ROOT)} imports {name}"
                 for path in sorted((ROOT / "tests").rglob("*.py"))
                 for name in _imports(path) if name.split(".")[-1].startswith("test_") and name.startswith("tests.")]
    assert offenders == []
