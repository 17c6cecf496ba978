"""Parse crontab expressions into a spec that finds matching wall-clock times.

Pure like ``scheduler.timing.triggers``, which evaluates the spec against a time
zone: nothing here knows about instants, offsets or daylight saving time.
"""

from __future__ import annotations

import calendar
import functools
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["CronSpec", "TriggerError", "parse_cron"]


class TriggerError(ValueError):
    """A trigger definition is invalid; the message is meant for the user."""


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
class CronSpec:
    """The values each field of a parsed expression allows, sorted for searching."""

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
        """Days of ``month`` in ``year`` that the day fields select, ascending."""
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


@functools.lru_cache(maxsize=4096)  # configs repeat expressions; a CronSpec is immutable
def parse_cron(expr: str) -> CronSpec:
    """Parse a 5- or 6-field crontab expression or an ``@`` macro.

    Raises:
        TriggerError: For a malformed expression or one that can never fire.
    """
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
    spec = CronSpec(
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


def _check_satisfiable(expr: str, spec: CronSpec, *, day_of_week_star: bool) -> None:
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
