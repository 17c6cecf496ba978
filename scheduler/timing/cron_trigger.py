"""Standard crontab expressions evaluated on the wall clock of an IANA time zone (pure).

See `CronTrigger` for the syntax and the daylight-saving rules; `scheduler.timing.cron` parses
the expression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from enum import Enum
from zoneinfo import ZoneInfo

from scheduler.timing.clock import UTC, require_aware
from scheduler.timing.cron import CronSpec, parse_cron

_ONE_SECOND = timedelta(seconds=1)

# Feb 29 on a given weekday recurs within 28 years (the solar cycle); every
# other satisfiable day rule recurs much sooner.  Searching further would only
# burn time on expressions that cannot fire in any practical horizon.
_SEARCH_YEARS = 28
_MAX_YEAR = 9999


def _to_utc_floor(value: datetime) -> datetime:
    # Fire instants are whole seconds, so "strictly after 10.5s" is the same
    # as "strictly after 10s"; flooring keeps the search in whole seconds.
    return value.astimezone(UTC).replace(microsecond=0)


def _format_wall(wall: datetime) -> str:
    return wall.strftime("%H:%M:%S" if wall.second else "%H:%M")


class _Kind(Enum):
    NORMAL = "normal"
    GAP = "gap"  # the wall time does not exist (clocks jumped over it)
    OVERLAP = "overlap"  # the wall time happens twice (clocks were set back)


@dataclass(frozen=True)
class _Slot:
    wall: datetime  # naive local wall time that matched the expression
    instant: datetime  # aware UTC instant at which it fires
    kind: _Kind


@dataclass(frozen=True)
class CronTrigger:
    """A crontab expression evaluated on the wall clock of ``tz``.

    Syntax is standard Vixie/POSIX crontab: five fields ``minute hour
    day-of-month month day-of-week``, or six with seconds last (croniter's
    convention).  Fields accept ``*``, numbers, ``a-b``, ``*/n``, ``a-b/n``,
    ``a/n`` (``a`` to the end of the field) and comma lists of these; months
    ``jan``-``dec`` and weekdays ``sun``-``sat`` by name; weekday 0 and 7 are
    both Sunday.  ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``,
    ``@daily``, ``@midnight`` and ``@hourly`` are accepted.  When both
    day-of-month and day-of-week are restricted (neither starts with ``*``)
    a day matches if either does; otherwise both must.

    Daylight-saving rules, applied to matching local wall-clock times:

    * a wall time that does not exist (spring-forward gap) fires once at the
      first instant after the gap; several such wall times in one gap, and a
      matching wall time right at the end of the gap, collapse into that one
      instant;
    * a wall time that occurs twice (autumn overlap) fires once, at its first
      occurrence; the repeated stretch never fires a second time, even when
      ``after`` lies inside it.

    Raises ``TriggerError`` at construction for a malformed expression or one
    that can never fire.
    """

    expr: str
    tz: ZoneInfo
    _spec: CronSpec = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tz, tzinfo):
            raise TypeError(f"tz must be a ZoneInfo, got {type(self.tz).__name__}")
        object.__setattr__(self, "_spec", parse_cron(self.expr))

    def next_after(self, after: datetime) -> datetime | None:
        """First fire instant strictly after ``after``, or None if none within 28 years."""
        slot = self._locate(_to_utc_floor(require_aware(after, "after")))
        return None if slot is None else slot.instant

    def _locate(self, after_utc: datetime) -> _Slot | None:
        try:
            return self._locate_unchecked(after_utc)
        except OverflowError:
            # Only reachable at the edge of datetime's range (year 9999).
            return None

    def _locate_unchecked(self, after_utc: datetime) -> _Slot | None:
        spec = self._spec
        wall = after_utc.astimezone(self.tz).replace(tzinfo=None, fold=0)
        end_year = min(wall.year + _SEARCH_YEARS + 1, _MAX_YEAR + 1)
        while True:
            candidate = spec.next_wall(wall, end_year)
            if candidate is None:
                return None
            slot = self._resolve(candidate)
            if slot.instant > after_utc:
                return slot
            # The local-to-UTC mapping is monotonic, so the only way a later
            # wall time can map to an earlier instant is an overlap whose
            # first occurrence already passed (``after`` is in the repeat).
            # Every remaining wall time inside the overlap is equally stale.
            wall = self._overlap_end(candidate) - _ONE_SECOND if slot.kind is _Kind.OVERLAP else candidate

    def _resolve(self, wall: datetime) -> _Slot:
        tz = self.tz
        first = wall.replace(tzinfo=tz)
        offset_first = first.utcoffset()
        offset_second = wall.replace(tzinfo=tz, fold=1).utcoffset()
        assert offset_first is not None and offset_second is not None
        instant = (wall - offset_first).replace(tzinfo=UTC)
        if offset_first == offset_second:
            return _Slot(wall, instant, _Kind.NORMAL)
        if offset_first > offset_second:
            # fold=0 is the first occurrence, which is the one that fires.
            return _Slot(wall, instant, _Kind.OVERLAP)
        # In a gap fold=0 applies the pre-transition offset, landing after the
        # transition, and fold=1 lands before it; the transition lies between.
        earlier = (wall - offset_second).replace(tzinfo=UTC)
        return _Slot(wall, self._transition(earlier, instant), _Kind.GAP)

    def _overlap_end(self, wall: datetime) -> datetime:
        """First wall time after the overlap containing ``wall``."""
        offset_first = wall.replace(tzinfo=self.tz).utcoffset()
        offset_second = wall.replace(tzinfo=self.tz, fold=1).utcoffset()
        assert offset_first is not None and offset_second is not None
        transition = self._transition(
            (wall - offset_first).replace(tzinfo=UTC), (wall - offset_second).replace(tzinfo=UTC)
        )
        return transition.replace(tzinfo=None) + offset_first

    def _transition(self, before: datetime, after: datetime) -> datetime:
        """First instant in (before, after] whose UTC offset differs from ``before``'s."""
        # Transition instants are not exposed by zoneinfo; a binary search over
        # whole seconds costs about a dozen lookups and runs at most twice a
        # year per job.
        tz = self.tz
        offset_before = before.astimezone(tz).utcoffset()
        low, high = 0, int((after - before).total_seconds())
        while high - low > 1:
            middle = (low + high) // 2
            if (before + timedelta(seconds=middle)).astimezone(tz).utcoffset() == offset_before:
                low = middle
            else:
                high = middle
        return before + timedelta(seconds=high)

    def dst_note(self, instant: datetime) -> str | None:
        """How daylight saving time shaped the fire instant ``instant``, or None (see `triggers.dst_note`)."""
        if instant.microsecond:
            return None
        instant_utc = instant.astimezone(UTC)
        slot = self._locate(instant_utc - _ONE_SECOND)
        if slot is None or slot.instant != instant_utc:
            return None
        if slot.kind is _Kind.GAP:
            fired_wall = instant_utc.astimezone(self.tz).replace(tzinfo=None)
            return f"nonexistent local time {_format_wall(slot.wall)} (DST gap) -> fired at {_format_wall(fired_wall)}"
        if slot.kind is _Kind.OVERLAP:
            return f"ambiguous local time {_format_wall(slot.wall)} (DST overlap) -> first occurrence"
        return None
