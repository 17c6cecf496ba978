"""The audit chain's head in the log: `audit head id=ID hash=HASH` at start, every
AUDIT_HEAD_LOG_S while the chain grows, and at a clean stop.

A copy of the log kept away from the state database (journald, a log shipper) then holds heads
that `audit verify --head ID:HASH` checks the chain against later: a tail cut off together with
its recorded head, or the whole table emptied, leaves the logged head missing from the chain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from scheduler import tuning
from scheduler.store.audit_chain import last_row
from scheduler.store.engine import Store

log = logging.getLogger(__name__)


class HeadLog:
    def __init__(self, store: Store, monotonic: Callable[[], float]) -> None:
        self.store = store
        self.monotonic = monotonic
        self._logged: tuple[int, str] | None = None
        self._next = 0.0

    def write(self, when: str) -> None:
        """Log the head now (`when`: start, periodic, stop)."""
        with self.store.read() as conn:
            head_id, head_hash = last_row(conn)
        self._logged = (head_id, head_hash)
        self._next = self.monotonic() + tuning.AUDIT_HEAD_LOG_S
        log.info(
            "audit head id=%d hash=%s", head_id, head_hash,
            extra={"audit_head": {"id": head_id, "hash": head_hash, "when": when}},
        )  # fmt: skip

    def tick(self) -> None:
        """Log the head when it moved since the last line, at most every AUDIT_HEAD_LOG_S."""
        if self.monotonic() < self._next:
            return
        with self.store.read() as conn:
            head = last_row(conn)
        if head == self._logged:
            self._next = self.monotonic() + tuning.AUDIT_HEAD_LOG_S
            return
        self.write("periodic")
