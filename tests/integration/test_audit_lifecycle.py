"""A full request lifecycle yields a verifiable audit chain and a signed certificate; tampering is detected.

Drives the real services: HTTP submit → HTTP approve (four eyes) → the worker's job functions
(core.jobs.lifecycle.lease / complete; the erase handler issues the certificate) → HTTP reads and downloads.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from core.certificates import CertificateRefused, issue
from core.certificates.service import body_digest
from core.cli.app import app as cli
from core.config import get_settings
from core.db import unit_of_work
from core.erasure.models import ErasureRequest
from core.jobs import lifecycle as jobs
from core.jobs.models import Job
from core.jobs.states import JobState
from core.storage import artifact_key, get_store
from tests.api_support import ApiEnv, api, erasure_body  # noqa: F401
from tests.evidence import verified_metrics

VERIFIED = verified_metrics()


def _run_job(env: ApiEnv, request_id: str) -> tuple[Job, dict[str, bytes]]:
    """What a worker does: lease the job, store outputs, complete in one transaction."""
    with unit_of_work(env.engine) as s:
        job = s.scalars(sa.select(Job).where(Job.request_id == uuid.UUID(request_id))).one()
        held = jobs.lease(s, job.id, "test-worker", 60)
        assert held is not None
    outputs = {"adapter/pytorch_lora_weights.safetensors": b"adapter-bytes" * 100,
               "fused/unet/diffusion_pytorch_model.safetensors": b"fused-bytes" * 300}
    store = get_store(env.settings)
    stored = []
    for name, data in outputs.items():
        key = artifact_key(held.tenant_id, held.request_id, held.job_id, held.attempt, name)
        obj = store.put(key, data)
        stored.append(jobs.StoredArtifact(name=name, key=key, size=obj.size, sha256=obj.sha256))
    with unit_of_work(env.engine) as s:
        assert jobs.complete(s, held, artifacts=stored, result=VERIFIED) == JobState.succeeded
    with unit_of_work(env.engine) as s:
        return s.get(Job, held.job_id), outputs  # type: ignore[return-value]


def _cli(env: ApiEnv, *args: str) -> tuple[int, str]:
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, list(args), env={"LETHE_DATABASE_URL": env.settings.database_url,
                                                       "LETHE_DATA_DIR": str(env.settings.data_dir)})
    get_settings.cache_clear()
    return result.exit_code, result.output


def test_lifecycle_chain_certificate_and_tamper(api: ApiEnv, tmp_path: Path) -> None:  # noqa: F811
    c = api.client
    submitter = api.auth("acme", "erasures:write,erasures:read,audit:read", require_approval=True)
    approver = api.auth("acme", "erasures:approve", name="approver")
    rid = c.post("/v1/erasures", json=erasure_body(api.ready_model()), headers=submitter).json()["id"]
    assert c.get(f"/v1/erasures/{rid}/certificate", headers=submitter).status_code == 404
    assert c.post(f"/v1/erasures/{rid}/approve", headers=approver).status_code == 200
    job, outputs = _run_job(api, rid)
    assert job.state == JobState.succeeded and job.attempt == 1

    def link_events() -> list[dict]:
        return c.get(f"/v1/audit/events?action=artifact.link_issued&subject=erasure:{rid}",
                     headers=submitter).json()["items"]

    got = c.get(f"/v1/erasures/{rid}", headers=submitter).json()
    assert got["status"] == "succeeded" and got["progress"] == 1.0 and got["attempts"] == 1
    assert got["certificate_available"] is True
    assert {a["name"]: (a["size"], a["sha256"]) for a in got["artifacts"]} == {
        n: (len(d), hashlib.sha256(d).hexdigest()) for n, d in outputs.items()}
    assert all("url" not in a for a in got["artifacts"])  # polling issues no links...
    for _ in range(3):
        c.get(f"/v1/erasures/{rid}", headers=submitter)
    assert link_events() == []  # ...and writes no audit event
    links = c.post(f"/v1/erasures/{rid}/artifact-links", headers=submitter)
    assert links.status_code == 200, links.text
    body = links.json()
    assert body["request_id"] == rid and body["attempt"] == 1 and body["expires_in_s"] > 0
    assert {a["name"] for a in body["artifacts"]} == set(outputs)
    for art in body["artifacts"]:  # signed links into this API (file:// store), sha256 checked on the way
        r = c.get(art["url"])
        assert r.status_code == 200 and r.content == outputs[art["name"]]
        assert hashlib.sha256(r.content).hexdigest() == art["sha256"] == r.headers["x-checksum-sha256"]
    assert c.get(body["artifacts"][0]["url"] + "x").status_code == 403  # tampered link
    [event] = link_events()  # issuing is audited: who, which files, for how long
    assert event["payload"]["names"] == sorted(outputs) and event["payload"]["attempt"] == 1
    assert event["actor"] == got["submitted_by"] and event["payload"]["ttl_s"] == body["expires_in_s"]

    # The certificate: signed, covers the request and artifacts, points into the audit chain.
    doc = c.get(f"/v1/erasures/{rid}/certificate", headers=submitter).json()
    cert = doc["certificate"]
    assert cert["request"]["id"] == rid and cert["request"]["approved_by"]
    assert cert["model"]["fingerprint_before"] == "ab" * 32
    assert {a["name"]: a["sha256"] for a in cert["artifacts"]} == {
        n: hashlib.sha256(d).hexdigest() for n, d in outputs.items()}
    assert cert["verification"]["ua[circle]"]["passed"] is True and cert["proof"]["concepts"][0]["concept"] == "circle"
    event = c.get(f"/v1/audit/events?action=certificate.issued&subject=erasure:{rid}", headers=submitter).json()
    assert event["items"][0]["seq"] == cert["audit"]["seq"] and event["items"][0]["hash"] == cert["audit"]["hash"]
    assert event["items"][0]["payload"]["digest"] == body_digest(cert)

    # Offline verification with the published key; a forged copy fails.
    pem = c.get("/v1/certificates/public-key").json()["public_key_pem"]
    (tmp_path / "key.pem").write_text(pem)
    (tmp_path / "cert.json").write_text(json.dumps(doc))
    key_file, cert_file = str(tmp_path / "key.pem"), str(tmp_path / "cert.json")
    code, out = _cli(api, "certificate", "verify", cert_file, "--public-key", key_file)
    assert code == 0 and out.startswith("valid"), out
    forged = json.loads(json.dumps(doc))
    forged["certificate"]["metrics"]["judge"]["concepts"][0]["ua"] = 0.2
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    code, out = _cli(api, "certificate", "verify", str(tmp_path / "forged.json"))
    assert code == 1 and "altered" in out

    # The chain covers the whole lifecycle and verifies.
    actions = [e["action"] for e in c.get("/v1/audit/events?limit=100", headers=submitter).json()["items"]]
    for expected in ("tenant.created", "api_key.created", "model.registered", "model.validated", "erasure.submitted",
                     "erasure.approved", "job.attempt_started", "artifact.stored", "job.attempt_finished",
                     "certificate.issued", "erasure.succeeded", "artifact.link_issued"):
        assert expected in actions, expected
    report = c.get("/v1/audit/verify", headers=submitter).json()
    tenant_events = [e for e in c.get("/v1/audit/events?limit=100", headers=submitter).json()["items"]]
    assert report["ok"] is True and report["checked"] == len(tenant_events) and report["first_broken_seq"] is None
    assert report["problem"] is None and report["checkpoint_at"]
    assert _cli(api, "audit", "verify")[0] == 0

    # UPDATE is refused by the trigger...
    victim = actions.index("erasure.approved") + 1
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), api.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET actor = 'mallory' WHERE seq = :s"), {"s": victim})
    # ...so a superuser disables it to rewrite history: the verifier names the altered row.
    with api.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change"))
        conn.execute(sa.text("UPDATE audit_events SET actor = 'mallory' WHERE seq = :s"), {"s": victim})
        conn.execute(sa.text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change"))
    # The API verifies incrementally (from the signed checkpoint, which covers the victim); a full check names it.
    code, out = _cli(api, "audit", "verify", "--full", "--json")
    assert code == 1 and json.loads(out) == {
        "ok": False, "checked": victim - 1, "first_broken_seq": victim, "problem": "altered",
        "head_seq": victim - 1, "checkpoint_seq": json.loads(out)["checkpoint_seq"]}


def test_deleted_row_is_detected(api: ApiEnv) -> None:  # noqa: F811
    h = api.auth()
    for _ in range(3):
        api.client.post("/v1/erasures", json=erasure_body(api.ready_model()), headers=h)
    with api.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change"))
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq = 4"))
        conn.execute(sa.text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change"))
    assert api.client.get("/v1/audit/verify", headers=h).json()["first_broken_seq"] == 4


def test_no_certificate_for_failed_or_unverified(api: ApiEnv) -> None:  # noqa: F811
    h = api.auth()
    rid = api.client.post("/v1/erasures", json=erasure_body(api.ready_model()), headers=h).json()["id"]
    with unit_of_work(api.engine) as s:
        job = s.scalars(sa.select(Job).where(Job.request_id == uuid.UUID(rid))).one()
        held = jobs.lease(s, job.id, "w", 60)
        assert held is not None
    with unit_of_work(api.engine) as s:
        jobs.fail(s, held, "engine exploded", retryable=False)
    with unit_of_work(api.engine) as s:
        request = s.get(ErasureRequest, uuid.UUID(rid))
        job = s.get(Job, held.job_id)
        assert request is not None and job is not None and request.status.value == "failed"
        with pytest.raises(CertificateRefused):
            issue(s, request, job, [], settings=api.settings)
        # Even a request marked succeeded is refused without passed verification checks.
        request.status = "succeeded"  # type: ignore[assignment]
        job.state = JobState.succeeded
        request.metrics = {"ua": 0.2, "verification": {"ua": {"value": 0.2, "min": 0.9, "passed": False}}}
        with pytest.raises(CertificateRefused, match="verification"):
            issue(s, request, job, [], settings=api.settings)
        s.rollback()
    r = api.client.get(f"/v1/erasures/{rid}/certificate", headers=h)
    assert r.status_code == 404 and r.json()["type"] == "https://lethe.dev/problems/certificate-not-issued"


def test_cancel_racing_the_worker_never_deadlocks(api: ApiEnv) -> None:  # noqa: F811
    """HTTP cancel and the worker's completion lock the same rows: same order, so no deadlock, no 5xx."""
    import threading

    h = api.auth()
    mid = api.ready_model()
    outcomes = []
    for _ in range(6):
        rid = api.client.post("/v1/erasures", json=erasure_body(mid), headers=h).json()["id"]
        with unit_of_work(api.engine) as s:
            job = s.scalars(sa.select(Job).where(Job.request_id == uuid.UUID(rid))).one()
            held = jobs.lease(s, job.id, "racer", 60)
            assert held is not None
        barrier = threading.Barrier(2)
        result: dict[str, object] = {}

        key = artifact_key(held.tenant_id, held.request_id, held.job_id, held.attempt, "adapter.safetensors")
        obj = get_store(api.settings).put(key, b"adapter")
        stored = [jobs.StoredArtifact(name="adapter.safetensors", key=key, size=obj.size, sha256=obj.sha256)]

        def finish(held: jobs.Lease = held, barrier: threading.Barrier = barrier,
                   result: dict[str, object] = result, stored: list[jobs.StoredArtifact] = stored) -> None:
            barrier.wait()
            with unit_of_work(api.engine) as s:
                result["worker"] = jobs.complete(s, held, artifacts=stored, result=VERIFIED)

        worker = threading.Thread(target=finish)
        worker.start()
        barrier.wait()
        r = api.client.post(f"/v1/erasures/{rid}/cancel", headers=h)
        worker.join(30)
        assert r.status_code in (202, 409), r.text
        final = api.client.get(f"/v1/erasures/{rid}", headers=h).json()["status"]
        outcomes.append((r.status_code, final))
        assert "worker" in result, "the worker's transaction failed"
    # Either the cancel landed first (the worker then records `cancelled`) or the job had finished.
    assert all(final in ("cancelled", "succeeded") for _, final in outcomes), outcomes


def test_artifact_links_on_s3_are_presigned(pg_url: str, s3_endpoint: str) -> None:
    """With an s3:// store the artifact links are S3 presigned GETs that return the stored bytes."""
    import httpx

    from tests.api_support import build_env

    bucket = f"lethe-{uuid.uuid4().hex[:8]}"
    for env in build_env(pg_url, store_url=f"s3://{bucket}/lethe", s3_endpoint_url=s3_endpoint):
        get_store(env.settings).ensure_bucket()  # type: ignore[attr-defined]
        h = env.auth()
        rid = env.client.post("/v1/erasures", json=erasure_body(env.ready_model()), headers=h).json()["id"]
        get_settings.cache_clear()
        _, outputs = _run_job(env, rid)
        got = env.client.post(f"/v1/erasures/{rid}/artifact-links", headers=h).json()
        assert len(got["artifacts"]) == len(outputs)
        for art in got["artifacts"]:
            url = art["url"]
            assert url.startswith(s3_endpoint) and ("Signature=" in url or "X-Amz-Signature" in url), url
            r = httpx.get(art["url"])
            assert r.status_code == 200 and r.content == outputs[art["name"]]
