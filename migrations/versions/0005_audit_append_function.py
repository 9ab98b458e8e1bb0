"""audit: lethe_audit_append(), the chain writer as one server-side call (Postgres)

The serialized writer's lock used to be held across three client round trips (lock, read the last link,
insert) plus whatever the request did afterwards; under load the API's submissions queued on it (issue 6).
This function takes the same advisory lock, reads the last link and inserts the next event in one call.
Each statement inside a VOLATILE plpgsql function takes a fresh snapshot (READ COMMITTED), so the read
after the lock sees the previous writer's committed event. The hash is sha256(prev_hash || record JSON)
exactly as core.audit.chain.event_hash computes it: the caller passes the canonical JSON of the record
around the `seq` value (prefix, suffix), which only the function knows. SQLite keeps the Python writer.

Revision ID: 0005_audit_append_function
Revises: 0004_workers_webhooks_schedules
Create Date: 2026-11-29 05:55:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005_audit_append_function'
down_revision: str | Sequence[str] | None = '0004_workers_webhooks_schedules'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The lock key is core.audit.repository.AUDIT_LOCK_KEY (0x1E7EA0D1): the Python writer takes the same lock.
PG_APPEND_FUNCTION = """
CREATE FUNCTION lethe_audit_append(
    p_at timestamptz, p_tenant_id uuid, p_actor varchar, p_action varchar, p_subject varchar, p_payload jsonb,
    p_prefix text, p_suffix text
) RETURNS TABLE (seq bigint, hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    last_seq bigint;
    last_hash varchar;
    new_seq bigint;
    new_hash varchar;
BEGIN
    PERFORM pg_advisory_xact_lock(511615185);
    SELECT e.seq, e.hash INTO last_seq, last_hash FROM audit_events AS e ORDER BY e.seq DESC LIMIT 1;
    new_seq := coalesce(last_seq, 0) + 1;
    last_hash := coalesce(last_hash, repeat('0', 64));
    new_hash := encode(sha256(convert_to(last_hash || p_prefix || new_seq::text || p_suffix, 'UTF8')), 'hex');
    INSERT INTO audit_events (seq, at, tenant_id, actor, action, subject, payload, prev_hash, hash)
    VALUES (new_seq, p_at, p_tenant_id, p_actor, p_action, p_subject, p_payload, last_hash, new_hash);
    RETURN QUERY SELECT new_seq, new_hash;
END;
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_APPEND_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS lethe_audit_append(timestamptz, uuid, varchar, varchar, varchar, jsonb, "
                   "text, text)")
