"""The pure policy core: run keys, launch/skip decisions and catch-up after downtime."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from freezegun import freeze_time

from scheduler.config import Job, load_config
from scheduler.planner import (
    FireRequest,
    JobState,
    Launch,
    Policy,
    Skip,
    decide,
    manual_run_key,
    plan_catch_up,
    slot_run_key,
    zenml_run_name,
)

UTC = timezone.utc
GRACE = timedelta(minutes=10)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def job(tmp_path: Path, trigger: str, tz: str = "UTC") -> Job:
    path = tmp_path / "schedules.yaml"
    path.write_text(f"version: 1\njobs:\n  j:\n    pipeline: a.b:c\n    {trigger}\n    timezone: {tz}\n")
    return load_config(path).jobs["j"]


def test_slot_run_key_is_deterministic_utc() -> None:
    berlin = datetime.fromisoformat("2026-11-27T03:00:00+01:00")
    assert slot_run_key("nightly", berlin) == "nightly@2026-11-27T02:00:00Z"
    assert slot_run_key("nightly", berlin) == slot_run_key("nightly", berlin.astimezone(UTC))


def test_manual_keys_differ_by_nonce_and_run_names_are_unique() -> None:
    now = at("2026-11-27T10:00:00+00:00")
    assert manual_run_key("j", now, "a1") == "j@manual:2026-11-27T10:00:00Z#a1"
    assert manual_run_key("j", now, "a1") != manual_run_key("j", now, "b2")
    first = zenml_run_name("j", "j@2026-11-27T10:00:00Z", 1, now)
    assert first.startswith("j-20261127-100000-")
    assert first != zenml_run_name("j", "j@2026-11-27T10:00:00Z", 2, now)
    assert first != zenml_run_name("j", "j@2026-11-27T10:01:00Z", 1, now)


SLOT = at("2026-11-27T10:00:00+00:00")


def request(trigger: str = "schedule", scheduled: datetime | None = SLOT) -> FireRequest:
    key = slot_run_key("j", scheduled) if scheduled else "j@manual:x#1"
    return FireRequest("j", trigger, key, "test", scheduled)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("req", "state", "now", "expected"),
    [
        (request(), JobState(), SLOT, "launch"),
        (request(), JobState(), SLOT + GRACE, "launch"),  # exactly at the edge of the window
        (request(), JobState(), SLOT + GRACE + timedelta(seconds=1), "missed"),
        (request(), JobState(paused=True), SLOT, "paused"),
        (request(), JobState(running=1), SLOT, "concurrency"),
        (request(), JobState(queued=1), SLOT, "concurrency"),
        (request(), JobState(exists=False), SLOT, "job-removed"),
        (request("catchup"), JobState(), SLOT + timedelta(minutes=5), "launch"),
        (request("catchup"), JobState(paused=True), SLOT, "paused"),
        (request("manual", None), JobState(paused=True), SLOT, "launch"),  # a person asked
        (request("manual", None), JobState(running=1), SLOT, "concurrency"),
        (request("manual", None), JobState(exists=False), SLOT, "job-removed"),
    ],
)
def test_decide(req: FireRequest, state: JobState, now: datetime, expected: str) -> None:
    decision = decide(req, state, Policy(GRACE), now)
    if expected == "launch":
        assert isinstance(decision, Launch)
    else:
        assert isinstance(decision, Skip)
        assert decision.code == expected
        assert decision.reason


def test_missed_reason_says_how_late() -> None:
    decision = decide(request(), JobState(), Policy(GRACE), SLOT + timedelta(minutes=30))
    assert isinstance(decision, Skip)
    assert decision.reason == "slot is 1800s late, past the 600s grace window"


def test_catch_up_fires_newest_in_window_and_counts_the_rest(tmp_path: Path) -> None:
    every_minute = job(tmp_path, "every: 1m")
    last = at("2026-11-27T09:00:00+00:00")
    now = at("2026-11-27T10:05:30+00:00")
    plan = plan_catch_up(every_minute, last, now, Policy(GRACE))
    assert plan.fire == [at("2026-11-27T10:05:00+00:00")]
    # in the window (09:55:30, 10:05:30]: 09:56 .. 10:05 = 10 slots, the newest fires
    assert plan.skipped == [(at("2026-11-27T09:56:00+00:00") + timedelta(minutes=i), "coalesced") for i in range(9)]
    # (09:00, 09:55:30]: 09:01 .. 09:55
    assert plan.expired_count == 55
    assert plan.first_expired == at("2026-11-27T09:01:00+00:00")


def test_catch_up_nothing_missed(tmp_path: Path) -> None:
    hourly = job(tmp_path, 'cron: "0 * * * *"')
    plan = plan_catch_up(hourly, at("2026-11-27T10:00:00+00:00"), at("2026-11-27T10:59:59+00:00"), Policy(GRACE))
    assert plan.fire == [] and plan.skipped == [] and plan.expired_count == 0


def test_catch_up_slot_outside_window_is_only_counted(tmp_path: Path) -> None:
    hourly = job(tmp_path, 'cron: "0 * * * *"')
    plan = plan_catch_up(hourly, at("2026-11-27T09:30:00+00:00"), at("2026-11-27T10:20:00+00:00"), Policy(GRACE))
    assert plan.fire == []
    assert plan.expired_count == 1
    assert plan.first_expired == at("2026-11-27T10:00:00+00:00")


def test_catch_up_across_berlin_spring_forward(tmp_path: Path) -> None:
    # 02:30 does not exist on 2026-03-29 in Berlin; the slot moves to 03:00 CEST = 01:00 UTC.
    nightly = job(tmp_path, 'cron: "30 2 * * *"', "Europe/Berlin")
    down_since = at("2026-03-29T00:55:00+00:00")
    plan = plan_catch_up(nightly, down_since, at("2026-03-29T01:04:00+00:00"), Policy(GRACE))
    assert plan.fire == [at("2026-03-29T03:00:00+02:00")]
    assert plan.skipped == [] and plan.expired_count == 0


def test_catch_up_across_berlin_fall_back_fires_once(tmp_path: Path) -> None:
    # 02:30 happens twice on 2026-10-25; only the first (00:30 UTC) is a slot.
    nightly = job(tmp_path, 'cron: "30 2 * * *"', "Europe/Berlin")
    policy = Policy(timedelta(hours=3))
    plan = plan_catch_up(nightly, at("2026-10-25T00:00:00+00:00"), at("2026-10-25T01:35:00+00:00"), policy)
    assert plan.fire == [at("2026-10-25T00:30:00+00:00")]
    assert plan.skipped == []


def test_catch_up_against_the_real_clock_under_frozen_time(tmp_path: Path) -> None:
    every_5m = job(tmp_path, "every: 5m")
    with freeze_time("2026-11-27 10:07:00", tz_offset=0):
        now = datetime.now(UTC)
        plan = plan_catch_up(every_5m, now - timedelta(minutes=20), now, Policy(GRACE))
    assert plan.fire == [at("2026-11-27T10:05:00+00:00")]
    assert plan.skipped == [(at("2026-11-27T10:00:00+00:00"), "coalesced")]
    assert plan.expired_count == 2  # 09:50, 09:55
