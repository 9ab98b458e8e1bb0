"""The OpenAPI document: 3.1, an example for every request body, problem+json for every error response."""

from __future__ import annotations

from typing import Any

from api.app import create_app


def _openapi() -> dict[str, Any]:
    return create_app().openapi()


def test_every_body_has_an_example_and_errors_are_problems() -> None:
    spec = _openapi()
    assert spec["openapi"].startswith("3.1")
    schemas = spec["components"]["schemas"]
    assert "Problem" in schemas
    bodies = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            for media_type, media in op.get("requestBody", {}).get("content", {}).items():
                bodies += 1
                ref = media.get("schema", {}).get("$ref", "")
                schema = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else media.get("schema", {})
                assert schema.get("examples") or media.get("examples") or media.get("example"), (
                    f"{method.upper()} {path} ({media_type}) has no example"
                )
            for status, response in op["responses"].items():
                if str(status)[0] in "45":
                    assert "application/problem+json" in response.get("content", {}), (method, path, status)
            if path.startswith("/v1/") and "security" in op:
                assert "400" in op["responses"], f"{method.upper()} {path}: FastAPI's 400 must be documented"
    assert bodies >= 5
