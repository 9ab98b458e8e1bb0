"""Authorization matrix: every scope × every authenticated endpoint (table-driven)."""

from __future__ import annotations

import uuid

import pytest

from core.tenancy.schemas import ALL_SCOPES
from tests.api_support import ApiEnv, api, erasure_body  # noqa: F401

FAKE = str(uuid.uuid4())
PNG_1PX = None  # uploads are posted as multipart; content does not matter when the scope is missing

# (method, path, required scope, json body or "multipart")
ENDPOINTS: list[tuple[str, str, str, object]] = [
    ("POST", "/v1/models", "models:write", {"name": "m", "source_uri": "file:///nowhere"}),
    ("GET", "/v1/models", "models:read", None),
    ("GET", f"/v1/models/{FAKE}", "models:read", None),
    ("POST", "/v1/erasures", "erasures:write", "erasure"),
    ("GET", "/v1/erasures", "erasures:read", None),
    ("GET", f"/v1/erasures/{FAKE}", "erasures:read", None),
    ("POST", f"/v1/erasures/{FAKE}/cancel", "erasures:write", None),
    ("POST", f"/v1/erasures/{FAKE}/approve", "erasures:approve", None),
    ("POST", f"/v1/erasures/{FAKE}/reject", "erasures:approve", {"reason": "no"}),
    ("GET", f"/v1/erasures/{FAKE}/certificate", "erasures:read", None),
    ("POST", "/v1/uploads", "erasures:write", "multipart"),
    ("GET", f"/v1/uploads/{FAKE}", "erasures:read", None),
    ("GET", "/v1/audit/events", "audit:read", None),
    ("GET", "/v1/audit/verify", "audit:read", None),
]


@pytest.mark.parametrize("scope", ALL_SCOPES)
def test_scope_matrix(api: ApiEnv, scope: str) -> None:  # noqa: F811
    model_id = api.ready_model()
    headers = api.auth("acme", scope)
    outcomes = {}
    for method, path, required, body in ENDPOINTS:
        kwargs: dict[str, object] = {"headers": headers}
        if body == "erasure":
            kwargs["json"] = erasure_body(model_id)
        elif body == "multipart":
            kwargs["files"] = {"file": ("x.png", b"not an image", "image/png")}
        elif body is not None:
            kwargs["json"] = body
        r = api.client.request(method, path, **kwargs)  # type: ignore[arg-type]
        allowed = scope in (required, "admin")
        outcomes[(method, path)] = r.status_code
        if allowed:
            assert r.status_code not in (401, 403), (scope, method, path, r.text)
            assert r.status_code < 500, (scope, method, path, r.text)
        else:
            assert r.status_code == 403, (scope, method, path, r.text)
            assert r.json()["type"] == "https://lethe.dev/problems/forbidden"
            assert r.json()["required_scope"] == required
    # Unauthenticated: everything is 401 except the public endpoints.
    for method, path, _, _ in ENDPOINTS:
        assert api.client.request(method, path).status_code == 401
    for public in ("/healthz", "/readyz", "/metrics", "/v1/certificates/public-key", "/openapi.json"):
        assert api.client.get(public).status_code == 200
