"""What schedules add to the job runtime and to tenancy: the `schedules` background service (runs each due
slot once, core.schedules.service.run_due), and pausing a key's schedules when the key is revoked (they would
otherwise keep submitting in its name; a missed hook is caught at the next due slot)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.config import Settings
from core.jobs.services import register_service
from core.outbox.relay import Publisher
from core.schedules.service import pause_created_by, run_due
from core.tenancy.models import ApiKey
from core.tenancy.service import KEY_REVOKED
from core.timeutil import utcnow


def _schedules(session: Session, publisher: Publisher, settings: Settings) -> dict[str, int]:
    return {"schedule_runs": run_due(session, now=utcnow())}


register_service("schedules", _schedules)


def _pause_schedules_of(session: Session, key: ApiKey, actor: str) -> None:
    pause_created_by(session, f"key:{key.id}", reason="the API key that created the schedule was revoked", actor=actor)


if _pause_schedules_of not in KEY_REVOKED:
    KEY_REVOKED.append(_pause_schedules_of)
