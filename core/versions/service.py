"""Model versions: v1 on registration, applying a succeeded erasure (the next version), moving the head,
re-running a stale erasure on the head. Never commits.

Applying happens in two steps: `apply` (in the caller's transaction, under the model's row lock) checks that
the erasure ran on the head, creates version N+1 `pending` and moves the head to it at once — so a second
erasure that ran on the old head is refused (`stale-base`) from that moment — and queues an `apply_version`
job; the job (core.versions.storing) copies the files under the version and marks it `ready`. An erasure
submitted on a pending head waits: its job retries until the version is ready.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from core.audit import service as audit
from core.config import Settings
from core.erasure import chain
from core.erasure.models import ErasureRequest
from core.erasure.states import RequestStatus
from core.errors import Conflict, NotFound
from core.jobs.lifecycle import create_job
from core.jobs.states import JobKind
from core.outbox.service import webhook_event
from core.registry import repository as registry_repo
from core.registry.models import RegisteredModel
from core.spare.report import RoundsOutcome
from core.tenancy.schemas import Principal
from core.versions import repository
from core.versions.models import ModelVersion, VersionStatus
from core.versions.schemas import AdapterInfo, ErasedConcept, HeadMove, VersionArtifact, VersionOut


class StaleBase(Conflict):
    kind = "stale-base"
    title = "The erasure ran on a version that is no longer the head"


class VersionNotReady(Conflict):
    kind = "version-not-ready"
    title = "The version is not ready"


class AlreadyApplied(Conflict):
    kind = "already-applied"
    title = "The erasure is already applied"


class NotApplicable(Conflict):
    kind = "erasure-not-applicable"
    title = "The erasure cannot be applied"


def certificate_digest(document: dict[str, Any]) -> str:
    """sha256 of the RFC 8785 canonical JSON of a whole certificate document (certificate and signature):
    what the next version's certificate names as `lineage.previous_certificate_sha256`."""
    from core.certificates.chain import document_sha256

    return document_sha256(document)


def _v1(model: RegisteredModel, actor: str) -> ModelVersion:
    return ModelVersion(tenant_id=model.tenant_id, model_id=model.id, number=1, parent_number=None,
                        status=VersionStatus.ready, erased_concepts=[], artifacts=[], fingerprint=model.fingerprint,
                        created_by=actor, created_at=model.created_at, updated_at=model.created_at)


def create_v1(session: Session, model: RegisteredModel, actor: str) -> ModelVersion:
    """Version 1: the source as registered (its files stay where the source is). Migration 0010 wrote it for
    the models registered before versions; a model registered since gets it the first time it is needed."""
    version = _v1(model, actor)
    session.add(version)
    session.flush()
    return version


def check_erasable(session: Session, principal: Principal, model_id: uuid.UUID, number: int) -> int:
    """A version an erasure may name: the tenant's model has it and it has not failed (a pending one: the
    erase job waits for its files)."""
    model = model_of(session, principal, model_id)
    version = _version_or_v1(session, model, number)
    if version is None:
        raise NotFound(f"model {model_id} has no version {number}", version=number)
    if version.status == VersionStatus.failed:
        raise VersionNotReady(f"version {number} failed to be stored ({version.status_reason}); erase another",
                              version=number, version_status=version.status.value)
    return number


def model_of(session: Session, principal: Principal, model_id: uuid.UUID) -> RegisteredModel:
    model = registry_repo.get(session, principal.tenant_id, model_id)
    if model is None:
        raise NotFound(f"model {model_id} not found")
    return model


def get_version(session: Session, principal: Principal, model_id: uuid.UUID, number: int
                ) -> tuple[RegisteredModel, ModelVersion]:
    model = model_of(session, principal, model_id)
    version = _version_or_v1(session, model, number)
    if version is None:
        raise NotFound(f"model {model_id} has no version {number}", version=number)
    return model, version


def _version_or_v1(session: Session, model: RegisteredModel, number: int, *, create: bool = False
                   ) -> ModelVersion | None:
    """The version; v1 of a model registered since versions exist is written when a change needs its row
    (`create`), and only shown otherwise (reads never write)."""
    version = repository.get(session, model.id, number)
    if version is None and number == 1:
        version = create_v1(session, model, "system:versions") if create else _v1(model, "system:versions")
    return version


def list_versions(session: Session, principal: Principal, model_id: uuid.UUID
                  ) -> tuple[RegisteredModel, list[ModelVersion]]:
    model = model_of(session, principal, model_id)
    rows = repository.list_versions(session, model.id)
    if not rows or rows[0].number != 1:
        rows.insert(0, _v1(model, "system:versions"))
    return model, rows


def _lock_model(session: Session, tenant_id: uuid.UUID, model_id: uuid.UUID) -> RegisteredModel:
    model = registry_repo.lock(session, tenant_id, model_id)
    if model is None:
        raise NotFound(f"model {model_id} not found")
    return model


def apply(session: Session, tenant_id: uuid.UUID, model_id: uuid.UUID, erasure_id: uuid.UUID, *,
          actor: str) -> ModelVersion:
    """Make the next version from a succeeded erasure that ran on the head; the head moves to it at once."""
    model = _lock_model(session, tenant_id, model_id)
    from core.erasure import repository as erasure_repo

    erasure = erasure_repo.get_request(session, tenant_id, erasure_id)
    if erasure is None:
        raise NotFound(f"erasure request {erasure_id} not found")
    if erasure.model_id != model.id:
        raise NotApplicable(f"erasure request {erasure_id} ran on another model ({erasure.model_id})")
    if erasure.status != RequestStatus.succeeded or erasure.certificate is None:
        raise NotApplicable(f"erasure request {erasure_id} is {erasure.status.value}: only a succeeded, "
                            "certified erasure can be applied", erasure_status=erasure.status.value)
    done = repository.of_erasure(session, erasure.id)
    if done is not None:
        raise AlreadyApplied(f"erasure request {erasure_id} is applied as version {done.number}",
                             version=done.number)
    base = erasure.model_version or 1
    if base != model.head_version:
        raise StaleBase(
            f"erasure request {erasure_id} ran on version {base}, but the head is version {model.head_version}: "
            f"re-run it on the head with POST /v1/erasures/{erasure_id}/rebase",
            base=base, head=model.head_version,
        )
    parent = _version_or_v1(session, model, base, create=True)
    if parent is None or parent.status != VersionStatus.ready:
        raise VersionNotReady(f"version {base} is not ready", version=base)
    number = repository.last_number(session, model.id) + 1
    own = erased_by(erasure, number)
    version = ModelVersion(
        tenant_id=model.tenant_id, model_id=model.id, number=number, parent_number=base, erasure_id=erasure.id,
        status=VersionStatus.pending, erased_concepts=[*parent.erased_concepts, *own], artifacts=[],
        certificate_sha256=certificate_digest(erasure.certificate), created_by=actor,
    )
    session.add(version)
    session.flush()
    job = create_job(session, tenant_id=model.tenant_id, kind=JobKind.apply_version, model_id=model.id)
    audit.append(session, action="model.version.applied", subject=f"model:{model.id}", actor=actor,
                 tenant_id=model.tenant_id,
                 payload={"version": number, "parent": base, "erasure_id": str(erasure.id), "job_id": str(job.id),
                          "certificate_sha256": version.certificate_sha256})
    record_head_move(session, model, number, actor=actor, reason=f"version {number} applied")
    return version


def erased_by(erasure: ErasureRequest, number: int) -> list[dict[str, Any]]:
    """The concepts `erasure` removed, as version `number` records them. The surrogate is the one the kept round
    trained toward (the job's surrogate screen or a switch between rounds may have replaced the request's); a
    job that stored no rounds keeps the request's."""
    rounds = (erasure.metrics or {}).get("rounds")
    trained = RoundsOutcome.model_validate(rounds).kept_surrogates() if rounds else {}
    return [{"target": c["target"], "kind": c["kind"], "surrogate": trained.get(c["target"], c.get("surrogate")),
             "version": number, "erasure_id": str(erasure.id)} for c in erasure.concepts]


def record_head_move(session: Session, model: RegisteredModel, number: int, *, actor: str, reason: str) -> None:
    """Move the (locked) model's head: audited and announced (`model.head.moved`)."""
    previous = model.head_version
    model.head_version = number
    audit.append(session, action="model.head.moved", subject=f"model:{model.id}", actor=actor,
                 tenant_id=model.tenant_id, payload={"from": previous, "to": number, "reason": reason})
    webhook_event(session, "model.head.moved", model.tenant_id,
                  {"model_id": str(model.id), "previous": previous, "head": number, "reason": reason})


def move_head(session: Session, tenant_id: uuid.UUID, model_id: uuid.UUID, body: HeadMove, *,
              actor: str) -> RegisteredModel:
    """Roll back or forward to a ready version (audited with the stated reason)."""
    model = _lock_model(session, tenant_id, model_id)
    version = _version_or_v1(session, model, body.version, create=True)
    if version is None:
        raise NotFound(f"model {model_id} has no version {body.version}", version=body.version)
    if version.status != VersionStatus.ready:
        raise VersionNotReady(f"version {body.version} is {version.status.value}: the head names ready versions only",
                              version=body.version, version_status=version.status.value)
    if model.head_version != body.version:
        record_head_move(session, model, body.version, actor=actor, reason=body.reason.strip())
    return model


def auto_apply(session: Session, request: ErasureRequest, *, actor: str) -> ModelVersion | None:
    """On success (the worker's completion transaction): apply when the model asks for it (`auto_apply`) or
    the request does (`apply_on_success`: a chained batch request) and the erasure ran on the head; a stale
    one is left for a person (audited), never applied over a newer head — and the requests chained after it,
    which were to run on its version, are cancelled."""
    model = session.get(RegisteredModel, request.model_id)
    if model is None or not (model.auto_apply or request.apply_on_success):
        return None
    try:
        return apply(session, request.tenant_id, request.model_id, request.id, actor=actor)
    except (StaleBase, NotApplicable, AlreadyApplied, VersionNotReady) as exc:
        audit.append(session, action="model.version.auto_apply_skipped", subject=f"erasure:{request.id}",
                     actor=actor, tenant_id=request.tenant_id, payload={"reason": exc.detail, "kind": exc.kind})
        chain.cancel_successors(session, request.id, f"succeeded but was not applied: {exc.detail}", actor=actor)
        return None


def rebase(session: Session, principal: Principal, erasure_id: uuid.UUID) -> Any:
    """A new request with the same concepts, parameters and verification, run on the model's head; linked
    to the old one by `rebased_from`. Goes through `submit` (approval, audit, job) like any submission."""
    from core.erasure import service as erasures
    from core.erasure.schemas import ErasureCreate

    old = erasures.get(session, principal, erasure_id)
    model = model_of(session, principal, old.model_id)
    if chain.waits_for_predecessor(old):
        raise Conflict(f"erasure request {erasure_id} has not run: it waits for the version of erasure request "
                       f"{old.after_request_id}, which it runs after", after_request_id=str(old.after_request_id))
    if (old.model_version or 1) == model.head_version:
        raise Conflict(f"erasure request {erasure_id} already runs on the head (version {model.head_version})",
                       head=model.head_version)
    applied = repository.of_erasure(session, old.id)
    if applied is not None:
        raise AlreadyApplied(f"erasure request {erasure_id} is applied as version {applied.number}",
                             version=applied.number)
    body = ErasureCreate.model_validate({
        "model_id": old.model_id, "method": old.method, "retain": old.retain or [], "params": old.params or {},
        "verification": old.verification, "legal": old.legal, "priority": old.priority,
        "labels": old.labels or [], "model_version": model.head_version,
        "concepts": [{k: c[k] for k in ("target", "surrogate", "kind", "prompts", "example_images") if k in c}
                     for c in old.concepts],
    })
    submitted = erasures.submit(session, principal, body, rebased_from=old.id)
    audit.append(session, action="erasure.rebased", subject=f"erasure:{old.id}", actor=principal.actor,
                 tenant_id=principal.tenant_id,
                 payload={"new_request_id": str(submitted.request["id"]), "from_version": old.model_version or 1,
                          "to_version": model.head_version})
    return submitted


def to_out(model: RegisteredModel, version: ModelVersion, *, urls: dict[str, str] | None = None) -> VersionOut:
    return VersionOut(
        number=version.number, parent=version.parent_number, erasure_id=version.erasure_id,
        status=version.status, status_reason=version.status_reason, head=model.head_version == version.number,
        erased_concepts=[ErasedConcept(**c) for c in version.erased_concepts],
        artifacts=[VersionArtifact(name=a["name"], size=a["size"], sha256=a["sha256"], url=(urls or {}).get(a["name"]))
                   for a in version.artifacts],
        fingerprint=model.fingerprint if version.number == 1 else version.fingerprint,
        adapter=AdapterInfo(**version.adapter) if version.adapter else None,
        certificate_sha256=version.certificate_sha256, created_by=version.created_by,
        created_at=version.created_at,
    )


def version_out(session: Session, settings: Settings, principal: Principal, model_id: uuid.UUID,
                number: int) -> dict[str, Any]:
    """One version as JSON, with expiring download links (issuing them is audited) and its certificate
    document exactly as stored (signed bytes: never re-serialized through a schema)."""
    model, version = get_version(session, principal, model_id, number)
    certificate = None
    if version.erasure_id is not None:
        erasure = session.get(ErasureRequest, version.erasure_id)
        certificate = erasure.certificate if erasure is not None else None
    urls: dict[str, str] = {}
    if version.artifacts:
        from core.storage import get_store
        from core.storage.tenant import tenant_store

        store = tenant_store(get_store(settings), model.tenant_id)
        ttl = settings.artifact_url_ttl_s
        urls = {a["name"]: store.presign_get(store.relative(a["key"]), ttl) for a in version.artifacts}
        audit.append(session, action="artifact.link_issued", subject=f"model:{model.id}", actor=principal.actor,
                     tenant_id=model.tenant_id,
                     payload={"version": version.number, "names": sorted(urls), "ttl_s": ttl})
    out = to_out(model, version, urls=urls).model_dump(mode="json")
    out["certificate"] = certificate
    return out
