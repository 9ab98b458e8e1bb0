"""Identifiers: random UUIDs (v4) for rows that are exposed over the API."""

import uuid


def new_id() -> uuid.UUID:
    return uuid.uuid4()
