"""Migration 0004 adds the per-layer statistics to the epoch rows; epochs recorded before it stay,
without statistics, and a downgrade takes only the column away."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from db import jobs
from db.migrate import config, upgrade
from db.session import make_engine, make_session_factory
from tests.conftest import iris_spec
from tests.db.conftest import insert_old_job


def test_0004_downgrades_and_upgrades_a_database_with_epochs(db_url):
    command.downgrade(config(db_url), "0003")
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert "layers" not in {c["name"] for c in inspect(conn).get_columns("epoch_metrics")}
    with engine.begin() as conn:
        job_id = insert_old_job(conn, "team-a", iris_spec())
        conn.execute(text("INSERT INTO epoch_metrics (job_id, epoch, train_loss) VALUES (:id, 1, 0.5)"), {"id": job_id})
    upgrade(db_url)
    with make_session_factory(engine)() as session:
        assert [row.train_loss for row in jobs.list_metrics(session, "team-a", job_id)] == [0.5]
        assert jobs.layer_rows(session, "team-a", job_id) == []  # an old epoch measured nothing
    command.downgrade(config(db_url), "0003")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM epoch_metrics")).scalar() == 1
    upgrade(db_url)
    engine.dispose()
