"""The hand-written Alembic revision creates exactly the tables the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from db.migrate import upgrade
from db.models import Base
from db.session import make_engine
from tests.db.conftest import insert_old_job


def test_migration_matches_models_and_is_idempotent(db_url):
    upgrade(db_url)  # a second run at start-up changes nothing
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
        assert set(inspect(conn).get_table_names()) >= {"jobs", "epoch_metrics", "job_events", "checkpoints", "datasets",
                                                         "api_keys"}
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_0002_downgrades_and_upgrades_a_database_with_jobs(db_url):
    """A database from before API keys (0001, reached by downgrading): 0002 adds the table and
    the index, and the jobs stay."""
    from alembic import command

    from db import jobs, keys
    from db.migrate import config
    from db.session import make_session_factory
    from tests.conftest import iris_spec

    command.downgrade(config(db_url), "0001")
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert "api_keys" not in inspect(conn).get_table_names()
    factory = make_session_factory(engine)
    with engine.begin() as conn:
        job_id = insert_old_job(conn, "team-a", iris_spec())
    upgrade(db_url)
    with factory() as session:
        assert jobs.count_active(session, "team-a") == 1 and jobs.get_job(session, "team-a", job_id)
        _, key = keys.create_key(session, tenant="team-a")
        assert keys.tenant_for(session, key) == "team-a"
    with engine.connect() as conn:
        assert "ix_jobs_tenant_status" in {i["name"] for i in inspect(conn).get_indexes("jobs")}
    engine.dispose()


def test_0003_downgrades_and_upgrades_a_database_with_jobs(db_url):
    """A database from before sweeps (0002): 0003 adds the sweeps table and the trial columns;
    the jobs stay, as plain jobs (no sweep)."""
    from alembic import command

    from db import jobs
    from db.migrate import config
    from db.session import make_session_factory
    from tests.conftest import iris_spec

    command.downgrade(config(db_url), "0002")
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert "sweeps" not in inspect(conn).get_table_names()
        assert "sweep_id" not in {c["name"] for c in inspect(conn).get_columns("jobs")}
    with engine.begin() as conn:
        job_id = insert_old_job(conn, "team-a", iris_spec())
    upgrade(db_url)
    with make_session_factory(engine)() as session:
        job = jobs.get_job(session, "team-a", job_id)
        assert job is not None and job.sweep_id is None and job.trial_number is None
    with engine.connect() as conn:
        assert "sweeps" in inspect(conn).get_table_names()
        assert "ix_jobs_sweep_status" in {i["name"] for i in inspect(conn).get_indexes("jobs")}
    engine.dispose()
