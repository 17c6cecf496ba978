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

Three kinds of trigger fire at instants (`FileTrigger` and `AfterTrigger` have none: files and
the ends of upstream runs start their jobs' runs):

``CronTrigger`` (`scheduler.timing.cron_trigger`)
    Standard (Vixie/POSIX) crontab semantics evaluated on the local wall
    clock of an IANA time zone.  See the class docstring for the DST rules.
``IntervalTrigger``
    Every ``seconds`` seconds, aligned to the Unix epoch in UTC.
``OneOffTrigger``
    Exactly once, at a given instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias

from scheduler.timing.clock import UTC, require_aware
from scheduler.timing.cron import TriggerError
from scheduler.timing.cron_trigger import CronTrigger

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)
_MICROS_PER_SECOND = 1_000_000


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
        index = self._slot_index(require_aware(after, "after")) + 1
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
        require_aware(after, "after")
        instant = self.at.astimezone(UTC)
        if instant.microsecond:
            instant = instant.replace(microsecond=0) + _ONE_SECOND
        return instant if instant > after else None


@dataclass(frozen=True)
class FileTrigger:
    """A watch job's trigger: files start its runs, so it has no instants of its own."""

    folder: str

    def next_after(self, after: datetime) -> datetime | None:
        require_aware(after, "after")
        return None


@dataclass(frozen=True)
class AfterTrigger:
    """An after job's trigger: the end of an upstream run starts its runs, so it has no
    instants of its own. `source` names the upstream (``drift-check``, ``pipeline drift_pipeline``)."""

    source: str

    def next_after(self, after: datetime) -> datetime | None:
        require_aware(after, "after")
        return None


@dataclass(frozen=True)
class WindowedTrigger:
    """Another trigger's instants restricted to ``start <= s <= end`` (either bound optional).

    Bounding the trigger itself, rather than skipping instants outside the
    window, keeps a job that starts next month from producing a skip every
    minute until then.
    """

    inner: CronTrigger | IntervalTrigger | OneOffTrigger | FileTrigger | AfterTrigger
    start: datetime | None = None
    end: datetime | None = None

    def next_after(self, after: datetime) -> datetime | None:
        require_aware(after, "after")
        if self.start is not None and after < self.start:
            after = self.start - timedelta(microseconds=1)  # an instant exactly at start fires
        following = self.inner.next_after(after)
        if following is None or (self.end is not None and following > self.end):
            return None
        return following


Trigger: TypeAlias = CronTrigger | IntervalTrigger | OneOffTrigger | FileTrigger | AfterTrigger | WindowedTrigger


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
    require_aware(after, "after")
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
    require_aware(after, "after")
    require_aware(until, "until")
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
    require_aware(after, "after")
    require_aware(until, "until")
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
    require_aware(instant, "instant")
    if isinstance(trigger, WindowedTrigger):
        trigger = trigger.inner
    return trigger.dst_note(instant) if isinstance(trigger, CronTrigger) else None
