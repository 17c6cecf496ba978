"""APScheduler 3 as the clock: it wakes up at each slot and hands the slot over, nothing more.

Jobs are rebuilt from schedules.yaml at every start (a memory job store), so the database
never holds pickled code. Our own trigger class wraps `scheduler.timing.triggers`, which has standard
cron semantics; APScheduler's CronTrigger does not (Monday = 0, AND of day fields).
Its defaults are replaced deliberately:
- misfire_grace_time=None: APScheduler never drops a late slot itself; the policy core applies the
  grace window and audits every skip.
- coalesce=False: each slot is handed over with its own instant, so each gets its own run key.
- max_instances is irrelevant: the hand-off executor returns at once and counts nothing.
- timezone=UTC: slots are computed per job in its own zone by our trigger.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from scheduler import tuning
from scheduler.config.model import Job

SlotSink = Callable[[str, list[datetime]], None]


class SlotTrigger(BaseTrigger):  # type: ignore[misc]
    """A job's slots strictly after `start_after`, then strictly after each previous slot."""

    def __init__(self, job: Job, start_after: datetime) -> None:
        self.job = job
        self.start_after = start_after

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is None:
            return self.job.trigger.next_after(self.start_after)
        return self.job.trigger.next_after(previous_fire_time)

    def __str__(self) -> str:
        return self.job.trigger_text


class HandOffExecutor(BaseExecutor):  # type: ignore[misc]
    """Passes (job, slots) to a sink and returns; the daemon's loop does the rest."""

    def __init__(self, sink: SlotSink) -> None:
        super().__init__()
        self._sink = sink

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self._sink(job.id, list(run_times))

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:  # pragma: no cover
        self._sink(job.id, list(run_times))


def _noop() -> None:
    """APScheduler needs a callable per job; the hand-off executor never calls it."""


class SlotTimer:
    """The APScheduler instance and the jobs it times."""

    def __init__(self, sink: SlotSink) -> None:
        self.scheduler = BackgroundScheduler(
            executors={"default": HandOffExecutor(sink)},
            job_defaults={"misfire_grace_time": None, "coalesce": False, "max_instances": 1},
            timezone=timezone.utc,
        )
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self.timed: set[str] = set()

    def put(self, job: Job, first: datetime | None) -> None:
        """Time `job` from its first slot `first` on; None (disabled, or never fires again) removes it."""
        self.remove(job.name)
        if first is None:
            return
        self.scheduler.add_job(
            _noop, trigger=SlotTrigger(job, first - timedelta(seconds=1)), id=job.name, name=job.name,
            next_run_time=first,
        )  # fmt: skip
        self.timed.add(job.name)

    def remove(self, name: str) -> None:
        # Our own set: APScheduler's get_job() scans its pending list linearly before start().
        if name in self.timed:
            self.scheduler.remove_job(name)
            self.timed.discard(name)

    def start(self) -> None:
        self.scheduler.start()

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def stop(self, timeout: float = tuning.THREAD_STOP_S) -> None:
        """Stop timing. Bounded: the timer thread is a daemon thread, so shutdown never waits on it
        longer than `timeout` (a stuck timer must not keep the daemon from exiting)."""
        if not self.scheduler.running:
            return
        stopper = threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": False}, daemon=True)
        stopper.start()
        stopper.join(timeout)
        if stopper.is_alive():
            logging.getLogger(__name__).warning("APScheduler did not stop within %.0fs", timeout)
