"""The import rules of docs/architecture.md, read from the source of every module, plus a fresh
interpreter for what a process actually loads.

Arrows point down: launch -> api, worker -> service -> db -> netfit, and api, worker ->
netfit.engine -> netfit. An import counts wherever it stands (inside a function too), and so
does a module loaded by name: `import_module("x.y")`, `__import__("x.y")`, or any string that
is exactly one of our modules' dotted names ("x.y" or "x.y:attr", as uvicorn and Celery take
them). No two files may import each other, directly or round a loop (imports under `if TYPE_CHECKING:`
are for type checkers only and never run: they are not counted).

The checker works on a {module: source} map, so its self-check plants bad imports into a copy
of that map in memory: nothing is written into the tree while other test processes read it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("launch", "api", "worker", "service", "db", "netfit")
SERVER_LIBS = {"fastapi", "starlette", "uvicorn", "celery", "kombu", "sqlalchemy", "alembic", "redis", "psycopg"}

# layer -> the layers it may import (itself included)
ALLOWED: dict[str, set[str]] = {
    "launch": {"launch", "api", "worker", "service", "db", "netfit.engine", "netfit"},
    "api": {"api", "service", "db", "netfit.engine", "netfit"},
    "worker": {"worker", "service", "db", "netfit.engine", "netfit"},
    "service": {"service", "db", "netfit"},
    "db": {"db", "netfit"},
    "netfit.engine": {"netfit.engine", "netfit"},
    "netfit": {"netfit"},
}
# (importer, imported prefix, only inside a function?): the few arrows outside ALLOWED, each with its reason
EXCEPTIONS: tuple[tuple[str, str, bool], ...] = (
    # the CLI's server commands run from a checkout: they import the server inside the command
    ("netfit.cli.server", "launch", True), ("netfit.cli.server", "worker.main", True),
    ("netfit.cli.server", "service.settings", True), ("netfit.cli.server", "db", True),
    # the SDK runs a downloaded model with the published engine where torch is installed
    ("netfit", "netfit.engine", True),
    # the settings hand the engine its data set cache (standard library only)
    ("service.settings", "netfit.engine.downloads", True),
)
# layer -> third-party top-level packages it must not import (the SDK may use the caller's
# torch or numpy inside a function: Client.fit converts what it is given; `import netfit` stays light)
FORBIDDEN_LIBS: dict[str, set[str]] = {
    "netfit": SERVER_LIBS,
    "netfit.engine": SERVER_LIBS,
    "db": {"fastapi", "starlette", "uvicorn", "celery", "kombu", "torch"},
    "service": {"fastapi", "starlette", "uvicorn", "torch"},  # the API and the worker both load it
}
FORBIDDEN_AT_MODULE_LEVEL: dict[str, set[str]] = {"netfit": {"torch", "numpy", "sklearn", "safetensors"}}
# layer -> our modules it must not import although its layer is allowed: the API validates with
# the engine's shape inference, it never trains
FORBIDDEN_MODULES: dict[str, tuple[str, ...]] = {"api": ("netfit.engine.fit", "netfit.engine.packed")}


def tree_sources() -> dict[str, str]:
    sources = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            sources[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path.read_text()
    return sources


def layer_of(module: str) -> str | None:
    if module == "netfit.engine" or module.startswith("netfit.engine."):
        return "netfit.engine"
    top = module.split(".")[0]
    return top if top in ALLOWED else None


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _ours(name: str, modules: set[str]) -> str | None:
    """The module of this tree that `name` loads (the longest known prefix), else None."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def imports_of(module: str, source: str, is_package: bool, modules: set[str]) -> Iterator[tuple[str, bool]]:
    """(imported name, inside a function?) for every import the source makes, by statement or by name."""

    def walk(node: ast.AST, nested: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, (ast.Name, ast.Attribute)) \
                    and _call_name(child.test) == "TYPE_CHECKING":
                yield from walk(ast.Module(body=child.orelse, type_ignores=[]), nested)
                continue
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                yield from ((alias.name, nested) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[:len(package) - child.level + 1]
                    base = ".".join([*package, *([base] if base else [])])
                for alias in child.names:  # `from db import jobs` loads db.jobs
                    yield (f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base), nested
            elif isinstance(child, ast.Call) and child.args and _call_name(child.func) in ("import_module", "__import__"):
                arg = child.args[0]
                yield (arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                       else "<a computed name>"), nested
            elif isinstance(child, ast.Constant) and isinstance(child.value, str):
                named = child.value.split(":")[0]
                if "." in named and named in modules and child.value.count(":") <= 1:
                    yield named, nested
            yield from walk(child, inner)

    yield from walk(ast.parse(source), False)


def _call_name(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _excepted(module: str, target: str, nested: bool) -> bool:
    return any(_under(module, importer) and _under(target, prefix) and (nested or not lazy_only)
               for importer, prefix, lazy_only in EXCEPTIONS)


def violations(sources: dict[str, str]) -> list[str]:
    modules = set(sources)
    packages = {m for m in modules if any(o.startswith(m + ".") for o in modules)}
    found: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, source in sorted(sources.items()):
        layer = layer_of(module)
        for name, nested in imports_of(module, source, module in packages, modules):
            where = "inside a function" if nested else "at module level"
            if name == "<a computed name>":
                found.append(f"{module} imports a computed name ({where}): name the module, so this test can read it")
                continue
            target = _ours(name, modules)
            if target is None:
                lib = name.split(".")[0]
                if lib in FORBIDDEN_LIBS.get(layer or "", ()) or (
                        not nested and lib in FORBIDDEN_AT_MODULE_LEVEL.get(layer or "", ())):
                    found.append(f"{module} imports {name} ({where}): {layer} must not use {name.split('.')[0]}")
                continue
            if target != module:
                graph[module].add(target)
            if layer is None or _excepted(module, target, nested):
                continue
            if layer_of(target) not in ALLOWED[layer]:
                found.append(f"{module} imports {target} ({where}): {layer} may import only "
                             f"{', '.join(sorted(ALLOWED[layer]))}")
            elif any(_under(target, p) for p in FORBIDDEN_MODULES.get(layer, ())):
                found.append(f"{module} imports {target} ({where}): {layer} must not load it")
    found += ["file cycle: " + " -> ".join([*cycle, cycle[0]]) for cycle in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one file (Tarjan), each in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(start: str) -> None:  # iterative: a long import chain must not hit the recursion limit
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_every_module_keeps_the_import_rules():
    assert violations(tree_sources()) == []


PLANTED = [
    # (module planted, its source, the start of the violation expected)
    ("netfit.planted", "import worker.tasks\n", "netfit.planted imports worker.tasks"),
    ("netfit.planted", "from db import jobs\n", "netfit.planted imports db.jobs"),
    ("netfit.planted", "import torch\n", "netfit.planted imports torch"),
    ("netfit.planted", "def f():\n    import sqlalchemy\n", "netfit.planted imports sqlalchemy"),
    ("netfit.engine.planted", "from api.app import create_app\n", "netfit.engine.planted imports api.app"),
    ("db.planted", "import torch\n", "db.planted imports torch"),
    ("db.planted", "from service import queue\n", "db.planted imports service.queue"),
    ("service.planted", "from api import deps\n", "service.planted imports api.deps"),
    ("service.planted", "from worker import tasks\n", "service.planted imports worker.tasks"),
    ("service.planted", "def f():\n    import fastapi\n", "service.planted imports fastapi (inside a function)"),
    ("worker.planted", "from api.app import create_app\n", "worker.planted imports api.app"),
    ("worker.planted", "from launch.server import serve\n", "worker.planted imports launch.server"),
    ("api.planted", "from worker import reconciler\n", "api.planted imports worker.reconciler"),
    ("api.planted", "from netfit.engine.fit import fit\n", "api.planted imports netfit.engine.fit"),
    ("api.planted", "import importlib\nimportlib.import_module('worker.tasks')\n", "api.planted imports worker.tasks"),
    ("api.planted", "def f():\n    __import__('launch.server')\n", "api.planted imports launch.server (inside"),
    ("api.planted", "APP = 'worker.main:run_worker'\n", "api.planted imports worker.main"),
    ("api.planted", "import importlib\nimportlib.import_module('api' + '.app')\n", "api.planted imports a computed name"),
    ("netfit.cli.server", "from launch.server import serve\n", "netfit.cli.server imports launch.server (at module"),
    ("netfit.cli.planted", "def f():\n    from launch.server import serve\n", "netfit.cli.planted imports launch.server"),
]


@pytest.mark.parametrize("module, source, expected", PLANTED, ids=[f"{m}:{s.strip()}" for m, s, _ in PLANTED])
def test_the_checker_reports_a_planted_bad_import(module, source, expected):
    """The checker itself can fail: each rule, broken once in an in-memory copy of the tree."""
    sources = {**tree_sources(), module: source}
    assert any(v.startswith(expected) for v in violations(sources)), violations(sources)


def test_the_checker_reports_a_planted_file_cycle():
    sources = tree_sources()
    sources["db.planted_a"] = "from db import planted_b\n"
    sources["db.planted_b"] = "def later():\n    from db.planted_a import x\n"  # a lazy import closes it too
    assert "file cycle: db.planted_a -> db.planted_b -> db.planted_a" in violations(sources)


def test_the_checker_passes_a_good_import():
    sources = {**tree_sources(), "api.planted": "from service.queue import enqueue\nfrom netfit.engine.layers import summarize\n"}
    assert violations(sources) == violations(tree_sources())


CHECK = """
import os, sys
import netfit, netfit.cli
assert not {"torch", "numpy", "fastapi", "sqlalchemy", "celery"} & set(sys.modules), "the SDK loaded a heavy library"
import db.jobs, db.datasets, db.migrate
assert not {"fastapi", "celery", "torch"} & set(sys.modules), "db imported a server/training library"
import service.queue
assert "torch" not in sys.modules, "service.queue imported torch"
assert not os.path.exists(".netfit"), "importing the queue made the file broker's folders"
from api.app import create_app
from service.settings import Settings
create_app(Settings(database_url="sqlite://", broker_url="redis://127.0.0.1:6379/0"))
assert not os.path.exists(".netfit"), "an app on Redis made the file broker's folders"
import netfit.engine.data, netfit.engine.layers   # what the API's validation uses
assert "netfit.engine.fit" not in sys.modules and "worker.tasks" not in sys.modules, "the API loaded the training loop"
"""


def test_processes_load_only_what_their_rules_allow(tmp_path):
    """In a fresh directory with no NETFIT_BROKER_URL: the API on Redis makes no ./.netfit."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_test_module_imports_another():
    """What several test modules share lives in a conftest module, so each test module can
    change (or go) alone."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            offenders += [f"{path.relative_to(ROOT)} imports {n}" for n in names
                          if n.startswith("tests.") and n.split(".")[-1].startswith("test_")]
    assert offenders == []
