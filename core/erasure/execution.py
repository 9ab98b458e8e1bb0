"""One erasure attempt end to end: resolve and load the model (cached) → engine → verify → upload → complete
in one transaction. The job runtime (core.jobs.runner) leases the job and sorts the outcome; the erase
handler (core.erasure.handlers) calls `erase` here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pydantic

import core.models  # noqa: F401  (all tables: foreign keys across domains resolve in any process)
from core.config import Settings, redact_url
from core.db import unit_of_work
from core.erasure.models import ErasureRequest
from core.erasure.outcome import ErasureMetrics
from core.erasure.verification import Thresholds
from core.erasure.verified import verified_erasure
from core.erasure.verifying import verifying_from_here
from core.errors import LetheError, StaleAttempt, ValidationFailed
from core.jobs.keeper import LeaseKeeper
from core.jobs.lifecycle import Lease, StoredArtifact, complete
from core.jobs.runner import finish_attempt
from core.jobs.states import JobState
from core.logging import get_logger
from core.registry.cache import process_cache
from core.registry.local_copy import local_model_dir
from core.registry.models import RegisteredModel
from core.spare.errors import ErasureCancelled, ErasureInputError
from core.spare.prompting import fit_request
from core.storage import artifact_key, attempt_prefix
from core.storage.base import ObjectStore
from core.storage.tenant import tenant_store

log = get_logger(__name__)
EraseFn = Callable[..., Any]


class VerificationFailed(LetheError):
    kind = "verification-failed"
    title = "Erasure did not pass verification"

    def __init__(self, reason: str, metrics: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.metrics = metrics  # the evidence the verdict was reached on, kept on the failed request


# Errors that another attempt cannot fix: the job fails at once with the message.
PERMANENT: tuple[type[BaseException], ...] = (
    ErasureInputError, ValidationFailed, VerificationFailed, pydantic.ValidationError,
)


@dataclass(frozen=True)
class JobInput:
    tenant_id: uuid.UUID
    request_id: uuid.UUID | None
    source_uri: str
    fingerprint: str | None
    concepts: list[dict[str, Any]]
    retain: list[str]
    method: str
    params: dict[str, Any]
    verification: dict[str, Any]
    model_version: int | None = None


def default_erase() -> EraseFn:
    from core.spare import erase

    return erase


def reason(exc: BaseException) -> str:
    """A failure as the request's `error`: parameter errors name the field, input errors speak for themselves."""
    if isinstance(exc, pydantic.ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"invalid erasure parameters: {where}: {first.get('msg')}"
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, LetheError | ErasureInputError):
        return text
    return f"{type(exc).__name__}: {text}"


def remove_objects(store: ObjectStore, keys: list[str]) -> None:
    for key in keys:
        try:
            store.delete(key)
        except Exception:  # the store may be what failed; orphans under a dead attempt's prefix are harmless
            log.warning("could not remove partial artifact", key=key)
    keys.clear()


def load_input(held: Lease) -> JobInput:
    with unit_of_work() as session:
        model = session.get(RegisteredModel, held.model_id)
        if model is None:
            raise ValidationFailed(f"model {held.model_id} no longer exists")
        request = session.get(ErasureRequest, held.request_id) if held.request_id else None
        if request is None:
            raise ValidationFailed(f"job {held.job_id} has no erasure request")
        return JobInput(
            tenant_id=held.tenant_id, request_id=held.request_id, source_uri=model.source_uri,
            fingerprint=model.fingerprint, concepts=list(request.concepts), retain=list(request.retain or []),
            method=request.method, params=dict(request.params or {}),
            verification=dict(request.verification or {}), model_version=request.model_version,
        )


def model_vocabulary(model_dir: Path) -> Any:
    """The folder's lethe.json (core.evaluation.vocabulary); a broken one fails the job with the reason."""
    from core.evaluation.vocabulary import VocabularyError, load_vocabulary

    try:
        return load_vocabulary(model_dir)
    except VocabularyError as exc:
        raise ErasureInputError(str(exc)) from exc


def build_spec(data: JobInput, images: dict[str, Path]) -> tuple[Any, Any]:
    from core.erasure.params import validate_params
    from core.spare.specs import ConceptSpec, ErasureSpec

    concepts = []
    for concept in data.concepts:
        fields = {k: v for k, v in concept.items() if k in ConceptSpec.model_fields}
        fields["example_images"] = [images[str(i)] for i in concept.get("example_images") or []]
        concepts.append(ConceptSpec(**fields))
    spec = ErasureSpec(concepts=concepts, retain=data.retain, method=data.method)  # type: ignore[arg-type]
    return spec, validate_params(data.method, data.params).engine_config()


def _download_examples(data: JobInput, store: ObjectStore, dest: Path) -> dict[str, Path]:
    ids = {str(i) for c in data.concepts for i in (c.get("example_images") or [])}
    if not ids:
        return {}
    from core.uploads import repository as uploads

    out: dict[str, Path] = {}
    with unit_of_work() as session:
        rows = uploads.get_many(session, data.tenant_id, [uuid.UUID(i) for i in ids])
        found = {str(u.id): (u.key, u.sha256) for u in rows.values()}
    own = tenant_store(store, data.tenant_id)
    for upload_id in sorted(ids):
        if upload_id not in found:
            raise ValidationFailed(f"example image {upload_id} is not an upload of this tenant")
        key, sha = found[upload_id]
        out[upload_id] = own.download(own.relative(key), dest / f"{upload_id}{Path(key).suffix}",
                                      expected_sha256=sha)
    return out


def erase(held: Lease, settings: Settings, keeper: LeaseKeeper, store: ObjectStore, work: Path,
          uploaded: list[str], erase_fn: EraseFn) -> str:
    from core.spare.loading import load_pipeline, weights_variant
    from core.spare.rounds import erase_until_verified

    keeper.progress("prepare", 0.0)
    _cpu_settings(settings)
    data = load_input(held)
    model_dir = local_model_dir(data.source_uri, settings, tenant_id=data.tenant_id)
    from core.erasure.lineage import erased_targets, resolve_base

    # The version's weights are trained; the source folder gives the language, the judge and (for a
    # lineage) the retention baseline v1.
    base = resolve_base(tenant_id=data.tenant_id, model_id=held.model_id, number=data.model_version,
                        source_dir=model_dir, source_fingerprint=data.fingerprint, settings=settings)
    keeper.check()
    images = _download_examples(data, store, work / "examples")
    requested, config = build_spec(data, images)
    spec, config = fit_request(requested, config, model_vocabulary(model_dir), erased=erased_targets(base.lineage))
    defaults = {"device": settings.device, "max_rounds": settings.erase_max_rounds,
                "time_budget_s": settings.erase_time_budget_seconds}
    config = config.model_copy(update={k: v for k, v in defaults.items() if k not in data.params})
    cache = process_cache(settings.model_cache_size)
    cache_key = base.fingerprint or f"path:{base.weights_dir}"
    loads_before = cache.loads
    pipeline = cache.get(cache_key, lambda: load_pipeline(base.weights_dir, config.device))
    log.info("model loaded" if cache.loads > loads_before else "model cache hit", model=cache_key[:16])
    keeper.progress("prepare", 1.0)
    keeper.check()
    from core.spare.outputs import Provenance

    provenance = Provenance(request_id=str(data.request_id) if data.request_id else None,
                            base_fingerprint=base.fingerprint, base_source=redact_url(data.source_uri),
                            base_variant=weights_variant(base.weights_dir))
    judge_name = data.verification.get("judge") or settings.judge
    thresholds = Thresholds.for_request(settings, data.verification)
    source_key = data.fingerprint or f"path:{model_dir}"
    run = verified_erasure(pipeline, model_dir, requested, spec, config, settings, judge_name=judge_name,
                           fingerprint=data.fingerprint, thresholds=thresholds, lineage=base.lineage,
                           source=lambda: cache.get(source_key, lambda: load_pipeline(model_dir, config.device)),
                           progress=keeper.progress)
    keeper.check()
    run = replace(run, evaluator=verifying_from_here(held, run.evaluator))
    try:
        result = erase_until_verified(pipeline, run.spec, config, out_dir=work / "out", progress=keeper.progress,
                                      should_stop=keeper.should_stop, erase_fn=erase_fn, provenance=provenance,
                                      **run.loop_inputs())
    except (ErasureCancelled, ErasureInputError):
        raise
    except BaseException:
        cache.discard(cache_key)  # the engine died mid-run: do not trust the pipeline's weights any more
        raise
    keeper.check()
    verdict = run.verify(result.metrics)
    measured = ErasureMetrics.of(result.report, verdict.checks, thresholds)
    metrics = measured.stored()
    if not verdict.ok:
        raise VerificationFailed(verdict.reason + measured.rounds_note(), metrics)
    artifacts: list[StoredArtifact] = []
    files = sorted(result.files.items())
    for i, (name, path) in enumerate(files):
        keeper.check()
        key = artifact_key(held.tenant_id, held.request_id, held.job_id, held.attempt, name)
        uploaded.append(key)
        stored = store.put(key, Path(path))
        artifacts.append(StoredArtifact(name=name, key=key, size=stored.size, sha256=stored.sha256))
        keeper.progress("upload", (i + 1) / max(len(files), 1))
    keeper.stop()
    if keeper.lost:
        raise StaleAttempt(f"job {held.job_id} attempt {held.attempt} lost its lease")

    def write(session: Any) -> JobState:
        return complete(session, held, artifacts=artifacts, result=metrics)

    outcome = finish_attempt(write)
    if outcome == JobState.succeeded.value:
        uploaded.clear()  # referenced now; must not be removed
        _remove_other_attempts(store, held)
    elif outcome in (JobState.cancelled.value, "stale"):
        remove_objects(store, uploaded)
    return outcome


def _cpu_settings(settings: Settings) -> None:
    import torch

    torch.set_flush_denormal(True)  # denormals slow CPU training 10-15x (field notes)
    if settings.torch_threads and torch.get_num_threads() != settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)


def _remove_other_attempts(store: ObjectStore, held: Lease) -> None:
    """Earlier attempts' uploads (a worker died after uploading) are never referenced: drop them."""
    for attempt in range(1, held.attempt):
        try:
            store.delete_prefix(attempt_prefix(held.tenant_id, held.request_id, held.job_id, attempt))
        except Exception:
            log.warning("could not remove an earlier attempt's objects", attempt=attempt)
