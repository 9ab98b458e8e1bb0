"""The embedded path: the same API on SQLite (default settings: file:// store, no broker)."""

from __future__ import annotations

import io

from PIL import Image

from tests.api_support import ApiEnv, api_sqlite, erasure_body  # noqa: F401


def test_embedded_sqlite_end_to_end(api_sqlite: ApiEnv) -> None:  # noqa: F811
    env = api_sqlite
    c = env.client
    submitter = env.auth("solo", "erasures:write,erasures:read,models:read,audit:read", require_approval=True)
    approver = env.auth("solo", "erasures:approve", name="approver")
    assert c.get("/readyz").json()["checks"] == {"database": "ok", "broker": "embedded", "store": "ok"}
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 0, 255)).save(buf, format="PNG")
    up = c.post("/v1/uploads", files={"file": ("e.png", buf.getvalue(), "image/png")}, headers=submitter)
    assert up.status_code == 201
    mid = env.ready_model("solo")
    body = erasure_body(mid, concepts=[{"target": "blue square", "example_images": [up.json()["id"]]}])
    r = c.post("/v1/erasures", json=body, headers={**submitter, "Idempotency-Key": "e-1"})
    assert r.status_code == 202 and r.json()["status"] == "awaiting_approval"
    replay = c.post("/v1/erasures", json=body, headers={**submitter, "Idempotency-Key": "e-1"})
    assert replay.json()["id"] == r.json()["id"]
    rid = r.json()["id"]
    assert c.post(f"/v1/erasures/{rid}/approve", headers=approver).json()["status"] == "queued"
    listed = c.get("/v1/erasures?label=takedown&due_before=2027-01-01T00:00:00Z", headers=submitter).json()
    assert [x["id"] for x in listed["items"]] == [rid]
    assert c.get(f"/v1/models/{mid}", headers=submitter).json()["status"] == "ready"
    assert c.post(f"/v1/erasures/{rid}/cancel", headers=submitter).json()["status"] == "cancelled"
    assert c.get("/v1/audit/verify", headers=submitter).json()["ok"] is True
