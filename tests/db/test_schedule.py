"""The scheduler's policy (db.schedule) on SQLite and PostgreSQL: what a free worker's claim
takes from a queue, in order: priority, then a resumed job, then fair share by weight and
max_running, then age."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from db import attempts, jobs, schedule
from db import tenants as db_tenants
from db.models import Job, utcnow
from tests.conftest import iris_spec


def _queue(session, tenant: str, priority: int = 0, age: int = 0) -> str:
    job = jobs.create_job(session, tenant=tenant, spec=iris_spec() | {"priority": priority}, summary=None, queue="cpu")
    session.execute(update(Job).where(Job.id == job.id).values(created_at=utcnow() - timedelta(seconds=100 - age)))
    session.commit()
    return job.id


def _take(session, hint: str) -> str | None:
    """A worker's claim on a message about `hint`, as worker.runner makes it."""
    chosen = schedule.pick_for(session, hint, attempts.claimable(utcnow(), 3))
    if chosen is None:
        session.rollback()
        return None
    assert attempts.claim(session, [chosen], "test:1", lease_seconds=30, max_attempts=3)
    return chosen


def test_the_claim_takes_priority_then_resumed_then_fair_share_then_age(session_factory):
    with session_factory() as s:
        a_old, a_new = _queue(s, "a", age=0), _queue(s, "a", age=1)
        b_old = _queue(s, "b", age=-1)  # the oldest fresh job
        urgent = _queue(s, "b", priority=5, age=3)
        low = _queue(s, "a", priority=-5, age=4)
        # a message about any claimable job (here the lowest's) takes the policy's pick: the highest priority first
        assert _take(s, low) == urgent
        # tenant b runs one job, a none: a's oldest next, though b's is older
        assert _take(s, low) == a_old
        # a and b run one each (equal weights): the oldest, b's
        assert _take(s, low) == b_old
        # a resumed job (it had an attempt) goes before fresh ones of its priority
        s.execute(update(Job).where(Job.id.in_([urgent, a_old])).values(status="queued", attempts=1, releases=1))
        s.commit()
        assert _take(s, low) == urgent
        assert _take(s, low) == a_old
        assert _take(s, low) == a_new
        assert _take(s, a_new) is None  # a message whose job is not claimable takes nothing, as a duplicate
        assert _take(s, low) == low


def test_weights_and_max_running_decide_between_tenants(session_factory):
    with session_factory() as s:
        db_tenants.set_tenant(s, "heavy", weight=2)
        db_tenants.set_tenant(s, "capped", max_running=1)
        heavy = [_queue(s, "heavy", age=i) for i in range(4)]
        light = [_queue(s, "light", age=10 + i) for i in range(4)]
        capped = [_queue(s, "capped", age=-10 + i) for i in range(2)]  # the oldest of all
        taken = [_take(s, heavy[-1]) for _ in range(7)]
        owner = {j: t for t, ids in (("heavy", heavy), ("light", light), ("capped", capped)) for j in ids}
        order = [owner[j] for j in taken]
        # capped runs one job at most; heavy (weight 2) gets twice light's workers while both wait
        assert order.count("capped") == 1 and capped[1] not in taken
        assert order.count("heavy") == 4 and order.count("light") == 2, order
        waiting = schedule.waiting(s, s.get(Job, capped[1]), stale_after=30)
        assert waiting["reason"] in ("no_worker", "max_running")


def test_a_job_whose_event_is_being_written_is_still_claimed(pg_url):
    """PostgreSQL: the API writes a queued job's `waiting` event just after sending its message;
    that insert's key-share lock on the job row must not hide the job from the claim's SKIP LOCKED."""
    from db.models import JobEvent
    from db.session import make_session_factory

    factory = make_session_factory(pg_url)
    with factory() as api, factory() as worker:
        job_id = _queue(api, "a")
        api.add(JobEvent(job_id=job_id, kind="waiting", data={}))
        api.flush()  # inserted, not committed: the row lock is held
        assert _take(worker, job_id) == job_id
        api.rollback()
    factory.kw["bind"].dispose()


def test_tenants_of_equal_share_take_turns_when_each_job_ends_before_the_next_pick(session_factory):
    """One worker, short jobs: at every pick neither tenant runs anything, so the share ties.
    a queued all its jobs first; the starts still alternate (first come, first served would
    give a all of its jobs before b's first)."""
    with session_factory() as s:
        a = [_queue(s, "a", age=i) for i in range(3)]
        b = [_queue(s, "b", age=10 + i) for i in range(3)]
        owner = {j: t for t, ids in (("a", a), ("b", b)) for j in ids}
        order: list[str] = []
        for _ in range(6):
            job = _take(s, next(j for j in a + b if j not in order))  # a message about any queued job
            order.append(job)
            s.execute(update(Job).where(Job.id == job).values(status="succeeded", lease_owner=None))
            s.commit()
        assert [owner[j] for j in order] == ["a", "b", "a", "b", "a", "b"]
        assert [j for j in order if owner[j] == "a"] == a  # within a tenant, oldest first
