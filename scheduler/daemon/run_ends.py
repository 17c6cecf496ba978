"""How runs end, on the main loop: timeouts enforced, ended children reaped, their outcomes
recorded (with retries and auto-pause), and ZenML runs left unfinished repaired."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from scheduler.config.model import Config
from scheduler.runs.launcher import Launcher
from scheduler.store import ledger
from scheduler.store.engine import Store, after_commit
from scheduler.store.outcomes import Outcome, record_outcome
from scheduler.store.schema import runs
from scheduler.timing.durations import format_duration

log = logging.getLogger(__name__)


class RunEnds:
    def __init__(self, store: Store, runner: Any, launcher: Launcher) -> None:
        self.store = store
        self.runner = runner
        self.launcher = launcher
        # Kept until their transaction commits: a database hiccup delays them, never loses them.
        self.pending: list[Outcome] = []

    def enforce_timeouts(self, timeouts: Mapping[str, float | None]) -> None:
        for child in self.runner.overdue(timeouts):
            limit = timeouts[child.job] or 0
            self.runner.stop(child.run_id, f"timed out after {format_duration(limit)}", status="timed_out")

    def collect(self, now: datetime, config: Config) -> bool:
        """Record the outcomes of the children that ended, and what the ZenML repairs found;
        True when an outcome was recorded."""
        self.pending += self.runner.poll()
        recorded = bool(self.pending)
        if self.pending:
            with self.store.write() as conn:
                for outcome in self.pending:
                    self.settle(conn, outcome, now, config)
            self.pending = []
            self.launcher.wake()
        reports = self.runner.poll_repairs()
        if reports:
            with self.store.write() as conn:
                for run_id, report in reports:
                    ledger.record_repair(conn, run_id, report, now)
        return recorded

    def settle_unfollowed(self, now: datetime, config: Config) -> None:
        """After a pass the state database failed: a run whose claim committed although the daemon
        was told it did not was never started. Such a run is `running` with no child: it is lost
        (and retried if its job allows), like a run claimed by a daemon that died before spawning."""
        waiting = {outcome.run_id for outcome in self.pending}
        with self.store.write() as conn:
            claimed = conn.execute(select(runs.c.id).where(runs.c.status == "running")).scalars().all()
            for run_id in claimed:
                if run_id not in self.runner.children and run_id not in waiting:
                    error = "claimed for launch, but the state database failed before it was started"
                    self.settle(conn, Outcome(run_id, "lost", error=error), now, config)

    def settle(self, conn: Any, outcome: Outcome, now: datetime, config: Config) -> None:
        """Record how a run ended; a run that may have left its ZenML run unfinished gets repaired,
        once the outcome is committed (a repair is a process: never started inside a transaction)."""
        effects = record_outcome(conn, outcome, config, now)
        if effects.paused_job:
            log.warning("job %s paused itself after repeated failures; `zenml-scheduler resume %s`",
                        effects.paused_job, effects.paused_job)  # fmt: skip
        if outcome.status in ("timed_out", "cancelled", "lost") and effects.zenml_run_name:
            run_id, name = outcome.run_id, effects.zenml_run_name
            after_commit(conn, lambda: self.runner.repair(run_id, name))
