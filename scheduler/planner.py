"""What to do about a fire: the pure policy core.

Given a request (a slot came due, a slot was missed while down, a person asked), the job's
state and `now`, return a decision as data. Nothing here reads the clock, the database or the
file system, so every rule is tested as a table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from scheduler.config import Job
from scheduler.triggers import count_slots_between, slots_between

TriggerKind = Literal["schedule", "catchup", "manual"]

# Terminal and non-terminal run statuses, as stored and shown by `history`.
ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("succeeded", "failed", "skipped", "cancelled", "timed_out", "lost")


def utc_iso(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_run_key(job: str, slot: datetime) -> str:
    """The run key of a scheduled slot: the same slot always gets the same key."""
    return f"{job}@{utc_iso(slot)}"


def manual_run_key(job: str, requested_at: datetime, nonce: str) -> str:
    return f"{job}@manual:{utc_iso(requested_at)}#{nonce}"


def zenml_run_name(job: str, run_key: str, attempt: int, when: datetime) -> str:
    """A unique, readable ZenML run name; the suffix keeps it unique across state databases."""
    suffix = hashlib.sha256(f"{run_key}#{attempt}".encode()).hexdigest()[:8]
    return f"{job}-{when.astimezone(timezone.utc):%Y%m%d-%H%M%S}-{suffix}"


@dataclass(frozen=True)
class FireRequest:
    job: str
    trigger: TriggerKind
    run_key: str
    source: str
    scheduled_for: datetime | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobState:
    """What the planner needs to know about a job at decision time."""

    exists: bool = True
    paused: bool = False
    active_runs: int = 0


@dataclass(frozen=True)
class Launch:
    request: FireRequest


@dataclass(frozen=True)
class Skip:
    request: FireRequest
    code: str
    reason: str


Decision = Launch | Skip


def decide(request: FireRequest, state: JobState, now: datetime, grace: timedelta) -> Decision:
    """Launch or skip one request. Manual runs ignore pause (a person asked explicitly)."""
    if not state.exists:
        return Skip(request, "job-removed", f"job {request.job!r} is not in the current config")
    if request.trigger != "manual":
        if state.paused:
            return Skip(request, "paused", "job is paused")
        if request.scheduled_for is not None and now - request.scheduled_for > grace:
            late = (now - request.scheduled_for).total_seconds()
            return Skip(
                request, "missed", f"slot is {late:.0f}s late, past the {grace.total_seconds():.0f}s grace window"
            )
    if state.active_runs > 0:
        return Skip(request, "concurrency", f"a previous run of {request.job!r} is still active")
    return Launch(request)


@dataclass(frozen=True)
class CatchUp:
    """Slots a job missed while the daemon was down: the one to fire, and the rest, counted."""

    fire: datetime | None
    coalesced: list[datetime]
    expired_count: int
    first_expired: datetime | None


def plan_catch_up(job: Job, last_slot: datetime, now: datetime, grace: timedelta, limit: int = 1000) -> CatchUp:
    """Missed slots in (last_slot, now]: fire the most recent one inside the grace window once,
    record the older in-window ones as coalesced into it, and count those past the window."""
    window_start = max(last_slot, now - grace)
    in_window = slots_between(job.trigger, window_start, now, limit)
    expired = count_slots_between(job.trigger, last_slot, window_start, limit)
    first_expired = None
    if expired:
        first = slots_between(job.trigger, last_slot, window_start, 1)
        first_expired = first[0] if first else None
    if not in_window:
        return CatchUp(None, [], expired, first_expired)
    return CatchUp(in_window[-1], in_window[:-1], expired, first_expired)
