"""Versioned schema migrations: a database made by an older release is upgraded at open, one
written by a newer release is refused rather than damaged."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import Connection, inspect, select, text

from scheduler.errors import SchemaTooNewError, StateError
from scheduler.store.db_errors import foreign_database
from scheduler.store.schema import after_pending, meta, metadata, runs, upstream_runs, watched_files


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


def _v5_installation_id(conn: Connection) -> None:
    """An id of this state database, so ZenML run names differ between databases sharing a ZenML store."""
    conn.execute(meta.insert().values(key=INSTALLATION_KEY, value=uuid.uuid4().hex[:12]))


def _v6_paused_through(conn: Connection) -> None:
    """How far a paused job's slots are on the record (see schema.jobs)."""
    conn.execute(text("ALTER TABLE jobs ADD COLUMN paused_through TIMESTAMP"))


def _v7_after_triggers(conn: Connection) -> None:
    """Upstream runs and debounced matches of `after:` triggers, and each run's upstream and chain."""
    conn.execute(text("ALTER TABLE runs ADD COLUMN upstream VARCHAR(400)"))
    conn.execute(text("ALTER TABLE runs ADD COLUMN chain_json TEXT"))
    upstream_runs.create(conn)
    after_pending.create(conn)


def _v8_lease_epoch(conn: Connection) -> None:
    """The lease's epoch, checked by every fenced write (high availability on PostgreSQL)."""
    conn.execute(text("ALTER TABLE lease ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0"))


MIGRATIONS: list[Callable[[Connection], None]] = [
    _v2_policies,
    _v3_watched_files,
    _v4_runs_job_status_index,
    _v5_installation_id,
    _v6_paused_through,
    _v7_after_triggers,
    _v8_lease_epoch,
]
INSTALLATION_KEY = "installation_id"


def stored_installation_id(conn: Connection) -> str | None:
    """The id `installation_id` reads, or None when `meta` has lost it (the audit key checks
    the database it belongs to with this, and must not fail on an edited meta table)."""
    return conn.execute(select(meta.c.value).where(meta.c.key == INSTALLATION_KEY)).scalar_one_or_none()


def installation_id(conn: Connection) -> str:
    """This state database's id (random, made once when the database is created or upgraded)."""
    return str(conn.execute(select(meta.c.value).where(meta.c.key == INSTALLATION_KEY)).scalar_one())


def schema_version() -> int:
    return 1 + len(MIGRATIONS)


def stored_version(conn: Connection, where: str) -> int | None:
    """The schema version of the database, None when it has no zenml-scheduler tables yet;
    StateError when it is some other program's SQLite database or its version is unreadable."""
    if not inspect(conn).has_table("meta"):
        # A PostgreSQL schema may well hold other tables beside ours; an SQLite file is one program's.
        others = inspect(conn).get_table_names() if conn.dialect.name == "sqlite" else []
        if others:
            raise foreign_database(where, others)
        return None
    value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one_or_none()
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise StateError(
            f"the state database {where} has no readable schema version ({value!r} in its meta table): "
            "it is damaged or not a zenml-scheduler state database; restore it from a backup or move it away"
        ) from None


def refuse_newer(found: int) -> None:
    if found > schema_version():
        raise SchemaTooNewError(
            f"state database schema version {found} is newer than this zenml-scheduler "
            f"supports ({schema_version()}); upgrade zenml-scheduler"
        )


def migrate(conn: Connection, where: str = "the state database") -> int:
    """Bring the schema to schema_version() inside the caller's write transaction; return the
    version found before (0 for a new database)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(74210391)"))
    found = stored_version(conn, where)
    if found is None:
        metadata.create_all(conn)
        conn.execute(meta.insert().values(key="schema_version", value=str(schema_version())))
        _v5_installation_id(conn)
        return 0
    refuse_newer(found)
    for version in range(found, schema_version()):
        MIGRATIONS[version - 1](conn)
    conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(schema_version())))
    return found
