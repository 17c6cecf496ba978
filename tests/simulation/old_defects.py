"""The defects the simulation was built to find, put back one at a time (for its own tests).

Each entry undoes one fix with `monkeypatch` and names the invariant that must then break: if a
change to the harness or the invariants ever stopped catching one of them, the simulation's
tests say so."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection, update

from scheduler.config.loader import load_config
from scheduler.daemon.lease import Lease
from scheduler.daemon.reloader import Reloader
from scheduler.daemon.run_ends import RunEnds
from scheduler.errors import ConfigError, Problem, SchedulerError
from scheduler.store import catalog, fires, ledger, outcomes
from scheduler.store.schema import jobs, runs


def claim_without_checking(conn: Connection, run: Any, log_path: str, now: datetime) -> bool:
    """Defect 3: the launcher's claim did not check that the run was still queued."""
    conn.execute(update(runs).where(runs.c.id == run.id).values(status="running", started_at=now, log_path=log_path))
    conn.execute(update(jobs).where(jobs.c.name == run.job).values(runs_total=jobs.c.runs_total + 1))
    return True


def load_and_clear_after(self: Reloader, reason: str) -> None:
    """Defect 6: a failing check escaped the loader, and `busy` was cleared after the result."""
    try:
        config = load_config(self.path)
        if self.check is not None:
            config = self.check(config)
        self._results.put((reason, config))
    except ConfigError as exc:
        self._results.put((reason, exc))
    except SchedulerError as exc:
        self._results.put((reason, ConfigError([Problem(str(self.path), 1, 1, str(exc))])))
    finally:
        self._busy.clear()


def _ended_silently(conn: Connection, run_ids: list[int], revision: str, now: datetime, events: list[Any]) -> set[int]:
    return _original_end_replaced(conn, run_ids, revision, now, [])


_original_end_replaced = fires._end_replaced
_original_update_jobs = fires._update_jobs_after_fire


def _next_fire_regardless(conn: Connection, decided: Any, config: Any, now: datetime, exhausted: set[str]) -> None:
    _original_update_jobs(conn, decided, config, now, set())


def _no_fence(self: Lease, conn: Connection) -> None:
    self.confirmed_at = self.monotonic()


OLD_DEFECTS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str]] = {
    "a claimed run was not checked to be still queued (3)": (
        lambda mp: mp.setattr(ledger, "mark_started", claim_without_checking),
        "every_end_on_the_record",
    ),
    "replaced queued runs ended without an audit event (5)": (
        lambda mp: mp.setattr(fires, "_end_replaced", _ended_silently),
        "every_end_on_the_record",
    ),
    "a failing pipeline check left the daemon reloading (6)": (
        lambda mp: mp.setattr(Reloader, "_load", load_and_clear_after),
        "never_left_reloading",
    ),
    "a job at max_runs kept a next fire (7)": (
        lambda mp: mp.setattr(fires, "_update_jobs_after_fire", _next_fire_regardless),
        "next_fire_consistent",
    ),
    "a paused job's slots that came due while no daemon ran were on no record": (
        lambda mp: mp.setattr(catalog, "_paused_while_down", lambda *args: []),
        "every_slot_accounted_for",
    ),
    "a claim whose commit the daemon did not hear of left its run running for ever": (
        lambda mp: mp.setattr(RunEnds, "settle_unfollowed", lambda self, now, config: None),
        "running_runs_followed",
    ),
    "an upstream run's end was not kept for its after: job": (
        lambda mp: mp.setattr(outcomes, "record_own_end", lambda *args: None),
        "every_upstream_end_followed",
    ),
    "a stalled daemon wrote after losing its lease, and outcomes were recorded twice (9)": (
        lambda mp: (mp.setattr(Lease, "fence", _no_fence), mp.setattr(outcomes, "recorded_before", lambda run: False)),
        "every_end_on_the_record",
    ),
}
