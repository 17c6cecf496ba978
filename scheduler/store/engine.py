"""The state database's engine: SQLite (WAL) by default, PostgreSQL through the same SQLAlchemy
Core code. Writers use `Store.write()`, which on SQLite takes the write lock up front (BEGIN
IMMEDIATE) so that a read-then-write never fails half-way with "database is locked".

A daemon fences its store: every write transaction first checks, inside that transaction, that
this daemon still holds the lease (`Store.fence`) and, on SQLite, that the database file is still
the one it opened. A daemon that lost its lease, or whose file was deleted or replaced under it,
can then write nothing at all.

Errors that no retry cures (a damaged file, tables gone: `scheduler.store.db_errors`) leave every
transaction as a StateError naming the database and what to do. Read commands open the database
with `scheduler.store.read_only`, which creates and migrates nothing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from scheduler import tuning
from scheduler.errors import StateError
from scheduler.store.db_errors import SQLITE_CANTOPEN, first_line, sqlite_code, unusable
from scheduler.store.migrations import installation_id, migrate
from scheduler.store.sqlite_file import has_database, on_read_only_file_system, refuse_foreign
from scheduler.store.urls import check_url, masked_url

AFTER_COMMIT = "after_commit"


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Run `callback` once the surrounding `Store.write()` transaction has committed."""
    conn.info[AFTER_COMMIT].append(callback)


class Store:
    """One state database. Thread-safe: every call checks a connection out of the pool."""

    def __init__(self, url: str, engine: Engine | None = None, *, read_only: bool = False) -> None:
        """The database at `url`, through `engine` when given (a read-only one, say)."""
        self.url = url
        self.engine = engine or _make_engine(url, make_url(url).get_backend_name() == "sqlite")
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.read_only = read_only
        # Set when the database does not exist yet and an empty one stands in for it (read commands).
        self.missing = False
        # SQLite has one write lock per database. Threads of this process queue for it here, where
        # the next one is let in the moment the lock is free, rather than in SQLite's busy handler,
        # which polls with sleeps of up to 100 ms. (Other processes still meet the busy handler.)
        self._write_turn: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        )
        # Checked at the start of every fenced write transaction (see the module docstring).
        self.fence: Callable[[Connection], None] | None = None
        self._file: tuple[str, int, int] | None = None

    @contextmanager
    def write(self, fenced: bool = True) -> Iterator[Connection]:
        """A write transaction; callbacks queued with `after_commit` run once it has committed,
        after the write lock is released. `fenced=False` only for the lease's own writes."""
        if self.read_only:
            raise StateError(f"the state database {self.shown} was opened for reading only")
        callbacks: list[Callable[[], None]] = []
        with self._unusable_as_state_error(), self._write_turn, self.engine.connect() as conn:
            conn = conn.execution_options(write_lock=True)
            conn.info[AFTER_COMMIT] = callbacks
            try:
                with conn.begin():
                    if fenced:
                        self.check_file()
                        if self.fence is not None:
                            self.fence(conn)
                    yield conn
            finally:
                conn.info.pop(AFTER_COMMIT, None)
        for callback in callbacks:
            callback()

    @functools.cached_property
    def installation_id(self) -> str:
        """This state database's id (see `scheduler.store.migrations.installation_id`)."""
        with self.read() as conn:
            return installation_id(conn)

    def pin_file(self) -> None:
        """Remember which file the SQLite database is, so `check_file` notices it being replaced."""
        database = make_url(self.url).database
        if self.is_sqlite and database:
            st = os.stat(database)
            self._file = (database, st.st_dev, st.st_ino)

    def check_file(self) -> None:
        """Raise StateError when the pinned database file was deleted or replaced: writes would
        go to a file nobody else sees any more (and a new daemon could start on the new one)."""
        if self._file is None:
            return
        path, device, inode = self._file
        try:
            st = os.stat(path)
        except OSError:
            raise StateError(f"the state database {path} was deleted while this daemon was running") from None
        if (st.st_dev, st.st_ino) != (device, inode):
            raise StateError(f"the state database {path} was replaced by another file while this daemon was running")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._unusable_as_state_error(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _unusable_as_state_error(self) -> Iterator[None]:
        """A database error no retry can cure becomes a StateError saying what to do (see
        `scheduler.store.db_errors`); any other error stays as it is, for the caller to retry."""
        try:
            yield
        except DBAPIError as exc:
            error = unusable(exc, self.shown)
            if error is None:
                raise
            raise error from None

    @property
    def shown(self) -> str:
        """The database as messages name it: the file of an SQLite database, else the URL, masked."""
        database = make_url(self.url).database
        return database if make_url(self.url).get_backend_name() == "sqlite" and database else masked_url(self.url)

    def close(self) -> None:
        self.engine.dispose()


def _make_engine(url: str, is_sqlite: bool) -> Engine:
    if not is_sqlite:
        engine = create_engine(url, pool_pre_ping=True, future=True)

        @event.listens_for(engine, "connect")
        def _on_pg_connect(dbapi_connection: Any, _record: Any) -> None:
            # A daemon frozen (SIGSTOP, a VM pause) inside a transaction would hold the lease row's
            # lock, and a standby could never take over: the server ends such a session instead.
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET idle_in_transaction_session_timeout = {int(tuning.PG_IDLE_IN_TRANSACTION_S * 1000)}")
            cursor.close()
            dbapi_connection.commit()

        return engine
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
    """Open the database at `url` for writing, creating or migrating its schema. SettingsError for
    a URL that names no usable database (nothing is created then), StateError for a database that
    cannot be used."""
    parsed = check_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and has_database(Path(parsed.database)):
        refuse_foreign(Path(parsed.database))  # both before SQLite writes a byte
    try:
        store = Store(url)
    except OSError as exc:
        raise StateError(f"cannot open state database {masked_url(url)}: {exc.strerror or exc}") from None
    try:
        with store.write(fenced=False) as conn:
            migrate(conn, store.shown)
    except DBAPIError as exc:
        store.close()
        raise StateError(f"cannot open state database {store.shown}: {_open_failure(exc, store)}") from None
    except BaseException:
        store.close()
        raise
    return store


def _open_failure(exc: DBAPIError, store: Store) -> str:
    why = first_line(exc.orig)
    if sqlite_code(exc) != SQLITE_CANTOPEN:
        return why
    if on_read_only_file_system(Path(store.shown)):
        return f"{why}: it is on a read-only file system (commands that only read it work there)"
    return f"{why}: its folder is missing or not writable"
