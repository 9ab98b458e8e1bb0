"""Time helpers: Lethe only handles timezone-aware UTC datetimes.

`UtcTimestamp` / `AwareUtcTimestamp` are what any datetime a client sends is parsed into: converted to UTC and
bounded, so that a value that parses (`9999-12-31T23:59:59-12:00`, one day past what Python can represent in
UTC) is refused with a 422 instead of overflowing later in a conversion, a comparison or the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

# One day inside Python's range on both ends, so adding or subtracting up to a day never overflows.
MIN_TIME = datetime(1, 1, 2, tzinfo=UTC)
MAX_TIME = datetime(9999, 12, 30, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def bounded_utc(value: datetime) -> datetime:
    """`value` in UTC, if it lies between MIN_TIME and MAX_TIME; ValueError otherwise (never OverflowError)."""
    try:
        utc = as_utc(value)
    except OverflowError:
        utc = None
    if utc is None or not MIN_TIME <= utc <= MAX_TIME:
        raise ValueError(f"the time must lie between {MIN_TIME.date()} and {MAX_TIME.date()} (UTC)")
    return utc


def _aware_bounded_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give a timezone (e.g. 2026-12-01T12:00:00Z)")
    return bounded_utc(value)


# A client-supplied time: naive values are read as UTC.
UtcTimestamp = Annotated[datetime, AfterValidator(bounded_utc)]
# A client-supplied time that must carry its timezone.
AwareUtcTimestamp = Annotated[datetime, AfterValidator(_aware_bounded_utc)]
