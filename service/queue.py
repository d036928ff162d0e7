"""The queue: the Celery app, enqueue and routing. No torch here — the API imports this
module to enqueue; the worker to consume.

The broker is settings.broker_url: redis://… in the stack; by default a file broker under
./.netfit/broker that needs no server (embedded mode); "filesystem://PATH" picks its folder.
The process's app (`celery_app()`, also `service.queue.app` for `celery -A service.queue`)
is built on first use, not at import: importing this module touches no broker and makes no
folder. The API builds its own from its injected settings (`create_celery`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery, signals
from kombu import Queue

from service import logs
from service.file_broker import Transport as FileTransport
from service.settings import Settings, get_settings

# the name queued messages carry: it stays what it was when the task lived in worker.tasks
TRAIN_TASK = "worker.tasks.train_job"
QUEUES = ("cpu", "gpu")  # training
DEFAULT_BROKER = "filesystem://.netfit/broker"
FILE_BROKER = "filesystem://localhost"  # what Celery is given for the file broker (its folders go in the options)


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
    # a host name the file transport ignores: without one kombu warns "No hostname was supplied"
    return FILE_BROKER, {
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
        # the file broker writes each message whole (service.file_broker says why)
        broker_transport=FileTransport if url == FILE_BROKER else None,
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


_app: Celery | None = None


def celery_app() -> Celery:
    """This process's app, from its settings, made on first use (the worker's tasks register
    on it; enqueue and ping use it when given none)."""
    global _app
    if _app is None:
        _app = create_celery()
    return _app


def __getattr__(name: str) -> Any:
    if name == "app":  # `from service.queue import app`, `celery -A service.queue`
        return celery_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def queue_for(device: str, settings: Settings | None = None) -> str:
    """Where a job runs: cuda* -> gpu, cpu -> cpu, auto -> settings.default_queue
    (NETFIT_DEFAULT_QUEUE, default cpu)."""
    if device.startswith("cuda"):
        return "gpu"
    if device == "cpu":
        return "cpu"
    return (settings or get_settings()).default_queue


def enqueue(job_id: str, queue: str, celery: Celery | None = None) -> None:
    """Send the job's id (only the id: the worker re-reads the row) to its queue."""
    # the headers carry the creating request's id, so the worker's log lines name it
    (celery or celery_app()).send_task(TRAIN_TASK, args=[job_id], queue=queue, routing_key=queue,
                                       headers=logs.message_headers())


def ping(celery: Celery | None = None, timeout: float = 2.0) -> None:
    """Raise if the broker cannot be reached within about `timeout` seconds."""
    with (celery or celery_app()).connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)


# A worker's logging: Celery's own set-up is replaced by service.logs', and each training task
# runs with its job's id and its creating request's id on every line.
@signals.setup_logging.connect
def _celery_logging(**_: Any) -> None:
    logs.configure_logging()


@signals.task_prerun.connect
def _task_context(task: Any = None, args: Any = None, **_: Any) -> None:
    if task is None or task.name != TRAIN_TASK or not args:
        return
    headers = getattr(task.request, "headers", None) or {}
    rid = getattr(task.request, logs.REQUEST_HEADER, None) or headers.get(logs.REQUEST_HEADER)
    # a re-send by the reconciler carries no request id: "-" rather than a stale one
    logs.request_id.set(rid if isinstance(rid, str) else None)
    logs.job_id.set(str(args[0]))


@signals.task_postrun.connect
def _task_done(**_: Any) -> None:
    logs.request_id.set(None)
    logs.job_id.set(None)
