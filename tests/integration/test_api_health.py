"""/healthz, /readyz (database, broker, object store), /metrics, request ids, and the 500/503 guarantees."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from tests.api_support import ApiEnv, api, build_env, erasure_body  # noqa: F401

P = "https://lethe.dev/problems/"


def test_ready_with_redis_and_s3(pg_url: str, redis_url: str, s3_endpoint: str) -> None:
    bucket = f"lethe-{uuid.uuid4().hex[:8]}"
    for env in build_env(pg_url, broker_url=redis_url, store_url=f"s3://{bucket}", s3_endpoint_url=s3_endpoint):
        from core.storage import get_store

        get_store(env.settings).ensure_bucket()  # type: ignore[attr-defined]
        assert env.client.get("/healthz").json() == {"status": "ok"}
        r = env.client.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["checks"] == {"database": "ok", "broker": "ok", "store": "ok"}


def test_not_ready_is_a_503_problem(pg_url: str) -> None:
    for env in build_env(pg_url, broker_url="redis://127.0.0.1:1/0"):
        r = env.client.get("/readyz")
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == P + "unavailable" and r.json()["checks"]["broker"].startswith("unavailable")
        assert r.json()["checks"]["database"] == "ok"


def test_database_down_is_503_not_500(tmp_path_factory: pytest.TempPathFactory) -> None:
    from api.app import create_app

    data = tmp_path_factory.mktemp("down")
    settings = Settings(data_dir=data, database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        r = client.get("/v1/erasures", headers={"Authorization": "Bearer lth_" + "a" * 32 + "_" + "b" * 6})
        # a malformed key is refused before the database is asked
        assert r.status_code == 401
        from core.tenancy import keys

        r = client.get("/v1/erasures", headers={"Authorization": f"Bearer {keys.generate_key()}"})
        assert r.status_code == 503 and r.json()["type"] == P + "unavailable" and r.headers["retry-after"]
        assert "psycopg" not in r.text and "Traceback" not in r.text
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["database"].startswith("unavailable")
        assert client.get("/healthz").status_code == 200
        assert "lethe_metrics_database_up 0.0" in client.get("/metrics").text


def test_metrics_request_id_and_no_leaks(api: ApiEnv) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    rid = c.post("/v1/erasures", json=erasure_body(api.ready_model()), headers=h).json()["id"]
    c.get(f"/v1/erasures/{rid}", headers=h)
    r = c.get(f"/v1/erasures/{uuid.uuid4()}", headers={**h, "X-Request-ID": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123" and r.json()["request_id"] == "trace-123"
    assert len(c.get("/healthz").headers["x-request-id"]) == 16
    text = c.get("/metrics").text
    assert 'lethe_http_requests_total{method="GET",route="/v1/erasures/{request_id}",status="200"} 1.0' in text
    assert 'lethe_http_requests_total{method="POST",route="/v1/erasures",status="202"} 1.0' in text
    assert 'lethe_http_request_duration_seconds_bucket{le="0.5",method="POST",route="/v1/erasures"}' in text
    assert 'lethe_jobs{kind="erase",state="queued"} 1.0' in text
    assert 'lethe_queue_depth{kind="erase"} 1.0' in text
    assert "lethe_outbox_pending" in text

    def boom() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    c.app.add_api_route("/v1/_boom", boom)  # type: ignore[attr-defined]
    r = c.get("/v1/_boom")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == P + "internal" and "secret" not in r.text and "Traceback" not in r.text
    assert r.json()["request_id"]
