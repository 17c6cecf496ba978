"""Human durations: ``500ms``, ``30s``, ``15m``, ``2h``, ``1d``, or combinations such as ``1h30m``."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import AfterValidator

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# The longest duration accepted (100 years): instants a duration away from now must stay far
# inside what datetime arithmetic can hold (year 9999), whatever field the duration is in.
MAX_SECONDS = 100 * 365 * 86400
_PART = re.compile(r"(\d+)(ms|[smhd])")
_WHOLE = re.compile(r"(?:\d+(?:ms|[smhd]))+")


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration; plain numbers are seconds. Raises ValueError with the accepted forms."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration such as 30s, 15m, 2h or 1d, got {text!r}")
    if isinstance(text, (int, float)):
        if not math.isfinite(text):
            raise ValueError(f"duration must be a finite number of seconds, got {text}")
        if text < 0:
            raise ValueError(f"duration must not be negative, got {text}")
        seconds = float(text)
    else:
        cleaned = text.strip().lower()
        if not _WHOLE.fullmatch(cleaned):
            raise ValueError(f"expected a duration such as 30s, 15m, 2h, 1d or 1h30m, got {text!r}")
        seconds = float(round(sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned)), 3))
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration {text!r} is longer than 100 years, the longest accepted")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 90 -> '1m30s', 86400 -> '1d', 0.25 -> '250ms'."""
    remaining = int(seconds)
    millis = round((seconds - remaining) * 1000)
    if remaining == 0:
        return f"{millis}ms" if millis else "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) + (f"{millis}ms" if millis else "")


def _checked(text: str) -> str:
    parse_duration(text)
    return text


# A duration field of schedules.yaml: kept as written ("30s"), rejected at load when malformed.
Duration = Annotated[str, AfterValidator(_checked)]
