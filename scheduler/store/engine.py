"""The state database's engine: SQLite (WAL) by default, PostgreSQL through the same SQLAlchemy
Core code. Writers use `Store.write()`, which on SQLite takes the write lock up front (BEGIN
IMMEDIATE) so that a read-then-write never fails half-way with "database is locked".
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from scheduler.errors import StateError
from scheduler.store.migrations import migrate

AFTER_COMMIT = "after_commit"


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Run `callback` once the surrounding `Store.write()` transaction has committed."""
    conn.info[AFTER_COMMIT].append(callback)


class Store:
    """One state database. Thread-safe: every call checks a connection out of the pool."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        self.engine = _make_engine(url, self.is_sqlite)
        # SQLite has one write lock per database. Threads of this process queue for it here, where
        # the next one is let in the moment the lock is free, rather than in SQLite's busy handler,
        # which polls with sleeps of up to 100 ms. (Other processes still meet the busy handler.)
        self._write_turn: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; callbacks queued with `after_commit` run once it has committed."""
        with self._write_turn, self.engine.connect() as conn:
            conn = conn.execution_options(write_lock=True)
            conn.info[AFTER_COMMIT] = []
            try:
                with conn.begin():
                    yield conn
                for callback in conn.info[AFTER_COMMIT]:
                    callback()
            finally:
                conn.info.pop(AFTER_COMMIT, None)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def close(self) -> None:
        self.engine.dispose()


def _make_engine(url: str, is_sqlite: bool) -> Engine:
    if not is_sqlite:
        return create_engine(url, pool_pre_ping=True, future=True)
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("write_lock")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def open_store(url: str) -> Store:
    """Open the database at `url`, creating or migrating its schema; raise StateError if unusable."""
    try:
        store = Store(url)
    except OSError as exc:
        raise StateError(f"cannot open state database {masked_url(url)}: {exc}") from None
    try:
        with store.write() as conn:
            migrate(conn)
    except OperationalError as exc:
        store.close()
        raise StateError(f"cannot open state database {masked_url(url)}: {exc.orig}") from None
    return store


def masked_url(url: str) -> str:
    """A database URL with its password replaced, safe to print and log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"
