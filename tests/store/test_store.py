"""The state database on SQLite and PostgreSQL: schema, exactly-once run keys, the audit chain."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select, text, update

from scheduler.config.loader import load_config
from scheduler.daemon.lease import Lease, current_holder
from scheduler.errors import LeaseHeldError, SchemaTooNewError, StateError
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.keys import slot_run_key
from scheduler.store import audit, fires, inbox, ledger
from scheduler.store.catalog import apply_config, catch_up_requests
from scheduler.store.engine import open_store
from scheduler.store.migrations import MIGRATIONS, schema_version
from scheduler.store.schema import jobs, meta, runs
from tests.zenml_env import FIXTURES

UTC = timezone.utc
NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)

CONFIG = """\
version: 1
jobs:
  a: {pipeline: x.y:z, every: 1m}
  b: {pipeline: x.y:z, cron: "0 2 * * *", timezone: Europe/Berlin}
"""


@pytest.fixture
def config(tmp_path: Path):
    path = tmp_path / "schedules.yaml"
    path.write_text(CONFIG)
    return load_config(path)


def test_schema_is_versioned_and_reopening_is_idempotent(db_url: str) -> None:
    store = open_store(db_url)
    with store.read() as conn:
        assert conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one() == str(
            schema_version()
        )
    store.close()
    open_store(db_url).close()


def test_older_schema_is_migrated_in_order(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    open_store(db_url).close()
    applied: list[int] = []

    def add_notes_table(conn) -> None:  # what a release's migration looks like
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
        applied.append(2)

    monkeypatch.setattr("scheduler.store.migrations.MIGRATIONS", [*MIGRATIONS, add_notes_table])
    store = open_store(db_url)
    with store.write() as conn:
        conn.execute(text("INSERT INTO notes (id, body) VALUES (1, 'x')"))
        version = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one()
    assert version == str(len(MIGRATIONS) + 2)
    assert applied == [2]
    open_store(db_url).close()  # already current: nothing runs twice
    assert applied == [2]


def test_a_version_1_database_is_upgraded_keeping_its_data(tmp_path: Path, config) -> None:
    # The schema exactly as the first release created it, with a job and a run in it.
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / "schema_v1.sql").read_text())
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute(
        "INSERT INTO jobs (name, spec_json, digest, trigger, timezone, enabled, paused, created_at, updated_at,"
        " runs_total, succeeded, failed, skipped) VALUES ('a', '{}', 'x', 'every 1m', 'UTC', 1, 1,"
        " '2026-11-01 00:00:00', '2026-11-01 00:00:00', 7, 6, 1, 0)"
    )
    conn.execute(
        "INSERT INTO runs (run_key, attempt, job, trigger, status, created_at, source)"
        " VALUES ('a@2026-11-01T00:00:00Z', 1, 'a', 'schedule', 'succeeded', '2026-11-01 00:00:00', 'scheduler')"
    )
    conn.commit()
    conn.close()
    store = open_store(f"sqlite:///{path}")
    with store.read() as c:
        job = c.execute(select(jobs).where(jobs.c.name == "a")).one()
        assert (job.paused, job.runs_total, job.launched, job.consecutive_failures) == (True, 7, 7, 0)
        assert c.execute(select(runs.c.not_before, runs.c.status)).one() == (None, "succeeded")
        assert c.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one() == str(
            schema_version()
        )
    with store.write() as c:  # and the upgraded database works as a new one would
        apply_config(c, config, NOW, "test")
        result = fires.fire(c, [FireRequest("b", "schedule", slot_run_key("b", NOW), "test", NOW)], config, NOW, GRACE)
    assert len(result.queued) == 1


def test_newer_schema_is_refused(db_url: str) -> None:
    store = open_store(db_url)
    with store.write() as conn:
        conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(schema_version() + 1)))
    store.close()
    with pytest.raises(SchemaTooNewError, match="upgrade zenml-scheduler"):
        open_store(db_url)


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x' / 'state.db'}")
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StateError, match="cannot open state database"):
        open_store(f"sqlite:///{tmp_path / 'file' / 'state.db'}")


def test_same_slot_is_recorded_once(db_url: str, config) -> None:
    store = open_store(db_url)
    slot = NOW - timedelta(seconds=5)
    req = FireRequest("a", "schedule", slot_run_key("a", slot), "test", slot)
    with store.write() as conn:
        apply_config(conn, config, NOW - timedelta(hours=1), "test")
        first = fires.fire(conn, [req], config, NOW, GRACE)
    with store.write() as conn:
        second = fires.fire(conn, [req, req], config, NOW, GRACE)
    assert len(first.queued) == 1 and first.duplicates == 0
    assert second.queued == [] and second.duplicates == 2
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 1
        events = [e["event"] for e in audit.query(conn, "a")]
        assert events.count("fire") == 1
        skips = [e for e in audit.query(conn, "a") if e["event"] == "skip"]
        assert [s["details"]["code"] for s in skips] == ["duplicate", "duplicate"]
        assert audit.verify(conn).ok


def test_paused_slot_is_audited_and_left_for_catch_up_on_resume(db_url: str, config) -> None:
    store = open_store(db_url)
    start = NOW - timedelta(hours=1)
    with store.write() as conn:
        apply_config(conn, config, start, "test")
        assert inbox.set_paused(conn, "a", True, "test", start)
        slot = NOW - timedelta(minutes=2)
        result = fires.fire(
            conn, [FireRequest("a", "schedule", slot_run_key("a", slot), "test", slot)], config, NOW, GRACE
        )
    assert result.skipped == 1 and result.queued == []
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 0  # the slot stays free
        job = conn.execute(select(jobs).where(jobs.c.name == "a")).one()
        assert job.last_dispatch == "skipped-paused" and job.skipped == 1
        assert job.last_slot == start  # the watermark waits for the resume
        skip = next(e for e in audit.query(conn, "a") if e["event"] == "skip")
        assert skip["details"]["code"] == "paused"
        assert not inbox.set_paused(conn, "nope", True, "test", NOW)
    with store.write() as conn:
        assert inbox.set_paused(conn, "a", False, "test", NOW)
        asked = inbox.take_requests(conn, NOW)
        assert asked.resumed == ["a"] and asked.runs == []
        caught = catch_up_requests(conn, config, NOW, GRACE, only="a")
    # catchup: latest - the newest slot missed while paused (inside the grace window) runs once
    assert [r.run_key for r in caught] == ["a@2026-11-27T10:00:00Z"]


def test_reconcile_applies_only_the_diff(db_url: str, tmp_path: Path, config) -> None:
    store = open_store(db_url)
    with store.write() as conn:
        first = apply_config(conn, config, NOW, "test")
        inbox.set_paused(conn, "b", True, "test", NOW)
    assert first.added == ["a", "b"]
    changed = tmp_path / "changed.yaml"
    changed.write_text(
        CONFIG.replace("every: 1m", "every: 5m").replace("  b:", "  c: {pipeline: x.y:z, every: 1h}\n  b:")
    )
    with store.write() as conn:
        diff = apply_config(conn, load_config(changed), NOW + timedelta(minutes=1), "test")
    assert diff.added == ["c"]
    assert [c.name for c in diff.changed] == ["a"] and diff.changed[0].fields == {"every": ("1m", "5m")}
    assert diff.unchanged == ["b"] and diff.removed == []
    removed = tmp_path / "removed.yaml"
    removed.write_text('version: 1\njobs:\n  b: {pipeline: x.y:z, cron: "0 2 * * *", timezone: Europe/Berlin}\n')
    with store.write() as conn:
        diff = apply_config(conn, load_config(removed), NOW + timedelta(minutes=2), "test")
        assert diff.removed == ["a", "c"]
        assert conn.execute(select(jobs.c.paused).where(jobs.c.name == "b")).scalar_one() is True
        events = [e["event"] for e in audit.query(conn)]
    assert events.count("job-removed") == 2 and events.count("job-changed") == 1 and events.count("config-loaded") == 3


def test_catch_up_after_downtime(db_url: str, config) -> None:
    store = open_store(db_url)
    with store.write() as conn:
        apply_config(conn, config, NOW, "test")
    later = NOW + timedelta(minutes=30, seconds=10)
    with store.write() as conn:
        requests = catch_up_requests(conn, config, later, GRACE)
        assert [r.run_key for r in requests] == ["a@2026-11-27T10:30:00Z"]
        assert requests[0].trigger == "catchup"
        # a second start right after must not catch the same slots up again
        assert catch_up_requests(conn, config, later + timedelta(seconds=1), GRACE) == []
        skips = [e["details"] for e in audit.query(conn, "a") if e["event"] == "skip"]
    assert skips[0]["code"] == "missed" and skips[0]["count"] == 20
    assert [s["code"] for s in skips[1:]] == ["coalesced"] * 9


def test_audit_chain_detects_edit_insert_and_delete(db_url: str, config) -> None:
    store = open_store(db_url)
    for i in range(5):
        with store.write() as conn:
            audit.append(conn, NOW + timedelta(seconds=i), [audit.Event("test", "t", details={"i": i})])
    with store.read() as conn:
        assert audit.verify(conn).ok and audit.verify(conn).rows == 5
    table = audit.audit
    with store.write() as conn:
        conn.execute(update(table).where(table.c.id == 3).values(details='{"i":99}'))
    with store.read() as conn:
        result = audit.verify(conn)
    assert not result.ok and result.bad_id == 3 and "edited" in result.reason
    with store.write() as conn:
        conn.execute(update(table).where(table.c.id == 3).values(details='{"i":2}'))
        conn.execute(delete(table).where(table.c.id == 2))
    with store.read() as conn:
        result = audit.verify(conn)
    assert not result.ok and result.bad_id == 3 and "missing" in result.reason
    with store.write() as conn:
        row = {
            "id": 2,
            "at": NOW,
            "event": "forged",
            "job": None,
            "run_key": None,
            "source": "x",
            "config_revision": None,
            "details": "{}",
            "prev_hash": "0" * 64,
            "hash": "f" * 64,
        }
        conn.execute(insert(table).values(**row))
    with store.read() as conn:
        assert audit.verify(conn).bad_id == 2
    with store.write() as conn:
        conn.execute(delete(table).where(table.c.id == 2))


def test_audit_chain_detects_a_deleted_tail(db_url: str) -> None:
    store = open_store(db_url)
    with store.write() as conn:
        audit.append(conn, NOW, [audit.Event("a", "t"), audit.Event("b", "t")])
        conn.execute(delete(audit.audit).where(audit.audit.c.id == 2))
    with store.read() as conn:
        result = audit.verify(conn)
    assert not result.ok and result.bad_id == 2 and "deleted from the end" in result.reason


def test_lease_blocks_a_second_daemon_until_released(db_url: str) -> None:
    # Time passes by the host clock given here, on PostgreSQL too (its own clock: tests/daemon/test_lease.py).
    store = open_store(db_url)
    first = Lease(store, timedelta(seconds=15), "a.yaml", clock="host")
    first.acquire(NOW)
    second = Lease(store, timedelta(seconds=15), "a.yaml", clock="host")
    with pytest.raises(LeaseHeldError, match=r"pid \d+ on .*running since 2026-11-27T10:00:00"):
        second.acquire(NOW + timedelta(seconds=5))
    assert current_holder(store, NOW + timedelta(seconds=5), timedelta(seconds=15), clock="host") is not None
    first.release(NOW + timedelta(seconds=6))
    assert current_holder(store, NOW + timedelta(seconds=6), timedelta(seconds=15), clock="host") is None
    second.acquire(NOW + timedelta(seconds=7))
    with pytest.raises(StateError, match="lost its lease"):
        first.heartbeat(NOW + timedelta(seconds=8))
    second.heartbeat(NOW + timedelta(seconds=8))


def test_expired_lease_can_be_taken_over(db_url: str) -> None:
    store = open_store(db_url)
    Lease(store, timedelta(seconds=15), "a.yaml", clock="host").acquire(NOW)
    Lease(store, timedelta(seconds=15), "a.yaml", clock="host").acquire(NOW + timedelta(seconds=16))
    with store.read() as conn:
        started = [e for e in audit.query(conn) if e["event"] == "daemon-started"]
    assert "previous" in started[-1]["details"]


def test_lease_of_a_dead_local_process_is_free(db_url: str) -> None:
    store = open_store(db_url)
    dead = Lease(store, timedelta(seconds=15), "a.yaml", clock="host")
    dead.pid = 2**22 + 12345  # beyond pid_max on Linux: certainly not alive
    dead.acquire(NOW)
    Lease(store, timedelta(seconds=15), "a.yaml", clock="host").acquire(NOW + timedelta(seconds=1))


def test_a_long_queue_of_one_job_does_not_hide_other_jobs_runs(db_url: str) -> None:
    store = open_store(db_url)
    now = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
    row = {"attempt": 1, "trigger": "manual", "status": "queued", "created_at": now, "source": "api:ci"}
    with store.write() as conn:
        conn.execute(insert(runs), [{**row, "run_key": f"burst@api:{n}", "job": "burst"} for n in range(1500)])
        conn.execute(insert(runs), [{**row, "run_key": "tick@slot", "job": "tick"}])
        conn.execute(insert(runs), [{**row, "run_key": "later@slot", "job": "later", "not_before": now + timedelta(1)}])
    with store.read() as conn:
        waiting = ledger.queued_runs(conn, now, 1000, per_job=2)
    assert [r.run_key for r in waiting] == ["burst@api:0", "burst@api:1", "tick@slot"]
    store.close()
