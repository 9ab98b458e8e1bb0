"""Helpers for the API tests: an app on a migrated database, keys per tenant, ready models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from core.config import Settings, get_settings
from core.db import get_engine, unit_of_work
from core.migrate import upgrade
from core.registry import repository as registry_repo
from core.registry import service as registry
from core.registry.models import RegisteredModel
from core.registry.schemas import ModelCreate
from core.tenancy import service as tenancy
from core.tenancy.schemas import ALL_SCOPES, Principal


@dataclass
class ApiEnv:
    settings: Settings
    client: TestClient
    engine: Engine
    model_root: Path
    _keys: dict[tuple[str, str], str] = field(default_factory=dict)

    def key(self, tenant: str = "acme", scopes: str = "admin", *, require_approval: bool | None = None,
            name: str = "") -> str:
        """A fresh API key (cached per tenant+scopes+name) for `tenant`."""
        cache = (tenant, f"{scopes}|{name}")
        if cache in self._keys and require_approval is None:
            return self._keys[cache]
        with unit_of_work(self.engine) as s:
            t = tenancy.get_or_create_tenant(s, tenant, require_approval=require_approval)
            _, plaintext = tenancy.create_key(s, self.settings, t, scopes, name=name)
        self._keys[cache] = plaintext
        return plaintext

    def auth(self, tenant: str = "acme", scopes: str = "admin", **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(tenant, scopes, **kw)}"}

    def principal(self, tenant: str = "acme") -> Principal:
        with unit_of_work(self.engine) as s:
            return tenancy.authenticate(s, self.settings, self.key(tenant, "admin"))

    def ready_model(self, tenant: str = "acme", name: str | None = None) -> uuid.UUID:
        """Register a model through the service and record a successful validation (the worker's part)."""
        name = name or f"m-{uuid.uuid4().hex[:8]}"
        folder = self.model_root / name
        folder.mkdir(parents=True, exist_ok=True)
        principal = self.principal(tenant)
        with unit_of_work(self.engine) as s:
            model = registry.register(
                s, self.settings, principal, ModelCreate(name=name, source_uri=f"file://{folder}")
            )
            registry.record_validation(s, model, ok=True, actor="worker:test", architecture="sd1",
                                       fingerprint="ab" * 32)
            return model.id

    def model(self, model_id: uuid.UUID, tenant_id: uuid.UUID) -> RegisteredModel | None:
        with unit_of_work(self.engine) as s:
            return registry_repo.get(s, tenant_id, model_id)


def build_env(db_url: str, **overrides: Any) -> Iterator[ApiEnv]:
    from api.app import create_app

    upgrade(db_url)
    base = get_settings()
    model_root = base.data_dir / "models"
    model_root.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {"database_url": db_url, "data_dir": base.data_dir, "model_roots": [model_root],
                              "rate_limit_per_minute": 0, "rate_limit_anonymous_per_minute": 0, **overrides}
    settings = Settings(**values)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield ApiEnv(settings=settings, client=client, engine=get_engine(settings), model_root=model_root)


def erasure_body(model_id: uuid.UUID | str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_id": str(model_id),
        "concepts": [{"target": "circle", "kind": "object", "prompts": ["a circle on a table"]}],
        "params": {"steps": 10, "seed": 1},
        "legal": {"regime": "gdpr", "basis": "Art. 17", "external_reference": "T-1",
                  "requester": {"name": "Jane", "email": "jane@example.com"},
                  "due_at": "2026-12-24T12:00:00Z"},
        "labels": ["takedown"],
    }
    body.update(extra)
    return body


@pytest.fixture
def api(pg_url: str) -> Iterator[ApiEnv]:
    yield from build_env(pg_url)


@pytest.fixture
def api_sqlite(sqlite_url: str) -> Iterator[ApiEnv]:
    yield from build_env(sqlite_url)


__all__ = ["ALL_SCOPES", "ApiEnv", "api", "api_sqlite", "build_env", "erasure_body"]
