"""Run one job attempt end to end: lease → resolve and load the model (cached) → engine → verify → upload →
complete in one transaction. Called by the Celery task and by the embedded runner alike.

Failures are sorted into: cancelled (stop, remove partial uploads), stale (another attempt owns the job:
write nothing), bad input (fail at once with the reason) and everything else (retry with backoff until
max attempts; then fail with the reason).
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

import core.models  # noqa: F401  (all tables: foreign keys across domains resolve in any process)
from core.config import Settings, get_settings, redact_url
from core.db import unit_of_work
from core.erasure import jobs
from core.erasure.job_metrics import record_attempt
from core.erasure.judging import grid_diagnostics, job_evaluator, round_check
from core.erasure.lease_keeper import LeaseKeeper
from core.erasure.models import ErasureRequest
from core.erasure.outcome import ErasureMetrics
from core.erasure.states import JobKind, JobState
from core.erasure.transient import retry_db
from core.erasure.verification import Thresholds, verify
from core.errors import LetheError, StaleAttempt, ValidationFailed
from core.logging import bind_context, get_logger
from core.registry.cache import process_cache
from core.registry.local_copy import local_model_dir
from core.registry.models import RegisteredModel
from core.spare.errors import ErasureCancelled, ErasureInputError
from core.spare.prompting import fit_request
from core.storage import artifact_key, attempt_prefix, get_store
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


def default_erase() -> EraseFn:
    from core.spare import erase

    return erase


def execute(job_id: uuid.UUID | str, *, worker_id: str, settings: Settings | None = None,
            erase_fn: EraseFn | None = None, shutdown: threading.Event | None = None) -> str:
    """Lease and run one attempt of `job_id`. Returns the outcome: succeeded, failed, queued (retry later),
    cancelled, stale or skipped (nothing to do: not queued, not due, or another worker has it)."""
    settings = settings or get_settings()
    job_id = uuid.UUID(str(job_id))

    def take() -> jobs.Lease | None:
        with unit_of_work() as session:
            return jobs.lease(session, job_id, worker_id, settings.job_lease_seconds)

    held = retry_db(take, what="lease")
    if held is None:
        return "skipped"
    return run_leased(held, settings, erase_fn=erase_fn, shutdown=shutdown)


def run_leased(held: jobs.Lease, settings: Settings, *, erase_fn: EraseFn | None = None,
               shutdown: threading.Event | None = None) -> str:
    """Run a leased attempt; its outcome and duration go to the job metrics."""
    started = time.monotonic()
    outcome = _run_leased(held, settings, erase_fn=erase_fn, shutdown=shutdown)
    record_attempt(held.kind.value, outcome, time.monotonic() - started)
    return outcome


def _run_leased(held: jobs.Lease, settings: Settings, *, erase_fn: EraseFn | None,
                shutdown: threading.Event | None) -> str:
    store = get_store(settings)
    keeper = LeaseKeeper(held, settings, shutdown).start()
    work = settings.data_dir / "work" / f"{held.job_id}-attempt-{held.attempt}"
    uploaded: list[str] = []
    with bind_context(job_id=str(held.job_id), attempt=held.attempt, worker=held.worker_id):
        log.info("attempt started", kind=held.kind.value)
        try:
            if held.kind == JobKind.validate_model:
                from core.registry.validation import run_validation

                outcome = run_validation(held, settings, keeper)
            else:
                outcome = _erase(held, settings, keeper, store, work, uploaded, erase_fn or default_erase())
        except ErasureCancelled:
            _remove(store, uploaded)  # while the keeper still holds the lease
            keeper.stop()
            if keeper.lost:
                return "stale"
            if keeper.shutdown.is_set() and not keeper.cancel_requested:
                outcome = finish_attempt(lambda s: jobs.release(s, held, "worker shut down"))
                log.info("worker shutting down; job returned to the queue")
            else:
                outcome = finish_attempt(lambda s: (jobs.cancel(s, held), JobState.cancelled)[1])
                log.info("attempt cancelled; partial artifacts removed")
        except StaleAttempt:
            keeper.stop()
            _remove(store, uploaded)
            log.warning("attempt is stale; its results were discarded")
            return "stale"
        except Exception as exc:
            keeper.stop()
            permanent = isinstance(exc, PERMANENT)
            reason = _reason(exc)
            log.warning("attempt failed", reason=reason, retryable=not permanent)
            if not permanent:
                log.debug("traceback", exc_info=True)
            evidence = getattr(exc, "metrics", None)
            outcome = finish_attempt(lambda s: jobs.fail(s, held, reason, retryable=not permanent,
                                                  backoff_base=settings.job_retry_backoff_seconds,
                                                  metrics=evidence))
            # Only after the failure is recorded: when the store is what failed, removing can take long.
            _remove(store, uploaded)
        finally:
            keeper.stop()
            shutil.rmtree(work, ignore_errors=True)
        log.info("attempt finished", outcome=outcome)
        return outcome


def finish_attempt(write: Callable[[Any], JobState | str]) -> str:
    def step() -> str:
        with unit_of_work() as session:
            result = write(session)
        return result.value if isinstance(result, JobState) else str(result)

    try:
        return retry_db(step, what="finish")
    except StaleAttempt:
        return "stale"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, pydantic.ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"invalid erasure parameters: {where}: {first.get('msg')}"
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, LetheError | ErasureInputError):
        return text
    return f"{type(exc).__name__}: {text}"


def _remove(store: ObjectStore, keys: list[str]) -> None:
    for key in keys:
        try:
            store.delete(key)
        except Exception:  # the store may be what failed; orphans under a dead attempt's prefix are harmless
            log.warning("could not remove partial artifact", key=key)
    keys.clear()


def load_input(held: jobs.Lease) -> JobInput:
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
            verification=dict(request.verification or {}),
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


def _erase(held: jobs.Lease, settings: Settings, keeper: LeaseKeeper, store: ObjectStore, work: Path,
           uploaded: list[str], erase_fn: EraseFn) -> str:
    from core.spare.loading import load_pipeline
    from core.spare.rounds import erase_until_verified

    keeper.progress("prepare", 0.0)
    _cpu_settings(settings)
    data = load_input(held)
    model_dir = local_model_dir(data.source_uri, settings, tenant_id=data.tenant_id)
    keeper.check()
    images = _download_examples(data, store, work / "examples")
    spec, config = build_spec(data, images)
    spec, config = fit_request(spec, config, model_vocabulary(model_dir))
    defaults = {"device": settings.device, "max_rounds": settings.erase_max_rounds,
                "time_budget_s": settings.erase_time_budget_seconds}
    config = config.model_copy(update={k: v for k, v in defaults.items() if k not in data.params})
    cache = process_cache(settings.model_cache_size)
    cache_key = data.fingerprint or f"path:{model_dir}"
    loads_before = cache.loads
    pipeline = cache.get(cache_key, lambda: load_pipeline(model_dir, config.device))
    log.info("model loaded" if cache.loads > loads_before else "model cache hit", model=cache_key[:16])
    keeper.progress("prepare", 1.0)
    keeper.check()
    from core.spare.outputs import Provenance

    provenance = Provenance(request_id=str(data.request_id) if data.request_id else None,
                            base_fingerprint=data.fingerprint, base_source=redact_url(data.source_uri))
    judge_name = data.verification.get("judge") or settings.judge
    targets = [c.target for c in spec.concepts]
    evaluator = job_evaluator(model_dir, spec, config, settings, fingerprint=data.fingerprint,
                              judge_name=judge_name, progress=keeper.progress,
                              diagnostics=grid_diagnostics(model_dir, targets))
    thresholds = Thresholds.for_request(settings, data.verification)
    check = round_check(model_dir, spec, config, settings, judge_name=judge_name, fingerprint=data.fingerprint,
                        min_unlearning_accuracy=thresholds.min_unlearning_accuracy,
                        min_retention=thresholds.min_retention, progress=keeper.progress)
    try:
        result = erase_until_verified(pipeline, spec, config, out_dir=work / "out", check=check, evaluator=evaluator,
                                      progress=keeper.progress, should_stop=keeper.should_stop, erase_fn=erase_fn,
                                      provenance=provenance,
                                      verifier=lambda metrics: verify(metrics, thresholds, targets).checks)
    except (ErasureCancelled, ErasureInputError):
        raise
    except BaseException:
        cache.discard(cache_key)  # the engine died mid-run: do not trust the pipeline's weights any more
        raise
    keeper.check()
    verdict = verify(result.metrics, thresholds, targets)
    measured = ErasureMetrics.of(result.report, verdict.checks, thresholds)
    metrics = measured.stored()
    if not verdict.ok:
        raise VerificationFailed(verdict.reason + measured.rounds_note(), metrics)
    artifacts: list[jobs.StoredArtifact] = []
    files = sorted(result.files.items())
    for i, (name, path) in enumerate(files):
        keeper.check()
        key = artifact_key(held.tenant_id, held.request_id, held.job_id, held.attempt, name)
        uploaded.append(key)
        stored = store.put(key, Path(path))
        artifacts.append(jobs.StoredArtifact(name=name, key=key, size=stored.size, sha256=stored.sha256))
        keeper.progress("upload", (i + 1) / max(len(files), 1))
    keeper.stop()
    if keeper.lost:
        raise StaleAttempt(f"job {held.job_id} attempt {held.attempt} lost its lease")

    def write(session: Any) -> JobState:
        return jobs.complete(session, held, artifacts=artifacts, metrics=metrics)

    outcome = finish_attempt(write)
    if outcome == JobState.succeeded.value:
        uploaded.clear()  # referenced now; must not be removed
        _remove_other_attempts(store, held)
    elif outcome in (JobState.cancelled.value, "stale"):
        _remove(store, uploaded)
    return outcome


def _cpu_settings(settings: Settings) -> None:
    import torch

    torch.set_flush_denormal(True)  # denormals slow CPU training 10-15x (field notes)
    if settings.torch_threads and torch.get_num_threads() != settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)


def _remove_other_attempts(store: ObjectStore, held: jobs.Lease) -> None:
    """Earlier attempts' uploads (a worker died after uploading) are never referenced: drop them."""
    for attempt in range(1, held.attempt):
        try:
            store.delete_prefix(attempt_prefix(held.tenant_id, held.request_id, held.job_id, attempt))
        except Exception:
            log.warning("could not remove an earlier attempt's objects", attempt=attempt)
