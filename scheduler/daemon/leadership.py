"""What this daemon tells its metrics about its leadership: whether it leads, the epoch it took,
the leader transitions it took part in, and how long ago it renewed the lease.

A process may lead several times (with --standby it leads, is demoted, waits, and leads again);
each time is a new `Daemon` with a new `Lease`, so the transitions are counted by one
`Transitions` the process keeps for its whole life and hands to each of them.
"""

from __future__ import annotations

import math
import threading

from scheduler.daemon.lease import Lease
from scheduler.feed.lease_reading import LeaseReading


class Transitions:
    """Leader transitions of this process: +1 for each lease acquisition recorded as
    `leader-elected` (daemons run with --standby) and +1 for each `leader-demoted` it wrote.
    Counted on the main thread, read on the scraping thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def elected(self) -> None:
        self._add()

    def demoted(self) -> None:
        self._add()

    def _add(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


def lease_reading(lease: Lease, transitions: Transitions) -> LeaseReading:
    """The lease as the metrics show it, read from memory (never the database). `leader` asks for
    a renewal within two thirds of the TTL as well as the lease: past that this daemon launches
    nothing until it renews, and a standby may take over at the TTL, so no two daemons can show
    1 at the same time (their monotonic clocks running at about the same rate)."""
    age = lease.monotonic() - lease.renewed_at
    return LeaseReading(
        leader=lease.held and not lease.overdue,
        epoch=lease.epoch,
        transitions=transitions.count,
        age_s=age if math.isfinite(age) else None,
    )
