"""fair share's turns: each pick reads the last minute's starts (attempt_started_at)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_attempt_started", "jobs", ["attempt_started_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_attempt_started", table_name="jobs")
