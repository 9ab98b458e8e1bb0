"""audit: signed checkpoints of the chain head

Revision ID: 0008_audit_checkpoints
Revises: 0007_console_sessions
Create Date: 2026-12-01 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = '0008_audit_checkpoints'
down_revision: str | Sequence[str] | None = '0007_console_sessions'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'audit_checkpoints',
        sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('at', core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column('key_id', sa.String(length=32), nullable=False),
        sa.Column('signature', sa.String(length=400), nullable=False),
        sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_checkpoints')),
    )


def downgrade() -> None:
    op.drop_table('audit_checkpoints')
