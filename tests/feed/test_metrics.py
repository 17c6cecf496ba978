"""Prometheus metrics: counted from real audit records, read back through the text format."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from scheduler.config.loader import load_config
from scheduler.errors import Problem
from scheduler.feed.audit_feed import AuditFeed, AuditRecord
from scheduler.feed.metrics import Metrics
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.keys import slot_run_key
from scheduler.store import audit, fires, ledger
from scheduler.store.audit import Event
from scheduler.store.catalog import apply_config, record_rejected_config
from scheduler.store.engine import Store, open_store
from scheduler.store.outcomes import Outcome, record_outcome
from scheduler.store.schema import runs

UTC = timezone.utc
NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


_ids = itertools.count(1)


def record(
    event: str, job: str | None = "a", source: str = "daemon", at: datetime = NOW, **details: Any
) -> AuditRecord:
    return AuditRecord(next(_ids), at, event, source, job, None, "rev", details)


def scrape(metrics: Metrics) -> Samples:
    body, _ = metrics.render()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def fixed(running: int = 0, queued: int = 0) -> Callable[[], tuple[int, int]]:
    return lambda: (running, queued)


def test_render_is_prometheus_text_with_its_content_type() -> None:
    metrics = Metrics(fixed())
    metrics.observe([record("fire", trigger="manual"), record("run-failed", duration_s=1.0)])
    metrics.api_request("/v1/jobs", 200)
    body, content_type = metrics.render()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {"audit_events", "fires", "fire_lag_seconds", "run_duration_seconds", "runs_running", "runs_queued",
            "config_reloads", "api_requests"} <= names  # fmt: skip
    # prometheus_client's per-child creation timestamps are left out; the process start time stays
    assert not [name for name in names if name.endswith("_created")]
    assert b"process_start_time_seconds" in body or not Path("/proc/self/stat").exists()


def test_fires_and_skips_are_counted_by_job_and_outcome() -> None:
    metrics = Metrics(fixed(), process_metrics=False)
    metrics.observe(
        [
            record("fire", trigger="manual", scheduled_for=None),
            record("fire", trigger="manual", scheduled_for=None),
            record("fire", job="b", trigger="manual", scheduled_for=None),
            record("skip", code="concurrency", reason="..."),
            record("skip", code="paused"),
            record("skip", job="b", code="missed", count=7, first="2026-11-27T01:00:00+00:00"),
            record("skip", job="b", code="missed", run_id=3),
            record("pause", was_paused=False),
            record("daemon-started", job=None),
        ]
    )
    s = scrape(metrics)
    assert value(s, "fires_total", job="a", outcome="fired") == 2
    assert value(s, "fires_total", job="b", outcome="fired") == 1
    assert value(s, "fires_total", job="a", outcome="concurrency") == 1
    assert value(s, "fires_total", job="a", outcome="paused") == 1
    # a skip standing for 7 missed slots counts 7, like 7 separate skip events would
    assert value(s, "fires_total", job="b", outcome="missed") == 8
    assert value(s, "audit_events_total") == 9
    # a manual fire has no due time, so no lag
    assert value(s, "fire_lag_seconds_count") == 0


def test_fire_lag_is_the_delay_after_the_scheduled_slot() -> None:
    metrics = Metrics(fixed(), process_metrics=False)
    at = NOW + timedelta(seconds=2, milliseconds=500)
    metrics.observe(
        [
            record("fire", at=at, trigger="schedule", scheduled_for=NOW.isoformat()),
            record("fire", at=NOW + timedelta(minutes=2), trigger="catchup", scheduled_for="2026-11-27T10:00:00Z"),
            # early by clock skew: counts as no lag, never negative
            record("fire", at=NOW, trigger="schedule", scheduled_for=(NOW + timedelta(seconds=1)).isoformat()),
            # another zone, same instant: 11:00+01:00 is 10:00Z, so 0.5 s late
            record(
                "fire",
                at=NOW + timedelta(milliseconds=500),
                trigger="schedule",
                scheduled_for="2026-11-27T11:00:00+01:00",
            ),
            record("fire", trigger="file", scheduled_for=None),
            record("fire", trigger="schedule", scheduled_for=None),
            record("fire", trigger="schedule", scheduled_for="not a time"),
        ]
    )
    s = scrape(metrics)
    assert value(s, "fire_lag_seconds_count") == 4
    assert value(s, "fire_lag_seconds_sum") == pytest.approx(2.5 + 120 + 0 + 0.5)
    assert value(s, "fire_lag_seconds_bucket", le="0.005") == 1
    assert value(s, "fire_lag_seconds_bucket", le="0.5") == 2
    assert value(s, "fire_lag_seconds_bucket", le="1.0") == 2
    assert value(s, "fire_lag_seconds_bucket", le="2.5") == 3
    assert value(s, "fire_lag_seconds_bucket", le="60.0") == 3
    assert value(s, "fire_lag_seconds_bucket", le="300.0") == 4
    assert value(s, "fires_total", job="a", outcome="fired") == 7


def test_run_durations_by_job_and_final_status() -> None:
    metrics = Metrics(fixed(), process_metrics=False)
    metrics.observe(
        [
            record("run-succeeded", duration_s=42.0),
            record("run-succeeded", duration_s=3.0),
            record("run-failed", job="b", duration_s=4000),
            record("run-timed_out", duration_s=600.5),
            record("run-cancelled", duration_s=None),  # cancelled while queued: it never started
            record("run-lost", duration_s="soon"),
            record("run-requested", duration_s=1.0),  # not a run end
        ]
    )
    s = scrape(metrics)
    assert value(s, "run_duration_seconds_count", job="a", status="succeeded") == 2
    assert value(s, "run_duration_seconds_sum", job="a", status="succeeded") == 45.0
    assert value(s, "run_duration_seconds_bucket", job="a", status="succeeded", le="5.0") == 1
    assert value(s, "run_duration_seconds_bucket", job="a", status="succeeded", le="60.0") == 2
    assert value(s, "run_duration_seconds_sum", job="b", status="failed") == 4000
    assert value(s, "run_duration_seconds_bucket", job="b", status="failed", le="3600.0") == 0
    assert value(s, "run_duration_seconds_bucket", job="b", status="failed", le="7200.0") == 1
    assert value(s, "run_duration_seconds_count", job="a", status="timed_out") == 1
    assert value(s, "run_duration_seconds_count", job="a", status="cancelled") is None
    assert value(s, "run_duration_seconds_count", job="a", status="lost") is None
    assert value(s, "run_duration_seconds_count", job="a", status="requested") is None


def test_only_reloads_count_as_config_reloads() -> None:
    metrics = Metrics(fixed(), process_metrics=False)
    s = scrape(metrics)
    assert value(s, "config_reloads_total", result="applied") == 0  # present before the first reload
    assert value(s, "config_reloads_total", result="rejected") == 0
    metrics.observe(
        [
            record("config-loaded", job=None, source="daemon"),  # the config loaded at start
            record("config-loaded", job=None, source="reload"),
            record("config-loaded", job=None, source="reload"),
            record("config-rejected", job=None, source="reload", problems=["bad"]),
            record("config-rejected", job=None, source="daemon", problems=["bad"]),
        ]
    )
    s = scrape(metrics)
    assert value(s, "config_reloads_total", result="applied") == 2
    assert value(s, "config_reloads_total", result="rejected") == 1


def test_run_gauges_are_read_at_scrape_time_once_per_scrape() -> None:
    calls = []
    counts = (2, 5)

    def run_counts() -> tuple[int, int]:
        calls.append(threading.current_thread().name)
        return counts

    metrics = Metrics(run_counts, process_metrics=False)
    assert calls == []  # not at construction: the database is only read when scraped
    s = scrape(metrics)
    assert (value(s, "runs_running"), value(s, "runs_queued")) == (2, 5)
    counts = (0, 1)
    s = scrape(metrics)
    assert (value(s, "runs_running"), value(s, "runs_queued")) == (0, 1)
    assert len(calls) == 2


def test_a_failing_run_count_leaves_out_the_gauges_but_serves_the_rest() -> None:
    def broken() -> tuple[int, int]:
        raise OSError("database is locked")

    metrics = Metrics(broken, process_metrics=False)
    metrics.observe([record("fire", trigger="manual")])
    s = scrape(metrics)
    assert value(s, "runs_running") is None and value(s, "runs_queued") is None
    assert value(s, "fires_total", job="a", outcome="fired") == 1


def test_api_requests_by_route_template_and_status() -> None:
    metrics = Metrics(fixed(), process_metrics=False)
    metrics.api_request("/v1/jobs/{job}/runs", 200)
    metrics.api_request("/v1/jobs/{job}/runs", 200)
    metrics.api_request("/v1/jobs/{job}/runs", 404)
    metrics.api_request("/metrics", 401)
    s = scrape(metrics)
    assert value(s, "api_requests_total", route="/v1/jobs/{job}/runs", status="200") == 2
    assert value(s, "api_requests_total", route="/v1/jobs/{job}/runs", status="404") == 1
    assert value(s, "api_requests_total", route="/metrics", status="401") == 1


def test_registries_are_private_and_process_metrics_optional() -> None:
    one, two = Metrics(fixed()), Metrics(fixed(), process_metrics=False)
    one.observe([record("fire", trigger="manual")])
    assert value(scrape(two), "fires_total", job="a", outcome="fired") is None
    assert REGISTRY.get_sample_value("fires_total", {"job": "a", "outcome": "fired"}) is None
    assert not any(name.startswith("process_") for name, _ in scrape(two))
    if Path("/proc/self/stat").exists():
        assert value(scrape(one), "process_resident_memory_bytes")


def test_concurrent_observe_and_api_requests_lose_no_counts() -> None:
    metrics = Metrics(fixed(), process_metrics=False)
    batch = [record("skip", code="concurrency") for _ in range(100)]

    def feed() -> None:
        for _ in range(50):
            metrics.observe(batch)

    def serve() -> None:
        for _ in range(2000):
            metrics.api_request("/v1/jobs", 200)

    threads = [threading.Thread(target=t) for t in (feed, feed, serve, serve)]
    for t in threads:
        t.start()
    for _ in range(20):
        metrics.render()
    for t in threads:
        t.join()
    s = scrape(metrics)
    assert value(s, "fires_total", job="a", outcome="concurrency") == 10_000
    assert value(s, "audit_events_total") == 10_000
    assert value(s, "api_requests_total", route="/v1/jobs", status="200") == 4000


CONFIG = """\
version: 1
jobs:
  a: {pipeline: x.y:z, every: 1m}
  b: {pipeline: x.y:z, cron: "0 2 * * *"}
"""


def run_counts_of(store: Store) -> Callable[[], tuple[int, int]]:
    """What the daemon passes: running and queued rows of the runs table."""

    def count() -> tuple[int, int]:
        with store.read() as conn:
            rows = dict(conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status)).all())
        return rows.get("running", 0), rows.get("queued", 0)

    return count


def test_end_to_end_from_the_audit_table(tmp_path: Path) -> None:
    """The real writers (config, ledger, outcomes) through a real feed: the field names agree."""
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    path = tmp_path / "schedules.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    metrics = Metrics(run_counts_of(store), process_metrics=False)
    feed = AuditFeed(store, [metrics.observe])
    slot = NOW - timedelta(seconds=3)
    request = FireRequest("a", "schedule", slot_run_key("a", slot), "scheduler", slot)
    with store.write() as conn:
        apply_config(conn, config, NOW - timedelta(hours=1), "daemon")  # startup load: not a reload
        apply_config(conn, config, NOW - timedelta(minutes=30), "reload")
        record_rejected_config(conn, path, [Problem(str(path), 3, 5, "nope")], NOW - timedelta(minutes=20), "reload")
        fired = fires.fire(conn, [request, request], config, NOW, GRACE)  # the second is a duplicate
    assert len(fired.queued) == 1
    feed.step()
    s = scrape(metrics)
    assert (value(s, "runs_running"), value(s, "runs_queued")) == (0, 1)
    assert value(s, "fires_total", job="a", outcome="fired") == 1
    assert value(s, "fires_total", job="a", outcome="duplicate") == 1
    assert value(s, "fire_lag_seconds_count") == 1
    assert value(s, "fire_lag_seconds_sum") == 3.0
    assert value(s, "config_reloads_total", result="applied") == 1
    assert value(s, "config_reloads_total", result="rejected") == 1

    with store.write() as conn:
        run = conn.execute(select(runs).where(runs.c.id == fired.queued[0])).one()
        ledger.mark_started(conn, run, "run.log", NOW + timedelta(seconds=1))
    assert (value(scrape(metrics), "runs_running"), value(scrape(metrics), "runs_queued")) == (1, 0)
    with store.write() as conn:
        record_outcome(conn, Outcome(run.id, "succeeded", exit_code=0), config, NOW + timedelta(seconds=91))
        audit.append(conn, NOW + timedelta(seconds=92), [Event("pause", "cli", "b", details={"reason": "x"})])
    feed.step()
    s = scrape(metrics)
    assert (value(s, "runs_running"), value(s, "runs_queued")) == (0, 0)
    assert value(s, "run_duration_seconds_count", job="a", status="succeeded") == 1
    assert value(s, "run_duration_seconds_sum", job="a", status="succeeded") == 90.0
    with store.read() as conn:
        assert value(s, "audit_events_total") == len(audit.query(conn, limit=1000))
    store.close()


def test_raw_appended_events_reach_the_metrics(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    metrics = Metrics(fixed(), process_metrics=False)
    feed = AuditFeed(store, [metrics.observe])
    slot = NOW.isoformat()
    with store.write() as conn:
        audit.append(
            conn,
            NOW + timedelta(milliseconds=250),
            [
                Event("fire", "scheduler", "a", details={"trigger": "schedule", "scheduled_for": slot}),
                Event(
                    "skip",
                    "scheduler",
                    "a",
                    details={"trigger": "schedule", "scheduled_for": slot, "code": "outside-window"},
                ),
                Event("run-failed", "daemon", "a", details={"duration_s": 12.5}),
            ],
        )
    with store.write() as conn:
        audit.append(conn, NOW, [Event("config-loaded", "reload", details={"jobs": 1})])
    assert feed.step() is False  # one batch held everything
    s = scrape(metrics)
    assert value(s, "audit_events_total") == 4
    assert value(s, "fires_total", job="a", outcome="fired") == 1
    assert value(s, "fires_total", job="a", outcome="outside-window") == 1
    assert value(s, "fire_lag_seconds_sum") == 0.25
    assert value(s, "fire_lag_seconds_bucket", le="0.25") == 1
    assert value(s, "fire_lag_seconds_bucket", le="0.1") == 0
    assert value(s, "run_duration_seconds_sum", job="a", status="failed") == 12.5
    assert value(s, "config_reloads_total", result="applied") == 1
    store.close()
