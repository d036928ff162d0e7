"""fair share's turns: each waiting tenant's latest start is read per pick (tenant, attempt_started_at)

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
    op.create_index("ix_jobs_tenant_started", "jobs", ["tenant", "attempt_started_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_started", table_name="jobs")
