"""An unexpected error (500) with an API key in the request: the key never reaches the log, the error is logged
once as a plain traceback (no local variables rendered), and the client gets a bare problem+json."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from fastapi import Request

from core.config import Settings
from core.logging import configure_logging
from tests.api_support import ApiEnv, api  # noqa: F401

# A local variable that only a traceback rendering locals would print.
LOCAL_MARK = "local-variable-value-7f3a9c"


def _add_failing_route(env: ApiEnv) -> None:
    async def boom(request: Request) -> None:
        authorization = request.headers["authorization"]  # the caller's key, held in a local
        marker = LOCAL_MARK
        headers = dict(request.headers)
        big = ["x" * 1000] * 200  # a large local: rendering locals would write all of it
        raise RuntimeError(f"failed while handling {authorization} ({len(headers)} headers, {len(big)}, {marker[:0]})")

    env.client.app.add_api_route("/v1/boom", boom, methods=["GET"], include_in_schema=False)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Logging as configured before the test (the test reconfigures it onto its captured stderr)."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers, root.level = handlers, level


@pytest.mark.parametrize("log_json", [False, True], ids=["console", "json"])
def test_500_never_logs_the_key_or_locals(api: ApiEnv, capfd: pytest.CaptureFixture[str],  # noqa: F811
                                          restored_logging: None, log_json: bool) -> None:
    # The default console renderer (Rich tracebacks with locals, before) and the JSON one.
    configure_logging(Settings(log_json=log_json), force=True)
    _add_failing_route(api)
    key = api.key()
    capfd.readouterr()
    r = api.client.get("/v1/boom?api_key=" + key, headers={"Authorization": f"Bearer {key}", "X-Api-Key": key})
    logged = capfd.readouterr()
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "https://lethe.dev/problems/internal" and body["request_id"]
    assert "Traceback" not in r.text and key not in r.text and "RuntimeError" not in r.text
    text = logged.out + logged.err
    assert key not in text
    assert key[4:] not in text and key[-20:] not in text  # not even the secret part on its own
    assert LOCAL_MARK not in text, "a local variable was rendered"
    assert "xxxxxxxxxx" not in text
    assert text.count("unhandled error") == 1, text
    assert "RuntimeError" in text and "Traceback" in text  # the error itself is still logged
    assert len(text) < 8000, f"{len(text)} bytes of log for one error"
    if log_json:
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        [error_line] = [line for line in lines if line["event"] == "unhandled error"]
        assert error_line["request_id"] == body["request_id"] and error_line["path"] == "/v1/boom"


def test_redaction_processor_masks_credentials_in_any_field() -> None:
    from core.logging import redact_secrets

    key = "lth_" + "Ab3" * 10 + "xy_Q1w2E3"
    secret = "whsec_" + "A" * 40
    event = redact_secrets(None, "info", {
        "event": f"calling with {key}",
        "headers": {"Authorization": f"Bearer {key}", "accept": "*/*"},
        "api_key": key,
        "items": [f"token={key}", ("Basic dXNlcjpwYXNz",)],
        "url": "postgresql+psycopg://lethe:hunter2@db/lethe",
        "note": f"secret {secret}",
    })
    dumped = json.dumps(event)
    for leaked in (key, key[14:], secret, "dXNlcjpwYXNz", "hunter2"):
        assert leaked not in dumped, leaked
    assert event["headers"]["accept"] == "*/*"
    assert event["event"].startswith("calling with lth_" + key[4:14])  # the public prefix stays for support
