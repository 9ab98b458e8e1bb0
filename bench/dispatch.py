"""Dispatch benchmark: submit → start latency, priority order and jobs/s through Redis with one Celery worker.

    python bench/dispatch.py --jobs 100 --low 50 --high 5 --burst 300

Starts its own redis-server (free port), Postgres database (dropped afterwards), one
`celery -A worker.app worker -Q default --pool=solo` and `lethe beat` (the outbox relay + background
services) as subprocesses. The job is a trivial real one: a model validation (architecture detection +
fingerprint) of a minimal diffusers folder — a light job, on the `default` lane — so what is measured is the
dispatch path, not the engine:

    commit job row + outbox row  →  relay publishes the doorbell  →  the worker wakes and leases the NEXT job
    by (priority, due, age) with SKIP LOCKED (attempt 1, audit event)  →  runs  →  one transaction marks it done.

- latency phase: `--jobs` submissions one at a time, `--gap` seconds apart; submit→start is
  `jobs.started_at − commit time` (the same clock: one machine). Target: p95 <= 1 s.
- priority phase: `--low` low-priority jobs committed at once, then `--high` high-priority ones. A high job's
  queue position at start = how many jobs started after the high ones were submitted and before it (0 = next).
  Target: every high job starts before every low job still waiting then (positions < `--high`), and the high
  jobs' submit→start p95 <= 1 s.
- throughput phase: `--burst` submissions committed at once; jobs/s = burst / (last finish − first submit).
Prints a table and writes bench/results/dispatch.json and dispatch.png (the priority phase's start order).
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


def priority_order(jobs: list[Any], high: set[uuid.UUID], high_submitted: datetime) -> dict[str, Any]:
    """Start order of the priority phase: how many low jobs had started before the high ones were submitted,
    and each high job's position among the jobs that started after that (0 = the next to start)."""
    before = [j for j in jobs if j.started_at < high_submitted]
    after = sorted((j for j in jobs if j.started_at >= high_submitted), key=lambda j: j.started_at)
    positions = [i for i, j in enumerate(after) if j.id in high]
    remaining_low = [i for i, j in enumerate(after) if j.id not in high]
    return {
        "low_started_before": len(before),
        "high_positions": positions,
        "all_high_first": bool(positions) and (not remaining_low or max(positions) < min(remaining_low)),
        "order": ["high" if j.id in high else "low" for j in after],
    }


def start_order_chart(phase: dict[str, Any], path: Path) -> None:
    """One bar per job that started after the high-priority jobs were submitted, in start order: red = high."""
    from PIL import Image, ImageDraw

    order = phase["start_order"]
    bar, gap, left, top = 14, 3, 20, 50
    w = left * 2 + len(order) * (bar + gap)
    img = Image.new("RGB", (max(w, 520), 150), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 8), f"start order after the {phase['high_jobs']} high-priority jobs were submitted "
                      f"({phase['low_started_before_high_submit']} low had started before)", fill="black")
    d.text((left, 24), f"high queue position p95: {phase['high_queue_position_at_start']['p95']}   "
                       f"high submit->start p95: {phase['high_submit_to_start_s']['p95']:.3f} s", fill="black")
    for i, kind in enumerate(order):
        x = left + i * (bar + gap)
        d.rectangle((x, top, x + bar, top + 60), fill=(200, 50, 50) if kind == "high" else (170, 170, 170))
        if i % 10 == 0:
            d.text((x, top + 66), str(i), fill="black")
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100, help="Latency phase: submissions, one at a time.")
    ap.add_argument("--gap", type=float, default=0.5,
                    help="Seconds between latency-phase submissions (slower than the worker drains them).")
    ap.add_argument("--low", type=int, default=50, help="Priority phase: low-priority jobs committed first.")
    ap.add_argument("--high", type=int, default=5, help="Priority phase: high-priority jobs committed after them.")
    ap.add_argument("--burst", type=int, default=300, help="Throughput phase: submissions committed at once.")
    ap.add_argument("--pg", default=os.environ.get("LETHE_TEST_DATABASE_URL",
                                                   "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
                    help="Admin Postgres URL; a scratch database is created and dropped.")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dispatch.json")
    args = ap.parse_args()

    load_start = os.getloadavg()[0]  # the box is shared: the result says how busy it was
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
        start("worker", [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q", "default", "--pool=solo",
                         "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"])
        start("beat", [sys.executable, "-m", "core.cli", "beat"])
        with unit_of_work() as s:
            tenant = Tenant(name="bench")
            s.add(tenant)
            s.flush()
            tenant_id = tenant.id

        def submit(n: int, priority: int = 0) -> list[tuple[uuid.UUID, datetime]]:
            """Commit n (model, validation job + doorbell) pairs in one transaction; returns ids + commit time."""
            with unit_of_work() as s:
                ids = []
                for _ in range(n):
                    model = RegisteredModel(tenant_id=tenant_id, name=f"m-{uuid.uuid4().hex[:10]}",
                                            source_uri=f"file://{model_dir}", status=ModelStatus.pending)
                    s.add(model)
                    s.flush()
                    ids.append(create_job(s, tenant_id=tenant_id, kind=JobKind.validate_model,
                                          model_id=model.id, priority=priority).id)
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

        console.print(f"priority phase: {args.low} low-priority jobs at once, then {args.high} high-priority")
        lows = submit(args.low, priority=0)
        from core.timeutil import utcnow

        high_submitted = utcnow()  # before the high jobs' transaction: one may start before `submit` returns
        highs = submit(args.high, priority=10)
        prio_ids = [i for i, _ in lows + highs]
        wait(lambda: all(j.state == JobState.succeeded for j in rows(prio_ids)), 300, "priority-phase jobs")
        prio_rows = rows(prio_ids)
        prio = priority_order(prio_rows, {i for i, _ in highs}, high_submitted)
        by_prio = {j.id: j for j in prio_rows}
        high_latency = [(by_prio[i].started_at - t).total_seconds() for i, t in highs]

        console.print(f"throughput phase: {args.burst} submissions at once")
        t0 = time.monotonic()
        burst = submit(args.burst)
        burst_ids = [i for i, _ in burst]
        wait(lambda: all(j.state == JobState.succeeded for j in rows(burst_ids)), 600, "burst jobs")
        done = rows(burst_ids)
        first_commit = burst[0][1]
        span = (max(j.finished_at for j in done) - first_commit).total_seconds()
        wall = time.monotonic() - t0
        attempts = sorted({j.attempt for j in rows(ids + prio_ids + burst_ids)})

        result = {
            "benchmark": "dispatch",
            "date": datetime.now().isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "load_avg_1m_start": round(load_start, 2), "load_avg_1m_end": round(os.getloadavg()[0], 2)},
            "setup": {"broker": "redis (private)", "database": "postgres", "workers": 1, "pool": "solo",
                      "relay": "lethe beat (outbox poll 0.1 s)", "job": "validate_model on a minimal folder"},
            "latency_phase": {
                "jobs": args.jobs, "gap_s": args.gap,
                "submit_to_start_s": {"p50": round(pct(latencies, 0.5), 4), "p95": round(pct(latencies, 0.95), 4),
                                      "p99": round(pct(latencies, 0.99), 4), "max": round(max(latencies), 4),
                                      "mean": round(statistics.mean(latencies), 4)},
                "job_run_s_p50": round(pct(run_times, 0.5), 4),
            },
            "priority_phase": {
                "low_jobs": args.low, "high_jobs": args.high,
                "low_started_before_high_submit": prio["low_started_before"],
                "high_queue_position_at_start": {"values": prio["high_positions"],
                                                 "p95": pct(prio["high_positions"], 0.95),
                                                 "max": max(prio["high_positions"])},
                "all_high_before_remaining_low": prio["all_high_first"],
                "high_submit_to_start_s": {"p50": round(pct(high_latency, 0.5), 4),
                                           "p95": round(pct(high_latency, 0.95), 4),
                                           "max": round(max(high_latency), 4)},
                "start_order": prio["order"],
            },
            "throughput_phase": {"jobs": args.burst, "span_s": round(span, 3), "wall_s": round(wall, 3),
                                 "jobs_per_s": round(args.burst / span, 2)},
            "attempts_seen": attempts,
            "target": {"submit_to_start_p95_s": 1.0,
                       "met": pct(latencies, 0.95) <= 1.0,
                       "high_priority_first": prio["all_high_first"],
                       "high_submit_to_start_p95_met": pct(high_latency, 0.95) <= 1.0},
        }
        table = Table(title="Lethe dispatch (Redis + 1 solo worker)")
        table.add_column("metric")
        table.add_column("value", justify="right")
        lat = result["latency_phase"]["submit_to_start_s"]
        for name in ("p50", "p95", "p99", "max"):
            table.add_row(f"submit→start {name} (s)", f"{lat[name]:.3f}")
        table.add_row("job run p50 (s)", f"{result['latency_phase']['job_run_s_p50']:.3f}")
        pp = result["priority_phase"]
        table.add_row(f"high queue position at start p95 ({args.high} high after {args.low} low)",
                      f"{pp['high_queue_position_at_start']['p95']}")
        table.add_row("high queue positions", ",".join(map(str, pp["high_queue_position_at_start"]["values"])))
        table.add_row("low jobs started before the high ones were submitted", str(pp["low_started_before_high_submit"]))
        table.add_row("all high before remaining low", "yes" if pp["all_high_before_remaining_low"] else "NO")
        table.add_row("high submit→start p95 (s)", f"{pp['high_submit_to_start_s']['p95']:.3f}")
        table.add_row(f"throughput ({args.burst} jobs)", f"{result['throughput_phase']['jobs_per_s']:.1f} jobs/s")
        table.add_row("attempts per job", ",".join(map(str, attempts)))
        table.add_row("target p95 <= 1 s", "met" if result["target"]["met"] else "NOT met")
        table.add_row("target high priority first", "met" if result["target"]["high_priority_first"] else "NOT met")
        console.print(table)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        start_order_chart(result["priority_phase"], args.out.with_suffix(".png"))
        console.print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
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
