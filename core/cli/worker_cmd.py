"""`lethe worker`, `lethe beat`, `lethe serve`: the process entry points (composition root).

api/ and worker/ are imported lazily inside the commands: core/ itself never depends on them.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from core.config import get_settings
from core.heartbeat import Heartbeat
from core.logging import configure_logging, get_logger

log = get_logger(__name__)


def _need_broker(command: str) -> None:
    if get_settings().embedded:
        typer.echo(
            f"error: `lethe {command}` needs a broker, but LETHE_BROKER_URL is empty (embedded mode). "
            "In embedded mode `lethe serve` runs jobs itself; set LETHE_BROKER_URL=redis://... to run workers.",
            err=True,
        )
        raise typer.Exit(2)


def worker(
    queues: Annotated[str, typer.Option("--queues", "-Q", help="Comma-separated queues: gpu, default.")] = "gpu",
    concurrency: Annotated[int | None, typer.Option(
        min=1, help="Processes for the default queue (default LETHE_WEBHOOK_CONCURRENCY: webhook deliveries run "
        "side by side, so one slow receiver does not hold the others); gpu always runs solo.")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    hostname: Annotated[str | None, typer.Option(help="Worker node name (default: lethe-<queues>@%h).")] = None,
) -> None:
    """Start a Celery worker. GPU queues run with --pool=solo: one process per GPU, models loaded inside it."""
    _need_broker("worker")
    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(wanted) - {"gpu", "default"})
    if not wanted or unknown:
        typer.echo(f"error: unknown queue(s) {unknown or wanted}; choose from: gpu, default", err=True)
        raise typer.Exit(2)
    configure_logging()
    from worker.app import app

    argv = ["worker", "-Q", ",".join(wanted), f"--loglevel={loglevel}", "-n",
            hostname or f"lethe-{'-'.join(wanted)}@%h", "--without-gossip", "--without-mingle"]
    if "gpu" in wanted:
        # CUDA and fork do not mix: one solo process, which also loads the models.
        argv += ["--pool=solo"]
    else:
        argv += ["--pool=prefork", f"--concurrency={concurrency or get_settings().webhook_concurrency}"]
    app.worker_main(argv)


def beat(
    interval: Annotated[
        float | None, typer.Option(help="Seconds between sweeps (default LETHE_SWEEP_INTERVAL_SECONDS).")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Run one sweep, print its report and exit.")] = False,
) -> None:
    """Run the background services: outbox relay, lease reaper, doorbells, overdue flags, schedules, webhook
    retries, audit checkpoints (each switchable by its LETHE_SERVICE_* setting)."""
    _need_broker("beat")
    configure_logging()
    from core.jobs.services import sweep
    from worker.app import app  # also loads every handler and background service (core.wiring)
    from worker.publisher import CeleryPublisher

    publisher = CeleryPublisher(app)
    period = interval or get_settings().sweep_interval_seconds
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from core.db import unit_of_work
    from core.outbox.relay import relay

    settings = get_settings()
    poll = settings.outbox_poll_seconds
    heartbeat = Heartbeat(settings.heartbeat_file, settings.heartbeat_interval_seconds) \
        if settings.heartbeat_file is not None else None
    last_beat = float("-inf")
    while True:
        started = time.monotonic()
        report = sweep(publisher)
        if once:
            typer.echo(report.as_dict())
            return
        if any(report.as_dict().values()):
            log.info("sweep", **report.as_dict())
        # Between full sweeps, publish new outbox rows promptly: this is the submit → start latency.
        while not stop["now"] and time.monotonic() - started < period:
            # Touched from this loop, not a thread: a sweeper stuck in a sweep or a relay call goes stale.
            if heartbeat is not None and time.monotonic() - last_beat >= heartbeat.interval:
                heartbeat.beat()
                last_beat = time.monotonic()
            try:
                if settings.service_outbox_relay:
                    with unit_of_work() as session:
                        relay(session, publisher)
            except Exception as exc:
                log.warning("outbox relay failed", error=str(exc)[:200])
            time.sleep(poll)
        if stop["now"]:
            return


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="HTTP worker processes (uvicorn).")] = 1,
    migrate: Annotated[bool, typer.Option(help="Apply database migrations first (default on for SQLite).")]
    = False,
) -> None:
    """Serve the HTTP API. In embedded mode (no broker) also run jobs on an in-process worker thread."""
    settings = get_settings()
    configure_logging(settings)
    if migrate or settings.database_url.startswith("sqlite"):
        from core.migrate import upgrade

        upgrade(settings.database_url)
    import uvicorn

    if workers > 1:
        _share_metrics(settings.metrics_multiproc_dir)
    runner = None
    if settings.embedded:
        from worker.embedded import EmbeddedRunner

        runner = EmbeddedRunner(settings).start()
    # uvicorn handles SIGINT/SIGTERM itself, then re-raises the signal under the handlers it found: with
    # these in place the re-raise is harmless and the embedded worker still gets to hand its job back.
    received: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    try:
        uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level=settings.log_level.lower(), timeout_graceful_shutdown=10)
    finally:
        if runner is not None:
            runner.stop()
    sys.exit(0)


def _share_metrics(folder: Path | None) -> None:
    """Several HTTP processes: prometheus_client's multiprocess mode, so any process's /metrics shows the sum.

    Set before uvicorn spawns its workers (they inherit the environment); the folder is emptied first, or
    counters of an earlier run would be added in.
    """
    import atexit
    import os
    import shutil
    import tempfile

    if folder is None:
        path = Path(tempfile.mkdtemp(prefix="lethe-metrics-"))
        atexit.register(shutil.rmtree, path, True)
    else:
        path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    log.info("metrics shared across HTTP processes", folder=str(path))
