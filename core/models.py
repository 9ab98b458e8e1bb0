"""Imports every domain's SQLAlchemy models so `Base.metadata` is complete (Alembic, tests).

Add one import line per new domain.
"""

from core.db import Base

__all__ = ["Base"]
