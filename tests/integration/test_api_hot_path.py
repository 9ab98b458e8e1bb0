"""The submission hot path: a statement budget for POST /v1/erasures, and the audit writer that
appends right before COMMIT. The budget is a regression guard: raise it only with a reason."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, func, select

from core.audit import service as audit
from core.audit.models import AuditEvent
from core.db import get_engine, unit_of_work
from core.migrate import upgrade
from tests.api_support import ApiEnv, api, api_sqlite, erasure_body  # noqa: F401

# auth · idempotency lock+lookup · model · request+job+doorbell (one CTE) · idempotency insert · audit append
SUBMIT_STATEMENTS = 6


@contextmanager
def _counting(engine: Engine) -> Iterator[dict[str, list[str]]]:
    seen: dict[str, list[str]] = {"statements": [], "commits": []}

    def on_execute(_conn, _cursor, statement, _params, _context, _executemany) -> None:  # type: ignore[no-untyped-def]
        seen["statements"].append(statement.split("\n")[0][:80])

    def on_commit(_conn) -> None:  # type: ignore[no-untyped-def]
        seen["commits"].append("commit")

    sa.event.listen(engine, "before_cursor_execute", on_execute)
    sa.event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", on_execute)
        sa.event.remove(engine, "commit", on_commit)


def test_submit_statement_budget_postgres(api: ApiEnv) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    body = erasure_body(api.ready_model())
    assert c.post("/v1/erasures", json=body, headers={**h, "Idempotency-Key": "warm"}).status_code == 202
    with _counting(api.engine) as seen:
        r = c.post("/v1/erasures", json={**body, "priority": 2}, headers={**h, "Idempotency-Key": "k-1"})
    assert r.status_code == 202, r.text
    assert len(seen["statements"]) <= SUBMIT_STATEMENTS, seen["statements"]
    assert len(seen["commits"]) == 1, "one transaction per submission"
    # A replay reads, writes nothing.
    with _counting(api.engine) as seen:
        again = c.post("/v1/erasures", json={**body, "priority": 2}, headers={**h, "Idempotency-Key": "k-1"})
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == r.json()
    assert len(seen["statements"]) <= 2, seen["statements"]
    # The audit chain still verifies (the Postgres writer hashes in the database).
    assert c.get("/v1/audit/verify", headers=h).json()["ok"] is True


def test_submit_checks_the_key_before_the_body(api: ApiEnv) -> None:  # noqa: F811
    """POST /v1/erasures authenticates inside its one thread-pool call, after FastAPI has validated the body and
    headers; the errors keep the order of every other endpoint: 401, then 403, then 422."""
    c = api.client
    bad_body = {"model_id": "not-a-uuid", "concepts": []}
    bad_key = {"Idempotency-Key": "has spaces"}
    assert c.post("/v1/erasures", json=bad_body).status_code == 401
    assert c.post("/v1/erasures", json=bad_body, headers={"Authorization": "Bearer lth_x_y"}).status_code == 401
    reader = api.auth("acme", "erasures:read")
    for headers in ({}, bad_key):
        r = c.post("/v1/erasures", json=bad_body, headers={**reader, **headers})
        assert r.status_code == 403 and r.json()["required_scope"] == "erasures:write", r.text
    writer = api.auth("acme", "erasures:write")
    r = c.post("/v1/erasures", json=bad_body, headers=writer)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
    r = c.post("/v1/erasures", json=erasure_body(api.ready_model()), headers={**writer, **bad_key})
    assert r.status_code == 422, r.text
    assert c.post("/v1/erasures", json=erasure_body(api.ready_model()), headers=writer).status_code == 202


def test_submit_response_matches_read_back(api_sqlite: ApiEnv) -> None:  # noqa: F811
    """The response is built from the values written (not read back): it must equal a GET of the row."""
    c, h = api_sqlite.client, api_sqlite.auth()
    r = c.post("/v1/erasures", json=erasure_body(api_sqlite.ready_model()), headers=h)
    assert r.status_code == 202, r.text
    got = c.get(f"/v1/erasures/{r.json()['id']}", headers=h).json()
    assert got == r.json()
    assert c.get("/v1/audit/verify", headers=h).json()["ok"] is True


def test_append_at_commit_keeps_order_and_rolls_back(any_db_url: str) -> None:
    upgrade(any_db_url)
    engine = get_engine_for(any_db_url)
    with unit_of_work(engine) as s:
        audit.append_at_commit(s, action="t.deferred", subject="s:1", actor="test", payload={"n": 1})
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 0  # not yet written
        audit.append(s, action="t.immediate", subject="s:2", actor="test")  # writes the deferred one first
        audit.append_at_commit(s, action="t.last", subject="s:3", actor="test", tenant_id=uuid.uuid4())
    with pytest.raises(RuntimeError), unit_of_work(engine) as s:
        audit.append_at_commit(s, action="t.rolled_back", subject="s:4", actor="test")
        raise RuntimeError("the request failed")
    with unit_of_work(engine) as s:
        actions = list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))
        assert actions == ["t.deferred", "t.immediate", "t.last"]
        assert audit.verify(s).ok


def get_engine_for(url: str) -> Engine:
    from core.config import get_settings

    return get_engine(get_settings().model_copy(update={"database_url": url}))
