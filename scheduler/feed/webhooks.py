"""Webhooks: POST a signed JSON message to each `notify:` target when a run ends, a slot is
skipped or a job is paused, and audit how each delivery went.

The trigger is the audit trail (through `scheduler.feed.audit_feed`), so a pause typed on the CLI
notifies exactly like an automatic one. The feed's thread only filters and enqueues, in memory;
worker threads read the run record, POST and audit the outcome, so a slow or dead receiver never
delays a fire. Retries wait in a heap ordered by due time rather than in a sleeping worker, so a
receiver in back-off holds up nobody. URLs may carry tokens and are never audited or logged:
targets are named by `NotifyTarget.display`.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from scheduler import tuning
from scheduler.config.model import Config
from scheduler.config.notify_spec import NotifyTarget
from scheduler.feed.audit_feed import AuditRecord
from scheduler.store.audit import Event, append
from scheduler.store.engine import Store
from scheduler.store.run_records import latest_attempt, run_record
from scheduler.timing.clock import utcnow

log = logging.getLogger(__name__)

SOURCE = "webhook"
USER_AGENT = "zenml-scheduler"
RUN_EVENTS = {"run-succeeded": "succeeded", "run-failed": "failed", "run-lost": "failed", "run-timed_out": "timed_out"}


def notify_event(record: AuditRecord) -> str | None:
    """The notify event an audit event stands for, or None when it notifies nobody. Whether a run
    event was its run's final attempt is decided later, against the runs table (`build_payload`)."""
    if record.job is None:
        return None
    if record.event in RUN_EVENTS:
        return RUN_EVENTS[record.event]
    if record.event == "skip":
        # A duplicate is a second request for a slot that is already taken, not a skipped slot.
        return None if record.details.get("code") == "duplicate" else "skipped"
    if record.event == "pause":
        return None if record.details.get("was_paused") else "paused"  # pausing a paused job changes nothing
    if record.event == "auto-pause":
        return "paused"
    return None


def build_payload(conn: Connection, record: AuditRecord, event: str) -> dict[str, Any] | None:
    """The message for `record`, or None when a later attempt of its run exists: a retry was
    scheduled, and it is that retry which will end the slot (and notify)."""
    run = latest_attempt(conn, record.run_key) if record.run_key else None
    attempt = record.details.get("attempt")
    if record.event in RUN_EVENTS and run is not None and isinstance(attempt, int) and run.attempt > attempt:
        return None
    return {
        "event": event,
        "job": record.job,
        "at": record.at.isoformat(),
        "audit_id": record.id,
        "run": run_record(run) if run is not None else None,
        "reason": record.details.get("reason") if event in ("skipped", "paused") else None,
        "details": record.details,
    }


def sign(body: bytes, secret: str) -> str:
    """The `X-Signature` value: HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    """One message to one target, across all its attempts (same id, same body, same signature)."""

    record: AuditRecord
    event: str
    target: NotifyTarget
    config_revision: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    body: bytes | None = None  # built by the first worker that picks the delivery up
    attempts: int = 0

    def audit(self, name: str, **facts: Any) -> Event:
        details = {"target": self.target.display, "event": self.event, "audit_id": self.record.id,
                   "delivery": self.id, **facts}  # fmt: skip
        return Event(name, SOURCE, self.record.job, self.record.run_key, self.config_revision, details)


class AttemptError(Exception):
    """An attempt that did not deliver; `status` is the HTTP status when the receiver answered."""

    def __init__(self, message: str, status: int | None = None, retry: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retry = retry


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a delivery: following it would turn the POST into a GET or
    send the signed body to a host nobody configured. It surfaces as HTTPError (3xx), retried."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSender:
    """Deliver `notify:` webhooks for the audit events the feed hands to `subscriber`.

    `config` returns the current Config on each call, so a reload changes the targets of every
    later event. Call `start()` before the feed starts and `stop()` after the feed stopped.
    """

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        *,
        workers: int = tuning.WEBHOOK_WORKERS,
        max_pending: int = tuning.WEBHOOK_MAX_PENDING,
    ) -> None:
        self.store = store
        self._config = config
        self._workers = workers
        self.max_pending = max_pending
        self._cond = threading.Condition()
        self._ready: deque[Delivery] = deque()
        self._later: list[tuple[float, int, Delivery]] = []  # (due on the monotonic clock, tie-break, delivery)
        self._seq = itertools.count()
        self._dropped: list[tuple[Delivery, str]] = []  # audited by a worker, never on the feed thread
        self._closing = False  # stop() was called: no new deliveries, drain the ready ones
        self._stopped = False  # workers end after their current attempt
        self._threads: list[threading.Thread] = []
        self._opener = urllib.request.build_opener(_NoRedirect)

    def start(self) -> None:
        """Start the worker threads."""
        for index in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"webhook-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def subscriber(self, batch: Sequence[AuditRecord]) -> None:
        """The AuditFeed subscriber: queue one delivery per interested target of each record.
        Memory only (no network, no database), so it returns at once whatever the receivers do."""
        config = self._config()
        with self._cond:
            for record in batch:
                event = notify_event(record)
                job = config.jobs.get(record.job) if event is not None and record.job is not None else None
                for target in job.spec.notify if job is not None else ():
                    if event not in target.events:
                        continue
                    delivery = Delivery(record, event, target, config.revision)
                    if self._closing:
                        self._dropped.append((delivery, "scheduler stopping"))
                    elif len(self._ready) + len(self._later) >= self.max_pending:
                        self._dropped.append((delivery, f"queue full ({self.max_pending} deliveries pending)"))
                    else:
                        self._ready.append(delivery)
            self._cond.notify_all()

    def stop(self, timeout: float = tuning.THREAD_STOP_S) -> None:
        """Take no more deliveries, give the workers up to `timeout` seconds to send the queued
        ones (retries still in back-off are not waited for), then audit everything left as
        webhook-dropped. Returns in about `timeout` even when a receiver hangs: an attempt still in
        flight ends at its own timeout on a daemon thread and is audited then."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._stopped = True
            left = [*self._dropped, *((d, "scheduler stopped") for d in self._ready)]
            left += [(d, "scheduler stopped before the retry was due") for _, _, d in self._later]
            self._dropped, self._ready, self._later = [], deque(), []
            self._cond.notify_all()
        self._threads = []
        self._audit([delivery.audit("webhook-dropped", reason=reason) for delivery, reason in left])

    def _next(self) -> tuple[list[tuple[Delivery, str]], Delivery | None] | None:
        """Wait for work: drops to audit and/or a delivery (due retries first); None to exit."""
        with self._cond:
            while not self._stopped:
                dropped, self._dropped = self._dropped, []
                now = time.monotonic()
                delivery = None
                if self._later and self._later[0][0] <= now:
                    delivery = heapq.heappop(self._later)[2]
                elif self._ready:
                    delivery = self._ready.popleft()
                if delivery is not None or dropped:
                    return dropped, delivery
                if self._closing:
                    return None
                self._cond.wait(self._later[0][0] - now if self._later else None)
            return None

    def _work(self) -> None:
        while (work := self._next()) is not None:
            dropped, delivery = work
            self._audit([d.audit("webhook-dropped", reason=reason) for d, reason in dropped])
            if delivery is None:
                continue
            try:
                self._attempt(delivery)
            except Exception as exc:  # a bug or a database outage must not end the worker
                log.exception("webhook delivery %s failed unexpectedly", delivery.id)
                self._audit([delivery.audit("webhook-failed", attempts=delivery.attempts, status=None,
                                            error=f"internal error: {type(exc).__name__}")])  # fmt: skip

    def _attempt(self, delivery: Delivery) -> None:
        if delivery.body is None:
            with self.store.read() as conn:
                payload = build_payload(conn, delivery.record, delivery.event)
            if payload is None:
                return  # not the run's final attempt
            delivery.body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        delivery.attempts += 1
        started = time.monotonic()
        error: AttemptError | None = None
        try:
            status: int | None = self._post(delivery)
        except AttemptError as exc:
            status, error = exc.status, exc
        facts = {"status": status, "elapsed_ms": round((time.monotonic() - started) * 1000)}
        if error is None:
            self._audit([delivery.audit("webhook-delivered", attempt=delivery.attempts, **facts)])
        elif not error.retry or delivery.attempts > delivery.target.retries:
            self._audit([delivery.audit("webhook-failed", attempts=delivery.attempts, error=str(error), **facts)])
        else:
            self._retry(delivery, {"attempt": delivery.attempts, "error": str(error), **facts})

    def _retry(self, delivery: Delivery, facts: dict[str, Any]) -> None:
        """Put a failed delivery in the heap for its back-off; no worker sleeps through it."""
        delay = delivery.target.delay(delivery.attempts)
        # Audited before it is queued, so the retry's own outcome can never be recorded first.
        self._audit([delivery.audit("webhook-attempt-failed", retry_in_s=delay, **facts)])
        with self._cond:
            stopped = self._stopped
            if not stopped:
                heapq.heappush(self._later, (time.monotonic() + delay, next(self._seq), delivery))
                self._cond.notify_all()
        if stopped:
            self._audit([delivery.audit("webhook-dropped", reason="scheduler stopped before the retry was due")])

    def _post(self, delivery: Delivery) -> int:
        """One POST; the 2xx status, or AttemptError with a message that never names the URL."""
        target, body = delivery.target, delivery.body
        assert body is not None
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-ZenML-Scheduler-Event": delivery.event,
            "X-ZenML-Scheduler-Delivery": delivery.id,
        }
        if target.secret_env is not None:
            secret = os.environ.get(target.secret_env)
            if not secret:  # checked at load; the environment changed since, and unsigned is not an option
                raise AttemptError(f"environment variable {target.secret_env} is not set", retry=False)
            headers["X-Signature"] = sign(body, secret)
        request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=target.timeout_s) as response:
                response.read(65536)  # drain a little so the connection closes cleanly; the body is ignored
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise AttemptError(f"HTTP {exc.code} {exc.reason}"[: tuning.WEBHOOK_MAX_ERROR], status=exc.code) from None
        except urllib.error.URLError as exc:
            raise AttemptError(_scrub(exc.reason, target)) from None
        except TimeoutError:
            raise AttemptError(f"timed out after {target.timeout_s:g}s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise AttemptError(_scrub(exc, target)) from None

    def _audit(self, events: list[Event]) -> None:
        if not events:
            return
        try:
            with self.store.write() as conn:
                append(conn, utcnow(), events)
        except Exception:
            log.exception("could not audit %d webhook event(s)", len(events))


def _scrub(reason: object, target: NotifyTarget) -> str:
    """An error message fit for the audit: the URL (and its token) replaced by the target's name."""
    if isinstance(reason, TimeoutError):
        return f"timed out after {target.timeout_s:g}s"
    text = reason if isinstance(reason, str) else f"{type(reason).__name__}: {reason}"
    return text.replace(target.url, target.display)[: tuning.WEBHOOK_MAX_ERROR]
