"""layer statistics: each epoch's per-layer weight and gradient figures, in the epoch's metrics row

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: epochs recorded before this revision (or by a run without statistics) have none
    with op.batch_alter_table("epoch_metrics") as batch:
        batch.add_column(sa.Column("layers", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("epoch_metrics") as batch:
        batch.drop_column("layers")
