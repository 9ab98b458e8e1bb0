"""Every Lethe service of docker-compose.yml started from its own command line and environment — as compose
resolves them, plus the image's ENV — without containers: Postgres, Redis and S3 (moto) are the local ones,
and each service's health check (the compose `test` command) must pass, also while the GPU worker runs a job.

What is substituted, and why: service host names become the local addresses; /var/lib/lethe (the shared
`lethedata` volume) a temporary folder all services share; each container's own /tmp/lethe.alive a file per
service; published ports free ones; `lethe` the interpreter running `core.cli`; LETHE_DEVICE cuda → cpu (no
GPU here). Added: a 1 s heartbeat (so the test sees it advance during a short job), the tiny model's
verification threshold (a random-weight UNet is not a real erasure) and one torch thread (2 shared cores).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from safetensors import safe_open

from core.config import get_settings
from core.erasure.states import RequestStatus
from core.jobs.states import JobState
from core.storage import get_store
from core.storage.s3 import S3Store
from tests.integration.worker_support import (
    FAST_PARAMS,
    REPO,
    artifacts,
    free_port,
    job_row,
    processes,
    request_row,
    seed_model,
    seed_request,
    seed_tenant,
    tiny_model,  # noqa: F401  (fixture)
    use_database,
    wait_for,
)
from tests.tools import dev_tool

LETHE_SERVICES = ("migrate", "api", "worker", "default-worker", "beat")


def compose_config() -> dict[str, Any]:
    binary = dev_tool("docker-compose")
    out = subprocess.run([binary, "-f", str(REPO / "docker-compose.yml"), "config", "--format", "json"],
                         capture_output=True, text=True, timeout=60,
                         env={"LETHE_POSTGRES_PASSWORD": "ci", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def image_env(dockerfile: str) -> dict[str, str]:
    """The ENV instructions of an image (KEY=VALUE pairs, continuation lines joined)."""
    text = (REPO / dockerfile).read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in shlex.split(line[4:])))
    return env


def image_of(service: dict[str, Any]) -> str:
    return "docker/worker.Dockerfile" if service["image"].startswith("lethe-worker") else "docker/api.Dockerfile"


class Local:
    """Maps compose's addresses and paths to this machine's."""

    def __init__(self, tmp_path: Path, pg_url: str, redis_url: str, s3_endpoint: str, bucket: str,
                 models: Path) -> None:
        self.data = tmp_path / "lethedata"
        self.pg_url, self.redis_url, self.s3 = pg_url, redis_url, s3_endpoint
        self.public_s3 = s3_endpoint.replace("127.0.0.1", "localhost")
        self.bucket, self.models, self.tmp_path = bucket, models, tmp_path
        self.api_port, self.metrics_port = free_port(), free_port()

    def alive(self, name: str) -> str:
        return str(self.tmp_path / f"{name}.alive")

    def value(self, name: str, value: str) -> str:
        value = re.sub(r"postgresql\+psycopg://[^ ]*@postgres:5432/lethe", self.pg_url, value)
        value = value.replace("redis://redis:6379/0", self.redis_url)
        value = value.replace("http://minio:9000", self.s3).replace("http://localhost:9000", self.public_s3)
        value = value.replace("s3://lethe/", f"s3://{self.bucket}/").replace("/var/lib/lethe", str(self.data))
        value = value.replace("127.0.0.1:8000", f"127.0.0.1:{self.api_port}")
        value = value.replace("/tmp/lethe.alive", self.alive(name))
        return str(self.models) if value == "/models" else value

    def command(self, name: str, argv: list[str]) -> list[str]:
        out = [self.value(name, a) for a in argv]
        if out[0] == "lethe":
            out = [sys.executable, "-m", "core.cli", *out[1:]]
        elif out[0] == "python":
            out[0] = sys.executable
        if "serve" in out:
            out[out.index("--port") + 1] = str(self.api_port)
        return out

    def environment(self, name: str, service: dict[str, Any]) -> dict[str, str]:
        env = {**image_env(image_of(service)), **{k: str(v) for k, v in service.get("environment", {}).items()}}
        env = {k: self.value(name, v) for k, v in env.items()}
        env["LETHE_DEVICE"] = "cpu" if env.get("LETHE_DEVICE") == "cuda" else env.get("LETHE_DEVICE", "auto")
        if env.get("LETHE_WORKER_METRICS_PORT"):
            env["LETHE_WORKER_METRICS_PORT"] = str(self.metrics_port)
        env.update(LETHE_HEARTBEAT_INTERVAL_SECONDS="1", LETHE_VERIFY_MIN_GAP_CLOSURE="0",
                   LETHE_JOB_PROGRESS_INTERVAL_SECONDS="0.5", LETHE_TORCH_THREADS="1", OMP_NUM_THREADS="1",
                   PATH="/usr/bin:/bin", HOME=str(self.tmp_path), PYTHONPATH=str(REPO))
        return env


def healthy(local: Local, name: str, service: dict[str, Any]) -> bool:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", f"{name}: health check runs without a shell"
    out = subprocess.run(local.command(name, test[1:]), capture_output=True, timeout=10,
                         env={"PATH": "/usr/bin:/bin"})
    return out.returncode == 0


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.slow(minutes=0.9)
def test_every_compose_service_starts_from_its_command_line_and_passes_its_health_check(
    pg_url: str, redis_url: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    tiny_model: Path,  # noqa: F811
) -> None:
    config = compose_config()
    services = config["services"]
    assert set(LETHE_SERVICES) <= set(services)
    local = Local(tmp_path, pg_url, redis_url, s3_endpoint, f"b{uuid.uuid4().hex[:10]}", tiny_model.parent)
    # This process reads the same database and bucket to seed a request and check the results.
    use_database(monkeypatch, pg_url, broker_url=redis_url, store_url=f"s3://{local.bucket}/artifacts",
                 s3_endpoint_url=s3_endpoint, data_dir=str(tmp_path / "seeder"))
    store = get_store()
    assert isinstance(store, S3Store)
    store.ensure_bucket()  # the compose file's createbucket job

    migrate = services["migrate"]
    done = subprocess.run(local.command("migrate", migrate["command"]), env=local.environment("migrate", migrate),
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]

    with processes(tmp_path) as procs:
        for name in ("api", "worker", "default-worker", "beat"):
            procs.start(name, local.command(name, services[name]["command"]), local.environment(name, services[name]))
        for name in ("api", "worker", "default-worker", "beat"):
            wait_for(lambda n=name: healthy(local, n, services[n]), 90, f"{name} health check")
        assert all(p.poll() is None for p in procs.procs), procs.logs()

        # The GPU worker stays healthy while it runs a job: its heartbeat file keeps moving.
        tenant = seed_tenant()
        model = seed_model(tenant, tiny_model, fingerprint="fp-compose")
        request_id, job_id = seed_request(tenant, model, params={**FAST_PARAMS, "steps": 40})
        wait_for(lambda: job_row(job_id).state == JobState.running, 90, "the job to start (beat relays it)")
        alive = Path(local.alive("worker"))
        seen = {alive.stat().st_mtime}
        while job_row(job_id).state == JobState.running:
            assert healthy(local, "worker", services["worker"]), "worker unhealthy during its job"
            seen.add(alive.stat().st_mtime)
            time.sleep(0.5)
        assert len(seen) >= 2, "the heartbeat file was not touched while the job ran"
        wait_for(lambda: job_row(job_id).state == JobState.succeeded, 120, "the job to succeed")
        assert request_row(request_id).status == RequestStatus.succeeded
        rows = {a.name: a for a in artifacts(job_id)}
        assert {"README.md", "adapter/lora_kohya.safetensors", "fused/model_index.json"} <= set(rows)
        # The job's provenance reaches the kohya metadata and the model card, with the checks that passed.
        kohya = tmp_path / "kohya.safetensors"
        kohya.write_bytes(store.get(rows["adapter/lora_kohya.safetensors"].key))
        with safe_open(str(kohya), "pt") as fh:
            meta = fh.metadata()
        assert meta["lethe.request_id"] == str(request_id) and meta["lethe.base_fingerprint"] == "fp-compose"
        card = store.get(rows["README.md"].key).decode()
        assert str(request_id) in card and "fp-compose" in card and "| forget_gap_closure |" in card

        # The worker serves its job metrics; the API its own.
        text = httpx.get(f"http://127.0.0.1:{local.metrics_port}/metrics", timeout=10).text
        assert metric(text, "lethe_worker_jobs_total", kind="erase", outcome="succeeded") == 1
        assert metric(text, "lethe_worker_stage_duration_seconds_count", kind="erase", stage="distill") == 1
        assert metric(text, "lethe_worker_job_duration_seconds_count", kind="erase", outcome="succeeded") == 1
        assert metric(text, "lethe_worker_queue_depth", queue="gpu") == 0
        assert metric(text, "lethe_worker_lease_losses_total", kind="erase") == 0
        api = httpx.get(f"http://127.0.0.1:{local.api_port}/metrics", timeout=10).text
        assert metric(api, "lethe_jobs", kind="erase", state="succeeded") == 1
        for proc in procs.procs:
            assert proc.poll() is None, procs.logs()
    get_settings.cache_clear()
