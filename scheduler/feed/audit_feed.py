"""Follow the audit table as it grows and hand each committed event to subscribers.

Metrics and webhooks are both "react to what happened", and the audit trail is the one place
where everything that happened is written, by the daemon, its API threads and the CLI alike,
and only once committed. So they read it here instead of being called from every code path:
a `zenml-scheduler pause` typed on another terminal reaches a webhook the same way an
automatic pause does. Subscribers run on the follower's thread and must not block.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import DBAPIError

from scheduler import tuning
from scheduler.errors import StateError
from scheduler.store.db_errors import first_line
from scheduler.store.engine import Store
from scheduler.store.schema import audit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditRecord:
    """One committed audit event, as subscribers see it."""

    id: int
    at: datetime
    event: str
    source: str
    job: str | None
    run_key: str | None
    config_revision: str | None
    details: dict[str, Any]


Subscriber = Callable[[Sequence[AuditRecord]], None]


def head_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(audit.c.id), 0))).scalar_one())


def records_after(conn: Connection, after: int, limit: int = tuning.FEED_BATCH) -> list[AuditRecord]:
    rows = conn.execute(select(audit).where(audit.c.id > after).order_by(audit.c.id).limit(limit)).all()
    return [
        AuditRecord(r.id, r.at, r.event, r.source, r.job, r.run_key, r.config_revision, json.loads(r.details))
        for r in rows
    ]


class AuditFeed:
    """A thread that polls for events newer than the last one seen (from the head at `start`)."""

    def __init__(self, store: Store, subscribers: Sequence[Subscriber], poll: float = tuning.FEED_POLL_S) -> None:
        self.store = store
        self.subscribers = list(subscribers)
        self.poll = poll
        self.last_id = 0
        self._stop = threading.Event()
        # One step at a time: the final flush in `stop` may overlap a step still running on the
        # thread (join timed out), and two steps reading the same `last_id` would deliver twice.
        self._step_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._database_away = False  # said once per outage, not at every poll

    def start(self, from_id: int | None = None) -> None:
        """Follow events after `from_id` (default: the current head, so only new events)."""
        if from_id is None:
            with self.store.read() as conn:
                from_id = head_id(conn)
        self.last_id = from_id
        self._thread = threading.Thread(target=self._loop, name="audit-feed", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                more = self.step()
                if self._database_away:
                    log.info("audit feed: the state database answers again")
                self._database_away = False
            except StateError as exc:  # an unusable database: the daemon's loop meets it too, says so and stops
                log.debug("audit feed step failed: %s", exc)
                more = False
            except DBAPIError as exc:  # the database is away: the next poll tries again
                if not self._database_away:
                    log.warning("audit feed: the state database does not answer, retrying: %s", first_line(exc.orig))
                self._database_away = True
                more = False
            except Exception:  # nor must anything else (a bug) end the feed
                log.exception("audit feed step failed; retrying")
                more = False
            if not more:
                self._stop.wait(self.poll)

    def step(self) -> bool:
        """Deliver one batch of new events; True when there may be more right away."""
        with self._step_lock:
            with self.store.read() as conn:
                batch = records_after(conn, self.last_id)
            if not batch:
                return False
            self.last_id = batch[-1].id
            for subscriber in self.subscribers:
                try:
                    subscriber(batch)
                except Exception:
                    log.exception("audit subscriber %r failed on events %d..%d", subscriber, batch[0].id, batch[-1].id)
            return len(batch) == tuning.FEED_BATCH

    def stop(self) -> None:
        """Deliver what is already committed, then end the thread (nothing to do if never started)."""
        self._stop.set()
        if self._thread is None:
            # Never started, so `last_id` is still 0: a flush would replay the whole history.
            return
        self._thread.join(timeout=tuning.THREAD_STOP_S)
        if self._thread.is_alive():
            log.warning("audit feed thread still busy after 5s; the final flush waits for its step")
        self._thread = None
        try:
            while self.step():
                pass
        except StateError as exc:  # said by the daemon's loop, which stopped on it
            log.debug("audit feed final step failed: %s", exc)
        except DBAPIError as exc:
            log.warning("audit feed: the last events are not delivered, the state database does not answer: %s",
                        first_line(exc.orig))  # fmt: skip
        except Exception:
            log.exception("audit feed final step failed")
