"""Finding 12: the embedded `lethe.db` was 0644 in a 0755 data dir and held webhook signing secrets in
plaintext (and twice more in stored Idempotency-Key responses); an idempotent replay returned the secret
again."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.config import Settings, get_settings
from core.db import dispose_engines
from core.migrate import upgrade
from core.webhooks import service, signing
from tests.integration.test_webhooks import Receiver, _emit


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _embedded(data_dir: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    monkeypatch.setenv("LETHE_DATA_DIR", str(data_dir))
    for key, value in env.items():
        monkeypatch.setenv(f"LETHE_{key.upper()}", value)
    get_settings.cache_clear()
    dispose_engines()
    return get_settings()


def _start(settings: Settings) -> TestClient:
    from api.app import create_app

    upgrade(settings.database_url)
    return TestClient(create_app(settings), raise_server_exceptions=False)


def test_fresh_data_dir_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None) -> None:
    settings = _embedded(tmp_path / "fresh" / "lethe", monkeypatch)
    assert settings.database_url.startswith("sqlite:///")
    with _start(settings) as client:
        assert client.get("/healthz").status_code == 200
    data = settings.data_dir
    assert _mode(data) == 0o700, oct(_mode(data))
    assert _mode(data / "lethe.db") == 0o600, oct(_mode(data / "lethe.db"))
    for extra in ("lethe.db-wal", "lethe.db-shm", "secret.key"):
        if (data / extra).exists():
            assert _mode(data / extra) & 0o077 == 0, (extra, oct(_mode(data / extra)))


def test_existing_data_dir_is_tightened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None) -> None:
    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    settings = _embedded(data, monkeypatch)
    upgrade(settings.database_url)
    os.chmod(data / "lethe.db", 0o644)
    with _start(settings):
        pass
    assert _mode(data) == 0o700 and _mode(data / "lethe.db") == 0o600


def test_webhook_secrets_not_stored_in_plaintext_nor_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None
) -> None:
    settings = _embedded(tmp_path / "lethe", monkeypatch, webhook_allow_private="true")
    receiver = Receiver([])
    try:
        with _start(settings) as client:
            from core.db import unit_of_work
            from core.tenancy import service as tenancy

            with unit_of_work() as s:
                tenant = tenancy.get_or_create_tenant(s, "acme")
                _, key = tenancy.create_key(s, settings, tenant, "admin")
                tenant_id = tenant.id
            h = {"Authorization": f"Bearer {key}", "Idempotency-Key": "hook-1"}
            body = {"url": receiver.url, "events": ["erasure.succeeded"]}
            first = client.post("/v1/webhooks", json=body, headers=h)
            assert first.status_code == 201, first.text
            secret = first.json()["secret"]
            assert secret and secret.startswith("whsec_")
            replay = client.post("/v1/webhooks", json=body, headers=h)
            assert replay.status_code == 201 and replay.headers.get("idempotent-replayed") == "true"
            assert replay.json()["id"] == first.json()["id"] and replay.json()["secret"] is None

            # Nothing at rest holds the secret: not the endpoint row, not the stored response, not any file.
            raw = secret.removeprefix("whsec_")
            with sqlite3.connect(settings.data_dir / "lethe.db") as db:
                (stored,) = db.execute("select secret from webhook_endpoints").fetchone()
                responses = [r[0] for r in db.execute("select response_body from idempotency_keys")]
            assert raw not in stored and stored != secret
            assert responses and all(raw not in (r or "") for r in responses)
            for path in settings.data_dir.rglob("*"):
                if path.is_file():
                    assert raw.encode() not in path.read_bytes(), f"{path.name} holds the webhook secret"

            # Deliveries are still signed with the secret the caller was given.
            (delivery,) = _emit(tenant_id, "erasure.succeeded", {"request_id": "r1"})
            assert service.deliver(delivery) == "delivered"
            headers, payload = receiver.received[0]
            assert signing.verify(secret, headers, payload)
    finally:
        receiver.server.shutdown()


def test_upgrade_encrypts_secrets_written_before(empty_pg_url: str) -> None:
    """Secrets stored in plaintext by older versions are sealed by `lethe db upgrade` (and unsealed by a
    downgrade); stored webhook-creation responses lose their copy."""
    import json
    import uuid

    import sqlalchemy as sa

    from core.db import make_engine, unit_of_work
    from core.migrate import downgrade
    from core.timeutil import utcnow
    from core.webhooks.models import WebhookEndpoint

    upgrade(empty_pg_url, "0008_audit_checkpoints")
    secret = signing.new_secret()
    tenant, endpoint = uuid.uuid4(), uuid.uuid4()
    now = utcnow()
    engine = make_engine(empty_pg_url)
    with engine.begin() as db:
        db.execute(sa.text("insert into tenants (id, name, require_approval, created_at) "
                           "values (:i, 'old', false, :n)"), {"i": tenant, "n": now})
        db.execute(sa.text("insert into webhook_endpoints (id, tenant_id, url, events, secret, enabled, created_by, "
                           "created_at) values (:i, :t, 'https://hooks.example.com/x', '[\"*\"]', :s, true, 'k', :n)"),
                   {"i": endpoint, "t": tenant, "s": secret, "n": now})
        db.execute(sa.text("insert into idempotency_keys (id, tenant_id, key, fingerprint, method, path, "
                           "response_status, response_body, response_headers, created_at, locked_until, expires_at) "
                           "values (:i, :t, 'k1', :f, 'POST', '/v1/webhooks', 201, cast(:b as jsonb), '{}', "
                           ":n, :n, :n)"),
                   {"i": uuid.uuid4(), "t": tenant, "f": "0" * 64, "n": now,
                    "b": json.dumps({"id": str(endpoint), "secret": secret})})
    upgrade(empty_pg_url)
    raw = secret.removeprefix("whsec_")
    with engine.connect() as db:
        stored = db.execute(sa.text("select secret from webhook_endpoints")).scalar_one()
        body = db.execute(sa.text("select response_body from idempotency_keys")).scalar_one()
    assert stored.startswith("v1:") and raw not in stored
    assert body["secret"] is None and raw not in json.dumps(body)
    with unit_of_work(engine) as s:
        assert s.get(WebhookEndpoint, endpoint).secret == secret, "the service still reads the secret"
    downgrade(empty_pg_url, "0008_audit_checkpoints")
    with engine.connect() as db:
        assert db.execute(sa.text("select secret from webhook_endpoints")).scalar_one() == secret
    engine.dispose()
