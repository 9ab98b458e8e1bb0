"""Live-server probe: schemathesis against uvicorn on Postgres, as a valid API key, stateful links on.

    python bench/schemathesis_probe.py --max-examples 200 --max-time 600 --workers 2

Creates its own Postgres database (dropped afterwards) and data dir, migrates, makes a tenant with an admin
key and ready models (one behind the id the OpenAPI example names), serves the app with uvicorn, then runs the
schemathesis CLI — phases examples, coverage, fuzzing and stateful (links inferred from Location headers) —
with the `not_a_server_error` check and a HAR report. Every exchange is counted from the HAR: the run passes
when there are no 5xx. Prints a table and writes bench/results/schemathesis_probe.json.
The default test run calls `probe()` at a CI size (tests/security/test_schemathesis_live.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "schemathesis_probe.json"
PHASES = "examples,coverage,fuzzing,stateful"
# Rows the probe's requests created, reported with the result.
TABLES = ("erasure_requests", "models", "schedules", "webhook_endpoints", "uploads", "audit_events")


@dataclass
class ProbeResult:
    requests: int
    statuses: dict[str, int]
    by_operation_5xx: dict[str, int]
    server_errors: list[dict[str, Any]]
    seconds: float
    exit_code: int
    max_examples: int
    phases: str
    output_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def five_xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if code.startswith("5"))


def prepare(db_url: str, data_dir: Path) -> str:
    """Migrate, create tenant `acme` with an admin key and ready models; returns the key."""
    from core.config import Settings
    from core.db import get_engine, unit_of_work
    from core.erasure.schemas import _EXAMPLE as ERASURE_EXAMPLE
    from core.migrate import upgrade
    from core.registry.models import ModelStatus, RegisteredModel
    from core.tenancy import service as tenancy

    upgrade(db_url)
    settings = Settings(database_url=db_url, data_dir=data_dir)
    engine = get_engine(settings)
    with unit_of_work(engine) as s:
        tenant = tenancy.get_or_create_tenant(s, "acme", require_approval=False)
        _, key = tenancy.create_key(s, settings, tenant, "admin", name="schemathesis")
        s.add(RegisteredModel(id=uuid.UUID(ERASURE_EXAMPLE["model_id"]), tenant_id=tenant.id, name="example",
                              source_uri="file:///example", status=ModelStatus.ready, architecture="sd1",
                              fingerprint="cd" * 32))
        for i in range(2):
            s.add(RegisteredModel(tenant_id=tenant.id, name=f"ready-{i}", source_uri=f"file:///ready-{i}",
                                  status=ModelStatus.ready, architecture="sd1", fingerprint=f"{i:02d}" * 32))
    engine.dispose()
    return key


def server_env(db_url: str, data_dir: Path) -> dict[str, str]:
    (data_dir / "models").mkdir(parents=True, exist_ok=True)
    return {"LETHE_DATABASE_URL": db_url, "LETHE_DATA_DIR": str(data_dir),
            "LETHE_RATE_LIMIT_PER_MINUTE": "0", "LETHE_RATE_LIMIT_ANONYMOUS_PER_MINUTE": "0"}


def run_schemathesis(base: str, key: str, *, max_examples: int, workers: int, seed: int, report_dir: Path,
                     phases: str = PHASES, max_time: float | None = None, timeout: float = 3600) -> ProbeResult:
    har = report_dir / "probe.har"
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
        "-H", f"Authorization: Bearer {key}",
        "--checks", "not_a_server_error", "--phases", phases, "--max-examples", str(max_examples),
        "--workers", str(workers), "--seed", str(seed), "--no-shrink", "--continue-on-failure",
        "--suppress-health-check", "all", "--request-timeout", "60",
        "--report", "har", "--report-har-path", str(har), "--output-sanitize", "true",
    ]
    if max_time:
        cmd += ["--max-time", str(int(max_time))]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=report_dir,
                          env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    seconds = time.monotonic() - started
    statuses: Counter[str] = Counter()
    by_op: Counter[str] = Counter()
    errors: list[dict[str, Any]] = []
    if har.exists():
        for entry in json.loads(har.read_text())["log"]["entries"]:
            status = int(entry["response"]["status"])
            statuses[str(status)] += 1
            if status >= 500:
                path = entry["request"]["url"].split(base, 1)[-1].split("?", 1)[0]
                by_op[f"{entry['request']['method']} {path}"] += 1
                if len(errors) < 20:
                    errors.append({"method": entry["request"]["method"], "url": entry["request"]["url"],
                                   "status": status, "body": (entry["request"].get("postData") or {}).get("text")})
    output = proc.stdout + proc.stderr
    return ProbeResult(requests=sum(statuses.values()), statuses=dict(sorted(statuses.items())),
                       by_operation_5xx=dict(by_op), server_errors=errors, seconds=round(seconds, 1),
                       exit_code=proc.returncode, max_examples=max_examples, phases=phases,
                       output_tail=output[-4000:], extra={"stateful": _stateful_summary(output)})


def probe(db_url: str, *, max_examples: int, workers: int = 2, seed: int = 12, uvicorn_workers: int = 1,
          max_time: float | None = None, keep: Path | None = None) -> ProbeResult:
    """Prepare `db_url` (an empty database), serve it, run schemathesis; the server's log is kept in `keep`."""
    from tests.security.live import uvicorn_server

    work = Path(tempfile.mkdtemp(prefix="lethe-probe-"))
    try:
        data_dir = work / "data"
        key = prepare(db_url, data_dir)
        log_path = (keep or work) / "server.log"
        with uvicorn_server(server_env(db_url, data_dir), workers=uvicorn_workers, log_path=log_path) as base:
            return run_schemathesis(base, key, max_examples=max_examples, workers=workers, seed=seed,
                                    report_dir=work, max_time=max_time)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _stateful_summary(output: str) -> dict[str, str]:
    """The stateful phase's scenario and link counts as schemathesis printed them."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and name in ("Scenarios", "API Links"):
            found[name.lower().replace(" ", "_")] = value.strip()
    return found


def main() -> None:
    import sqlalchemy as sa
    from rich.console import Console
    from rich.table import Table

    from tests import services

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=200, help="Test cases per operation and phase.")
    parser.add_argument("--max-time", type=float, default=600,
                        help="Time budget (s): fuzzing and stateful phases repeat until it is spent (0 = none).")
    parser.add_argument("--workers", type=int, default=2, help="Concurrent schemathesis workers.")
    parser.add_argument("--uvicorn-workers", type=int, default=2, help="uvicorn worker processes.")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--min-requests", type=int, default=10_000, help="Fail unless at least this many ran.")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    console = Console(width=140)
    with services.postgres_database("lethe_probe") as db_url:
        result = probe(db_url, max_examples=args.max_examples, workers=args.workers, seed=args.seed,
                       uvicorn_workers=args.uvicorn_workers, max_time=args.max_time or None)
        engine = sa.create_engine(db_url)
        with engine.connect() as conn:
            rows = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
        engine.dispose()
    console.print(f"schemathesis live probe: {result.requests} requests in {result.seconds:.0f} s, "
                  f"{result.five_xx} 5xx; stateful {result.extra['stateful']}")
    table = Table()
    table.add_column("status", justify="right")
    table.add_column("responses", justify="right")
    for code, n in result.statuses.items():
        table.add_row(code, str(n))
    console.print(table)
    if result.by_operation_5xx:
        console.print("5xx by operation:", result.by_operation_5xx)
    summary = {
        "benchmark": "schemathesis_probe",
        "requests": result.requests,
        "five_xx": result.five_xx,
        "statuses": result.statuses,
        "five_xx_by_operation": result.by_operation_5xx,
        "server_errors": result.server_errors,
        "seconds": result.seconds,
        "schemathesis_exit_code": result.exit_code,
        "phases": result.phases,
        "max_examples": result.max_examples,
        "max_time_s": args.max_time,
        "stateful": result.extra["stateful"],
        "seed": args.seed,
        "schemathesis_workers": args.workers,
        "uvicorn_workers": args.uvicorn_workers,
        "rows_created": rows,
        "database": "postgres",
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"wrote {args.output}")
    if result.five_xx or result.requests < args.min_requests:
        console.print(f"[red]FAILED[/red]: {result.five_xx} 5xx, {result.requests} requests "
                      f"(need >= {args.min_requests})")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
