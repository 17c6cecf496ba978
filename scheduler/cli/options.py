"""What every command shares: the --config/--db-url/--state-dir options turned into settings,
--json, opening the state database, and the checks several commands make."""

from __future__ import annotations

import functools
import getpass
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from scheduler.config.loader import load_config
from scheduler.config.model import Config
from scheduler.config.settings import Settings, load_settings
from scheduler.daemon.lease import current_holder
from scheduler.errors import DaemonNotRunningError, NotFoundError
from scheduler.store.audit_key import AuditKey, attach
from scheduler.store.engine import Store, masked_url, open_store
from scheduler.store.read_only import open_read_only
from scheduler.store.schema import jobs
from scheduler.timing.clock import utcnow


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """--config/--db-url/--state-dir on every command, turned into Settings."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="schedules.yaml to use [env ZENML_SCHEDULER_CONFIG; default ./schedules.yaml]",
    )
    @click.option("--db-url", default=None, help="State database URL [env ZENML_SCHEDULER_DB_URL]")
    @click.option(
        "--state-dir",
        default=None,
        type=click.Path(file_okay=False),
        help="Run logs and default database [env ZENML_SCHEDULER_STATE_DIR]",
    )
    @functools.wraps(func)
    def wrapper(config_path: str | None, db_url: str | None, state_dir: str | None, **kwargs: Any) -> Any:
        settings = load_settings(config=config_path, db_url=db_url, state_dir=state_dir)
        return func(settings, **kwargs)

    return wrapper


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def source() -> str:
    """Who is acting, as the audit trail names a person at a terminal: cli:<user>@<host>."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def state(settings: Settings) -> Store:
    """The state database for a command that writes (created or migrated as needed), with the
    audit key every audit append of this process chains with."""
    store = open_store(settings.resolved_db_url)
    attach(store, AuditKey(settings.resolved_audit_key_file))
    return store


def reading(settings: Settings, note: bool = True) -> Store:
    """The state database for a command that only reads: opened read-only, nothing created or
    migrated; one that does not exist yet reads as empty (and a note on stderr says so). The
    audit key is attached too: `audit verify` checks the keyed chain with it."""
    store = open_read_only(settings.resolved_db_url)
    if store.missing and note:
        click.echo(f"note: no state database at {store.shown} yet; nothing is recorded there", err=True)
    attach(store, AuditKey(settings.resolved_audit_key_file))
    return store


def config_of(settings: Settings, path: Path | None = None) -> Config:
    """schedules.yaml (or `path`) as every command reads it: within the size limit, and with watch
    jobs kept out of the places the daemon writes."""
    return load_config(path or settings.config, settings.config_max_bytes, settings.state_paths)


# One rule for a job named on the command line, whichever command names it: a job neither in
# schedules.yaml nor in the state database is not found (exit 4) with the same message. A job
# only the database knows (removed from the file) still has its record (`history`, `audit`,
# `status`), but nothing can be scheduled, triggered or paused for it any more.


def job_or_fail(settings: Settings, config: Config, name: str) -> None:
    """For commands that act on a job's definition: `name` must be a job in schedules.yaml."""
    if name in config.jobs:
        return
    _not_found(config, name, stored_job(state(settings), name))


def recorded_job_or_fail(settings: Settings, store: Store, name: str) -> None:
    """For commands that read a job's record: `name` is a job in the state database (also one
    removed from the file since), or one in schedules.yaml (with no record yet)."""
    found = stored_job(store, name)
    if found is not None:
        return
    config = config_of(settings)  # only now: the record of a known job never depends on the file
    if name not in config.jobs:
        _not_found(config, name, None)


@dataclass(frozen=True)
class StoredJob:
    name: str
    removed_at: datetime | None  # None: still in the config the daemon last applied


def stored_job(store: Store, name: str) -> StoredJob | None:
    """The state database's row of job `name`, or None for a job it never had."""
    with store.read() as conn:
        row = conn.execute(select(jobs.c.removed_at).where(jobs.c.name == name)).first()
    return None if row is None else StoredJob(name, row.removed_at)


def _not_found(config: Config, name: str, stored: StoredJob | None) -> None:
    if stored is not None:
        removed_at = stored.removed_at
        since = f" (removed {removed_at.isoformat(timespec='seconds')})" if removed_at else ""
        raise NotFoundError(
            f"job {name!r} is no longer in {config.path}{since}; its record stays: "
            f"`zenml-scheduler history --job {name}`, `zenml-scheduler audit --job {name}`"
        )
    known = ", ".join(sorted(config.jobs)) or "(none)"
    raise NotFoundError(f"no job named {name!r} in {config.path} or in the state database; jobs: {known}")


def require_daemon(settings: Settings, store: Store) -> None:
    """Raise DaemonNotRunningError unless a daemon holds a live lease on this state database."""
    if current_holder(store, utcnow(), timedelta(seconds=settings.lease_ttl)) is None:
        raise DaemonNotRunningError(
            f"no zenml-scheduler daemon is running on {masked_url(settings.resolved_db_url)}; "
            f"start one with `zenml-scheduler run --config {settings.config}`"
        )
