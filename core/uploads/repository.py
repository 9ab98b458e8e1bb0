"""Queries on uploads (tenant-scoped)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.uploads.models import Upload


def get(session: Session, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> Upload | None:
    return session.scalars(select(Upload).where(Upload.id == upload_id, Upload.tenant_id == tenant_id)).first()


def get_many(session: Session, tenant_id: uuid.UUID, upload_ids: list[uuid.UUID]) -> dict[uuid.UUID, Upload]:
    if not upload_ids:
        return {}
    rows = session.scalars(select(Upload).where(Upload.tenant_id == tenant_id, Upload.id.in_(upload_ids)))
    return {row.id: row for row in rows}
