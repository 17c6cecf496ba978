"""Slots missed while the daemon was down or a job paused, per the job's catchup policy (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from scheduler import tuning
from scheduler.config.model import Job
from scheduler.policy.decide import Policy
from scheduler.timing.triggers import count_slots_between, slots_between


@dataclass(frozen=True)
class CatchUp:
    """Slots a job missed while the daemon was down or the job paused."""

    fire: list[datetime]  # oldest first
    skipped: list[tuple[datetime, str]]  # (slot, code): coalesced, catchup-none, catchup-limit
    expired_count: int  # before the grace window
    first_expired: datetime | None
    expired_until: datetime | None = None  # the expired slots are those in [first_expired, expired_until]


def plan_catch_up(job: Job, last_slot: datetime, now: datetime, policy: Policy) -> CatchUp:
    """Missed slots in (last_slot, now]: those past the grace window are only counted; inside it,
    `none` fires nothing, `latest` the newest slot once, `all` the newest max_catchup, oldest first."""
    window_start = max(last_slot, now - policy.grace)
    in_window = slots_between(job.trigger, window_start, now, tuning.CATCH_UP_WINDOW_LIMIT)
    expired = count_slots_between(job.trigger, last_slot, window_start, tuning.CATCH_UP_WINDOW_LIMIT)
    first = slots_between(job.trigger, last_slot, window_start, 1) if expired else []
    if policy.catchup == "none":
        fire, skipped = [], [(slot, "catchup-none") for slot in in_window]
    elif policy.catchup == "latest":
        fire, skipped = in_window[-1:], [(slot, "coalesced") for slot in in_window[:-1]]
    else:
        cut = max(0, len(in_window) - policy.max_catchup)
        fire, skipped = in_window[cut:], [(slot, "catchup-limit") for slot in in_window[:cut]]
    return CatchUp(fire, skipped, expired, first[0] if first else None, window_start if expired else None)


def paused_while_down(job: Job, since: datetime, now: datetime) -> tuple[int, datetime | None]:
    """(how many, the first of) the slots of a paused job after `since` (its last slot accounted
    for): they came due while no daemon ran, stay owed to the catch-up on resume, and are put on
    the record at start."""
    count = count_slots_between(job.trigger, since, now, tuning.CATCH_UP_WINDOW_LIMIT)
    first = slots_between(job.trigger, since, now, 1) if count else []
    return count, first[0] if first else None
