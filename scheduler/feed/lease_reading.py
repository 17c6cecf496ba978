"""This daemon's hold on the lease as its metrics show it: plain values the daemon fills in and
`scheduler.feed.metrics` renders, so the metrics need nothing from the daemon's package (and
the daemon imports no Prometheus library unless the API is on)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseReading:
    leader: bool  # holds the lease and renewed it within two thirds of lease_ttl
    epoch: int | None  # the epoch it took the lease at; None before it took one
    transitions: int  # leader-elected and leader-demoted events of this process, over its life
    age_s: float | None  # seconds since it last renewed the lease, by its monotonic clock


LeaseState = Callable[[], LeaseReading]
