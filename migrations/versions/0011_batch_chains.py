"""batches: chained requests (one version per concept)

Adds `batches.combined`, `erasure_requests.after_request_id` / `apply_on_success`, and the request status
`waiting` (core.erasure.chain).

Revision ID: 0011_batch_chains
Revises: 0010_model_versions
Create Date: 2026-12-01 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011_batch_chains'
down_revision: str | Sequence[str] | None = '0010_model_versions'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES_BEFORE = ('submitted', 'awaiting_approval', 'queued', 'running', 'verifying', 'succeeded', 'failed',
                   'cancelled', 'rejected')
STATUSES_AFTER = ('submitted', 'awaiting_approval', 'waiting', 'queued', 'running', 'verifying', 'succeeded',
                  'failed', 'cancelled', 'rejected')


def _status(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name='request_status', native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    with op.batch_alter_table('batches') as batch:
        batch.add_column(sa.Column('combined', sa.Boolean(), server_default=sa.true(), nullable=False))
    with op.batch_alter_table('erasure_requests') as batch:
        batch.add_column(sa.Column('after_request_id', sa.Uuid(), nullable=True))
        batch.add_column(sa.Column('apply_on_success', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.create_index(batch.f('ix_erasure_requests_after_request_id'), ['after_request_id'], unique=False)
        batch.create_foreign_key(batch.f('fk_erasure_requests_after_request_id_erasure_requests'),
                                 'erasure_requests', ['after_request_id'], ['id'])
        batch.alter_column('status', existing_type=_status(STATUSES_BEFORE), type_=_status(STATUSES_AFTER),
                           existing_nullable=False)


def downgrade() -> None:
    # A waiting request has no job and no version to run on without its chain: it ends cancelled.
    op.execute("UPDATE erasure_requests SET status = 'cancelled', "
               "error = 'cancelled: chained requests were removed by a database downgrade' WHERE status = 'waiting'")
    with op.batch_alter_table('erasure_requests') as batch:
        batch.alter_column('status', existing_type=_status(STATUSES_AFTER), type_=_status(STATUSES_BEFORE),
                           existing_nullable=False)
        batch.drop_constraint(batch.f('fk_erasure_requests_after_request_id_erasure_requests'), type_='foreignkey')
        batch.drop_index(batch.f('ix_erasure_requests_after_request_id'))
        batch.drop_column('apply_on_success')
        batch.drop_column('after_request_id')
    with op.batch_alter_table('batches') as batch:
        batch.drop_column('combined')
