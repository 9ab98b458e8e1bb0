"""Imports every domain's SQLAlchemy models so `Base.metadata` is complete (Alembic, tests).

Add one import line per new domain.
"""

import core.audit.models
import core.batches.models
import core.console.models
import core.erasure.models
import core.idempotency.models
import core.jobs.models
import core.outbox.models
import core.registry.models
import core.schedules.models
import core.tenancy.models
import core.uploads.models
import core.versions.models
import core.webhooks.models  # noqa: F401
from core.db import Base

__all__ = ["Base"]
