"""The one Settings object. Nothing else in Lethe reads the environment (LETHE_* variables)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REDACTED = "**********"


def _split_paths(value: Any) -> Any:
    """Accept a list, or a string separated by commas or os.pathsep (how people write PATH-like vars)."""
    if isinstance(value, str):
        parts = [p.strip() for chunk in value.split(",") for p in chunk.split(os.pathsep)]
        return [p for p in parts if p]
    return value


class Settings(BaseSettings):
    """Effective configuration. Every field maps to one `LETHE_<NAME>` environment variable."""

    model_config = SettingsConfigDict(env_prefix="LETHE_", env_file=None, extra="ignore", validate_default=True)

    data_dir: Path = Field(
        default=Path("~/.lethe"),
        description="Where embedded mode keeps its database, objects, models and keys.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL. Empty = sqlite:///{data_dir}/lethe.db. Production: postgresql+psycopg://...",
    )
    broker_url: str = Field(
        default="",
        description="Celery broker URL. Empty = embedded in-process worker. Production: redis://...",
    )
    store_url: str = Field(
        default="",
        description="Object store. Empty = file://{data_dir}/objects. Production: s3://BUCKET[/prefix].",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint for MinIO or another S3-compatible server (boto3 endpoint_url)."
    )
    s3_region: str = Field(default="us-east-1", description="Region passed to boto3 for s3:// stores.")
    model_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Directories from which file:// model sources may be registered. Default {data_dir}/models.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key for HMACs of API keys. Empty = generated once and kept in {data_dir}/secret.key.",
    )
    log_json: bool = Field(default=False, description="Emit JSON log lines (production) instead of console.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand_data_dir(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("model_roots", mode="before")
    @classmethod
    def _parse_roots(cls, v: Any) -> Any:
        return _split_paths(v)

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'lethe.db'}"
        if not self.store_url:
            self.store_url = f"file://{self.data_dir / 'objects'}"
        if not self.model_roots:
            self.model_roots = [self.data_dir / "models"]
        self.model_roots = [Path(p).expanduser().resolve() for p in self.model_roots]
        return self

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: jobs run on an in-process worker thread."""
        return not self.broker_url

    def redacted(self) -> dict[str, Any]:
        """Effective settings as plain data, with secrets and URL passwords hidden."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = REDACTED if value.get_secret_value() else ""
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, list):
                value = [str(v) for v in value]
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            out[name] = value
        return out


def redact_url(url: str) -> str:
    """Hide the password in scheme://user:password@host URLs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    if ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:{REDACTED}@{host}"
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings. Tests call `get_settings.cache_clear()` after changing the environment."""
    return Settings()
