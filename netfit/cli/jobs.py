"""Client commands on jobs and data sets: submit, follow, jobs, status, metrics, cancel,
download, plot, datasets."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from netfit.cli.output import num, table, when
from netfit.cli.progress import final_line, follow
from netfit.cli.server import DATASETS_FETCH_HELP, cmd_datasets_fetch
from netfit.client import Client, metrics_columns
from netfit.models import Job, JobItem

STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]


def _job_row(job: JobItem) -> list[object]:
    best, test = job.best_metrics or {}, job.test_metrics or {}
    metrics = [best.get("val_loss"), best.get("val_accuracy"), test.get("test_accuracy", test.get("test_rmse"))]
    return [job.id, job.name or "", job.status, f"{job.epochs_completed}/{job.epochs}", job.best_epoch,
            *(None if v is None else num(v) for v in metrics), job.stop_reason, when(job.created_at)]


def _job_text(job: Job) -> str:
    lines = [
        f"job        {job.id}" + (f"  ({job.name})" if job.name else ""),
        f"status     {job.status}" + (f"  stop_reason {job.stop_reason}" if job.stop_reason else ""),
        f"epochs     {job.epochs_completed}/{job.epochs}" + (f"  best epoch {job.best_epoch}" if job.best_epoch else ""),
    ]
    for label, values in (("best", job.best_metrics), ("test", job.test_metrics)):
        if values:
            lines.append(f"{label:<10} " + "  ".join(f"{k} {num(v)}" for k, v in values.items()))
    if job.summary:
        s = job.summary
        lines.append(f"model      input {s.input_shape} → {s.n_outputs} outputs, {s.task}/{s.loss}, "
                     f"{s.total_params:,} parameters")
    if job.device or job.attempts:
        lines.append(f"ran on     {job.device or '-'}  attempts {job.attempts}")
    if job.error:
        lines.append(f"error      {job.error}")
    return "\n".join(lines)


def _follow_to_end(client: Client, job: Job) -> int:
    try:
        job = follow(client, job, lambda line: print(line, flush=True))
    except KeyboardInterrupt:  # stop watching, not training
        print(f"\nstopped following; {job.id} goes on: `netfit status {job.id}`, `netfit cancel {job.id}`")
        return 130
    print(final_line(job))
    return 0 if job.status == "succeeded" else 2


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    job = client.submit(args.spec)
    print(f"submitted {job.id}" + (f" ({job.name})" if job.name else "") + f": {job.status}")
    if job.summary:
        print(f"model: {len(job.summary.layers)} layers, {job.summary.total_params:,} parameters, "
              f"{job.summary.task} with {job.summary.loss}")
    return _follow_to_end(client, job) if args.follow else 0


def cmd_follow(client: Client, args: argparse.Namespace) -> int:
    return _follow_to_end(client, client.job(args.id))


def cmd_jobs(client: Client, args: argparse.Namespace) -> int:
    header = ["id", "name", "status", "epochs", "best", "val loss", "val acc", "test acc/rmse", "stop", "created"]
    print(table(header, (_job_row(job) for job in client.jobs(status=args.status, limit=args.limit))))
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
        shown = {n: [v if n == "epoch" or v is None else num(v) for v in columns[n]] for n in names}
        print(table(names, zip(*(shown[n] for n in names))))
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
    if args.layers:
        output = args.output or "layers.png"
        client.layers_plot(args.id, path=output)
        print(f"saved the layer statistics of {args.id} to {output}")
        return 0
    output = args.output or "curves.png"
    client.curves(args.id, path=output)
    print(f"saved the learning curves of {args.id} to {output}")
    return 0


def cmd_datasets_upload(client: Client, args: argparse.Namespace) -> int:
    ds = client.upload_dataset(args.file, name=args.name, target=args.target)
    classes = f", {ds.n_classes} classes" if ds.n_classes else ""
    print(f"uploaded {ds.id} ({ds.name}): {ds.n_samples} samples of shape {ds.input_shape}, {ds.task}{classes}")
    print(f'use it in a spec as "dataset": {{"id": "{ds.id}"}}')
    return 0


def cmd_datasets_list(client: Client, args: argparse.Namespace) -> int:
    header = ["id", "name", "format", "samples", "input shape", "task", "classes", "own val/test", "created"]
    rows = ([d.id, d.name, d.format, d.n_samples, d.input_shape, d.task, d.n_classes,
             "/".join("yes" if given else "no" for given in (d.has_validation_split, d.has_test_split)),
             when(d.created_at)]
            for d in client.datasets())
    print(table(header, rows))
    return 0


def register(command, formatter) -> None:  # see netfit.cli.build_parser
    sub = command("submit", "submit a job spec (a JSON file)", cmd_submit)
    sub.add_argument("spec", help="path to the job spec, e.g. examples/iris_two_layers_small.json")
    sub.add_argument("--follow", "-f", action="store_true",
                     help="print a progress line per epoch until the job ends (exit 2 unless it succeeds)")

    sub = command("follow", "attach to a job: its epochs so far, then live until it ends (exit 2 unless it "
                            "succeeds)", cmd_follow)
    sub.add_argument("id")

    sub = command("jobs", "list jobs, newest first", cmd_jobs)
    sub.add_argument("--status", choices=STATUSES)
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
    sub.add_argument("-o", "--output", help="file to write (default curves.png, or layers.png with --layers)")
    sub.add_argument("--layers", action="store_true",
                     help="plot each layer's max |w| and gradient norm vs epoch instead of the learning curves")

    datasets = command("datasets", "upload and list data sets", None)
    actions = datasets.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub = actions.add_parser("upload", help="upload a CSV or NPZ", formatter_class=formatter,
                             description="upload a CSV (label column: --target, default the last) or an NPZ "
                                         "(arrays x,y or x_train,y_train; with x_val,y_val a validation set of its own, with "
                                         "x_test,y_test a test set)")
    sub.add_argument("file")
    sub.add_argument("--name", help="a name to show (default the file name)")
    sub.add_argument("--target", help="the CSV column holding the labels (default the last)")
    sub.set_defaults(run=cmd_datasets_upload)
    sub = actions.add_parser("list", help="list uploaded data sets", description="list uploaded data sets")
    sub.set_defaults(run=cmd_datasets_list)
    sub = actions.add_parser("fetch", help="download mnist / fashion_mnist into this machine's cache",
                             description="download built-in data sets (mnist, fashion_mnist) into this machine's cache",
                             epilog=DATASETS_FETCH_HELP, formatter_class=formatter)
    sub.add_argument("names", nargs="+", metavar="NAME", help="mnist, fashion_mnist")
    sub.set_defaults(run=cmd_datasets_fetch, server=True)  # local: no API involved
