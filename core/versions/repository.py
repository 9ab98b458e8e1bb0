"""Queries on model versions (always within one model the caller has already scoped to its tenant)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.versions.models import ModelVersion, VersionStatus


def get(session: Session, model_id: uuid.UUID, number: int) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion).where(ModelVersion.model_id == model_id, ModelVersion.number == number)
    ).first()


def of_erasure(session: Session, erasure_id: uuid.UUID) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).where(ModelVersion.erasure_id == erasure_id)).first()


def list_versions(session: Session, model_id: uuid.UUID) -> list[ModelVersion]:
    return list(session.scalars(
        select(ModelVersion).where(ModelVersion.model_id == model_id).order_by(ModelVersion.number)
    ))


def last_number(session: Session, model_id: uuid.UUID) -> int:
    return int(session.scalar(select(func.max(ModelVersion.number)).where(ModelVersion.model_id == model_id)) or 0)


def pending(session: Session, model_id: uuid.UUID) -> list[ModelVersion]:
    """The model's versions still waiting for their files, oldest first."""
    return list(session.scalars(
        select(ModelVersion)
        .where(ModelVersion.model_id == model_id, ModelVersion.status == VersionStatus.pending)
        .order_by(ModelVersion.number).execution_options(populate_existing=True)
    ))
