"""Server commands (serve, api, worker) and API keys (on the server's database). The server
code lives in a netfit checkout (launch/, api/, worker/, service/, db/: docs/architecture.md),
not in the published SDK, so it is imported inside the command that runs: `import netfit`
never loads it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from netfit.cli.output import table, when

SERVER_ENV_HELP = """\
environment:
  NETFIT_DATABASE_URL  where jobs, metrics and weights live
                       (default sqlite:///./netfit.db; production: postgresql+psycopg://...)
  NETFIT_BROKER_URL    the Celery broker (default: a file broker under ./.netfit/,
                       no server needed; production: redis://...)
"""

KEYS_HELP = """\
The first key turns auth on: from then on every request needs a key and sees only its
tenant's jobs and data sets (revoking every key does not turn auth off again).

environment:
  NETFIT_DATABASE_URL  the server's database (default sqlite:///./netfit.db, as `netfit serve`)
"""


@contextmanager
def server_code() -> Iterator[None]:
    """Around a server command's imports: a missing server package is a message, not a trace."""
    try:
        yield
    except ImportError as exc:
        raise SystemExit(
            f"netfit: `{exc.name or 'the server code'}` is not importable ({exc}). The server runs from a netfit checkout "
            "with the server extra: `make install` there, or use the docker image."
        ) from None


def cmd_serve(args: argparse.Namespace) -> int:
    with server_code():
        from launch.server import serve
    serve(args.host, args.port)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    with server_code():
        from launch.server import run_api
    run_api(args.host, args.port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    queues = [q for q in (args.queues or "").split(",") if q] or None
    if args.devices is not None:
        with server_code():
            from launch.devices import DeviceError, resolve, supervise
        try:
            if args.concurrency != 1:
                raise DeviceError("--devices runs one worker per device; leave out --concurrency")
            devices = resolve(args.devices)
        except DeviceError as exc:
            print(f"netfit: {exc}", file=sys.stderr)
            return 2
        return supervise(devices, queues)
    with server_code():
        from worker.main import run_worker
    run_worker(queues=queues, concurrency=args.concurrency)
    return 0


def _settings() -> Any:
    with server_code():
        from service.settings import Settings
    return Settings.from_env()


@contextmanager
def server_database() -> Iterator[Any]:
    """A session on the server's database: NETFIT_DATABASE_URL, default the embedded
    ./netfit.db that `netfit serve` uses; migrated first, as `serve` and `api` do at start."""
    with server_code():
        from db.migrate import upgrade
        from db.session import make_session_factory
    url = _settings().database_url
    upgrade(url)
    factory = make_session_factory(url)
    try:
        with factory() as session:
            yield session
    finally:
        factory.kw["bind"].dispose()


def tenant_store() -> Any:
    """db.tenants, for `netfit tenants` (netfit.cli.cluster), with server_database()."""
    with server_code():
        from db import tenants
    return tenants


@contextmanager
def _key_store() -> Iterator[tuple[Any, Any]]:
    """(db.keys, a session on the server's database: server_database())."""
    with server_code():
        from db import keys
    with server_database() as session:
        yield keys, session


def cmd_keys_create(args: argparse.Namespace) -> int:
    with _key_store() as (keys, session):
        try:
            row, key = keys.create_key(session, tenant=args.tenant, name=args.name)
        except ValueError as exc:
            raise SystemExit(f"netfit: {exc}") from None
    # the key alone on stdout (KEY=$(netfit keys create ...)); the rest is for the person
    print(key)
    print(f"created API key {row.id} ({row.prefix}…) for tenant '{row.tenant}'. It is shown only this once: "
          "the server keeps only its hash. Clients send it as 'Authorization: Bearer <key>' "
          "(NETFIT_API_KEY for the SDK and CLI).", file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    with _key_store() as (keys, session):
        rows = [[k.id, k.prefix + "…", k.tenant, k.name, when(k.created_at), when(k.revoked_at)]
                for k in keys.list_keys(session)]
    print(table(["id", "prefix", "tenant", "name", "created", "revoked"], rows))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    with _key_store() as (keys, session):
        try:
            row, revoked_now = keys.revoke_key(session, args.key)
        except LookupError as exc:
            raise SystemExit(f"netfit: {exc}") from None
    what = "revoked" if revoked_now else f"was already revoked at {when(row.revoked_at)}:"
    print(f"{what} API key {row.id} ({row.prefix}…, tenant '{row.tenant}'); requests with it now get 401")
    return 0


DATASETS_FETCH_HELP = """\
Downloads once, into the cache every worker of this machine reads (checked by sha256), so
that no job waits for it. Run it where the workers run.

environment:
  NETFIT_DATASET_DIR          the cache (default ~/.cache/netfit/datasets)
  NETFIT_DATASET_MIRROR       a base URL tried before the canonical mirrors (files at <URL>/<set>/<file>)
  NETFIT_DATASET_MIRROR_ONLY  1: use that mirror alone
"""


def cmd_datasets_fetch(args: argparse.Namespace) -> int:
    """`netfit datasets fetch mnist`: the downloaded built-ins into this machine's cache."""
    from netfit.engine.downloads import REMOTE_SETS, fetch
    from netfit.engine.errors import DataError

    downloads = _settings().downloads()
    for name in args.names:
        if name not in REMOTE_SETS:
            raise SystemExit(f"netfit: '{name}' is not a downloaded built-in; choose from {', '.join(REMOTE_SETS)}")
        placed: list[str] = []
        try:
            paths = fetch(name, downloads, placed)
        except DataError as exc:
            raise SystemExit(f"netfit: {exc}") from None
        size = sum(p.stat().st_size for p in paths.values())
        done = f"downloaded {len(placed)} of {len(paths)} files to" if placed else "already in"
        print(f"{name}: {done} {downloads.folder(name)} ({size / 2**20:.1f} MiB, checked by sha256)")
    return 0


def register(command, formatter) -> None:  # see netfit.cli.build_parser
    for name, help, run in (
        ("serve", "run the embedded service: the API and one worker in one process", cmd_serve),
        ("api", "run the HTTP API (uvicorn)", cmd_api),
    ):
        sub = command(name, help, run, SERVER_ENV_HELP, server=True)
        sub.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
        sub.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    sub = command("worker", "run a Celery worker that trains queued jobs", cmd_worker, SERVER_ENV_HELP, server=True)
    sub.add_argument("--queues", help="comma-separated queues to consume (default: all the worker's queues)")
    sub.add_argument("--concurrency", type=int, default=1, help="jobs trained at once (default %(default)s)")
    sub.add_argument("--devices", metavar="all|0,1,...",
                     help="one worker process per CUDA device (all, or indexes), each seeing only its GPU, "
                          "started again if it dies; queues default to gpu")

    keys = command("keys", "create, list and revoke API keys (on the server's database)", None, KEYS_HELP,
                   server=True)
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help, run in (("create", "make a key for a tenant; prints it once", cmd_keys_create),
                            ("list", "list keys: id, prefix, tenant, name, created, revoked (never the keys)",
                             cmd_keys_list),
                            ("revoke", "revoke a key at once (by id or prefix)", cmd_keys_revoke)):
        sub = actions.add_parser(name, help=help, description=help, epilog=KEYS_HELP, formatter_class=formatter)
        sub.set_defaults(run=run)
        if name == "create":
            sub.add_argument("--tenant", required=True, help="whose jobs and data sets the key sees")
            sub.add_argument("--name", help="a note to tell keys apart, e.g. who holds it")
        elif name == "revoke":
            sub.add_argument("key", metavar="ID-or-PREFIX", help="the id or prefix shown by `netfit keys list`")
