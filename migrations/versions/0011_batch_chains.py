"""batches: chained requests (one version per concept); versions a certificate names cannot be deleted

Adds `batches.combined`, `erasure_requests.after_request_id` / `apply_on_success`, the request status
`waiting` (core.erasure.chain), and a BEFORE DELETE trigger on `model_versions` that refuses to delete a
version a certificate names: one made by a certified erasure (`certificate_sha256`), or one a later version
was made from (its certificate's lineage chains to it). The trigger fires for every path that deletes
rows — a direct DELETE, and the cascades from `models` and `tenants`. (On SQLite, batch mode copies a table
without its triggers: a later migration that batch-alters `model_versions` must create this one again.)

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

PG_KEEP_FUNCTION = """
CREATE FUNCTION lethe_keep_certified_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    child integer;
BEGIN
    IF OLD.certificate_sha256 IS NOT NULL THEN
        RAISE EXCEPTION 'version % of model % cannot be deleted: its certificate (sha256 %) names it',
            OLD.number, OLD.model_id, OLD.certificate_sha256 USING ERRCODE = 'restrict_violation';
    END IF;
    SELECT c.number INTO child FROM model_versions AS c
        WHERE c.model_id = OLD.model_id AND c.parent_number = OLD.number ORDER BY c.number LIMIT 1;
    IF child IS NOT NULL THEN
        RAISE EXCEPTION 'version % of model % cannot be deleted: the certificate of version %, made from it, names it',
            OLD.number, OLD.model_id, child USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN OLD;
END;
$$
"""
PG_KEEP_TRIGGER = """
CREATE TRIGGER model_versions_keep_certified BEFORE DELETE ON model_versions
FOR EACH ROW EXECUTE FUNCTION lethe_keep_certified_version()
"""
SQLITE_KEEP_TRIGGER = """
CREATE TRIGGER model_versions_keep_certified BEFORE DELETE ON model_versions
FOR EACH ROW WHEN OLD.certificate_sha256 IS NOT NULL OR EXISTS (
    SELECT 1 FROM model_versions AS c WHERE c.model_id = OLD.model_id AND c.parent_number = OLD.number)
BEGIN
    SELECT RAISE(ABORT, 'a model version that a certificate names cannot be deleted');
END
"""


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
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(PG_KEEP_FUNCTION)
        op.execute(PG_KEEP_TRIGGER)
    else:
        op.execute(SQLITE_KEEP_TRIGGER)


def downgrade() -> None:
    op.execute('DROP TRIGGER IF EXISTS model_versions_keep_certified'
               + (' ON model_versions' if op.get_bind().dialect.name == 'postgresql' else ''))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP FUNCTION IF EXISTS lethe_keep_certified_version()')
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
