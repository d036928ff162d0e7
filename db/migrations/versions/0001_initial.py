"""initial schema: jobs, epoch_metrics, job_events, checkpoints, datasets

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from db.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _job_fk() -> sa.ForeignKey:
    return sa.ForeignKey("jobs.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False, server_default="default"),
        sa.Column("name", sa.String(200)),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stop_reason", sa.String(32)),
        sa.Column("error", sa.Text()),
        sa.Column("epochs", sa.Integer(), nullable=False),
        sa.Column("epochs_completed", sa.Integer(), nullable=False),
        sa.Column("best_epoch", sa.Integer()),
        sa.Column("best_metrics", sa.JSON()),
        sa.Column("test_metrics", sa.JSON()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("releases", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", UTCDateTime()),
        sa.Column("queue", sa.String(16), nullable=False),
        sa.Column("device", sa.String(16)),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("enqueued_at", UTCDateTime()),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_jobs_tenant_created", "jobs", ["tenant", "created_at", "id"])
    op.create_index("ix_jobs_status_updated", "jobs", ["status", "updated_at"])

    op.create_table(
        "epoch_metrics",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), _job_fk(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        *[sa.Column(name, sa.Float()) for name in (
            "train_loss", "train_accuracy", "val_loss", "val_accuracy",
            "train_rmse", "train_mae", "val_rmse", "val_mae", "lr", "seconds",
        )],
        sa.UniqueConstraint("job_id", "epoch", name="uq_epoch_metrics_job_epoch"),
    )

    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), _job_fk(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id", "id"])

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), _job_fk(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("job_id", "kind", name="uq_checkpoints_job_kind"),
    )

    op.create_table(
        "datasets",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False, server_default="default"),
        sa.Column("name", sa.String(200)),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.Column("input_shape", sa.JSON(), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("n_classes", sa.Integer()),
        sa.Column("has_test_split", sa.Boolean(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_datasets_tenant_created", "datasets", ["tenant", "created_at"])


def downgrade() -> None:
    for table in ("datasets", "checkpoints", "job_events", "epoch_metrics", "jobs"):
        op.drop_table(table)
