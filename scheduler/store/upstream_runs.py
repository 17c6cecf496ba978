"""Ended runs that `after:` triggers look at, on the record: ours as their outcome is recorded,
ZenML's as the follower reads them (with the cursor it reads from), the debounced matches still
waiting, and the follower's state for `health`.

Every function works inside the caller's write transaction, like `scheduler.store.ledger`: an
upstream run is stored with the outcome (or the cursor step) that made it known, and handled in
the transaction that records what it fired, so a crash anywhere between loses or repeats nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from scheduler.child.protocol import FollowedRun
from scheduler.config.model import Config
from scheduler.store.schema import after_pending, meta, runs, upstream_runs

CURSOR_KEY = "follower_cursor"  # the ZenML end time the follower reads from (ISO 8601)
FLOOR_KEY = "follower_floor"  # runs that ended before the first cursor are history, never fired for
STATE_KEY = "follower_state"  # JSON: what `health --json` says about the follower
HANDLED_KEPT = timedelta(days=7)


@dataclass(frozen=True)
class UpstreamRun:
    id: int
    key: str
    origin: str  # ours | zenml
    job: str | None
    pipeline: str | None
    zenml_run_id: str | None
    status: str
    finished_at: datetime
    view: dict[str, Any]
    chain: tuple[str, ...]
    catchup: bool
    received_at: datetime

    @property
    def upstream_id(self) -> str:
        """What a downstream run names as its upstream: the ZenML run id, or our run key and attempt."""
        if self.zenml_run_id:
            return self.zenml_run_id
        return f"{self.view.get('run_key')}#{self.view.get('attempt', 1)}"


def pipeline_name(config: Config, job: str) -> str:
    """The ZenML pipeline name of `job`: as the pipeline check found it, else the attribute's name
    (ZenML's default name for a pipeline is its function's)."""
    found = config.jobs[job].spec.pipeline
    described = config.pipelines.get(found) or {}
    return str(described.get("name") or found.rsplit(":", 1)[1])


def record_own_end(conn: Connection, run: Any, status: str, zenml_run_id: str | None, config: Config,
                   now: datetime) -> None:  # fmt: skip
    """Our run `run` (a `runs` row) ended with `status` for good: if a job of `config` runs after
    its job, put it on the record for the after triggers."""
    if not any(job.spec.after is not None and job.spec.after.job == run.job for job in config.jobs.values()):
        return
    launch = json.loads(run.parameters_json) if run.parameters_json else {}
    duration = (now - run.started_at).total_seconds() if run.started_at else None
    view = {
        "status": status, "job": run.job, "pipeline": pipeline_name(config, run.job) if run.job in config.jobs
        else None, "run_key": run.run_key, "attempt": run.attempt, "zenml_run_id": zenml_run_id,
        "zenml_run_name": run.zenml_run_name, "parameters": launch.get("parameters") or {}, "metadata": {},
        "steps": {}, "artifacts": {}, "duration_s": duration, "finished_at": now.isoformat(),
    }  # fmt: skip
    _insert(conn, [{
        "key": f"run:{run.id}", "origin": "ours", "job": run.job, "pipeline": view["pipeline"],
        "zenml_run_id": zenml_run_id, "zenml_run_name": run.zenml_run_name, "status": status, "finished_at": now,
        "view_json": json.dumps(view), "chain_json": run.chain_json, "catchup": False, "received_at": now,
    }])  # fmt: skip


def store_followed(conn: Connection, found: Sequence[FollowedRun], watched: set[str], started_at: datetime,
                   now: datetime) -> int:  # fmt: skip
    """Store the ended ZenML runs the follower read that an after trigger may look at: runs of a
    `watched` pipeline, and runs of our own jobs (their metadata and outputs). Advance the cursor
    past all of them; return how many were new."""
    if not found:
        return 0
    floor = _meta_time(conn, FLOOR_KEY)
    names = [run.zenml_run_name for run in found]
    ours = {
        row.zenml_run_name: row
        for row in conn.execute(
            select(runs.c.zenml_run_name, runs.c.job, runs.c.run_key, runs.c.attempt, runs.c.chain_json).where(
                runs.c.zenml_run_name.in_(names)
            )
        )
    }
    rows = []
    for run in found:
        own = ours.get(run.zenml_run_name)
        if (floor is not None and run.finished_at < floor) or (own is None and run.pipeline not in watched):
            continue
        duration = (run.finished_at - run.started_at).total_seconds() if run.started_at else None
        view = {
            "status": run.status, "job": own.job if own else None, "pipeline": run.pipeline,
            "run_key": own.run_key if own else None, "attempt": own.attempt if own else None,
            "zenml_run_id": run.zenml_run_id, "zenml_run_name": run.zenml_run_name,
            "parameters": run.parameters, "metadata": run.metadata, "steps": run.steps, "artifacts": run.artifacts,
            "duration_s": duration, "finished_at": run.finished_at.isoformat(),
        }  # fmt: skip
        rows.append({
            "key": f"zenml:{run.zenml_run_id}", "origin": "zenml", "job": own.job if own else None,
            "pipeline": run.pipeline, "zenml_run_id": run.zenml_run_id, "zenml_run_name": run.zenml_run_name,
            "status": run.status, "finished_at": run.finished_at, "view_json": json.dumps(view, default=str),
            "chain_json": own.chain_json if own else None, "catchup": run.finished_at < started_at,
            "received_at": now,
        })  # fmt: skip
    newest = max(run.finished_at for run in found)
    current = _meta_time(conn, CURSOR_KEY)
    if current is None or newest > current:
        _set_meta(conn, CURSOR_KEY, newest.isoformat())
    return _insert(conn, rows)


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return len(conn.execute(dialect.insert(upstream_runs).on_conflict_do_nothing().returning(upstream_runs.c.id),
                            rows).all())  # fmt: skip


def start_cursor(conn: Connection, now: datetime) -> datetime:
    """Where the follower starts reading: the stored cursor, or (first start) now, which also
    becomes the floor: runs that ended before this database followed ZenML fire nothing."""
    found = _meta_time(conn, CURSOR_KEY)
    if found is not None:
        return found
    _set_meta(conn, CURSOR_KEY, now.isoformat())
    if _meta_time(conn, FLOOR_KEY) is None:
        _set_meta(conn, FLOOR_KEY, now.isoformat())
    return now


def unhandled(conn: Connection, limit: int) -> list[UpstreamRun]:
    rows = conn.execute(
        select(upstream_runs).where(upstream_runs.c.handled_at.is_(None)).order_by(upstream_runs.c.id).limit(limit)
    ).all()
    return [_upstream(row) for row in rows]


def details_of(conn: Connection, zenml_run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{ZenML run id: its view as the follower read it} for those of `zenml_run_ids` it has read."""
    wanted = [run_id for run_id in zenml_run_ids if run_id]
    if not wanted:
        return {}
    stmt = select(upstream_runs.c.zenml_run_id, upstream_runs.c.view_json).where(
        upstream_runs.c.origin == "zenml", upstream_runs.c.zenml_run_id.in_(wanted)
    )
    return {row.zenml_run_id: json.loads(row.view_json) for row in conn.execute(stmt)}


def mark_handled(conn: Connection, ids: Sequence[int], now: datetime) -> None:
    if ids:
        conn.execute(update(upstream_runs).where(upstream_runs.c.id.in_(list(ids))).values(handled_at=now))


def prune(conn: Connection, now: datetime) -> None:
    """Forget upstream runs handled more than a week ago (their effects are in runs and audit)."""
    conn.execute(delete(upstream_runs).where(upstream_runs.c.handled_at < now - HANDLED_KEPT))


# ---- debounce ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    id: int
    job: str
    upstream_id: str
    finished_at: datetime
    request: dict[str, Any]  # parameters, steps, upstream, chain of the match


def add_pending(conn: Connection, job: str, upstream_id: str, finished_at: datetime, request: dict[str, Any],
                now: datetime) -> None:  # fmt: skip
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    values = {"job": job, "upstream_id": upstream_id, "finished_at": finished_at,
              "request_json": json.dumps(request, default=str), "created_at": now}  # fmt: skip
    conn.execute(dialect.insert(after_pending).values(**values).on_conflict_do_nothing())


def pending(conn: Connection) -> dict[str, list[Pending]]:
    """Debounced matches by job, oldest upstream end first."""
    found: dict[str, list[Pending]] = {}
    for row in conn.execute(select(after_pending).order_by(after_pending.c.finished_at, after_pending.c.id)):
        found.setdefault(row.job, []).append(
            Pending(row.id, row.job, row.upstream_id, row.finished_at, json.loads(row.request_json))
        )
    return found


def drop_pending(conn: Connection, ids: Sequence[int]) -> None:
    if ids:
        conn.execute(delete(after_pending).where(after_pending.c.id.in_(list(ids))))


# ---- the follower's state, for health ------------------------------------------------------------
def write_follower_state(conn: Connection, state: dict[str, Any]) -> None:
    _set_meta(conn, STATE_KEY, json.dumps(state, default=str))


def read_follower_state(conn: Connection) -> dict[str, Any] | None:
    value = conn.execute(select(meta.c.value).where(meta.c.key == STATE_KEY)).scalar_one_or_none()
    try:
        found = json.loads(value) if value else None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _meta_time(conn: Connection, key: str) -> datetime | None:
    value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _set_meta(conn: Connection, key: str, value: str) -> None:
    if conn.execute(update(meta).where(meta.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(insert(meta).values(key=key, value=value))


def _upstream(row: Any) -> UpstreamRun:
    chain = tuple(json.loads(row.chain_json)) if row.chain_json else ()
    view = json.loads(row.view_json)
    return UpstreamRun(row.id, row.key, row.origin, row.job, row.pipeline, row.zenml_run_id, row.status,
                       row.finished_at, view, chain, bool(row.catchup), row.received_at)  # fmt: skip
