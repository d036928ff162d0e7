"""The shared cluster with real worker processes (PostgreSQL + Redis, the API in process):
workers appear, beat and disappear in /v1/workers; a sweep keeps only its best trials' weights;
two tenants of equal weight sharing the workers take turns; a higher priority goes first."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from db import tenants as db_tenants
from db.session import make_session_factory
from tests.api.conftest import bearer, make_client, new_key
from tests.conftest import iris_spec, service_env, wait_ready, wait_until

pytestmark = [pytest.mark.slow]


def _workers(client, key: str) -> list[dict[str, Any]]:
    return client.get("/v1/workers", headers=bearer(key)).json()["items"]


def _ready(client) -> dict:
    """/readyz's body once the API's own warm-up is done (on a loaded machine it can end after
    the workers are up; until then /readyz is a 503 that names the warm-up)."""
    return wait_until(lambda: (r := client.get("/readyz")).status_code == 200 and r.json(), what="/readyz")


def test_workers_appear_beat_show_their_jobs_to_their_tenant_only_and_disappear(pg_url, redis_url, start_worker):
    env = service_env(pg_url, redis_url)
    team_a, team_b = new_key(pg_url, "team-a"), new_key(pg_url, "team-b")
    workers = [start_worker(env, wait=False) for _ in range(2)]
    # the API's view of a lease as the workers' (service_env's short one)
    with make_client(pg_url, redis_url, lease_seconds=float(env["NETFIT_LEASE_SECONDS"])) as client:
        for worker in workers:
            wait_ready(worker)
        listed = wait_until(lambda: len(_workers(client, team_a)) == 2 and _workers(client, team_a),
                            what="both workers in /v1/workers")
        assert {w["pid"] for w in listed} == {w.pid for w in workers}
        assert all(w["queues"] == ["cpu"] and w["device"] == "cpu" and w["jobs"] == [] for w in listed)
        assert _ready(client)["workers"]["cpu"] == 2
        # a beat moves last_seen_at
        first_seen = {w["id"]: w["last_seen_at"] for w in listed}
        wait_until(lambda: all(w["last_seen_at"] > first_seen[w["id"]] for w in _workers(client, team_a)),
                   what="a beat")
        # what it trains: the job's id for its tenant, no id for another
        job = client.post("/v1/jobs", json=iris_spec(epochs=10_000), headers=bearer(team_a)).json()
        busy = wait_until(lambda: [w for w in _workers(client, team_a) if w["jobs"]], what="a worker training")
        assert busy[0]["jobs"][0]["id"] == job["id"]
        assert [w["jobs"] for w in _workers(client, team_b) if w["jobs"]][0][0]["id"] is None
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(team_a))
        wait_until(lambda: client.get(f"/v1/jobs/{job['id']}", headers=bearer(team_a)).json()["status"] == "cancelled",
                   what="the cancel")
        # SIGTERM: gone at once (it says so); kill -9: gone once it misses a lease of beats
        workers[0].stop()
        wait_until(lambda: [w["pid"] for w in _workers(client, team_a)] == [workers[1].pid], timeout=10,
                   what="the stopped worker to leave the list")
        workers[1].signal(signal.SIGKILL)
        wait_until(lambda: _workers(client, team_a) == [], timeout=15, what="the killed worker to leave the list")
        assert _ready(client)["workers"]["cpu"] == 0
        metrics = client.get("/metrics").text
        assert "netfit_workers_lost 1.0" in metrics, [line for line in metrics.splitlines() if "workers" in line]


def test_a_sweep_keeps_only_its_best_trials_weights(pg_url, redis_url, start_worker):
    env = service_env(pg_url, redis_url, NETFIT_RECONCILE_SECONDS="0.5", NETFIT_RETAIN_SECONDS="0.5")
    worker = start_worker(env, wait=False)
    with make_client(pg_url, redis_url) as client:
        sweep = client.post("/v1/sweeps", json={
            "spec": iris_spec(epochs=3), "parameters": {"model.layers.0.units": {"values": [2, 8, 32]}},
            "method": "grid", "max_concurrent": 3, "keep_best_trials": 1}).json()
        wait_ready(worker)
        wait_until(lambda: client.get(f"/v1/sweeps/{sweep['id']}").json()["status"] != "running", timeout=120,
                   what="the sweep to end")
        trials = client.get(f"/v1/sweeps/{sweep['id']}/trials").json()["items"]  # best first
        assert len(trials) == 3

        def codes() -> list[int]:
            return [client.get(f"/v1/jobs/{t['job_id']}/checkpoints/best").status_code for t in trials]

        wait_until(lambda: codes() == [200, 410, 410], timeout=30, what="retention of all but the best trial")
        gone = client.get(f"/v1/jobs/{trials[1]['job_id']}/checkpoints/last").json()
        assert "keep_best_trials" in gone["message"]


def test_two_tenants_of_equal_weight_sharing_the_workers_take_turns(pg_url, redis_url, start_worker):
    """team-a queues 6 jobs first, team-b 6 after; two workers: the starts alternate between the
    tenants instead of team-b waiting for all of team-a's (also when the short jobs seldom overlap,
    so that neither tenant runs anything at a pick: db.schedule's turns)."""
    env = service_env(pg_url, redis_url)
    keys = {t: new_key(pg_url, t) for t in ("team-a", "team-b")}
    factory = make_session_factory(pg_url)
    with factory() as session:  # equal weights, set as an operator would (the default is 1 too)
        for tenant in keys:
            db_tenants.set_tenant(session, tenant, weight=1)
    workers = [start_worker(env, wait=False) for _ in range(2)]
    with make_client(pg_url, redis_url) as client:
        ids = {t: [client.post("/v1/jobs", json=iris_spec(epochs=2), headers=bearer(k)).json()["id"]
                   for _ in range(6)] for t, k in keys.items()}
        for worker in workers:
            wait_ready(worker)

        def started() -> list[tuple[str, str]]:
            rows = [(client.get(f"/v1/jobs/{j}", headers=bearer(keys[t])).json(), t) for t in keys for j in ids[t]]
            return sorted((job["started_at"], t) for job, t in rows if job["started_at"])

        wait_until(lambda: len(started()) == 12, timeout=240, interval=0.5, what="every job to start")
    order = [t for _, t in started()]
    # fair share: within the first 6 starts each tenant had at least 2 (FIFO would give team-a all 6)
    assert min(order[:6].count(t) for t in keys) >= 2, order


def test_a_message_whose_worker_took_another_job_still_gets_its_job_run(pg_url, redis_url, start_worker):
    """A message only wakes a worker, which runs the policy's pick: here a job taken back from a
    lost worker (resumed first), whose own message is long gone. The woken message's job must
    still run, without waiting for the reconciler's re-send (set far beyond this test)."""
    from datetime import timedelta

    from sqlalchemy import update

    from db import jobs as db_jobs
    from db.models import Job, utcnow
    from db.sending import mark_enqueued
    from service.queue import create_celery, enqueue

    factory = make_session_factory(pg_url)
    with factory() as session:
        lost = db_jobs.create_job(session, tenant="default", spec=iris_spec(epochs=1), summary=None, queue="cpu").id
        fresh = db_jobs.create_job(session, tenant="default", spec=iris_spec(epochs=1), summary=None, queue="cpu").id
        # `lost`: running, its lease expired, stamped as sent after that (so the reconciler leaves it)
        session.execute(update(Job).where(Job.id == lost).values(
            status="running", attempts=1, lease_owner="gone:1", lease_expires_at=utcnow() - timedelta(seconds=60)))
        mark_enqueued(session, lost, utcnow())
    enqueue(fresh, "cpu", create_celery(redis_url))  # the only message
    start_worker(service_env(pg_url, redis_url, NETFIT_REQUEUE_SECONDS="3600"))
    with make_client(pg_url, redis_url) as client:
        status = lambda j: client.get(f"/v1/jobs/{j}").json()["status"]  # noqa: E731
        wait_until(lambda: status(lost) == "succeeded" and status(fresh) == "succeeded", timeout=120,
                   what="both jobs to run")
        first = client.get(f"/v1/jobs/{lost}").json()
        assert first["attempts"] == 2  # the lost job went first (resumed-first), then the message's own
    factory.kw["bind"].dispose()


def test_a_job_resumed_after_kill_9_starts_before_the_queues_fresh_jobs(pg_url, redis_url, start_worker):
    """One worker trains a long job while three fresh ones queue behind it; kill -9 of that worker,
    a new one starts: the lost job is taken back and resumes before any of the fresh jobs."""
    from tests.conftest import FAST

    env = service_env(pg_url, redis_url, **FAST)
    first = start_worker(env)
    with make_client(pg_url, redis_url) as client:
        def job(j: str) -> dict[str, Any]:
            return client.get(f"/v1/jobs/{j}").json()

        lost = client.post("/v1/jobs", json=iris_spec(epochs=60, batch_size=4)).json()["id"]
        wait_until(lambda: job(lost)["epochs_completed"] >= 2, timeout=60, what="the long job's second epoch")
        fresh = [client.post("/v1/jobs", json=iris_spec(epochs=2)).json()["id"] for _ in range(3)]
        first.signal(signal.SIGKILL)
        # the new worker starts once the lost job's lease has run out: its first message (a fresh
        # job's) then finds the lost job claimable, and the policy puts it first, though the fresh
        # jobs are made older than it (by age alone they would go first)
        from datetime import timedelta

        from sqlalchemy import select, update

        from db.models import Job, utcnow

        factory = make_session_factory(pg_url)
        with factory() as session:
            session.execute(update(Job).where(Job.id.in_(fresh)).values(created_at=utcnow() - timedelta(hours=1)))
            session.commit()
            wait_until(lambda: session.scalar(select(Job.lease_expires_at).where(Job.id == lost)) < utcnow(),
                       timeout=30, what="the killed worker's lease to run out")
        factory.kw["bind"].dispose()
        start_worker(env)
        wait_until(lambda: job(lost)["attempts"] == 2, timeout=90, what="the lost job to be taken back")
        done = wait_until(lambda: (j := job(lost))["status"] == "succeeded" and j, timeout=120,
                          what="the lost job to finish")
        starts = [job(j)["started_at"] for j in fresh]
        # fresh jobs only started once the resumed one finished: the one worker took it back first
        assert all(s is None or s > done["finished_at"] for s in starts), (done["finished_at"], starts)
        assert done["epochs_completed"] == 60
