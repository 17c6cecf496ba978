"""One daemon per state database: a lease row with a heartbeat, and the fence that makes every
write of the daemon check, in its own transaction, that it still holds it.

A lease is free when its heartbeat is older than the TTL, or when its holder ran on this host
and that process is gone (so a restart after kill -9 is not blocked by a dead holder). A daemon
that was stalled (SIGSTOP, a VM pause) past the TTL may find its lease taken when it wakes: its
first write then fails with LeaseLostError instead of firing, claiming or recording anything.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from scheduler.errors import LeaseHeldError, LeaseLostError
from scheduler.runs.procs import process_alive, process_start_ticks
from scheduler.store.audit import Event, append
from scheduler.store.engine import Store
from scheduler.store.schema import lease

LEASE_ID = 1
Alive = Callable[[int, "str | None"], bool]


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, running since {self.started_at.isoformat(timespec='seconds')}"


def current_holder(store: Store, now: datetime, ttl: timedelta, alive: Alive = process_alive) -> Holder | None:
    """The live holder of the lease, or None when no daemon holds it."""
    with store.read() as conn:
        row = conn.execute(select(lease).where(lease.c.id == LEASE_ID)).first()
    if row is None or not _is_live(row, now, ttl, alive):
        return None
    return Holder(row.host, row.pid, row.started_at, row.heartbeat_at)


def _is_live(row: object, now: datetime, ttl: timedelta, alive: Alive) -> bool:
    if getattr(row, "holder", "") == "":
        return False
    if now - row.heartbeat_at > ttl:  # type: ignore[attr-defined]
        return False
    if row.host == socket.gethostname():  # type: ignore[attr-defined]
        return alive(row.pid, row.pid_start)  # type: ignore[attr-defined]
    return True


class Lease:
    """This daemon's claim on the state database. `host`, `pid` and `alive` are this process's
    and /proc's unless given (the simulation runs several daemons in one process)."""

    def __init__(
        self,
        store: Store,
        ttl: timedelta,
        config_path: str,
        *,
        pid: int | None = None,
        alive: Alive = process_alive,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.config_path = config_path
        self.token = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self.alive = alive
        self.monotonic = monotonic
        self.held = False
        self.confirmed_at = -float("inf")  # monotonic time this daemon last saw itself holding the lease

    def acquire(self, now: datetime) -> None:
        """Take the lease (LeaseHeldError when a live daemon holds it) and fence the store with it."""
        with self.store.write(fenced=False) as conn:
            if not self.store.is_sqlite:
                conn.execute(select(lease.c.id).where(lease.c.id == LEASE_ID).with_for_update())
            row = conn.execute(select(lease).where(lease.c.id == LEASE_ID)).first()
            if row is not None and _is_live(row, now, self.ttl, self.alive):
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
                "pid_start": process_start_ticks(self.pid) if self.pid == os.getpid() else None,
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
        self.held, self.confirmed_at = True, self.monotonic()
        self.store.pin_file()
        self.store.fence = self.fence

    def fence(self, conn: Connection) -> None:
        """Inside a write transaction: raise LeaseLostError unless this daemon still holds the lease.
        On PostgreSQL the row is locked for the transaction, so a takeover waits for it to end."""
        query = select(lease.c.holder, lease.c.host, lease.c.pid).where(lease.c.id == LEASE_ID)
        if not self.store.is_sqlite:
            query = query.with_for_update(read=True)
        row = conn.execute(query).first()
        if row is None or row.holder != self.token:
            self.held = False
            taker = f" to pid {row.pid} on {row.host}" if row is not None and row.holder else ""
            raise LeaseLostError(
                f"this daemon (pid {self.pid} on {self.host}) lost its lease on the state database{taker}; "
                "it fires, claims and records nothing more and stops"
            )
        self.confirmed_at = self.monotonic()

    def heartbeat(self, now: datetime) -> None:
        """Refresh the lease; raise LeaseLostError if another daemon took it over (we must stop)."""
        with self.store.write(fenced=False) as conn:
            self.store.check_file()
            self.fence(conn)
            conn.execute(
                update(lease).where(lease.c.id == LEASE_ID, lease.c.holder == self.token).values(heartbeat_at=now)
            )

    def confirm(self, now: datetime, within: float) -> None:
        """Make sure the lease was held `within` seconds ago; renew it now otherwise. Called right
        before a child is spawned, so a daemon that was stalled since it claimed a run finds out
        it lost the lease before launching, not after."""
        if self.monotonic() - self.confirmed_at > within:
            self.heartbeat(now)

    def release(self, now: datetime) -> None:
        """Give the lease up, on the record; a daemon that lost it has nothing to release."""
        if not self.held:
            return
        with self.store.write(fenced=False) as conn:
            result = conn.execute(
                update(lease)
                .where(lease.c.id == LEASE_ID, lease.c.holder == self.token)
                .values(holder="", heartbeat_at=now)
            )
            if result.rowcount == 1:
                append(conn, now, [Event("daemon-stopped", "daemon", details={"host": self.host, "pid": self.pid})])
        self.held = False
        self.store.fence = None
