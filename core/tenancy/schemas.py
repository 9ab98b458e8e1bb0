"""Tenancy types: scopes, the authenticated principal, API key views."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel


class Scope(enum.StrEnum):
    models_read = "models:read"
    models_write = "models:write"
    erasures_read = "erasures:read"
    erasures_write = "erasures:write"
    erasures_approve = "erasures:approve"
    audit_read = "audit:read"
    admin = "admin"


ALL_SCOPES: tuple[str, ...] = tuple(s.value for s in Scope)


def parse_scopes(raw: str | list[str]) -> list[str]:
    """Comma-separated or listed scope names, validated and de-duplicated (order kept)."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    out: list[str] = []
    for item in (s.strip() for s in items):
        if not item:
            continue
        if item not in ALL_SCOPES:
            raise ValueError(f"unknown scope {item!r}; known scopes: {', '.join(ALL_SCOPES)}")
        if item not in out:
            out.append(item)
    if not out:
        raise ValueError(f"give at least one scope: {', '.join(ALL_SCOPES)}")
    return out


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key of a tenant, with its scopes."""

    tenant_id: uuid.UUID
    tenant_name: str
    key_id: uuid.UUID
    key_prefix: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    require_approval: bool = False

    @property
    def actor(self) -> str:
        """The audit actor string for this caller."""
        return f"key:{self.key_id}"

    def has(self, scope: str) -> bool:
        return Scope.admin.value in self.scopes or scope in self.scopes


class ApiKeyView(BaseModel):
    id: uuid.UUID
    tenant: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
