"""Regressions of the write path on SQLite and PostgreSQL: claims, replaced runs, outcomes recorded
once, finished jobs, the fence, and the clock of what is stored."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from scheduler.config.loader import load_config
from scheduler.daemon.lease import Lease
from scheduler.errors import LeaseLostError, SettingsError, StateError
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.keys import manual_run_key, slot_run_key
from scheduler.store import audit, fires, inbox, ledger
from scheduler.store.catalog import apply_config
from scheduler.store.engine import after_commit, open_store
from scheduler.store.outcomes import Outcome, record_outcome
from scheduler.store.schema import jobs, requests, runs

UTC = timezone.utc
NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)
CONFIG = """\
version: 1
jobs:
  swap: {pipeline: x.y:z, every: 1m, concurrency: replace}
  twice: {pipeline: x.y:z, every: 1m, max_runs: 1}
  plain: {pipeline: x.y:z, every: 1m}
"""


@pytest.fixture
def config(tmp_path: Path):
    path = tmp_path / "schedules.yaml"
    path.write_text(CONFIG)
    return load_config(path)


def _store(db_url: str, config):
    store = open_store(db_url)
    with store.write() as conn:
        apply_config(conn, config, NOW - timedelta(hours=1), "test")
    return store


def _manual(job: str, nonce: str) -> FireRequest:
    return FireRequest(job, "manual", manual_run_key(job, NOW, nonce), "test")


def test_a_run_cancelled_after_it_was_read_is_not_claimed(db_url: str, config) -> None:
    store = _store(db_url, config)
    with store.write() as conn:
        fires.fire(conn, [_manual("swap", "a")], config, NOW, GRACE)
    with store.read() as conn:
        [waiting] = ledger.queued_runs(conn, NOW, 10, per_job=10)
    with store.write() as conn:  # a replace cancels it between the launcher's read and its claim
        fires.fire(conn, [_manual("swap", "b")], config, NOW, GRACE)
    with store.write() as conn:
        assert ledger.mark_started(conn, waiting, "out.log", NOW) is False
    with store.read() as conn:
        row = conn.execute(select(runs).where(runs.c.id == waiting.id)).one()
        assert row.status == "cancelled" and row.started_at is None


def test_replace_inside_one_batch_keeps_only_the_last_and_records_the_others(db_url: str, config) -> None:
    store = _store(db_url, config)
    with store.write() as conn:
        result = fires.fire(conn, [_manual("swap", n) for n in "abc"], config, NOW, GRACE)
    with store.read() as conn:
        rows = {r.run_key.rsplit("#", 1)[1]: r for r in conn.execute(select(runs).where(runs.c.job == "swap"))}
        events = audit.query(conn, "swap")
    assert [rows[n].status for n in "abc"] == ["cancelled", "cancelled", "queued"]
    assert result.queued == [rows["c"].id] and result.replaced == []  # nothing was running to stop
    ended = [e for e in events if e["event"] == "run-cancelled"]
    assert sorted(e["details"]["run_id"] for e in ended) == [rows["a"].id, rows["b"].id]
    assert all(e["details"]["stage"] == "queued" for e in ended)


def test_a_replaced_queued_run_ends_on_the_record(db_url: str, config) -> None:
    store = _store(db_url, config)
    with store.write() as conn:
        first = fires.fire(conn, [_manual("swap", "a")], config, NOW, GRACE)
    with store.write() as conn:
        fires.fire(conn, [_manual("swap", "b")], config, NOW, GRACE)
    with store.read() as conn:
        ended = [e for e in audit.query(conn, "swap") if e["event"] == "run-cancelled"]
        job = conn.execute(select(jobs).where(jobs.c.name == "swap")).one()
    assert [e["details"]["run_id"] for e in ended] == first.queued
    assert job.last_outcome == "cancelled"


def test_an_outcome_is_recorded_once(db_url: str, config) -> None:
    store = _store(db_url, config)
    with store.write() as conn:
        [run_id] = fires.fire(conn, [_manual("plain", "a")], config, NOW, GRACE).queued
        [run] = ledger.queued_runs(conn, NOW, 10, per_job=10)
        assert ledger.mark_started(conn, run, "out.log", NOW)
    for _ in range(2):  # a stalled daemon woke and reports what the next one already recorded
        with store.write() as conn:
            record_outcome(conn, Outcome(run_id, "failed", exit_code=1, error="boom"), config, NOW)
    with store.read() as conn:
        ended = [e for e in audit.query(conn, "plain") if e["event"].startswith("run-")]
        job = conn.execute(select(jobs).where(jobs.c.name == "plain")).one()
    assert [e["event"] for e in ended] == ["run-failed"] and job.failed == 1


def test_a_job_that_reached_max_runs_has_no_next_fire(db_url: str, config) -> None:
    store = _store(db_url, config)
    slot = NOW - timedelta(seconds=5)
    with store.write() as conn:
        result = fires.fire(conn, [FireRequest("twice", "schedule", slot_run_key("twice", slot), "test", slot)],
                            config, NOW, GRACE)  # fmt: skip
    assert result.exhausted == {"twice"}
    with store.read() as conn:
        row = conn.execute(select(jobs).where(jobs.c.name == "twice")).one()
        assert row.next_fire_at is None and ledger.exhausted_jobs(conn, config) == {"twice"}


def test_every_fenced_write_checks_the_lease_in_its_own_transaction(db_url: str, config) -> None:
    store = _store(db_url, config)
    lease = Lease(store, timedelta(seconds=15), "schedules.yaml", clock="host")
    lease.acquire(NOW)
    with store.write() as conn:
        fires.fire(conn, [_manual("plain", "a")], config, NOW, GRACE)
    other = open_store(db_url)  # a second daemon takes the lease (this one was stalled past the TTL)
    Lease(other, timedelta(seconds=15), "schedules.yaml", clock="host").acquire(NOW + timedelta(seconds=20))
    with pytest.raises(LeaseLostError, match="lost its lease"), store.write() as conn:
        fires.fire(conn, [_manual("plain", "b")], config, NOW, GRACE)
    with pytest.raises(LeaseLostError):
        lease.heartbeat(NOW + timedelta(seconds=21))
    lease.release(NOW + timedelta(seconds=22))  # it lost the lease: nothing to release, nothing audited
    with other.read() as conn:
        keys = [r.run_key for r in conn.execute(select(runs))]
        stopped = [e for e in audit.query(conn, limit=1000) if e["event"] == "daemon-stopped"]
    assert keys == [manual_run_key("plain", NOW, "a")] and stopped == []


def test_a_deleted_database_file_stops_every_fenced_write(tmp_path: Path, config) -> None:
    path = tmp_path / "state.db"
    store = _store(f"sqlite:///{path}", config)
    Lease(store, timedelta(seconds=15), "schedules.yaml").acquire(NOW)
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(StateError, match="was deleted"), store.write() as conn:
        fires.fire(conn, [_manual("plain", "a")], config, NOW, GRACE)
    open_store(f"sqlite:///{path}").close()  # a new, empty file in its place
    with pytest.raises(StateError, match="replaced by another file"), store.write() as conn:
        fires.fire(conn, [_manual("plain", "a")], config, NOW, GRACE)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"])
def test_in_memory_databases_are_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="in-memory database"):
        open_store(url)


def test_each_state_database_has_its_own_lasting_installation_id(tmp_path: Path) -> None:
    first, second = open_store(f"sqlite:///{tmp_path / 'a.db'}"), open_store(f"sqlite:///{tmp_path / 'b.db'}")
    assert first.installation_id != second.installation_id and len(first.installation_id) == 12
    assert open_store(f"sqlite:///{tmp_path / 'a.db'}").installation_id == first.installation_id


def test_requests_are_stamped_with_the_given_clock(db_url: str, config) -> None:
    store = _store(db_url, config)
    with store.write() as conn:
        inbox.add_request(conn, "plain", "plain@manual:x", {}, "test", NOW, None)
        inbox.take_requests(conn, NOW + timedelta(seconds=3))
    with store.read() as conn:
        assert conn.execute(select(requests.c.handled_at)).scalar_one() == NOW + timedelta(seconds=3)


def test_audit_events_at_a_non_utc_instant_still_verify(db_url: str) -> None:
    store = open_store(db_url)
    berlin = datetime(2026, 11, 27, 11, 0, 0, 123456, tzinfo=ZoneInfo("Europe/Berlin"))
    with store.write() as conn:
        audit.append(conn, berlin, [audit.Event("test", "test", details={"n": 1})])
    with store.read() as conn:
        assert audit.verify(conn).ok


def test_after_commit_callbacks_run_once_the_write_lock_is_free(db_url: str, config) -> None:
    store = _store(db_url, config)
    wrote: list[bool] = []

    def write_from_another_thread() -> None:
        def other() -> None:
            with store.write() as conn:
                conn.execute(update(jobs).where(jobs.c.name == "plain").values(paused=False))
            wrote.append(True)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=5)

    with store.write() as conn:
        after_commit(conn, write_from_another_thread)
    assert wrote == [True]
