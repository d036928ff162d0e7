"""preemption: the queued job a running one is asked to make way for, when this attempt started,
and how many times a job was preempted

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from db.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN on both backends (nullable, or with a default): no table copy
    op.add_column("jobs", sa.Column("preempt_requested_by", sa.String(32)))
    op.add_column("jobs", sa.Column("attempt_started_at", UTCDateTime()))
    op.add_column("jobs", sa.Column("preemptions", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    # plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), never a batch: a batch copies the jobs
    # table on SQLite, and dropping the old table cascades to every job's epoch rows
    op.drop_column("jobs", "preemptions")
    op.drop_column("jobs", "attempt_started_at")
    op.drop_column("jobs", "preempt_requested_by")
