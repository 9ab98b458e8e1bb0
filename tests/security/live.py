"""A real uvicorn serving the app (on a free port, as its own process group) for tests that need a live server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from tests.children import tied_to_test

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def uvicorn_server(env: dict[str, str], *, workers: int = 1, log_path: Path | None = None) -> Iterator[str]:
    """Serve `api.app:create_app` with LETHE_* settings from `env`; yields the base URL."""
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "LETHE_LOG_LEVEL": "WARNING", **env}
    out = log_path.open("wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        tied_to_test([sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host", "127.0.0.1",
                      "--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"]),
        env=full_env, cwd=ROOT, start_new_session=True, stdout=out, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}")
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 60 s")
            time.sleep(0.1)
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if log_path and out is not subprocess.DEVNULL:
            out.close()  # type: ignore[union-attr]
