"""Alembic environment: the URL comes from db.migrate.upgrade (config attribute) or `-x url=`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from db.models import Base
from db.session import make_engine

config = context.config
url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
if not url:
    raise SystemExit("no database URL: use db.migrate.upgrade(url) or `alembic -x url=...`")

# PostgreSQL: several processes may start at once (api replicas, the compose migrate job);
# an advisory lock makes the second wait for the first instead of racing on CREATE TABLE.
MIGRATION_LOCK = 72_410_031


def run() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            connection.commit()
        try:
            # render_as_batch: SQLite cannot ALTER most things; batch mode copies the table
            context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                              compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                connection.commit()
    engine.dispose()


run()
