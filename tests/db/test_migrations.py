"""The hand-written Alembic revision creates exactly the tables the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from db.migrate import upgrade
from db.models import Base
from db.session import make_engine


def test_migration_matches_models_and_is_idempotent(db_url):
    upgrade(db_url)  # a second run at start-up changes nothing
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
        assert set(inspect(conn).get_table_names()) >= {"jobs", "epoch_metrics", "job_events", "checkpoints", "datasets"}
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
