"""The one Settings object. Nothing else in Lethe reads the environment (LETHE_* variables)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REDACTED = "**********"


def _split_paths(value: Any) -> Any:
    """Accept a list, or a string separated by commas or os.pathsep (how people write PATH-like vars)."""
    if isinstance(value, str):
        parts = [p.strip() for chunk in value.split(",") for p in chunk.split(os.pathsep)]
        return [p for p in parts if p]
    return value


# How verification and each round's check grow their held-out sample (core.evaluation.evidence.sequential_evidence).
def _sequential_sample(uncertain: str) -> str:
    return (
        f"draws more held-out images (doubling, on new seeds, pooled with the first draw) while {uncertain}, for "
        "the uncertain verdicts only, until the images of both models together exceed this many per erased "
        "concept. Only the first draw when it already does."
    )


_EITHER_WAY = ("a verdict is uncertain either way (a failure or a pass whose 95 % interval still reaches across "
               "the threshold)")


class Settings(BaseSettings):
    """Effective configuration. Every field maps to one `LETHE_<NAME>` environment variable."""

    model_config = SettingsConfigDict(env_prefix="LETHE_", env_file=None, extra="ignore", validate_default=True)

    data_dir: Path = Field(
        default=Path("~/.lethe"),
        description="Where embedded mode keeps its database, objects, models and keys.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL. Empty = sqlite:///{data_dir}/lethe.db. Production: postgresql+psycopg://...",
    )
    broker_url: str = Field(
        default="",
        description="Celery broker URL. Empty = embedded in-process worker. Production: redis://...",
    )
    store_url: str = Field(
        default="",
        description="Object store. Empty = file://{data_dir}/objects. Production: s3://BUCKET[/prefix].",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint for MinIO or another S3-compatible server (boto3 endpoint_url)."
    )
    s3_public_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint that presigned download links point at, as users reach it (e.g. MinIO's published "
        "address); empty = LETHE_S3_ENDPOINT_URL (or AWS).",
    )
    s3_region: str = Field(default="us-east-1", description="Region passed to boto3 for s3:// stores.")
    model_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Directories from which file:// model sources may be registered. Default {data_dir}/models.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key for HMACs of API keys and download links, and for encrypting webhook secrets at rest. "
        "Empty = generated once and kept in {data_dir}/secret.key.",
    )
    allow_hub: bool = Field(
        default=False, description="Allow hf://org/repo@revision model sources (needs hub access from the workers)."
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description="Ed25519 private key (PEM, or base64 of the 32-byte seed) that signs erasure certificates. "
        "Empty = generated once and kept in {data_dir}/signing.key.",
    )
    idempotency_ttl_hours: int = Field(
        default=24, ge=24, le=24 * 30, description="How long Idempotency-Key results are kept (at least 24 h)."
    )
    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest JSON request body accepted (bytes); larger → 413."
    )
    max_upload_bytes: int = Field(
        default=16 << 20, ge=1024, description="Largest image upload accepted (bytes); larger → 413."
    )
    max_image_pixels: int = Field(
        default=4096 * 4096, ge=64, description="Largest decoded image (width × height) accepted by uploads."
    )
    rate_limit_per_minute: int = Field(
        default=1200, ge=0,
        description="Requests per API key in any 60 s, across all API processes; 0 = no limit. Over it → 429.",
    )
    rate_limit_anonymous_per_minute: int = Field(
        default=300, ge=0,
        description="Requests without a valid API key per client address in any 60 s (401s included; "
        "/healthz and /readyz exempt); 0 = no limit. Over it → 429.",
    )
    rate_limit_storage_url: str = Field(
        default="",
        description="Where rate-limit counters live, shared by every API process (redis://...). Empty = the "
        "broker's Redis when the broker is Redis, else memory:// (this process only: embedded mode).",
    )
    artifact_url_ttl_s: int = Field(
        default=3600, ge=60, le=7 * 24 * 3600, description="Lifetime of presigned artifact download URLs (s)."
    )
    console_idle_timeout_minutes: int = Field(
        default=30, ge=1, le=24 * 60,
        description="A web console session ends after this many minutes without a request (sign in again).",
    )
    log_json: bool = Field(default=False, description="Emit JSON log lines (production) instead of console.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")
    # --- Object store and workers ---
    s3_multipart_threshold_mb: int = Field(
        default=64, ge=5, description="Objects at least this large (MiB) are uploaded to S3 in multipart chunks."
    )
    s3_multipart_chunk_mb: int = Field(default=16, ge=5, description="Multipart chunk size (MiB) for S3 uploads.")
    job_lease_seconds: int = Field(
        default=120, ge=5, description="How long a worker's lease on a job lasts without a heartbeat."
    )
    job_max_attempts: int = Field(default=3, ge=1, le=20, description="Attempts before a job fails for good.")
    job_retry_backoff_seconds: float = Field(
        default=10.0, ge=0, description="Base of the exponential backoff between attempts (base * 2^(attempt-1))."
    )
    job_progress_interval_seconds: float = Field(
        default=2.0, ge=0, description="Minimum seconds between progress writes to the job row."
    )
    job_time_limit_seconds: float = Field(
        default=3 * 3600, ge=5,
        description="Wall-clock limit of one job attempt (s), enforced by the worker's lease keeper: past it the "
        "attempt is stopped and its lease released (a retryable failure).",
    )
    broker_visibility_timeout: int = Field(
        default=4 * 3600, ge=10,
        description="Redis visibility timeout (s): an unacked doorbell is redelivered after it (a redelivered "
        "doorbell only wakes a worker; keep it above job_time_limit_seconds to avoid idle wake-ups).",
    )
    broker_unacked_restore_interval: float = Field(
        default=10.0, gt=0, description="How often (s) kombu looks for unacked messages to restore."
    )
    model_cache_size: int = Field(default=2, ge=0, description="Base pipelines kept loaded per worker (LRU).")
    model_source_max_bytes: int = Field(
        default=32 << 30, ge=1 << 20,
        description="Largest model a worker copies from an s3:// source (sum of its objects, bytes); "
        "larger → the model is invalid.",
    )
    sweep_interval_seconds: float = Field(default=15.0, gt=0, description="How often `lethe beat` sweeps.")
    outbox_poll_seconds: float = Field(
        default=0.25, gt=0, description="How often `lethe beat` publishes new outbox rows (job doorbells, events)."
    )
    service_lease_reaper: bool = Field(
        default=True, description="Background service: running jobs whose lease expired go back to the queue."
    )
    service_outbox_relay: bool = Field(
        default=True, description="Background service: publish committed outbox rows (job doorbells, webhook events)."
    )
    service_doorbells: bool = Field(
        default=True, description="Background service: re-ring queued jobs whose doorbell is missing or stale."
    )
    service_overdue: bool = Field(
        default=True, description="Background service: flag open erasure requests past their due date."
    )
    service_schedules: bool = Field(default=True, description="Background service: run due schedule slots.")
    service_webhook_retries: bool = Field(
        default=True, description="Background service: dispatch webhook deliveries whose backoff has passed."
    )
    service_audit_checkpoint: bool = Field(
        default=True, description="Background service: verify new audit events and sign the chain's head."
    )
    requeue_after_seconds: float = Field(
        default=60.0, gt=0, description="A queued job whose doorbell is older than this is published again."
    )
    webhook_allow_private: bool = Field(
        default=False, description="Allow webhook targets in private, loopback or link-local address ranges."
    )
    webhook_max_attempts: int = Field(default=8, ge=1, le=30, description="Delivery attempts per webhook event.")
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0,
        description="Overall deadline of one webhook delivery attempt (connect, TLS, send, response head).",
    )
    webhook_concurrency: int = Field(
        default=8, ge=1, le=256,
        description="Webhook deliveries in flight at once: threads of `lethe serve`'s delivery pool (one at a time "
        "per endpoint) and the default process count of `lethe worker --queues default`.",
    )
    webhook_backoff_seconds: float = Field(
        default=5.0, ge=0, description="Base of the exponential backoff between webhook delivery attempts."
    )
    verify_min_unlearning_accuracy: float = Field(
        default=0.9, ge=0, le=1,
        description="Verification: per erased concept, the share of held-out images the judge does NOT label as the "
        "concept must reach this (service minimum; a request may raise it).",
    )
    verify_min_retention: float = Field(
        default=0.9, ge=0, le=1,
        description="Verification: the judge's accuracy on other concepts after erasure, as a share of the base "
        "model's on the same held-out prompts and seeds, must reach this (service minimum; a request may raise it).",
    )
    judge: Literal["auto", "model-classifier", "clip", "diffusion-classifier"] = Field(
        default="auto",
        description="Who labels the held-out images behind a certificate: auto picks the model folder's own "
        "classifier (lethe.json), then the CLIP judge when installed, else the base model as a diffusion classifier.",
    )
    clip_judge_path: Path | None = Field(
        default=None, description="A CLIP model folder (transformers save_pretrained) to use as a zero-shot judge."
    )
    judge_forget_images: int = Field(
        default=12, ge=1, le=512, description="Held-out images per erased concept that the judge labels."
    )
    judge_retain_images: int = Field(
        default=24, ge=1, le=1024, description="Held-out images of concepts that must stay, over all groups."
    )
    judge_steps: int = Field(default=10, ge=1, le=200, description="Sampling steps of the held-out images.")
    judge_max_images: int = Field(default=144, ge=1, le=4096,
                                  description=f"Verification {_sequential_sample(_EITHER_WAY)}")
    verify_grid_seeds: int = Field(
        default=2, ge=1, le=16,
        description="Verification: seeds per cell of the canvas grid that a model folder's lethe.json declares as "
        "diagnostics (its grid UA/IRA/CRA checks); workers, `lethe erase` and the benchmarks verify with the same "
        "count. More seeds steady those estimates and lengthen every verification.",
    )
    verify_grid_max_seeds: int = Field(
        default=8, ge=1, le=64,
        description="Verification: seeds per cell the canvas grid draws at most while one of its verdicts could "
        "still turn (its 95 % interval reaching across the threshold): after the first LETHE_VERIFY_GRID_SEEDS, as "
        "many again each time, on seeds from 100 on. A value at or below LETHE_VERIFY_GRID_SEEDS draws the first "
        "seeds only.",
    )
    erase_max_rounds: int = Field(
        default=3, ge=1, le=10,
        description="Erase until verified: rounds of train → held-out image check → escalate per job, at most, "
        "when the request sets no max_rounds (1 = a single round, no escalation).",
    )
    erase_time_budget_seconds: float = Field(
        default=3600.0, gt=0,
        description="Erase until verified: no further round starts when it would not fit this many seconds from "
        "the job's start, when the request sets no time_budget_s.",
    )
    round_check_forget_images: int = Field(
        default=6, ge=1, le=256,
        description="Held-out images per erased concept in each round's cheap check (other seeds than the final "
        "verification's).",
    )
    round_check_retain_images: int = Field(
        default=12, ge=1, le=512, description="Held-out images of concepts that must stay in each round's check."
    )
    round_check_max_images: int = Field(default=72, ge=1, le=2048,
                                        description="A round's check " + _sequential_sample(
                                            "a failing verdict could still pass (its 95 % interval still reaches "
                                            "above the threshold; with LETHE_ROUND_CHECK_SETTLE_PASSES also while a "
                                            "pass could still fail)"))
    round_check_settle_passes: bool = Field(
        default=False,
        description="A round's check also draws more images for a verdict that passes but could still fail. Off: "
        "it draws more only for a failure that could still pass (so as not to escalate on bad luck); a pass goes "
        "to the verification, whose own sequential sample settles it (a round it refuses counts as short or is "
        "rolled back), instead of being settled twice on different seeds.",
    )
    surrogate_screen_images: int = Field(
        default=8, ge=0, le=256,
        description="Before the first round, the judge labels this many base-model images of each surrogate the "
        "model's vocabulary picked; one it confuses with the concept more often than the UA threshold allows, beyond "
        "sampling noise (the 95 % interval of the share lies above it), is replaced by the first declared concept "
        "within the allowances. 0 turns the screen off.",
    )
    surrogate_screen_neighbours: bool = Field(
        default=True,
        description="The surrogate screen also labels LETHE_SURROGATE_SCREEN_IMAGES base-model images of every "
        "declared concept of the kind: a surrogate the base model mixes up with a concept that must stay (crossing "
        "images, both ways, above 1 - the verification's retention threshold; a folder's pick beyond sampling "
        "noise, a replacement at all) is replaced like a confused one, since training toward it moves a boundary "
        "the base model barely holds.",
    )
    surrogate_screen_order: Literal["vocabulary", "nearest"] = Field(
        default="vocabulary",
        description="Which surrogates the screen and a later switch try first. vocabulary: the folder's pick, kept "
        "unless confused or tangled beyond sampling noise, then the declared concepts after the target. nearest: "
        "every declared concept of the kind, nearest first by the base model's noise-space gap to the target "
        "(core.evaluation.surrogate_gap), the first within both allowances; the folder's pick has no precedence.",
    )
    verify_min_gap_closure: float | None = Field(
        default=0.5, ge=0, le=1,
        description="Verification (any model): share of the noise-space gap between the forget prompts' prediction and "
        "the forget target (the surrogate's prediction, pushed past it by forget_repel) the erasure closed. "
        "Empty = reported, not checked (for models whose concept and surrogate already agree in noise space, "
        "where the share is a ratio of two noise-level numbers; the judge's held-out images still decide).",
    )
    verify_max_retain_drift: float = Field(
        default=0.5, ge=0,
        description="Verification (any model): retain-prompt noise drift relative to the forget gap, at most.",
    )
    heartbeat_file: Path | None = Field(
        default=None,
        description="File `lethe worker` and `lethe beat` touch every heartbeat_interval_seconds while healthy "
        "(a worker: every running job's lease renewed in time); container health checks read its age. "
        "Empty = none.",
    )
    heartbeat_interval_seconds: float = Field(
        default=10.0, gt=0, le=300, description="How often the heartbeat file is touched (s)."
    )
    worker_stall_seconds: float = Field(
        default=10.0, gt=0, le=3600,
        description="A worker that consumes nothing while messages wait in its queues for this long reconnects "
        "its consumer; still stalled as long again, it exits (code 70) for its supervisor to restart it (s).",
    )
    worker_metrics_port: int = Field(
        default=0, ge=0, le=65535,
        description="Port on which `lethe worker` serves Prometheus metrics (jobs, stages, leases, queue, GPU "
        "memory); 0 = not served.",
    )
    metrics_multiproc_dir: Path | None = Field(
        default=None,
        description="Folder where `lethe serve --workers N` (N > 1) processes share Prometheus metrics; "
        "emptied at start. Empty = a fresh temporary folder per start.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where workers run erasures: auto picks cuda when available."
    )
    torch_threads: int = Field(
        default=0, ge=0, description="CPU threads torch may use in a worker (0 = torch's default: all cores)."
    )

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand_data_dir(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("verify_min_gap_closure", mode="before")
    @classmethod
    def _empty_is_off(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("model_roots", mode="before")
    @classmethod
    def _parse_roots(cls, v: Any) -> Any:
        return _split_paths(v)

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'lethe.db'}"
        if not self.store_url:
            self.store_url = f"file://{self.data_dir / 'objects'}"
        if not self.model_roots:
            self.model_roots = [self.data_dir / "models"]
        if not self.rate_limit_storage_url:
            shared = self.broker_url.startswith(("redis://", "rediss://"))
            self.rate_limit_storage_url = self.broker_url if shared else "memory://"
        self.model_roots = [Path(p).expanduser().resolve() for p in self.model_roots]
        return self

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: jobs run on an in-process worker thread."""
        return not self.broker_url

    def redacted(self) -> dict[str, Any]:
        """Effective settings as plain data, with secrets and URL passwords hidden."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = REDACTED if value.get_secret_value() else ""
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, list):
                value = [str(v) for v in value]
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            out[name] = value
        return out


def redact_url(url: str) -> str:
    """Hide the password in scheme://user:password@host URLs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    if ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:{REDACTED}@{host}"
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings. Tests call `get_settings.cache_clear()` after changing the environment."""
    return Settings()
