"""A slow webhook receiver cannot hold an attempt past its deadline, nor delay other tenants' deliveries.

The slow receiver is a real HTTP server that answers a byte at a time, well within any per-read timeout,
for much longer than the attempt's overall deadline.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.config import get_settings
from core.db import unit_of_work
from core.outbox.relay import relay
from core.outbox.service import webhook_event
from core.webhooks import service
from core.webhooks.models import WebhookAttempt
from tests.api_support import ApiEnv, build_env
from tests.integration.worker_support import Recorder, child_env, processes, use_database, wait_for
from worker.app import make_app
from worker.publisher import CeleryPublisher

DEADLINE = 1.5      # LETHE_WEBHOOK_TIMEOUT_SECONDS in these tests
TRICKLE_EVERY = 0.3  # far below the deadline: a per-read timeout never fires
TRICKLE_FOR = 12.0   # how long the slow receiver keeps a response going if nobody hangs up


class Server:
    """A real HTTP server on loopback; `slow` ones trickle their response head one byte at a time."""

    def __init__(self, *, slow: bool) -> None:
        self.received: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                outer.received.append(time.monotonic())
                if not slow:
                    self.send_response(204)
                    self.end_headers()
                    return
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self.wfile.flush()
                stop = time.monotonic() + TRICKLE_FOR
                try:
                    while time.monotonic() < stop:
                        self.wfile.write(b"x")  # a header line that never ends
                        self.wfile.flush()
                        time.sleep(TRICKLE_EVERY)
                except OSError:
                    pass  # the client hung up

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    slow, fast = Server(slow=True), Server(slow=False)
    yield slow, fast
    for s in (slow, fast):
        s.server.shutdown()


@pytest.fixture
def env(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    use_database(monkeypatch, pg_url, webhook_allow_private="true", webhook_timeout_seconds=str(DEADLINE))
    yield from build_env(pg_url, webhook_allow_private=True, webhook_timeout_seconds=DEADLINE)


def _deliveries(env: ApiEnv, tenant: str, url: str, count: int) -> list[uuid.UUID]:
    r = env.client.post("/v1/webhooks", json={"url": url}, headers=env.auth(tenant))
    assert r.status_code == 201, r.text
    tenant_id = env.principal(tenant).tenant_id
    with unit_of_work() as s:
        for i in range(count):
            webhook_event(s, "erasure.succeeded", tenant_id, {"request_id": f"{tenant}-{i}"})
    recorder = Recorder()
    with unit_of_work() as s:
        relay(s, recorder)
    assert len(recorder.deliveries) == count
    return recorder.deliveries


def _attempt(delivery_id: uuid.UUID) -> WebhookAttempt:
    with unit_of_work() as s:
        (attempt,) = s.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id))
        s.expunge(attempt)
        return attempt


def test_an_attempt_ends_at_its_deadline(env: ApiEnv, servers: tuple[Server, Server]) -> None:
    slow, _ = servers
    (delivery_id,) = _deliveries(env, "acme", slow.url, 1)
    started = time.monotonic()
    assert service.deliver(delivery_id) == "pending"
    took = time.monotonic() - started
    assert slow.received, "the slow receiver got the request"
    assert took < DEADLINE + 1.0, f"the attempt took {took:.1f} s with a {DEADLINE} s deadline"
    attempt = _attempt(delivery_id)
    assert attempt.status_code is None and "timed out" in attempt.error
    assert DEADLINE * 1000 * 0.9 <= attempt.duration_ms < (DEADLINE + 1.0) * 1000


def test_a_slow_receiver_does_not_delay_another_tenant(env: ApiEnv, servers: tuple[Server, Server]) -> None:
    from worker.embedded import EmbeddedPublisher

    slow, fast = servers
    stuck = _deliveries(env, "acme", slow.url, 4)  # four events queued for the slow receiver
    other = _deliveries(env, "globex", fast.url, 1)
    publisher = EmbeddedPublisher(threading.Event())
    started = time.monotonic()
    for delivery_id in [*stuck, *other]:  # the other tenant's comes last
        publisher.deliver_webhook(delivery_id)
    dispatched = time.monotonic() - started
    assert dispatched < 1.0, f"dispatching blocked the caller for {dispatched:.1f} s"
    deadline = time.monotonic() + DEADLINE
    while not (fast.received and slow.received) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert slow.received and fast.received, "the other tenant's delivery waited behind the slow receiver"
    assert fast.received[0] - slow.received[0] < 1.0, "it waited for the slow attempt"
    # The slow endpoint's deliveries run one at a time (one lane): only the first has reached it yet.
    assert len(slow.received) == 1

    # Shutdown is bounded by one attempt deadline, not by the queue behind the slow receiver.
    closing = time.monotonic()
    publisher.close()
    assert time.monotonic() - closing < DEADLINE + 2.5
    assert len(slow.received) == 1, "queued deliveries were left for the retry sweep, not started on close"
    assert service.deliver(other[0]) == "delivered"  # already delivered: not sent again


def test_celery_default_workers_deliver_side_by_side(pg_url: str, redis_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      servers: tuple[Server, Server]) -> None:
    # `lethe worker --queues default` runs LETHE_WEBHOOK_CONCURRENCY processes, not one: a delivery held by
    # a slow receiver does not hold the next one back.
    slow, fast = servers
    # A longer deadline than the other tests: had the other delivery waited behind the slow one, the two would
    # arrive a whole deadline apart, far beyond what two worker processes on a busy machine need to start.
    deadline = 6.0
    settings = {"broker_url": redis_url, "webhook_allow_private": "true",
                "webhook_timeout_seconds": str(deadline), "webhook_concurrency": "2"}
    use_database(monkeypatch, pg_url, **settings)
    for env in build_env(pg_url, broker_url=redis_url, webhook_allow_private=True,
                         webhook_timeout_seconds=deadline, webhook_concurrency=2):
        (held,) = _deliveries(env, "acme", slow.url, 1)
        (other,) = _deliveries(env, "globex", fast.url, 1)
        publisher = CeleryPublisher(make_app(get_settings()))
        with processes(tmp_path) as procs:
            procs.start("default-worker", [sys.executable, "-m", "core.cli", "worker", "--queues", "default"],
                        child_env(**settings, database_url=pg_url))
            publisher.deliver_webhook(held)
            publisher.deliver_webhook(other)
            wait_for(lambda: fast.received and slow.received, 60, "both deliveries")
            # One process would take the slow delivery (published first) and start the other a whole deadline
            # later; two start both at once, in either order.
            assert abs(fast.received[0] - slow.received[0]) < deadline / 2, \
                "the other delivery waited behind the slow one"
            wait_for(lambda h=held: _attempts(h), 30, "the slow attempt's record")
        (attempt,) = _attempts(held)
        assert "timed out" in attempt.error and attempt.duration_ms < (deadline + 1.0) * 1000


def _attempts(delivery_id: uuid.UUID) -> list[WebhookAttempt]:
    with unit_of_work() as s:
        rows = list(s.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)))
        for row in rows:
            s.expunge(row)
        return rows
