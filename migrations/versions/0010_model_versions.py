"""versions: model versions and lineage; every existing model gets v1 (its source) as head

Adds `model_versions`, `models.head_version` / `models.auto_apply`, `erasure_requests.model_version` /
`rebased_from`, and the `apply_version` job kind. Data: one ready v1 per existing model (fingerprint copied
from the model), and head 1.

Revision ID: 0010_model_versions
Revises: 0009_webhook_secrets_at_rest
Create Date: 2026-12-01 18:45:00
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from core.db import UtcDateTime
from core.timeutil import utcnow

revision: str = '0010_model_versions'
down_revision: str | Sequence[str] | None = '0009_webhook_secrets_at_rest'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
KINDS_BEFORE = ('erase', 'validate_model')
KINDS_AFTER = ('erase', 'validate_model', 'apply_version')


def _job_kind(kinds: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*kinds, name='job_kind', native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    op.create_table(
        'model_versions',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('tenant_id', sa.Uuid(), nullable=False),
        sa.Column('model_id', sa.Uuid(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('parent_number', sa.Integer(), nullable=True),
        sa.Column('erasure_id', sa.Uuid(), nullable=True),
        sa.Column('status', sa.Enum('pending', 'ready', 'failed', name='version_status', native_enum=False,
                                    create_constraint=True, length=16), nullable=False),
        sa.Column('status_reason', sa.Text(), nullable=True),
        sa.Column('erased_concepts', JSON, nullable=False),
        sa.Column('artifacts', JSON, nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=True),
        sa.Column('adapter', JSON, nullable=True),
        sa.Column('certificate_sha256', sa.String(length=64), nullable=True),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('created_at', UtcDateTime(), nullable=False),
        sa.Column('updated_at', UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['erasure_id'], ['erasure_requests.id']),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('erasure_id'),
        sa.UniqueConstraint('model_id', 'number', name='uq_model_versions_model_number'),
    )
    op.create_index(op.f('ix_model_versions_model_id'), 'model_versions', ['model_id'], unique=False)
    op.create_index(op.f('ix_model_versions_tenant_id'), 'model_versions', ['tenant_id'], unique=False)
    with op.batch_alter_table('models') as batch:
        batch.add_column(sa.Column('head_version', sa.Integer(), server_default=sa.text('1'), nullable=False))
        batch.add_column(sa.Column('auto_apply', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('erasure_requests') as batch:
        batch.add_column(sa.Column('model_version', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('rebased_from', sa.Uuid(), nullable=True))
    with op.batch_alter_table('jobs') as batch:
        batch.alter_column('kind', existing_type=_job_kind(KINDS_BEFORE), type_=_job_kind(KINDS_AFTER),
                           existing_nullable=False)

    models = sa.table('models', sa.column('id', sa.Uuid), sa.column('tenant_id', sa.Uuid),
                      sa.column('fingerprint', sa.String))
    versions = sa.table(
        'model_versions', sa.column('id', sa.Uuid), sa.column('tenant_id', sa.Uuid), sa.column('model_id', sa.Uuid),
        sa.column('number', sa.Integer), sa.column('status', sa.String), sa.column('erased_concepts', JSON),
        sa.column('artifacts', JSON), sa.column('fingerprint', sa.String), sa.column('created_by', sa.String),
        sa.column('created_at', UtcDateTime()), sa.column('updated_at', UtcDateTime()),
    )
    bind = op.get_bind()
    now = utcnow()
    rows = [{"id": uuid.uuid4(), "tenant_id": m.tenant_id, "model_id": m.id, "number": 1, "status": "ready",
             "erased_concepts": [], "artifacts": [], "fingerprint": m.fingerprint, "created_by": "system:migration",
             "created_at": now, "updated_at": now}
            for m in bind.execute(sa.select(models.c.id, models.c.tenant_id, models.c.fingerprint)).all()]
    if rows:
        bind.execute(versions.insert(), rows)


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE kind = 'apply_version'")
    with op.batch_alter_table('jobs') as batch:
        batch.alter_column('kind', existing_type=_job_kind(KINDS_AFTER), type_=_job_kind(KINDS_BEFORE),
                           existing_nullable=False)
    with op.batch_alter_table('erasure_requests') as batch:
        batch.drop_column('rebased_from')
        batch.drop_column('model_version')
    with op.batch_alter_table('models') as batch:
        batch.drop_column('auto_apply')
        batch.drop_column('head_version')
    op.drop_index(op.f('ix_model_versions_tenant_id'), table_name='model_versions')
    op.drop_index(op.f('ix_model_versions_model_id'), table_name='model_versions')
    op.drop_table('model_versions')
