"""The `apply_version` job: store an applied erasure's files as its version (default queue, no torch).

Copies the erasure's `fused/` objects under `tenants/{t}/models/{m}/versions/{n}/fused/` (every object
sha256-checked on the way), fingerprints them, and writes the version's cumulative adapter relative to v1:
`combine_adapters([parent's cumulative adapter, this erasure's adapter])` — concatenated LoRA factors, exact.
When the erasure's adapter is not exact (a per-weight mask was merged into fused/ only, or the method has no
adapter) or the parent has no exact cumulative adapter, the version ships its fused weights only and says why.

Each apply queues a job; a job stores every pending version of its model (a version's parent is always ready
before it is applied, so any order works), so whichever job runs first does the work and versions never wait
for "their" job. A version whose inputs are gone, or whose job fails for good, is `failed`, and a head still
on it moves back to its parent (audited, `model.head.moved`). A stored version releases the requests chained
after its erasure (core.erasure.chain: they run on it); a failed one cancels them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.audit import service as audit
from core.config import Settings
from core.db import sqlite_write_lock, unit_of_work
from core.erasure import chain
from core.erasure import repository as erasure_repo
from core.errors import LetheError, StaleAttempt
from core.jobs import lifecycle as jobs
from core.jobs.keeper import LeaseKeeper
from core.jobs.runner import finish_attempt
from core.jobs.states import JobState
from core.logging import get_logger
from core.outbox.service import webhook_event
from core.pipeline_folder import fingerprint as folder_fingerprint
from core.registry import repository as registry_repo
from core.storage import get_store
from core.storage.tenant import ScopedStore, tenant_store
from core.versions import repository
from core.versions.models import ModelVersion, VersionStatus

log = get_logger(__name__)
FUSED = "fused/"
ADAPTER = "adapter/pytorch_lora_weights.safetensors"


class VersionInputError(LetheError):
    kind = "version-input"
    title = "The version's inputs are missing"


def version_key(model_id: uuid.UUID | str, number: int, name: str) -> str:
    """Where a version's file lives, relative to the tenant's prefix."""
    return f"models/{model_id}/versions/{number}/{name}"


@dataclass(frozen=True)
class _Work:
    version_id: uuid.UUID
    number: int
    model_id: uuid.UUID
    tenant_id: uuid.UUID
    erasure_artifacts: list[dict[str, Any]]
    parent_number: int
    parent_adapter: dict[str, Any] | None  # the parent's adapter/ artifact (None: v1 or fused only)
    parent_exact: bool
    parent_reason: str | None


def _plan(session: Any, held: jobs.Lease, skip: set[uuid.UUID]) -> _Work | ModelVersion | None:
    """What storing the model's oldest pending version (not in `skip`) needs; the version itself when its
    inputs are gone (it can never be stored); None when nothing is pending."""
    version = next((v for v in repository.pending(session, held.model_id) if v.id not in skip), None)
    if version is None:
        return None
    request = erasure_repo.get_request(session, version.tenant_id, version.erasure_id) if version.erasure_id else None
    job = erasure_repo.latest_jobs(session, [request.id]).get(request.id) if request else None
    parent = repository.get(session, version.model_id, version.parent_number or 1)
    if request is None or job is None or job.state != JobState.succeeded or parent is None:
        return version
    rows = erasure_repo.artifacts_of_attempt(session, job.id, job.attempt)
    parent_adapter = next((a for a in parent.artifacts if a["name"] == ADAPTER), None)
    info = parent.adapter or {}
    parent_exact = parent.number == 1 or bool(info.get("exact"))
    return _Work(
        version_id=version.id, number=version.number, model_id=version.model_id, tenant_id=version.tenant_id,
        erasure_artifacts=[{"name": r.name, "key": r.key, "size": r.size, "sha256": r.sha256} for r in rows],
        parent_number=parent.number, parent_adapter=parent_adapter, parent_exact=parent_exact,
        parent_reason=info.get("reason"),
    )


def run_apply_version(held: jobs.Lease, settings: Settings, keeper: LeaseKeeper, work_dir: Path) -> str:
    """Lease held: store every pending version of the job's model, oldest first (whichever apply job runs
    first does the work; the others find nothing left), then finish the job."""
    keeper.progress("store-version", 0.0)
    handled: set[uuid.UUID] = set()
    while True:
        keeper.check()
        with unit_of_work() as session:
            planned = _plan(session, held, handled)
            if isinstance(planned, ModelVersion):
                # Its erasure's outputs are gone: it can never be stored.
                _version_failed(session, held, planned.id, "its erasure has no succeeded outputs any more")
                handled.add(planned.id)
                continue
        if planned is None:
            break
        work = planned
        handled.add(work.version_id)
        store = tenant_store(get_store(settings), work.tenant_id)
        try:
            artifacts, fingerprint, adapter = _store_files(work, store, keeper, work_dir / str(work.number))
        except StaleAttempt:
            raise
        except Exception as exc:
            reason = str(exc).strip() or type(exc).__name__
            permanent = isinstance(exc, VersionInputError | ValueError)
            log.warning("storing a version failed", version=work.number, reason=reason, retryable=not permanent)
            if permanent:
                finish_attempt(lambda s, w=work, r=reason: _version_failed(s, held, w.version_id, r))
                continue
            keeper.stop()
            return finish_attempt(lambda s, w=work, r=reason: _failed(s, held, w, r, settings=settings))
        finish_attempt(lambda s, w=work, a=artifacts, f=fingerprint, d=adapter: _stored(s, held, w, a, f, d))
    keeper.stop()
    if keeper.lost:
        raise StaleAttempt(f"job {held.job_id} attempt {held.attempt} lost its lease")
    return finish_attempt(lambda s: jobs.complete(s, held, artifacts=[]))


def _store_files(work: _Work, store: ScopedStore, keeper: LeaseKeeper, work_dir: Path
                 ) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
    fused = [a for a in work.erasure_artifacts if a["name"].startswith(FUSED)]
    if not fused:
        raise VersionInputError(f"version {work.number}'s erasure has no fused/ weights")
    local = work_dir / "files"
    stored: list[dict[str, Any]] = []
    for i, art in enumerate(fused):
        keeper.check()
        path = store.download(store.relative(art["key"]), local / art["name"], expected_sha256=art["sha256"])
        stored.append(_put(store, work, art["name"], path))
        keeper.progress("store-version", 0.9 * (i + 1) / len(fused))
    fingerprint = folder_fingerprint(local / FUSED.rstrip("/"))
    keeper.check()
    adapter, adapter_file = _cumulative_adapter(work, store, work_dir)
    if adapter_file is not None:
        stored.append(_put(store, work, ADAPTER, adapter_file))
    keeper.progress("store-version", 1.0)
    return sorted(stored, key=lambda a: a["name"]), fingerprint, adapter


def _put(store: ScopedStore, work: _Work, name: str, path: Path) -> dict[str, Any]:
    relative = version_key(work.model_id, work.number, name)
    obj = store.put(relative, path)
    return {"name": name, "key": store.key(relative), "size": obj.size, "sha256": obj.sha256}


def _cumulative_adapter(work: _Work, store: ScopedStore, work_dir: Path) -> tuple[dict[str, Any], Path | None]:
    """(adapter info, the combined file or None when the version ships fused weights only)."""
    from core.lineage.cumulative import AdapterCombineError, adapter_is_exact, combine_adapters

    if not work.parent_exact or (work.parent_number > 1 and work.parent_adapter is None):
        return {"exact": False, "rank": None,
                "reason": f"version {work.parent_number} has no exact cumulative adapter"
                          + (f" ({work.parent_reason})" if work.parent_reason else "")}, None
    by_name = {a["name"]: a for a in work.erasure_artifacts}
    own, report = by_name.get(ADAPTER), by_name.get("report.json")
    if own is None or report is None:
        return {"exact": False, "rank": None, "reason": "the erasure wrote no LoRA adapter (fused weights only)"}, None
    folder = work_dir / "adapters"
    report_path = store.download(store.relative(report["key"]), folder / "report.json",
                                 expected_sha256=report["sha256"])
    if not adapter_is_exact(json.loads(report_path.read_text())):
        return {"exact": False, "rank": None,
                "reason": "the erasure merged a per-weight mask into fused/ only: its adapter is not exact"}, None
    inputs: list[Path] = []
    if work.parent_adapter is not None:
        inputs.append(store.download(store.relative(work.parent_adapter["key"]), folder / "parent.safetensors",
                                     expected_sha256=work.parent_adapter["sha256"]))
    inputs.append(store.download(store.relative(own["key"]), folder / "own.safetensors",
                                 expected_sha256=own["sha256"]))
    try:
        combined = combine_adapters(inputs, folder / "combined.safetensors")
    except AdapterCombineError as exc:
        return {"exact": False, "rank": None, "reason": f"the adapters cannot be combined exactly: {exc}"}, None
    return {"exact": True, "rank": combined.total_rank, "reason": None}, combined.path


def _version(session: Any, version_id: uuid.UUID) -> ModelVersion:
    sqlite_write_lock(session)
    version = session.get(ModelVersion, version_id, populate_existing=True, with_for_update=True)
    assert version is not None
    return version


def _stored(session: Any, held: jobs.Lease, work: _Work, artifacts: list[dict[str, Any]], fingerprint: str,
            adapter: dict[str, Any]) -> str:
    version = _version(session, work.version_id)
    if version.status != VersionStatus.pending:  # another apply job stored it meanwhile (same files, same keys)
        return version.status.value
    version.status = VersionStatus.ready
    version.artifacts = artifacts
    version.fingerprint = fingerprint
    version.adapter = adapter
    audit.append(session, action="model.version.stored", subject=f"model:{work.model_id}", actor=held.actor,
                 tenant_id=work.tenant_id,
                 payload={"version": work.number, "fingerprint": fingerprint, "adapter": adapter,
                          "artifacts": [{"name": a["name"], "sha256": a["sha256"], "size": a["size"]}
                                        for a in artifacts]})
    webhook_event(session, "model.version.created", work.tenant_id, {
        "model_id": str(work.model_id), "version": work.number, "parent": work.parent_number,
        "erasure_id": str(version.erasure_id), "status": "ready", "fingerprint": fingerprint, "reason": None})
    if version.erasure_id is not None:  # requests chained after its erasure now run on it
        chain.release(session, version.erasure_id, version.number, actor=held.actor)
    return version.status.value


def _failed(session: Any, held: jobs.Lease, work: _Work, reason: str, *, settings: Settings) -> JobState:
    """A transient failure: the job retries later; when it has no attempts left the version fails."""
    state = jobs.fail(session, held, reason, retryable=True, backoff_base=settings.job_retry_backoff_seconds)
    if state == JobState.failed:
        _version_failed(session, held, work.version_id, reason)
    return state


def _version_failed(session: Any, held: jobs.Lease, version_id: uuid.UUID, reason: str) -> str:
    """The version can never be stored: `failed`, announced, and a head still on it moves back to its parent."""
    version = _version(session, version_id)
    if version.status != VersionStatus.pending:
        return version.status.value
    version.status = VersionStatus.failed
    version.status_reason = reason[:2000]
    audit.append(session, action="model.version.failed", subject=f"model:{version.model_id}", actor=held.actor,
                 tenant_id=version.tenant_id, payload={"version": version.number, "reason": version.status_reason})
    webhook_event(session, "model.version.created", version.tenant_id, {
        "model_id": str(version.model_id), "version": version.number, "parent": version.parent_number,
        "erasure_id": str(version.erasure_id), "status": "failed", "fingerprint": None, "reason": reason})
    if version.erasure_id is not None:
        chain.cancel_successors(session, version.erasure_id, f"was applied as version {version.number}, which "
                                f"could not be stored: {version.status_reason}", actor=held.actor)
    model = registry_repo.lock(session, version.tenant_id, version.model_id)
    if model is not None and model.head_version == version.number:
        from core.versions.service import record_head_move

        record_head_move(session, model, version.parent_number or 1, actor=held.actor,
                         reason=f"version {version.number} failed")
    return version.status.value
