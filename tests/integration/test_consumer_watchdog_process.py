"""The consumer watchdog in a real Celery worker process, whose broker path swallows the consumer's BRPOP while
every other command goes through (what the worker sees when kombu's poller sits on a dead socket: the event loop
runs, the broker is reachable, nothing is consumed):

- swallowed only on the connections open at that moment: the watchdog's reconnect opens new ones and the
  waiting messages are consumed, the process stays up;
- swallowed on every connection: the reconnect does not help, and the process exits with code 70 (for its
  supervisor to restart it), logging where its main thread is; the messages stay in the queue."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from core.config import Settings
from tests.integration.worker_support import Processes, TcpProxy, child_env, free_port, processes, wait_for
from worker.app import make_app
from worker.watchdog import EXIT_STALLED

STALL_SECONDS = 2.0


class _Link:
    """One proxied connection; once `swallow` is set, the first BRPOP and everything after it is dropped."""

    def __init__(self, client: socket.socket, server: socket.socket, swallow: bool) -> None:
        self.client, self.server, self.swallow, self.dead = client, server, swallow, False


class BrpopSwallowingProxy:
    """A loopback TCP proxy in front of Redis that can make consumers' BRPOPs go unanswered."""

    def __init__(self, upstream: tuple[str, int], db: int) -> None:
        self.upstream, self.db = upstream, db
        self.port = free_port()
        self.swallow_new = False
        self.swallowed = 0
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    def swallow_open(self) -> None:
        """Swallow BRPOPs on the connections open now (new ones are served)."""
        with self._lock:
            for link in self._links:
                link.swallow = True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                return
            server.settimeout(None)
            link = _Link(client, server, self.swallow_new)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._to_server, args=(link,), daemon=True).start()
            threading.Thread(target=TcpProxy._pump, args=(server, client), daemon=True).start()

    def _to_server(self, link: _Link) -> None:
        try:
            while data := link.client.recv(65536):
                if link.swallow and not link.dead and b"BRPOP" in data.upper():
                    link.dead = True
                    with self._lock:
                        self.swallowed += 1
                if not link.dead:
                    link.server.sendall(data)
        except OSError:
            pass
        finally:
            self._close(link.client, link.server)

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for sock in socks:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for link in self._links:
                self._close(link.client, link.server)


@pytest.fixture
def proxy(redis_url: str) -> Iterator[BrpopSwallowingProxy]:
    parts = urlsplit(redis_url)
    proxy = BrpopSwallowingProxy((parts.hostname or "127.0.0.1", parts.port or 6379), int(parts.path.strip("/") or 0))
    yield proxy
    proxy.close()


@pytest.fixture
def queue(redis_url: str) -> Iterator[str]:
    name = f"watchdog-{uuid.uuid4().hex[:8]}"
    yield name
    redis.Redis.from_url(redis_url).delete(name)


def _start_worker(procs: Processes, tmp_path: Path, proxy: BrpopSwallowingProxy, queue: str) -> None:
    env = child_env(broker_url=proxy.url, worker_stall_seconds=str(STALL_SECONDS), data_dir=str(tmp_path / "data"),
                    database_url=f"sqlite:///{tmp_path / 'lethe.db'}", log_level="INFO")
    procs.worker(env, queues=queue, name="stalling")
    wait_for(lambda: "ready." in procs.logs(None), 120, "the worker to be ready")


def _doorbells(redis_url: str, queue: str, count: int = 2) -> None:
    """Messages straight into the real Redis (no proxy): a task no worker knows, so consuming one only drops it."""
    app = make_app(Settings(broker_url=redis_url))
    for _ in range(count):
        app.send_task("lethe.test.doorbell", queue=queue)


def test_a_stalled_worker_reconnects_and_consumes_what_waited(tmp_path: Path, proxy: BrpopSwallowingProxy,
                                                              queue: str, redis_url: str) -> None:
    with processes(tmp_path) as procs:
        _start_worker(procs, tmp_path, proxy, queue)
        proxy.swallow_open()
        wait_for(lambda: proxy.swallowed >= 1, 30, "the consumer's next BRPOP to be swallowed")
        _doorbells(redis_url, queue)
        broker = redis.Redis.from_url(redis_url)
        wait_for(lambda: broker.llen(queue) == 0, 60, "the waiting messages to be consumed")
        logs = procs.logs(None)
        assert "consumer stalled: messages wait but none is consumed; reconnecting" in logs, logs[-3000:]
        assert "unregistered task" in logs.lower(), "the worker itself took them, after its reconnect"
        assert procs.procs[0].poll() is None, "a reconnect that helps keeps the process running"


def test_a_worker_the_reconnect_cannot_help_exits_for_its_supervisor(tmp_path: Path, proxy: BrpopSwallowingProxy,
                                                                     queue: str, redis_url: str) -> None:
    proxy.swallow_new = True  # every consumer connection, the reconnected ones too
    with processes(tmp_path) as procs:
        _start_worker(procs, tmp_path, proxy, queue)
        _doorbells(redis_url, queue)
        code = procs.procs[0].wait(timeout=60)
        logs = procs.logs(None)
        assert code == EXIT_STALLED, logs[-3000:]
        assert "reconnecting" in logs and "exiting for the supervisor to restart the worker" in logs
        assert "main_thread" in logs, "the log says where the main thread was"
        assert redis.Redis.from_url(redis_url).llen(queue) == 2, "nothing was taken or lost"
