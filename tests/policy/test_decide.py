"""The pure policy core: run keys, launch/skip decisions and catch-up after downtime."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from freezegun import freeze_time

from scheduler.config.loader import load_config
from scheduler.config.model import Job
from scheduler.policy.catch_up import plan_catch_up
from scheduler.policy.decide import JobState, Launch, Policy, Skip, decide, policy_of, slot_jitter
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.keys import manual_run_key, slot_run_key, zenml_run_name
from scheduler.policy.queue_order import run_limit, startable

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
    first = zenml_run_name("j", "j@2026-11-27T10:00:00Z", 1, now, "dev")
    assert first.startswith("j-20261127-100000-")
    assert first == zenml_run_name("j", "j@2026-11-27T10:00:00Z", 1, now, "dev")
    assert first != zenml_run_name("j", "j@2026-11-27T10:00:00Z", 2, now, "dev")
    assert first != zenml_run_name("j", "j@2026-11-27T10:01:00Z", 1, now, "dev")


def test_run_names_differ_between_state_databases_sharing_a_zenml_store() -> None:
    """Two daemons with their own state databases, one ZenML store, the same job and slot."""
    now = at("2026-11-27T10:00:00+00:00")
    dev = zenml_run_name("nightly", "nightly@2026-11-27T10:00:00Z", 1, now, "a1b2c3d4e5f6")
    prod = zenml_run_name("nightly", "nightly@2026-11-27T10:00:00Z", 1, now, "0f9e8d7c6b5a")
    assert dev != prod


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


# ---- firing policies -------------------------------------------------------------------------


def test_window_max_runs_and_jitter(tmp_path: Path) -> None:
    window = Policy(GRACE, start=SLOT, end=SLOT + timedelta(hours=1), max_runs=3, jitter=60)
    early = request(scheduled=SLOT - timedelta(minutes=1))
    assert decide(early, JobState(), window, SLOT).code == "outside-window"  # type: ignore[union-attr]
    late = request(scheduled=SLOT + timedelta(hours=2))
    assert decide(late, JobState(), window, late.scheduled_for).code == "outside-window"  # type: ignore[union-attr,arg-type]
    assert decide(request(), JobState(launched=3), window, SLOT).code == "max-runs"  # type: ignore[union-attr]
    assert isinstance(decide(request("manual", None), JobState(launched=3), window, SLOT), Launch)  # not counted
    launch = decide(request(), JobState(launched=2), window, SLOT)
    assert isinstance(launch, Launch) and launch.not_before is not None
    delay = (launch.not_before - SLOT).total_seconds()
    assert 0 <= delay < 60
    assert delay == pytest.approx(slot_jitter(request().run_key, 60), abs=1e-6)  # stable for the slot
    assert slot_jitter("other@2026-11-27T10:01:00Z", 60) != delay
    assert slot_jitter("x", 0) == 0


@pytest.mark.parametrize(
    ("policy", "state", "expected"),
    [
        (Policy(concurrency="skip"), JobState(running=1), "concurrency"),
        (Policy(concurrency="queue", max_queued=2), JobState(running=1, queued=1), "launch"),
        (Policy(concurrency="queue", max_queued=2), JobState(running=1, queued=2), "queue-full"),
        (Policy(concurrency="allow"), JobState(running=5), "launch"),  # no per-job limit
        (Policy(concurrency="allow", max_active=2), JobState(running=1), "launch"),
        (Policy(concurrency="allow", max_active=2), JobState(running=1, queued=1), "concurrency"),
        (Policy(concurrency="replace"), JobState(running=1, active_ids=(7,)), "replace"),
    ],
)
def test_concurrency_policies(policy: Policy, state: JobState, expected: str) -> None:
    decision = decide(request(), state, policy, SLOT)
    if expected in ("launch", "replace"):
        assert isinstance(decision, Launch)
        assert decision.replaces == ((7,) if expected == "replace" else ())
    else:
        assert isinstance(decision, Skip) and decision.code == expected


def test_catch_up_all_queues_behind_a_running_run_instead_of_skipping() -> None:
    policy = Policy(catchup="all", concurrency="skip", max_catchup=50)
    assert isinstance(decide(request("catchup"), JobState(running=1, queued=3), policy, SLOT), Launch)
    assert isinstance(decide(request("catchup"), JobState(queued=50), policy, SLOT), Skip)
    assert isinstance(decide(request("schedule"), JobState(running=1), policy, SLOT), Skip)


@pytest.mark.parametrize(
    ("mode", "fired", "codes"),
    [
        ("none", [], {"catchup-none": 6}),
        ("latest", [5], {"coalesced": 5}),
        ("all", [2, 3, 4, 5], {"catchup-limit": 2}),
    ],
)
def test_catch_up_modes(tmp_path: Path, mode: str, fired: list[int], codes: dict[str, int]) -> None:
    hourly = job(tmp_path, 'cron: "0 * * * *"')
    last = at("2026-11-27T03:30:00+00:00")
    now = at("2026-11-27T09:10:00+00:00")  # 04:00 .. 09:00 missed: six slots
    plan = plan_catch_up(hourly, last, now, Policy(timedelta(hours=12), catchup=mode, max_catchup=4))
    slots = [at("2026-11-27T04:00:00+00:00") + timedelta(hours=i) for i in range(6)]
    assert plan.fire == [slots[i] for i in fired]
    counts: dict[str, int] = {}
    for _, code in plan.skipped:
        counts[code] = counts.get(code, 0) + 1
    assert counts == codes
    assert plan.expired_count == 0


def test_catch_up_all_across_new_york_fall_back(tmp_path: Path) -> None:
    # 01:30 happens twice on 2026-11-01 in New York; catch-up fires it once.
    nightly = job(tmp_path, 'cron: "30 1 * * *"', "America/New_York")
    plan = plan_catch_up(nightly, at("2026-10-30T12:00:00+00:00"), at("2026-11-02T12:00:00+00:00"),
                         Policy(timedelta(days=5), catchup="all"))  # fmt: skip
    assert plan.fire == [at("2026-10-31T01:30:00-04:00"), at("2026-11-01T01:30:00-04:00"),
                         at("2026-11-02T01:30:00-05:00")]  # fmt: skip


def test_policy_of_reads_the_job(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(
        "version: 1\njobs:\n  j:\n    pipeline: a.b:c\n    every: 1m\n    misfire_grace: 1h\n    jitter: 30s\n"
        "    concurrency: allow\n    max_active: 3\n    start: 2026-12-01T00:00:00\n    timezone: Europe/Berlin\n"
    )
    policy = policy_of(load_config(path).jobs["j"], GRACE)
    assert policy.grace == timedelta(hours=1) and policy.jitter == 30 and policy.max_active == 3
    assert policy.start == datetime.fromisoformat("2026-12-01T00:00:00+01:00")
    assert run_limit(policy) == 3 and run_limit(Policy()) == 1 and run_limit(Policy(concurrency="allow")) is None


def test_startable_takes_turns_across_jobs_and_is_fifo_within_a_job() -> None:
    waiting = [(1, "a"), (2, "a"), (3, "b"), (4, "c"), (5, "b")]
    assert startable(waiting, {}, {"a": 1, "b": 1, "c": 1}, free=10) == [1, 3, 4]
    assert startable(waiting, {"b": 1}, {"a": 1, "b": 1, "c": 1}, free=10) == [1, 4]
    assert startable(waiting, {}, {"a": None, "b": 2, "c": 1}, free=3) == [1, 3, 4]
    assert startable(waiting, {}, {"a": None, "b": 2, "c": 1}, free=10) == [1, 3, 4, 2, 5]
    assert startable(waiting, {}, {"a": None}, free=0) == []


def test_a_long_queue_does_not_hold_back_another_jobs_run() -> None:
    burst = [(n, "api-job") for n in range(1, 1001)]
    assert startable([*burst, (1001, "tick")], {}, {"api-job": None, "tick": 1}, free=2) == [1, 1001]


def file_request(preskip: tuple[str, str] | None = None) -> FireRequest:
    return FireRequest("j", "file", "j@file:a.csv#1", "watcher", None, preskip=preskip)


@pytest.mark.parametrize(
    ("policy", "state", "now", "expected"),
    [
        # No slot: a file found hours after it landed is not "missed".
        (Policy(GRACE), JobState(), SLOT + timedelta(days=2), "launch"),
        (Policy(GRACE, concurrency="allow", max_active=1), JobState(running=1, queued=4), SLOT, "launch"),
        (Policy(GRACE, concurrency="skip"), JobState(running=1), SLOT, "concurrency"),  # chosen by the user
        (Policy(GRACE, concurrency="queue", max_queued=1), JobState(running=1, queued=1), SLOT, "queue-full"),
        (Policy(GRACE), JobState(paused=True), SLOT, "paused"),
        (Policy(GRACE, start=SLOT + timedelta(hours=1)), JobState(), SLOT, "outside-window"),
        (Policy(GRACE, end=SLOT - timedelta(hours=1)), JobState(), SLOT, "outside-window"),
        (Policy(GRACE, max_runs=3), JobState(launched=3), SLOT, "max-runs"),
    ],
)
def test_decide_file_requests(policy: Policy, state: JobState, now: datetime, expected: str) -> None:
    decision = decide(file_request(), state, policy, now)
    if expected == "launch":
        assert isinstance(decision, Launch) and decision.not_before is None
    else:
        assert isinstance(decision, Skip) and decision.code == expected


def test_a_preskipped_request_is_skipped_with_its_code_unless_the_job_is_gone() -> None:
    decision = decide(file_request(("catchup-none", "found at start")), JobState(), Policy(GRACE), SLOT)
    assert isinstance(decision, Skip) and (decision.code, decision.reason) == ("catchup-none", "found at start")
    gone = decide(file_request(("catchup-none", "x")), JobState(exists=False), Policy(GRACE), SLOT)
    assert isinstance(gone, Skip) and gone.code == "job-removed"
