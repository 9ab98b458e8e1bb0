"""The versions migration on existing data: every model registered before it gets v1 (its source) as head."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from core.db import make_engine
from core.migrate import downgrade, upgrade


def test_existing_models_get_v1_as_head(any_db_url: str) -> None:
    upgrade(any_db_url, "0009_webhook_secrets_at_rest")
    engine = make_engine(any_db_url)
    tenant, model = uuid.uuid4(), uuid.uuid4()
    try:
        with engine.begin() as conn:
            def key(value: uuid.UUID) -> object:  # SQLAlchemy's Uuid is CHAR(32) hex on SQLite
                return value.hex if conn.dialect.name == "sqlite" else value

            conn.execute(sa.text("INSERT INTO tenants (id, name, require_approval, created_at) "
                                 "VALUES (:id, 'old', false, CURRENT_TIMESTAMP)"), {"id": key(tenant)})
            conn.execute(sa.text(
                "INSERT INTO models (id, tenant_id, name, source_uri, tags, status, fingerprint, created_at, "
                "updated_at) VALUES (:id, :t, 'old-model', 'file:///m', '[]', 'ready', :fp, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"), {"id": key(model), "t": key(tenant), "fp": "ab" * 32})
        upgrade(any_db_url)
        with engine.connect() as conn:
            head = conn.execute(sa.text("SELECT head_version, auto_apply FROM models")).one()
            v1 = conn.execute(sa.text("SELECT number, parent_number, status, fingerprint, erasure_id "
                                      "FROM model_versions")).one()
        assert tuple(head) == (1, False)
        assert tuple(v1) == (1, None, "ready", "ab" * 32, None)
        downgrade(any_db_url, "0009_webhook_secrets_at_rest")
        with engine.connect() as conn:
            assert "model_versions" not in sa.inspect(conn).get_table_names()
            assert conn.execute(sa.text("SELECT count(*) FROM models")).scalar() == 1
    finally:
        engine.dispose()
