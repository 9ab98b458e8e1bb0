"""structlog set-up: readable console locally, JSON lines when LETHE_LOG_JSON=1.

Context (request_id, job_id, attempt) is bound with `bind_context` and carried by every line logged
in that thread/task through structlog's contextvars.

Exceptions are rendered as plain tracebacks (frames and source lines, never the values of local variables):
a local can hold an API key, a request body or a whole tensor, and rendering them costs seconds per error.
Every line then passes `redact_secrets`, which removes anything shaped like a credential, whatever logged it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog

from core.config import Settings, get_settings

_configured = False

REDACTED = "[redacted]"
# Values of fields with these names are never logged (Authorization headers, keys, secrets, passwords, tokens).
_SECRET_NAME = re.compile(r"(authorization|api[_-]?key|secret|password|passwd|token|cookie|credential|signing[_-]?key)",
                          re.IGNORECASE)
_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Standard Webhooks secrets.
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), "whsec_" + REDACTED),
    # Bearer / Basic credentials (an Authorization header written out, a dump of request headers).
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1 " + REDACTED),
    # A Lethe API key: lth_<32 base62>_<6 base62>; the first 10 characters after lth_ are its public prefix.
    (re.compile(r"lth_([0-9A-Za-z]{10})[0-9A-Za-z_]*"), r"lth_\1…" + REDACTED),
    # Passwords in URLs: scheme://user:password@host.
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
]
_MAX_DEPTH = 6


def redact_text(text: str) -> str:
    """`text` with anything shaped like a credential replaced by a marker."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: (REDACTED if isinstance(k, str) and _SECRET_NAME.search(k) else _redact(v, depth + 1))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return redact_text(value.decode("latin-1"))
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: drop secret-named fields and mask credential-shaped text in every value."""
    out: dict[str, Any] = {}
    for key, value in event_dict.items():
        if key != "event" and _SECRET_NAME.search(key):
            out[key] = REDACTED
        else:
            out[key] = _redact(value)
    return out


def configure_logging(settings: Settings | None = None, *, force: bool = False) -> None:
    global _configured
    if _configured and not force:
        return
    settings = settings or get_settings()
    level = getattr(logging, settings.log_level)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks become plain text here (no locals), so the redaction below sees them too.
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    renderer: Any
    if settings.log_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Route stdlib logging (uvicorn, celery, alembic) through the same chain, redaction included.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    _configured = True


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


@contextmanager
def bind_context(**values: Any) -> Iterator[None]:
    """Bind values (request_id=..., job_id=...) to every log line inside the block."""
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
