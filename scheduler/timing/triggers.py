"""Turn a job's trigger into the UTC instants at which it fires.

This module is pure: it never reads the clock, never sleeps and does no I/O.
Every function takes the reference instant (``after``) explicitly, so callers
decide what "now" is and tests need no frozen time.

Contract shared by every trigger and function below:

* every ``after``/``until``/``instant`` argument is a timezone-aware datetime;
  a naive one raises ``ValueError``;
* every returned instant is an aware datetime in UTC (``tzinfo=timezone.utc``)
  with ``microsecond == 0`` and strictly after ``after``;
* feeding a result back in as ``after`` yields a strictly later instant, so a
  trigger never fires the same instant twice and never goes backwards.

Three kinds of trigger exist:

``CronTrigger``
    Standard (Vixie/POSIX) crontab semantics evaluated on the local wall
    clock of an IANA time zone.  See the class docstring for the DST rules.
``IntervalTrigger``
    Every ``seconds`` seconds, aligned to the Unix epoch in UTC.
``OneOffTrigger``
    Exactly once, at a given instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from enum import Enum
from typing import TypeAlias
from zoneinfo import ZoneInfo

from scheduler.timing.cron import CronSpec, TriggerError, parse_cron

__all__ = [
    "CronTrigger",
    "FileTrigger",
    "IntervalTrigger",
    "OneOffTrigger",
    "Trigger",
    "TriggerError",
    "WindowedTrigger",
    "count_slots_between",
    "dst_note",
    "fire_times",
    "slots_between",
]

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)
_MICROS_PER_SECOND = 1_000_000

# Feb 29 on a given weekday recurs within 28 years (the solar cycle); every
# other satisfiable day rule recurs much sooner.  Searching further would only
# burn time on expressions that cannot fire in any practical horizon.
_SEARCH_YEARS = 28
_MAX_YEAR = 9999


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------


def _require_aware(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value


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


# --------------------------------------------------------------------------
# Triggers
# --------------------------------------------------------------------------


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
        slot = self._locate(_to_utc_floor(_require_aware(after, "after")))
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


@dataclass(frozen=True)
class IntervalTrigger:
    """Every ``seconds`` seconds, on instants ``k * seconds`` after the Unix epoch (UTC).

    Aligning to the epoch makes the slots deterministic without storing an
    anchor: 15 minutes fires at :00, :15, :30 and :45; one day at 00:00 UTC.
    """

    seconds: int

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int):
            raise TriggerError(f"interval must be a whole number of seconds, got {self.seconds!r}")
        if self.seconds <= 0:
            raise TriggerError(f"interval must be positive, got {self.seconds} seconds")

    def next_after(self, after: datetime) -> datetime | None:
        """First slot strictly after ``after``, or None past the datetime range."""
        index = self._slot_index(_require_aware(after, "after")) + 1
        try:
            return _EPOCH + timedelta(seconds=index * self.seconds)
        except OverflowError:
            return None

    def _slot_index(self, instant: datetime) -> int:
        """Index of the last slot at or before ``instant``."""
        delta = instant - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * _MICROS_PER_SECOND + delta.microseconds
        return micros // (self.seconds * _MICROS_PER_SECOND)


@dataclass(frozen=True)
class OneOffTrigger:
    """Fires exactly once, at ``at``.

    Fire instants are whole seconds, so an ``at`` with a fractional second
    fires at the next whole second: never early, and at most a second late.
    """

    at: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.at, datetime):
            raise TriggerError(f"one-off time must be a datetime, got {type(self.at).__name__}")
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise TriggerError(f"one-off time {self.at.isoformat()} must include a time zone")

    def next_after(self, after: datetime) -> datetime | None:
        """The fire instant if it is strictly after ``after``, else None."""
        _require_aware(after, "after")
        instant = self.at.astimezone(UTC)
        if instant.microsecond:
            instant = instant.replace(microsecond=0) + _ONE_SECOND
        return instant if instant > after else None


@dataclass(frozen=True)
class FileTrigger:
    """A watch job's trigger: files start its runs, so it has no instants of its own."""

    folder: str

    def next_after(self, after: datetime) -> datetime | None:
        _require_aware(after, "after")
        return None


@dataclass(frozen=True)
class WindowedTrigger:
    """Another trigger's instants restricted to ``start <= s <= end`` (either bound optional).

    Bounding the trigger itself, rather than skipping instants outside the
    window, keeps a job that starts next month from producing a skip every
    minute until then.
    """

    inner: CronTrigger | IntervalTrigger | OneOffTrigger | FileTrigger
    start: datetime | None = None
    end: datetime | None = None

    def next_after(self, after: datetime) -> datetime | None:
        _require_aware(after, "after")
        if self.start is not None and after < self.start:
            after = self.start - timedelta(microseconds=1)  # an instant exactly at start fires
        following = self.inner.next_after(after)
        if following is None or (self.end is not None and following > self.end):
            return None
        return following


Trigger: TypeAlias = CronTrigger | IntervalTrigger | OneOffTrigger | FileTrigger | WindowedTrigger


# --------------------------------------------------------------------------
# Sequences of fire instants
# --------------------------------------------------------------------------


def _require_non_negative(value: int, name: str) -> None:
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


def fire_times(trigger: Trigger, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire instants strictly after ``after``, oldest first.

    Shorter than ``count`` when the trigger runs out (a one-off, or a cron
    expression with no fire within the search horizon).
    """
    _require_aware(after, "after")
    _require_non_negative(count, "count")
    result: list[datetime] = []
    current = after
    while len(result) < count:
        following = trigger.next_after(current)
        if following is None:
            break
        result.append(following)
        current = following
    return result


def slots_between(trigger: Trigger, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """Fire instants ``s`` with ``after < s <= until``, oldest first.

    At most ``limit`` are returned, and they are the OLDEST ``limit`` slots:
    a caller catching up after downtime can process them and call again with
    ``after`` set to the last one.  Use ``count_slots_between`` to learn how
    many were missed in total.
    """
    _require_aware(after, "after")
    _require_aware(until, "until")
    _require_non_negative(limit, "limit")
    result: list[datetime] = []
    current = after
    while len(result) < limit:
        following = trigger.next_after(current)
        if following is None or following > until:
            break
        result.append(following)
        current = following
    return result


def count_slots_between(trigger: Trigger, after: datetime, until: datetime, cap: int) -> int:
    """Number of fire instants ``s`` with ``after < s <= until``, counting at most ``cap``."""
    _require_aware(after, "after")
    _require_aware(until, "until")
    _require_non_negative(cap, "cap")
    if until <= after:
        return 0
    if isinstance(trigger, IntervalTrigger):
        # Epoch-aligned slots can be counted without enumerating them.
        return min(cap, trigger._slot_index(until) - trigger._slot_index(after))
    return len(slots_between(trigger, after, until, cap))


def dst_note(trigger: Trigger, instant: datetime) -> str | None:
    """Explain how daylight saving time shaped a cron fire instant, if it did.

    Returns ``"nonexistent local time 02:30 (DST gap) -> fired at 03:00"`` when
    the matching wall time fell into a spring-forward gap and was moved,
    ``"ambiguous local time 02:30 (DST overlap) -> first occurrence"`` when it
    fell into an autumn overlap, and None otherwise (including for non-cron
    triggers and for instants at which the trigger does not fire).
    """
    _require_aware(instant, "instant")
    if isinstance(trigger, WindowedTrigger):
        trigger = trigger.inner
    if not isinstance(trigger, CronTrigger):
        return None
    if instant.microsecond:
        return None
    instant_utc = instant.astimezone(UTC)
    slot = trigger._locate(instant_utc - _ONE_SECOND)
    if slot is None or slot.instant != instant_utc:
        return None
    if slot.kind is _Kind.GAP:
        fired_wall = instant_utc.astimezone(trigger.tz).replace(tzinfo=None)
        return f"nonexistent local time {_format_wall(slot.wall)} (DST gap) -> fired at {_format_wall(fired_wall)}"
    if slot.kind is _Kind.OVERLAP:
        return f"ambiguous local time {_format_wall(slot.wall)} (DST overlap) -> first occurrence"
    return None
