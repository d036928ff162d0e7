"""datasets: whether an upload brings its own validation set (x_val, y_val), used as is

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN with a default on both backends: no table copy; every earlier upload has none
    op.add_column("datasets", sa.Column("has_validation_split", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))


def downgrade() -> None:
    # plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), never a batch (a batch copies the table)
    op.drop_column("datasets", "has_validation_split")
