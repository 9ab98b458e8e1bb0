"""Input that parses but used to end in a 500: boolean or out-of-range cursors, times that overflow when
converted to UTC, a cron expression that never fires, NUL characters in text (Postgres refuses them)."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi import Request
from sqlalchemy import text

from core.pagination import encode_cursor
from tests.api_support import ApiEnv, api, erasure_body  # noqa: F401

OVERFLOWING = "9999-12-31T23:59:59-12:00"  # valid ISO 8601; one day past datetime.max once in UTC
UNDERFLOWING = "0001-01-01T00:00:00+01:00"


def _raw_cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _is_validation_problem(r) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "https://lethe.dev/problems/validation"


@pytest.mark.parametrize("cursor", [{"s": True}, {"s": 2**63}, {"s": -1}, {"s": 1.5}, {"s": "3"}])
def test_audit_cursor_values(api: ApiEnv, cursor: dict) -> None:  # noqa: F811
    r = api.client.get("/v1/audit/events", params={"cursor": _raw_cursor(cursor)}, headers=api.auth())
    _is_validation_problem(r)


def test_audit_cursor_largest_seq_is_fine(api: ApiEnv) -> None:  # noqa: F811
    r = api.client.get("/v1/audit/events", params={"cursor": _raw_cursor({"s": 2**63 - 1})}, headers=api.auth())
    assert r.status_code == 200 and r.json()["items"] == []


@pytest.mark.parametrize("when", [OVERFLOWING, UNDERFLOWING])
def test_times_out_of_range(api: ApiEnv, when: str) -> None:  # noqa: F811
    h = api.auth()
    _is_validation_problem(api.client.get("/v1/erasures", params={"due_before": when}, headers=h))
    _is_validation_problem(api.client.get("/v1/audit/events", params={"since": when}, headers=h))
    _is_validation_problem(api.client.get("/v1/audit/events", params={"until": when}, headers=h))
    body = erasure_body(api.ready_model())
    body["legal"]["due_at"] = when
    _is_validation_problem(api.client.post("/v1/erasures", json=body, headers=h))
    body["legal"]["due_at"] = None
    body["legal"]["received_at"] = when
    _is_validation_problem(api.client.post("/v1/erasures", json=body, headers=h))
    keyset = encode_cursor({"t": when, "i": "0b8f5a5e-3c1c-4d51-9a55-8f3c1bd2e3a1"})
    _is_validation_problem(api.client.get("/v1/erasures", params={"cursor": keyset}, headers=h))
    _is_validation_problem(api.client.get("/v1/models", params={"cursor": keyset}, headers=h))


def test_times_in_other_offsets_still_work(api: ApiEnv) -> None:  # noqa: F811
    h = api.auth()
    r = api.client.get("/v1/erasures", params={"due_before": "2026-12-24T12:00:00-12:00"}, headers=h)
    assert r.status_code == 200
    body = erasure_body(api.ready_model())
    body["legal"]["due_at"] = "2026-12-24T14:00:00+02:00"
    r = api.client.post("/v1/erasures", json=body, headers=h)
    assert r.status_code == 202, r.text
    assert r.json()["due_at"] == "2026-12-24T12:00:00Z"


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 11 *"])
def test_cron_that_never_fires_is_422(api: ApiEnv, cron: str) -> None:  # noqa: F811
    body = {"cron": cron, "template": {"models": {"all_ready": True}, "concepts": [{"target": "circle"}]}}
    r = api.client.post("/v1/schedules", json=body, headers=api.auth())
    _is_validation_problem(r)
    assert "never fires" in json.dumps(r.json()["errors"])
    body["cron"] = "0 0 29 2 *"  # leap days come
    assert api.client.post("/v1/schedules", json=body, headers=api.auth()).status_code == 201


def test_nul_in_text_is_422(api: ApiEnv) -> None:  # noqa: F811
    h = api.auth()
    mid = api.ready_model()
    bodies = []
    for path in (("concepts", 0, "target"), ("concepts", 0, "prompts", 0), ("legal", "basis"), ("retain",),
                 ("concepts", 0, "surrogate"), ("legal", "requester", "name")):
        body = erasure_body(mid)
        node = body
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = ["a\x00b"] if path == ("retain",) else "a\x00b"
        bodies.append(body)
    for body in bodies:
        _is_validation_problem(api.client.post("/v1/erasures", json=body, headers=h))
    _is_validation_problem(api.client.post(
        "/v1/erasures/batch", headers=h,
        json={"models": {"all_ready": True}, "concepts": [{"target": "a\x00"}]}))
    _is_validation_problem(api.client.post(
        "/v1/schedules", headers=h,
        json={"name": "n\x00", "cron": "0 3 * * *", "template": {"models": {"all_ready": True},
                                                               "concepts": [{"target": "c"}]}}))
    _is_validation_problem(api.client.post("/v1/models", headers=h,
                                           json={"name": "m\x00", "source_uri": "file:///x"}))
    _is_validation_problem(api.client.get("/v1/erasures", params={"label": "a\x00"}, headers=h))
    _is_validation_problem(api.client.get("/v1/audit/events", params={"subject": "a\x00"}, headers=h))
    _is_validation_problem(api.client.get("/v1/audit/events", params={"action": "a\x00"}, headers=h))
    r = api.client.post("/v1/erasures", json=erasure_body(mid), headers=h)
    rid = r.json()["id"]
    _is_validation_problem(api.client.post(f"/v1/erasures/{rid}/reject", json={"reason": "x\x00"}, headers=h))


def test_database_data_error_is_422_as_last_resort(api: ApiEnv) -> None:  # noqa: F811
    """Whatever text reaches Postgres unchecked: its refusal (DataError) is a 422, not a 500."""

    def store(request: Request) -> None:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT CAST(:v AS text)"), {"v": request.query_params["v"]})

    api.client.app.add_api_route("/v1/store-text", store, methods=["GET"], include_in_schema=False)
    assert api.client.get("/v1/store-text", params={"v": "fine"}).status_code == 200
    _is_validation_problem(api.client.get("/v1/store-text", params={"v": "a\x00b"}))
