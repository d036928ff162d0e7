"""sweeps: a search over a base spec; its trials are jobs rows (sweep_id, trial_number, params)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from db.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False, server_default="default"),
        sa.Column("name", sa.String(200)),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("objective_metric", sa.String(32), nullable=False),
        sa.Column("objective_mode", sa.String(4), nullable=False),
        sa.Column("max_trials", sa.Integer(), nullable=False),
        sa.Column("max_concurrent", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("trials_asked", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_sweeps_tenant_created", "sweeps", ["tenant", "created_at", "id"])
    op.create_index("ix_sweeps_status", "sweeps", ["status"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("sweep_id", sa.String(32)))
        batch.add_column(sa.Column("trial_number", sa.Integer()))
        batch.add_column(sa.Column("params", sa.JSON()))
        batch.add_column(sa.Column("pruned_rung", sa.Integer()))
        batch.create_foreign_key("fk_jobs_sweep_id", "sweeps", ["sweep_id"], ["id"])
        # a trial number is taken once: two processes asking at once cannot both create trial n
        batch.create_unique_constraint("uq_jobs_sweep_trial", ["sweep_id", "trial_number"])
        batch.create_index("ix_jobs_sweep_status", ["sweep_id", "status"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_sweep_status")
        batch.drop_constraint("uq_jobs_sweep_trial", type_="unique")
        batch.drop_constraint("fk_jobs_sweep_id", type_="foreignkey")
        for column in ("pruned_rung", "params", "trial_number", "sweep_id"):
            batch.drop_column(column)
    op.drop_index("ix_sweeps_status", table_name="sweeps")
    op.drop_index("ix_sweeps_tenant_created", table_name="sweeps")
    op.drop_table("sweeps")
