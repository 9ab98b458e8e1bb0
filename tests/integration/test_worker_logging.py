"""A Celery worker process logs through the service's chain however it was started (`lethe worker` or
`celery -A worker.app worker`): tracebacks as plain text without local variables, secrets redacted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.worker_support import REPO

SCRIPT = """
from celery.signals import worker_init
import worker.app
worker_init.send(sender=None)  # what `celery worker` sends as the worker starts
from core.config import get_settings
from core.logging import get_logger

def run_job(settings):
    raise RuntimeError("the job broke")

try:
    run_job(get_settings())
except RuntimeError:
    get_logger("test").debug("traceback", exc_info=True)
"""


def test_a_worker_traceback_has_no_locals_and_no_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    env.update(PYTHONPATH=str(REPO), LETHE_DATA_DIR=str(tmp_path), LETHE_LOG_LEVEL="DEBUG",
               LETHE_BROKER_URL="redis://127.0.0.1:1/0",
               LETHE_DATABASE_URL="postgresql+psycopg://lethe:pw-s3cret-123@127.0.0.1:1/lethe")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    logged = out.stdout + out.stderr
    assert out.returncode == 0, logged[-2000:]
    assert "Traceback" in logged and "the job broke" in logged, logged[-2000:]
    assert "locals" not in logged, "local variables (settings among them) stay out of logs"
    assert "pw-s3cret-123" not in logged
