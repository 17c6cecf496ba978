"""The state database's tables, as SQLAlchemy Core metadata (the one place they are declared)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def scrub(text: str) -> str:
    """`text` with control characters (tab and line breaks aside) written as ``\\xNN``: what a
    text column stores. PostgreSQL refuses NUL in text outright, and no log, terminal or audit
    reader should meet raw control characters; scrubbing twice changes nothing."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


class ScrubbedString(TypeDecorator[str]):
    """A String whose values are stored scrubbed (see `scrub`)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return scrub(value) if isinstance(value, str) else value


class ScrubbedText(ScrubbedString):
    """Text stored scrubbed. JSON columns stay plain Text: json.dumps escapes control characters."""

    impl = Text
    cache_ok = True


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
    Column("key", ScrubbedString(64), primary_key=True),
    Column("value", Text, nullable=False),
)

lease = Table(
    "lease",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("holder", ScrubbedString(64), nullable=False),
    Column("host", ScrubbedString(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("pid_start", ScrubbedString(32)),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("config_path", ScrubbedText),
    # Grows by one at every acquisition: the fence checks it, so a daemon that held an older epoch writes nothing.
    Column("epoch", Integer, nullable=False, server_default="0"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("name", ScrubbedString(100), primary_key=True),
    Column("spec_json", Text, nullable=False),
    Column("digest", ScrubbedString(16), nullable=False),
    Column("trigger", ScrubbedString(200), nullable=False),
    Column("timezone", ScrubbedString(64), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("paused", Boolean, nullable=False, default=False),
    Column("paused_reason", ScrubbedText),
    Column("last_slot", UTCDateTime),
    Column("next_fire_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("removed_at", UTCDateTime),
    Column("runs_total", Integer, nullable=False, default=0),
    Column("succeeded", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("last_outcome", ScrubbedString(20)),
    Column("last_outcome_at", UTCDateTime),
    Column("last_run_key", ScrubbedString(400)),
    # dispatch state (schema 2)
    Column("launched", Integer, nullable=False, default=0),
    Column("last_dispatch", ScrubbedString(40)),
    Column("last_dispatch_at", UTCDateTime),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("error_count", Integer, nullable=False, default=0),
    Column("first_error_at", UTCDateTime),
    Column("last_error_at", UTCDateTime),
    Column("last_error", ScrubbedText),
    # schema 6: while a job is paused, its slots up to here are on the record as skipped `paused`
    # (its watermark `last_slot` stays where it was, for the catch-up on resume)
    Column("paused_through", UTCDateTime),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_key", ScrubbedString(400), nullable=False),
    Column("attempt", Integer, nullable=False, default=1),
    Column("job", ScrubbedString(100), nullable=False),
    Column("trigger", ScrubbedString(20), nullable=False),
    Column("status", ScrubbedString(20), nullable=False),
    Column("reason", ScrubbedText),
    Column("scheduled_for", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("pid", Integer),
    Column("pid_start", ScrubbedString(32)),
    Column("exit_code", Integer),
    Column("zenml_run_id", ScrubbedString(64)),
    Column("zenml_run_name", ScrubbedString(255)),
    Column("error", ScrubbedText),
    Column("parameters_json", Text),
    Column("log_path", ScrubbedText),
    Column("config_revision", ScrubbedString(16)),
    Column("source", ScrubbedString(200), nullable=False),
    Column("not_before", UTCDateTime),  # schema 2: jitter and retry back-off
    # schema 7: a run started by an `after:` trigger names its upstream run (our run key or the
    # ZenML run id) and carries the chain of upstream pipelines that led to it (JSON list)
    Column("upstream", ScrubbedString(400)),
    Column("chain_json", Text),
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
    Column("kind", ScrubbedString(20), nullable=False, default="run"),  # schema 2: run | resume
    Column("job", ScrubbedString(100), nullable=False),
    Column("run_key", ScrubbedString(400), nullable=False, unique=True),
    Column("parameters_json", Text),
    Column("source", ScrubbedString(200), nullable=False),
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
    Column("job", ScrubbedString(100), nullable=False),
    Column("path", ScrubbedText, nullable=False),
    Column("version", ScrubbedString(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("run_key", ScrubbedString(400)),
    Column("status", ScrubbedString(20), nullable=False),  # dispatched | skipped
    Column("seen_at", UTCDateTime, nullable=False),
    UniqueConstraint("job", "path", "version", name="uq_watched_files_job_path_version"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("event", ScrubbedString(40), nullable=False),
    Column("job", ScrubbedString(100)),
    Column("run_key", ScrubbedString(400)),
    Column("source", ScrubbedString(200), nullable=False),
    Column("config_revision", ScrubbedString(16)),
    Column("details", Text, nullable=False),
    Column("prev_hash", ScrubbedString(64), nullable=False),
    Column("hash", ScrubbedString(64), nullable=False),
    Index("ix_audit_job", "job"),
)

# schema 7: ended runs that `after:` triggers look at, ours (recorded with the outcome, key
# `run:<runs.id>`) and any ZenML run the follower read (key `zenml:<ZenML run id>`). A row is
# handled once, in the transaction that records what it fired; `catchup` marks runs that ended
# while no daemon was running (fired per the jobs' catchup policy).
upstream_runs = Table(
    "upstream_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", ScrubbedString(400), nullable=False, unique=True),
    Column("origin", ScrubbedString(10), nullable=False),  # ours | zenml
    Column("job", ScrubbedString(100)),
    Column("pipeline", ScrubbedString(255)),
    Column("zenml_run_id", ScrubbedString(64)),
    Column("zenml_run_name", ScrubbedString(255)),
    Column("status", ScrubbedString(20), nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    Column("view_json", Text, nullable=False),
    Column("chain_json", Text),
    Column("catchup", Boolean, nullable=False, default=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("handled_at", UTCDateTime),
    Index("ix_upstream_runs_handled", "handled_at"),
    Index("ix_upstream_runs_zenml_run_id", "zenml_run_id"),
)

# schema 7: upstream runs an `after:` job with `debounce` matched and has not fired for yet; the
# job fires once for all of them when no new one has ended for the quiet period.
after_pending = Table(
    "after_pending",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job", ScrubbedString(100), nullable=False),
    Column("upstream_id", ScrubbedString(400), nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    Column("request_json", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("job", "upstream_id", name="uq_after_pending_job_upstream"),
)
