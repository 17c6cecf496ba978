"""What the CLI, in another process, asks the running daemon to do through the `requests`
table: manual runs, catch-up after a resume, reloads; and pausing (also from the HTTP API),
whose lifting asks for that catch-up.

Like `scheduler.store.ledger`, every function works inside the caller's write transaction, with its
audit event.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from scheduler import tuning
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.keys import reload_request_key, resume_request_key
from scheduler.store.audit import Event, append
from scheduler.store.schema import jobs, requests


@dataclass(frozen=True)
class Requests:
    runs: list[FireRequest]
    resumed: list[str]  # jobs resumed since: their missed slots are due for catch-up
    reload: bool = False


def take_requests(conn: Connection, now: datetime, limit: int = tuning.INBOX_BATCH) -> Requests:
    """Claim what other processes asked the daemon to do, oldest first."""
    rows = conn.execute(
        select(requests).where(requests.c.handled_at.is_(None)).order_by(requests.c.id).limit(limit)
    ).all()
    if not rows:
        return Requests([], [])
    conn.execute(update(requests).where(requests.c.id.in_([r.id for r in rows])).values(handled_at=now))
    runs_asked = [
        FireRequest(r.job, "manual", r.run_key, r.source, parameters=json.loads(r.parameters_json or "{}"))
        for r in rows
        if r.kind == "run"
    ]
    return Requests(runs_asked, [r.job for r in rows if r.kind == "resume"], any(r.kind == "reload" for r in rows))


def add_request(
    conn: Connection,
    job: str,
    run_key: str,
    parameters: dict[str, Any],
    source: str,
    now: datetime,
    revision: str | None,
) -> None:
    conn.execute(
        insert(requests).values(
            kind="run", job=job, run_key=run_key, parameters_json=json.dumps(parameters), source=source, created_at=now
        )
    )
    append(conn, now, [Event("manual-trigger", source, job, run_key, revision, {"parameters": parameters})])


def set_paused(conn: Connection, job: str, paused: bool, source: str, now: datetime, reason: str | None = None) -> bool:
    """Pause or resume; returns False when the job is unknown. Audited either way it changes."""
    row = conn.execute(select(jobs.c.paused).where(and_(jobs.c.name == job, jobs.c.removed_at.is_(None)))).first()
    if row is None:
        return False
    conn.execute(
        update(jobs)
        .where(jobs.c.name == job)
        .values(paused=paused, paused_reason=reason if paused else None, updated_at=now)
    )
    append(
        conn,
        now,
        [Event("pause" if paused else "resume", source, job, details={"was_paused": row.paused, "reason": reason})],
    )
    if row.paused and not paused:  # tell the daemon, which catches up the slots missed meanwhile
        nonce = uuid.uuid4().hex[:8]
        conn.execute(insert(requests).values(kind="resume", job=job, run_key=resume_request_key(job, now, nonce),
                                             source=source, created_at=now))  # fmt: skip
    return True


def request_reload(conn: Connection, source: str, now: datetime) -> None:
    """Ask the running daemon to reload its config (it validates first, like on a file change)."""
    key = reload_request_key(now, uuid.uuid4().hex[:8])
    conn.execute(insert(requests).values(kind="reload", job="*", run_key=key, source=source, created_at=now))
    append(conn, now, [Event("reload-requested", source)])
