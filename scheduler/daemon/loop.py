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

import contextlib
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
from scheduler.daemon.audit_head import HeadLog
from scheduler.daemon.config_follower import ConfigFollower
from scheduler.daemon.handover import HandOver
from scheduler.daemon.leadership import Transitions
from scheduler.daemon.run_ends import RunEnds
from scheduler.daemon.sd_notify import Notifier
from scheduler.daemon.shell import Shell
from scheduler.daemon.signals import SignalFlags
from scheduler.errors import LeaseLostError, StateError
from scheduler.policy.decide import policy_of
from scheduler.policy.file_runs import Dispatch
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.queue_order import run_limit
from scheduler.policy.reload_diff import retime_needed
from scheduler.runs.launcher import Launcher
from scheduler.store import fires, inbox, ledger
from scheduler.store.catalog import apply_config, catch_up_requests, refresh_next_fire
from scheduler.store.engine import Store
from scheduler.store.fires import FireResult
from scheduler.store.outcomes import SHUTDOWN_REASON
from scheduler.timing.clock import Now, utcnow
from scheduler.watch.seen_files import Notice, fire_files, record_notices

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
        shell: Shell | None = None,
        transitions: Transitions | None = None,
    ) -> None:
        """`transitions` counts leader elections and demotions over the process's life (see
        `scheduler.daemon.leadership`): pass the same one to each daemon a process runs."""
        self.settings = settings
        self.config = config
        self.store = store
        self.now = now
        self.shell = shell = shell or Shell()
        self.monotonic = shell.monotonic
        env = os.environ if env is None else env
        self.env = env
        self.grace = timedelta(seconds=settings.misfire_grace)
        self.lease = shell.lease(store, settings, config, shell.monotonic)
        self.transitions = transitions if transitions is not None else Transitions()
        self.runner = shell.runner(settings, config, env)
        self.handover = HandOver()
        self.launcher = Launcher(
            store, self.runner, settings.max_concurrent_runs, store.installation_id,
            before_spawn=self._confirm_lease, monotonic=shell.monotonic,
        )  # fmt: skip
        self.ends = RunEnds(store, self.runner, self.launcher)
        self.timer = shell.timer(self.handover.slots)
        self.signals = SignalFlags()
        self.notifier = Notifier(env)
        reloader = shell.reloader(settings, config, check_pipelines)
        self.follower = ConfigFollower(
            config, reloader, store, self.notifier, shell.monotonic, allow_empty=settings.allow_empty
        )
        self.watchers = shell.watchers(store, self.handover.put)
        self.services = shell.services(self)  # the API's port is bound in start(), once the lease is ours
        self.head_log = HeadLog(store, shell.monotonic)
        self.after = shell.after_triggers(self)
        self.next_fires: dict[str, datetime | None] = {}
        self.stopping_since: float | None = None
        self._next_heartbeat = 0.0
        self._next_request_poll = 0.0
        self._next_status = 0.0
        # Kept until their transaction commits, so a database hiccup delays them instead of losing them.
        self._pending_fires: list[FireRequest] = []
        self._pending_files: list[Dispatch] = []
        self._pending_notices: list[Notice] = []
        self.database_failing = False
        self.ended_by: StateError | None = None  # why the state database ended the loop, if it did
        self._derive_from_config()

    def _derive_from_config(self) -> None:
        self.timeouts = {name: job.timeout for name, job in self.config.jobs.items()}
        self.run_limits = {name: run_limit(policy_of(job, self.grace)) for name, job in self.config.jobs.items()}

    # ---- start -----------------------------------------------------------------------------
    def start(self) -> None:
        """Take the lease, recover runs of a previous daemon, reconcile, catch up, start timing.
        If any of it fails, what was started is stopped and the lease given back."""
        if self.shell.signals:
            self.signals.install()  # before anything else, so a SIGTERM during start-up still stops cleanly
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        now = self.now()
        self.lease.acquire(now)
        if self.lease.elections:  # audited as leader-elected; counted before the API can be scraped
            self.transitions.elected()
        self.services.bind()
        self.after.start(now)
        with self.store.write() as conn:
            apply_config(conn, self.config, now, "daemon")
            self._recover(conn, now)
            ledger.expire_queued(conn, self.config, now, self.grace)
            self._fire(conn, catch_up_requests(conn, self.config, now, self.grace), now)
            exhausted = ledger.exhausted_jobs(conn, self.config)
            self.next_fires = {
                name: None if name in exhausted else job.first_fire_after(now) for name, job in self.config.jobs.items()
            }
            refresh_next_fire(conn, self.next_fires)
        for name, job in self.config.jobs.items():
            self.timer.put(job, self.next_fires[name])
        self.timer.start()
        self.watchers.sync(self.config)
        self.services.start()
        self._next_heartbeat = self.monotonic() + self.settings.lease_ttl * tuning.HEARTBEAT_FRACTION
        self.head_log.write("start")

    def _confirm_lease(self, now: datetime) -> None:
        """Right before spawning children: the lease was held a moment ago, or is renewed now."""
        self.lease.confirm(now, within=self.settings.lease_ttl * tuning.HEARTBEAT_FRACTION)

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
            self.ends.settle(conn, self.runner.collect_orphan(run.id), now, self.config)

    # ---- loop ------------------------------------------------------------------------------
    def tick(self, now: datetime) -> None:
        """One pass: heartbeat, fire due slots and requests, start queued runs, reap children."""
        # First, in a transaction of its own: whatever fails later in the tick, the lease is kept
        # alive, and a daemon that lost it learns so before it fires or records anything.
        if self.monotonic() >= self._next_heartbeat:
            self.lease.heartbeat(now)
            self._next_heartbeat = self.monotonic() + self.settings.lease_ttl * tuning.HEARTBEAT_FRACTION
        if self.database_failing:  # a claim may have committed while we were told it did not
            self.ends.settle_unfollowed(now, self.config)
        drained = self.handover.drain()
        self._pending_files += drained.files
        self._pending_notices += drained.notices
        for result in drained.recorded:
            self._after_fire(result)
        self.after.take(drained.followed, drained.notes)
        self._pending_fires += drained.slots
        if self.stopping:
            # Not recorded: the next start sees them after the slot watermark and catches up per policy.
            self._pending_fires = []
        self._fire_pending(now)
        self._record_files(now)
        if not self.stopping:
            self.launcher.start_queued(now, self.config, self.run_limits)
        self.ends.enforce_timeouts(self.timeouts)
        if self.ends.collect(now, self.config):
            self.after.wake()
        if not self.stopping:
            self._follow_runs(now)
            self._follow_config(now)
        self.notifier.watchdog()
        self.head_log.tick()
        if self.monotonic() >= self._next_status:
            self._next_status = self.monotonic() + tuning.STATUS_INTERVAL_S
            self.notifier.status(self.status_line())

    def _fire_pending(self, now: datetime) -> None:
        """Record the slots due and what other processes asked for, in one transaction."""
        # Requests are also taken whenever slots fire, so a resume is always seen before the
        # resumed job's next slot (which would otherwise move its watermark past the missed ones).
        poll_requests = not self.stopping and (bool(self._pending_fires) or self.monotonic() >= self._next_request_poll)
        if not (self._pending_fires or poll_requests):
            return
        with self.store.write() as conn:
            batch: list[FireRequest] = []
            if poll_requests:
                asked = inbox.take_requests(conn, now)
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
            self._next_request_poll = self.monotonic() + tuning.REQUEST_POLL_S

    def status_line(self) -> str:
        """One line for systemd's STATUS=: what is scheduled and what runs."""
        return (f"{len(self.config.jobs)} jobs (revision {self.config.revision}), {len(self.watchers)} watching, "
                f"{self.runner.active} running, max {self.settings.max_concurrent_runs}")  # fmt: skip

    # ---- after: triggers -----------------------------------------------------------------------
    def _follow_runs(self, now: datetime) -> None:
        """Upstream runs that ended (ours, and what the follower read from ZenML) become fires."""
        result = self.after.tick(now, self.config)
        if result is not None:
            self._after_fire(result)

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
            exhausted = ledger.exhausted_jobs(conn, new)
            first_fires = {
                name: None if name in exhausted else new.jobs[name].first_fire_after(now) for name in retimed
            }
            refresh_next_fire(conn, first_fires)
        self.config = new
        self._derive_from_config()
        self.watchers.sync(self.config)
        for name in diff.removed:
            self.timer.remove(name)
            self.next_fires.pop(name, None)
        for name in retimed:
            self.timer.put(new.jobs[name], first_fires[name])
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

    # ---- run & stop ------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self.signals.stops > 0

    def step(self, now: datetime) -> bool:
        """One pass of `run`: a tick, then progress of the shutdown once stopping; True when the
        daemon has stopped. A state database error costs the tick, not the daemon: children keep
        running and the next pass tries again. A StateError ends the daemon: a lost lease, a
        database file deleted or replaced, or one no retry can cure (damaged, read-only, its
        tables gone; see `scheduler.store.db_errors`)."""
        try:
            self.tick(now)
            self.database_failing = False
        except DBAPIError as exc:
            log.error("state database error, retrying in %.0fs: %s", tuning.DB_RETRY_S, exc.orig)
            self.database_failing = True
            if self.settings.standby and self.lease.overdue:
                # A standby may take over soon: step down now (children run on, for it to adopt).
                raise LeaseLostError(
                    f"this daemon (pid {self.lease.pid} on {self.lease.host}) could not renew its lease for two "
                    f"thirds of lease_ttl ({self.settings.lease_ttl:.0f}s): {exc.orig}"
                ) from None
        return self.stopping and self._shutdown_step()

    def run(self) -> None:
        """Loop until SIGTERM/SIGINT; then drain runs for shutdown_grace and stop the rest."""
        try:
            while not self.step(self.now()):
                if self.database_failing:
                    time.sleep(tuning.DB_RETRY_S)
                else:
                    self.handover.wait(tuning.LOOP_WAIT_S)  # a slot or a file wakes us at once
        except StateError as exc:
            # Said once, then the process exits 3: a supervisor restarts it, and a new daemon
            # opens the database afresh (migrations included). Its children run on, for the daemon
            # holding the lease to adopt.
            self.ended_by = exc
            log.error("stopping: %s", exc)
            raise
        finally:
            self.close()

    def _shutdown_step(self) -> bool:
        """True when shutdown is complete."""
        if self.stopping_since is None:
            self.stopping_since = self.monotonic()
            log.info("stopping: no new runs; waiting up to %.0fs for %d running run(s) (signal again to stop them now)",
                     self.settings.shutdown_grace, self.runner.active)  # fmt: skip
            self.notifier.stopping()
            self.timer.stop()
            self.watchers.stop_all()
            self.services.stop_api()
        overdue = self.monotonic() - self.stopping_since > self.settings.shutdown_grace
        if self.runner.active and (overdue or self.signals.stops > 1):
            self.runner.stop_all(SHUTDOWN_REASON)
        return self.runner.active == 0

    def close(self) -> None:
        """Stop the threads and give the lease back (also after a start-up that failed half-way)."""
        try:
            self.timer.stop()
            self.watchers.stop_all()
            self.services.stop()
            self.after.stop(self.now() if self.lease.held else None)
            held = self.lease.held
            self._release_lease()
            if held:  # released on the record (daemon-stopped): the final head, if it can still be read
                with contextlib.suppress(DBAPIError, StateError):
                    self.head_log.write("stop")
        finally:
            self.signals.restore()

    def _release_lease(self) -> None:
        """Give the lease back if the database lets us; if not, it lapses after lease_ttl."""
        try:
            self.lease.release(self.now())
        except (StateError, DBAPIError) as exc:
            if self.ended_by is None:  # else the database's state was said already
                log.warning("could not give the lease back (it lapses after %.0fs): %s", self.settings.lease_ttl,
                            exc.orig if isinstance(exc, DBAPIError) else exc)  # fmt: skip
