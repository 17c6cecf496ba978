"""Requests without a valid API key, on the record in aggregate: one audit event per client
address per interval, with counts, instead of one row per request.

Anyone who can reach the port can send those requests (probes of /healthz, wrong keys, scans),
so one row each would let an anonymous client fill the disk through the audit trail: 500 such
requests once wrote 504 rows in a second. Requests made with a valid key stay one event each.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler import tuning
from scheduler.store.audit import Event
from scheduler.timing.clock import utcnow

OTHER_CLIENTS = "(other addresses)"  # past MAX_CLIENTS in one interval, the rest share one count


@dataclass
class _Window:
    opened: float
    first_at: datetime
    last_at: datetime
    count: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)


class AnonymousTally:
    """Thread-safe: requests are added from the server's thread, drained by the audit writer's."""

    def __init__(
        self,
        interval_s: float = tuning.API_ANONYMOUS_AUDIT_S,
        max_clients: int = tuning.API_ANONYMOUS_MAX_CLIENTS,
        now: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.max_clients = max_clients
        self.now = now
        self.monotonic = monotonic
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def add(self, client: str | None, status: int, route: str, reason: str | None) -> None:
        at, opened = self.now(), self.monotonic()
        with self._lock:
            address = client or "(unknown)"
            if address not in self._windows and len(self._windows) >= self.max_clients:
                address = OTHER_CLIENTS
            window = self._windows.get(address)
            if window is None:
                window = self._windows[address] = _Window(opened, at, at)
            window.count += 1
            window.last_at = at
            window.statuses[status] += 1
            if len(window.routes) < 20 or route in window.routes:
                window.routes[route] += 1
            if reason and (len(window.reasons) < 5 or reason in window.reasons):
                window.reasons[reason[:200]] += 1

    def drain(self, everything: bool = False) -> list[Event]:
        """Events for the windows that are `interval_s` old (all of them when `everything`)."""
        cutoff = self.monotonic() - self.interval_s
        with self._lock:
            due = [a for a, w in self._windows.items() if everything or w.opened <= cutoff]
            windows = [(address, self._windows.pop(address)) for address in due]
        return [_event(address, window) for address, window in windows]


def _event(address: str, window: _Window) -> Event:
    details: dict[str, Any] = {
        "client": address,
        "count": window.count,
        "statuses": {str(status): n for status, n in sorted(window.statuses.items())},
        "routes": dict(window.routes.most_common()),
        "first_at": window.first_at.isoformat(),
        "last_at": window.last_at.isoformat(),
    }
    if window.reasons:
        details["reasons"] = dict(window.reasons.most_common())
    return Event("api-requests-anonymous", "api:anonymous", details=details)
