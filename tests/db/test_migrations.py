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


def test_0008_gives_earlier_uploads_no_validation_set(db_url):
    """An upload stored before 0008 (no has_validation_split column) reads back, after the
    upgrade, as one without a given validation set; a new one records it."""
    from alembic import command
    from sqlalchemy import text

    from db import datasets
    from db.migrate import config
    from db.session import make_session_factory

    command.downgrade(config(db_url), "0007")
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert "has_validation_split" not in {c["name"] for c in inspect(conn).get_columns("datasets")}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO datasets (id, tenant, name, format, data, n_samples, input_shape, task, "
                          "n_classes, has_test_split, size, sha256, created_at) VALUES ('old', 'team-a', 'old', 'npz', "
                          ":data, 4, '[2]', 'classification', 2, false, 1, :sha, :at)"),
                     {"data": b"x", "sha": "0" * 64, "at": "2026-12-01 00:00:00"})
    upgrade(db_url)
    with make_session_factory(engine)() as session:
        assert datasets.get_dataset(session, "team-a", "old").has_validation_split is False
        new = datasets.create_dataset(session, tenant="team-a", name="new", format="npz", data=b"y", n_samples=6,
                                      input_shape=[2], task="classification", n_classes=2, has_test_split=False,
                                      has_validation_split=True)
        assert datasets.get_dataset(session, "team-a", new.id).has_validation_split is True
    engine.dispose()


def test_0011_lists_earlier_jobs_by_their_specs_monitor(db_url):
    """Jobs made before 0011 (no monitor column) are listed, after the upgrade, with the monitor
    their spec names (or the default without early stopping); a new job carries its own."""
    from alembic import command

    from db import jobs
    from db.job_lists import list_jobs
    from db.migrate import config
    from db.session import make_session_factory
    from tests.conftest import iris_spec

    command.downgrade(config(db_url), "0010")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        watched = insert_old_job(conn, "team-a", iris_spec(early_stopping={"monitor": "val_accuracy", "patience": 3}))
        plain = insert_old_job(conn, "team-a", iris_spec(early_stopping=None))
    upgrade(db_url)
    with make_session_factory(engine)() as session:
        new = jobs.create_job(session, tenant="team-a", queue="cpu", summary=None,
                              spec=iris_spec(early_stopping={"monitor": "train_loss", "patience": 3}))
        items, _ = list_jobs(session, "team-a")
    assert {item["id"]: item["monitor"] for item in items} == {
        watched: "val_accuracy", plain: "val_loss", new.id: "train_loss"}
    engine.dispose()
