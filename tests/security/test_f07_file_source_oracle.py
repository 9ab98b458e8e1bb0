"""Finding 7: `file://` registration answered "outside … (LETHE_MODEL_ROOTS: <path>)" for an existing file
outside the roots and "does not exist" for a missing one — a file-existence oracle that also disclosed the
server's model roots."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.api_support import ApiEnv


def _register(env: ApiEnv, uri: str) -> dict[str, object]:
    r = env.client.post("/v1/models", json={"name": f"probe-{uuid.uuid4().hex[:6]}", "source_uri": uri},
                        headers=env.auth())
    assert r.status_code == 422, (uri, r.text)
    body = r.json()
    assert body["field"] == "source_uri"
    return body


def test_no_existence_oracle_and_no_paths_in_errors(file_env: ApiEnv,
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    env = file_env
    outside = tmp_path_factory.mktemp("outside")
    (outside / "shadow").write_text("secret")
    (outside / "folder").mkdir()
    root = env.model_root
    (root / "link-to-existing").symlink_to(outside / "folder")
    (root / "link-to-missing").symlink_to(outside / "missing")
    answers = {
        uri: _register(env, uri)["detail"]
        for uri in (f"file://{outside}/shadow", f"file://{outside}/shadowx", f"file://{outside}/folder",
                    f"file://{outside}/nope/deeper", f"file://{root}/../{outside.name}/shadow",
                    f"file://{root}/link-to-existing", f"file://{root}/link-to-missing")
    }
    assert len(set(answers.values())) == 1, f"outside paths must all get the same answer: {answers}"
    inside_missing = _register(env, f"file://{root}/not-there")["detail"]
    for detail in [*answers.values(), inside_missing]:
        assert isinstance(detail, str)
        assert "/" not in detail.replace("file://", "").replace("file:///", ""), detail
        for secret in (str(root), str(root.resolve()), str(outside), root.name, str(env.settings.data_dir)):
            assert secret not in detail, (secret, detail)
    # A real folder inside the roots still registers.
    (root / "ok").mkdir()
    r = env.client.post("/v1/models", json={"name": "ok", "source_uri": f"file://{root}/ok"}, headers=env.auth())
    assert r.status_code == 201, r.text


def test_containment_is_checked_before_the_file_system_is_asked(file_env: ApiEnv, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """Nothing outside the roots is looked up at all (no timing or permission side channel)."""
    looked_up: list[str] = []
    real_resolve = Path.resolve

    def spy(self: Path, strict: bool = False) -> Path:
        looked_up.append(str(self))
        return real_resolve(self, strict=strict)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.setattr(Path, "resolve", spy)
    _register(file_env, f"file://{outside}/x")
    assert not any(p.startswith(str(outside)) for p in looked_up), looked_up
