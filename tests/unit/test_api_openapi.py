"""The OpenAPI document: 3.1, an example for every request body, problem+json for every error response,
`resource_action` operation ids, typed responses, documented headers and webhooks."""

from __future__ import annotations

import re
from typing import Any

from api.app import create_app
from core.webhooks.schemas import EVENT_TYPES, WEBHOOK_EVENTS


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


def test_operation_ids_are_resource_action_and_unique() -> None:
    spec = _openapi()
    ids = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            op_id = op["operationId"]
            assert re.fullmatch(r"[a-z]+_[a-z]+(_[a-z]+)*", op_id), (method, path, op_id)
            assert op_id.split("_", 1)[0] == op["tags"][0].replace(" ", "_"), (op_id, op["tags"])
            ids.append(op_id)
    assert len(ids) == len(set(ids))
    for expected in ("erasures_submit", "erasures_list", "erasures_get", "erasures_issue_artifact_links",
                     "models_list", "models_register", "certificates_get", "certificates_public_key"):
        assert expected in ids
    assert "/metrics" not in spec["paths"]


def _untyped(spec: dict[str, Any]) -> set[str]:
    """Objects reachable from a 2xx response that say nothing about their members."""
    schemas, found, seen = spec["components"]["schemas"], set(), set()

    def walk(node: Any, where: str) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, where)
            return
        if not isinstance(node, dict):
            return
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                walk(schemas[name], name)
            return
        if node.get("type") == "object" and "properties" not in node and \
                node.get("additionalProperties", True) in (True, {}):
            found.add(where)
        for key, value in node.items():
            if key == "properties":
                for name, sub in value.items():
                    walk(sub, f"{where}.{name}")
            else:
                walk(value, where)

    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                if status.startswith("2"):
                    for media in response.get("content", {}).values():
                        walk(media.get("schema", {}), f"{method} {path}")
    return found


def test_responses_are_typed_and_headers_documented() -> None:
    spec = _openapi()
    # An audit payload's members depend on the action: the one deliberately open object.
    assert _untyped(spec) == {"AuditEventOut.payload"}
    erasure = spec["components"]["schemas"]["ErasureOut"]["properties"]
    assert erasure["concepts"]["items"] == {"$ref": "#/components/schemas/ConceptOut"}
    assert {"$ref": "#/components/schemas/LegalOut"} in erasure["legal"]["anyOf"]
    assert {"$ref": "#/components/schemas/ErasureMetrics"} in erasure["metrics"]["anyOf"]
    assert "url" not in spec["components"]["schemas"]["ArtifactOut"]["properties"]

    submit = spec["paths"]["/v1/erasures"]["post"]["responses"]
    assert {"Location", "Idempotent-Replayed", "X-Request-ID"} <= set(submit["202"]["headers"])
    assert "Retry-After" in submit["429"]["headers"] and "Retry-After" in submit["503"]["headers"]
    for path, method in (("/v1/models", "post"), ("/v1/erasures/batch", "post"), ("/v1/schedules", "post"),
                         ("/v1/uploads", "post"), ("/v1/webhooks", "post")):
        created = next(r for s, r in spec["paths"][path][method]["responses"].items() if s in ("201", "202"))
        assert {"Location", "Idempotent-Replayed"} <= set(created["headers"]), path
    links = spec["paths"]["/v1/erasures/{request_id}/artifact-links"]["post"]["responses"]["200"]
    assert "Idempotent-Replayed" not in links["headers"]  # fresh links on every call, no Idempotency-Key


def test_webhooks_section_documents_every_delivered_event() -> None:
    spec = _openapi()
    assert set(spec["webhooks"]) == set(WEBHOOK_EVENTS) == set(EVENT_TYPES) - {"erasure.submitted"}
    schemas = spec["components"]["schemas"]
    for event_type, operations in spec["webhooks"].items():
        op = operations["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        envelope = schemas[ref]
        assert envelope["properties"]["type"]["const"] == event_type
        assert set(envelope["required"]) == {"type", "timestamp", "data"}
        assert {p["name"] for p in op["parameters"]} == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert set(op["responses"]) == {"204"}
