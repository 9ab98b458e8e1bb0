"""Deleting the newest audit events is detected (signed checkpoints, kept in the database and the object
store); verification is incremental from the newest checkpoint; a tenant is not told the chain's global size."""

from __future__ import annotations

import sqlalchemy as sa

from core.audit import checkpoints
from core.audit import service as audit
from core.audit.models import AuditCheckpoint
from core.db import unit_of_work
from core.storage import get_store
from tests.api_support import ApiEnv, api, erasure_body  # noqa: F401


def _submit(env: ApiEnv, n: int, tenant: str = "acme") -> None:
    h = env.auth(tenant)
    mid = env.ready_model(tenant)
    for _ in range(n):
        assert env.client.post("/v1/erasures", json=erasure_body(mid), headers=h).status_code == 202


def _head(env: ApiEnv) -> int:
    with env.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT max(seq) FROM audit_events")).scalar_one())


def _delete_events_from(env: ApiEnv, first_seq: int) -> None:
    """What someone with superuser access to the database would do: bypass the append-only trigger."""
    with env.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change"))
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq >= :s"), {"s": first_seq})
        conn.execute(sa.text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change"))


def test_deleting_the_newest_events_is_detected(api: ApiEnv) -> None:  # noqa: F811
    h = api.auth()
    _submit(api, 3)
    report = api.client.get("/v1/audit/verify", headers=h).json()
    assert report["ok"] is True and report["checkpoint_at"]
    head = _head(api)
    _delete_events_from(api, head - 1)  # the two newest events
    report = api.client.get("/v1/audit/verify", headers=h).json()
    assert report["ok"] is False and report["problem"] == "truncated" and report["first_broken_seq"] == head - 1


def test_truncation_detected_even_when_the_database_checkpoints_are_deleted_too(api: ApiEnv) -> None:  # noqa: F811
    h = api.auth()
    _submit(api, 2)
    assert api.client.get("/v1/audit/verify", headers=h).json()["ok"] is True
    head = _head(api)
    _delete_events_from(api, head)
    with api.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_checkpoints"))
    # The object store still holds the signed head.
    stored = checkpoints.read_external_head(api.settings)
    assert stored is not None and stored.seq == head
    report = api.client.get("/v1/audit/verify", headers=h).json()
    assert report["ok"] is False and report["problem"] == "truncated" and report["first_broken_seq"] == head
    # Checked on its own (as a backup copy is: `lethe audit verify --local`), the shortened chain is consistent.
    with unit_of_work(api.engine) as s:
        local = audit.verify(s, api.settings, use_store_head=False, sign_head=False)
    assert local.ok and local.head_seq == head - 1
    assert checkpoints.read_external_head(api.settings).seq == head  # nothing was signed over it


def test_a_checkpoint_without_the_service_signature_is_refused(api: ApiEnv) -> None:  # noqa: F811
    h = api.auth()
    _submit(api, 1)
    assert api.client.get("/v1/audit/verify", headers=h).json()["ok"] is True
    with unit_of_work(api.engine) as s:
        latest = s.scalars(sa.select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc())).first()
        assert latest is not None
        # Someone lowers the checkpoint to hide a truncation: the signature no longer matches.
        forged = checkpoints.Checkpoint(latest.seq, latest.hash, latest.at, latest.key_id, latest.signature)
        s.execute(sa.delete(AuditCheckpoint))
        s.add(AuditCheckpoint(seq=forged.seq - 1, hash=forged.hash, at=forged.at, key_id=forged.key_id,
                              signature=forged.signature))
    get_store(api.settings).delete(checkpoints.HEAD_OBJECT)
    report = api.client.get("/v1/audit/verify", headers=h).json()
    assert report["ok"] is False and report["problem"] == "checkpoint-forged"


def test_verification_is_incremental_and_signs_the_head(api: ApiEnv) -> None:  # noqa: F811
    _submit(api, 3)
    with unit_of_work(api.engine) as s:
        first = audit.verify(s, api.settings)
    assert first.ok and first.checked == first.head_seq and first.checkpoint is not None
    assert first.checkpoint.seq == first.head_seq and checkpoints.is_authentic(api.settings, first.checkpoint)
    _submit(api, 1)
    with unit_of_work(api.engine) as s:
        second = audit.verify(s, api.settings)
        full = audit.verify(s, api.settings, full=True, sign_head=False)
    added = second.head_seq - first.head_seq
    assert second.ok and 0 < added < second.head_seq
    assert second.checked == added  # only the events after the checkpoint were recomputed
    assert full.ok and full.checked == second.head_seq
    with unit_of_work(api.engine) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditCheckpoint)) == 2


def test_a_tenant_is_not_told_the_global_event_count(api: ApiEnv) -> None:  # noqa: F811
    _submit(api, 4, tenant="big")
    small = api.auth("small")
    report = api.client.get("/v1/audit/verify", headers=small).json()
    own = api.client.get("/v1/audit/events?limit=100", headers=small).json()["items"]
    assert report["ok"] is True and report["checked"] == len(own) < _head(api)
    assert set(report) == {"ok", "checked", "first_broken_seq", "problem", "checkpoint_at"}
