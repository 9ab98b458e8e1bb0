"""The erase job's base for a model version (registered in core.erasure.lineage.BASE_RESOLVERS): the
version's weights and its lineage — every concept erased in v2..vN, which the job verifies again. The source
folder still gives the language, the judge and the retention baseline v1.

A version's weights are its `fused/` objects, downloaded (each sha256-checked) into
`{data_dir}/model-cache/versions/{version id}` once per worker machine.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from core.config import Settings
from core.db import unit_of_work
from core.erasure.lineage import ErasureBase
from core.errors import LetheError, ValidationFailed
from core.storage import get_store
from core.storage.tenant import tenant_store
from core.versions import repository
from core.versions.models import VersionStatus

FUSED = "fused/"


class VersionNotStored(LetheError):
    """The version is applied but its files are still being stored: the erasure job retries later."""

    kind = "version-not-stored"
    title = "The model version is not stored yet"


def erasure_base(*, tenant_id: uuid.UUID, model_id: uuid.UUID, number: int | None, source_dir: Path,
                 source_fingerprint: str | None, settings: Settings) -> ErasureBase | None:
    """The weights an erasure of version `number` starts from; None for the source (None, 1)."""
    if number is None or number == 1:
        return None
    with unit_of_work() as session:
        version = repository.get(session, model_id, number)
        if version is None:
            raise ValidationFailed(f"model {model_id} has no version {number}")
        if version.status == VersionStatus.pending:
            raise VersionNotStored(f"version {number} is applied but its files are still being stored")
        if version.status == VersionStatus.failed:
            raise ValidationFailed(f"version {number} failed to be stored: {version.status_reason}")
        version_id, fingerprint = version.id, version.fingerprint
        fused = [a for a in version.artifacts if a["name"].startswith(FUSED)]
        lineage = list(version.erased_concepts)
    if not fused:
        raise ValidationFailed(f"version {number} has no fused weights")
    return ErasureBase(number, _download(version_id, fused, tenant_id, settings), fingerprint, lineage)


def _download(version_id: uuid.UUID, fused: list[dict[str, Any]], tenant_id: uuid.UUID, settings: Settings) -> Path:
    cache = settings.data_dir / "model-cache" / "versions" / str(version_id)
    if (cache / ".complete").is_file():
        return cache
    store = tenant_store(get_store(settings), tenant_id)
    staging = cache.with_name(f"{cache.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        for art in fused:
            store.download(store.relative(art["key"]), staging / art["name"][len(FUSED):],
                           expected_sha256=art["sha256"])
        (staging / ".complete").write_text(str(version_id))
        if cache.exists():  # another process finished first
            shutil.rmtree(staging)
        else:
            staging.replace(cache)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return cache
