"""Prometheus metrics for the daemon, rendered for the HTTP API's GET /metrics.

Nearly everything is derived from the audit trail: `Metrics.observe` is an `AuditFeed`
subscriber, so a fire, skip, run outcome or reload is counted once it is committed, whichever
process or thread wrote it. The two run gauges are read from the runs table at scrape time, the
lease metrics from this daemon's lease (a `LeaseReading`) at scrape time, and API requests are
counted by the API's middleware. Counters count from daemon start.

Metrics live in a private registry, so several `Metrics` (tests, or a second daemon in one
process) never collide and nothing leaks into prometheus_client's global registry.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from scheduler.feed.audit_feed import AuditRecord
from scheduler.feed.lease_reading import LeaseReading, LeaseState

log = logging.getLogger(__name__)

# The classic text format (0.0.4) that every Prometheus-compatible scraper reads; what
# `generate_latest` writes for these plain metric names is exactly that format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# From "on time" (tens of ms of timer slack) to "fired much later" (a catch-up after downtime).
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)
# Pipeline runs take seconds to hours.
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)

# Only slots the daemon itself planned have a due time; a manual or file-triggered run has none.
LAG_TRIGGERS = frozenset({"schedule", "catchup"})
# The final statuses `record_outcome` writes as `run-<status>`; anything else is not a run end.
RUN_STATUSES = frozenset({"succeeded", "failed", "timed_out", "cancelled", "lost"})

RunCounts = Callable[[], tuple[int, int]]


class Metrics:
    """The daemon's metrics.

    `run_counts` returns (running, queued) and is called once per scrape, on the scraping
    thread, for the `runs_running` and `runs_queued` gauges. `lease`, when given, is called once
    per scrape too, for the `zenml_scheduler_leader*` and `zenml_scheduler_lease_*` metrics; it
    must be cheap and must not block (it reads memory, not the database). `process_metrics` adds
    the standard process_* metrics (CPU, memory, file descriptors; Linux only, empty elsewhere).

    Thread-safe: prometheus_client's metrics lock internally and this class keeps no other
    mutable state, so `observe` (feed thread), `api_request` (server threads) and `render`
    (any thread) may run concurrently.
    """

    def __init__(self, run_counts: RunCounts, *, lease: LeaseState | None = None, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.fires = Counter(
            "fires", "Slots decided, by job and outcome: fired, or the skip code", ["job", "outcome"], registry=r
        )
        self.fire_lag = Histogram(
            "fire_lag_seconds", "Delay from a scheduled slot's due time to its fire", buckets=LAG_BUCKETS, registry=r
        )
        self.run_duration = Histogram(
            "run_duration_seconds",
            "Duration of finished runs, from start to end, by job and final status",
            ["job", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.audit_events = Counter("audit_events", "Audit events committed", registry=r)
        self.config_reloads = Counter(
            "config_reloads", "Config reloads, by result: applied or rejected", ["result"], registry=r
        )
        self.api_requests = Counter(
            "api_requests", "HTTP API requests, by route template and status code", ["route", "status"], registry=r
        )
        # Both results exist from the start, so rate() and alerts on "rejected" see a 0 first.
        for result in ("applied", "rejected"):
            self.config_reloads.labels(result=result)
        r.register(_RunGauges(run_counts))
        if lease is not None:
            r.register(_LeaseMetrics(lease))
        if process_metrics:
            ProcessCollector(registry=r)

    def observe(self, records: Sequence[AuditRecord]) -> None:
        """Count a batch of committed audit events (an `AuditFeed` subscriber)."""
        for record in records:
            self.audit_events.inc()
            details = record.details
            job = record.job or ""
            if record.event == "fire":
                self.fires.labels(job=job, outcome="fired").inc()
                lag = _lag_seconds(record)
                if lag is not None:
                    self.fire_lag.observe(lag)
            elif record.event == "skip":
                # One skip event can stand for many slots ("count": N missed while down), and the
                # metric counts slots, so it agrees with the per-slot events however they are grouped.
                outcome = str(details.get("code") or "unknown")
                self.fires.labels(job=job, outcome=outcome).inc(_slot_count(details))
            elif record.event.startswith("run-") and record.event[4:] in RUN_STATUSES:
                duration = _number(details.get("duration_s"))
                if duration is not None:
                    self.run_duration.labels(job=job, status=record.event[4:]).observe(max(0.0, duration))
            elif record.event in ("config-loaded", "config-rejected") and record.source == "reload":
                # The config loaded at start has source "daemon"; only reloads count here.
                result = "applied" if record.event == "config-loaded" else "rejected"
                self.config_reloads.labels(result=result).inc()

    def api_request(self, route: str, status: int) -> None:
        """Count one API request; `route` must be the route template (bounded), not the raw path."""
        self.api_requests.labels(route=route, status=str(status)).inc()

    def render(self) -> tuple[bytes, str]:
        """The current metrics in Prometheus text format, and the Content-Type to serve them with."""
        return generate_latest(_WithoutCreated(self.registry)), CONTENT_TYPE


class _WithoutCreated:
    """The registry minus the `*_created` series prometheus_client adds to every counter and
    histogram child: they would double the series count, and every counter here starts at daemon
    start anyway (process_start_time_seconds)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self.registry.collect():  # fresh objects on every collect, safe to trim
            family.samples = [sample for sample in family.samples if not sample.name.endswith("_created")]
            yield family


class _RunGauges:
    """runs_running and runs_queued, from one `run_counts()` call per scrape so they agree."""

    def __init__(self, run_counts: RunCounts) -> None:
        self.run_counts = run_counts

    def describe(self) -> Iterable[Metric]:
        # Lets the registry check names without calling collect(), i.e. the database, at register time.
        return self._families()

    def collect(self) -> Iterable[Metric]:
        try:
            running, queued = self.run_counts()
        except Exception:  # a database hiccup must not fail the whole scrape: the counters still serve
            log.warning("could not count runs for runs_running/runs_queued", exc_info=True)
            return self._families()
        return self._families(running, queued)

    @staticmethod
    def _families(running: int | None = None, queued: int | None = None) -> list[Metric]:
        return [
            GaugeMetricFamily("runs_running", "Runs currently running", value=running),
            GaugeMetricFamily("runs_queued", "Runs queued and not yet started", value=queued),
        ]


class _LeaseMetrics:
    """The leader gauge, the epoch, the transitions counter and the lease's age, from one
    `lease()` reading per scrape so they agree."""

    def __init__(self, lease: LeaseState) -> None:
        self.lease = lease

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    def collect(self) -> Iterable[Metric]:
        return self._families(self.lease())

    @staticmethod
    def _families(reading: LeaseReading | None) -> list[Metric]:
        # Without a reading (at register time) the families are declared with no samples.
        leader = epoch = transitions = age = None
        if reading is not None:
            leader, epoch = (1.0 if reading.leader else 0.0), reading.epoch
            transitions, age = reading.transitions, reading.age_s
        return [
            GaugeMetricFamily(
                "zenml_scheduler_leader",
                "1 while this daemon holds the lease (renewed within two thirds of lease_ttl), else 0",
                value=leader,
            ),
            GaugeMetricFamily("zenml_scheduler_lease_epoch", "The lease epoch this daemon took", value=epoch),
            CounterMetricFamily(
                "zenml_scheduler_leader_transitions",
                "Leader elections and demotions this process took part in since it started",
                value=transitions,
            ),
            GaugeMetricFamily(
                "zenml_scheduler_lease_age_seconds",
                "Seconds since this daemon last renewed the lease, by its monotonic clock",
                value=age,
            ),
        ]


def _lag_seconds(record: AuditRecord) -> float | None:
    """Seconds from a scheduled slot's due time to its fire event; None when it had no due time."""
    if record.details.get("trigger") not in LAG_TRIGGERS:
        return None
    due = _parse_time(record.details.get("scheduled_for"))
    if due is None:
        return None
    # Never negative: a fire is never early, and clock steps between hosts are not lag.
    return max(0.0, (_aware(record.at) - due).total_seconds())


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        # "Z" for Python 3.10, whose fromisoformat does not accept it.
        return _aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        log.warning("unreadable scheduled_for %r in a fire event; no lag observed", value)
        return None


def _aware(at: datetime) -> datetime:
    # The state database hands out aware UTC; a naive value here can only mean UTC.
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _slot_count(details: dict[str, Any]) -> int:
    count = details.get("count")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1
