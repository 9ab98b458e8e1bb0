"""What model versions add to the job runtime and to other domains:

- the `apply_version` job kind (default lane, no torch): store an applied erasure's files as its version;
- `core.erasure.lineage.BASE_RESOLVERS`: an erasure of version N trains that version's weights and is
  verified again for its lineage;
- `core.certificates.service.STATEMENTS`: a certificate states the lineage (previous certificate by sha256);
- `core.erasure.handlers.SUCCEEDED`: `auto_apply` — a succeeded erasure on the head of a model that asks for
  it becomes the next version in the same transaction (after the certificate is issued: listed after
  `core.certificates.handlers` in core.wiring).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.certificates.service import STATEMENTS
from core.erasure.handlers import SUCCEEDED
from core.erasure.lineage import BASE_RESOLVERS
from core.erasure.models import ErasureRequest
from core.jobs.handlers import Attempt, JobHandler, register
from core.jobs.models import Artifact, Job
from core.jobs.states import JobKind
from core.versions.base import erasure_base
from core.versions.certificate import lineage_statement
from core.versions.service import auto_apply
from core.versions.storing import VersionInputError, run_apply_version


class ApplyVersionHandler(JobHandler):
    kind = JobKind.apply_version
    permanent = (VersionInputError,)

    def run(self, attempt: Attempt) -> str:
        return run_apply_version(attempt.held, attempt.settings, attempt.keeper, attempt.work)


def _auto_apply(session: Session, request: ErasureRequest, job: Job, artifacts: list[Artifact]) -> None:
    auto_apply(session, request, actor="system:auto-apply")


def _lineage(session: Session, request: ErasureRequest) -> dict[str, Any]:
    return {"lineage": lineage_statement(session, request)}


register(ApplyVersionHandler())
BASE_RESOLVERS.append(erasure_base)
STATEMENTS.append(_lineage)
SUCCEEDED.append(_auto_apply)
