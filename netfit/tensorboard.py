"""A job as a TensorBoard run: its event file (every epoch's metrics, the learning rate,
per-layer statistics, the test metrics and the spec as text), and the folder of a log
directory it goes in.

The file is written with tensorboardX (pure Python on numpy and protobuf, which the server
already has); TensorBoard itself, with its grpcio and data server, is needed only to view it.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from netfit.models import EpochLayerStats, EpochMetrics, Job

EVENT_FILE = re.compile(r"^events\.out\.tfevents\.\d+\.netfit\.([A-Za-z0-9_-]+)$")
LAYER_STATS = ("weight_max_abs", "weight_norm", "grad_norm")


def file_name(job: Job) -> str:
    """events.out.tfevents.<created, epoch s>.netfit.<job id>: TensorBoard reads files named so."""
    return f"events.out.tfevents.{int(job.created_at.timestamp())}.netfit.{job.id}"


def scalar_tag(metric: str) -> str:
    """train_loss -> loss/train (train and validation side by side in one section), lr -> learning_rate."""
    split, _, name = metric.partition("_")
    if split in ("train", "val", "test") and name:
        return f"{name}/{split}"
    return {"lr": "learning_rate", "seconds": "epoch_seconds"}.get(metric, metric)


def event_file(job: Job, metrics: list[EpochMetrics], layers: list[EpochLayerStats]) -> bytes:
    """The job's event file; step = epoch, wall time = the job's start + the epochs' seconds."""
    from tensorboardX import SummaryWriter

    start = (job.started_at or job.created_at).timestamp()
    elapsed, wall = 0.0, {}
    for row in metrics:
        elapsed += row.seconds or 0.0
        wall[row.epoch] = start + elapsed
    with tempfile.TemporaryDirectory(prefix="netfit-tb-") as folder:
        writer = SummaryWriter(logdir=folder, flush_secs=3600)
        writer.add_text("spec", "```json\n" + json.dumps(job.spec, indent=2) + "\n```", 0, walltime=start)
        for row in metrics:
            for name, value in row.model_dump(exclude={"epoch"}).items():
                if value is not None:
                    writer.add_scalar(scalar_tag(name), value, row.epoch, walltime=wall[row.epoch])
        for row in layers:
            for layer in row.layers:
                for stat in LAYER_STATS:
                    value = getattr(layer, stat)
                    if value is not None:
                        writer.add_scalar(f"layers/{layer.index}_{layer.type}/{stat}", value, row.epoch,
                                          walltime=wall.get(row.epoch, start))
        last = metrics[-1].epoch if metrics else 0
        for name, value in (job.test_metrics or {}).items():
            if value is not None:
                writer.add_scalar(scalar_tag(name), value, last, walltime=wall.get(last, start))
        writer.close()
        (path,) = Path(folder).rglob("events.out.tfevents.*")
        return path.read_bytes()


def run_folder(logdir: Path, job: Job) -> Path:
    """logdir/<job name> (its id if unnamed): one TensorBoard run per job. A name that another
    job's file already holds gets the id added, so that two runs are not merged into one."""
    base = re.sub(r"[^A-Za-z0-9_.=-]+", "_", job.name).strip("._") if job.name else ""
    folder = logdir / (base or job.id)
    others = [m.group(1) for f in (folder.iterdir() if folder.is_dir() else ()) if (m := EVENT_FILE.match(f.name))]
    return logdir / f"{base}-{job.id}" if base and any(o != job.id for o in others) else folder


def write_run(logdir: str | Path, job: Job, content: bytes) -> Path:
    """Write an event file (from GET /v1/jobs/{id}/tensorboard) as the job's run in logdir."""
    folder = run_folder(Path(logdir), job)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file_name(job)
    target.write_bytes(content)
    return target

