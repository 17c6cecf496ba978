"""One daemon per state database: a lease row with a heartbeat, and the fence that makes every
write of the daemon check, in its own transaction, that it still holds it.

A lease is free when its heartbeat is older than the TTL, or when its holder ran on this host
and that process is gone (so a restart after kill -9 is not blocked by a dead holder). A daemon
that was stalled (SIGSTOP, a VM pause) past the TTL may find its lease taken when it wakes: its
first write then fails with LeaseLostError instead of firing, claiming or recording anything.

On PostgreSQL, where daemons on several machines share one database, the lease keeps the
database's clock: heartbeat times are written and liveness is judged with `clock_timestamp()`
read inside the lease's own transaction, so skew between hosts can neither expire a live leader
nor keep a dead one. SQLite serves one host, whose clock is the only one. Every acquisition
raises the row's `epoch` by one, and the fence checks the epoch this daemon took along with its
token. A holder that could not renew for two thirds of the TTL launches nothing (`confirm`).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from sqlalchemy import Connection, func, insert, select, update

from scheduler.errors import LeaseHeldError, LeaseLostError
from scheduler.runs.procs import process_alive, process_start_ticks
from scheduler.store.audit import Event, append
from scheduler.store.engine import Store
from scheduler.store.schema import lease

LEASE_ID = 1
Alive = Callable[[int, "str | None"], bool]
Clock = Literal["database", "host"]
SELF_FENCE_FRACTION = 2 / 3  # unrenewed this long (of the TTL), a holder launches nothing: 1/3 of margin remains


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    epoch: int = 0
    heartbeat_age_s: float = 0.0  # by the clock the lease keeps (the database's on PostgreSQL)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, running since {self.started_at.isoformat(timespec='seconds')}"


def default_clock(store: Store) -> Clock:
    """The clock a lease on `store` keeps: the database's on PostgreSQL, the host's on SQLite."""
    return "host" if store.is_sqlite else "database"


def lease_now(conn: Connection, host_now: datetime, clock: Clock) -> datetime:
    """The time by the lease's clock, read inside the caller's transaction."""
    if clock == "host":
        return host_now
    # clock_timestamp(), not now(): the transaction may have waited for the row lock.
    value: datetime = conn.execute(select(func.clock_timestamp())).scalar_one()
    return value.astimezone(timezone.utc)


def _holder(row: Any, at: datetime) -> Holder:
    return Holder(
        row.host, row.pid, row.started_at, row.heartbeat_at, row.epoch, (at - row.heartbeat_at).total_seconds()
    )


def current_holder(
    store: Store, now: datetime, ttl: timedelta, alive: Alive = process_alive, clock: Clock | None = None
) -> Holder | None:
    """The live holder of the lease, or None when no daemon holds it. `now` is the host's time,
    used only where the lease keeps the host's clock (SQLite, unless `clock` says otherwise)."""
    with store.read() as conn:
        at = lease_now(conn, now, clock or default_clock(store))
        row = conn.execute(select(lease).where(lease.c.id == LEASE_ID)).first()
    if row is None or not _is_live(row, at, ttl, alive):
        return None
    return _holder(row, at)


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
        clock: Clock | None = None,
        elections: bool = False,
    ) -> None:
        """`clock` is the one liveness is judged by (default: `default_clock`); with `elections`
        (a daemon run with --standby) each acquisition is audited as `leader-elected` too."""
        self.store = store
        self.ttl = ttl
        self.config_path = config_path
        self.token = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self.alive = alive
        self.monotonic = monotonic
        self.clock: Clock = clock or default_clock(store)
        self.elections = elections
        self.held = False
        self.epoch: int | None = None  # the epoch this daemon took the lease at
        self.confirmed_at = -float("inf")  # monotonic time this daemon last saw itself holding the lease
        # Monotonic time the last renewal that committed began: the lease lasts at least TTL from it.
        self.renewed_at = -float("inf")

    def acquire(self, now: datetime) -> None:
        """Take the lease (LeaseHeldError when a live daemon holds it) and fence the store with it."""
        began = self.monotonic()
        with self.store.write(fenced=False) as conn:
            if not self.store.is_sqlite:
                conn.execute(select(lease.c.id).where(lease.c.id == LEASE_ID).with_for_update())
            at = lease_now(conn, now, self.clock)
            row = conn.execute(select(lease).where(lease.c.id == LEASE_ID)).first()
            if row is not None and _is_live(row, at, self.ttl, self.alive):
                holder = _holder(row, at)
                raise LeaseHeldError(
                    f"another zenml-scheduler daemon already runs on this state database: {holder.describe()}, "
                    f"last heartbeat {holder.heartbeat_at.isoformat(timespec='seconds')}. "
                    "Stop it first, or use another --db-url."
                )
            epoch = (row.epoch if row is not None else 0) + 1
            values = {
                "holder": self.token,
                "host": self.host,
                "pid": self.pid,
                "pid_start": process_start_ticks(self.pid) if self.pid == os.getpid() else None,
                "started_at": at,
                "heartbeat_at": at,
                "config_path": self.config_path,
                "epoch": epoch,
            }
            if row is None:
                conn.execute(insert(lease).values(id=LEASE_ID, **values))
            else:
                conn.execute(update(lease).where(lease.c.id == LEASE_ID).values(**values))
            details: dict[str, Any] = {"host": self.host, "pid": self.pid}
            previous = None
            if row is not None and row.holder:
                previous = {"host": row.host, "pid": row.pid, "heartbeat_at": row.heartbeat_at.isoformat()}
                details["previous"] = previous
            events = [Event("daemon-started", "daemon", details=details)]
            if self.elections:
                elected = {"epoch": epoch, "host": self.host, "pid": self.pid, "previous": previous}
                events.append(Event("leader-elected", "daemon", details=elected))
            append(conn, now, events)
        self.held, self.epoch, self.confirmed_at, self.renewed_at = True, epoch, self.monotonic(), began
        self.store.pin_file()
        self.store.fence = self.fence

    def fence(self, conn: Connection) -> None:
        """Inside a write transaction: raise LeaseLostError unless this daemon still holds the lease.
        On PostgreSQL the row is locked for the transaction, so a takeover waits for it to end."""
        query = select(lease.c.holder, lease.c.host, lease.c.pid, lease.c.epoch).where(lease.c.id == LEASE_ID)
        if not self.store.is_sqlite:
            query = query.with_for_update(read=True)
        row = conn.execute(query).first()
        if row is None or row.holder != self.token or row.epoch != self.epoch:
            self.held = False
            taker = f" to pid {row.pid} on {row.host} (epoch {row.epoch})" if row is not None and row.holder else ""
            raise LeaseLostError(
                f"this daemon (pid {self.pid} on {self.host}, epoch {self.epoch}) lost its lease on the state "
                f"database{taker}; it fires, claims and records nothing more and stops"
            )
        self.confirmed_at = self.monotonic()

    def heartbeat(self, now: datetime) -> None:
        """Refresh the lease; raise LeaseLostError if another daemon took it over (we must stop)."""
        began = self.monotonic()
        with self.store.write(fenced=False) as conn:
            self.store.check_file()
            self.fence(conn)
            conn.execute(
                update(lease)
                .where(lease.c.id == LEASE_ID, lease.c.holder == self.token)
                .values(heartbeat_at=lease_now(conn, now, self.clock))
            )
        self.renewed_at = began

    @property
    def overdue(self) -> bool:
        """Unrenewed for two thirds of the TTL: another daemon may take the lease soon, so this
        one must not act as the leader until a renewal commits."""
        return self.monotonic() - self.renewed_at > self.ttl.total_seconds() * SELF_FENCE_FRACTION

    def confirm(self, now: datetime, within: float) -> None:
        """Make sure the lease was held `within` seconds ago; renew it now otherwise. Called right
        before a child is spawned, so a daemon that was stalled since it claimed a run finds out
        it lost the lease before launching, not after. Past two thirds of the TTL without a
        renewal it renews whatever was confirmed since, so a renewal that fails means no launch."""
        if self.monotonic() - self.confirmed_at > within or self.overdue:
            self.heartbeat(now)

    def release(self, now: datetime) -> None:
        """Give the lease up, on the record; a daemon that lost it has nothing to release."""
        if not self.held:
            return
        with self.store.write(fenced=False) as conn:
            result = conn.execute(
                update(lease)
                .where(lease.c.id == LEASE_ID, lease.c.holder == self.token)
                .values(holder="", heartbeat_at=lease_now(conn, now, self.clock))
            )
            if result.rowcount == 1:
                append(conn, now, [Event("daemon-stopped", "daemon", details={"host": self.host, "pid": self.pid})])
        self.held = False
        self.store.fence = None
