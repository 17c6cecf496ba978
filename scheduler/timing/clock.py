"""The one clock type: only the outermost shells read `utcnow`; everything else is given `now`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

UTC = timezone.utc
Now = Callable[[], datetime]


def utcnow() -> datetime:
    """The current instant, aware, in UTC."""
    return datetime.now(UTC)


def require_aware(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value
