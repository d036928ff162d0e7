"""The Celery app: broker settings and routing only. No torch here — the API imports this
module to enqueue.

The broker is settings.broker_url: redis://… in the stack; by default a file broker under
./.netfit/broker that needs no server (embedded mode); "filesystem://PATH" picks its folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Queue

from worker import logs  # connects the logging signals (job and request ids on each line)

from api.settings import get_settings

TRAIN_TASK = "worker.tasks.train_job"
QUEUES = ("cpu", "gpu")  # training
DEFAULT_BROKER = "filesystem://.netfit/broker"


def broker_settings(url: str | None = None) -> tuple[str, dict[str, Any]]:
    """(broker URL for Celery, transport options). The file broker's folder is made absolute
    so the API and the worker agree whatever their working directory."""
    url = url or get_settings().broker_url or DEFAULT_BROKER
    if not url.startswith("filesystem://"):
        # a Redis-delivered task is re-sent if not acked within the visibility timeout; our
        # claim makes the duplicate a no-op, so the default hour is fine and is set explicitly
        return url, {"visibility_timeout": 3600}
    folder = Path(url.removeprefix("filesystem://") or ".netfit/broker").resolve()
    for sub in ("queue", "processed", "control"):  # control: kombu's broadcast folder
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return "filesystem://", {
        # one folder for in and out: producers and consumers share it
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        # consumers take a message by renaming it into processed/: a rename on one file
        # system is atomic, so two workers never both get it (the default, /tmp, may be
        # another file system where the move is a copy)
        "store_processed": True,
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        # how often an idle worker looks for a message: bounds POST -> running latency
        "polling_interval": 0.05,
    }


def create_celery(broker_url: str | None = None) -> Celery:
    url, transport_options = broker_settings(broker_url)
    app = Celery("netfit", broker=url, include=[])
    app.conf.update(
        broker_transport_options=transport_options,
        # the file broker writes each message whole (worker.file_broker says why)
        broker_transport="worker.file_broker:Transport" if url == "filesystem://" else None,
        # ack after the task ran, not when received: a worker killed mid-job leaves the
        # message to be delivered again (the DB claim decides whether there is work left)
        task_acks_late=True,
        # ...and if the executing process dies, requeue the message instead of acking it
        task_reject_on_worker_lost=True,
        # take one message at a time: a long training job must not hold others hostage
        worker_prefetch_multiplier=1,
        # results and status live in our database, not in a Celery result backend
        task_ignore_result=True,
        result_backend=None,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="cpu",
        task_serializer="json",
        accept_content=["json"],
        # a broker that is down at start-up: keep retrying instead of exiting
        broker_connection_retry_on_startup=True,
        # a publish to a dead broker fails fast (the API answers; the reconciler re-sends)
        broker_connection_timeout=2,
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
        # keep training when the broker connection drops; the DB lease decides ownership
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # no events/gossip/mingle chatter: fewer broker round-trips, faster start
        worker_send_task_events=False,
    )
    return app


app = create_celery()


def queue_for(device: str) -> str:
    """Where a job runs: cuda* -> gpu, cpu -> cpu, auto -> NETFIT_DEFAULT_QUEUE (default cpu)."""
    if device.startswith("cuda"):
        return "gpu"
    if device == "cpu":
        return "cpu"
    return get_settings().default_queue


def enqueue(job_id: str, queue: str, celery: Celery | None = None) -> None:
    """Send the job's id (only the id: the worker re-reads the row) to its queue."""
    # the headers carry the creating request's id, so the worker's log lines name it
    (celery or app).send_task(TRAIN_TASK, args=[job_id], queue=queue, routing_key=queue,
                              headers=logs.message_headers())


def ping(celery: Celery | None = None, timeout: float = 2.0) -> None:
    """Raise if the broker cannot be reached within about `timeout` seconds."""
    with (celery or app).connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
