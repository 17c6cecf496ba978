from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from freezegun import freeze_time

from scheduler.timing.cron import TriggerError
from scheduler.timing.cron_trigger import CronTrigger
from scheduler.timing.triggers import (
    AfterTrigger,
    FileTrigger,
    IntervalTrigger,
    OneOffTrigger,
    Trigger,
    WindowedTrigger,
    count_slots_between,
    dst_note,
    fire_times,
    slots_between,
)

UTC = timezone.utc
UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")  # +05:30 all year: exercises non-UTC without DST
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # 30-minute DST shift


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def assert_well_formed(instants: list[datetime], after: datetime) -> None:
    previous = after
    for instant in instants:
        assert instant.tzinfo is UTC
        assert instant.microsecond == 0
        assert instant > previous
        previous = instant


# --------------------------------------------------------------------------
# Cron: syntax and standard semantics (UTC)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr,after,expected",
    [
        ("0 * * * *", utc(2026, 1, 1, 10, 0), [utc(2026, 1, 1, 11), utc(2026, 1, 1, 12)]),
        ("0 * * * *", utc(2026, 1, 1, 10, 59, 59, 999999), [utc(2026, 1, 1, 11)]),
        ("*/20 * * * *", utc(2026, 1, 1, 23, 30), [utc(2026, 1, 1, 23, 40), utc(2026, 1, 2)]),
        ("5/15 * * * *", utc(2026, 1, 1), [utc(2026, 1, 1, 0, m) for m in (5, 20, 35, 50)]),
        (
            "0 10-20/4 * * *",
            utc(2026, 1, 1),
            [utc(2026, 1, 1, 10), utc(2026, 1, 1, 14), utc(2026, 1, 1, 18), utc(2026, 1, 2, 10)],
        ),
        ("0 0 31 * *", utc(2026, 1, 1), [utc(2026, 1, 31), utc(2026, 3, 31), utc(2026, 5, 31)]),
        # Day-of-month OR day-of-week when both are restricted: Mondays and the 1st.
        (
            "0 0 1 * 1",
            utc(2026, 1, 1),
            [utc(2026, 1, d) for d in (5, 12, 19, 26)] + [utc(2026, 2, 1), utc(2026, 2, 2)],
        ),
        ("0 0 1,15 * wed", utc(2026, 1, 1), [utc(2026, 1, d) for d in (7, 14, 15, 21, 28)]),
        # A `*`-prefixed field is "unrestricted" for the OR rule even with a step,
        # so odd days AND Mondays (Vixie behaviour).
        (
            "0 0 */2 * 1",
            utc(2026, 1, 1),
            [utc(2026, 1, 5), utc(2026, 1, 19), utc(2026, 2, 9), utc(2026, 2, 23)],
        ),
        ("0 0 1 * *", utc(2026, 1, 1), [utc(2026, 2, 1), utc(2026, 3, 1)]),
        ("0 0 * * 1", utc(2026, 1, 1), [utc(2026, 1, 5), utc(2026, 1, 12)]),
        # Sunday as 0, 7 and by name.
        ("0 0 * * 0", utc(2026, 1, 1), [utc(2026, 1, 4), utc(2026, 1, 11)]),
        ("0 0 * * 7", utc(2026, 1, 1), [utc(2026, 1, 4), utc(2026, 1, 11)]),
        ("0 0 * * SUN", utc(2026, 1, 1), [utc(2026, 1, 4), utc(2026, 1, 11)]),
        ("0 0 * * 5-7", utc(2026, 1, 1), [utc(2026, 1, d) for d in (2, 3, 4, 9)]),
        # `a/n` runs to the end of the field, which for weekdays is 7 (Sunday).
        ("0 0 * * 1/3", utc(2026, 1, 1), [utc(2026, 1, d) for d in (4, 5, 8, 11)]),
        (
            "0 9 * Jan-MAR mon-fri",
            utc(2026, 3, 30),
            [utc(2026, 3, 30, 9), utc(2026, 3, 31, 9), utc(2027, 1, 1, 9)],
        ),
        ("0 0 1 dec,feb *", utc(2026, 1, 1), [utc(2026, 2, 1), utc(2026, 12, 1)]),
        # Six fields: seconds last.
        (
            "* * * * * 15",
            utc(2026, 1, 1),
            [utc(2026, 1, 1, 0, 0, 15), utc(2026, 1, 1, 0, 1, 15)],
        ),
        (
            "*/20 * * * * */30",
            utc(2026, 1, 1),
            [utc(2026, 1, 1, 0, 0, 30), utc(2026, 1, 1, 0, 20), utc(2026, 1, 1, 0, 20, 30)],
        ),
        ("0 0 29 2 *", utc(2026, 1, 1), [utc(2028, 2, 29), utc(2032, 2, 29)]),
        # 2100 is not a leap year: the gap is eight years.
        ("0 0 29 2 *", utc(2096, 3, 1), [utc(2104, 2, 29)]),
        ("  0   0 1 1 *  ", utc(2026, 1, 1), [utc(2027, 1, 1)]),
    ],
)
def test_cron_fire_times_utc(expr: str, after: datetime, expected: list[datetime]) -> None:
    result = fire_times(CronTrigger(expr, UTC_ZONE), after, len(expected))
    assert result == expected
    assert_well_formed(result, after)


@pytest.mark.parametrize(
    "macro,equivalent",
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_cron_macros(macro: str, equivalent: str) -> None:
    after = utc(2026, 5, 17, 13, 7)
    expected = fire_times(CronTrigger(equivalent, BERLIN), after, 5)
    assert fire_times(CronTrigger(macro, BERLIN), after, 5) == expected


@pytest.mark.parametrize(
    "expr,message",
    [
        (
            "0 0 * *",
            "cron expression must have 5 fields (minute hour day-of-month month day-of-week)"
            " or 6 with seconds last; got 4",
        ),
        (
            "",
            "cron expression must have 5 fields (minute hour day-of-month month day-of-week)"
            " or 6 with seconds last; got 0",
        ),
        (
            "0 0 * * * * 2026",
            "cron expression must have 5 fields (minute hour day-of-month month day-of-week)"
            " or 6 with seconds last; got 7",
        ),
        ("60 * * * *", "cron field 1 (minute): 60 is out of range 0-59"),
        ("0 25 * * *", "cron field 2 (hour): 25 is out of range 0-23"),
        ("0 0 0 * *", "cron field 3 (day of month): 0 is out of range 1-31"),
        ("0 0 32 * *", "cron field 3 (day of month): 32 is out of range 1-31"),
        ("0 0 * 13 *", "cron field 4 (month): 13 is out of range 1-12"),
        ("0 0 * 0 *", "cron field 4 (month): 0 is out of range 1-12"),
        ("0 0 * jan-13 *", "cron field 4 (month): 13 is out of range 1-12"),
        ("0 0 * * 8", "cron field 5 (day of week): 8 is out of range 0-7"),
        ("0 0 * * 1-8", "cron field 5 (day of week): 8 is out of range 0-7"),
        ("* * * * * 60", "cron field 6 (second): 60 is out of range 0-59"),
        ("*/0 * * * *", "cron field 1 (minute): step 0 in '*/0' is invalid (must be at least 1)"),
        ("0 1-5/0 * * *", "cron field 2 (hour): step 0 in '1-5/0' is invalid (must be at least 1)"),
        ("*/ * * * *", "cron field 1 (minute): missing step after '/' in '*/'"),
        ("*/x * * * *", "cron field 1 (minute): step 'x' in '*/x' is not a number"),
        ("0 5-3 * * *", "cron field 2 (hour): range '5-3' is reversed (5 is greater than 3)"),
        ("0 0 * * fri-mon", "cron field 5 (day of week): range 'fri-mon' is reversed (5 is greater than 1)"),
        ("0 0 * foo *", "cron field 4 (month): unknown name 'foo' (use jan-dec or 1-12)"),
        ("0 0 * january *", "cron field 4 (month): unknown name 'january' (use jan-dec or 1-12)"),
        ("0 0 * * funday", "cron field 5 (day of week): unknown name 'funday' (use sun-sat or 0-7)"),
        ("0 mon * * *", "cron field 2 (hour): 'mon' is not a number"),
        ("1,,2 * * * *", "cron field 1 (minute): empty list item in '1,,2'"),
        ("1-2-3 * * * *", "cron field 1 (minute): cannot parse '1-2-3'"),
        ("*-5 * * * *", "cron field 1 (minute): cannot parse '*-5'"),
        ("-1 * * * *", "cron field 1 (minute): cannot parse '-1'"),
        # Non-standard extensions (Quartz/croniter) are rejected, not misread.
        ("0 0 L * *", "cron field 3 (day of month): 'L' is not a number"),
        ("0 0 ? * 1", "cron field 3 (day of month): cannot parse '?'"),
        ("0 0 * * 1#2", "cron field 5 (day of week): cannot parse '1#2'"),
        ("@reboot", "cron macro '@reboot' is not supported: the scheduler has no reboot event"),
        (
            "@every 5m",
            "unknown cron macro '@every 5m' (supported: @yearly, @annually, @monthly, @weekly,"
            " @daily, @midnight, @hourly)",
        ),
    ],
)
def test_cron_errors(expr: str, message: str) -> None:
    with pytest.raises(TriggerError) as excinfo:
        CronTrigger(expr, UTC_ZONE)
    assert str(excinfo.value) == message


def test_trigger_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        CronTrigger("nonsense", UTC_ZONE)


@pytest.mark.parametrize(
    "expr,message",
    [
        (
            "0 0 30 2 *",
            "cron expression never fires: '0 0 30 2 *' (day of month 30 does not exist in February)",
        ),
        (
            "0 0 31 4 *",
            "cron expression never fires: '0 0 31 4 *' (day of month 31 does not exist in April)",
        ),
        (
            "0 0 30,31 feb *",
            "cron expression never fires: '0 0 30,31 feb *' (day of month 30 does not exist in February)",
        ),
        (
            "0 0 31 2,4,6,9,11 *",
            "cron expression never fires: '0 0 31 2,4,6,9,11 *' (day of month 31 does not"
            " exist in February, April, June, September or November)",
        ),
        (
            "0 0 31 apr * 30",
            "cron expression never fires: '0 0 31 apr * 30' (day of month 31 does not exist in April)",
        ),
    ],
)
def test_cron_never_fires(expr: str, message: str) -> None:
    with pytest.raises(TriggerError) as excinfo:
        CronTrigger(expr, UTC_ZONE)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    "expr,after,first",
    [
        ("0 0 29 2 *", utc(2026, 1, 1), utc(2028, 2, 29)),
        ("0 0 30,31 2,4 *", utc(2026, 1, 1), utc(2026, 4, 30)),
        # OR with a weekday keeps an impossible day of month satisfiable.
        ("0 0 31 2 1", utc(2026, 1, 1), utc(2026, 2, 2)),
        # A `*`-prefixed day of month always includes the 1st.
        ("0 0 */30 2 1", utc(2026, 1, 1), utc(2027, 2, 1)),
    ],
)
def test_cron_satisfiable_edge_cases(expr: str, after: datetime, first: datetime) -> None:
    assert CronTrigger(expr, UTC_ZONE).next_after(after) == first


def test_cron_none_beyond_datetime_range() -> None:
    assert CronTrigger("0 0 29 2 *", UTC_ZONE).next_after(utc(9996, 3, 1)) is None
    assert CronTrigger("0 0 * * *", BERLIN).next_after(utc(9999, 12, 31, 23, 59, 59)) is None
    assert CronTrigger("* * * * *", UTC_ZONE).next_after(utc(9999, 12, 31, 23, 59)) is None


def test_cron_trigger_is_a_value() -> None:
    first = CronTrigger("0 * * * *", BERLIN)
    second = CronTrigger("0 * * * *", BERLIN)
    assert first == second
    assert hash(first) == hash(second)
    assert first != CronTrigger("0 * * * *", NEW_YORK)
    assert repr(first) == "CronTrigger(expr='0 * * * *', tz=zoneinfo.ZoneInfo(key='Europe/Berlin'))"


# --------------------------------------------------------------------------
# Cron: croniter as an oracle where no DST is involved
# --------------------------------------------------------------------------

_MONTHS = ("", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _random_field(
    rng: random.Random, low: int, high: int, names: tuple[str, ...] = (), *, start_step: bool = True
) -> str:
    def value(number: int) -> str:
        if number < len(names) and names[number] and rng.random() < 0.3:
            return names[number].capitalize() if rng.random() < 0.3 else names[number]
        return str(number)

    def item() -> str:
        kinds = ["value", "range", "star_step", "range_step"] + (["start_step"] if start_step else [])
        kind = rng.choice(kinds)
        step = rng.randint(1, max(1, (high - low) // 2))
        start, end = sorted((rng.randint(low, high), rng.randint(low, high)))
        # croniter reads a one-value range (`6-6`, `26-26/3`) as `*`.
        if kind == "value" or (kind.startswith("range") and start == end):
            return value(start)
        if kind == "range":
            return f"{value(start)}-{value(end)}"
        if kind == "star_step":
            return f"*/{step}"
        if kind == "range_step":
            return f"{value(start)}-{value(end)}/{step}"
        return f"{start}/{step}"

    if rng.random() < 0.35:
        return "*"
    return ",".join(item() for _ in range(rng.choice((1, 1, 1, 2, 3))))


def _random_expressions(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    expressions: list[str] = []
    while len(expressions) < count:
        fields = [
            _random_field(rng, 0, 59),
            _random_field(rng, 0, 23),
            _random_field(rng, 1, 31),
            _random_field(rng, 1, 12, _MONTHS),
            # croniter ends `a/n` at Saturday where standard cron ends at 7
            # (Sunday), so that form is exercised by the table above instead.
            _random_field(rng, 0, 7, _WEEKDAYS, start_step=False),
        ]
        if rng.random() < 0.3:
            fields.append(_random_field(rng, 0, 59))
        expr = " ".join(fields)
        try:
            CronTrigger(expr, UTC_ZONE)
        except TriggerError:
            continue  # impossible day/month combinations
        expressions.append(expr)
    return expressions


_ORACLE_EXPRESSIONS = [
    *_random_expressions(250, seed=20260329),
    "0 0 1 * 1",
    "0 0 * * 0,7",
    "0 0 13 * fri",
    "0 0 */2 * 1",
    "0 0 1 * */2",
    "30 4 1,15 * 5",
    "0 0 1 * 0-6",
    "*/7 */5 * * * */13",
]


def _croniter_fires(expr: str, after: datetime, count: int) -> list[datetime]:
    # implement_cron_bug makes croniter apply Vixie's "`*`-prefixed means
    # unrestricted" day rule, i.e. standard crontab semantics.
    iterator = croniter(expr, after, implement_cron_bug=True)
    return [iterator.get_next(datetime).astimezone(UTC) for _ in range(count)]


@pytest.mark.parametrize("expr", _ORACLE_EXPRESSIONS)
@pytest.mark.parametrize("zone", [UTC_ZONE, KOLKATA], ids=str)
def test_cron_matches_croniter_without_dst(expr: str, zone: ZoneInfo) -> None:
    rng = random.Random(f"{expr}|{zone}")
    after = datetime(2000, 1, 1, tzinfo=zone) + timedelta(seconds=rng.randrange(40 * 365 * 86400))
    ours = fire_times(CronTrigger(expr, zone), after, 20)
    assert ours == _croniter_fires(expr, after, 20)
    assert_well_formed(ours, after)


@pytest.mark.parametrize("expr", _ORACLE_EXPRESSIONS[::5])
@pytest.mark.parametrize(
    "start,end",
    [
        # Berlin between transitions: summer time, then winter time.
        (datetime(2026, 3, 29, 3, tzinfo=BERLIN), datetime(2026, 10, 25, 0, tzinfo=BERLIN)),
        (datetime(2026, 10, 25, 4, tzinfo=BERLIN), datetime(2027, 3, 28, 0, tzinfo=BERLIN)),
    ],
    ids=["summer", "winter"],
)
def test_cron_matches_croniter_in_dst_zone_between_transitions(expr: str, start: datetime, end: datetime) -> None:
    ours = fire_times(CronTrigger(expr, BERLIN), start, 20)
    theirs = _croniter_fires(expr, start, 20)
    cutoff = min(end, ours[-1], theirs[-1])
    assert [t for t in ours if t <= cutoff] == [t for t in theirs if t <= cutoff]


# --------------------------------------------------------------------------
# Cron: daylight saving time, 2026 transitions
# --------------------------------------------------------------------------

# Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z); 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).
# New York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z); 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z).


@pytest.mark.parametrize(
    "zone,expr,after,expected",
    [
        # Berlin, spring forward: 02:xx does not exist.
        (
            BERLIN,
            "30 2 * * *",
            utc(2026, 3, 27, 12),
            [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)],
        ),
        (
            BERLIN,
            "0 * * * *",
            utc(2026, 3, 28, 23),
            # 02:00 moves to 03:00 and merges with the real 03:00.
            [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)],
        ),
        (
            BERLIN,
            "*/15 * * * *",
            utc(2026, 3, 29, 0, 30),
            [utc(2026, 3, 29, 0, 45), utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 15)],
        ),
        # Berlin, fall back: 02:00-02:59 happens twice, only the first counts.
        (
            BERLIN,
            "30 2 * * *",
            utc(2026, 10, 24),
            [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        (
            BERLIN,
            "0 * * * *",
            utc(2026, 10, 24, 22, 30),
            [utc(2026, 10, 24, 23), utc(2026, 10, 25, 0), utc(2026, 10, 25, 2), utc(2026, 10, 25, 3)],
        ),
        (
            BERLIN,
            "*/15 * * * *",
            utc(2026, 10, 25, 0, 30),
            [utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 2), utc(2026, 10, 25, 2, 15)],
        ),
        # `after` inside the repeated hour (02:10 CET, second occurrence).
        (
            BERLIN,
            "*/15 * * * *",
            utc(2026, 10, 25, 1, 10),
            [utc(2026, 10, 25, 2), utc(2026, 10, 25, 2, 15)],
        ),
        (BERLIN, "30 2 * * *", utc(2026, 10, 25, 1, 10), [utc(2026, 10, 26, 1, 30)]),
        # New York, spring forward.
        (
            NEW_YORK,
            "30 2 * * *",
            utc(2026, 3, 7),
            [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)],
        ),
        (
            NEW_YORK,
            "0 * * * *",
            utc(2026, 3, 8, 5, 30),
            [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)],
        ),
        (
            NEW_YORK,
            "*/15 * * * *",
            utc(2026, 3, 8, 6, 40),
            [utc(2026, 3, 8, 6, 45), utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 15)],
        ),
        (
            NEW_YORK,
            "0 1 * * *",
            utc(2026, 3, 7),
            [utc(2026, 3, 7, 6), utc(2026, 3, 8, 6), utc(2026, 3, 9, 5)],
        ),
        (
            NEW_YORK,
            "30 1 * * *",
            utc(2026, 3, 7),
            [utc(2026, 3, 7, 6, 30), utc(2026, 3, 8, 6, 30), utc(2026, 3, 9, 5, 30)],
        ),
        # New York, fall back: 01:00-01:59 happens twice.
        (
            NEW_YORK,
            "30 2 * * *",
            utc(2026, 10, 31),
            [utc(2026, 10, 31, 6, 30), utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)],
        ),
        (
            NEW_YORK,
            "0 * * * *",
            utc(2026, 11, 1, 3, 30),
            [utc(2026, 11, 1, 4), utc(2026, 11, 1, 5), utc(2026, 11, 1, 7), utc(2026, 11, 1, 8)],
        ),
        (
            NEW_YORK,
            "*/15 * * * *",
            utc(2026, 11, 1, 5, 30),
            [utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 7), utc(2026, 11, 1, 7, 15)],
        ),
        (
            NEW_YORK,
            "0 1 * * *",
            utc(2026, 10, 31),
            [utc(2026, 10, 31, 5), utc(2026, 11, 1, 5), utc(2026, 11, 2, 6)],
        ),
        (
            NEW_YORK,
            "30 1 * * *",
            utc(2026, 10, 31),
            [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        ),
        (NEW_YORK, "0 1 * * *", utc(2026, 11, 1, 5), [utc(2026, 11, 2, 6)]),
        (NEW_YORK, "30 1 * * *", utc(2026, 11, 1, 6, 10), [utc(2026, 11, 2, 6, 30)]),
        # Several nonexistent seconds collapse into the one instant after the gap.
        (
            NEW_YORK,
            "59 2 * * * 0,30",
            utc(2026, 3, 7, 8),
            [utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 59), utc(2026, 3, 9, 6, 59, 30)],
        ),
        # A 30-minute shift: 02:00-02:29 does not exist, 01:30-01:59 repeats.
        (
            LORD_HOWE,
            "15 2 * * *",
            utc(2026, 10, 2),
            [utc(2026, 10, 2, 15, 45), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 15)],
        ),
        (
            LORD_HOWE,
            "45 1 * * *",
            utc(2026, 4, 3),
            [utc(2026, 4, 3, 14, 45), utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)],
        ),
    ],
)
def test_cron_dst_transitions(zone: ZoneInfo, expr: str, after: datetime, expected: list[datetime]) -> None:
    result = fire_times(CronTrigger(expr, zone), after, len(expected))
    assert result == expected
    assert_well_formed(result, after)


def _reference_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The DST rules applied by brute force to one matching wall time."""
    first = wall.replace(tzinfo=zone)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
        return first.astimezone(UTC)  # fold=0 is the first occurrence of an ambiguous time
    # Nonexistent: the first instant whose wall clock reads later than `wall`
    # (every zone used here changes offset on a whole minute).
    instant = (wall - timedelta(hours=15)).replace(second=0, tzinfo=UTC)
    while instant.astimezone(zone).replace(tzinfo=None) <= wall:
        instant += timedelta(minutes=1)
    return instant


_TRANSITION_DAYS = [
    (BERLIN, datetime(2026, 3, 29)),
    (BERLIN, datetime(2026, 10, 25)),
    (NEW_YORK, datetime(2026, 3, 8)),
    (NEW_YORK, datetime(2026, 11, 1)),
    (LORD_HOWE, datetime(2026, 4, 5)),
    (LORD_HOWE, datetime(2026, 10, 4)),
]


@pytest.mark.parametrize(
    "expr",
    [
        "30 2 * * *",
        "0 * * * *",
        "*/15 * * * *",
        "0 1 * * *",
        "30 1 * * *",
        "*/7 1-3 * * *",
        "59 1 * * *",
        "0 2 * * *",
        "0 3 * * *",
        "15,45 0-4 * * *",
        "*/20 1-3 * * * */30",
    ],
)
@pytest.mark.parametrize("zone,day", _TRANSITION_DAYS, ids=lambda v: str(v)[:10])
def test_cron_dst_against_brute_force(expr: str, zone: ZoneInfo, day: datetime) -> None:
    # croniter on naive datetimes enumerates matching wall times; the DST
    # rules are then applied one wall time at a time, independently.
    walls = croniter(expr, day - timedelta(days=1))
    expected: set[datetime] = set()
    while (wall := walls.get_next(datetime)) < day + timedelta(days=3):
        expected.add(_reference_instant(wall, zone))
    reference = sorted(expected)
    trigger = CronTrigger(expr, zone)
    # Probe every minute of the transition day, including every minute of a
    # repeated hour in both of its occurrences.
    probe = day.replace(tzinfo=zone).astimezone(UTC) - timedelta(hours=2)
    stop = probe + timedelta(hours=28)
    while probe < stop:
        want = next(instant for instant in reference if instant > probe)
        assert trigger.next_after(probe) == want, probe
        probe += timedelta(minutes=1)


@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK, LORD_HOWE], ids=str)
@pytest.mark.parametrize("expr", ["*/15 * * * *", "0 * * * *", "30 2 * * *", "*/10 1-3 * * *", "* 1-3 * * * */20"])
def test_cron_walk_through_a_year_never_repeats(zone: ZoneInfo, expr: str) -> None:
    trigger = CronTrigger(expr, zone)
    after = utc(2026, 1, 1)
    seen: list[datetime] = []
    current: datetime | None = after
    while current is not None and current < utc(2027, 1, 1):
        current = trigger.next_after(current)
        assert current is not None
        seen.append(current)
    assert_well_formed(seen, after)
    assert len(set(seen)) == len(seen)


@pytest.mark.parametrize(
    "zone,expr,instant,note",
    [
        (
            BERLIN,
            "30 2 * * *",
            utc(2026, 3, 29, 1),
            "nonexistent local time 02:30 (DST gap) -> fired at 03:00",
        ),
        (
            BERLIN,
            "30 2 * * *",
            utc(2026, 10, 25, 0, 30),
            "ambiguous local time 02:30 (DST overlap) -> first occurrence",
        ),
        (BERLIN, "30 2 * * *", utc(2026, 3, 28, 1, 30), None),
        (BERLIN, "30 2 * * *", utc(2026, 10, 26, 1, 30), None),
        # Not a fire instant of this trigger.
        (BERLIN, "30 2 * * *", utc(2026, 3, 29, 1, 30), None),
        (BERLIN, "30 2 * * *", utc(2026, 3, 29, 1, 0, 0, 500), None),
        (
            BERLIN,
            "0 * * * *",
            utc(2026, 3, 29, 1),
            "nonexistent local time 02:00 (DST gap) -> fired at 03:00",
        ),
        (BERLIN, "0 * * * *", utc(2026, 3, 29, 2), None),
        (
            NEW_YORK,
            "0 1 * * *",
            datetime(2026, 11, 1, 1, tzinfo=NEW_YORK),
            "ambiguous local time 01:00 (DST overlap) -> first occurrence",
        ),
        (
            NEW_YORK,
            "30 2 * * * 15",
            utc(2026, 3, 8, 7),
            "nonexistent local time 02:30:15 (DST gap) -> fired at 03:00",
        ),
        (
            LORD_HOWE,
            "15 2 * * *",
            utc(2026, 10, 3, 15, 30),
            "nonexistent local time 02:15 (DST gap) -> fired at 02:30",
        ),
        (UTC_ZONE, "0 0 * * *", utc(2026, 1, 1), None),
    ],
)
def test_dst_note(zone: ZoneInfo, expr: str, instant: datetime, note: str | None) -> None:
    assert dst_note(CronTrigger(expr, zone), instant) == note


def test_dst_note_is_none_for_other_triggers() -> None:
    instant = utc(2026, 3, 29, 1)
    assert dst_note(IntervalTrigger(3600), instant) is None
    assert dst_note(OneOffTrigger(instant), instant) is None


# --------------------------------------------------------------------------
# Interval and one-off triggers
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seconds,after,expected",
    [
        (
            900,
            utc(2026, 1, 1, 10, 7, 13),
            [utc(2026, 1, 1, 10, 15), utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 10, 45)],
        ),
        # Exactly on a slot: the next one.
        (900, utc(2026, 1, 1, 10, 15), [utc(2026, 1, 1, 10, 30)]),
        (900, utc(2026, 1, 1, 10, 14, 59, 999999), [utc(2026, 1, 1, 10, 15)]),
        (86400, utc(2026, 1, 1, 0, 0, 1), [utc(2026, 1, 2), utc(2026, 1, 3)]),
        # Alignment is in UTC whatever zone `after` is expressed in.
        (86400, datetime(2026, 1, 1, 0, 30, tzinfo=BERLIN), [utc(2026, 1, 1)]),
        (3600, datetime(2026, 1, 1, 0, 10, tzinfo=KOLKATA), [utc(2025, 12, 31, 19)]),
        (7, utc(1970, 1, 1), [utc(1970, 1, 1, 0, 0, 7), utc(1970, 1, 1, 0, 0, 14)]),
        (7, utc(1969, 12, 31, 23, 59, 59), [utc(1970, 1, 1)]),
        (1, utc(2026, 1, 1, 0, 0, 0, 1), [utc(2026, 1, 1, 0, 0, 1)]),
        # 7 does not divide a day: slots drift across midnight, deterministically.
        (7, utc(2026, 1, 2), [utc(2026, 1, 2, 0, 0, 1), utc(2026, 1, 2, 0, 0, 8)]),
    ],
)
def test_interval(seconds: int, after: datetime, expected: list[datetime]) -> None:
    result = fire_times(IntervalTrigger(seconds), after, len(expected))
    assert result == expected
    assert_well_formed(result, after)


def test_interval_across_dst_is_uniform() -> None:
    trigger = IntervalTrigger(1800)
    result = fire_times(trigger, utc(2026, 3, 29, 0), 5)
    assert [b - a for a, b in pairwise(result)] == [timedelta(minutes=30)] * 4


def test_interval_beyond_datetime_range() -> None:
    assert IntervalTrigger(60).next_after(utc(9999, 12, 31, 23, 59)) is None


@pytest.mark.parametrize(
    "seconds,message",
    [
        (0, "interval must be positive, got 0 seconds"),
        (-60, "interval must be positive, got -60 seconds"),
        (1.5, "interval must be a whole number of seconds, got 1.5"),
        (True, "interval must be a whole number of seconds, got True"),
    ],
)
def test_interval_errors(seconds: int, message: str) -> None:
    with pytest.raises(TriggerError) as excinfo:
        IntervalTrigger(seconds)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    "at,after,expected",
    [
        (datetime(2026, 5, 1, 12, tzinfo=BERLIN), utc(2026, 5, 1, 9, 59, 59), utc(2026, 5, 1, 10)),
        (datetime(2026, 5, 1, 12, tzinfo=BERLIN), utc(2026, 5, 1, 10), None),
        (datetime(2026, 5, 1, 12, tzinfo=BERLIN), utc(2026, 5, 2), None),
        (utc(2026, 5, 1, 10), utc(2026, 5, 1, 9, 59, 59, 999999), utc(2026, 5, 1, 10)),
        # A fractional second fires at the next whole second, never early.
        (utc(2026, 5, 1, 10, 0, 0, 250000), utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 0, 1)),
    ],
)
def test_one_off(at: datetime, after: datetime, expected: datetime | None) -> None:
    result = OneOffTrigger(at).next_after(after)
    assert result == expected
    if result is not None:
        assert result.tzinfo is UTC


def test_one_off_fires_once() -> None:
    trigger = OneOffTrigger(datetime(2026, 5, 1, 12, tzinfo=NEW_YORK))
    assert fire_times(trigger, utc(2026, 1, 1), 5) == [utc(2026, 5, 1, 16)]


def test_one_off_requires_time_zone() -> None:
    with pytest.raises(TriggerError) as excinfo:
        OneOffTrigger(datetime(2026, 5, 1, 12))
    assert str(excinfo.value) == "one-off time 2026-05-01T12:00:00 must include a time zone"


# --------------------------------------------------------------------------
# Sequences: fire_times, slots_between, count_slots_between
# --------------------------------------------------------------------------

HOURLY = CronTrigger("0 * * * *", UTC_ZONE)


@pytest.mark.parametrize(
    "trigger,after,until,limit,expected",
    [
        (HOURLY, utc(2026, 1, 1), utc(2026, 1, 1, 3), 10, [utc(2026, 1, 1, h) for h in (1, 2, 3)]),
        # `until` is inclusive, `after` exclusive.
        (HOURLY, utc(2026, 1, 1, 1), utc(2026, 1, 1, 2), 10, [utc(2026, 1, 1, 2)]),
        (HOURLY, utc(2026, 1, 1), utc(2026, 1, 1, 2, 59), 10, [utc(2026, 1, 1, h) for h in (1, 2)]),
        # The oldest `limit` slots when there are more.
        (HOURLY, utc(2026, 1, 1), utc(2026, 1, 2), 2, [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]),
        (HOURLY, utc(2026, 1, 1), utc(2026, 1, 2), 0, []),
        (HOURLY, utc(2026, 1, 1, 5), utc(2026, 1, 1, 5), 10, []),
        (HOURLY, utc(2026, 1, 1, 5), utc(2026, 1, 1, 1), 10, []),
        (
            IntervalTrigger(600),
            utc(2026, 1, 1, 0, 5),
            utc(2026, 1, 1, 0, 30),
            10,
            [utc(2026, 1, 1, 0, 10), utc(2026, 1, 1, 0, 20), utc(2026, 1, 1, 0, 30)],
        ),
        (OneOffTrigger(utc(2026, 1, 1, 6)), utc(2026, 1, 1), utc(2026, 1, 2), 10, [utc(2026, 1, 1, 6)]),
        (OneOffTrigger(utc(2026, 1, 3)), utc(2026, 1, 1), utc(2026, 1, 2), 10, []),
        # The repeated hour's second pass adds nothing.
        (
            CronTrigger("0 * * * *", BERLIN),
            utc(2026, 10, 24, 23, 30),
            utc(2026, 10, 25, 2, 30),
            10,
            [utc(2026, 10, 25, 0), utc(2026, 10, 25, 2)],
        ),
    ],
)
def test_slots_between(
    trigger: Trigger, after: datetime, until: datetime, limit: int, expected: list[datetime]
) -> None:
    assert slots_between(trigger, after, until, limit) == expected


@pytest.mark.parametrize(
    "trigger,after,until,cap,expected",
    [
        (HOURLY, utc(2026, 1, 1), utc(2026, 1, 2), 1000, 24),
        (HOURLY, utc(2026, 1, 1), utc(2026, 1, 2), 5, 5),
        (HOURLY, utc(2026, 1, 1), utc(2026, 1, 1), 5, 0),
        (HOURLY, utc(2026, 1, 2), utc(2026, 1, 1), 5, 0),
        (IntervalTrigger(1), utc(2026, 1, 1), utc(2027, 1, 1), 10**9, 365 * 86400),
        (IntervalTrigger(1), utc(2026, 1, 1), utc(2027, 1, 1), 100, 100),
        (IntervalTrigger(900), utc(2026, 1, 1, 0, 0, 1), utc(2026, 1, 1, 1), 1000, 4),
        (IntervalTrigger(900), utc(2026, 1, 1), utc(2026, 1, 1, 0, 59, 59), 1000, 3),
        (OneOffTrigger(utc(2026, 1, 1, 6)), utc(2026, 1, 1), utc(2026, 1, 2), 10, 1),
        # Berlin's 23-hour spring day and 25-hour autumn day: one slot per
        # distinct wall-clock hour, midnight to midnight.
        (CronTrigger("0 * * * *", BERLIN), utc(2026, 3, 28, 23), utc(2026, 3, 29, 22), 100, 23),
        (CronTrigger("0 * * * *", BERLIN), utc(2026, 10, 24, 22), utc(2026, 10, 25, 23), 100, 24),
    ],
)
def test_count_slots_between(trigger: Trigger, after: datetime, until: datetime, cap: int, expected: int) -> None:
    assert count_slots_between(trigger, after, until, cap) == expected


@pytest.mark.parametrize("seconds", [1, 7, 60, 900, 3600, 86400, 604800])
def test_interval_count_matches_enumeration(seconds: int) -> None:
    rng = random.Random(seconds)
    trigger = IntervalTrigger(seconds)
    for _ in range(50):
        after = utc(2026, 1, 1) + timedelta(microseconds=rng.randrange(10**13))
        until = after + timedelta(microseconds=rng.randrange(seconds * 50 * 10**6))
        enumerated = slots_between(trigger, after, until, 10**6)
        assert count_slots_between(trigger, after, until, 10**6) == len(enumerated)


def test_fire_times_zero_and_successive_calls_agree() -> None:
    trigger = CronTrigger("*/15 * * * *", NEW_YORK)
    after = utc(2026, 11, 1, 4)
    assert fire_times(trigger, after, 0) == []
    batch = fire_times(trigger, after, 12)
    step_by_step: list[datetime] = []
    current = after
    for _ in range(12):
        following = trigger.next_after(current)
        assert following is not None
        step_by_step.append(following)
        current = following
    assert batch == step_by_step
    assert_well_formed(batch, after)


@pytest.mark.parametrize(
    "trigger",
    [
        CronTrigger("*/5 * * * *", BERLIN),
        CronTrigger("0 2 * * *", NEW_YORK),
        CronTrigger("* * * * * */7", LORD_HOWE),
        IntervalTrigger(3600),
        IntervalTrigger(37),
    ],
    ids=repr,
)
def test_random_afters_obey_the_contract(trigger: Trigger) -> None:
    rng = random.Random(repr(trigger))
    zones = [UTC, UTC_ZONE, BERLIN, NEW_YORK, KOLKATA, timezone(timedelta(hours=-3))]
    for _ in range(300):
        after = (utc(2026, 1, 1) + timedelta(microseconds=rng.randrange(366 * 86400 * 10**6))).astimezone(
            rng.choice(zones)
        )
        first = trigger.next_after(after)
        assert first is not None
        second = trigger.next_after(first)
        assert second is not None
        assert_well_formed([first, second], after)


# --------------------------------------------------------------------------
# Naive datetimes and bad arguments
# --------------------------------------------------------------------------

NAIVE = datetime(2026, 1, 1, 12)
AWARE = utc(2026, 1, 1, 12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: CronTrigger("0 * * * *", UTC_ZONE).next_after(NAIVE),
        lambda: IntervalTrigger(60).next_after(NAIVE),
        lambda: OneOffTrigger(AWARE).next_after(NAIVE),
        lambda: fire_times(HOURLY, NAIVE, 3),
        lambda: slots_between(HOURLY, NAIVE, AWARE, 3),
        lambda: slots_between(HOURLY, AWARE, NAIVE, 3),
        lambda: count_slots_between(HOURLY, NAIVE, AWARE, 3),
        lambda: count_slots_between(IntervalTrigger(60), AWARE, NAIVE, 3),
        lambda: dst_note(HOURLY, NAIVE),
    ],
)
def test_naive_datetimes_are_rejected(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="must be a timezone-aware datetime"):
        call()


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: fire_times(HOURLY, AWARE, -1), "count must not be negative, got -1"),
        (lambda: slots_between(HOURLY, AWARE, AWARE, -1), "limit must not be negative, got -1"),
        (lambda: count_slots_between(HOURLY, AWARE, AWARE, -1), "cap must not be negative, got -1"),
    ],
)
def test_negative_counts_are_rejected(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        call()
    assert str(excinfo.value) == message


# --------------------------------------------------------------------------
# A caller that uses the real clock
# --------------------------------------------------------------------------


@freeze_time("2026-03-29 00:59:30")
def test_caller_passing_the_current_time() -> None:
    now = datetime.now(timezone.utc)
    trigger = CronTrigger("*/15 * * * *", BERLIN)
    assert fire_times(trigger, now, 2) == [utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 15)]
    assert dst_note(trigger, utc(2026, 3, 29, 1)) == ("nonexistent local time 02:00 (DST gap) -> fired at 03:00")
    assert IntervalTrigger(60).next_after(now) == utc(2026, 3, 29, 1)


@pytest.mark.parametrize(
    "trigger",
    [AfterTrigger("drift-check"), FileTrigger("in"), WindowedTrigger(AfterTrigger("pipeline p"), start=None)],
    ids=["after", "file", "windowed-after"],
)
def test_event_triggers_have_no_instants(trigger: Trigger) -> None:
    after = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert trigger.next_after(after) is None
    assert fire_times(trigger, after, 3) == []
    assert count_slots_between(trigger, after - timedelta(days=365), after, 100) == 0
    with pytest.raises(ValueError, match="timezone-aware"):
        trigger.next_after(datetime(2026, 3, 1, 12, 0))
