"""The consumer watchdog against a real Redis: an idle worker with messages waiting in its queues is first
reconnected (a connection error raised in its event loop); when that does not help, the process exits for its
supervisor to restart it. A busy worker, an empty queue and an unreachable broker are left alone."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import redis
from celery.worker import state
from kombu import Queue

from core.config import Settings
from tests.integration.worker_support import free_port
from worker.app import make_app
from worker.watchdog import EXIT_STALLED, ConsumerWatchdog


class RecordingHub:
    """Stands in for the worker's event loop: keeps what the watchdog asks it to run."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[..., None], *args: object) -> None:
        self.soon.append(functools.partial(callback, *args))


def _watchdog(broker_url: str, queue: str, exits: list[int]) -> ConsumerWatchdog:
    consumer = SimpleNamespace(app=make_app(Settings(broker_url=broker_url)), hub=RecordingHub(),
                               task_consumer=SimpleNamespace(queues=[Queue(queue)]))
    return ConsumerWatchdog(consumer, stall_seconds=10, exit=exits.append)


@pytest.fixture
def queue(redis_url: str) -> Iterator[str]:
    name = f"watchdog-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    client.rpush(name, b"doorbell", b"doorbell")
    yield name
    client.delete(name)


def test_a_stalled_consumer_is_reconnected_then_the_worker_exits(redis_url: str, queue: str) -> None:
    exits: list[int] = []
    dog = _watchdog(redis_url, queue, exits)
    assert dog.check(None, 0.0) == 0.0, "messages wait and nothing runs: a stall begins"
    assert dog.check(0.0, 9.0) == 0.0 and dog.consumer.hub.soon == [], "not yet stalled for 10 s"
    assert dog.check(0.0, 10.0) == 10.0
    (remedy,) = dog.consumer.hub.soon
    with pytest.raises(redis.exceptions.ConnectionError):
        remedy()  # raised inside the event loop, this makes Celery reconnect its consumer
    assert exits == []
    assert dog.check(10.0, 15.0) == 10.0 and exits == []
    assert dog.check(10.0, 20.0) is None
    assert exits == [EXIT_STALLED], "the reconnect did not help: the process ends for its supervisor"


def test_a_reconnect_that_helps_starts_the_count_again(redis_url: str, queue: str) -> None:
    exits: list[int] = []
    dog = _watchdog(redis_url, queue, exits)
    dog.check(dog.check(None, 0.0), 10.0)
    assert len(dog.consumer.hub.soon) == 1
    redis.Redis.from_url(redis_url).delete(queue)  # the reconnected consumer took the messages
    assert dog.check(10.0, 12.0) is None
    redis.Redis.from_url(redis_url).rpush(queue, b"doorbell")
    dog.check(dog.check(None, 100.0), 110.0)
    assert len(dog.consumer.hub.soon) == 2 and exits == [], "a new stall is reconnected first, again"


def test_busy_idle_or_unreachable_is_no_stall(redis_url: str, queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    dog = _watchdog(redis_url, queue, exits)
    monkeypatch.setattr(state, "active_requests", {object()})
    assert dog.check(0.0, 100.0) is None, "a running task: messages wait their turn"
    monkeypatch.setattr(state, "active_requests", set())
    redis.Redis.from_url(redis_url).delete(queue)
    assert dog.check(0.0, 100.0) is None, "nothing waits"
    gone = _watchdog(f"redis://127.0.0.1:{free_port()}/0", queue, exits)
    assert gone.check(0.0, 100.0) is None, "broker unreachable: Celery's own reconnect is in charge"
    assert exits == [] and dog.consumer.hub.soon == [] and gone.consumer.hub.soon == []
