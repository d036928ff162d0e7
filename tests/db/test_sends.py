"""When a job's message was last sent (db.sending): stamping a re-send must not hide the job
from a claim. PostgreSQL's pick skips locked job rows (SKIP LOCKED); a stamp that locked the
row made a concurrent claim pass a priority job over for a lower one."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import jobs
from db.models import utcnow
from db.sending import mark_enqueued, mark_unsent
from db.session import make_engine, make_session_factory
from service.settings import get_settings
from tests.conftest import iris_spec
from worker import claims


def _queue(session: Session, priority: int) -> str:
    return jobs.create_job(session, tenant="default", spec=iris_spec() | {"priority": priority}, summary=None,
                           queue="cpu").id


@pytest.mark.parametrize("writer", ["reconciler", "reconciler_first_send", "wake"])
def test_a_job_whose_send_is_being_stamped_is_still_claimed(pg_url, writer):
    """A reconciler (or a worker's wake) stamps the re-send of queued priority job A and has not
    committed yet; meanwhile a worker claims A's message: it takes A, not the lower job C."""
    # a claim that waited on a lock fails instead of hanging the test
    engine = make_engine(pg_url, connect_args={"options": "-c lock_timeout=5s"})
    factory = make_session_factory(engine)
    with factory() as s:
        low = _queue(s, priority=0)
        urgent = _queue(s, priority=10)
        if writer == "reconciler_first_send":
            mark_unsent(s, urgent)  # its creator's send failed: the reconciler's stamp is its first
    with engine.connect() as held:
        outer = held.begin()
        # the writer's own commits only release savepoints: its locks stay until `outer` ends
        stamping = sessionmaker(bind=held, join_transaction_mode="create_savepoint", expire_on_commit=False)
        if writer == "wake":
            sent: list[str] = []
            assert claims.wake(stamping, urgent, lambda job_id, _queue: sent.append(job_id)) and sent == [urgent]
        else:
            with stamping() as s:
                mark_enqueued(s, urgent, utcnow())  # what reconcile_once's send does after the send
        with factory() as worker:
            taken = claims.claim(worker, urgent, owner="w:1", settings=get_settings())
        outer.rollback()
    engine.dispose()
    assert taken == (urgent, 1), f"the claim took {'the lower job' if taken and taken[0] == low else taken}"


def test_a_send_is_stamped_cleared_and_found_stale_on_either_backend(session_factory):
    """The stamp's life: set at creation, moved by a re-send (an upsert, also for a job with no
    stamp), cleared by a failed send or a hand-back; the reconciler re-sends what is unstamped
    or stamped before requeue_seconds."""
    from datetime import timedelta

    from db import expiry
    from db.attempts import release
    from db.models import JobSend
    from tests.worker_writes import claim

    hour_ago = utcnow() - timedelta(hours=1)
    with session_factory() as s:
        fresh, old, unsent, released = (_queue(s, priority=0) for _ in range(4))
        mark_enqueued(s, old, hour_ago)
        mark_unsent(s, unsent)
        attempt = claim(s, released, "w:1", lease_seconds=30, max_attempts=3)
        release(s, released, attempt)
        assert s.get(JobSend, fresh) is not None and s.get(JobSend, unsent) is None
        assert s.get(JobSend, released) is None  # its releaser sends it next, else the reconciler
        assert {j for j, _ in expiry.stale_queued(s, not_sent_since=utcnow() - timedelta(minutes=1))} == {
            old, unsent, released}
        mark_enqueued(s, unsent)  # a first stamp is an insert
        mark_enqueued(s, old)  # a later one moves it
        assert [j for j, _ in expiry.stale_queued(s, not_sent_since=utcnow() - timedelta(minutes=1))] == [released]
        assert s.get(JobSend, old).sent_at > hour_ago
        mark_enqueued(s, "no-such-job")  # stamps nothing, as an UPDATE of no row did


def test_deleting_a_job_deletes_its_stamp(session_factory):
    """retention's delete removes the stamp with the job; a plain DELETE of the job (a process
    from before job_sends) cascades to it."""
    from sqlalchemy import delete, func, select

    from db import retention
    from db.models import Job, JobSend

    with session_factory() as s:
        deleted, plain = _queue(s, priority=0), _queue(s, priority=0)
        for job_id in (deleted, plain):
            jobs.request_cancel(s, "default", job_id)
        assert retention.delete_job(s, "default", deleted)
        s.execute(delete(Job).where(Job.id == plain))
        s.commit()
        assert s.scalar(select(func.count()).select_from(JobSend)) == 0


def test_0009_moves_the_send_stamps_to_job_sends_and_back(db_url):
    """A job sent before 0009 keeps its stamp (a never-sent one has none) and the reconciler
    reads it there; a downgrade writes the stamps back to jobs.enqueued_at."""
    from datetime import timedelta

    from alembic import command
    from sqlalchemy import select, update

    from db import expiry
    from db.migrate import config, upgrade
    from db.models import Job, JobSend
    from tests.db.conftest import insert_old_job

    command.downgrade(config(db_url), "0008")
    engine = make_engine(db_url)
    sent = utcnow().replace(microsecond=0) - timedelta(hours=1)
    with engine.begin() as conn:
        stamped, never = insert_old_job(conn, "default", iris_spec()), insert_old_job(conn, "default", iris_spec())
        conn.execute(update(Job.__table__).where(Job.__table__.c.id == stamped).values(enqueued_at=sent))
    upgrade(db_url)
    factory = make_session_factory(engine)
    with factory() as s:
        assert s.execute(select(JobSend.job_id, JobSend.sent_at)).all() == [(stamped, sent)]
        assert {j for j, _ in expiry.stale_queued(s, not_sent_since=sent - timedelta(minutes=1))} == {never}
        mark_enqueued(s, never, sent + timedelta(minutes=5))
    command.downgrade(config(db_url), "0008")
    with engine.connect() as conn:
        table = Job.__table__
        assert dict(conn.execute(select(table.c.id, table.c.enqueued_at)).all()) == {
            stamped: sent, never: sent + timedelta(minutes=5)}
    upgrade(db_url)
    engine.dispose()
