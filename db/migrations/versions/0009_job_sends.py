"""job_sends: when a job's message was last sent, out of the jobs row

Stamping a send updated jobs.enqueued_at, which locked the job row for that transaction; a
claim's pick (FOR NO KEY UPDATE SKIP LOCKED) then skipped the job and took a lower one. A row
of its own is written without locking the job's.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from db.models import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_sends",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("sent_at", UTCDateTime(), nullable=False),
    )
    # no row: never sent (the reconciler sends it), as a NULL enqueued_at was
    op.execute("INSERT INTO job_sends (job_id, sent_at) SELECT id, enqueued_at FROM jobs WHERE enqueued_at IS NOT NULL")
    # jobs.enqueued_at stays (unused from here on): workers from before this revision still read
    # and write it while an upgrade replaces them; dropping it would fail their claims and hand-backs


def downgrade() -> None:
    op.execute("UPDATE jobs SET enqueued_at = (SELECT sent_at FROM job_sends WHERE job_sends.job_id = jobs.id)")
    op.drop_table("job_sends")
