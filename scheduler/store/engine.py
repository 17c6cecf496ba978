"""The state database: tables, engine set-up, and versioned migrations.

SQLite (WAL) by default, PostgreSQL through the same SQLAlchemy Core code. Writers use
`Store.write()`, which on SQLite takes the write lock up front (BEGIN IMMEDIATE) so that a
read-then-write never fails half-way with "database is locked".
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from scheduler.errors import SchemaTooNewError, StateError


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; stored naive-UTC on every engine."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state database")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

lease = Table(
    "lease",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("holder", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("pid_start", String(32)),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("config_path", Text),
)

jobs = Table(
    "jobs",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("spec_json", Text, nullable=False),
    Column("digest", String(16), nullable=False),
    Column("trigger", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("paused", Boolean, nullable=False, default=False),
    Column("paused_reason", Text),
    Column("last_slot", UTCDateTime),
    Column("next_fire_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("removed_at", UTCDateTime),
    Column("runs_total", Integer, nullable=False, default=0),
    Column("succeeded", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("last_outcome", String(20)),
    Column("last_outcome_at", UTCDateTime),
    Column("last_run_key", String(400)),
    # dispatch state (schema 2)
    Column("launched", Integer, nullable=False, default=0),
    Column("last_dispatch", String(40)),
    Column("last_dispatch_at", UTCDateTime),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("error_count", Integer, nullable=False, default=0),
    Column("first_error_at", UTCDateTime),
    Column("last_error_at", UTCDateTime),
    Column("last_error", Text),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_key", String(400), nullable=False),
    Column("attempt", Integer, nullable=False, default=1),
    Column("job", String(100), nullable=False),
    Column("trigger", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", Text),
    Column("scheduled_for", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("pid", Integer),
    Column("pid_start", String(32)),
    Column("exit_code", Integer),
    Column("zenml_run_id", String(64)),
    Column("zenml_run_name", String(255)),
    Column("error", Text),
    Column("parameters_json", Text),
    Column("log_path", Text),
    Column("config_revision", String(16)),
    Column("source", String(200), nullable=False),
    Column("not_before", UTCDateTime),  # schema 2: jitter and retry back-off
    UniqueConstraint("run_key", "attempt", name="uq_runs_run_key_attempt"),
    Index("ix_runs_status", "status"),
    Index("ix_runs_job_id", "job", "id"),
    # schema 4: a job's active runs are counted for every fire; a backlog of thousands queued
    # (an API burst) must not make each count scan them
    Index("ix_runs_job_status_id", "job", "status", "id"),
)

requests = Table(
    "requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(20), nullable=False, default="run"),  # schema 2: run | resume
    Column("job", String(100), nullable=False),
    Column("run_key", String(400), nullable=False, unique=True),
    Column("parameters_json", Text),
    Column("source", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("handled_at", UTCDateTime),
    Index("ix_requests_pending", "handled_at"),
)

# Every file a watch job dispatched, skipped or refused: the memory that makes each file run once,
# written in the same transaction as its run row. `version` is '' (on_modified: ignore, a path runs
# once) or the content digest (retrigger: new content runs again).
watched_files = Table(
    "watched_files",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job", String(100), nullable=False),
    Column("path", Text, nullable=False),
    Column("version", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("run_key", String(400)),
    Column("status", String(20), nullable=False),  # dispatched | skipped
    Column("seen_at", UTCDateTime, nullable=False),
    UniqueConstraint("job", "path", "version", name="uq_watched_files_job_path_version"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("event", String(40), nullable=False),
    Column("job", String(100)),
    Column("run_key", String(400)),
    Column("source", String(200), nullable=False),
    Column("config_revision", String(16)),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_job", "job"),
)


# Each entry upgrades the schema from version N to N+1 for databases created by older releases.
# A new database is created at schema_version() directly from `metadata`.
def _v2_policies(conn: Connection) -> None:
    """Dispatch state per job, run back-off, and request kinds (firing policies)."""
    for statement in (
        "ALTER TABLE jobs ADD COLUMN launched INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN last_dispatch VARCHAR(40)",
        "ALTER TABLE jobs ADD COLUMN last_dispatch_at TIMESTAMP",
        "ALTER TABLE jobs ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN error_count INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN first_error_at TIMESTAMP",
        "ALTER TABLE jobs ADD COLUMN last_error_at TIMESTAMP",
        "ALTER TABLE jobs ADD COLUMN last_error TEXT",
        "ALTER TABLE runs ADD COLUMN not_before TIMESTAMP",
        "ALTER TABLE requests ADD COLUMN kind VARCHAR(20) NOT NULL DEFAULT 'run'",
    ):
        conn.execute(text(statement))
    conn.execute(text("UPDATE jobs SET launched = runs_total"))


def _v3_watched_files(conn: Connection) -> None:
    """The files watch jobs have seen (file-watch triggers)."""
    watched_files.create(conn)


def _v4_runs_job_status_index(conn: Connection) -> None:
    """Count and pick a job's queued runs from an index (the HTTP API's bursts)."""
    next(index for index in runs.indexes if index.name == "ix_runs_job_status_id").create(conn)


MIGRATIONS: list[Callable[[Connection], None]] = [_v2_policies, _v3_watched_files, _v4_runs_job_status_index]


def schema_version() -> int:
    return 1 + len(MIGRATIONS)


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
        raise StateError(f"cannot open state database {_safe(url)}: {exc}") from None
    try:
        migrate(store)
    except OperationalError as exc:
        store.close()
        raise StateError(f"cannot open state database {_safe(url)}: {exc.orig}") from None
    return store


def migrate(store: Store) -> int:
    """Bring the schema to schema_version(); return the version found before."""
    with store.write() as conn:
        if not store.is_sqlite:
            conn.execute(text("SELECT pg_advisory_xact_lock(74210391)"))
        if not inspect(conn).has_table("meta"):
            metadata.create_all(conn)
            conn.execute(meta.insert().values(key="schema_version", value=str(schema_version())))
            return 0
        found = int(conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one())
        if found > schema_version():
            raise SchemaTooNewError(
                f"state database schema version {found} is newer than this zenml-scheduler "
                f"supports ({schema_version()}); upgrade zenml-scheduler"
            )
        for version in range(found, schema_version()):
            MIGRATIONS[version - 1](conn)
        conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(schema_version())))
        return found


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
