"""The state database opened for reading only, as the read commands (`status`, `history`,
`audit`, `health`, `plan`...) use it: nothing is created, migrated or locked for writing, so they
work on a read-only file system, a read-only replica, or beside a daemon, and change nothing.

SQLite is opened with `mode=ro` (immutable on a read-only file system, see
`scheduler.store.sqlite_file`), PostgreSQL in read-only transactions. A database that does not
exist yet (no file, an empty file, or no tables) reads as an empty one: an in-memory database
with the current schema stands in for it, and `Store.missing` says so.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from scheduler.errors import StateError
from scheduler.store.db_errors import SQLITE_CANTOPEN, first_line, sqlite_code
from scheduler.store.engine import Store
from scheduler.store.migrations import migrate, refuse_newer, schema_version, stored_version
from scheduler.store.sqlite_file import has_database, readable_only_as_immutable, reader_uri
from scheduler.store.urls import check_url


def open_read_only(url: str) -> Store:
    """The database at `url` for reading. SettingsError for a URL that names no usable database,
    StateError for a database that cannot be read (damaged, written by another release)."""
    parsed = check_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not has_database(path):
            return empty_store(url)
        store = Store(url, _sqlite_reader(path, immutable=False), read_only=True)
        try:
            version = _version(store)
        except DBAPIError as exc:
            store.close()
            if sqlite_code(exc) != SQLITE_CANTOPEN or not readable_only_as_immutable(path):
                raise StateError(f"cannot read state database {path}: {first_line(exc.orig)}") from None
            store = Store(url, _sqlite_reader(path, immutable=True), read_only=True)
            version = _checked_version(store)
        except BaseException:
            store.close()
            raise
    else:
        store = Store(url, _postgresql_reader(url), read_only=True)
        version = _checked_version(store)
    if version is None:
        store.close()
        return empty_store(url)
    return store


def _checked_version(store: Store) -> int | None:
    try:
        return _version(store)
    except DBAPIError as exc:
        store.close()
        raise StateError(f"cannot read state database {store.shown}: {first_line(exc.orig)}") from None
    except BaseException:
        store.close()
        raise


def _version(store: Store) -> int | None:
    """The stored schema version, None for a database without tables yet; StateError unless this
    release can read it as it is (reading never migrates)."""
    with store.read() as conn:
        found = stored_version(conn, store.shown)
    if found is None:
        return None
    refuse_newer(found)
    if found < schema_version():
        raise StateError(
            f"the state database {store.shown} has schema version {found}, older than this zenml-scheduler's "
            f"({schema_version()}); start the daemon of this release once to upgrade it, then read it"
        )
    return found


def empty_store(url: str) -> Store:
    """An empty database with the current schema, in memory, standing in for one not made yet."""
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    with engine.begin() as conn:
        migrate(conn)
    store = Store(url, engine, read_only=True)
    store.missing = True
    return store


def _sqlite_reader(path: Path, immutable: bool) -> Engine:
    uri = reader_uri(path, immutable)
    engine = create_engine(
        f"sqlite:///{path}",
        creator=lambda: sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # BEGIN below: one snapshot per read transaction
        dbapi_connection.execute("PRAGMA busy_timeout=30000")
        dbapi_connection.execute("PRAGMA query_only=ON")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def _postgresql_reader(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # psycopg starts every transaction of this connection READ ONLY; the server refuses writes.
        dbapi_connection.read_only = True

    return engine
