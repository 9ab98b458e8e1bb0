"""Erasure requests over HTTP (real Postgres): lifecycle, filters, pagination, approval, every error."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select, update

from core.db import unit_of_work
from core.erasure.models import ErasureRequest
from core.jobs.models import Job
from core.jobs.states import JobKind, JobState
from core.outbox.models import OutboxMessage
from core.registry.models import ModelStatus, RegisteredModel
from tests.api_support import ApiEnv, api, erasure_body  # noqa: F401

PROBLEM = "application/problem+json"
P = "https://lethe.dev/problems/"


def test_submit_writes_request_job_outbox_audit(api: ApiEnv) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    mid = api.ready_model()
    r = c.post("/v1/erasures", json=erasure_body(mid), headers=h)
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["status"] == "queued" and out["progress"] == 0 and out["attempts"] == 0
    assert out["concepts"][0]["surrogate"] == "object"  # neutral default for kind=object
    assert out["due_at"] == "2026-12-24T12:00:00Z"
    rid = uuid.UUID(out["id"])
    with unit_of_work(api.engine) as s:
        job = s.scalars(select(Job).where(Job.request_id == rid)).one()
        assert job.kind == JobKind.erase and job.state == JobState.queued
        assert s.scalar(select(func.count()).select_from(OutboxMessage)
                        .where(OutboxMessage.payload["job_id"].as_string() == str(job.id))) == 1
    events = c.get(f"/v1/audit/events?subject=erasure:{rid}", headers=h).json()["items"]
    assert [e["action"] for e in events] == ["erasure.submitted"]
    got = c.get(f"/v1/erasures/{rid}", headers=h).json()
    assert got["status"] == "queued" and got["artifacts"] == [] and got["certificate_available"] is False


def test_submit_errors(api: ApiEnv) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    mid = api.ready_model()
    cases = [
        ({**erasure_body(mid), "surprise": 1}, 422),
        (erasure_body(mid, concepts=[]), 422),
        (erasure_body(mid, concepts=[{"target": f"c{i}"} for i in range(17)]), 422),
        (erasure_body(mid, concepts=[{"target": "x", "prompts": ["p"] * 33}]), 422),
        (erasure_body(mid, concepts=[{"target": "x" * 201}]), 422),
        (erasure_body(mid, params={"steps": 0}), 422),
        (erasure_body(mid, params={"lr": 5}), 422),
        (erasure_body(mid, method="esd", params={"rank": 4}), 422),
        (erasure_body(mid, params={"surprise": 1}), 422),
        (erasure_body(mid, params={"device": "cuda"}), 422),
        (erasure_body(mid, params={"top_k": 100}), 422),
        (erasure_body(mid, params={"method": "esd"}), 422),
        (erasure_body(mid, params={"steps": "10"}), 422),
        (erasure_body(mid, method="dreambooth"), 422),
        (erasure_body(mid, legal={"regime": "vibes", "basis": "x"}), 422),
        (erasure_body(mid, priority=99), 422),
        (erasure_body(mid, labels=["Not Valid"]), 422),
        (erasure_body(mid, concepts=[{"target": "x", "example_images": [str(uuid.uuid4())]}]), 422),
        (erasure_body(uuid.uuid4()), 404),
    ]
    for body, status in cases:
        r = c.post("/v1/erasures", json=body, headers=h)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"] == PROBLEM
        problem = r.json()
        assert problem["status"] == status and problem["type"].startswith(P) and "Traceback" not in r.text
    # model not ready → 409 model-not-ready
    with unit_of_work(api.engine) as s:
        s.execute(update(RegisteredModel).where(RegisteredModel.id == mid).values(status=ModelStatus.pending))
    r = c.post("/v1/erasures", json=erasure_body(mid), headers=h)
    assert r.status_code == 409 and r.json()["type"] == P + "model-not-ready"
    # HTTP-level errors: malformed JSON 400, wrong media type 415, too large 413, unknown path 404, 405
    r = c.post("/v1/erasures", content=b"{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["type"] == P + "malformed-body"
    r = c.post("/v1/erasures", content=b"model_id=1", headers={**h, "Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["type"] == P + "unsupported-media-type"
    big = json.dumps(erasure_body(mid, retain=["x" * 500] * 64, labels=[])) + " " * (1 << 20)
    r = c.post("/v1/erasures", content=big.encode(), headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["type"] == P + "payload-too-large"
    assert c.get("/v1/nothing", headers=h).json()["type"] == P + "not-found"
    r = c.delete("/v1/erasures", headers=h)
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM
    with unit_of_work(api.engine) as s:
        assert s.scalar(select(func.count()).select_from(ErasureRequest)) == 0


def test_params_are_the_engines_and_stored_ones_still_load(api: ApiEnv) -> None:  # noqa: F811
    """Engine fields the old hand-kept list left out are settable; the response's params carry the method;
    a request stored with params as an earlier version wrote them (a key it no longer knows) still loads."""
    c, h = api.client, api.auth()
    mid = api.ready_model()
    r = c.post("/v1/erasures", json=erasure_body(mid, method="esd", params={"start_guidance": 4.0, "steps": 7}),
               headers=h)
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["params"]["method"] == "esd" and out["params"]["start_guidance"] == 4.0
    rid = uuid.UUID(out["id"])
    with unit_of_work(api.engine) as s:
        request = s.get(ErasureRequest, rid)
        assert request is not None and request.params == {"start_guidance": 4.0, "steps": 7}
        request.params = {"steps": 7, "retired_knob": True}
    got = c.get(f"/v1/erasures/{rid}", headers=h)
    assert got.status_code == 200, got.text
    assert got.json()["params"]["steps"] == 7 and got.json()["params"]["retired_knob"] is True
    spare = c.post("/v1/erasures", json=erasure_body(mid, params={"timestep_gamma": 2.0}), headers=h).json()
    assert spare["params"]["method"] == "spare" and spare["params"]["timestep_gamma"] == 2.0


def test_authentication_errors(api: ApiEnv) -> None:  # noqa: F811
    c = api.client
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer lth_" + "a" * 32 + "_abcdef"}):
        r = c.get("/v1/erasures", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["content-type"] == PROBLEM and r.headers["www-authenticate"] == "Bearer"
    key = api.key("acme", "erasures:read", name="to-revoke")
    assert c.get("/v1/erasures", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    from core.tenancy import service as tenancy

    with unit_of_work(api.engine) as s:
        tenancy.revoke_key(s, key[:14])
    r = c.get("/v1/erasures", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_list_filters_and_cursor_stable_under_inserts(api: ApiEnv) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    m1, m2 = api.ready_model(), api.ready_model()
    ids = []
    for i in range(5):
        body = erasure_body(m1 if i % 2 == 0 else m2, labels=["even" if i % 2 == 0 else "odd"],
                            legal={"regime": "dmca", "basis": "notice", "due_at": f"2026-12-0{i + 1}T00:00:00Z",
                                   "external_reference": f"DMCA-{i}{'-urgent' if i == 3 else ''}"})
        ids.append(c.post("/v1/erasures", json=body, headers=h).json()["id"])
    page = c.get("/v1/erasures?limit=2", headers=h).json()
    assert [x["id"] for x in page["items"]] == ids[::-1][:2]
    # Requests filed between page fetches do not shift later pages.
    c.post("/v1/erasures", json=erasure_body(m1), headers=h)
    rest = []
    cursor = page["next_cursor"]
    while cursor:
        nxt = c.get(f"/v1/erasures?limit=2&cursor={cursor}", headers=h).json()
        rest += [x["id"] for x in nxt["items"]]
        cursor = nxt["next_cursor"]
    assert rest == ids[::-1][2:]
    assert {x["id"] for x in c.get(f"/v1/erasures?model_id={m2}", headers=h).json()["items"]} == {ids[1], ids[3]}
    assert {x["id"] for x in c.get("/v1/erasures?label=odd", headers=h).json()["items"]} == {ids[1], ids[3]}
    due = c.get("/v1/erasures?due_before=2026-12-03T00:00:00Z", headers=h).json()["items"]
    assert {x["id"] for x in due} == {ids[0], ids[1]}
    found = c.get("/v1/erasures?external_reference=dmca-3", headers=h).json()["items"]
    assert [x["id"] for x in found] == [ids[3]]
    found = c.get("/v1/erasures?external_reference=URGENT&label=odd", headers=h).json()["items"]
    assert [x["id"] for x in found] == [ids[3]]
    assert c.get("/v1/erasures?external_reference=URGENT&label=even", headers=h).json()["items"] == []
    c.post(f"/v1/erasures/{ids[0]}/cancel", headers=h)
    assert [x["id"] for x in c.get("/v1/erasures?status=cancelled", headers=h).json()["items"]] == [ids[0]]
    assert c.get("/v1/erasures?status=bogus", headers=h).status_code == 422


def test_cancel_and_transitions(api: ApiEnv) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    rid = c.post("/v1/erasures", json=erasure_body(api.ready_model()), headers=h).json()["id"]
    r = c.post(f"/v1/erasures/{rid}/cancel", headers=h)
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    with unit_of_work(api.engine) as s:
        job = s.scalars(select(Job).where(Job.request_id == uuid.UUID(rid))).one()
        assert job.state == JobState.cancelled and job.cancel_requested
    again = c.post(f"/v1/erasures/{rid}/cancel", headers=h)
    assert again.status_code == 409 and again.json()["type"] == P + "invalid-transition"
    assert again.json()["current"] == "cancelled"
    # approving a request that never needed approval → 409
    rid2 = c.post("/v1/erasures", json=erasure_body(api.ready_model()), headers=h).json()["id"]
    r = c.post(f"/v1/erasures/{rid2}/approve", headers=api.auth(scopes="erasures:approve"))
    assert r.status_code == 409
    # a running job: cancel is requested, the worker finishes it
    with unit_of_work(api.engine) as s:
        s.execute(update(Job).where(Job.request_id == uuid.UUID(rid2)).values(state=JobState.running, attempt=1))
        s.execute(update(ErasureRequest).where(ErasureRequest.id == uuid.UUID(rid2)).values(status="running"))
    r = c.post(f"/v1/erasures/{rid2}/cancel", headers=h)
    assert r.status_code == 202 and r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    assert c.post(f"/v1/erasures/{uuid.uuid4()}/cancel", headers=h).status_code == 404


def test_four_eyes_approval(api: ApiEnv) -> None:  # noqa: F811
    c = api.client
    submitter = api.auth("bank", "erasures:write,erasures:read,erasures:approve", require_approval=True)
    approver = api.auth("bank", "erasures:approve", name="second")
    mid = api.ready_model("bank")
    rid = c.post("/v1/erasures", json=erasure_body(mid), headers=submitter).json()["id"]
    assert c.get(f"/v1/erasures/{rid}", headers=submitter).json()["status"] == "awaiting_approval"
    with unit_of_work(api.engine) as s:
        assert s.scalars(select(Job).where(Job.request_id == uuid.UUID(rid))).all() == []
    own = c.post(f"/v1/erasures/{rid}/approve", headers=submitter)
    assert own.status_code == 403 and own.json()["type"] == P + "four-eyes"
    ok = c.post(f"/v1/erasures/{rid}/approve", headers=approver)
    assert ok.status_code == 200 and ok.json()["status"] == "queued" and ok.json()["approved_by"]
    with unit_of_work(api.engine) as s:
        assert s.scalars(select(Job).where(Job.request_id == uuid.UUID(rid))).one().state == JobState.queued
    # reject path
    rid2 = c.post("/v1/erasures", json=erasure_body(mid), headers=submitter).json()["id"]
    assert c.post(f"/v1/erasures/{rid2}/reject", json={}, headers=approver).status_code == 422
    r = c.post(f"/v1/erasures/{rid2}/reject", json={"reason": "incomplete notice"}, headers=approver)
    assert r.status_code == 200 and r.json()["status"] == "rejected" and r.json()["decision_reason"]
    assert c.post(f"/v1/erasures/{rid2}/approve", headers=approver).status_code == 409
    actions = [e["action"] for e in c.get("/v1/audit/events", headers=api.auth("bank", "audit:read")).json()["items"]]
    assert {"erasure.approved", "erasure.rejected"} <= set(actions)


def test_cross_tenant_is_404(api: ApiEnv) -> None:  # noqa: F811
    c = api.client
    rid = c.post("/v1/erasures", json=erasure_body(api.ready_model("acme")), headers=api.auth("acme")).json()["id"]
    other = api.auth("globex")
    for method, path in (("get", f"/v1/erasures/{rid}"), ("post", f"/v1/erasures/{rid}/cancel"),
                         ("post", f"/v1/erasures/{rid}/approve"), ("get", f"/v1/erasures/{rid}/certificate")):
        r = getattr(c, method)(path, headers=other)
        assert r.status_code == 404, (method, path, r.text)
    r = c.post(f"/v1/erasures/{rid}/reject", json={"reason": "x"}, headers=other)
    assert r.status_code == 404
    assert c.get("/v1/erasures", headers=other).json()["items"] == []
    # another tenant's model cannot be used either
    r = c.post("/v1/erasures", json=erasure_body(api.ready_model("acme")), headers=other)
    assert r.status_code == 404
    assert all(e["tenant_id"] != str(api.principal("acme").tenant_id)
               for e in c.get("/v1/audit/events", headers=other).json()["items"])


def test_rate_limit_429(pg_url: str) -> None:
    from tests.api_support import build_env

    # 10 in any minute: the eleventh within the minute is refused.
    for env in build_env(pg_url, rate_limit_per_minute=10):
        h = env.auth()
        codes = [env.client.get("/v1/erasures", headers=h).status_code for _ in range(20)]
        assert codes == [200] * 10 + [429] * 10
        r = env.client.get("/v1/erasures", headers=h)
        assert r.headers["content-type"] == PROBLEM and int(r.headers["retry-after"]) >= 1
        assert r.json()["type"] == P + "rate-limited"
        assert env.client.get("/v1/erasures", headers=env.auth("other")).status_code == 200


def test_audit_event_filters_and_pagination(api: ApiEnv) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    mid = api.ready_model()
    for _ in range(3):
        c.post("/v1/erasures", json=erasure_body(mid), headers=h)
    everything = c.get("/v1/audit/events?limit=100", headers=h).json()["items"]
    assert [e["seq"] for e in everything] == sorted(e["seq"] for e in everything)
    seen, cursor = [], None
    while True:
        page = c.get("/v1/audit/events?limit=2" + (f"&cursor={cursor}" if cursor else ""), headers=h).json()
        seen += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [e["seq"] for e in everything]
    submitted = c.get("/v1/audit/events?action=erasure.submitted", headers=h).json()["items"]
    assert len(submitted) == 3 and all(e["payload"]["model_id"] == str(mid) for e in submitted)
    middle = submitted[1]["at"]
    assert len(c.get("/v1/audit/events", params={"action": "erasure.submitted", "since": middle},
                     headers=h).json()["items"]) == 2
    assert len(c.get("/v1/audit/events", params={"action": "erasure.submitted", "until": middle},
                     headers=h).json()["items"]) == 1
    assert c.get("/v1/audit/events?since=2999-01-01T00:00:00Z", headers=h).json()["items"] == []
    assert c.get("/v1/audit/events?cursor=bm9wZQ", headers=h).status_code == 422


def test_verification_thresholds_can_be_raised_never_lowered(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from core.config import get_settings

    monkeypatch.setenv("LETHE_VERIFY_MIN_UNLEARNING_ACCURACY", "0.9")
    monkeypatch.setenv("LETHE_VERIFY_MIN_RETENTION", "0.9")
    get_settings.cache_clear()
    c, h = api.client, api.auth()
    mid = api.ready_model()
    asked = {"judge": "diffusion-classifier", "min_unlearning_accuracy": 0.97, "min_retention": 0.95}
    r = c.post("/v1/erasures", json={**erasure_body(mid), "verification": asked}, headers=h)
    assert r.status_code == 202, r.text
    assert r.json()["verification"] == asked
    assert c.get(f"/v1/erasures/{r.json()['id']}", headers=h).json()["verification"] == asked
    lowered = c.post("/v1/erasures", json={**erasure_body(mid), "verification": {"min_retention": 0.5}}, headers=h)
    assert lowered.status_code == 422 and lowered.headers["content-type"].startswith(PROBLEM)
    assert "below the service minimum 0.9" in lowered.json()["detail"]
    unknown = c.post("/v1/erasures", json={**erasure_body(mid), "verification": {"judge": "oracle"}}, headers=h)
    assert unknown.status_code == 422
