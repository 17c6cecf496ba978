"""The files watch jobs have seen, recorded with their runs: what makes each file run once.

Like `scheduler.store.ledger`, every function works inside the caller's write transaction, so a
file's record, its run row and their audit events commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from scheduler.config.model import Config
from scheduler.policy.file_runs import Dispatch, FileSeen, file_request
from scheduler.store import fires
from scheduler.store.audit import Event, append
from scheduler.store.schema import jobs, watched_files

WATCHER = "watcher"


class Known(NamedTuple):
    """What a watch job recorded about a path: the newest version, size and mtime."""

    version: str
    size: int
    mtime_ns: int


def load_known(conn: Connection, job: str, details: bool = True) -> dict[str, Known | None]:
    """The paths a watch job recorded; with `details`, what was recorded last for each.

    Without details only the names are loaded (on_modified: ignore needs no more), which keeps
    a folder of 100,000 seen files cheap to start on and to hold in memory."""
    if not details:
        query = select(watched_files.c.path).where(watched_files.c.job == job)
        return dict.fromkeys(conn.execute(query).scalars())
    rows = conn.execute(
        select(watched_files.c.path, watched_files.c.version, watched_files.c.size, watched_files.c.mtime_ns)
        .where(watched_files.c.job == job)
        .order_by(watched_files.c.id)
    )
    return {path: Known(version, size, mtime_ns) for path, version, size, mtime_ns in rows}


@dataclass(frozen=True)
class FilesFired:
    fired: fires.FireResult
    held: list[Dispatch]  # dispatches of paused jobs: not recorded, dispatched again after resume
    already_seen: int  # files another dispatch had recorded already


def fire_files(
    conn: Connection, dispatches: list[Dispatch], config: Config, now: datetime, grace: timedelta
) -> FilesFired:
    """Record each dispatch's files and fire its run; files recorded before are dropped from it."""
    names = {d.job for d in dispatches}
    paused = set(conn.execute(select(jobs.c.name).where(jobs.c.name.in_(names), jobs.c.paused)).scalars())
    held = [d for d in dispatches if d.job in paused]
    live = [d for d in dispatches if d.job not in paused and d.job in config.jobs]
    wanted = {(d.job, seen.rel, seen.version) for d in live for seen in d.files}
    recorded = _recorded(conn, wanted)
    requests, rows, dropped, events = [], [], 0, []
    for dispatch in live:
        fresh = tuple(seen for seen in dispatch.files if (dispatch.job, seen.rel, seen.version) not in recorded)
        seen_before = [seen for seen in dispatch.files if (dispatch.job, seen.rel, seen.version) in recorded]
        dropped += len(seen_before)
        events += [
            Event("file-already-seen", WATCHER, dispatch.job, None, config.revision,
                  {"file": seen.rel, "identity": seen.identity, "reason": "recorded before; not run again"})
            for seen in seen_before
        ]  # fmt: skip
        if not fresh:
            continue
        dispatch = replace(dispatch, files=fresh)
        request = file_request(config.jobs[dispatch.job], dispatch)
        requests.append(request)
        status = "skipped" if dispatch.skip else "dispatched"
        rows += [_row(dispatch.job, seen, request.run_key, status, now) for seen in fresh]
        recorded |= {(dispatch.job, seen.rel, seen.version) for seen in fresh}
    if rows:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(watched_files).on_conflict_do_nothing(), rows)
    append(conn, now, events)
    fired = fires.fire(conn, requests, config, now, grace)
    return FilesFired(fired, held, dropped)


def _recorded(conn: Connection, wanted: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    items = sorted(wanted)
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        key = tuple_(watched_files.c.job, watched_files.c.path, watched_files.c.version)
        query = select(watched_files.c.job, watched_files.c.path, watched_files.c.version).where(key.in_(chunk))
        found |= {(row.job, row.path, row.version) for row in conn.execute(query)}
    return found


def _row(job: str, seen: FileSeen, run_key: str, status: str, now: datetime) -> dict[str, Any]:
    return {"job": job, "path": seen.rel, "version": seen.version, "size": seen.size, "mtime_ns": seen.mtime_ns,
            "run_key": run_key, "status": status, "seen_at": now}  # fmt: skip


@dataclass(frozen=True)
class Notice:
    """Something a watcher noticed that belongs on the record: watch-started, watch-error,
    file-refused, file-modified-ignored."""

    job: str
    event: str
    details: dict[str, Any]


def record_notices(conn: Connection, notices: list[Notice], revision: str, now: datetime) -> None:
    append(conn, now, [Event(n.event, WATCHER, n.job, None, revision, n.details) for n in notices])
