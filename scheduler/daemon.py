"""The daemon: composition root and main loop.

Threads: APScheduler's timer thread only drops (job, slots) into `self.slots`; signal handlers
only set flags; everything else - deciding, writing the database, spawning and reaping
children, the lease heartbeat - happens in `tick(now)` on the main thread, in that order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any

from sqlalchemy.exc import DBAPIError

from scheduler import ledger
from scheduler.catalog import apply_config, catch_up_requests, refresh_next_fire
from scheduler.config import Config
from scheduler.lease import Lease
from scheduler.planner import FireRequest, slot_run_key, zenml_run_name
from scheduler.runner import Runner
from scheduler.settings import Settings
from scheduler.store import Store
from scheduler.timing import Clock

log = logging.getLogger("zenml_scheduler.daemon")

Now = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        config: Config,
        store: Store,
        *,
        now: Now = utcnow,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.store = store
        self.now = now
        self.grace = timedelta(seconds=settings.misfire_grace)
        self.lease = Lease(store, timedelta(seconds=settings.lease_ttl), str(config.path))
        state_dir = settings.resolved_state_dir
        self.runner = Runner(
            settings.python,
            state_dir / "runs",
            config.project_root,
            settings.kill_grace,
            os.environ if env is None else env,
        )
        self.slots: queue.SimpleQueue[tuple[str, list[datetime]]] = queue.SimpleQueue()
        self.clock = Clock(lambda job, times: self.slots.put((job, times)))
        self.stop_signals = 0
        self.next_fires: dict[str, datetime | None] = {}
        self._previous_handlers: dict[int, Any] = {}
        self.stopping_since: float | None = None
        self._next_heartbeat = 0.0
        self._next_request_poll = 0.0
        self._maybe_queued = True
        self._early: list[tuple[str, list[datetime]]] = []
        self._pending_fires: list[FireRequest] = []
        self._pending_outcomes: list[ledger.Outcome] = []

    # ---- start -----------------------------------------------------------------------------
    def start(self) -> None:
        """Take the lease, recover runs of a previous daemon, reconcile, catch up, start timing."""
        # Handlers go in before anything else, so a SIGTERM during start-up still stops cleanly.
        self._previous_handlers = {
            sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        now = self.now()
        self.lease.acquire(now)
        with self.store.write() as conn:
            apply_config(conn, self.config, now, "daemon")
            self._recover(conn, now)
            missed = catch_up_requests(conn, self.config, now, self.grace)
            ledger.fire(conn, missed, self.config, now, self.grace)
            self.next_fires = {
                name: job.trigger.next_after(now) if job.spec.enabled else None
                for name, job in self.config.jobs.items()
            }
            refresh_next_fire(conn, self.next_fires)
        for name, job in self.config.jobs.items():
            self.clock.put(job, self.next_fires[name])
        self.clock.start()
        self._next_heartbeat = time.monotonic() + self.settings.lease_ttl / 3

    def _recover(self, conn: object, now: datetime) -> None:
        """Runs left `running` by a previous daemon: follow the live ones, settle the dead ones."""
        for run in ledger.runs_in(conn, ("running",)):  # type: ignore[arg-type]
            if run.pid is not None and self.runner.adopt(run.id, run.pid, run.pid_start):
                log.info("adopted run %s (pid %s) of a previous daemon", run.run_key, run.pid)
                continue
            ledger.record_outcome(conn, self.runner.collect_orphan(run.id), now)  # type: ignore[arg-type]

    # ---- loop ------------------------------------------------------------------------------
    def tick(self, now: datetime) -> None:
        """One pass: fire due slots and requests, start queued runs, reap children, heartbeat."""
        # Slots and outcomes are kept until their transaction commits, so a database hiccup
        # delays them to the next tick instead of losing them.
        self._pending_fires += self._drain_slots()
        poll_requests = not self.stopping and time.monotonic() >= self._next_request_poll
        if self._pending_fires or poll_requests:
            with self.store.write() as conn:
                batch = self._pending_fires + (ledger.take_requests(conn) if poll_requests else [])
                if batch:
                    self._fire(conn, batch, now)
            self._pending_fires = []
            if poll_requests:
                self._next_request_poll = time.monotonic() + 0.5
        if not self.stopping:
            self._start_queued(now)
        self._pending_outcomes += self.runner.poll()
        if self._pending_outcomes:
            with self.store.write() as conn:
                for outcome in self._pending_outcomes:
                    ledger.record_outcome(conn, outcome, now)
            self._pending_outcomes = []
            self._maybe_queued = True
        if time.monotonic() >= self._next_heartbeat:
            self.lease.heartbeat(now)
            self._next_heartbeat = time.monotonic() + self.settings.lease_ttl / 3

    def _drain_slots(self) -> list[FireRequest]:
        handed_over, self._early = self._early, []
        while True:
            try:
                handed_over.append(self.slots.get_nowait())
            except queue.Empty:
                break
        return [
            FireRequest(name, "schedule", slot_run_key(name, t), "scheduler", t)
            for name, times in handed_over
            for t in times
        ]

    def _fire(self, conn: object, batch: list[FireRequest], now: datetime) -> None:
        result = ledger.fire(conn, batch, self.config, now, self.grace)  # type: ignore[arg-type]
        if result.queued:
            self._maybe_queued = True

    def _start_queued(self, now: datetime) -> None:
        free = self.settings.max_concurrent_runs - self.runner.active
        if free <= 0 or not self._maybe_queued:
            return
        with self.store.read() as conn:
            waiting = ledger.queued_runs(conn, free)
        self._maybe_queued = len(waiting) == free
        for run in waiting:
            self._launch(run, now)

    def _launch(self, run: object, now: datetime) -> None:
        spec = json.loads(run.parameters_json)  # type: ignore[attr-defined]
        run_name = zenml_run_name(run.job, run.run_key, run.attempt, now)  # type: ignore[attr-defined]
        spec.update(
            job=run.job,
            run_key=run.run_key,
            run_name=run_name,  # type: ignore[attr-defined]
            tags=["zenml-scheduler", f"job:{run.job}", f"trigger:{run.trigger}"],
        )  # type: ignore[attr-defined]
        log_path = str(self.runner.run_dir(run.id) / "output.log")  # type: ignore[attr-defined]
        # Marked running before the spawn: if we die in between, recovery calls it lost
        # rather than launching the same slot a second time.
        with self.store.write() as conn:
            ledger.mark_started(conn, run, log_path, now)
        try:
            child = self.runner.start(run.id, spec)  # type: ignore[attr-defined]
        except OSError as exc:
            with self.store.write() as conn:
                ledger.mark_launch_failed(conn, run, f"could not start child process: {exc}", now)
            return
        with self.store.write() as conn:
            ledger.set_pid(conn, run, child.pid, child.pid_start, run_name, log_path, now)

    # ---- run & stop ------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self.stop_signals > 0

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        self.stop_signals += 1

    def run(self) -> None:
        """Loop until SIGTERM/SIGINT; then drain runs for shutdown_grace and stop the rest."""
        try:
            while True:
                try:
                    self.tick(self.now())
                except DBAPIError as exc:  # the database is away: keep children, retry shortly
                    log.error("state database error, retrying in 1s: %s", exc.orig)
                    time.sleep(1)
                if self.stopping and self._shutdown_step():
                    break
                with contextlib.suppress(queue.Empty):
                    self._early.append(self.slots.get(timeout=0.2))  # a slot wakes us at once
        finally:
            self.close()

    def _shutdown_step(self) -> bool:
        """True when shutdown is complete."""
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
            self.clock.stop()
            log.info(
                "stopping: no new runs; waiting up to %.0fs for %d running run(s) (signal again to stop them now)",
                self.settings.shutdown_grace,
                self.runner.active,
            )
        overdue = time.monotonic() - self.stopping_since > self.settings.shutdown_grace
        if self.runner.active and (overdue or self.stop_signals > 1):
            self.runner.stop_all("interrupted by daemon shutdown")
        return self.runner.active == 0

    def close(self) -> None:
        self.clock.stop()
        self.lease.release(self.now())
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
