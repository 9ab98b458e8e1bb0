"""Helpers for the worker-side tests: a migrated database, seeded tenants/models/requests, process control."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.config import get_settings
from core.db import dispose_engines, unit_of_work
from core.erasure.models import ErasureRequest
from core.erasure.states import RequestStatus
from core.jobs.lifecycle import create_job
from core.jobs.models import Artifact, Job
from core.jobs.states import JobKind
from core.migrate import upgrade
from core.registry.models import ModelStatus, RegisteredModel
from core.tenancy.models import Tenant
from tests import pace
from tests.children import tied_to_test

REPO = Path(__file__).resolve().parents[2]

# A real but quick SPARE run on a tiny pipeline (seconds on CPU) that passes verification: on this random
# tiny UNet the testbed-tuned lr (1e-2) overshoots in a few steps (forget gap closure < 0 at 3 steps);
# 10 steps at 3e-3 close 0.78–0.85 of it across seeds.
FAST_PARAMS: dict[str, Any] = {
    "steps": 10, "lr": 3e-3, "sample_steps": 2, "max_forget_prompts": 2, "max_retain_prompts": 2, "grid_seeds": 1,
}


def use_database(monkeypatch: pytest.MonkeyPatch, url: str, **env: str) -> None:
    """Point this process's settings at `url` (migrated to head) plus any LETHE_* overrides."""
    monkeypatch.setenv("LETHE_DATABASE_URL", url)
    monkeypatch.setenv("LETHE_TORCH_THREADS", "1")  # 2 shared cores: oversubscribed torch runs ~15x slower
    for key, value in env.items():
        monkeypatch.setenv(f"LETHE_{key.upper()}", value)
    get_settings.cache_clear()
    dispose_engines()
    upgrade(url)


def tiny_model_dir(root: Path) -> Path:
    from tests.tiny_pipelines import save_tiny

    path = root / "tiny-sd1"
    if not (path / "model_index.json").is_file():
        save_tiny("sd1", path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("models"))


def seed_tenant(name: str | None = None) -> uuid.UUID:
    with unit_of_work() as s:
        tenant = Tenant(name=name or f"t-{uuid.uuid4().hex[:8]}")
        s.add(tenant)
        s.flush()
        return tenant.id


def seed_model(tenant_id: uuid.UUID, source: Path | str, *, status: ModelStatus = ModelStatus.ready,
               fingerprint: str | None = None, tags: list[str] | None = None, name: str | None = None) -> uuid.UUID:
    uri = source if isinstance(source, str) else f"file://{source}"
    with unit_of_work() as s:
        model = RegisteredModel(tenant_id=tenant_id, name=name or f"m-{uuid.uuid4().hex[:8]}", source_uri=uri,
                                status=status, fingerprint=fingerprint, tags=tags or [],
                                architecture="sd1" if status == ModelStatus.ready else None)
        s.add(model)
        s.flush()
        from core.versions.service import create_v1

        create_v1(s, model, "test")
        return model.id


def seed_request(tenant_id: uuid.UUID, model_id: uuid.UUID, *, params: dict[str, Any] | None = None,
                 target: str = "circle", surrogate: str = "square", max_attempts: int = 3,
                 due_at: Any = None) -> tuple[uuid.UUID, uuid.UUID]:
    """A queued erasure request and its job (with the outbox doorbell), as the API's submit writes them."""
    with unit_of_work() as s:
        request = ErasureRequest(
            tenant_id=tenant_id, model_id=model_id, status=RequestStatus.queued, method="spare",
            concepts=[{"target": target, "surrogate": surrogate, "kind": "object", "prompts": [],
                       "example_images": []}],
            retain=[], params=dict(FAST_PARAMS if params is None else params), submitted_by="test",
            due_at=due_at,
        )
        s.add(request)
        s.flush()
        job = create_job(s, tenant_id=tenant_id, kind=JobKind.erase, model_id=model_id, request_id=request.id,
                         max_attempts=max_attempts)
        return request.id, job.id


def job_row(job_id: uuid.UUID) -> Job:
    with unit_of_work() as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.expunge(job)
        return job


def request_row(request_id: uuid.UUID) -> ErasureRequest:
    with unit_of_work() as s:
        request = s.get(ErasureRequest, request_id)
        assert request is not None
        s.expunge(request)
        return request


def artifacts(job_id: uuid.UUID) -> list[Artifact]:
    with unit_of_work() as s:
        rows = list(s.scalars(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.name)))
        for row in rows:
            s.expunge(row)
        return rows


def audit_actions(subject: str) -> list[tuple[str, dict[str, Any]]]:
    from core.audit.models import AuditEvent

    with unit_of_work() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.subject == subject).order_by(AuditEvent.seq))
        return [(r.action, dict(r.payload)) for r in rows]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # the database may be down in the fault tests
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**settings: str) -> dict[str, str]:
    """Environment for a child process: this test's LETHE_* settings plus overrides."""
    env = {k: v for k, v in os.environ.items()}
    env.update({f"LETHE_{k.upper()}": str(v) for k, v in settings.items()})
    env["PYTHONPATH"] = str(REPO)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["OMP_NUM_THREADS"] = "1"
    env["LETHE_TORCH_THREADS"] = "1"
    return env


def probe_job(job_id: uuid.UUID, spy: str, report: str = "{}") -> dict[str, Any]:
    """Run the worker's erasure of `job_id` in a child process, with `spy` (Python source defining
    `spy(pipeline, spec, config, **kw)`, which may call `real`, the engine the worker would run, and record into
    the dict `seen`) as its engine. Returns `seen`, the job's outcome and the `report` expression's dict,
    evaluated in the child after the job."""
    script = "\n".join([
        "import json, sys",
        "from core import wiring",
        "from core.erasure import execution",
        "from core.jobs.runner import execute",
        "wiring.load()",
        "seen = {}",
        "real = execution.default_erase()",
        spy,
        'outcome = execute(sys.argv[1], worker_id="probe", erase_fn=spy)',
        f'print("RESULT " + json.dumps({{"outcome": outcome, **seen, **({report})}}))',
    ])
    proc = subprocess.run([sys.executable, "-c", script, str(job_id)], env=child_env(), capture_output=True,
                          text=True, timeout=pace.scaled(600))
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-4000:]
    return dict(json.loads(line.removeprefix("RESULT ")))


class Processes:
    """Child processes started by a test; all are killed (by PID, with their process group) at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(tied_to_test(args), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def worker(self, env: dict[str, str], *, queues: str = "gpu", name: str = "worker",
               concurrency: int = 1) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool=solo" if concurrency == 1
                else "--pool=prefork", "-Q", queues, "--loglevel=INFO", "--without-gossip", "--without-mingle",
                "--without-heartbeat", "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h"]
        if concurrency > 1:
            args.append(f"--concurrency={concurrency}")
        return self.start(name, args, env)

    @staticmethod
    def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            self.kill(proc, signal.SIGKILL)

    def logs(self, tail: int | None = 4000) -> str:
        """Each process's log (its last `tail` characters, for failure messages; None: all of it)."""
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-tail if tail else 0:]}"
                         for p in sorted(self.log_dir.glob("*.log")))


@contextmanager
def processes(tmp_path: Path) -> Iterator[Processes]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)
    procs = Processes(log_dir)
    try:
        yield procs
    except BaseException:
        print(procs.logs())
        raise
    finally:
        procs.stop_all()


class TcpProxy:
    """A loopback TCP proxy we can cut and restore: the database "goes away" for the processes behind it
    without touching the shared server other tests use."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.resume()

    def resume(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and break every open one."""
        if self._listener is not None:
            # shutdown() first: close() alone leaves a socket that a thread blocks on in accept() listening.
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


class PrivateRedis:
    """A redis-server of this test's own (no persistence), so restarting it loses what it held."""

    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = self.procs.start("redis", ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                               "--save", "", "--appendonly", "no"], dict(os.environ))
        import redis

        wait_for(lambda: redis.Redis(port=self.port).ping(), 10, "private redis")

    def restart(self) -> None:
        assert self.proc is not None
        Processes.kill(self.proc)
        self.start()


class RestartableS3:
    """moto's S3 server on a fixed port that can go down and come back with its state (same process)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._cls = ThreadedMotoServer
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server: Any = None
        self.start()

    def start(self) -> None:
        self.server = self._cls(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


class Recorder:
    """A publisher that records webhook doorbells instead of sending them (jobs are ignored)."""

    def __init__(self) -> None:
        self.deliveries: list[uuid.UUID] = []

    def enqueue_job(self, job_id: uuid.UUID, kind: str) -> None:
        pass

    def deliver_webhook(self, delivery_id: uuid.UUID) -> None:
        self.deliveries.append(delivery_id)
