from pathlib import Path

import pytest
from pydantic import ValidationError

from core.config import REDACTED, Settings, redact_url


def test_defaults_derive_from_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETHE_DATA_DIR", str(tmp_path))
    s = Settings()
    assert s.database_url == f"sqlite:///{tmp_path / 'lethe.db'}"
    assert s.store_url == f"file://{tmp_path / 'objects'}"
    assert s.model_roots == [tmp_path / "models"]
    assert s.embedded is True


def test_env_overrides_and_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETHE_DATABASE_URL", "postgresql+psycopg://lethe:hunter2@db:5432/lethe")
    monkeypatch.setenv("LETHE_BROKER_URL", "redis://:pw@redis:6379/0")
    monkeypatch.setenv("LETHE_STORE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("LETHE_MODEL_ROOTS", f"{tmp_path / 'a'},{tmp_path / 'b'}")
    monkeypatch.setenv("LETHE_LOG_JSON", "1")
    s = Settings()
    assert s.model_roots == [tmp_path / "a", tmp_path / "b"]
    assert s.log_json is True
    assert s.embedded is False
    assert s.store_url == "s3://bucket/prefix"


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETHE_LOG_LEVEL", "LOUD")
    with pytest.raises(ValidationError):
        Settings()


def test_redaction_hides_secrets_and_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETHE_DATABASE_URL", "postgresql+psycopg://lethe:hunter2@db:5432/lethe")
    monkeypatch.setenv("LETHE_SECRET_KEY", "top-secret-value")
    shown = Settings().redacted()
    text = repr(shown)
    assert "hunter2" not in text and "top-secret-value" not in text
    assert shown["database_url"] == f"postgresql+psycopg://lethe:{REDACTED}@db:5432/lethe"
    assert shown["secret_key"] == REDACTED


def test_redact_url_leaves_urls_without_password() -> None:
    assert redact_url("redis://redis:6379/0") == "redis://redis:6379/0"
    assert redact_url("postgresql://user@host/db") == "postgresql://user@host/db"
