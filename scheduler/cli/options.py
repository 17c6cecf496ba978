"""What every command shares: the --config/--db-url/--state-dir options turned into settings,
--json, opening the state database, and the checks several commands make."""

from __future__ import annotations

import functools
import getpass
import json
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import click

from scheduler.config.model import Config
from scheduler.config.settings import Settings, load_settings
from scheduler.daemon.lease import current_holder
from scheduler.errors import DaemonNotRunningError, NotFoundError
from scheduler.store.engine import Store, masked_url, open_store
from scheduler.store.read_only import open_read_only
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
    """The state database for a command that writes: created or migrated as needed."""
    return open_store(settings.resolved_db_url)


def reading(settings: Settings, note: bool = True) -> Store:
    """The state database for a command that only reads: opened read-only, nothing created or
    migrated; one that does not exist yet reads as empty (and a note on stderr says so)."""
    store = open_read_only(settings.resolved_db_url)
    if store.missing and note:
        click.echo(f"note: no state database at {store.shown} yet; nothing is recorded there", err=True)
    return store


def job_or_fail(config: Config, name: str) -> None:
    if name not in config.jobs:
        known = ", ".join(sorted(config.jobs)) or "(none)"
        raise NotFoundError(f"no job named {name!r} in {config.path}; jobs: {known}")


def require_daemon(settings: Settings, store: Store) -> None:
    """Raise DaemonNotRunningError unless a daemon holds a live lease on this state database."""
    if current_holder(store, utcnow(), timedelta(seconds=settings.lease_ttl)) is None:
        raise DaemonNotRunningError(
            f"no zenml-scheduler daemon is running on {masked_url(settings.resolved_db_url)}; "
            f"start one with `zenml-scheduler run --config {settings.config}`"
        )
