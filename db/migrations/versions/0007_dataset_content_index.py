"""datasets by content: `fit` asks whether its arrays are already uploaded (tenant, sha256)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_datasets_tenant_sha256", "datasets", ["tenant", "sha256"])


def downgrade() -> None:
    op.drop_index("ix_datasets_tenant_sha256", table_name="datasets")
