"""webhooks: signing secrets encrypted at rest; stored idempotent responses lose their copy of the secret

Data only, no schema change. Every plaintext `webhook_endpoints.secret` is sealed with the server's key
(core.webhooks.at_rest); stored responses of POST /v1/webhooks (Idempotency-Key replays) get `secret: null`.
Downgrade decrypts the secrets again (the removed response copies are not restored).

Revision ID: 0009_webhook_secrets_at_rest
Revises: 0008_audit_checkpoints
Create Date: 2026-12-01 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.db import JsonType

revision: str = '0009_webhook_secrets_at_rest'
down_revision: str | Sequence[str] | None = '0008_audit_checkpoints'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

endpoints = sa.table("webhook_endpoints", sa.column("id", sa.Uuid), sa.column("secret", sa.String(200)))
idempotency = sa.table("idempotency_keys", sa.column("id", sa.Uuid), sa.column("path", sa.String(500)),
                       sa.column("response_body", JsonType))


def upgrade() -> None:
    from core.webhooks.at_rest import is_sealed, seal

    bind = op.get_bind()
    for row in bind.execute(sa.select(endpoints.c.id, endpoints.c.secret)).all():
        if not is_sealed(row.secret):
            bind.execute(sa.update(endpoints).where(endpoints.c.id == row.id).values(secret=seal(row.secret)))
    stored = sa.select(idempotency.c.id, idempotency.c.response_body).where(idempotency.c.path == "/v1/webhooks")
    for row in bind.execute(stored).all():
        body = row.response_body
        if isinstance(body, dict) and body.get("secret") is not None:
            bind.execute(sa.update(idempotency).where(idempotency.c.id == row.id)
                         .values(response_body={**body, "secret": None}))


def downgrade() -> None:
    from core.webhooks.at_rest import is_sealed, unseal

    bind = op.get_bind()
    for row in bind.execute(sa.select(endpoints.c.id, endpoints.c.secret)).all():
        if is_sealed(row.secret):
            bind.execute(sa.update(endpoints).where(endpoints.c.id == row.id).values(secret=unseal(row.secret)))
