"""Webhooks: registration over HTTP (SSRF guard, scopes, tenants) and real signed deliveries with retries."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update

from core.db import unit_of_work
from core.outbox.relay import relay
from core.outbox.service import webhook_event
from core.timeutil import utcnow
from core.webhooks import service, signing
from core.webhooks.models import WebhookAttempt, WebhookDelivery
from tests.api_support import ApiEnv, build_env
from tests.integration.worker_support import Recorder, use_database

P = "https://lethe.dev/problems/"


class Receiver:
    """A real HTTP server on loopback that answers with scripted status codes and keeps what it got."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([])
    yield r
    r.server.shutdown()


@pytest.fixture
def env(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    use_database(monkeypatch, pg_url, webhook_allow_private="true", webhook_backoff_seconds="2")
    yield from build_env(pg_url, webhook_allow_private=True, webhook_backoff_seconds=2)


def test_private_targets_are_refused_unless_allowed(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_database(monkeypatch, pg_url)
    for api in build_env(pg_url):
        for url in ["http://127.0.0.1:8080/x", "http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/",
                    "http://localhost/x"]:
            r = api.client.post("/v1/webhooks", json={"url": url}, headers=api.auth())
            assert r.status_code == 422, (url, r.text)
            assert r.json()["type"] == P + "webhook-target-refused"
        r = api.client.post("/v1/webhooks", json={"url": "ftp://example.com/x"}, headers=api.auth())
        assert r.status_code == 422
        r = api.client.post("/v1/webhooks", json={"url": "http://127.0.0.1/x", "events": ["nope"]},
                            headers=api.auth())
        assert r.status_code == 422 and "unknown event types" in r.text


def test_register_list_delete_scopes_and_tenants(env: ApiEnv, receiver: Receiver) -> None:
    c = env.client
    r = c.post("/v1/webhooks", json={"url": receiver.url, "events": ["erasure.succeeded"]}, headers=env.auth())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_")
    hook_id = created["id"]
    listed = c.get("/v1/webhooks", headers=env.auth()).json()["items"]
    assert [h["id"] for h in listed] == [hook_id] and "secret" not in listed[0]
    assert c.get(f"/v1/webhooks/{hook_id}", headers=env.auth("other")).status_code == 404
    assert c.post("/v1/webhooks", json={"url": receiver.url},
                  headers=env.auth(scopes="erasures:write")).status_code == 403
    assert c.delete(f"/v1/webhooks/{hook_id}", headers=env.auth("other")).status_code == 404
    assert c.delete(f"/v1/webhooks/{hook_id}", headers=env.auth()).status_code == 204
    assert c.get(f"/v1/webhooks/{hook_id}", headers=env.auth()).status_code == 404
    bad = c.post("/v1/webhooks", json={"url": receiver.url, "secret": "whsec_short"}, headers=env.auth())
    assert bad.status_code == 422


def _emit(tenant_id: uuid.UUID, event_type: str, data: dict[str, Any]) -> list[uuid.UUID]:
    with unit_of_work() as s:
        webhook_event(s, event_type, tenant_id, data)
    recorder = Recorder()
    with unit_of_work() as s:
        relay(s, recorder)
    return recorder.deliveries


def _fast_forward(delivery_id: uuid.UUID) -> None:
    with unit_of_work() as s:
        s.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                  .values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def test_signed_delivery_retried_with_backoff_until_it_succeeds(env: ApiEnv, receiver: Receiver) -> None:
    created = env.client.post("/v1/webhooks", json={"url": receiver.url, "events": ["erasure.succeeded"]},
                              headers=env.auth()).json()
    tenant_id = env.principal().tenant_id
    assert _emit(tenant_id, "erasure.failed", {"request_id": "x"}) == [], "not subscribed to this type"
    deliveries = _emit(tenant_id, "erasure.succeeded", {"request_id": "r1", "status": "succeeded"})
    assert len(deliveries) == 1
    (delivery_id,) = deliveries
    receiver.statuses = [500, 503]

    assert service.deliver(delivery_id) == "pending"
    with unit_of_work() as s:
        d = s.get(WebhookDelivery, delivery_id)
        assert d.attempts == 1 and d.last_status_code == 500 and d.last_error == "HTTP 500"
        wait = (d.next_attempt_at - utcnow()).total_seconds()
        assert 1.0 < wait <= 2.0, wait  # backoff base 2 s for the first retry
    assert service.deliver(delivery_id) == "not-due", "a retry waits for its backoff"
    _fast_forward(delivery_id)
    assert service.deliver(delivery_id) == "pending"
    with unit_of_work() as s:
        wait = (s.get(WebhookDelivery, delivery_id).next_attempt_at - utcnow()).total_seconds()
        assert 3.0 < wait <= 4.0, wait  # doubled
    _fast_forward(delivery_id)
    with unit_of_work() as s:
        assert service.due_retries(s, utcnow()) == [delivery_id], "the sweeper finds the due retry"
    assert service.deliver(delivery_id) == "delivered"
    assert service.deliver(delivery_id) == "delivered", "a delivered event is not sent again"

    assert len(receiver.received) == 3
    ids = {h["webhook-id"] for h, _ in receiver.received}
    assert len(ids) == 1, "retries keep the same webhook-id"
    for headers, body in receiver.received:
        assert signing.verify(created["secret"], headers, body)
        assert not signing.verify(created["secret"], headers, body + b" ")
        assert not signing.verify(signing.new_secret(), headers, body)
        payload = json.loads(body)
        assert payload["type"] == "erasure.succeeded" and payload["data"]["request_id"] == "r1"
    log = env.client.get(f"/v1/webhooks/{created['id']}/deliveries", headers=env.auth()).json()
    assert [(a["attempt"], a["status_code"]) for a in log[0]["log"]] == [(1, 500), (2, 503), (3, 200)]
    assert log[0]["state"] == "delivered"


def test_gives_up_after_max_attempts(env: ApiEnv, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETHE_WEBHOOK_MAX_ATTEMPTS", "3")
    from core.config import get_settings

    get_settings.cache_clear()
    env.client.post("/v1/webhooks", json={"url": receiver.url}, headers=env.auth())
    (delivery_id,) = _emit(env.principal().tenant_id, "erasure.failed", {"request_id": "r2"})
    receiver.statuses = [500] * 10
    states = []
    for _ in range(3):
        states.append(service.deliver(delivery_id))
        _fast_forward(delivery_id)
    assert states == ["pending", "pending", "failed"]
    with unit_of_work() as s:
        assert len(list(s.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)))) == 3
    assert service.deliver(delivery_id) == "failed"
    assert len(receiver.received) == 3


def test_unreachable_target_is_logged_as_an_attempt(env: ApiEnv) -> None:
    env.client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=env.auth())
    (delivery_id,) = _emit(env.principal().tenant_id, "erasure.cancelled", {"request_id": "r3"})
    assert service.deliver(delivery_id) == "pending"
    with unit_of_work() as s:
        (attempt,) = s.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id))
        assert attempt.status_code is None and attempt.error.startswith("ConnectError")


class _VisibilityRecorder(Recorder):
    """Records, at dispatch time, whether a fresh session can already see the delivery row."""

    def __init__(self) -> None:
        super().__init__()
        self.visible: list[bool] = []

    def deliver_webhook(self, delivery_id: uuid.UUID) -> None:
        super().deliver_webhook(delivery_id)
        with unit_of_work() as s:
            self.visible.append(s.get(WebhookDelivery, delivery_id) is not None)


def test_deliveries_are_dispatched_after_their_rows_commit(env: ApiEnv, receiver: Receiver) -> None:
    assert env.client.post("/v1/webhooks", json={"url": receiver.url}, headers=env.auth()).status_code == 201
    tenant_id = env.principal().tenant_id
    with unit_of_work() as s:
        webhook_event(s, "erasure.succeeded", tenant_id, {"id": "x"})
    recorder = _VisibilityRecorder()
    with unit_of_work() as s:
        relay(s, recorder)
        assert recorder.deliveries == []  # nothing leaves before the commit
    assert len(recorder.deliveries) == 1 and recorder.visible == [True]
    recorder = _VisibilityRecorder()
    try:
        with unit_of_work() as s:
            webhook_event(s, "erasure.failed", tenant_id, {"id": "y"})
            s.flush()
            relay(s, recorder)
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert recorder.deliveries == []  # a rolled-back fan-out dispatches nothing
