"""docker-compose.yml, .env.example and docs/configuration.md stay in step with Settings."""

import re
import subprocess
from pathlib import Path

import yaml

from core.settings_reference import COMPOSE_ONLY, env_example, env_names, markdown_reference
from tests.tools import dev_tool

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
    binary = dev_tool("docker-compose")
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


TORCH_STACK = {"torch", "diffusers", "transformers", "peft", "safetensors", "accelerate", "tokenizers"}


def _name(requirement: str) -> str:
    from packaging.requirements import Requirement

    return Requirement(requirement).name.lower().replace("_", "-")


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and " " not in line, f"constraints.txt: not an exact pin: {line!r}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def _closure(extras: set[str]) -> set[str]:
    """Distributions `pip install ".[extras]"` installs: Lethe's requirements from pyproject.toml, theirs from
    the installed packages' own metadata."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def own(wanted: set[str]) -> list[Requirement]:
        reqs = [Requirement(r) for r in project["dependencies"]]
        for extra in wanted:
            for raw in project["optional-dependencies"][extra]:
                req = Requirement(raw)
                reqs += own(set(req.extras)) if req.name == "lethe" else [req]
        return reqs

    seen: set[str] = set()
    todo = own(extras)
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for raw in metadata.requires(name) or []:
            dep = Requirement(raw)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                todo.append(dep)
    return seen


def test_one_lock_pins_every_dependency_and_ci_and_both_images_install_with_it() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = _lock()
    named = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        named |= {_name(r) for r in extra}
    assert named - {"lethe"} <= set(lock), f"not pinned in constraints.txt: {named - {'lethe'} - set(lock)}"
    assert _closure({"dev"}) <= set(lock), f"installed but not pinned: {_closure({'dev'}) - set(lock)}"
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -c constraints.txt -e ".[dev]"' in ci
    api = (ROOT / "docker" / "api.Dockerfile").read_text()
    worker = (ROOT / "docker" / "worker.Dockerfile").read_text()
    assert 'pip install -c constraints.txt ".[api]"' in api and "torch" not in api.split("RUN pip", 1)[1]
    assert 'pip install -c constraints.txt ".[worker]"' in worker
    for dockerfile in (api, worker):
        assert "COPY pyproject.toml README.md constraints.txt" in dockerfile
        assert dockerfile.count("pip install") == 1, "one install, with the lock"


def test_the_api_install_set_has_no_torch_and_the_worker_set_has_it() -> None:
    api, worker = _closure({"api"}), _closure({"worker"})
    assert {"fastapi", "uvicorn", "celery", "sqlalchemy", "boto3"} <= api
    assert api & TORCH_STACK == set(), f"the API image would carry {api & TORCH_STACK}"
    assert {"torch", "diffusers", "transformers", "peft", "safetensors"} <= worker
    assert "fastapi" not in worker


def test_processes_of_the_api_image_never_import_torch() -> None:
    """The API, `lethe beat`, the default-queue worker and the CLI commands the API image runs import no part of
    the torch stack (checked in a fresh interpreter: this test process has torch loaded)."""
    import sys

    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "import api.app, worker.app, worker.tasks, worker.monitoring, core.cli.app, core.erasure.execution\n"
        "import core.registry.handlers, core.wiring, core.migrate\n"
        "core.wiring.load()\n"
        "client = TestClient(api.app.create_app())\n"
        "assert client.get('/healthz').status_code == 200 and client.get('/openapi.json').status_code == 200\n"
        "assert client.get('/metrics').status_code == 200\n"
        f"loaded = sorted(m for m in {sorted(TORCH_STACK)!r} if m in sys.modules)\n"
        "print('loaded:', loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp",
                              "LETHE_DATA_DIR": "/tmp/lethe-no-torch", "LETHE_DATABASE_URL": "sqlite://"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "loaded: []" in out.stdout, out.stdout


def test_dockerfiles_pass_hadolint() -> None:
    binary = dev_tool("hadolint")
    out = subprocess.run([binary, "docker/api.Dockerfile", "docker/worker.Dockerfile"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_healthchecks_need_no_tools_the_images_lack() -> None:
    """python:3.11-slim has no curl, pgrep or celery-ping that answers during a solo worker's job: every Lethe
    health check is a Python one-liner — an HTTP GET for the API, the heartbeat file's age otherwise."""
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("api", "worker", "default-worker", "beat"):
        test = data["services"][name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], (name, test)
        expected = "/healthz" if name == "api" else "/tmp/lethe.alive"
        assert expected in test[3], (name, test)
    assert data["services"]["migrate"]["healthcheck"] == {"disable": True}
    env = data["x-lethe-env"]
    assert env["LETHE_HEARTBEAT_FILE"] == "/tmp/lethe.alive"
    assert "LETHE_S3_PUBLIC_ENDPOINT_URL" in env
    assert any(str(p).endswith(":9000") for p in data["services"]["minio"]["ports"])
