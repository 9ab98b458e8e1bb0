"""`lethe keys`, `lethe audit verify` on the embedded default (SQLite in the data dir)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from core.cli.app import app as cli
from core.config import get_settings


def _run(*args: str) -> tuple[int, str, str]:
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, list(args))
    get_settings.cache_clear()
    return result.exit_code, result.stdout, result.stderr


def test_keys_bootstrap_and_revoke() -> None:
    assert _run("db", "upgrade")[0] == 0
    code, out, err = _run("keys", "create", "--tenant", "acme", "--scopes", "erasures:read,audit:read",
                          "--require-approval")
    assert code == 0, err
    key = out.strip()
    assert re.fullmatch(r"lth_[0-9A-Za-z]{32}_[0-9A-Za-z]{6}", key)
    assert "not shown again" in err and "require_approval True" in err
    code, _, err = _run("keys", "create", "--tenant", "acme", "--scopes", "erasures:read,root")
    assert code == 1 and "unknown scope 'root'" in err

    from api.app import create_app

    with TestClient(create_app(get_settings())) as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert client.get("/v1/erasures", headers=headers).status_code == 200
        assert client.get("/v1/models", headers=headers).status_code == 403
        code, out, _ = _run("keys", "list", "--tenant", "acme")
        assert code == 0 and key[:14] in out and "active" in out and key not in out
        assert _run("keys", "revoke", key[:14])[0] == 0
        assert client.get("/v1/erasures", headers=headers).status_code == 401
    assert "revoked" in _run("keys", "list", "--tenant", "acme")[1]
    assert _run("keys", "revoke", "lth_nope")[0] == 1
    code, out, _ = _run("audit", "verify")
    assert code == 0 and out.startswith("ok: 3 events verified")  # tenant.created, api_key.created, api_key.revoked
    for command in (["keys", "--help"], ["keys", "create", "--help"], ["audit", "verify", "--help"],
                    ["certificate", "verify", "--help"]):
        assert _run(*command)[0] == 0
