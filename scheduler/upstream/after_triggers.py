"""`after:` triggers on the main loop: ended runs in, run requests out.

Upstream runs reach the `upstream_runs` table two ways: ours with their outcome
(`scheduler.store.outcomes`), and any ZenML run from the follower child, whose lines this class
stores together with the cursor step. Each pass then takes the unhandled ones, asks the pure
rules (`scheduler.policy.after_rules`) what each downstream job does about it, and records the
answers (fires, skips, the audited match or mismatch, debounced matches) in the same
transaction that marks the upstream run handled. So a kill -9 at any point neither loses an
upstream run nor fires for it twice, and the unique run key `<job>@after:<upstream>` stops
any second fire the database might still be asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from scheduler import tuning
from scheduler.child.protocol import FollowedRun, FollowerNote
from scheduler.config.model import Config, Job
from scheduler.policy.after_rules import (
    AFTER_CATCHUP_REASONS,
    Errored,
    NotMatched,
    chain_after,
    chain_problem,
    debounce_due,
    match,
    plan_catch_up,
)
from scheduler.policy.decide import policy_of
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.keys import after_run_key, debounced_run_key
from scheduler.store import fires, upstream_runs
from scheduler.store.audit import Event, append
from scheduler.store.engine import Store
from scheduler.store.fires import FireResult
from scheduler.store.upstream_runs import UpstreamRun, pipeline_name
from scheduler.upstream.follower_process import FollowerProcess
from scheduler.upstream.follower_supervisor import FollowerSupervisor

log = logging.getLogger(__name__)

DAEMON = "daemon"


def needs_follower(config: Config) -> bool:
    """Whether a job reads ZenML runs: a `pipeline:` trigger, or a `job:` trigger whose condition
    or templates read the upstream run's metadata, steps or artifacts."""
    return any(
        job.spec.after is not None and (job.spec.after.pipeline is not None or job.needs_upstream_details)
        for job in config.jobs.values()
    )


def watched_pipelines(config: Config) -> set[str]:
    return {job.spec.after.pipeline for job in config.jobs.values() if job.spec.after and job.spec.after.pipeline}


class AfterTriggers:
    def __init__(
        self,
        store: Store,
        follower: FollowerProcess,
        grace: timedelta,
        max_chain_depth: int,
        monotonic: Callable[[], float],
    ) -> None:
        self.store = store
        self.supervisor = FollowerSupervisor(store, follower)
        self.grace = grace
        self.max_chain_depth = max_chain_depth
        self.monotonic = monotonic
        self.started_at: datetime | None = None
        self.caught_up = False  # the follower has streamed everything since the cursor it started from
        self._followed: list[FollowedRun] = []
        self._dirty = True
        # While something waits for time alone (a debounce, a run waiting for its ZenML record or
        # for the catch-up) a pass comes every second; otherwise only a wake-up (an outcome, a
        # follower line) starts one, with a slow pass as a safety net.
        self._next_pass = 0.0

    # ---- what the loop hands in ------------------------------------------------------------
    def start(self, now: datetime) -> None:
        self.started_at = now
        with self.store.write() as conn:
            upstream_runs.prune(conn, now)

    def take(self, followed: list[FollowedRun], notes: list[FollowerNote]) -> None:
        self._followed += followed
        for note in notes:
            if note.kind == "caught-up" and not self.caught_up:
                self.caught_up = True
                self._dirty = True
            elif note.kind == "error":
                log.warning("the follower could not read ZenML runs: %s", note.message)
        if followed:
            self._dirty = True

    def wake(self) -> None:
        """An outcome was recorded: an upstream run of ours may be waiting."""
        self._dirty = True

    # ---- the pass ----------------------------------------------------------------------------
    def tick(self, now: datetime, config: Config) -> FireResult | None:
        """Supervise the follower, store what it read, and handle upstream runs and due debounces."""
        self.supervisor.supervise(now, needs_follower(config))
        if not (self._dirty or self._followed or self.monotonic() >= self._next_pass):
            return None
        if not any(job.spec.after is not None for job in config.jobs.values()) and not self._followed:
            self._passed(waiting=False)
            return None
        if not self._followed:
            due, waiting = self._work_due(config, now)
            if not due:
                self._passed(waiting)
                return None
        with self.store.write() as conn:
            assert self.started_at is not None
            upstream_runs.store_followed(conn, self._followed, watched_pipelines(config), self.started_at, now)
            requests, events = self._decide(conn, config, now)
            append(conn, now, events)
            result = fires.fire(conn, requests, config, now, self.grace) if requests else None
            waiting = bool(upstream_runs.unhandled(conn, 1) or upstream_runs.pending(conn))
        self._followed = []
        self._passed(waiting)
        return result

    def _passed(self, waiting: bool) -> None:
        self._dirty = False
        self._next_pass = self.monotonic() + (tuning.AFTER_PASS_S if waiting else tuning.AFTER_SAFETY_S)

    def _work_due(self, config: Config, now: datetime) -> tuple[bool, bool]:
        """(whether a write is worth it, whether something waits for time): read first, so that
        an idle pass costs the database no write transaction. A write is due for an unhandled
        upstream run or a debounce that has run out."""
        with self.store.read() as conn:
            if upstream_runs.unhandled(conn, 1):
                return True, True
            groups = upstream_runs.pending(conn)
        for name, items in groups.items():
            job = config.jobs.get(name)
            if job is None or job.spec.after is None:
                return True, True
            if debounce_due(items[-1].finished_at, job.spec.after.debounce_seconds, now):
                return True, True
        return False, bool(groups)

    def _decide(self, conn: Any, config: Config, now: datetime) -> tuple[list[FireRequest], list[Event]]:
        rows = upstream_runs.unhandled(conn, tuning.AFTER_BATCH)
        details = upstream_runs.details_of(conn, [r.zenml_run_id or "" for r in rows if r.origin == "ours"])
        requests: list[FireRequest] = []
        events: list[Event] = []
        handled: list[int] = []
        caught_up: dict[str, list[tuple[UpstreamRun, dict[str, Any]]]] = {}
        for row in rows:
            downstream = _downstream(config, row)
            if row.catchup and not self.caught_up:
                continue  # the follower is still reading what ended while we were down
            waiting = row.origin == "ours" and row.zenml_run_id and row.zenml_run_id not in details
            fresh = (now - row.received_at).total_seconds() < tuning.AFTER_DETAILS_WAIT_S
            if waiting and fresh and any(job.needs_upstream_details for job in downstream):
                continue  # the follower has not read its metadata and outputs yet
            view = _merged(row.view, details.get(row.zenml_run_id or ""))
            handled.append(row.id)
            for job in downstream:
                if row.catchup:
                    caught_up.setdefault(job.name, []).append((row, view))
                else:
                    self._consider(conn, config, job, row, view, now, requests, events)
        for name, items in caught_up.items():
            job = config.jobs[name]
            policy = policy_of(job, self.grace)
            plan = plan_catch_up(
                [row.finished_at for row, _ in items], policy.catchup, policy.grace, policy.max_catchup, now
            )
            for (row, view), code in zip(items, plan, strict=True):
                if code is None:
                    self._consider(conn, config, job, row, view, now, requests, events)
                    continue
                details_ = {"code": code, "reason": AFTER_CATCHUP_REASONS[code], "upstream": _upstream_name(row, view),
                            "upstream_finished_at": row.finished_at.isoformat(), "trigger": "after"}  # fmt: skip
                key = after_run_key(name, row.upstream_id)
                events.append(Event("skip", DAEMON, name, key, config.revision, details_))
        requests += self._due_debounces(conn, config, now, events)
        upstream_runs.mark_handled(conn, handled, now)
        return requests, events

    def _consider(
        self,
        conn: Any,
        config: Config,
        job: Job,
        row: UpstreamRun,
        view: dict[str, Any],
        now: datetime,
        requests: list[FireRequest],
        events: list[Event],
    ) -> None:
        """What `job` does about one upstream run: not match, fail to evaluate, skip for a cycle,
        wait in its debounce, or fire."""
        assert job.spec.after is not None
        name = _upstream_name(row, view)
        base = {"upstream": name, "upstream_pipeline": view.get("pipeline"), "upstream_status": view.get("status")}
        key = after_run_key(job.name, row.upstream_id)
        decision = match(job, view)
        if isinstance(decision, NotMatched):
            details = {**base, "reason": decision.reason, "reads": decision.reads}
            events.append(Event("after-not-matched", DAEMON, job.name, key, config.revision, details))
            return
        if isinstance(decision, Errored):
            details = {**base, "error": decision.error, "reads": decision.reads}
            events.append(Event("after-error", DAEMON, job.name, key, config.revision, details))
            log.warning("after trigger of %s on %s: %s", job.name, name, decision.error)
            return
        chain = chain_after(row.chain, str(view.get("pipeline") or ""))
        problem = chain_problem(chain, pipeline_name(config, job.name), self.max_chain_depth)
        debounced = job.spec.after.debounce_seconds > 0 and problem is None
        details = {**base, "reads": decision.reads, "chain": list(chain), "debounced": debounced}
        events.append(Event("after-matched", DAEMON, job.name, key, config.revision, details))
        if debounced:
            request = {"parameters": decision.parameters, "steps": decision.steps, "upstream": name,
                       "chain": list(chain)}  # fmt: skip
            upstream_runs.add_pending(conn, job.name, row.upstream_id, row.finished_at, request, now)
            return
        requests.append(
            FireRequest(
                job.name,
                "after",
                key,
                DAEMON,
                parameters=decision.parameters,
                steps=decision.steps,
                preskip=problem,
                upstream=name,
                chain=chain,
            )
        )

    def _due_debounces(self, conn: Any, config: Config, now: datetime, events: list[Event]) -> list[FireRequest]:
        """One run for each debounced job whose quiet period has passed, for all its matches."""
        requests = []
        for name, items in upstream_runs.pending(conn).items():
            job = config.jobs.get(name)
            waiting = job is not None and job.spec.after is not None
            if waiting and not debounce_due(items[-1].finished_at, job.spec.after.debounce_seconds, now):  # type: ignore[union-attr]
                continue
            upstream_runs.drop_pending(conn, [item.id for item in items])
            if job is None or job.spec.after is None:
                continue  # removed (or no longer an after job) while its matches waited: the fire event says so
            ids = [item.upstream_id for item in items]
            latest = items[-1].request
            key = debounced_run_key(name, ids)
            details = {"upstream": [item.request.get("upstream") for item in items], "count": len(items),
                       "debounce": job.spec.after.debounce}  # fmt: skip
            events.append(Event("after-coalesced", DAEMON, name, key, config.revision, details))
            requests.append(
                FireRequest(
                    name,
                    "after",
                    key,
                    DAEMON,
                    parameters=latest.get("parameters") or {},
                    steps=latest.get("steps") or {},
                    upstream=latest.get("upstream"),
                    chain=tuple(latest.get("chain") or ()),
                )
            )
        return requests

    def stop(self, now: datetime | None = None) -> None:
        """Stop the follower (the daemon is stopping); its cursor stays where it is."""
        self.supervisor.stop(now)


def _downstream(config: Config, row: UpstreamRun) -> list[Job]:
    """The enabled jobs that run after `row`: `job:` triggers on our runs, `pipeline:` on ZenML's."""
    found = []
    for job in config.jobs.values():
        after = job.spec.after
        if after is None or not job.spec.enabled:
            continue
        ours = row.origin == "ours" and after.job == row.job
        if ours or (row.origin == "zenml" and after.pipeline == row.pipeline):
            found.append(job)
    return found


def _merged(view: dict[str, Any], details: dict[str, Any] | None) -> dict[str, Any]:
    """Our view of our run, with the metadata and outputs the follower read from ZenML."""
    if not details:
        return view
    return {**view, **{key: details[key] for key in ("metadata", "steps", "artifacts") if key in details}}


def _upstream_name(row: UpstreamRun, view: dict[str, Any]) -> str:
    """How a downstream run names its upstream: our run key when it was ours, else the ZenML run id."""
    return str(view.get("run_key") or row.zenml_run_id or row.key)
