"""One daemon per state database: a lease row with a heartbeat.

A lease is free when its heartbeat is older than the TTL, or when its holder ran on this host
and that process is gone (so a restart after kill -9 is not blocked by a dead holder).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from scheduler.errors import LeaseHeldError, StateError
from scheduler.runs.procs import process_alive, process_start_ticks
from scheduler.store.audit import Event, append
from scheduler.store.engine import Store
from scheduler.store.schema import lease

LEASE_ID = 1


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, running since {self.started_at.isoformat(timespec='seconds')}"


def current_holder(store: Store, now: datetime, ttl: timedelta) -> Holder | None:
    """The live holder of the lease, or None when no daemon holds it."""
    with store.read() as conn:
        row = conn.execute(select(lease).where(lease.c.id == LEASE_ID)).first()
    if row is None or not _is_live(row, now, ttl):
        return None
    return Holder(row.host, row.pid, row.started_at, row.heartbeat_at)


def _is_live(row: object, now: datetime, ttl: timedelta) -> bool:
    if getattr(row, "holder", "") == "":
        return False
    if now - row.heartbeat_at > ttl:  # type: ignore[attr-defined]
        return False
    if row.host == socket.gethostname():  # type: ignore[attr-defined]
        return process_alive(row.pid, row.pid_start)  # type: ignore[attr-defined]
    return True


class Lease:
    def __init__(self, store: Store, ttl: timedelta, config_path: str) -> None:
        self.store = store
        self.ttl = ttl
        self.config_path = config_path
        self.token = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid()

    def acquire(self, now: datetime) -> None:
        with self.store.write() as conn:
            if not self.store.is_sqlite:
                conn.execute(select(lease.c.id).where(lease.c.id == LEASE_ID).with_for_update())
            row = conn.execute(select(lease).where(lease.c.id == LEASE_ID)).first()
            if row is not None and _is_live(row, now, self.ttl):
                holder = Holder(row.host, row.pid, row.started_at, row.heartbeat_at)
                raise LeaseHeldError(
                    f"another zenml-scheduler daemon already runs on this state database: {holder.describe()}, "
                    f"last heartbeat {holder.heartbeat_at.isoformat(timespec='seconds')}. "
                    "Stop it first, or use another --db-url."
                )
            values = {
                "holder": self.token,
                "host": self.host,
                "pid": self.pid,
                "pid_start": process_start_ticks(self.pid),
                "started_at": now,
                "heartbeat_at": now,
                "config_path": self.config_path,
            }
            if row is None:
                conn.execute(insert(lease).values(id=LEASE_ID, **values))
            else:
                conn.execute(update(lease).where(lease.c.id == LEASE_ID).values(**values))
            details = {"host": self.host, "pid": self.pid}
            if row is not None and row.holder:
                details["previous"] = {"host": row.host, "pid": row.pid, "heartbeat_at": row.heartbeat_at.isoformat()}
            append(conn, now, [Event("daemon-started", "daemon", details=details)])

    def heartbeat(self, now: datetime) -> None:
        """Refresh the lease; raise StateError if another daemon took it over (we must stop)."""
        with self.store.write() as conn:
            result = conn.execute(
                update(lease).where(lease.c.id == LEASE_ID, lease.c.holder == self.token).values(heartbeat_at=now)
            )
            if result.rowcount != 1:
                raise StateError("this daemon lost its lease on the state database to another daemon")

    def release(self, now: datetime) -> None:
        with self.store.write() as conn:
            conn.execute(
                update(lease)
                .where(lease.c.id == LEASE_ID, lease.c.holder == self.token)
                .values(holder="", heartbeat_at=now)
            )
            append(conn, now, [Event("daemon-stopped", "daemon", details={"host": self.host, "pid": self.pid})])
