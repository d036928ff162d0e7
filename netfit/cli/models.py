"""Commands that use a trained model: predict (CSV rows or NPZ images) and export (ONNX, or the
curves as a TensorBoard run)."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

from netfit.client import Client

BODY_BUDGET = 900 * 1024  # under the API's 1 MiB body cap
MAX_BATCH = 10_000


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _batches(rows: list[list]) -> list[list[list]]:
    """Rows cut into requests each under the body cap and the instance limit."""
    out, batch, size = [], [], 0
    for row in rows:
        n = len(json.dumps(row)) + 1
        if batch and (size + n > BODY_BUDGET or len(batch) >= MAX_BATCH):
            out.append(batch)
            batch, size = [], 0
        batch.append(row)
        size += n
    return out + ([batch] if batch else [])


def _predict_all(client: Client, job_id: str, rows: list, checkpoint: str) -> dict:
    merged: dict = {"predictions": [], "probabilities": []}
    for batch in _batches(rows):
        out = client.predict(job_id, batch, checkpoint=checkpoint)
        merged["predictions"] += out["predictions"]
        merged["probabilities"] += out.get("probabilities") or []
        merged["classes"] = out.get("classes")
    return merged


def cmd_predict(client: Client, args) -> int:
    path = Path(args.file)
    if path.suffix.lower() == ".npz":
        try:
            from netfit.engine.inference import read_instances_npz
        except ImportError as exc:
            raise ValueError(f"reading .npz needs the engine extra (numpy, torch): {exc}") from None
        header, table, instances = None, None, read_instances_npz(path)
    else:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header, *table = [r for r in csv.reader(fh) if r]
        # feature columns: those that hold numbers in every row (a label column is kept, not sent)
        missing = [c for c in args.drop if c not in header]
        if missing:
            raise ValueError(f"--drop names {missing}, which {path} does not have; its columns are {header}")
        keep = [j for j in range(len(header)) if header[j] not in args.drop
                and all(_number(r[j]) is not None for r in table if j < len(r))]
        dropped = [header[j] for j in range(len(header)) if j not in keep]
        if dropped:
            print(f"netfit: not sent as features: {', '.join(dropped)}", file=sys.stderr)
        instances = [[float(r[j]) for j in keep] for r in table]
    out = _predict_all(client, args.id, instances, args.checkpoint)
    classes = out.get("classes")
    probability_columns = [f"probability_{c}" for c in classes] if classes else []
    if header is None:  # images: one line per sample
        header, table = ["index"], [[str(i)] for i in range(len(instances))]
    sink = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    try:
        writer = csv.writer(sink)
        writer.writerow([*header, "prediction", *probability_columns])
        for i, row in enumerate(table):
            probs = [f"{p:.6g}" for p in out["probabilities"][i]] if classes else []
            writer.writerow([*row, out["predictions"][i], *probs])
    finally:
        if args.output:
            sink.close()
    return 0


def cmd_export(client: Client, args) -> int:
    if args.format == "tensorboard":
        logdir = args.output or "runs"
        target = client.tensorboard(args.id, logdir)
        print(f"saved {target} (view it: tensorboard --logdir {logdir})")
        return 0
    target = client.export(args.id, args.output or f"{args.id}-{args.checkpoint}.onnx", checkpoint=args.checkpoint)
    print(f"saved {target} (ONNX: input 'input' raw float32, output 'output'; class names in its metadata)")
    return 0


def cmd_mlflow_export(client: Client, args) -> int:
    if not args.tracking_uri:
        raise ValueError("say where MLflow is: --tracking-uri URI (or set MLFLOW_TRACKING_URI)")
    try:
        run_ids = client.to_mlflow(args.ids, tracking_uri=args.tracking_uri, experiment=args.experiment)
    except ImportError as exc:  # the optional extra is missing: one line saying what to install
        raise ValueError(str(exc)) from None
    for job_id, run_id in zip(args.ids, run_ids):
        print(f"job {job_id}: MLflow run {run_id} in experiment '{args.experiment}'")
    return 0


def register(command, formatter) -> None:  # see netfit.cli.build_parser
    sub = command("predict", "predict with a trained job's model: CSV rows (out: the same rows + prediction + "
                             "per-class probabilities) or NPZ images (array 'x')", cmd_predict)
    sub.add_argument("id")
    sub.add_argument("file", help="rows.csv (a header row; non-numeric columns are not sent) or images.npz")
    sub.add_argument("-o", "--output", help="CSV file to write (default: standard output)")
    sub.add_argument("--checkpoint", choices=["best", "last"], default="best")
    sub.add_argument("--drop", action="append", default=[], metavar="COLUMN",
                     help="a numeric CSV column not to send (e.g. an integer label); repeatable")

    sub = command("export", "save a job's model as ONNX (its preprocessing inside), or its curves as a "
                            "TensorBoard run", cmd_export)
    sub.add_argument("id")
    sub.add_argument("--format", choices=["onnx", "tensorboard"], default="onnx")
    sub.add_argument("-o", "--output", help="onnx: the file to write (default <id>-<checkpoint>.onnx); tensorboard: "
                                            "the log folder, the run goes in its <job name or id>/ (default runs)")
    sub.add_argument("--checkpoint", choices=["best", "last"], default="best")

    sub = command("mlflow-export", "log jobs as MLflow runs: the spec as params, every epoch's metrics, tags, "
                                   "the ONNX model (needs pip install 'netfit[mlflow]')", cmd_mlflow_export)
    sub.add_argument("ids", nargs="+", metavar="ID")
    sub.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                     help="the MLflow tracking server, e.g. http://127.0.0.1:5000 (default: $MLFLOW_TRACKING_URI)")
    sub.add_argument("--experiment", default="netfit", help="the experiment the runs go in (made if missing; "
                                                            "default: netfit)")
