"""A webhook delivery connects to the address that passed the SSRF check, not to a second DNS answer.

The resolver here rebinds: the host name first resolves to a public address, later to 127.0.0.1, where a
real HTTP server listens. The delivery must resolve once, check that answer, and connect to it — so the
loopback server never sees a request.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from core.db import unit_of_work
from core.outbox.relay import relay
from core.outbox.service import webhook_event
from core.webhooks import service
from core.webhooks.models import WebhookAttempt
from tests.api_support import ApiEnv, build_env
from tests.integration.worker_support import Recorder, use_database

PUBLIC = "93.184.215.14"  # a global address; nothing here answers on the receiver's port
REAL_GETADDRINFO = socket.getaddrinfo


class Receiver:
    """A real HTTP server on loopback that records every request (with its Host header)."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                outer.hosts.append(self.headers["host"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Rebinder:
    """getaddrinfo for one host name: public answers first, 127.0.0.1 afterwards; other hosts resolve normally."""

    def __init__(self, name: str, public_answers: int) -> None:
        self.name = name
        self.public_answers = public_answers
        self.asked = 0

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host != self.name:
            return REAL_GETADDRINFO(host, port, *args, **kwargs)
        self.asked += 1
        address = PUBLIC if self.asked <= self.public_answers else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _one_delivery(env: ApiEnv) -> uuid.UUID:
    with unit_of_work() as s:
        webhook_event(s, "erasure.succeeded", env.principal().tenant_id, {"request_id": "r1"})
    recorder = Recorder()
    with unit_of_work() as s:
        relay(s, recorder)
    (delivery_id,) = recorder.deliveries
    return delivery_id


def _env(pg_url: str, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> Iterator[ApiEnv]:
    use_database(monkeypatch, pg_url, **{k: str(v).lower() for k, v in settings.items()})
    yield from build_env(pg_url, **settings)


def test_rebinding_to_loopback_gets_no_delivery(pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                 receiver: Receiver) -> None:
    name = "rebind.lethe.test"
    for env in _env(pg_url, monkeypatch, webhook_timeout_seconds=3):
        monkeypatch.setattr(socket, "getaddrinfo", Rebinder(name, public_answers=10**6))
        url = f"http://{name}:{receiver.port}/hook"
        r = env.client.post("/v1/webhooks", json={"url": url}, headers=env.auth())
        assert r.status_code == 201, r.text  # registration saw only the public answer
        delivery_id = _one_delivery(env)

        rebinder = Rebinder(name, public_answers=1)  # the delivery's first answer is public, every later one loopback
        monkeypatch.setattr(socket, "getaddrinfo", rebinder)
        assert service.deliver(delivery_id) == "pending"
        assert receiver.hosts == [], "the delivery reached the loopback server through a second DNS answer"
        assert rebinder.asked == 1, "the host name is resolved once per attempt"
        with unit_of_work() as s:
            (attempt,) = s.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id))
            assert attempt.status_code is None and attempt.error

        # The next attempt resolves again, sees 127.0.0.1 and refuses it before connecting.
        rebinder.public_answers = 0
        from core.timeutil import utcnow
        from core.webhooks.models import WebhookDelivery

        with unit_of_work() as s:
            s.get(WebhookDelivery, delivery_id).next_attempt_at = utcnow()
        assert service.deliver(delivery_id) == "pending"
        assert receiver.hosts == []
        with unit_of_work() as s:
            last = s.get(WebhookDelivery, delivery_id)
            assert "127.0.0.1" in last.last_error and "private, loopback or reserved" in last.last_error


def test_pinned_delivery_keeps_the_host_name(pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                              receiver: Receiver) -> None:
    # With private targets allowed (a test setting), the name resolves to the loopback receiver: the request
    # goes to the resolved address and still names the original host.
    name = "hooks.lethe.test"
    for env in _env(pg_url, monkeypatch, webhook_allow_private=True, webhook_timeout_seconds=3):
        monkeypatch.setattr(socket, "getaddrinfo", Rebinder(name, public_answers=0))
        url = f"http://{name}:{receiver.port}/hook"
        assert env.client.post("/v1/webhooks", json={"url": url}, headers=env.auth()).status_code == 201
        delivery_id = _one_delivery(env)
        assert service.deliver(delivery_id) == "delivered"
        assert receiver.hosts == [f"{name}:{receiver.port}"]


def _self_signed(tmp_path: Any, name: str) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_pinned_https_keeps_sni_and_certificate_check(tmp_path: Any, receiver: Receiver) -> None:
    import ssl

    import httpcore

    from core.webhooks.targets import Target
    from core.webhooks.transport import post

    name = "hooks.lethe.test"
    cert, key = _self_signed(tmp_path, name)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    seen_sni: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, server_name, _ctx: seen_sni.append(server_name)
    receiver.server.socket = server_ctx.wrap_socket(receiver.server.socket, server_side=True)
    client_ctx = ssl.create_default_context(cafile=cert)

    def target(host: str) -> Target:
        return Target(url=f"https://{host}:{receiver.port}/hook", scheme="https", host=host, port=receiver.port,
                      addresses=("127.0.0.1",))

    # Connected to 127.0.0.1 (never resolving the name), TLS still names and verifies the host.
    assert post(target(name), b"{}", {"content-type": "application/json"}, deadline_seconds=3,
                ssl_context=client_ctx) == 204
    assert seen_sni == [name] and receiver.hosts == [f"{name}:{receiver.port}"]
    # A name the certificate does not cover fails verification, although the address is the same.
    with pytest.raises(httpcore.ConnectError, match="certificate"):
        post(target("other.lethe.test"), b"{}", {}, deadline_seconds=3, ssl_context=client_ctx)
    assert receiver.hosts == [f"{name}:{receiver.port}"]
