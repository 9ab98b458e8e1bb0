"""A client generated from the OpenAPI document works: `openapi-python-client` (a standard generator from PyPI)
turns /openapi.json into a typed Python package without warnings, and its functions — named after the
operation ids — talk to a live uvicorn server with a real API key and Postgres behind it.
"""

from __future__ import annotations

import importlib
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn

from tests.api_support import ApiEnv, build_env, erasure_body
from tests.tools import dev_tool

PACKAGE = "lethe_generated_client"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live(pg_url: str) -> Iterator[tuple[ApiEnv, str]]:
    """The test app served by a real uvicorn on loopback."""
    for env in build_env(pg_url):
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(env.client.app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        try:
            yield env, base
        finally:
            server.should_exit = True
            thread.join(10)


def _generate(spec: dict[str, Any], out: Path) -> ModuleType:
    generator = dev_tool("openapi-python-client")
    (out / "openapi.json").write_text(json.dumps(spec))
    (out / "config.yml").write_text(f"post_hooks: []\nproject_name_override: {PACKAGE}\n"
                                    f"package_name_override: {PACKAGE}\n")
    proc = subprocess.run(
        [generator, "generate", "--path", "openapi.json", "--config", "config.yml", "--meta", "none",
         "--output-path", PACKAGE],
        cwd=out, capture_output=True, text=True, timeout=120,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "Warning" not in text and "Unable to" not in text, f"the generator could not handle all of it:\n{text}"
    sys.path.insert(0, str(out))
    return importlib.import_module(PACKAGE)


def test_generated_client_round_trip(live: tuple[ApiEnv, str], tmp_path: Path) -> None:
    env, base = live
    spec = httpx.get(f"{base}/openapi.json", timeout=10).json()
    try:
        client_pkg = _generate(spec, tmp_path)
        mod = lambda name: importlib.import_module(f"{PACKAGE}.{name}")  # noqa: E731
        models_list = mod("api.models.models_list")
        erasures_submit = mod("api.erasures.erasures_submit")
        erasures_get = mod("api.erasures.erasures_get")
        public_key = mod("api.certificates.certificates_public_key")
        generated = mod("models")

        model_id = env.ready_model()
        client = client_pkg.AuthenticatedClient(base_url=base, token=env.key())

        page = models_list.sync(client=client, limit=10)
        assert isinstance(page, generated.PageModelOut), page
        assert [m.id for m in page.items] == [model_id] and page.items[0].status.value == "ready"

        body = generated.ErasureCreate.from_dict(erasure_body(model_id))
        key = f"gen-{uuid.uuid4().hex}"
        first = erasures_submit.sync_detailed(client=client, body=body, idempotency_key=key)
        assert first.status_code == 202, first.content
        submitted = first.parsed
        assert isinstance(submitted, generated.ErasureOut)
        assert first.headers["location"] == f"/v1/erasures/{submitted.id}"
        assert submitted.concepts[0].target == "circle" and submitted.legal.regime.value == "gdpr"
        replay = erasures_submit.sync_detailed(client=client, body=body, idempotency_key=key)
        assert replay.headers["idempotent-replayed"] == "true" and replay.parsed.id == submitted.id

        got = erasures_get.sync(client=client, request_id=submitted.id)
        assert isinstance(got, generated.ErasureOut) and got.status.value == "queued" and got.artifacts == []

        jwk = public_key.sync(client=client_pkg.Client(base_url=base)).jwk
        assert (jwk.kty, jwk.crv, jwk.alg) == ("OKP", "Ed25519", "EdDSA")

        # Errors arrive as the typed problem.
        anonymous = client_pkg.Client(base_url=base)
        problem = models_list.sync(client=anonymous)
        assert isinstance(problem, generated.Problem) and problem.status == 401
        assert problem.type_ == "https://lethe.dev/problems/unauthorized"
    finally:
        if str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]
