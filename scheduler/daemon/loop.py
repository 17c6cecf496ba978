"""The daemon: composition root and main loop.

Threads: APScheduler's timer thread only hands (job, slots) over, and each watch job's watcher
thread hands over the files it found complete (`scheduler.daemon.handover`); signal handlers only
set flags; everything else - deciding, writing the database, spawning and reaping children, the
lease heartbeat - happens in `tick(now)` on the main thread, in that order. The exceptions are
the side services (`scheduler.daemon.services`): HTTP API threads record a manual run's row
themselves (the database serialises them with the main loop) and hand the rest over, and metrics
and webhooks follow the committed audit trail on their own threads.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError

from scheduler import tuning
from scheduler.config.model import Config
from scheduler.config.settings import Settings
from scheduler.daemon.config_follower import ConfigFollower
from scheduler.daemon.handover import HandOver
from scheduler.daemon.lease import Lease
from scheduler.daemon.sd_notify import Notifier
from scheduler.daemon.services import Services
from scheduler.daemon.signals import SignalFlags
from scheduler.daemon.timer import SlotTimer
from scheduler.policy.decide import policy_of
from scheduler.policy.file_runs import Dispatch
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.queue_order import run_limit
from scheduler.policy.reload_diff import retime_needed
from scheduler.runs.launcher import Launcher
from scheduler.runs.runner import Runner
from scheduler.store import fires, inbox, ledger
from scheduler.store.catalog import apply_config, catch_up_requests, refresh_next_fire
from scheduler.store.engine import Store
from scheduler.store.fires import FireResult
from scheduler.store.outcomes import SHUTDOWN_REASON, Outcome, record_outcome
from scheduler.timing.clock import Now, utcnow
from scheduler.timing.durations import format_duration
from scheduler.watch.seen_files import Notice, fire_files, record_notices
from scheduler.watch.watchers import FolderWatchers

log = logging.getLogger(__name__)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        config: Config,
        store: Store,
        *,
        now: Now = utcnow,
        env: Mapping[str, str] | None = None,
        check_pipelines: bool = True,
    ) -> None:
        self.settings = settings
        self.config = config
        self.store = store
        self.now = now
        env = os.environ if env is None else env
        self.grace = timedelta(seconds=settings.misfire_grace)
        self.lease = Lease(store, timedelta(seconds=settings.lease_ttl), str(config.path))
        self.runner = Runner(
            settings.python, settings.resolved_state_dir / "runs", config.project_root, settings.kill_grace, env
        )
        self.handover = HandOver()
        self.launcher = Launcher(store, self.runner, settings.max_concurrent_runs)
        self.timer = SlotTimer(self.handover.slots)
        self.signals = SignalFlags()
        self.notifier = Notifier(env)
        self.follower = ConfigFollower(
            config, settings.python, check_pipelines, settings.pipeline_check_timeout, store, self.notifier
        )
        self.watchers = FolderWatchers(store, self.handover.put)
        self.services = Services(settings, store, lambda: self.config, self.handover.put, self.health)
        self.next_fires: dict[str, datetime | None] = {}
        self.stopping_since: float | None = None
        self._next_heartbeat = 0.0
        self._next_request_poll = 0.0
        self._next_status = 0.0
        # Kept until their transaction commits, so a database hiccup delays them instead of losing them.
        self._pending_fires: list[FireRequest] = []
        self._pending_outcomes: list[Outcome] = []
        self._pending_files: list[Dispatch] = []
        self._pending_notices: list[Notice] = []
        self._derive_from_config()

    def _derive_from_config(self) -> None:
        self.timeouts = {name: job.timeout for name, job in self.config.jobs.items()}
        self.run_limits = {name: run_limit(policy_of(job, self.grace)) for name, job in self.config.jobs.items()}

    # ---- start -----------------------------------------------------------------------------
    def start(self) -> None:
        """Take the lease, recover runs of a previous daemon, reconcile, catch up, start timing."""
        self.signals.install()  # before anything else, so a SIGTERM during start-up still stops cleanly
        now = self.now()
        self.lease.acquire(now)
        with self.store.write() as conn:
            apply_config(conn, self.config, now, "daemon")
            self._recover(conn, now)
            ledger.expire_queued(conn, self.config, now, self.grace)
            self._fire(conn, catch_up_requests(conn, self.config, now, self.grace), now)
            self.next_fires = {name: job.first_fire_after(now) for name, job in self.config.jobs.items()}
            refresh_next_fire(conn, self.next_fires)
            exhausted = ledger.exhausted_jobs(conn, self.config)
        for name, job in self.config.jobs.items():
            self.timer.put(job, None if name in exhausted else self.next_fires[name])
        self.timer.start()
        self.watchers.sync(self.config)
        self.services.start()
        self._next_heartbeat = time.monotonic() + self.settings.lease_ttl * tuning.HEARTBEAT_FRACTION

    def health(self) -> dict[str, bool]:
        """What /readyz reports besides the database: timing runs and a config is loaded."""
        return {"scheduler": self.timer.running and not self.stopping, "config": self.config is not None}

    def _recover(self, conn: Any, now: datetime) -> None:
        """Runs left `running` by a previous daemon: follow the live ones, settle the dead ones."""
        for run in ledger.runs_in(conn, ("running",)):
            running_for = (now - run.started_at).total_seconds() if run.started_at else 0.0
            if run.pid is not None and self.runner.adopt(run.id, run.pid, run.pid_start, run.job, running_for):
                log.info("adopted run %s (pid %s) of a previous daemon", run.run_key, run.pid)
                continue
            self._settle(conn, self.runner.collect_orphan(run.id), now)

    # ---- loop ------------------------------------------------------------------------------
    def tick(self, now: datetime) -> None:
        """One pass: fire due slots and requests, start queued runs, reap children, heartbeat."""
        drained = self.handover.drain()
        self._pending_files += drained.files
        self._pending_notices += drained.notices
        for result in drained.recorded:
            self._after_fire(result)
        self._pending_fires += drained.slots
        if self.stopping:
            # Not recorded: the next start sees them after the slot watermark and catches up per policy.
            self._pending_fires = []
        self._fire_pending(now)
        self._record_files(now)
        if not self.stopping:
            self.launcher.start_queued(now, self.config, self.run_limits)
        for child in self.runner.overdue(self.timeouts):
            limit = self.timeouts[child.job] or 0
            self.runner.stop(child.run_id, f"timed out after {format_duration(limit)}", status="timed_out")
        self._pending_outcomes += self.runner.poll()
        if self._pending_outcomes:
            with self.store.write() as conn:
                for outcome in self._pending_outcomes:
                    self._settle(conn, outcome, now)
            self._pending_outcomes = []
            self.launcher.wake()
        self._record_repairs(now)
        if not self.stopping:
            self._follow_config(now)
        self.notifier.watchdog()
        if time.monotonic() >= self._next_status:
            self._next_status = time.monotonic() + tuning.STATUS_INTERVAL_S
            self.notifier.status(self.status_line())
        if time.monotonic() >= self._next_heartbeat:
            self.lease.heartbeat(now)
            self._next_heartbeat = time.monotonic() + self.settings.lease_ttl * tuning.HEARTBEAT_FRACTION

    def _fire_pending(self, now: datetime) -> None:
        """Record the slots due and what other processes asked for, in one transaction."""
        # Requests are also taken whenever slots fire, so a resume is always seen before the
        # resumed job's next slot (which would otherwise move its watermark past the missed ones).
        poll_requests = not self.stopping and (bool(self._pending_fires) or time.monotonic() >= self._next_request_poll)
        if not (self._pending_fires or poll_requests):
            return
        with self.store.write() as conn:
            batch: list[FireRequest] = []
            if poll_requests:
                asked = inbox.take_requests(conn)
                if asked.reload:
                    self.follower.request("zenml-scheduler reload")
                for job in asked.resumed:
                    batch += catch_up_requests(conn, self.config, now, self.grace, only=job)
                    self.watchers.rescan(job)
                batch += asked.runs
            batch += self._pending_fires
            if batch:
                self._fire(conn, batch, now)
        self._pending_fires = []
        if poll_requests:
            self._next_request_poll = time.monotonic() + tuning.REQUEST_POLL_S

    def status_line(self) -> str:
        """One line for systemd's STATUS=: what is scheduled and what runs."""
        return (f"{len(self.config.jobs)} jobs (revision {self.config.revision}), {len(self.watchers)} watching, "
                f"{self.runner.active} running, max {self.settings.max_concurrent_runs}")  # fmt: skip

    # ---- hot reload ------------------------------------------------------------------------
    def _follow_config(self, now: datetime) -> None:
        if self.signals.take_reload():
            self.follower.request("SIGHUP")
        verdict = self.follower.poll(now, self.config, self.status_line)
        if verdict is not None:
            reason, new = verdict
            self._apply(new, now, reason)

    def _apply(self, new: Config, now: datetime, reason: str) -> None:
        """Apply a known-good config as a diff: untouched jobs keep their timing and state."""
        with self.store.write() as conn:
            diff = apply_config(conn, new, now, "reload")
            retimed = set(diff.added) | {c.name for c in diff.changed if retime_needed(c)}
            first_fires = {name: new.jobs[name].first_fire_after(now) for name in retimed}
            refresh_next_fire(conn, first_fires)
            exhausted = ledger.exhausted_jobs(conn, new)
        self.config = new
        self._derive_from_config()
        self.watchers.sync(self.config)
        for name in diff.removed:
            self.timer.remove(name)
            self.next_fires.pop(name, None)
        for name in retimed:
            self.timer.put(new.jobs[name], None if name in exhausted else first_fires[name])
            self.next_fires[name] = first_fires[name]
        changed = [c.name for c in diff.changed]
        log.info("config reloaded (%s): revision %s; added %s, changed %s, removed %s",
                 reason, new.revision, diff.added, changed, diff.removed)  # fmt: skip

    # ---- file-watch jobs -------------------------------------------------------------------
    def _record_files(self, now: datetime) -> None:
        """Record the files watchers found complete, with their runs, and what they noticed."""
        if self.stopping:
            # Not recorded: the next start finds these files again and dispatches them then.
            self._pending_files = []
        if not (self._pending_files or self._pending_notices):
            return
        with self.store.write() as conn:
            record_notices(conn, self._pending_notices, self.config.revision, now)
            done = fire_files(conn, self._pending_files, self.config, now, self.grace)
        self._pending_files, self._pending_notices = [], []
        if done.fired.queued:
            self.launcher.wake()
        for dispatch in done.held:
            self.watchers.hand_back(dispatch)

    # ---- fires and outcomes ------------------------------------------------------------------
    def _fire(self, conn: Any, batch: list[FireRequest], now: datetime) -> None:
        self._after_fire(fires.fire(conn, batch, self.config, now, self.grace))

    def _after_fire(self, result: FireResult) -> None:
        self.launcher.wake_for(result.queued_jobs, self.run_limits)
        for run_id in result.replaced:
            self.runner.stop(run_id, "replaced by a newer run (concurrency: replace)")
        for name in result.exhausted:
            log.info("job %s reached max_runs; no more scheduled fires", name)
            self.timer.remove(name)

    def _settle(self, conn: Any, outcome: Outcome, now: datetime) -> None:
        """Record how a run ended; a run that may have left its ZenML run unfinished gets repaired."""
        effects = record_outcome(conn, outcome, self.config, now)
        if effects.paused_job:
            log.warning("job %s paused itself after repeated failures; `zenml-scheduler resume %s`",
                        effects.paused_job, effects.paused_job)  # fmt: skip
        if outcome.status in ("timed_out", "cancelled", "lost") and effects.zenml_run_name:
            self.runner.repair(outcome.run_id, effects.zenml_run_name)

    def _record_repairs(self, now: datetime) -> None:
        reports = self.runner.poll_repairs()
        if reports:
            with self.store.write() as conn:
                for run_id, report in reports:
                    ledger.record_repair(conn, run_id, report, now)

    # ---- run & stop ------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self.signals.stops > 0

    def run(self) -> None:
        """Loop until SIGTERM/SIGINT; then drain runs for shutdown_grace and stop the rest."""
        try:
            while True:
                try:
                    self.tick(self.now())
                except DBAPIError as exc:  # the database is away: keep children, retry shortly
                    log.error("state database error, retrying in %.0fs: %s", tuning.DB_RETRY_S, exc.orig)
                    time.sleep(tuning.DB_RETRY_S)
                if self.stopping and self._shutdown_step():
                    break
                self.handover.wait(tuning.LOOP_WAIT_S)  # a slot or a file wakes us at once
        finally:
            self.close()

    def _shutdown_step(self) -> bool:
        """True when shutdown is complete."""
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
            log.info("stopping: no new runs; waiting up to %.0fs for %d running run(s) (signal again to stop them now)",
                     self.settings.shutdown_grace, self.runner.active)  # fmt: skip
            self.notifier.stopping()
            self.timer.stop()
            self.watchers.stop_all()
            self.services.stop_api()
        overdue = time.monotonic() - self.stopping_since > self.settings.shutdown_grace
        if self.runner.active and (overdue or self.signals.stops > 1):
            self.runner.stop_all(SHUTDOWN_REASON)
        return self.runner.active == 0

    def close(self) -> None:
        self.timer.stop()
        self.watchers.stop_all()
        self.services.stop()
        self.lease.release(self.now())
        self.signals.restore()
