"""The Celery application: Redis broker, at-least-once delivery, queues `gpu` and `default` (the job lanes).

Durability and order come from the job table (leases, fencing tokens, the scheduling rule, the background
services), not from the broker: a job doorbell only wakes a worker of its lane, which then leases the next
job by priority. These settings make the broker a good doorbell: a message is acknowledged only after its
task finished (acks_late), returned if the worker process died (reject_on_worker_lost), one message at a time
per worker (prefetch 1). Time limits are the lease keeper's (LETHE_JOB_TIME_LIMIT_SECONDS): Celery's own do
nothing under `--pool=solo`, so none are set here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init
from kombu import Queue

import core.models  # noqa: F401  (every table known to the ORM: foreign keys resolve)
from core import wiring
from core.config import Settings, get_settings
from core.jobs.states import Lane

GPU_QUEUE = Lane.gpu.value
DEFAULT_QUEUE = Lane.default.value
wiring.load()  # every job kind's handler and every background service


def celery_config(settings: Settings) -> dict[str, Any]:
    transport = {
        "visibility_timeout": settings.broker_visibility_timeout,
        "unacked_restore_interval": settings.broker_unacked_restore_interval,
        "unacked_restore_throttle": 1,  # scan on every check: redelivery ≈ visibility_timeout + interval
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
        "retry_on_timeout": True,
    }
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.broker_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": settings.broker_visibility_timeout},
        "result_expires": timedelta(days=1),
        "task_ignore_result": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_default_queue": DEFAULT_QUEUE,
        "task_queues": (Queue(GPU_QUEUE), Queue(DEFAULT_QUEUE)),
        # lethe.run_job goes to the lane of the job's kind (worker.publisher); no fixed route.
        "task_routes": {
            "lethe.deliver_webhook": {"queue": DEFAULT_QUEUE},
            "lethe.sweep": {"queue": DEFAULT_QUEUE},
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        # Remote control (`celery inspect`, broadcast revoke) subscribes to Redis pub/sub, and after a Redis
        # restart redis-py's pub/sub read can block the worker's main thread for good (no timeout applies to
        # it). Lethe never uses it: liveness is the heartbeat file, cancellation goes through the job table.
        "worker_enable_remote_control": False,
        "timezone": "UTC",
    }


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    celery = Celery("lethe", include=["worker.tasks"])
    celery.conf.update(celery_config(settings))
    return celery


app = make_app()

import worker.monitoring  # noqa: E402  (heartbeat file and metrics server of worker processes)
import worker.watchdog  # noqa: E402, F401  (registers the consumer watchdog for worker processes)


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked child must not reuse the parent's pooled database connections.
    from core.db import dispose_engines

    dispose_engines()


@worker_init.connect
def _private_data_dir(**_: Any) -> None:
    # Model copies, work folders and keys live in the data dir: readable by the service's user only.
    from core.datadir import secure_data_dir

    secure_data_dir(get_settings())


@worker_init.connect
def _service_logging(**_: Any) -> None:
    # `lethe worker` configures logging before Celery starts; a worker started as `celery -A worker.app worker`
    # would otherwise log with structlog's defaults, whose tracebacks print every frame's local variables
    # (the settings, with the database URL and its password, among them). Idempotent.
    from core.logging import configure_logging

    configure_logging()
