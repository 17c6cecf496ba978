"""Opening the state database: what is refused before anything is touched, damaged files, and
opening for reading only (nothing created or migrated), on real SQLite files and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text

from scheduler.errors import SchemaTooNewError, SettingsError, StateError
from scheduler.store import audit
from scheduler.store.engine import open_store
from scheduler.store.read_only import open_read_only
from scheduler.store.schema import audit as audit_table
from scheduler.store.schema import meta
from tests.zenml_env import FIXTURES

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=timezone.utc)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def state_db(path: Path) -> Path:
    """A real state database with a few audit rows, closed cleanly (no -wal or -shm left)."""
    store = open_store(f"sqlite:///{path}")
    with store.write() as conn:
        audit.append(conn, NOW, [audit.Event("pause", "test", job="a"), audit.Event("resume", "test", job="a")])
    store.close()
    return path


def root_pages(path: Path) -> tuple[int, dict[str, int]]:
    conn = sqlite3.connect(path)
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return size, dict(conn.execute("SELECT name, rootpage FROM sqlite_schema WHERE type = 'table'").fetchall())
    finally:
        conn.close()


def overwrite_with_garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def corrupt_pages_after_the_first(path: Path) -> None:
    """The header and page 1 (the schema) intact, every other page overwritten."""
    size, _ = root_pages(path)
    with open(path, "r+b") as file:
        file.seek(size)
        file.write(b"\x07" * (path.stat().st_size - size))


def corrupt_table(path: Path, table: str) -> None:
    """Only the root page of `table`: the database opens, a query of that table fails."""
    size, roots = root_pages(path)
    with open(path, "r+b") as file:
        file.seek((roots[table] - 1) * size)
        file.write(b"\xff" * size)


@pytest.mark.parametrize("opener", [open_store, open_read_only], ids=["write", "read"])
def test_a_file_overwritten_with_garbage_is_refused_untouched(tmp_path: Path, opener) -> None:
    path = state_db(tmp_path / "state.db")
    overwrite_with_garbage(path)
    before = digest(path)
    with pytest.raises(StateError, match=r"state\.db is not an SQLite database .*restore it from a backup"):
        opener(f"sqlite:///{path}")
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


@pytest.mark.parametrize("opener", [open_store, open_read_only], ids=["write", "read"])
def test_a_damaged_page_is_a_state_error_naming_the_file(tmp_path: Path, opener) -> None:
    path = state_db(tmp_path / "state.db")
    corrupt_pages_after_the_first(path)
    before = digest(path)
    with pytest.raises(StateError, match=rf"the state database {path} is damaged \(database disk image is malformed\)"):
        opener(f"sqlite:///{path}")
    assert digest(path) == before


def test_a_damaged_table_fails_its_first_query_cleanly(tmp_path: Path) -> None:
    path = state_db(tmp_path / "state.db")
    corrupt_table(path, "audit")
    store = open_read_only(f"sqlite:///{path}")  # meta and the schema are intact: it opens
    with pytest.raises(StateError, match=r"is damaged .*move it away"), store.read() as conn:
        audit.query(conn, None, 10)
    with pytest.raises(StateError, match=r"is damaged"), open_store(f"sqlite:///{path}").write() as conn:
        audit.append(conn, NOW, [audit.Event("pause", "test", job="a")])


@pytest.mark.parametrize("opener", [open_store, open_read_only], ids=["write", "read"])
def test_another_programs_database_is_refused_untouched(tmp_path: Path, opener) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StateError, match=r"not a zenml-scheduler state database: it holds other tables \(customers\)"):
        opener(f"sqlite:///{path}")
    assert digest(path) == before


def test_a_meta_table_without_a_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key VARCHAR(64) PRIMARY KEY, value TEXT)")
    conn.commit()
    conn.close()
    for opener in (open_store, open_read_only):
        with pytest.raises(StateError, match="has no readable schema version"):
            opener(f"sqlite:///{path}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("garbage", r"'garbage' is not a database URL; accepted: sqlite:///PATH"),
        ("postgresql://", r"postgresql:// names no database; write postgresql\+psycopg://"),
        ("postgresql+nosuchdriver://u@h/db", r"no driver 'postgresql\+nosuchdriver'"),
        ("mysql://u:secret@h/db", r"the 'mysql' database engine is not supported"),
        ("file:///tmp/state.db", r"file:// URLs are not database URLs; for an SQLite file write sqlite:///PATH"),
        ("sqlite://", r"in-memory database"),
    ],
)
def test_urls_that_name_no_usable_database_are_settings_errors(tmp_path: Path, url: str, message: str) -> None:
    for opener in (open_store, open_read_only):
        with pytest.raises(SettingsError, match=message) as refused:
            opener(url)
        assert "secret" not in str(refused.value)


def test_reading_a_database_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "state.db"
    store = open_read_only(f"sqlite:///{path}")
    assert store.missing
    with store.read() as conn:
        assert audit.query(conn, None, 10) == []
    assert not path.parent.exists()
    with pytest.raises(StateError, match="opened for reading only"), store.write():
        pass


def test_reading_an_empty_schema_creates_no_tables(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        Path(db_url.removeprefix("sqlite:///")).touch()  # an empty file is an empty SQLite database
    store = open_read_only(db_url)
    assert store.missing
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == []
    engine.dispose()


def test_a_database_opened_for_reading_refuses_writes(db_url: str) -> None:
    writer = open_store(db_url)
    with writer.write() as conn:
        audit.append(conn, NOW, [audit.Event("pause", "test", job="a")])
    writer.close()
    store = open_read_only(db_url)
    assert not store.missing
    with store.read() as conn:
        assert [e["event"] for e in audit.query(conn, None, 10)] == ["pause"]
    # Even a statement that writes, sent through a read transaction, is refused by the database.
    with pytest.raises(StateError, match="cannot write the state database"), store.read() as conn:
        conn.execute(text("DELETE FROM audit"))
    with store.read() as conn:
        assert len(audit.query(conn, None, 10)) == 1


def test_reading_never_migrates(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / "schema_v1.sql").read_text())
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StateError, match=r"has schema version 1, older than .*start the daemon of this release once"):
        open_read_only(f"sqlite:///{path}")
    assert digest(path) == before
    store = open_store(f"sqlite:///{path}")  # a writer upgrades it
    with store.write() as c:
        c.execute(meta.update().where(meta.c.key == "schema_version").values(value="999"))
    store.close()
    with pytest.raises(SchemaTooNewError, match="upgrade zenml-scheduler"):
        open_read_only(f"sqlite:///{path}")


def test_a_store_whose_tables_were_dropped_says_so(db_url: str) -> None:
    store = open_store(db_url)
    with store.write() as conn:
        conn.execute(text("DROP TABLE audit"))
    with pytest.raises(StateError, match=r"has lost its tables \(.*audit.*\): it was dropped"), store.read() as conn:
        conn.execute(select(audit_table))
    store.close()
