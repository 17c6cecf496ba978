"""What must hold whatever happened, each named once. A check returns the violations it found.

After every event: each run key and attempt launched at most once, and only once claimed; limits
and queue bounds held; each job's next fire consistent with its trigger and max_runs; the daemon
never left announcing a reload; every `running` run followed by the daemon. Periodically and at
the end: the audit chain verifies, and every run that ended has exactly one terminal event. At
the end: every slot inside the grace window is accounted for (a run, or a skip on the record),
every file that landed is recorded, and every run of the upstream job that ended for good has its
`after:` run or skip.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from scheduler.config.model import Config
from scheduler.policy.decide import policy_of
from scheduler.policy.fire_request import FINAL_STATUSES
from scheduler.policy.keys import slot_run_key
from scheduler.policy.queue_order import run_limit
from scheduler.store import audit
from scheduler.store.engine import Store
from scheduler.store.schema import audit as audit_table
from scheduler.store.schema import jobs, runs, watched_files

if TYPE_CHECKING:
    from tests.simulation.harness import Simulation

Check = Callable[["Simulation"], list[str]]


def job_rows(store: Store) -> list[tuple[str, Any]]:
    with store.read() as conn:
        return [(row.name, row.removed_at) for row in conn.execute(select(jobs.c.name, jobs.c.removed_at))]


def _config(sim: Simulation) -> Config | None:
    return sim.live[0].daemon.config if sim.live else None


# ---- after every event ---------------------------------------------------------------------------


def launched_at_most_once(sim: Simulation) -> list[str]:
    counts = Counter((key, attempt) for key, attempt, _ in sim.world.launches)
    return [f"{key} attempt {attempt} launched {n} times" for (key, attempt), n in counts.items() if n > 1]


def launched_only_when_claimed(sim: Simulation) -> list[str]:
    found, sim.world.violations = sim.world.violations, []
    with sim.cli.read() as conn:
        ended = dict(conn.execute(select(runs.c.id, runs.c.status).where(runs.c.status == "skipped")).all())
    found += [f"run {run_id} ({key}) was launched but ended skipped" for key, _, run_id in sim.world.launches
              if run_id in ended]  # fmt: skip
    return found


def limits_held(sim: Simulation) -> list[str]:
    found = []
    for node in sim.live:
        config, runner = node.daemon.config, node.runner
        if runner.active > sim.settings.max_concurrent_runs:
            found.append(f"{runner.active} runs at once (max_concurrent_runs {sim.settings.max_concurrent_runs})")
        for name, job in config.jobs.items():
            limit = run_limit(policy_of(job, node.daemon.grace))
            if limit is not None and runner.running(name) > limit:
                found.append(f"{runner.running(name)} runs of {name} at once (its limit is {limit})")
    return found


def queue_bounds_held(sim: Simulation) -> list[str]:
    config = _config(sim)
    if config is None:
        return []
    with sim.cli.read() as conn:
        queued = dict(
            conn.execute(
                select(runs.c.job, func.count())
                .where(runs.c.status == "queued", runs.c.attempt == 1)
                .group_by(runs.c.job)
            ).all()
        )
    found = []
    for name, job in config.jobs.items():
        spec = job.spec
        if spec.concurrency in ("skip", "replace"):
            bound = max(spec.max_queued, spec.max_catchup) if spec.catchup == "all" else 1
        elif spec.concurrency == "queue":
            bound = spec.max_queued + 1  # the one waiting to start, plus the queue behind it
        else:
            continue  # allow: bounded by max_active at decision time, files are never dropped
        if queued.get(name, 0) > bound:
            found.append(f"{queued[name]} runs of {name} queued (bound {bound}, concurrency {spec.concurrency})")
    return found


def next_fire_consistent(sim: Simulation) -> list[str]:
    config = _config(sim)
    if config is None or not all(node.stepped for node in sim.live):
        return []
    with sim.cli.read() as conn:
        rows = conn.execute(select(jobs).where(jobs.c.removed_at.is_(None))).all()
    found = []
    for row in rows:
        job = config.jobs.get(row.name)
        if job is None or job.is_watch or job.is_after:
            continue
        if job.finished(row.launched) or not job.spec.enabled:
            if row.next_fire_at is not None:
                found.append(f"{row.name} shows a next fire {row.next_fire_at} but fires no more")
        elif row.next_fire_at is None:
            found.append(f"{row.name} shows no next fire but is timed")
        elif job.trigger.next_after(row.next_fire_at - timedelta(microseconds=1)) != row.next_fire_at:
            found.append(f"{row.name}: next fire {row.next_fire_at} is not a slot of {job.trigger_text}")
    return found


def never_left_reloading(sim: Simulation) -> list[str]:
    found = []
    for node in sim.live:
        said = [fields[0].split("=")[0] for fields in node.sent if fields[0].split("=")[0] in ("RELOADING", "READY")]
        if node.daemon.follower.idle and said and said[-1] == "RELOADING":
            found.append(f"daemon {node.pid} announced RELOADING and never READY again")
    return found


def running_runs_followed(sim: Simulation) -> list[str]:
    """Every run marked running is followed by the daemon holding the lease: none stays `running`
    for ever (which `concurrency: skip` would turn into a job skipped on every slot)."""
    if len(sim.nodes) != 1 or not sim.live or not sim.live[0].stepped or sim.live[0].stopping:
        return []
    node = sim.live[0]
    if node.daemon.database_failing:
        return []  # its next pass settles what a failed transaction may have left behind
    with sim.cli.read() as conn:
        running = conn.execute(select(runs.c.id, runs.c.run_key).where(runs.c.status == "running")).all()
    return [f"run {run.id} ({run.run_key}) is running but no daemon follows it" for run in running
            if run.id not in node.runner.children]  # fmt: skip


AFTER_EVERY_EVENT: tuple[Check, ...] = (
    launched_at_most_once,
    launched_only_when_claimed,
    limits_held,
    queue_bounds_held,
    next_fire_consistent,
    never_left_reloading,
    running_runs_followed,
)


def after_step(sim: Simulation) -> list[str]:
    return [f"{check.__name__}: {v}" for check in AFTER_EVERY_EVENT for v in check(sim)]


# ---- the record ----------------------------------------------------------------------------------


def audit_chain_verifies(sim: Simulation) -> list[str]:
    with sim.cli.read() as conn:
        result = audit.verify(conn)
    return [] if result.ok else [f"audit verify: row {result.bad_id}: {result.reason}"]


def every_end_on_the_record(sim: Simulation) -> list[str]:
    """A run that ended has exactly one terminal event (run-<status>, or a skip for a skipped row);
    a run still active has none."""
    with sim.cli.read() as conn:
        rows = conn.execute(select(runs.c.id, runs.c.run_key, runs.c.status)).all()
        events = conn.execute(
            select(audit_table.c.event, audit_table.c.run_key, audit_table.c.details).where(
                audit_table.c.event.like("run-%") | (audit_table.c.event == "skip")
            )
        ).all()
    ends: Counter[tuple[int, str]] = Counter()
    skips: Counter[str] = Counter()
    for event in events:
        details = json.loads(event.details)
        if event.event == "skip":
            if details.get("code") != "duplicate":
                skips[event.run_key] += 1
                if "run_id" in details:
                    ends[(details["run_id"], "skipped")] += 1
        elif event.event != "run-started" and "run_id" in details:
            ends[(details["run_id"], event.event.removeprefix("run-"))] += 1
    found = []
    for row in rows:
        terminal = {status: n for (run_id, status), n in ends.items() if run_id == row.id}
        if row.status == "skipped":
            if not skips.get(row.run_key) and not terminal:
                found.append(f"run {row.id} ({row.run_key}) was skipped without a skip event")
        elif row.status in FINAL_STATUSES:
            if terminal != {row.status: 1}:
                found.append(f"run {row.id} ({row.run_key}) ended {row.status}; terminal events {terminal}")
        elif terminal:
            found.append(f"run {row.id} ({row.run_key}) is {row.status} but has terminal events {terminal}")
    return found


def of_the_record(sim: Simulation) -> list[str]:
    return [f"{check.__name__}: {v}" for check in (audit_chain_verifies, every_end_on_the_record) for v in check(sim)]


# ---- at the end ------------------------------------------------------------------------------------


def every_slot_accounted_for(sim: Simulation) -> list[str]:
    """Each slot of each timed job, while the job was in the applied config and up to a grace
    window before the end, has a run row or an event on the record: none silently lost."""
    config = _config(sim)
    if config is None:
        return ["no daemon at the end"]
    with sim.cli.read() as conn:
        keys = set(conn.execute(select(runs.c.run_key)).scalars())
        keys |= set(conn.execute(select(audit_table.c.run_key).where(audit_table.c.run_key.is_not(None))).scalars())
        summaries = [
            (row.job, row.details)
            for row in conn.execute(
                select(audit_table.c.job, audit_table.c.details).where(audit_table.c.event == "skip")
            )
        ]
        launched = dict(conn.execute(select(jobs.c.name, jobs.c.launched)).all())
    covered: dict[str, list[tuple[Any, Any]]] = {}
    for job, details in summaries:
        data = json.loads(details)
        if "count" in data and data.get("first"):
            covered.setdefault(job, []).append((data["first"], data.get("last") or data.get("until")))
    starts = _starts(sim)
    end = sim.clock.now() - timedelta(seconds=sim.settings.misfire_grace)
    found = []
    for name, spans in sim.presence.items():
        job = config.jobs.get(name)
        if job is None or job.is_watch or (job.spec.max_runs is not None and job.finished(launched.get(name, 0))):
            continue
        for since, until in spans:
            assert since is not None
            slot = job.trigger.next_after(since)
            stop = min(end, _owed_until(until, starts, sim.stopped_firing) if until is not None else end)
            while slot is not None and slot <= stop:
                key = slot_run_key(name, slot)
                iso = key.split("@", 1)[1]
                in_summary = any(
                    first <= iso and last is not None and iso <= last for first, last in covered.get(name, [])
                )
                if key not in keys and not in_summary:
                    found.append(f"slot {key} has no run and no event")
                slot = job.trigger.next_after(slot)
    return found


def _starts(sim: Simulation) -> list[tuple[datetime, datetime | None]]:
    """(when, the previous daemon's last heartbeat) of each daemon start."""
    with sim.cli.read() as conn:
        rows = conn.execute(
            select(audit_table.c.at, audit_table.c.details).where(audit_table.c.event == "daemon-started")
        )
        found = []
        for at, details in rows:
            previous = json.loads(details).get("previous", {}).get("heartbeat_at")
            found.append((at, datetime.fromisoformat(previous) if previous else None))
    return found


def _owed_until(removed: datetime, starts: list[tuple[datetime, datetime | None]], stopped: list[datetime]) -> datetime:
    """A job removed by the config a daemon started with left while no daemon fired: its slots
    are owed until the previous daemon stopped firing, not until the start that removed it."""
    if any(abs((at - removed).total_seconds()) < 1 for at, _ in starts):
        return max((when for when in stopped if when <= removed), default=removed)
    return removed


def every_file_recorded(sim: Simulation) -> list[str]:
    with sim.cli.read() as conn:
        recorded = set(conn.execute(select(watched_files.c.path)).scalars())
        paused = bool(conn.execute(select(jobs.c.paused).where(jobs.c.name == "files")).scalar())
    if paused:
        return []
    return [f"file {name} landed but was never recorded" for name in sim.world.files.get("files", [])
            if name not in recorded]  # fmt: skip


AFTER_JOB, UPSTREAM_JOB = "after-every", "every-min"


def every_upstream_end_followed(sim: Simulation) -> list[str]:
    """Each run of the upstream job that ended for good (no retry left) has its `after:` run, or
    its skip, on the record under `<after job>@after:<run key>#<attempt>`: none dropped, whatever
    crashed in between (exactly once is the unique run key's part)."""
    with sim.cli.read() as conn:
        ended = conn.execute(
            select(runs.c.run_key, runs.c.attempt, runs.c.status).where(runs.c.job == UPSTREAM_JOB)
        ).all()
        keys = set(conn.execute(select(runs.c.run_key).where(runs.c.job == AFTER_JOB)).scalars())
        keys |= set(conn.execute(select(audit_table.c.run_key).where(audit_table.c.job == AFTER_JOB)).scalars())
    latest: dict[str, tuple[int, str]] = {}
    for key, attempt, status in ended:
        if key not in latest or attempt > latest[key][0]:
            latest[key] = (attempt, status)
    return [
        f"{key} attempt {attempt} ended {status}, and {AFTER_JOB} has no run or skip for it"
        for key, (attempt, status) in latest.items()
        if status in ("succeeded", "failed", "cancelled", "timed_out", "lost")
        and f"{AFTER_JOB}@after:{key}#{attempt}" not in keys
    ]


def at_the_end(sim: Simulation) -> list[str]:
    checks = (every_slot_accounted_for, every_file_recorded, every_upstream_end_followed)
    return [f"{check.__name__}: {v}" for check in checks for v in check(sim)]
