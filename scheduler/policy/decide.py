"""What to do about a fire: the pure policy core.

Given a request (a slot came due, a slot was missed while down, a person asked), the job's
state and `now`, return a decision as data. Nothing here reads the clock, the database or the
file system, so every rule is tested as a table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler.config.model import Job
from scheduler.policy.fire_request import FireRequest


@dataclass(frozen=True)
class JobState:
    """What `decide` needs to know about a job at decision time."""

    exists: bool = True
    paused: bool = False
    running: int = 0
    queued: int = 0
    launched: int = 0  # scheduled slots launched so far, across restarts (for max_runs)
    active_ids: tuple[int, ...] = ()  # its queued and running runs, which `replace` ends


@dataclass(frozen=True)
class Policy:
    """A job's firing policies as plain values (see the README for each one)."""

    grace: timedelta = timedelta(minutes=10)
    catchup: str = "latest"
    max_catchup: int = 50
    concurrency: str = "skip"
    max_active: int | None = None
    max_queued: int = 10
    start: datetime | None = None
    end: datetime | None = None
    max_runs: int | None = None
    jitter: float = 0.0

    def in_window(self, instant: datetime) -> bool:
        return (self.start is None or instant >= self.start) and (self.end is None or instant <= self.end)


def policy_of(job: Job, default_grace: timedelta) -> Policy:
    trigger = job.trigger
    start = getattr(trigger, "start", None)
    end = getattr(trigger, "end", None)
    grace = timedelta(seconds=job.grace) if job.grace is not None else default_grace
    spec = job.spec
    return Policy(grace, spec.catchup, spec.max_catchup, spec.concurrency, spec.max_active, spec.max_queued,
                  start, end, spec.max_runs, job.jitter)  # fmt: skip


@dataclass(frozen=True)
class Launch:
    request: FireRequest
    not_before: datetime | None = None  # jitter: start no earlier than this
    replaces: tuple[int, ...] = ()  # runs of the job to end first (concurrency: replace)


@dataclass(frozen=True)
class Skip:
    request: FireRequest
    code: str
    reason: str


Decision = Launch | Skip


def slot_jitter(run_key: str, seconds: float) -> float:
    """A delay in [0, seconds) derived from the run key: stable for a slot, so a restart keeps it."""
    if seconds <= 0:
        return 0.0
    fraction = int(hashlib.sha256(run_key.encode()).hexdigest()[:8], 16) / 2**32
    return fraction * seconds


def decide(request: FireRequest, state: JobState, policy: Policy, now: datetime) -> Decision:
    """Launch or skip one request. Manual runs skip the schedule checks (a person asked
    explicitly) but obey the concurrency policy like any other run. File runs have no slot:
    the grace window and jitter do not apply to them."""
    if not state.exists:
        return Skip(request, "job-removed", f"job {request.job!r} is not in the current config")
    if request.preskip is not None:
        return Skip(request, *request.preskip)
    scheduled = request.trigger != "manual"
    slot = request.scheduled_for
    if scheduled:
        if state.paused:
            return Skip(request, "paused", "job is paused")
        if request.trigger == "file" and not policy.in_window(now):
            return Skip(request, "outside-window", "file arrived outside the job's start/end window")
        if request.trigger == "after" and not policy.in_window(now):
            return Skip(request, "outside-window", "upstream run ended outside the job's start/end window")
        if slot is not None and not policy.in_window(slot):
            return Skip(request, "outside-window", "slot is outside the job's start/end window")
        if policy.max_runs is not None and state.launched >= policy.max_runs:
            return Skip(request, "max-runs", f"max_runs {policy.max_runs} reached")
        if slot is not None and now - slot > policy.grace:
            late = (now - slot).total_seconds()
            return Skip(
                request,
                "missed",
                f"slot is {late:.0f}s late, past the {policy.grace.total_seconds():.0f}s grace window",
            )
    concurrency, max_queued = policy.concurrency, policy.max_queued
    if request.trigger == "catchup" and policy.catchup == "all" and concurrency == "skip":
        concurrency, max_queued = "queue", max(max_queued, policy.max_catchup)  # missed slots run one by one
    active = state.running + state.queued
    replaces: tuple[int, ...] = ()
    if concurrency == "skip" and active:
        return Skip(request, "concurrency", f"a previous run of {request.job!r} is still active")
    if concurrency == "queue" and state.queued >= max_queued:
        return Skip(request, "queue-full", f"{state.queued} run(s) already queued (max_queued {max_queued})")
    # A file is not skipped for max_active: it waits as queued, and at most max_active of the
    # job's runs are started at once (run_limit), so no landed file is dropped for being busy.
    limited = policy.max_active is not None and active >= policy.max_active and request.trigger != "file"
    if concurrency == "allow" and limited:
        return Skip(request, "concurrency", f"{active} run(s) active (max_active {policy.max_active})")
    if concurrency == "replace":
        replaces = state.active_ids
    not_before = None
    if scheduled and slot is not None and policy.jitter:
        not_before = slot + timedelta(seconds=slot_jitter(request.run_key, policy.jitter))
    return Launch(request, not_before, replaces)
