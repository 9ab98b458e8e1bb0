"""Console sessions: sign in with an API key, resolve a cookie token to the key's principal, sign out, revoke.

The API key is checked once, at sign-in, by the same `tenancy.authenticate` the API uses; the browser then
holds only a random session token (its sha256 is stored). A session acts with its key's scopes as they are
at each request, and ends when it is signed out or revoked, when its key is revoked, or after
`console_idle_timeout_minutes` without a request. CSRF tokens are derived from the session token with an
HMAC under the server's secret key, so they are never stored and differ per session. Never commits.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from core.audit import service as audit
from core.config import Settings
from core.console import repository
from core.console.models import ConsoleSession
from core.errors import NotFound, Unauthorized
from core.tenancy import keys
from core.tenancy import service as tenancy
from core.tenancy.schemas import Principal
from core.timeutil import utcnow

# last_seen_at is written at most this often (so reads do not all become writes); the idle timeout is
# therefore enforced to within this much.
TOUCH_RESOLUTION = timedelta(seconds=30)


class SessionEnded(Unauthorized):
    kind = "session-ended"
    title = "The console session has ended"


@dataclass(frozen=True)
class SignedIn:
    """Who a console request acts as: the key's principal, the session, and the key's name for display."""

    principal: Principal
    session_id: uuid.UUID
    key_name: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(settings: Settings, token: str) -> str:
    """The CSRF token of the session whose cookie token is `token`."""
    return hmac.new(keys.secret_key(settings), b"console-csrf:" + token.encode(), hashlib.sha256).hexdigest()


def csrf_ok(settings: Settings, token: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(settings, token), str(presented))


def sign_in(session: Session, settings: Settings, api_key: str) -> tuple[SignedIn, str]:
    """Exchange an API key for a new session; returns it and the cookie token (shown to nobody else)."""
    principal = tenancy.authenticate(session, settings, api_key.strip())
    token = secrets.token_urlsafe(32)
    row = repository.add(session, ConsoleSession(
        tenant_id=principal.tenant_id, api_key_id=principal.key_id, token_hash=token_hash(token),
    ))
    audit.append(session, action="console.signed_in", subject=f"console_session:{row.id}", actor=principal.actor,
                 tenant_id=principal.tenant_id, payload={"key_prefix": principal.key_prefix})
    found = repository.by_token_hash(session, row.token_hash)
    return SignedIn(principal, row.id, found.key_name if found else ""), token


def resolve(session: Session, settings: Settings, token: str | None) -> SignedIn:
    """The signed-in principal for a cookie token; SessionEnded when unknown, ended, idle too long or its key
    was revoked. Refreshes last_seen_at (at most every TOUCH_RESOLUTION)."""
    if not token:
        raise SessionEnded("sign in to use the console")
    row = repository.by_token_hash(session, token_hash(token))
    if row is None or row.revoked_at is not None:
        raise SessionEnded("the session has ended; sign in again")
    now = utcnow()
    if row.key_revoked_at is not None:
        repository.revoke(session, row.id, now, "key_revoked")
        raise SessionEnded("the API key of this session has been revoked")
    if now - row.last_seen_at > timedelta(minutes=settings.console_idle_timeout_minutes):
        repository.revoke(session, row.id, now, "idle")
        audit.append(session, action="console.session_expired", subject=f"console_session:{row.id}",
                     actor="system:console", tenant_id=row.tenant_id,
                     payload={"idle_timeout_minutes": settings.console_idle_timeout_minutes})
        raise SessionEnded("the session was idle too long; sign in again")
    if now - row.last_seen_at > TOUCH_RESOLUTION:
        repository.touch(session, row.id, now)
    principal = Principal(
        tenant_id=row.tenant_id, tenant_name=row.tenant_name, key_id=row.key_id, key_prefix=row.prefix,
        scopes=frozenset(row.scopes or []), require_approval=row.require_approval,
    )
    return SignedIn(principal, row.id, row.key_name or "")


def sign_out(session: Session, signed_in: SignedIn) -> None:
    if repository.revoke(session, signed_in.session_id, utcnow(), "signed_out"):
        audit.append(session, action="console.signed_out", subject=f"console_session:{signed_in.session_id}",
                     actor=signed_in.principal.actor, tenant_id=signed_in.principal.tenant_id, payload={})


def revoke(session: Session, session_id: uuid.UUID, *, actor: str = "system:cli") -> None:
    """End one session now (operator action)."""
    rows = {r.id: r for r in repository.list_open(session)}
    if session_id not in rows or not repository.revoke(session, session_id, utcnow(), "revoked"):
        raise NotFound(f"no open console session {session_id}")
    audit.append(session, action="console.session_revoked", subject=f"console_session:{session_id}", actor=actor,
                 tenant_id=rows[session_id].tenant_id, payload={})


def revoke_of_key(session: Session, key_prefix: str, *, actor: str = "system:cli") -> int:
    """End every open session signed in with the key of this prefix; returns how many."""
    from core.tenancy import repository as tenancy_repo

    key = tenancy_repo.key_by_prefix(session, keys.key_prefix(key_prefix))
    if key is None:
        raise NotFound(f"no API key with prefix {key_prefix!r}")
    count = repository.revoke_of_key(session, key.id, utcnow(), "revoked")
    if count:
        audit.append(session, action="console.sessions_revoked", subject=f"api_key:{key.id}", actor=actor,
                     tenant_id=key.tenant_id, payload={"count": count})
    return count
