"""What a running worker tells the outside: a heartbeat file (container health checks) and Prometheus metrics
on LETHE_WORKER_METRICS_PORT — job attempts by kind and outcome, stage and attempt durations, lease losses
(core.jobs.metrics), broker queue depth and, where CUDA is in use, GPU memory.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from celery.signals import worker_ready
from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

import core.jobs.metrics  # noqa: F401  (the job metrics exist, at 0, before the first job)
from core.config import get_settings
from core.heartbeat import Heartbeat
from core.jobs.keeper import leases_fresh
from core.logging import get_logger

log = get_logger(__name__)


class BrokerQueueCollector(Collector):
    """Messages waiting in the broker per queue, read at scrape time (Redis LLEN)."""

    def __init__(self, broker_url: str, queues: list[str]) -> None:
        self.broker_url = broker_url
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        import redis

        depth = GaugeMetricFamily("lethe_worker_queue_depth", "Messages waiting in the broker, by queue.",
                                  labels=["queue"])
        client = redis.Redis.from_url(self.broker_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            for queue in self.queues:
                depth.add_metric([queue], int(client.llen(queue)))
        except redis.RedisError as exc:  # a scrape must not fail because the broker is away
            log.warning("metrics: broker unavailable", error=type(exc).__name__)
            return
        finally:
            client.close()
        yield depth

    def describe(self) -> list[GaugeMetricFamily]:
        return []


class GpuMemoryCollector(Collector):
    """CUDA memory per device, when this process uses torch with CUDA (never imports torch itself)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available():
            return
        memory = GaugeMetricFamily("lethe_worker_gpu_memory_bytes",
                                   "GPU memory: allocated and reserved by this process, peak allocated, total.",
                                   labels=["device", "kind"])
        for index in range(torch.cuda.device_count()):
            device = str(index)
            memory.add_metric([device, "allocated"], torch.cuda.memory_allocated(index))
            memory.add_metric([device, "reserved"], torch.cuda.memory_reserved(index))
            memory.add_metric([device, "peak_allocated"], torch.cuda.max_memory_allocated(index))
            memory.add_metric([device, "total"], torch.cuda.get_device_properties(index).total_memory)
        yield memory

    def describe(self) -> list[GaugeMetricFamily]:
        return []


_started: dict[str, Any] = {}


@worker_ready.connect
def _start_monitoring(sender: Any = None, **_: Any) -> None:
    settings = get_settings()
    if settings.heartbeat_file is not None and "heartbeat" not in _started:
        _started["heartbeat"] = Heartbeat(settings.heartbeat_file, settings.heartbeat_interval_seconds,
                                          healthy=leases_fresh)
        _started["heartbeat"].start()
    if settings.worker_metrics_port and "metrics" not in _started and sender is not None:
        queues = [q.name for q in sender.app.conf.task_queues or ()]
        broker = sender.app.conf.broker_url
        if broker.startswith(("redis://", "rediss://")):
            REGISTRY.register(BrokerQueueCollector(broker, queues))
        REGISTRY.register(GpuMemoryCollector())
        _started["metrics"] = start_http_server(settings.worker_metrics_port, addr="0.0.0.0")
        log.info("worker metrics served", port=settings.worker_metrics_port)
