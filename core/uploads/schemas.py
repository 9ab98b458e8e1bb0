"""Response body of uploads."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class UploadOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    sha256: str
    size: int
    media_type: str
    width: int
    height: int
    filename: str | None
    created_at: datetime
