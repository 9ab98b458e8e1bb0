"""The versions migration on existing data: every model registered before it gets v1 (its source) as head."""

from __future__ import annotations

import uuid

import pytest
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



class _Rows:
    """Rows written at revision 0010 (before chains and the guard): a tenant, a model with a certified
    erasure applied as v2 (its v1 is v2's parent), a second model with only v1, and a batch."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.tenant, self.model, self.spare, self.erasure, self.batch = (uuid.uuid4() for _ in range(5))

    def key(self, value: uuid.UUID) -> object:  # SQLAlchemy's Uuid is CHAR(32) hex on SQLite
        return value.hex if self.engine.dialect.name == "sqlite" else value

    def write(self) -> None:
        key, now = self.key, "CURRENT_TIMESTAMP"
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO tenants (id, name, require_approval, created_at) "
                                 f"VALUES (:id, 'old', false, {now})"), {"id": key(self.tenant)})
            for m, name in ((self.model, "m"), (self.spare, "spare")):
                conn.execute(sa.text(
                    f"INSERT INTO models (id, tenant_id, name, source_uri, tags, status, created_at, updated_at) "
                    f"VALUES (:id, :t, :n, 'file:///m', '[]', 'ready', {now}, {now})"),
                    {"id": key(m), "t": key(self.tenant), "n": name})
            conn.execute(sa.text(f"INSERT INTO batches (id, tenant_id, size, created_by, created_at) "
                                 f"VALUES (:id, :t, 1, 'k', {now})"), {"id": key(self.batch), "t": key(self.tenant)})
            conn.execute(sa.text(
                "INSERT INTO erasure_requests (id, tenant_id, model_id, status, method, concepts, retain, params, "
                "priority, labels, submitted_by, overdue, created_at, updated_at, certificate, batch_id, "
                f"model_version) VALUES (:id, :t, :m, 'succeeded', 'spare', '[]', '[]', '{{}}', 0, '[]', 'k', false, "
                f"{now}, {now}, '{{\"certificate\": {{}}}}', :b, 1)"),
                {"id": key(self.erasure), "t": key(self.tenant), "m": key(self.model), "b": key(self.batch)})
            version = ("INSERT INTO model_versions (id, tenant_id, model_id, number, parent_number, erasure_id, "
                       "certificate_sha256, status, erased_concepts, artifacts, created_by, created_at, updated_at) "
                       f"VALUES (:id, :t, :m, :n, :p, :e, :c, 'ready', '[]', '[]', 'x', {now}, {now})")
            for m, number, parent, made_by, certificate in ((self.model, 1, None, None, None),
                                                             (self.spare, 1, None, None, None),
                                                             (self.model, 2, 1, self.erasure, "ab" * 32)):
                conn.execute(sa.text(version), {"id": key(uuid.uuid4()), "t": key(self.tenant), "m": key(m),
                                                "n": number, "p": parent, "e": made_by and key(made_by),
                                                "c": certificate})


def test_chained_requests_on_existing_data(any_db_url: str) -> None:
    """0011: existing requests are not chained and not applied on success, existing batches are combined; the
    status `waiting` is allowed; a downgrade cancels waiting requests (their chain is gone)."""
    upgrade(any_db_url, "0010_model_versions")
    rows = _Rows(any_db_url)
    try:
        rows.write()
        upgrade(any_db_url)
        with rows.engine.begin() as conn:
            old = conn.execute(sa.text("SELECT after_request_id, apply_on_success FROM erasure_requests")).one()
            assert tuple(old) == (None, False)
            assert conn.execute(sa.text("SELECT combined FROM batches")).scalar() in (True, 1)
            conn.execute(sa.text(
                "INSERT INTO erasure_requests (id, tenant_id, model_id, status, method, concepts, retain, params, "
                "priority, labels, submitted_by, overdue, created_at, updated_at, after_request_id, "
                "apply_on_success) VALUES (:id, :t, :m, 'waiting', 'spare', '[]', '[]', '{}', 0, '[]', 'k', "
                "false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :after, true)"),
                {"id": rows.key(uuid.uuid4()), "t": rows.key(rows.tenant), "m": rows.key(rows.model),
                 "after": rows.key(rows.erasure)})
        downgrade(any_db_url, "0010_model_versions")
        with rows.engine.connect() as conn:
            statuses = conn.execute(sa.text("SELECT status FROM erasure_requests ORDER BY status")).scalars().all()
            assert statuses == ["cancelled", "succeeded"]
    finally:
        rows.engine.dispose()


def test_versions_a_certificate_names_cannot_be_deleted(any_db_url: str) -> None:
    """0011's guard: a version a certificate names cannot be deleted by any statement — directly, or by the
    cascade from its tenant — while an uncertified v1 still goes with its model; before 0011 it could."""
    upgrade(any_db_url, "0010_model_versions")
    rows = _Rows(any_db_url)
    key = rows.key
    try:
        rows.write()
        upgrade(any_db_url)
        for statement, needle in (("DELETE FROM model_versions WHERE number = 2", "certificate"),
                                  ("DELETE FROM model_versions WHERE number = 1 AND model_id = :m", "certificate"),
                                  ("DELETE FROM tenants", "certificate")):
            with pytest.raises(sa.exc.IntegrityError, match=needle), rows.engine.begin() as conn:
                conn.execute(sa.text(statement), {"m": key(rows.model)})
        with rows.engine.begin() as conn:  # refused: certified erasures name the model (their foreign key)
            with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
                conn.execute(sa.text("DELETE FROM models WHERE id = :m"), {"m": key(rows.model)})
            conn.execute(sa.text("DELETE FROM models WHERE id = :m"), {"m": key(rows.spare)})  # nothing names its v1
        with rows.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT number FROM model_versions ORDER BY number")).scalars().all() == [1, 2]
            assert conn.execute(sa.text("SELECT count(*) FROM models")).scalar() == 1
        downgrade(any_db_url, "0010_model_versions")
        with rows.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM model_versions WHERE number = 2"))  # no guard before 0011
    finally:
        rows.engine.dispose()
