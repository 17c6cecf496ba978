"""Start queued runs as child processes, as far as the global and per-job limits allow."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from scheduler import tuning
from scheduler.config.model import Config
from scheduler.policy.keys import zenml_run_name
from scheduler.policy.queue_order import startable
from scheduler.runs.runner import Runner
from scheduler.store import ledger
from scheduler.store.engine import Store
from scheduler.store.outcomes import Outcome, record_outcome


class Launcher:
    def __init__(
        self,
        store: Store,
        runner: Runner,
        max_concurrent_runs: int,
        installation: str,
        *,
        before_spawn: Callable[[datetime], None] = lambda now: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.runner = runner
        self.max_concurrent_runs = max_concurrent_runs
        self.installation = installation  # makes ZenML run names unique per state database
        self.before_spawn = before_spawn
        self.monotonic = monotonic
        self._maybe_queued = True
        self._next_poll = 0.0

    def wake(self) -> None:
        """Something may have been queued or a slot freed: look at the queue on the next call."""
        self._maybe_queued = True

    def wake_for(self, jobs: Iterable[str], run_limits: dict[str, int | None]) -> None:
        """Runs of `jobs` were queued: look at the queue, unless every one of them is at its limit
        (a burst of API triggers for a busy job then costs the main loop nothing)."""
        if any(not self._full(job, run_limits.get(job, 1)) for job in jobs):
            self._maybe_queued = True

    def _full(self, job: str, limit: int | None) -> bool:
        return limit is not None and self.runner.running(job) >= limit

    def start_queued(self, now: datetime, config: Config, run_limits: dict[str, int | None]) -> None:
        """Start the oldest queued runs that fit; without a wake-up, look only every 0.5 s
        (retry back-off and jitter expire with time alone)."""
        free = self.max_concurrent_runs - self.runner.active
        due = self.monotonic() >= self._next_poll
        if free <= 0 or not (self._maybe_queued or due):
            return
        self._maybe_queued = False
        self._next_poll = self.monotonic() + tuning.QUEUE_POLL_S
        full = [job for job, limit in run_limits.items() if self._full(job, limit)]
        with self.store.read() as conn:
            waiting = ledger.queued_runs(conn, now, tuning.QUEUE_READ_LIMIT, per_job=free, skip_jobs=full)
        if not waiting:
            return
        running = {name: self.runner.running(name) for name in {run.job for run in waiting}}
        by_id = {run.id: run for run in waiting}
        chosen = startable([(run.id, run.job) for run in waiting], running, run_limits, free)
        if not chosen:
            return
        if len(chosen) > tuning.MAX_LAUNCHES_PER_PASS:
            # The rest waits for the next pass, so that due slots are not held up behind a long
            # row of launches (a burst of API triggers).
            chosen = chosen[: tuning.MAX_LAUNCHES_PER_PASS]
            self._maybe_queued = True
        self._launch([by_id[run_id] for run_id in chosen], now, config)

    def _launch(self, batch: list[Any], now: datetime, config: Config) -> None:
        """Spawn `batch`, with two write transactions for all of them rather than two each."""
        prepared = []
        for run in batch:
            spec = json.loads(run.parameters_json)
            run_name = zenml_run_name(run.job, run.run_key, run.attempt, now, self.installation)
            spec.update(
                job=run.job,
                run_key=run.run_key,
                run_name=run_name,
                tags=["zenml-scheduler", f"job:{run.job}", f"trigger:{run.trigger}"],
            )
            prepared.append((run, spec, run_name, str(self.runner.run_dir(run.id) / "output.log")))
        # Marked running before the spawn: if we die in between, recovery calls them lost
        # rather than launching the same slot a second time. A run that stopped being queued
        # since it was read (a `replace` cancelled it) is not claimed, and not launched.
        with self.store.write() as conn:
            prepared = [item for item in prepared if ledger.mark_started(conn, item[0], item[3], now)]
        if not prepared:
            return
        self.before_spawn(now)
        started, failed = [], []
        for run, spec, run_name, log_path in prepared:
            try:
                child = self.runner.start(run.id, spec)
            except OSError as exc:
                failed.append(Outcome(run.id, "failed", error=f"could not start child process: {exc}"))
                continue
            started.append((run, child, run_name, log_path))
        with self.store.write() as conn:
            for run, child, run_name, log_path in started:
                ledger.set_pid(conn, run, child.pid, child.pid_start, run_name, log_path, now)
            for failure in failed:
                record_outcome(conn, failure, config, now, stage="launch")
        if failed:
            self.wake()
