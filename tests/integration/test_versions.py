"""Model versions through the API on Postgres + S3, jobs run by the worker's code on a tiny pipeline:
apply, stale-base 409 and rebase for two erasures on one head, the cumulative adapter's rank, certificates
that chain, head rollback (audited, webhook), auto_apply, and problem+json for bad input."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.certificates.chain import document_sha256
from core.db import unit_of_work
from core.outbox.models import OutboxMessage
from core.storage import get_store
from tests.api_support import ApiEnv
from tests.integration.versions_support import problem, run_jobs, save_json, versions_env
from tests.integration.worker_support import REPO, audit_actions, child_env, tiny_model_dir

pytestmark = pytest.mark.slow(minutes=0.6)
# A real but quick erasure on the tiny pipeline (the API's share of worker_support.FAST_PARAMS).
FAST = {"steps": 10, "lr": 3e-3, "sample_steps": 2, "max_rounds": 1}


@pytest.fixture
def env(pg_url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    # The tiny random pipeline tests the machinery: no noise-space floor (as worker_support.stack_settings).
    yield from versions_env(pg_url, s3_endpoint, monkeypatch, verify_min_gap_closure=0)


def _erase(env: ApiEnv, auth: dict[str, str], model_id: str, target: str, **extra: Any) -> dict[str, Any]:
    body = {"model_id": model_id, "concepts": [{"target": target, "kind": "object", "prompts": [f"a {target}"]}],
            "params": FAST, **extra}
    r = env.client.post("/v1/erasures", json=body, headers=auth)
    assert r.status_code == 202, r.text
    return r.json()


def _events(kind: str) -> list[dict[str, Any]]:
    with unit_of_work() as s:
        rows = s.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at))
        return [r.payload["data"] for r in rows if r.payload.get("type") == kind]


def test_apply_stale_base_rebase_rollback_and_auto_apply(env: ApiEnv, tmp_path: Path) -> None:
    c, auth = env.client, env.auth()
    source = tiny_model_dir(env.model_root)
    r = c.post("/v1/models", json={"name": "tiny", "source_uri": f"file://{source}"}, headers=auth)
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    assert run_jobs() == [("validate_model", "succeeded")]
    listed = c.get(f"/v1/models/{mid}/versions", headers=auth).json()
    fingerprint = c.get(f"/v1/models/{mid}", headers=auth).json()["fingerprint"]
    assert listed["head"] == 1 and [v["number"] for v in listed["items"]] == [1]
    assert listed["items"][0]["fingerprint"] == fingerprint and listed["items"][0]["status"] == "ready"

    # Two erasures on the same head: the first applied wins, the second is stale.
    a, b = _erase(env, auth, mid, "circle"), _erase(env, auth, mid, "square")
    assert a["model_version"] == b["model_version"] == 1
    run_jobs()
    _succeeded(env, auth, a, b)
    r = c.post(f"/v1/models/{mid}/versions", json={"erasure_id": a["id"]}, headers=auth)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/models/{mid}/versions/2"
    assert r.json()["status"] == "pending" and r.json()["head"] is True and r.json()["parent"] == 1
    stale = problem(c.post(f"/v1/models/{mid}/versions", json={"erasure_id": b["id"]}, headers=auth), 409,
                    "stale-base")
    assert stale["head"] == 2 and stale["base"] == 1 and "rebase" in stale["detail"]
    problem(c.post(f"/v1/models/{mid}/versions", json={"erasure_id": a["id"]}, headers=auth), 409,
            "already-applied")
    assert run_jobs() == [("apply_version", "succeeded")]
    v2 = c.get(f"/v1/models/{mid}/versions/2", headers=auth).json()
    assert v2["status"] == "ready" and v2["erasure_id"] == a["id"]
    assert [x["target"] for x in v2["erased_concepts"]] == ["circle"]
    names = {x["name"] for x in v2["artifacts"]}
    assert "fused/unet/diffusion_pytorch_model.safetensors" in names
    assert "adapter/pytorch_lora_weights.safetensors" in names
    assert v2["adapter"]["exact"] is True and v2["adapter"]["rank"] > 0
    store = get_store()
    for art in v2["artifacts"]:  # every file is under the version, with the sha256 the API states
        assert art["url"]
        key = f"tenants/{env.principal().tenant_id}/models/{mid}/versions/2/{art['name']}"
        data = store.get(key)
        assert hashlib.sha256(data).hexdigest() == art["sha256"]
        (tmp_path / "v2" / art["name"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "v2" / art["name"]).write_bytes(data)
    # The version's fingerprint is the models' own (core.spare.loading.fingerprint) over its fused folder.
    from core.spare.loading import fingerprint as weights_fingerprint

    assert v2["fingerprint"] == weights_fingerprint(tmp_path / "v2" / "fused") != fingerprint
    assert v2["certificate"]["certificate"]["request"]["id"] == a["id"]
    assert v2["certificate_sha256"] == document_sha256(v2["certificate"])

    # The stale erasure re-runs on the head: a new, linked request that verifies circle again.
    r = c.post(f"/v1/erasures/{b['id']}/rebase", headers=auth)
    assert r.status_code == 202, r.text
    b2 = r.json()
    assert b2["rebased_from"] == b["id"] and b2["model_version"] == 2 and b2["id"] != b["id"]
    run_jobs()
    _succeeded(env, auth, b2)
    cert = c.get(f"/v1/erasures/{b2['id']}/certificate", headers=auth).json()
    lineage = cert["certificate"]["lineage"]
    assert lineage["model_version"] == 2 and lineage["previous_certificate_sha256"] == v2["certificate_sha256"]
    assert [(x["target"], x["version"]) for x in lineage["erased_concepts"]] == [("circle", 2), ("square", None)]
    assert all(x["passed"] is True and x["ua"] is not None for x in lineage["erased_concepts"])
    assert {x["concept"] for x in cert["certificate"]["proof"]["concepts"]} == {"circle", "square"}
    assert cert["certificate"]["model"]["fingerprint_before"] == v2["fingerprint"]
    r = c.post(f"/v1/models/{mid}/versions", json={"erasure_id": b2["id"]}, headers=auth)
    assert r.status_code == 201, r.text
    assert run_jobs() == [("apply_version", "succeeded")]
    v3 = c.get(f"/v1/models/{mid}/versions/3", headers=auth).json()
    assert v3["parent"] == 2 and [x["target"] for x in v3["erased_concepts"]] == ["circle", "square"]
    own_rank = b2_rank = v3["adapter"]["rank"] - v2["adapter"]["rank"]
    assert own_rank > 0 and b2_rank == own_rank, "ranks add: the cumulative adapter concatenates factors"

    # The chain verifies offline; a certificate missing from it or altered does not.
    v3_file = save_json(tmp_path / "v3.json", v3["certificate"])
    v2_file = save_json(tmp_path / "v2.json", v2["certificate"])
    cli = [sys.executable, "-m", "core.cli", "certificate", "verify", "--chain", "--trust-embedded"]
    ok = subprocess.run([*cli, str(v3_file), str(v2_file)], capture_output=True, text=True, cwd=REPO,
                        env=child_env())
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "valid chain of 2" in ok.stdout
    alone = subprocess.run([*cli, str(v3_file)], capture_output=True, text=True, cwd=REPO, env=child_env())
    assert alone.returncode == 1 and "not among the files" in alone.stdout
    forged = dict(v2["certificate"])
    forged["certificate"] = {**forged["certificate"], "issued_at": "2020-01-01T00:00:00+00:00"}
    bad = subprocess.run([*cli, str(v3_file), str(save_json(tmp_path / "f.json", forged))], capture_output=True,
                         text=True, cwd=REPO, env=child_env())
    assert bad.returncode == 1, bad.stdout

    # Rollback: reason required, unknown versions 404, audited, announced.
    problem(c.put(f"/v1/models/{mid}/head", json={"version": 2}, headers=auth), 422, "validation")
    problem(c.put(f"/v1/models/{mid}/head", json={"version": 2, "reason": ""}, headers=auth), 422, "validation")
    problem(c.put(f"/v1/models/{mid}/head", json={"version": 9, "reason": "x"}, headers=auth), 404, "not-found")
    problem(c.get(f"/v1/models/{mid}/versions/9", headers=auth), 404, "not-found")
    problem(_raw_erase(env, auth, mid, model_version=9), 404, "not-found")
    reader = env.auth(scopes="models:read", name="reader")
    problem(c.put(f"/v1/models/{mid}/head", json={"version": 2, "reason": "x"}, headers=reader), 403, "forbidden")
    r = c.put(f"/v1/models/{mid}/head", json={"version": 2, "reason": "v3 blurs product shots"}, headers=auth)
    assert r.status_code == 200 and r.json()["head_version"] == 2
    moved = [p for a, p in audit_actions(f"model:{mid}") if a == "model.head.moved"]
    assert moved[-1] == {"from": 3, "to": 2, "reason": "v3 blurs product shots"}
    assert _events("model.head.moved")[-1]["head"] == 2
    assert [e["version"] for e in _events("model.version.created")] == [2, 3]

    # auto_apply: an erasure on the (rolled back) head becomes v4, child of v2.
    r = c.patch(f"/v1/models/{mid}", json={"auto_apply": True}, headers=auth)
    assert r.status_code == 200 and r.json()["auto_apply"] is True
    d = _erase(env, auth, mid, "star")
    assert d["model_version"] == 2
    assert run_jobs() == [("erase", "succeeded"), ("apply_version", "succeeded")]
    listed = c.get(f"/v1/models/{mid}/versions", headers=auth).json()
    assert listed["head"] == 4
    v4 = listed["items"][3]
    assert v4["parent"] == 2 and v4["erasure_id"] == d["id"] and v4["status"] == "ready"
    assert [x["target"] for x in v4["erased_concepts"]] == ["circle", "star"]
    # v3 stays (a certificate names it); rolling forward to it works.
    r = c.put(f"/v1/models/{mid}/head", json={"version": 3, "reason": "fix verified"}, headers=auth)
    assert r.json()["head_version"] == 3

    # The operators' CLI on the same database: the lineage, and a head move (reason required, audited).
    lethe = [sys.executable, "-m", "core.cli", "model"]
    shown = subprocess.run([*lethe, "versions", mid], capture_output=True, text=True, cwd=REPO, env=child_env())
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[2].startswith("* v3 ready") and "circle (v2), square (v3)" in lines[2], shown.stdout
    assert "v4 ready" in lines[3] and "parent v2" in lines[3]
    refused = subprocess.run([*lethe, "head", mid, "--set", "4"], capture_output=True, text=True, cwd=REPO,
                             env=child_env())
    assert refused.returncode == 2 and "--reason is required" in refused.stderr
    moved = subprocess.run([*lethe, "head", mid, "--set", "4", "--reason", "ship the star takedown"],
                           capture_output=True, text=True, cwd=REPO, env=child_env())
    assert moved.returncode == 0 and moved.stdout.strip() == "head is version 4", moved.stderr
    event = [p for a, p in audit_actions(f"model:{mid}") if a == "model.head.moved"][-1]
    assert event == {"from": 3, "to": 4, "reason": "ship the star takedown"}


def _succeeded(env: ApiEnv, auth: dict[str, str], *requests: dict[str, Any]) -> None:
    for request in requests:
        got = env.client.get(f"/v1/erasures/{request['id']}", headers=auth).json()
        assert got["status"] == "succeeded", got["error"]


def _raw_erase(env: ApiEnv, auth: dict[str, str], model_id: str, **extra: Any) -> Any:
    body = {"model_id": model_id, "concepts": [{"target": "heart"}], "params": FAST, **extra}
    return env.client.post("/v1/erasures", json=body, headers=auth)
