"""High availability on PostgreSQL: a daemon started with --standby that finds a live leader
waits, on the record, until the leader's lease lapses; then it starts as any daemon starts. A
leader that lost its lease says so on the record (`leader-demoted`) before it waits again.

Liveness is judged by the lease's clock (the database's, see `scheduler.daemon.lease`), so a
standby on a host whose clock is off takes over neither early nor late.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError

from scheduler import tuning
from scheduler.daemon.lease import Holder, Lease, current_holder
from scheduler.daemon.sd_notify import Notifier
from scheduler.store.audit import Event, append
from scheduler.store.engine import Store
from scheduler.timing.clock import Now, utcnow

log = logging.getLogger(__name__)

STANDBY_ON_SQLITE = (
    "--standby needs a PostgreSQL state database (--db-url postgresql+psycopg://...): a standby on another "
    "machine would need the SQLite file on a network file system, where SQLite's WAL is not safe, and on one "
    "machine a supervisor's restart (systemd Restart=) does the same job"
)


def leader_of(holder: Holder) -> dict[str, object]:
    """The leader as the audit trail and `health --json` name it."""
    return {"host": holder.host, "pid": holder.pid, "epoch": holder.epoch, "since": holder.started_at.isoformat()}


class Standby:
    """Waits while another daemon holds the lease. `host` and `pid` are this process's."""

    def __init__(
        self,
        store: Store,
        ttl: timedelta,
        notifier: Notifier,
        host: str,
        pid: int,
        *,
        now: Now = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.notifier = notifier
        self.host = host
        self.pid = pid
        self.now = now
        self.sleep = sleep
        self._ready_sent = False

    def wait(self) -> None:
        """Return once no live daemon holds the lease. Each leader waited for is audited once
        (`standby-started`); a state database error is logged and the wait goes on."""
        announced: tuple[str, int, int] | None = None
        while True:
            try:
                holder = current_holder(self.store, self.now(), self.ttl)
                if holder is None:
                    return
                if announced != (holder.host, holder.pid, holder.epoch):
                    self._announce(holder)
                    announced = (holder.host, holder.pid, holder.epoch)
            except DBAPIError as exc:
                log.error("standby: state database error, retrying in %.0fs: %s", tuning.DB_RETRY_S, exc.orig)
                self.sleep(tuning.DB_RETRY_S)
                continue
            self.sleep(tuning.STANDBY_POLL_S)

    def _announce(self, holder: Holder) -> None:
        with self.store.write(fenced=False) as conn:
            details = {"host": self.host, "pid": self.pid, "leader": leader_of(holder)}
            append(conn, self.now(), [Event("standby-started", "daemon", details=details)])
        log.info("standby: pid %s on %s leads (epoch %s); taking over if its lease lapses for %.0fs",
                 holder.pid, holder.host, holder.epoch, self.ttl.total_seconds())  # fmt: skip
        status = f"standby of {holder.host}"
        if self._ready_sent:
            self.notifier.status(status)
        else:  # a healthy standby is ready: it does what it is there for
            self.notifier.ready(status)
            self._ready_sent = True


def record_demotion(store: Store, lease: Lease, why: str, then: str, now: datetime) -> None:
    """Say on the record that this daemon no longer leads (`then`: "standby" or "exit"). Written
    outside the fence, which refuses this daemon now; if the database cannot take it, the log has it."""
    details = {"host": lease.host, "pid": lease.pid, "epoch": lease.epoch, "why": why, "then": then}
    try:
        with store.write(fenced=False) as conn:
            append(conn, now, [Event("leader-demoted", "daemon", details=details)])
    except DBAPIError as exc:
        log.error("could not record the demotion in the audit trail: %s", exc.orig)
