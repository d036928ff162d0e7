"""jobs: the early stopping's monitor as a column, for the list (read from each spec, it cost
PostgreSQL ~0.1 ms a page of 50)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("monitor", sa.String(32), nullable=True))
    # the jobs made before: one UPDATE, the JSON path compiled for each backend
    jobs = sa.table("jobs", sa.column("spec", sa.JSON), sa.column("monitor", sa.String(32)))
    op.execute(jobs.update().values(monitor=jobs.c.spec[("training", "early_stopping", "monitor")].as_string()))


def downgrade() -> None:
    op.drop_column("jobs", "monitor")
