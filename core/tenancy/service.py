"""Tenants and API keys: creation (audited), authentication, revocation. Never commits."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session

from core.audit import service as audit
from core.config import Settings
from core.errors import NotFound, Unauthorized, ValidationFailed
from core.tenancy import keys, repository
from core.tenancy.models import ApiKey, Tenant
from core.tenancy.schemas import Principal, parse_scopes
from core.timeutil import utcnow

# Called in the revoking transaction for each newly revoked key (session, key, actor). Domains that act in a
# key's name register here (the schedules domain pauses the key's schedules: core.schedules.handlers).
KEY_REVOKED: list[Callable[[Session, ApiKey, str], None]] = []

# last_used_at is informational: refresh it at most this often so reads do not all become writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def get_or_create_tenant(
    session: Session, name: str, *, require_approval: bool | None = None, actor: str = "system:cli"
) -> Tenant:
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationFailed("a tenant name is 1..100 characters")
    tenant = repository.tenant_by_name(session, name)
    if tenant is None:
        tenant = Tenant(name=name, require_approval=bool(require_approval))
        session.add(tenant)
        session.flush()
        audit.append(
            session, action="tenant.created", subject=f"tenant:{tenant.id}", actor=actor, tenant_id=tenant.id,
            payload={"name": name, "require_approval": tenant.require_approval},
        )
    elif require_approval is not None and tenant.require_approval != require_approval:
        tenant.require_approval = require_approval
        audit.append(
            session, action="tenant.updated", subject=f"tenant:{tenant.id}", actor=actor, tenant_id=tenant.id,
            payload={"require_approval": require_approval},
        )
    return tenant


def create_key(
    session: Session, settings: Settings, tenant: Tenant, scopes: str | list[str], *, name: str = "",
    actor: str = "system:cli",
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext key, which is never stored and never shown again."""
    try:
        scope_list = parse_scopes(scopes)
    except ValueError as exc:
        raise ValidationFailed(str(exc))
    plaintext = keys.generate_key()
    row = ApiKey(
        tenant_id=tenant.id,
        name=name[:100],
        prefix=keys.key_prefix(plaintext),
        key_hash=keys.hash_key(plaintext, keys.secret_key(settings)),
        scopes=scope_list,
    )
    session.add(row)
    session.flush()
    audit.append(
        session, action="api_key.created", subject=f"api_key:{row.id}", actor=actor, tenant_id=tenant.id,
        payload={"prefix": row.prefix, "scopes": scope_list, "name": row.name},
    )
    return row, plaintext


def revoke_key(session: Session, prefix: str, *, actor: str = "system:cli") -> ApiKey:
    row = repository.key_by_prefix(session, keys.key_prefix(prefix) if prefix.startswith("lth_") else prefix)
    if row is None:
        raise NotFound(f"no API key with prefix {prefix!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.append(
            session, action="api_key.revoked", subject=f"api_key:{row.id}", actor=actor, tenant_id=row.tenant_id,
            payload={"prefix": row.prefix},
        )
        for hook in KEY_REVOKED:
            hook(session, row, actor)
    return row


def authenticate(session: Session, settings: Settings, presented: str) -> Principal:
    """The principal for a presented key; Unauthorized for a malformed, unknown, wrong or revoked key."""
    prefix = keys.parse_key(presented)
    if prefix is None:
        raise Unauthorized("the API key is malformed (expected lth_<random>_<checksum>)")
    found = repository.auth_row(session, prefix)
    expected = found.key_hash if found else "0" * 64
    # Compare even when the prefix is unknown, so timing does not reveal which prefixes exist.
    ok = hmac.compare_digest(keys.hash_key(presented, keys.secret_key(settings)), expected)
    if found is None or not ok:
        raise Unauthorized("the API key is not valid")
    if found.revoked_at is not None:
        raise Unauthorized("the API key has been revoked")
    now = utcnow()
    if found.last_used_at is None or now - found.last_used_at > LAST_USED_RESOLUTION:
        repository.touch_key(session, found.id, now)
    return Principal(
        tenant_id=found.tenant_id,
        tenant_name=found.tenant_name,
        key_id=found.id,
        key_prefix=found.prefix,
        scopes=frozenset(found.scopes or []),
        require_approval=found.require_approval,
    )


def actor_names(session: Session, tenant_id: uuid.UUID) -> dict[str, str]:
    """Audit actor ids of a tenant's keys (`key:<id>`) → the names given to those keys (for display)."""
    return {f"key:{k.id}": k.name for k in repository.keys_of_tenant(session, tenant_id) if k.name}
