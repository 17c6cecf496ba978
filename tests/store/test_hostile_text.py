"""Text from outside (URL paths, pause reasons, a child's output) in the state database: control
characters are stored escaped on SQLite and PostgreSQL alike, and a batch of audit events the
database refuses is written one by one, the refused one replaced, never retried for ever."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from scheduler.api.backend import AuditWriter
from scheduler.store import audit, inbox
from scheduler.store.engine import open_store
from scheduler.store.schema import jobs, scrub

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("raw", "stored"), [("a\x00b", "a\\x00b"), ("\x1b[31mred", "\\x1b[31mred"), ("tab\tand\nline", "tab\tand\nline")]
)
def test_scrub_escapes_control_characters_once(raw: str, stored: str) -> None:
    assert scrub(raw) == stored and scrub(stored) == stored


def test_a_nul_byte_from_a_url_path_is_audited_escaped(db_url: str) -> None:
    store = open_store(db_url)
    with store.write() as conn:
        audit.append(conn, NOW, [audit.Event("api-request", "api:\x00", "\x00", "k\x00", details={"path": "/\x00"})])
    with store.read() as conn:
        [event] = audit.query(conn)
        assert (event["job"], event["run_key"], event["source"]) == ("\\x00", "k\\x00", "api:\\x00")
        assert event["details"]["path"] == "/\x00"  # JSON keeps it, escaped in the stored text
        assert audit.verify(conn).ok


def test_a_pause_reason_with_a_nul_byte_is_stored(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from scheduler.config.loader import load_config
    from scheduler.store.catalog import apply_config

    path = tmp_path / "schedules.yaml"
    path.write_text("version: 1\njobs:\n  a: {pipeline: x.y:z, every: 1m}\n")
    store = open_store(db_url)
    with store.write() as conn:
        apply_config(conn, load_config(path), NOW, "test")
        assert inbox.set_paused(conn, "a", True, "cli", NOW, reason="broken\x00feed")
    with store.read() as conn:
        assert conn.execute(select(jobs.c.paused_reason)).scalar_one() == "broken\\x00feed"


def test_a_batch_the_database_refuses_is_written_one_by_one(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite does not enforce column widths; PostgreSQL refuses the too-long value")
    store = open_store(db_url)
    writer = AuditWriter(store, now=lambda: NOW)
    writer.put(audit.Event("api-request", "api:ci", "fine", details={"route": "/v1/jobs"}))
    writer.put(audit.Event("api-request", "api:ci", "x" * 500, details={"route": "/v1/jobs/{job}"}))
    writer.flush()
    writer.flush()  # nothing is left to retry
    with store.read() as conn:
        events = audit.query(conn)
        assert [e["event"] for e in events] == ["api-request", "audit-write-failed"]
        assert events[1]["details"]["event"] == "api-request" and events[1]["details"]["route"] == "/v1/jobs/{job}"
        assert audit.verify(conn).ok
