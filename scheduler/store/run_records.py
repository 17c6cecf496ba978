"""The public JSON shape of a run, shared by the HTTP API and webhook payloads."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from scheduler.store.schema import runs


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def run_record(row: Any) -> dict[str, Any]:
    """A `runs` row as `history --json`, the API and webhooks show it (ISO 8601 UTC times, seconds)."""
    duration = (row.finished_at - row.started_at).total_seconds() if row.finished_at and row.started_at else None
    return {
        "id": row.id,
        "run_key": row.run_key,
        "attempt": row.attempt,
        "job": row.job,
        "trigger": row.trigger,
        "status": row.status,
        "scheduled_for": _iso(row.scheduled_for),
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "duration_s": duration,
        "zenml_run_id": row.zenml_run_id,
        "zenml_run_name": row.zenml_run_name,
        "exit_code": row.exit_code,
        "error": row.error or row.reason,
        "reason": row.reason,
        "parameters": json.loads(row.parameters_json) if row.parameters_json else None,
        "log_path": row.log_path,
        "config_revision": row.config_revision,
        "source": row.source,
        "upstream": row.upstream,
        "chain": json.loads(row.chain_json) if row.chain_json else [],
    }


def latest_attempt(conn: Connection, run_key: str) -> Any | None:
    """The newest attempt of a run key (a retried run has one row per attempt)."""
    return latest_attempts(conn, [run_key]).get(run_key)


def latest_attempts(conn: Connection, run_keys: list[str]) -> dict[str, Any]:
    """{run key: its newest attempt} for those of `run_keys` that have a row."""
    latest: dict[str, Any] = {}
    for row in conn.execute(select(runs).where(runs.c.run_key.in_(run_keys)).order_by(runs.c.attempt)):
        latest[row.run_key] = row
    return latest
