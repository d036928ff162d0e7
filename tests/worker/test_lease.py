"""The lease of what a worker trains (worker.lease), on SQLite and PostgreSQL with its real thread:
a cancel is noticed by the lease alone (the training loop never reads the database), and an
attempt taken over by another is noticed and stops."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import event, update

from db import jobs
from db.models import Job, utcnow
from tests.conftest import iris_spec, wait_until
from tests.worker_writes import claim
from worker.lease import Lease
from worker.persist import Member


def started(session_factory, n: int = 1) -> tuple[dict[str, int], Lease]:
    attempts = {}
    for _ in range(n):
        with session_factory() as s:
            job_id = jobs.create_job(s, tenant="default", spec=iris_spec(), summary=None, queue="cpu").id
            attempts[job_id] = claim(s, job_id, "w1", lease_seconds=30)
    lease = Lease(session_factory, attempts)
    lease.start()
    return attempts, lease


def test_a_cancel_is_noticed_once_by_the_lease_and_the_loop_never_queries(session_factory):
    attempts, lease = started(session_factory)
    [(job_id, attempt)] = attempts.items()
    member = Member(job_id, attempt, "cpu", {}, lease)
    loop_thread, loop_queries = threading.get_ident(), []

    def count(*_: object) -> None:
        if threading.get_ident() == loop_thread:
            loop_queries.append(1)

    engine = session_factory.kw["bind"]
    try:
        assert not member.should_stop()
        with session_factory() as s:
            jobs.request_cancel(s, "default", job_id)
        event.listen(engine, "before_cursor_execute", count)
        # the engine asks after each epoch and every ~2 s inside one: the lease's next read answers
        wait_until(member.should_stop, timeout=10, interval=0.01, what="the cancel to be noticed")
        assert loop_queries == []  # the training thread asked, the lease thread read
        assert lease.leave(job_id) == (False, True)  # (lost, cancelled): it ends cancelled, not lost
    finally:
        event.remove(engine, "before_cursor_execute", count)
        lease.stop()


def test_a_member_taken_over_by_another_attempt_stops_and_the_others_go_on(session_factory):
    attempts, lease = started(session_factory, n=2)
    taken, kept = attempts
    try:
        with session_factory() as s:
            s.execute(update(Job).where(Job.id == taken).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
            s.commit()
            assert claim(s, taken, "w2") == 2
        wait_until(lambda: lease.should_stop(taken), timeout=10, interval=0.01, what="the lost member to stop")
        assert lease.is_lost(taken) and not lease.should_stop(kept)
        assert lease.leave(taken) == (True, False)
    finally:
        lease.stop()
