"""What the audit log adds to the job runtime: the journal job events are written to (`core.jobs.journal`),
and the `audit_checkpoint` background service — it verifies the audit events appended since the last
checkpoint and signs the chain's head, so deleting the newest events is detectable within one sweep interval."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.audit import service as audit_service
from core.config import Settings
from core.jobs import journal
from core.jobs.services import register_service
from core.logging import get_logger
from core.outbox.relay import Publisher

log = get_logger(__name__)


def _checkpoint(session: Session, publisher: Publisher, settings: Settings) -> dict[str, int]:
    report = audit_service.verify(session, settings)
    if not report.ok:
        log.error("audit chain broken", problem=report.problem, first_broken_seq=report.first_broken_seq)
    return {}


register_service("audit_checkpoint", _checkpoint)
journal.use(audit_service.append)
