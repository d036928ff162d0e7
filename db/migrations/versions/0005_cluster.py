"""a shared cluster: job priority, tenants' shares and caps, the worker registry, removed weights;
on SQLite, freed pages are given back (incremental auto-vacuum)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from db.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("weights_removed", sa.String(64)))
        batch.create_index("ix_jobs_claim", ["status", "queue", "priority"])
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("retained_at", UTCDateTime()))
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("max_priority", sa.Integer()),
        sa.Column("max_running", sa.Integer()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("stopped_at", UTCDateTime()),
    )
    op.create_index("ix_workers_last_seen", "workers", ["last_seen_at"])
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA auto_vacuum").scalar() != 2:
        # a database made before this revision keeps freed pages for ever (auto_vacuum=NONE);
        # INCREMENTAL lets db.space give them back, and takes effect with one VACUUM (outside
        # a transaction; it rewrites the file once, which takes a while on a big one)
        with op.get_context().autocommit_block():
            bind.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
            bind.exec_driver_sql("VACUUM")


def downgrade() -> None:
    op.drop_index("ix_workers_last_seen", table_name="workers")
    op.drop_table("workers")
    op.drop_table("tenants")
    # plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not a batch: a batch copies the table
    # on SQLite, and dropping the old jobs table cascaded to every job's epoch rows
    op.drop_column("sweeps", "retained_at")
    op.drop_index("ix_jobs_claim", table_name="jobs")
    op.drop_column("jobs", "weights_removed")
    op.drop_column("jobs", "priority")
