"""`netfit`: the command line, a thin shell over `netfit.Client`.

    netfit serve                                  # embedded service: API + worker, no servers needed
    netfit submit examples/iris_two_layers_small.json --follow
    netfit metrics ID --format csv
    netfit plot ID -o curves.png
    netfit keys create --tenant team-a            # on the server: an API key, printed once

Errors from the API end the command with one line and exit status 1.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata
from typing import Any

from netfit import __version__
from netfit.client import Client, NetfitError, metrics_columns
from netfit.models import EpochMetrics, Job
from netfit.spec import metric_mode
from netfit.sse import EpochEvent, StatusEvent

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

CLIENT_ENV_HELP = """\
environment:
  NETFIT_API_URL  the API to talk to (default http://127.0.0.1:8000); or --url
  NETFIT_API_KEY  bearer key; or --api-key
"""


# --------------------------------------------------------------------------- progress


class PatienceTracker:
    """The early-stopping countdown, recomputed here from the spec and the metrics so that the
    progress line can say "patience 3/20" (epochs without improvement / allowed)."""

    def __init__(self, spec: dict):
        rule = (spec.get("training") or {}).get("early_stopping")
        self.enabled = rule is not None
        rule = rule or {}
        self.monitor = rule.get("monitor", "val_loss")
        self.mode = rule.get("mode") or metric_mode(self.monitor)
        self.patience = int(rule.get("patience", 10))
        self.min_delta = float(rule.get("min_delta", 0.0))
        self.relative = rule.get("min_delta_mode", "abs") == "rel"
        self.start_from_epoch = int(rule.get("start_from_epoch", 0))
        self.best: float | None = rule.get("baseline")
        self.wait = 0

    def update(self, row: EpochMetrics) -> None:
        value = getattr(row, self.monitor, None)
        if not self.enabled or value is None or row.epoch <= self.start_from_epoch:
            return
        if self.best is None:
            self.best, self.wait = value, 0
            return
        delta = self.min_delta * abs(self.best) if self.relative else self.min_delta
        improved = value < self.best - delta if self.mode == "min" else value > self.best + delta
        if improved:
            self.best, self.wait = value, 0
        else:
            self.wait += 1

    def text(self) -> str:
        return f"patience {self.wait}/{self.patience}" if self.enabled else ""


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}" if abs(value) >= 1e4 else f"{value:.{digits}f}"


def _split_text(row: EpochMetrics, split: str) -> str:
    parts = [f"{split} loss {_num(getattr(row, f'{split}_loss'))}"]
    for name, label in (("accuracy", "acc"), ("rmse", "rmse")):
        value = getattr(row, f"{split}_{name}")
        if value is not None:
            parts.append(f"{label} {_num(value)}")
    return " ".join(parts)


def progress_line(row: EpochMetrics, total: int, patience: PatienceTracker, width: int = 20) -> str:
    done = min(width, round(width * row.epoch / max(total, 1)))
    bar = "#" * done + "." * (width - done)
    pieces = [f"epoch {row.epoch:>{len(str(total))}}/{total} [{bar}]", _split_text(row, "train")]
    if row.val_loss is not None:
        pieces.append(_split_text(row, "val"))
    if patience.enabled:
        pieces.append(patience.text())
    return "  ".join(pieces)


def final_line(job: Job) -> str:
    pieces = [job.status]
    if job.stop_reason:
        pieces.append(f"stopped by {job.stop_reason} after {job.epochs_completed} epochs")
    if job.best_epoch is not None:
        pieces.append(f"best epoch {job.best_epoch}")
    if job.test_metrics:
        pieces.append("test " + " ".join(f"{k.removeprefix('test_')} {_num(v)}" for k, v in job.test_metrics.items()))
    if job.error:
        pieces.append(f"error: {job.error}")
    return " · ".join(pieces)


def _follow(client: Client, job: Job, out: Callable[[str], None]) -> Job:
    tracker = PatienceTracker(job.spec)
    for event in client.follow(job.id):
        if isinstance(event, EpochEvent):
            tracker.update(event.metrics)
            out(progress_line(event.metrics, job.epochs, tracker))
        elif isinstance(event, StatusEvent) and not event.done:
            out(f"{event.status}")
    return client.job(job.id)


# --------------------------------------------------------------------------- tables


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [list(header)] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _job_row(job: Job) -> list[object]:
    best, test = job.best_metrics or {}, job.test_metrics or {}
    metrics = [best.get("val_loss"), best.get("val_accuracy"), test.get("test_accuracy", test.get("test_rmse"))]
    return [job.id, job.name or "", job.status, f"{job.epochs_completed}/{job.epochs}", job.best_epoch,
            *(None if v is None else _num(v) for v in metrics), job.stop_reason,
            job.created_at.strftime("%Y-%m-%d %H:%M:%S")]


def _job_text(job: Job) -> str:
    lines = [
        f"job        {job.id}" + (f"  ({job.name})" if job.name else ""),
        f"status     {job.status}" + (f"  stop_reason {job.stop_reason}" if job.stop_reason else ""),
        f"epochs     {job.epochs_completed}/{job.epochs}" + (f"  best epoch {job.best_epoch}" if job.best_epoch else ""),
    ]
    for label, values in (("best", job.best_metrics), ("test", job.test_metrics)):
        if values:
            lines.append(f"{label:<10} " + "  ".join(f"{k} {_num(v)}" for k, v in values.items()))
    if job.summary:
        s = job.summary
        lines.append(f"model      input {s.input_shape} → {s.n_outputs} outputs, {s.task}/{s.loss}, "
                     f"{s.total_params:,} parameters")
    if job.device or job.attempts:
        lines.append(f"ran on     {job.device or '-'}  attempts {job.attempts}")
    if job.error:
        lines.append(f"error      {job.error}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- commands


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    job = client.submit(args.spec)
    print(f"submitted {job.id}" + (f" ({job.name})" if job.name else "") + f": {job.status}")
    if job.summary:
        print(f"model: {len(job.summary.layers)} layers, {job.summary.total_params:,} parameters, "
              f"{job.summary.task} with {job.summary.loss}")
    if not args.follow:
        return 0
    try:
        job = _follow(client, job, lambda line: print(line, flush=True))
    except KeyboardInterrupt:  # stop watching, not training
        print(f"\nstopped following; {job.id} goes on: `netfit status {job.id}`, `netfit cancel {job.id}`")
        return 130
    print(final_line(job))
    return 0 if job.status == "succeeded" else 2


def cmd_jobs(client: Client, args: argparse.Namespace) -> int:
    header = ["id", "name", "status", "epochs", "best", "val loss", "val acc", "test acc/rmse", "stop", "created"]
    print(_table(header, (_job_row(job) for job in client.jobs(status=args.status, limit=args.limit))))
    return 0


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    job = client.job(args.id)
    print(job.model_dump_json(indent=2) if args.json else _job_text(job))
    return 0


def cmd_metrics(client: Client, args: argparse.Namespace) -> int:
    rows = client.metrics(args.id)
    if args.format == "json":
        print(json.dumps([row.model_dump() for row in rows], indent=2))
        return 0
    columns = metrics_columns(rows) or {"epoch": []}
    names = list(columns)
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(zip(*(columns[n] for n in names)))
    else:
        shown = {n: [v if n == "epoch" or v is None else _num(v) for v in columns[n]] for n in names}
        print(_table(names, zip(*(shown[n] for n in names))))
    return 0


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    job = client.cancel(args.id)
    if job.status == "cancelled":
        print(f"{job.id}: cancelled")
    elif job.done:
        print(f"{job.id} had already ended ({job.status}); nothing to cancel")
    else:
        print(f"{job.id}: cancel requested; it stops within an epoch (now {job.status})")
    return 0


def cmd_download(client: Client, args: argparse.Namespace) -> int:
    path = client.download_checkpoint(args.id, which=args.which, path=args.output)
    print(f"saved the {args.which} weights of {args.id} to {path} ({path.stat().st_size:,} bytes)")
    return 0


def cmd_plot(client: Client, args: argparse.Namespace) -> int:
    client.curves(args.id, path=args.output)
    print(f"saved the learning curves of {args.id} to {args.output}")
    return 0


def cmd_datasets_upload(client: Client, args: argparse.Namespace) -> int:
    ds = client.upload_dataset(args.file, name=args.name, target=args.target)
    classes = f", {ds.n_classes} classes" if ds.n_classes else ""
    print(f"uploaded {ds.id} ({ds.name}): {ds.n_samples} samples of shape {ds.input_shape}, {ds.task}{classes}")
    print(f'use it in a spec as "dataset": {{"id": "{ds.id}"}}')
    return 0


def cmd_datasets_list(client: Client, args: argparse.Namespace) -> int:
    header = ["id", "name", "format", "samples", "input shape", "task", "classes", "test split", "created"]
    rows = ([d.id, d.name, d.format, d.n_samples, d.input_shape, d.task, d.n_classes,
             "yes" if d.has_test_split else "no", d.created_at.strftime("%Y-%m-%d %H:%M:%S")]
            for d in client.datasets())
    print(_table(header, rows))
    return 0


def _server_module(module: str) -> Any:
    """The server code lives in a netfit checkout (api/, db/, worker/), not in the published SDK,
    so it is imported here, when a server command runs: `import netfit` never loads it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SystemExit(
            f"netfit: `{module}` is not importable ({exc}). The server runs from a netfit checkout "
            "with the server extra: `make install` there, or use the docker image."
        ) from None


def _server_runner(module: str, function: str) -> Callable:
    return getattr(_server_module(module), function)


def cmd_serve(args: argparse.Namespace) -> int:
    _server_runner("api.server", "serve")(args.host, args.port)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    _server_runner("api.server", "run_api")(args.host, args.port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    queues = [q for q in (args.queues or "").split(",") if q] or None
    _server_runner("worker.main", "run_worker")(queues=queues, concurrency=args.concurrency)
    return 0


@contextmanager
def _key_store() -> Iterator[tuple[Any, Any]]:
    """(db.keys, a session) on the server's database: NETFIT_DATABASE_URL, default the embedded
    ./netfit.db that `netfit serve` uses; migrated first, as `serve` and `api` do at start."""
    keys = _server_module("db.keys")
    url = _server_module("api.settings").Settings.from_env().database_url
    _server_module("db.migrate").upgrade(url)
    factory = _server_module("db.session").make_session_factory(url)
    try:
        with factory() as session:
            yield keys, session
    finally:
        factory.kw["bind"].dispose()


def _when(moment: datetime | None) -> str | None:
    return moment and moment.strftime("%Y-%m-%d %H:%M:%S")


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
        rows = [[k.id, k.prefix + "…", k.tenant, k.name, _when(k.created_at), _when(k.revoked_at)]
                for k in keys.list_keys(session)]
    print(_table(["id", "prefix", "tenant", "name", "created", "revoked"], rows))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    with _key_store() as (keys, session):
        try:
            row, revoked_now = keys.revoke_key(session, args.key)
        except LookupError as exc:
            raise SystemExit(f"netfit: {exc}") from None
    what = "revoked" if revoked_now else f"was already revoked at {_when(row.revoked_at)}:"
    print(f"{what} API key {row.id} ({row.prefix}…, tenant '{row.tenant}'); requests with it now get 401")
    return 0


# --------------------------------------------------------------------------- parser


def _version() -> str:
    try:
        return metadata.version("netfit")
    except metadata.PackageNotFoundError:
        return __version__


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="netfit", formatter_class=formatter,
        description="model.fit as a service: submit a network, a data set and a recipe; follow, plot and download.",
        epilog=CLIENT_ENV_HELP,
    )
    parser.add_argument("--version", action="version", version=f"netfit {_version()}")
    parser.add_argument("--url", help="API base URL (default: $NETFIT_API_URL or http://127.0.0.1:8000)")
    parser.add_argument("--api-key", help="API key (default: $NETFIT_API_KEY)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, run: Callable, epilog: str = CLIENT_ENV_HELP) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=formatter)
        sub.set_defaults(run=run)
        return sub

    for name, help, run, port in (
        ("serve", "run the embedded service: the API and one worker in one process", cmd_serve, 8000),
        ("api", "run the HTTP API (uvicorn)", cmd_api, 8000),
    ):
        sub = command(name, help, run, SERVER_ENV_HELP)
        sub.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
        sub.add_argument("--port", type=int, default=port, help="port (default %(default)s)")
        sub.set_defaults(server=True)
    sub = command("worker", "run a Celery worker that trains queued jobs", cmd_worker, SERVER_ENV_HELP)
    sub.add_argument("--queues", help="comma-separated queues to consume (default: all the worker's queues)")
    sub.add_argument("--concurrency", type=int, default=1, help="jobs trained at once (default %(default)s)")
    sub.set_defaults(server=True)

    sub = command("submit", "submit a job spec (a JSON file)", cmd_submit)
    sub.add_argument("spec", help="path to the job spec, e.g. examples/iris_two_layers_small.json")
    sub.add_argument("--follow", "-f", action="store_true",
                     help="print a progress line per epoch until the job ends (exit 2 unless it succeeds)")

    sub = command("jobs", "list jobs, newest first", cmd_jobs)
    sub.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    sub.add_argument("--limit", type=int, default=20, help="how many (default %(default)s)")

    sub = command("status", "show one job: status, stop reason, best and test metrics", cmd_status)
    sub.add_argument("id")
    sub.add_argument("--json", action="store_true", help="the full job as JSON")

    sub = command("metrics", "the per-epoch metrics of a job", cmd_metrics)
    sub.add_argument("id")
    sub.add_argument("--format", choices=["table", "csv", "json"], default="table")

    sub = command("cancel", "stop a queued or running job", cmd_cancel)
    sub.add_argument("id")

    sub = command("download", "save a job's weights (safetensors)", cmd_download)
    sub.add_argument("id")
    sub.add_argument("--which", choices=["best", "last"], default="best")
    sub.add_argument("-o", "--output", help="file to write (default <id>-<which>.safetensors)")

    sub = command("plot", "save a job's learning curves (PNG or SVG, from the file name)", cmd_plot)
    sub.add_argument("id")
    sub.add_argument("-o", "--output", default="curves.png", help="file to write (default %(default)s)")

    datasets = command("datasets", "upload and list data sets", None)
    actions = datasets.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub = actions.add_parser("upload", help="upload a CSV or NPZ", formatter_class=formatter,
                             description="upload a CSV (label column: --target, default the last) or an NPZ "
                                         "(arrays x,y or x_train,y_train,x_test,y_test)")
    sub.add_argument("file")
    sub.add_argument("--name", help="a name to show (default the file name)")
    sub.add_argument("--target", help="the CSV column holding the labels (default the last)")
    sub.set_defaults(run=cmd_datasets_upload)
    sub = actions.add_parser("list", help="list uploaded data sets", description="list uploaded data sets")
    sub.set_defaults(run=cmd_datasets_list)

    keys = command("keys", "create, list and revoke API keys (on the server's database)", None, KEYS_HELP)
    keys.set_defaults(server=True)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "server", False):
        return args.run(args)
    try:
        with Client(base_url=args.url, api_key=args.api_key) as client:
            return args.run(client, args)
    except NetfitError as exc:
        # a server fault is for its operator: the request id finds it in the server's log
        trace = f" (request id {exc.request_id})" if exc.status_code >= 500 and exc.request_id else ""
        print(f"netfit: {exc}{trace}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:  # a spec file that is missing or not JSON, an unwritable -o
        print(f"netfit: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
