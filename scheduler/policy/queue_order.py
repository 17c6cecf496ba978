"""Which queued runs start now, within the global and per-job limits (pure)."""

from __future__ import annotations

from scheduler.policy.decide import Policy


def run_limit(policy: Policy) -> int | None:
    """How many runs of one job may run at once (None: only the global limit applies)."""
    if policy.concurrency == "allow":
        return policy.max_active
    return 1


def startable(
    waiting: list[tuple[int, str]], running: dict[str, int], limits: dict[str, int | None], free: int
) -> list[int]:
    """Which queued runs to start now, at most `free` in all, never past a job's own limit.

    `waiting` is (run id, job), oldest first. Jobs take turns: each job's oldest run first, in
    the order they were queued, then each job's second, and so on; so a job with a long queue
    (a burst of API triggers) never holds back another job's run, and within a job the oldest
    run goes first.
    """
    per_job: dict[str, list[int]] = {}
    for run_id, job in waiting:
        per_job.setdefault(job, []).append(run_id)
    rounds: list[tuple[int, int, str]] = []  # (turn, run id, job)
    for job, ids in per_job.items():
        limit = limits.get(job, 1)
        room = len(ids) if limit is None else max(0, limit - running.get(job, 0))
        rounds += [(turn, run_id, job) for turn, run_id in enumerate(ids[:room])]
    return [run_id for _, run_id, _ in sorted(rounds)[: max(0, free)]]
