"""Idempotency-Key (Stripe semantics) on Postgres, plus the concurrent-duplicates case on SQLite too."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from fastapi.encoders import jsonable_encoder
from sqlalchemy import func, select, update

from core.db import unit_of_work
from core.erasure.models import ErasureRequest
from core.erasure.schemas import ErasureCreate
from core.errors import IdempotencyInFlight
from core.idempotency import service
from core.idempotency.models import IdempotencyRecord
from core.registry.models import ModelStatus, RegisteredModel
from core.timeutil import utcnow
from tests.api_support import ApiEnv, api, api_sqlite, erasure_body  # noqa: F401

P = "https://lethe.dev/problems/"


def _requests(env: ApiEnv) -> int:
    with unit_of_work(env.engine) as s:
        return int(s.scalar(select(func.count()).select_from(ErasureRequest)) or 0)


def test_replay_conflict_and_scoping(api: ApiEnv) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    body = erasure_body(api.ready_model())
    first = c.post("/v1/erasures", json=body, headers={**h, "Idempotency-Key": "k-1"})
    again = c.post("/v1/erasures", json=body, headers={**h, "Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert _requests(api) == 1
    # Same key, different body → 422 (and nothing is created).
    other = c.post("/v1/erasures", json={**body, "priority": 7}, headers={**h, "Idempotency-Key": "k-1"})
    assert other.status_code == 422 and other.json()["type"] == P + "idempotency-key-reused"
    # Same key on another endpoint → 422 as well.
    rid = first.json()["id"]
    r = c.post(f"/v1/erasures/{rid}/cancel", headers={**h, "Idempotency-Key": "k-1"})
    assert r.status_code == 422
    # Keys are per tenant: another tenant may use "k-1" for its own request.
    theirs = api.auth("globex")
    theirs_body = erasure_body(api.ready_model("globex"))
    r = c.post("/v1/erasures", json=theirs_body, headers={**theirs, "Idempotency-Key": "k-1"})
    assert r.status_code == 202 and r.json()["id"] != rid
    assert _requests(api) == 2
    # Decisions are idempotent too: a replayed cancel returns the first answer instead of a 409.
    c1 = c.post(f"/v1/erasures/{rid}/cancel", headers={**h, "Idempotency-Key": "cancel-1"})
    c2 = c.post(f"/v1/erasures/{rid}/cancel", headers={**h, "Idempotency-Key": "cancel-1"})
    assert c1.status_code == c2.status_code == 202 and c2.json() == c1.json()
    # Invalid key header → 422
    assert c.post("/v1/erasures", json=body, headers={**h, "Idempotency-Key": "x" * 300}).status_code == 422


def test_in_flight_abandoned_failed_and_expired(api: ApiEnv) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    mid = api.ready_model()
    body = erasure_body(mid)
    principal = api.principal()
    fp = service.fingerprint("POST", "/v1/erasures",
                             jsonable_encoder(ErasureCreate.model_validate(body).model_dump(mode="json")))
    with unit_of_work(api.engine) as s:  # a first request that is still running (a claim row without response)
        now = utcnow()
        s.add(IdempotencyRecord(tenant_id=principal.tenant_id, key="busy", fingerprint=fp, method="POST",
                                path="/v1/erasures", created_at=now, locked_until=now + timedelta(seconds=60),
                                expires_at=now + timedelta(hours=24)))
    r = c.post("/v1/erasures", json=body, headers={**h, "Idempotency-Key": "busy"})
    assert r.status_code == 409 and r.json()["type"] == P + "idempotency-in-flight"
    assert _requests(api) == 0
    # Its process died: once the claim's lock lapses, a retry takes it over and runs.
    with unit_of_work(api.engine) as s:
        s.execute(update(IdempotencyRecord).values(locked_until=utcnow() - timedelta(seconds=1)))
    r = c.post("/v1/erasures", json=body, headers={**h, "Idempotency-Key": "busy"})
    assert r.status_code == 202 and _requests(api) == 1
    # A request that fails is not stored: after fixing the cause, the same key runs.
    with unit_of_work(api.engine) as s:
        s.execute(update(RegisteredModel).values(status=ModelStatus.pending))
    r = c.post("/v1/erasures", json=body, headers={**h, "Idempotency-Key": "retry-me"})
    assert r.status_code == 409
    with unit_of_work(api.engine) as s:
        s.execute(update(RegisteredModel).values(status=ModelStatus.ready))
    r = c.post("/v1/erasures", json=body, headers={**h, "Idempotency-Key": "retry-me"})
    assert r.status_code == 202 and _requests(api) == 2
    # Kept >= 24 h: still replayed after 23 h; after expiry the key is free again.
    with unit_of_work(api.engine) as s:
        rec = s.scalars(select(IdempotencyRecord).where(IdempotencyRecord.key == "retry-me")).one()
        assert rec.expires_at - rec.created_at >= timedelta(hours=24)
        s.execute(update(IdempotencyRecord).where(IdempotencyRecord.key == "retry-me")
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    r = c.post("/v1/erasures", json={**body, "priority": 3}, headers={**h, "Idempotency-Key": "retry-me"})
    assert r.status_code == 202 and _requests(api) == 3
    with unit_of_work(api.engine) as s:
        assert service.purge_expired(s) == 0


def _concurrent_duplicates(env: ApiEnv, n: int) -> None:
    body = erasure_body(env.ready_model())
    headers = {**env.auth(), "Idempotency-Key": f"dup-{uuid.uuid4()}"}
    barrier = threading.Barrier(n)
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        r = env.client.post("/v1/erasures", json=body, headers=headers)
        with lock:
            results.append((r.status_code, r.json()))

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(code for code, _ in results)
    assert len(results) == n and set(codes) <= {202, 409}, codes
    assert 202 in codes
    assert len({b["id"] for code, b in results if code == 202}) == 1  # replays carry the same request
    assert _requests(env) == 1
    # After the dust settles, a retry replays.
    r = env.client.post("/v1/erasures", json=body, headers=headers)
    assert r.status_code == 202 and r.headers["idempotent-replayed"] == "true"


def test_concurrent_duplicates_postgres(api: ApiEnv) -> None:  # noqa: F811
    _concurrent_duplicates(api, 16)


def test_concurrent_duplicates_sqlite(api_sqlite: ApiEnv) -> None:  # noqa: F811
    _concurrent_duplicates(api_sqlite, 8)


@pytest.mark.parametrize("db", ["postgres", "sqlite"])
def test_a_key_committed_after_this_request_found_it_free_answers_409_and_keeps_nothing(
        db: str, request: pytest.FixtureRequest) -> None:
    """The window the per-key lock leaves: this request read the key as free (its snapshot predates the first
    request's commit), then the first request committed the key. Storing this one's response must fail (409, its
    work rolled back with it), never a second stored response and a second effect."""
    env: ApiEnv = request.getfixturevalue("api" if db == "postgres" else "api_sqlite")
    tenant_id = env.principal().tenant_id
    fresh = service.Fresh(tenant_id, f"late-{uuid.uuid4()}", "fp", "POST", "/v1/erasures", 24)
    with unit_of_work(env.engine) as first:
        service.finish(first, fresh, 202, {"id": "first"}, {})
    with pytest.raises(IdempotencyInFlight), unit_of_work(env.engine) as late:
        service.finish(late, fresh, 202, {"id": "second"}, {})
    with unit_of_work(env.engine) as s:
        stored = s.scalars(select(IdempotencyRecord).where(IdempotencyRecord.key == fresh.key)).all()
    assert [r.response_body for r in stored] == [{"id": "first"}]


@pytest.mark.parametrize("n", [3])
def test_same_key_different_bodies_concurrently(api: ApiEnv, n: int) -> None:  # noqa: F811
    """Racing requests with one key but different bodies: one wins, the others get 409 or 422, never a 2nd row."""
    mid = api.ready_model()
    headers = {**api.auth(), "Idempotency-Key": "race"}
    barrier = threading.Barrier(n)
    codes: list[int] = []

    def worker(i: int) -> None:
        barrier.wait()
        codes.append(api.client.post("/v1/erasures", json=erasure_body(mid, priority=i), headers=headers).status_code)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes.count(202) == 1 and set(codes) <= {202, 409, 422}
    assert _requests(api) == 1
