"""erasure: per-request verification settings (judge, raised thresholds)

Revision ID: 0006_erasure_verification
Revises: 0005_audit_append_function
Create Date: 2026-12-01 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006_erasure_verification'
down_revision: str | Sequence[str] | None = '0005_audit_append_function'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('erasure_requests') as batch:
        batch.add_column(sa.Column(
            'verification', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
            nullable=True,
        ))


def downgrade() -> None:
    with op.batch_alter_table('erasure_requests') as batch:
        batch.drop_column('verification')
