"""The baseline for bench/firing.py: a bare APScheduler 3 process doing what the daemon does.

Run by firing.py, one mode per process, never by hand:

    bare_apscheduler.py lag   FAKE SPEC SECONDS      every 1 s, Popen FAKE -m scheduler.child SPEC
    bare_apscheduler.py burst N SLOT DB GRACE        N jobs on a SQLite job store due at SLOT
    bare_apscheduler.py idle  N                      N jobs in a memory store, never due soon
    bare_apscheduler.py start N DB                   add N jobs to a SQLite job store, start

Each mode prints one JSON object as its last stdout line (idle and start print
{"ready": ...} first and then wait for SIGTERM). Everything uses APScheduler's defaults
unless the mode says otherwise, because the point is what an unconfigured scheduler does.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

# Filled by the job functions, which must be importable module-level callables for the
# SQLAlchemy job store (it pickles a textual reference, not the function).
STARTED: list[float] = []
WORK_SECONDS = 0.05


def noop() -> None:
    """A job that is never due during a measurement."""


def work() -> None:
    """The burst job: a small amount of work, so a pool of 10 threads needs ~5 s for 1,000."""
    STARTED.append(time.time())
    time.sleep(WORK_SECONDS)


def emit(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


def wait_for_sigterm() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def far_cron() -> CronTrigger:
    """03:00 on 1 January: scheduled, but not due within any measurement."""
    return CronTrigger(month=1, day=1, hour=3, minute=0, timezone=timezone.utc)


# ---- lag ------------------------------------------------------------------------------------
def run_lag(fake: str, spec: str, seconds: float) -> None:
    """Every 1 s spawn the fake child; report every scheduled instant that was submitted."""
    scheduled: list[float] = []

    def spawn() -> None:
        subprocess.Popen([fake, "-m", "scheduler.child", spec], stdin=subprocess.DEVNULL)

    def on_submitted(event: JobEvent) -> None:
        # The job function is not told its scheduled time; this event is.
        scheduled.extend(t.timestamp() for t in event.scheduled_run_times)

    scheduler = BackgroundScheduler(timezone=timezone.utc)
    scheduler.add_listener(on_submitted, EVENT_JOB_SUBMITTED)
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    scheduler.add_job(spawn, IntervalTrigger(seconds=1, start_date=start, timezone=timezone.utc))
    scheduler.start()
    time.sleep(seconds)
    scheduler.shutdown(wait=True)
    emit({"scheduled": scheduled})


# ---- burst ----------------------------------------------------------------------------------
def run_burst(count: int, slot: float, db: str, grace: str) -> None:
    """`count` jobs on SQLite due at `slot`; count submitted, executed and missed runs."""
    events: dict[str, list[float]] = {"submitted": [], "executed": [], "missed": [], "error": []}
    names = {
        EVENT_JOB_SUBMITTED: "submitted",
        EVENT_JOB_EXECUTED: "executed",
        EVENT_JOB_MISSED: "missed",
        EVENT_JOB_ERROR: "error",
    }

    def on_event(event: JobEvent) -> None:
        events[names[event.code]].append(time.time())

    job_defaults = {} if grace == "default" else {"misfire_grace_time": None}
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{db}")},
        job_defaults=job_defaults,
        timezone=timezone.utc,
    )
    scheduler.add_listener(on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    at = utc(slot)
    trigger = CronTrigger(hour=at.hour, minute=at.minute, second=at.second, timezone=timezone.utc)
    for index in range(count):
        scheduler.add_job(work, trigger, id=f"job-{index}")
    scheduler.start()
    ready = time.time()
    finished = _wait_until(
        lambda: len(events["executed"]) + len(events["missed"]) + len(events["error"]) >= count, deadline=slot + 120
    )
    scheduler.shutdown(wait=False)
    emit(
        {
            "ready": ready,
            "slot": slot,
            "finished": finished,
            "started": list(STARTED),
            **{key: value for key, value in events.items()},
        }
    )


def _wait_until(condition: Callable[[], bool], deadline: float) -> bool:
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


# ---- idle -----------------------------------------------------------------------------------
def run_idle(count: int) -> None:
    """`count` jobs in the default memory store, then nothing to do: what does idling cost?"""
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    for index in range(count):
        scheduler.add_job(noop, far_cron(), id=f"job-{index}")
    scheduler.start()
    emit({"ready": time.time()})
    wait_for_sigterm()
    scheduler.shutdown(wait=False)


# ---- start ----------------------------------------------------------------------------------
def run_start(count: int, db: str) -> None:
    """Add `count` jobs one by one to a SQLite job store and start; firing.py times the launch."""
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{db}")}, timezone=timezone.utc
    )
    for index in range(count):
        scheduler.add_job(noop, far_cron(), id=f"job-{index}")
    scheduler.start()  # pending jobs are written to the store here
    emit({"ready": time.time()})
    wait_for_sigterm()
    scheduler.shutdown(wait=False)


def main(argv: list[str]) -> None:
    mode, args = argv[0], argv[1:]
    if mode == "lag":
        run_lag(args[0], args[1], float(args[2]))
    elif mode == "burst":
        run_burst(int(args[0]), float(args[1]), args[2], args[3])
    elif mode == "idle":
        run_idle(int(args[0]))
    elif mode == "start":
        run_start(int(args[0]), args[1])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
