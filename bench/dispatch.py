"""Dispatch benchmark: submit → start latency and jobs/s through Redis with one Celery worker.

    python bench/dispatch.py --jobs 100 --burst 300

Starts its own redis-server (free port), Postgres database (dropped afterwards), one
`celery -A worker.app worker -Q gpu --pool=solo` and `lethe beat` (the outbox relay + sweeper) as
subprocesses. The job is a trivial real one: a model validation (architecture detection + fingerprint) of
a minimal diffusers folder, so what is measured is the dispatch path, not the engine:

    commit job row + outbox row  →  relay publishes the doorbell  →  worker receives it, leases the row
    (attempt 1, audit event)  →  runs  →  one transaction marks it done.

- latency phase: `--jobs` submissions one at a time, `--gap` seconds apart; submit→start is
  `jobs.started_at − commit time` (the same clock: one machine). Target: p95 <= 1 s.
- throughput phase: `--burst` submissions committed at once; jobs/s = burst / (last finish − first submit).
Prints a table and writes bench/results/dispatch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def minimal_model(path: Path) -> Path:
    """The smallest folder detect_architecture accepts: SD 1.x layout with one tiny weight file."""
    (path / "unet").mkdir(parents=True, exist_ok=True)
    (path / "model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}))
    (path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    (path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(os.urandom(1024))
    return path


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100, help="Latency phase: submissions, one at a time.")
    ap.add_argument("--gap", type=float, default=0.5,
                    help="Seconds between latency-phase submissions (slower than the worker drains them).")
    ap.add_argument("--burst", type=int, default=300, help="Throughput phase: submissions committed at once.")
    ap.add_argument("--pg", default=os.environ.get("LETHE_TEST_DATABASE_URL",
                                                   "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
                    help="Admin Postgres URL; a scratch database is created and dropped.")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dispatch.json")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lethe-dispatch-"))
    admin = sa.create_engine(args.pg, isolation_level="AUTOCOMMIT")
    db_name = f"lethe_bench_dispatch_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db_name}"'))
    db_url = make_url(args.pg).set(database=db_name).render_as_string(hide_password=False)
    redis_port = free_port()
    env = {**os.environ, "LETHE_DATABASE_URL": db_url, "LETHE_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
           "LETHE_DATA_DIR": str(work / "data"), "LETHE_STORE_URL": f"file://{work / 'objects'}",
           "LETHE_SWEEP_INTERVAL_SECONDS": "5", "LETHE_OUTBOX_POLL_SECONDS": "0.1",
           "LETHE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    os.environ.update({k: v for k, v in env.items() if k.startswith("LETHE_")})
    procs: list[subprocess.Popen[bytes]] = []
    console = Console()
    try:
        from core.config import get_settings

        get_settings.cache_clear()
        from core.db import unit_of_work
        from core.jobs.lifecycle import create_job
        from core.jobs.models import Job
        from core.jobs.states import JobKind, JobState
        from core.migrate import upgrade
        from core.registry.models import ModelStatus, RegisteredModel
        from core.tenancy.models import Tenant

        upgrade(db_url)
        model_dir = minimal_model(work / "model")
        logs = (work / "logs")
        logs.mkdir()

        def start(name: str, cmd: list[str]) -> None:
            procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True,
                                          stdout=(logs / f"{name}.log").open("wb"), stderr=subprocess.STDOUT))

        start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no"])
        start("worker", [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q", "gpu", "--pool=solo",
                         "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"])
        start("beat", [sys.executable, "-m", "core.cli", "beat"])
        with unit_of_work() as s:
            tenant = Tenant(name="bench")
            s.add(tenant)
            s.flush()
            tenant_id = tenant.id

        def submit(n: int) -> list[tuple[uuid.UUID, datetime]]:
            """Commit n (model, validation job + doorbell) pairs in one transaction; returns ids + commit time."""
            with unit_of_work() as s:
                ids = []
                for _ in range(n):
                    model = RegisteredModel(tenant_id=tenant_id, name=f"m-{uuid.uuid4().hex[:10]}",
                                            source_uri=f"file://{model_dir}", status=ModelStatus.pending)
                    s.add(model)
                    s.flush()
                    ids.append(create_job(s, tenant_id=tenant_id, kind=JobKind.validate_model,
                                          model_id=model.id).id)
            from core.timeutil import utcnow

            committed = utcnow()
            return [(i, committed) for i in ids]

        def rows(ids: list[uuid.UUID]) -> list[Job]:
            with unit_of_work() as s:
                return list(s.scalars(sa.select(Job).where(Job.id.in_(ids))))

        # Warm-up: the worker has imported everything and answered once.
        warm = submit(1)
        wait(lambda: rows([warm[0][0]])[0].state == JobState.succeeded, 120, "the worker to start")

        console.print(f"latency phase: {args.jobs} submissions, {args.gap}s apart")
        submitted: list[tuple[uuid.UUID, datetime]] = []
        for _ in range(args.jobs):
            submitted += submit(1)
            time.sleep(args.gap)
        ids = [i for i, _ in submitted]
        wait(lambda: all(j.state == JobState.succeeded for j in rows(ids)), 300, "latency-phase jobs")
        by_id = {j.id: j for j in rows(ids)}
        latencies = [(by_id[i].started_at - t).total_seconds() for i, t in submitted]
        run_times = [(by_id[i].finished_at - by_id[i].started_at).total_seconds() for i in ids]

        console.print(f"throughput phase: {args.burst} submissions at once")
        t0 = time.monotonic()
        burst = submit(args.burst)
        burst_ids = [i for i, _ in burst]
        wait(lambda: all(j.state == JobState.succeeded for j in rows(burst_ids)), 600, "burst jobs")
        done = rows(burst_ids)
        first_commit = burst[0][1]
        span = (max(j.finished_at for j in done) - first_commit).total_seconds()
        wall = time.monotonic() - t0
        attempts = sorted({j.attempt for j in rows(ids + burst_ids)})

        result = {
            "benchmark": "dispatch",
            "date": datetime.now().isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "setup": {"broker": "redis (private)", "database": "postgres", "workers": 1, "pool": "solo",
                      "relay": "lethe beat (outbox poll 0.1 s)", "job": "validate_model on a minimal folder"},
            "latency_phase": {
                "jobs": args.jobs, "gap_s": args.gap,
                "submit_to_start_s": {"p50": round(pct(latencies, 0.5), 4), "p95": round(pct(latencies, 0.95), 4),
                                      "p99": round(pct(latencies, 0.99), 4), "max": round(max(latencies), 4),
                                      "mean": round(statistics.mean(latencies), 4)},
                "job_run_s_p50": round(pct(run_times, 0.5), 4),
            },
            "throughput_phase": {"jobs": args.burst, "span_s": round(span, 3), "wall_s": round(wall, 3),
                                 "jobs_per_s": round(args.burst / span, 2)},
            "attempts_seen": attempts,
            "target": {"submit_to_start_p95_s": 1.0,
                       "met": pct(latencies, 0.95) <= 1.0},
        }
        table = Table(title="Lethe dispatch (Redis + 1 solo worker)")
        table.add_column("metric")
        table.add_column("value", justify="right")
        lat = result["latency_phase"]["submit_to_start_s"]
        for name in ("p50", "p95", "p99", "max"):
            table.add_row(f"submit→start {name} (s)", f"{lat[name]:.3f}")
        table.add_row("job run p50 (s)", f"{result['latency_phase']['job_run_s_p50']:.3f}")
        table.add_row(f"throughput ({args.burst} jobs)", f"{result['throughput_phase']['jobs_per_s']:.1f} jobs/s")
        table.add_row("attempts per job", ",".join(map(str, attempts)))
        table.add_row("target p95 <= 1 s", "met" if result["target"]["met"] else "NOT met")
        console.print(table)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {args.out}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        from core.db import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
