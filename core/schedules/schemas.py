"""Schedule input/output."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.batches.schemas import BatchCreate
from core.timeutil import utcnow
from core.validation import RequestModel


class ScheduleCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "name": "nightly takedowns",
            "cron": "0 3 * * *",
            "timezone": "Europe/Berlin",
            "template": {"models": {"all_ready": True}, "concepts": [{"target": "Van Gogh", "kind": "style"}]},
            "enabled": True,
        }]},
    )

    name: str | None = Field(default=None, max_length=200)
    cron: str = Field(max_length=120, description="Five-field cron expression, e.g. '0 3 * * *'.")
    timezone: str = Field(default="UTC", max_length=64, description="IANA zone the cron expression is read in.")
    template: BatchCreate = Field(description="The batch each run submits (erasure body + model selector).")
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        value = " ".join(value.split())
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid five-field cron expression")
        try:
            # Valid syntax can still name a date that never comes (e.g. February 30th).
            croniter(value, utcnow()).get_next(datetime)
        except (CroniterError, ValueError, OverflowError):
            raise ValueError(f"{value!r} never fires (no such date)")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'")
        return value


class ScheduleOut(BaseModel):
    id: uuid.UUID
    name: str | None
    cron: str
    timezone: str
    template: BatchCreate = Field(description="The batch each run submits.")
    enabled: bool
    next_run_at: datetime
    last_run_at: datetime | None
    created_at: datetime


class ScheduleList(BaseModel):
    items: list[ScheduleOut]
