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

import calendar
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from enum import Enum
from typing import TypeAlias
from zoneinfo import ZoneInfo

__all__ = [
    "CronTrigger",
    "IntervalTrigger",
    "OneOffTrigger",
    "Trigger",
    "TriggerError",
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


class TriggerError(ValueError):
    """A trigger definition is invalid; the message is meant for the user."""


# --------------------------------------------------------------------------
# Cron parsing
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _FieldSpec:
    number: int  # 1-based position in the expression, as the user counts
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_MONTH_NAMES = {
    name: index
    for index, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_DOW_NAMES = {name: index for index, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}

_MINUTE = _FieldSpec(1, "minute", 0, 59)
_HOUR = _FieldSpec(2, "hour", 0, 23)
_DOM = _FieldSpec(3, "day of month", 1, 31)
_MONTH = _FieldSpec(4, "month", 1, 12, _MONTH_NAMES)
# 7 is accepted as a second spelling of Sunday, so the field's range (and
# therefore the end of `*` and `a/n`) is 0-7, exactly as in Vixie cron.
_DOW = _FieldSpec(5, "day of week", 0, 7, _DOW_NAMES)
_SECOND = _FieldSpec(6, "second", 0, 59)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_ITEM_RE = re.compile(
    r"""
    (?:
        (?P<star>\*)
      | (?P<start>[0-9A-Za-z]+) (?: - (?P<end>[0-9A-Za-z]+) )?
    )
    (?: / (?P<step>[0-9A-Za-z]*) )?
    """,
    re.VERBOSE,
)

_MONTH_LABELS = (
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# Longest each month can be; February counts its leap-year length because a
# day 29 rule does fire, just not every year.
_MONTH_MAX_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _field_error(spec: _FieldSpec, message: str) -> TriggerError:
    return TriggerError(f"cron field {spec.number} ({spec.name}): {message}")


def _parse_value(spec: _FieldSpec, token: str) -> int:
    if token.isdigit():
        value = int(token)
    elif spec.names is not None and token.isalpha():
        try:
            value = spec.names[token.lower()]
        except KeyError:
            first, last = next(iter(spec.names)), list(spec.names)[-1]
            raise _field_error(
                spec,
                f"unknown name {token!r} (use {first}-{last} or {spec.low}-{spec.high})",
            ) from None
    else:
        raise _field_error(spec, f"{token!r} is not a number")
    if not spec.low <= value <= spec.high:
        raise _field_error(spec, f"{value} is out of range {spec.low}-{spec.high}")
    return value


def _parse_field(spec: _FieldSpec, text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _field_error(spec, f"empty list item in {text!r}")
        match = _ITEM_RE.fullmatch(item)
        if match is None:
            raise _field_error(spec, f"cannot parse {item!r}")
        if match["star"]:
            start, end = spec.low, spec.high
        else:
            start = _parse_value(spec, match["start"])
            if match["end"] is not None:
                end = _parse_value(spec, match["end"])
                if start > end:
                    raise _field_error(spec, f"range {item!r} is reversed ({start} is greater than {end})")
            elif match["step"] is not None:
                # `a/n` means "from a to the end of the field, every n".
                end = spec.high
            else:
                end = start
        step = 1
        if match["step"] is not None:
            step_text = match["step"]
            if not step_text:
                raise _field_error(spec, f"missing step after '/' in {item!r}")
            if not step_text.isdigit():
                raise _field_error(spec, f"step {step_text!r} in {item!r} is not a number")
            step = int(step_text)
            if step == 0:
                raise _field_error(spec, f"step 0 in {item!r} is invalid (must be at least 1)")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class _CronSpec:
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    second_set: frozenset[int]
    minute_set: frozenset[int]
    hour_set: frozenset[int]
    dom_set: frozenset[int]
    dow_set: frozenset[int]  # 0 = Sunday ... 6 = Saturday
    # Vixie cron ORs the two day fields only when both are restricted (neither
    # starts with `*`); otherwise the unrestricted one matches every day and
    # the two are ANDed.
    days_or: bool
    # Matching days for a month, keyed by (length, weekday of the 1st).  Only
    # 4 * 7 keys exist, so every job quickly stops computing day lists.
    day_cache: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict, compare=False, hash=False)

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        weekday, length = calendar.monthrange(year, month)
        # calendar counts Monday as 0; cron counts Sunday as 0.
        first_dow = (weekday + 1) % 7
        key = (length, first_dow)
        days = self.day_cache.get(key)
        if days is None:
            days = tuple(day for day in range(1, length + 1) if self._day_matches(day, (first_dow + day - 1) % 7))
            self.day_cache[key] = days
        return days

    def _day_matches(self, day: int, dow: int) -> bool:
        if self.days_or:
            return day in self.dom_set or dow in self.dow_set
        return day in self.dom_set and dow in self.dow_set

    def next_time_in_day(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        """First matching time of day strictly after ``hour:minute:second``."""
        if hour in self.hour_set:
            if minute in self.minute_set:
                index = bisect_right(self.seconds, second)
                if index < len(self.seconds):
                    return hour, minute, self.seconds[index]
            index = bisect_right(self.minutes, minute)
            if index < len(self.minutes):
                return hour, self.minutes[index], self.seconds[0]
        index = bisect_right(self.hours, hour)
        if index < len(self.hours):
            return self.hours[index], self.minutes[0], self.seconds[0]
        return None

    def next_day(self, year: int, month: int, day: int, end_year: int) -> tuple[int, int, int] | None:
        """First matching date strictly after the given one, before ``end_year``."""
        first_month = month
        # Only the starting month is entered part-way through; every later
        # month is searched from its first day.
        after_day = day
        for candidate_year in range(year, end_year):
            for candidate_month in self.months[bisect_left(self.months, first_month) :]:
                if candidate_month != month:
                    after_day = 0
                days = self.days_in(candidate_year, candidate_month)
                index = bisect_right(days, after_day)
                if index < len(days):
                    return candidate_year, candidate_month, days[index]
                after_day = 0
            first_month = 1
        return None

    def next_wall(self, wall: datetime, end_year: int) -> datetime | None:
        """First matching naive wall-clock time strictly after ``wall``."""
        year, month, day = wall.year, wall.month, wall.day
        if month in self.months and day in self.days_in(year, month):
            time = self.next_time_in_day(wall.hour, wall.minute, wall.second)
            if time is not None:
                return datetime(year, month, day, *time)
        date = self.next_day(year, month, day, end_year)
        if date is None:
            return None
        return datetime(*date, self.hours[0], self.minutes[0], self.seconds[0])


def _parse_cron(expr: str) -> _CronSpec:
    if not isinstance(expr, str):
        raise TriggerError(f"cron expression must be a string, got {type(expr).__name__}")
    text = expr.strip()
    if text.startswith("@"):
        macro = text.lower()
        if macro == "@reboot":
            raise TriggerError("cron macro '@reboot' is not supported: the scheduler has no reboot event")
        if macro not in _MACROS:
            raise TriggerError(f"unknown cron macro {text!r} (supported: {', '.join(_MACROS)})")
        text = _MACROS[macro]
    parts = text.split()
    if len(parts) not in (5, 6):
        raise TriggerError(
            "cron expression must have 5 fields (minute hour day-of-month month day-of-week)"
            f" or 6 with seconds last; got {len(parts)}"
        )
    minutes = _parse_field(_MINUTE, parts[0])
    hours = _parse_field(_HOUR, parts[1])
    doms = _parse_field(_DOM, parts[2])
    months = _parse_field(_MONTH, parts[3])
    dows = frozenset(value % 7 for value in _parse_field(_DOW, parts[4]))
    seconds = _parse_field(_SECOND, parts[5]) if len(parts) == 6 else frozenset({0})
    spec = _CronSpec(
        seconds=tuple(sorted(seconds)),
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        months=tuple(sorted(months)),
        second_set=seconds,
        minute_set=minutes,
        hour_set=hours,
        dom_set=doms,
        dow_set=dows,
        days_or=not parts[2].startswith("*") and not parts[4].startswith("*"),
    )
    _check_satisfiable(expr, spec, day_of_week_star=parts[4].startswith("*"))
    return spec


def _check_satisfiable(expr: str, spec: _CronSpec, *, day_of_week_star: bool) -> None:
    # With OR, any weekday eventually matches.  With a restricted weekday and a
    # `*`-prefixed day of month, day 1 is always selected and the 1st of every
    # month cycles through all weekdays.  So only "specific days of month, any
    # weekday" can be unsatisfiable, and only by asking for days the selected
    # months never have.
    if spec.days_or or not day_of_week_star:
        return
    first_day = min(spec.dom_set)
    if any(first_day <= _MONTH_MAX_DAYS[month] for month in spec.months):
        return
    month_names = [_MONTH_LABELS[month] for month in spec.months]
    listed = month_names[0] if len(month_names) == 1 else ", ".join(month_names[:-1]) + " or " + month_names[-1]
    raise TriggerError(f"cron expression never fires: {expr!r} (day of month {first_day} does not exist in {listed})")


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
    _spec: _CronSpec = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tz, tzinfo):
            raise TypeError(f"tz must be a ZoneInfo, got {type(self.tz).__name__}")
        object.__setattr__(self, "_spec", _parse_cron(self.expr))

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


Trigger: TypeAlias = CronTrigger | IntervalTrigger | OneOffTrigger


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
