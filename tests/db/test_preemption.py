"""Which running job makes way for a queued one (db.preemption), on SQLite and PostgreSQL: the
lowest priority, the youngest attempt among equals, only when no worker is free, never for equal
priority nor a young attempt, one request per queued job; the worker reads the request with its
lease and the release records it. Migration 0006 keeps the jobs and their epochs both ways."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from db import attempts, jobs, preemption
from db import workers as db_workers
from db.models import Job, JobEvent, utcnow
from tests.conftest import iris_spec

AFTER = 60.0


def _job(session, priority: int = 0) -> str:
    return jobs.create_job(session, tenant="default", spec=iris_spec() | {"priority": priority}, summary=None,
                           queue="cpu").id


def _running(session, priority: int, age: float) -> tuple[str, int]:
    """A job claimed by a worker of its own, `age` seconds ago: (id, attempt)."""
    job_id = _job(session, priority)
    owner = f"host:{job_id}"
    db_workers.register(session, owner=owner, host="host", pid=1, queues=["cpu"], device="cpu")
    attempt = attempts.claim(session, [job_id], owner, lease_seconds=60, max_attempts=3)[job_id]
    session.execute(update(Job).where(Job.id == job_id).values(attempt_started_at=utcnow() - timedelta(seconds=age)))
    session.commit()
    return job_id, attempt


def _pass(session) -> list[tuple[str, str]]:
    return preemption.preempt(session, after_seconds=AFTER, stale_after=30)


def test_the_lowest_priority_then_the_youngest_attempt_makes_way_one_per_queued_job(session_factory):
    with session_factory() as s:
        mid, _ = _running(s, priority=5, age=600)
        low_old, _ = _running(s, priority=0, age=600)
        low_young, _ = _running(s, priority=0, age=120)
        assert _pass(s) == []  # nothing waits
        urgent = _job(s, priority=10)
        assert _pass(s) == [(low_young, urgent)]
        assert _pass(s) == []  # its request is on its way: no second victim for it
        second = _job(s, priority=3)  # outranks the other priority-0 job, not the priority-5 one
        third = _job(s, priority=3)
        assert _pass(s) == [(low_old, second)]
        assert _pass(s) == []  # `third` outranks nobody left (mid is 5)
        assert s.scalar(select(Job.preempt_requested_by).where(Job.id == mid)) is None
        assert third


def test_nothing_thrashes_equal_priority_a_young_attempt_or_a_free_worker(session_factory):
    with session_factory() as s:
        old, _ = _running(s, priority=0, age=600)
        _job(s, priority=0)
        assert _pass(s) == []  # equal priority never preempts
        young, _ = _running(s, priority=-5, age=AFTER - 10)
        assert _pass(s) == []
        urgent = _job(s, priority=10)
        # the young attempt is spared though its priority is the lowest
        assert _pass(s) == [(old, urgent)]
        assert s.scalar(select(Job.preempt_requested_by).where(Job.id == young)) is None


def test_a_free_worker_means_no_preemption(session_factory):
    with session_factory() as s:
        _running(s, priority=0, age=600)
        db_workers.register(s, owner="host:idle", host="host", pid=2, queues=["cpu"], device="cpu")
        _job(s, priority=10)
        assert _pass(s) == []  # the idle worker takes it


def test_the_worker_reads_the_request_with_its_lease_and_the_release_records_it(session_factory):
    with session_factory() as s:
        victim, attempt = _running(s, priority=0, age=600)
        urgent = _job(s, priority=10)
        assert _pass(s) == [(victim, urgent)]
        asked: dict[str, str] = {}
        assert attempts.heartbeat(s, {victim: attempt}, lease_seconds=60, preempted=asked) == (set(), set())
        assert asked == {victim: urgent}
        attempts.release(s, victim, attempt, preempted_by=urgent, after_epoch=7)
        row = s.get(Job, victim)
        s.refresh(row)
        assert (row.status, row.preempt_requested_by, row.preemptions, row.releases) == ("queued", None, 1, 1)
        events = [(e.kind, e.data) for e in s.scalars(select(JobEvent).where(JobEvent.job_id == victim)
                                                      .order_by(JobEvent.id))]
        assert ("preempted", {"by": urgent, "by_priority": 10, "after_epoch": 7, "attempt": attempt}) in events
        # its next attempt is not asked to make way any more
        assert attempts.claim(s, [victim], "host:other", lease_seconds=60, max_attempts=3) == {victim: attempt + 1}
        assert s.scalar(select(Job.preempt_requested_by).where(Job.id == victim)) is None


def test_a_job_preempted_for_another_teams_job_is_not_told_its_id(session_factory):
    with session_factory() as s:
        victim, attempt = _running(s, priority=0, age=600)
        theirs = jobs.create_job(s, tenant="team-b", spec=iris_spec() | {"priority": 5}, summary=None, queue="cpu").id
        assert _pass(s) == [(victim, theirs)]
        attempts.release(s, victim, attempt, preempted_by=theirs, after_epoch=3)
        [data] = s.scalars(select(JobEvent.data).where(JobEvent.job_id == victim, JobEvent.kind == "preempted"))
        assert data == {"by": None, "by_priority": 5, "after_epoch": 3, "attempt": attempt}


def test_a_request_whose_queued_job_was_taken_meanwhile_is_dropped(session_factory):
    with session_factory() as s:
        victim, attempt = _running(s, priority=0, age=600)
        urgent = _job(s, priority=10)
        assert _pass(s) == [(victim, urgent)]
        # another worker freed up and claimed it first: the victim trains on
        attempts.claim(s, [urgent], "host:free", lease_seconds=60, max_attempts=3)
        asked: dict[str, str] = {}
        attempts.heartbeat(s, {victim: attempt}, lease_seconds=None, preempted=asked)
        assert asked == {}
        assert _pass(s) == []
        assert s.scalar(select(Job.preempt_requested_by).where(Job.id == victim)) is None


def test_0006_downgrades_and_upgrades_a_database_with_epochs(db_url):
    from alembic import command
    from sqlalchemy import inspect, text

    from db.migrate import config, upgrade
    from db.session import make_engine, make_session_factory

    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        job_id = _job(s)
        s.execute(text("INSERT INTO epoch_metrics (job_id, epoch, train_loss) VALUES (:id, 1, 0.5)"), {"id": job_id})
        s.commit()
    command.downgrade(config(db_url), "0005")
    with engine.connect() as conn:
        assert "preempt_requested_by" not in {c["name"] for c in inspect(conn).get_columns("jobs")}
        # dropped in place: the jobs table was not copied (a copy's drop cascaded to the epochs)
        assert conn.execute(text("SELECT count(*) FROM epoch_metrics")).scalar() == 1
    upgrade(db_url)
    with make_session_factory(engine)() as s:
        row = s.get(Job, job_id)
        assert (row.preemptions, row.preempt_requested_by, row.attempt_started_at) == (0, None, None)
        assert jobs.list_metrics(s, "default", job_id)[0].train_loss == 0.5
    engine.dispose()
