"""What `GET /metrics` exposes, and how it stays right with any number of processes.

Job figures are read from the database at scrape time by `JobCollector` (a few aggregate
queries): workers are separate processes, often on other hosts, and the database already
holds every fact (statuses, timestamps, attempts, leases, epochs), so there is no
multiprocess directory to share and every API replica answers the same. HTTP figures are the
API process's own (`HttpMetrics`, a middleware), labelled by route template, never raw path.

Histograms of queue wait and job duration are *gauge histograms* over the jobs started or
finished in the last `window` seconds (default one hour): recomputed at each scrape from
an indexed range of rows, cheap, and honest about being a window rather than a counter.
Reconciler actions are what the rows imply: a re-claim after a lost attempt is a resume,
a graceful release is counted by `releases`, and a job failed with `worker_lost` is a
reconciler failure. A re-sent queued message leaves no trace in the row; not exposed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, inspect, literal_column, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import EpochMetric, Job, utcnow

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
DURATION_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def _buckets(values: Iterable[float], bounds: tuple[float, ...]) -> tuple[list[tuple[str, int]], float]:
    """Cumulative (le, count) pairs ending with +Inf, and the sum."""
    values = sorted(values)
    out, i = [], 0
    for bound in bounds:
        while i < len(values) and values[i] <= bound:
            i += 1
        out.append((str(float(bound)), i))
    out.append(("+Inf", len(values)))
    return out, float(sum(values))


class JobCollector(Collector):
    def __init__(self, session_factory: sessionmaker[Session], *, tenants: bool = False, window: float = 3600):
        self.session_factory, self.tenants, self.window = session_factory, tenants, window
        self._has_sweeps: bool | None = None

    def _sweeps_schema(self, session: Session) -> bool:
        # trials are jobs rows with a sweep_id (migration 0003); an older database has none
        if self._has_sweeps is None:
            columns = {c["name"] for c in inspect(session.get_bind()).get_columns("jobs")}
            self._has_sweeps = "sweep_id" in columns
        return self._has_sweeps

    def describe(self) -> list:
        return []  # collected at scrape time only (registering must not query the database)

    def collect(self) -> Iterable[Any]:
        with self.session_factory() as session:
            yield from self._collect(session)

    def _collect(self, session: Session) -> Iterable[Any]:
        now = utcnow()
        since = now - timedelta(seconds=self.window)
        labels = ["status", "queue", "tenant"] if self.tenants else ["status", "queue"]
        jobs = GaugeMetricFamily("netfit_jobs", "Jobs by status and queue", labels=labels)
        group = [Job.status, Job.queue] + ([Job.tenant] if self.tenants else [])
        seen = set()
        for *key, count in session.execute(select(*group, func.count()).group_by(*group)):
            jobs.add_metric([str(k) for k in key], count)
            seen.add(tuple(key[:2]))
        for status in STATUSES:  # a zero series rather than none, so alerts and rates see it
            for queue in ("cpu", "gpu"):
                if (status, queue) not in seen and not self.tenants:
                    jobs.add_metric([status, queue], 0)
        yield jobs

        waits = [(s - c).total_seconds() for c, s in session.execute(
            select(Job.created_at, Job.started_at).where(Job.started_at >= since))]
        hist, total = _buckets(waits, WAIT_BUCKETS)
        family = GaugeHistogramMetricFamily(
            "netfit_job_queue_wait_seconds",
            f"POST to first running, jobs started in the last {self.window:.0f} s")
        family.add_metric([], hist, gsum_value=total)
        yield family

        durations = [((f - s).total_seconds(), st) for s, f, st in session.execute(
            select(Job.started_at, Job.finished_at, Job.status)
            .where(Job.finished_at >= since, Job.started_at.is_not(None)))]
        family = GaugeHistogramMetricFamily(
            "netfit_job_duration_seconds",
            f"first running to finished, jobs finished in the last {self.window:.0f} s", labels=["status"])
        for status in ("succeeded", "failed", "cancelled"):
            hist, total = _buckets([d for d, st in durations if st == status], DURATION_BUCKETS)
            family.add_metric([status], hist, gsum_value=total)
        yield family

        epochs = session.scalar(select(func.coalesce(func.sum(Job.epochs_completed), 0)))
        yield CounterMetricFamily("netfit_epochs", "Epochs completed (each saved exactly once)", value=epochs)
        count, seconds = session.execute(
            select(func.count(EpochMetric.id), func.coalesce(func.sum(EpochMetric.seconds), 0.0))).one()
        yield CounterMetricFamily("netfit_epoch_seconds", "Seconds spent in saved epochs", value=float(seconds))
        yield CounterMetricFamily("netfit_epoch_records", "Epoch metric rows saved", value=count)

        resumed, released = session.execute(select(
            func.coalesce(func.sum(func.greatest(Job.attempts - Job.releases - 1, 0)), 0)
            if session.get_bind().dialect.name != "sqlite" else
            func.coalesce(func.sum(func.max(Job.attempts - Job.releases - 1, 0)), 0),
            func.coalesce(func.sum(Job.releases), 0))).one()
        lost = session.scalar(select(func.count()).select_from(Job).where(
            Job.status == "failed", Job.error.like("worker_lost%")))
        actions = CounterMetricFamily(
            "netfit_reconciler_actions", "What the reconciler did, as the job rows record it", labels=["action"])
        actions.add_metric(["resumed"], resumed)
        actions.add_metric(["failed"], lost)
        yield actions
        yield CounterMetricFamily("netfit_job_releases", "Jobs handed back by a stopping worker (SIGTERM) "
                                  "or preempted", value=released)
        preemptions = CounterMetricFamily("netfit_preemptions", "Jobs stopped at an epoch end to make way for a "
                                          "higher-priority queued job (resumed later, exactly)", labels=["queue"])
        for queue, n in session.execute(select(Job.queue, func.coalesce(func.sum(Job.preemptions), 0))
                                        .group_by(Job.queue)):
            preemptions.add_metric([queue], n)
        yield preemptions

        busy = session.scalar(select(func.count(func.distinct(Job.lease_owner))).where(
            Job.status == "running", Job.lease_expires_at > now))
        yield GaugeMetricFamily("netfit_workers_busy",
                                "Workers holding an unexpired lease (alive and training)", value=busy)
        expired = session.scalar(select(func.count()).select_from(Job).where(
            Job.status == "running", Job.lease_expires_at < now))
        yield GaugeMetricFamily("netfit_jobs_lease_expired",
                                "Running jobs whose worker stopped renewing its lease", value=expired)

        if self._sweeps_schema(session):
            trials = GaugeMetricFamily("netfit_sweep_trials", "Sweep trials by status", labels=["status"])
            col = literal_column("jobs.sweep_id")  # whether or not db.models maps it yet
            for status, count in session.execute(
                    select(Job.status, func.count()).select_from(Job).where(col.is_not(None)).group_by(Job.status)):
                trials.add_metric([status], count)
            yield trials
            pruned = session.scalar(select(func.count()).select_from(Job).where(
                col.is_not(None), Job.stop_reason == "pruned"))
            yield CounterMetricFamily("netfit_sweep_trials_pruned", "Trials stopped by the pruner", value=pruned)


def http_registry(exposed: CollectorRegistry) -> CollectorRegistry:
    """Where HttpMetrics registers. One process: the exposed registry. Several (`netfit api`
    with NETFIT_API_PROCESSES > 1 sets PROMETHEUS_MULTIPROC_DIR): each process writes its
    values to files there, and the exposed registry reads them all (MultiProcessCollector), so
    a scrape that any process answers sees every process's requests."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return exposed
    from prometheus_client import multiprocess

    multiprocess.MultiProcessCollector(exposed)
    return CollectorRegistry()  # this process's series, read from the files, not twice


class HttpMetrics:
    """ASGI middleware: requests and latency by method, route template and status."""

    def __init__(self, app: Any, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter("netfit_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=registry)
        self.latency = Histogram("netfit_http_request_duration_seconds", "Time to the response's first byte",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
        # each series' child, kept: labels() validates and locks on every call. Routes and
        # methods are few and statuses bounded, as the series themselves are.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [500]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                key = (scope["method"], _route(scope))
                timed = self._timed.get(key)
                if timed is None:
                    timed = self._timed[key] = self.latency.labels(*key)
                timed.observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            key = (scope["method"], _route(scope), status[0])
            counted = self._counted.get(key)
            if counted is None:
                counted = self._counted[key] = self.requests.labels(key[0], key[1], str(key[2]))
            counted.inc()


def _route(scope: dict[str, Any]) -> str:
    # the matched route's template (/v1/jobs/{job_id}); unmatched paths share one label, so
    # a scanner cannot blow up the series count
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class ClusterCollector(Collector):
    """The shared cluster, read from the database at scrape time: live workers, the queue's
    wait, workers lost, bytes kept (db.workers, db.retention)."""

    def __init__(self, session_factory: sessionmaker[Session], *, stale_after: float, tenants: bool = False):
        self.session_factory, self.stale_after, self.tenants = session_factory, stale_after, tenants

    def describe(self) -> list:
        return []

    def collect(self) -> Iterable[Any]:
        from db import retention, workers as db_workers

        with self.session_factory() as session:
            now = utcnow()
            alive = GaugeMetricFamily("netfit_workers_alive", "Live worker processes (beating) by queue and device",
                                      labels=["queue", "device"])
            counts: dict[tuple[str, str], int] = {}
            for w, _ in db_workers.live_workers(session, stale_after=self.stale_after):
                for queue in w.queues:
                    counts[(queue, w.device)] = counts.get((queue, w.device), 0) + 1
            for key, n in sorted(counts.items()):
                alive.add_metric(list(key), n)
            yield alive
            yield GaugeMetricFamily(
                "netfit_workers_lost", "Workers that stopped beating without stopping (killed, host lost), "
                                       "remembered for a week", value=db_workers.lost_count(session, stale_after=self.stale_after))
            waiting = GaugeMetricFamily("netfit_jobs_waiting", "Queued jobs by queue and priority",
                                        labels=["queue", "priority"])
            oldest = GaugeMetricFamily("netfit_oldest_queued_seconds", "Age of the oldest queued job, by queue",
                                       labels=["queue"])
            for queue, priority, n in session.execute(
                    select(Job.queue, Job.priority, func.count())
                    .where(Job.status == "queued").group_by(Job.queue, Job.priority)):
                waiting.add_metric([queue, str(priority)], n)
            for queue, first in session.execute(select(Job.queue, func.min(Job.created_at))
                                                .where(Job.status == "queued").group_by(Job.queue)):
                first = first if first.tzinfo else first.replace(tzinfo=now.tzinfo)
                oldest.add_metric([queue], max(0.0, (now - first).total_seconds()))
            yield waiting
            yield oldest
            stored = GaugeMetricFamily("netfit_stored_bytes", "Bytes of weights and resume states (checkpoints) "
                                       "and of uploaded data sets", labels=["kind", "tenant"] if self.tenants else ["kind"])
            totals: dict[str, int] = {"checkpoints": 0, "datasets": 0}
            for tenant, sizes in retention.usage_by_tenant(session).items():
                for kind, size in sizes.items():
                    if self.tenants:
                        stored.add_metric([kind, tenant], size)
                    totals[kind] += size
            if not self.tenants:
                for kind, size in totals.items():
                    stored.add_metric([kind], size)
            yield stored
