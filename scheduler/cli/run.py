"""`zenml-scheduler run` and `validate`: load, check and (for run) serve a config."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from scheduler.cli import options
from scheduler.cli.startup_checks import StoppedBeforeStart, StopSignalsUntilStarted, require_writable_state_dir
from scheduler.cli.text_table import render_table
from scheduler.config.model import Config
from scheduler.config.settings import Settings
from scheduler.daemon.lease import current_holder
from scheduler.daemon.logs import setup_logging
from scheduler.errors import ConfigError, LeaseHeldError, LeaseLostError, Problem, SettingsError
from scheduler.policy.reload_diff import emptying_problem
from scheduler.runs.preflight import checked_config
from scheduler.store.catalog import active_jobs, record_rejected_config
from scheduler.store.engine import Store, masked_url
from scheduler.timing.clock import utcnow

if TYPE_CHECKING:
    from scheduler.daemon.leadership import Transitions

log = logging.getLogger(__name__)


def load_checked(settings: Settings, path: Path | None = None, check: bool = True) -> Config:
    """The config at `path`, with its pipelines checked in a child and their descriptions attached
    (`Config.pipelines`, used to type-check API overrides); ConfigError lists every problem.
    Without `check` the config carries no descriptions."""
    config = options.config_of(settings, path)
    if check:
        config = checked_config(config, settings.python, timeout=settings.pipeline_check_timeout)
    return config


def missing_folders(config: Config) -> list[Problem]:
    """Watch folders that do not exist yet: a warning, since the daemon waits for them to appear."""
    return [
        config.source.problem(
            ("jobs", name, "watch", "path"),
            f"watch folder {job.watch_root} does not exist yet; the job waits for it to appear",
            severity="warning",
        )
        for name, job in config.jobs.items()
        if job.watch_root is not None and not job.watch_root.is_dir()
    ]


def refuse_emptying(store: Store, config: Config, allow_empty: bool) -> None:
    """Raise ConfigError when starting on `config` would remove every job the database has active."""
    if config.jobs:
        return
    with store.read() as conn:
        problem = emptying_problem(config, active_jobs(conn), allow_empty)
    if problem is not None:
        raise ConfigError([problem])


STARTUP_ROWS = 50


def startup_table(config: Config, next_fires: dict[str, datetime | None]) -> str:
    """The jobs and their next fire times; long configs are cut short (see `list` for all)."""
    rows = []
    for name, job in list(config.jobs.items())[:STARTUP_ROWS]:
        first = next_fires.get(name)
        local = first.astimezone(job.zone).isoformat() if first else ("on file arrival" if job.is_watch else "-")
        rows.append([name, job.trigger_text, job.spec.timezone, local, "enabled" if job.spec.enabled else "disabled"])
    table = render_table(["JOB", "TRIGGER", "TIMEZONE", "NEXT FIRE", "STATE"], rows)
    hidden = len(config.jobs) - STARTUP_ROWS
    return table + (f"\n... and {hidden} more (zenml-scheduler list)" if hidden > 0 else "")


@click.command("validate")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--no-pipelines", is_flag=True, help="Check syntax and schema only; do not import pipelines.")
@options.common
def validate(settings: Settings, file: str | None, no_pipelines: bool) -> None:
    """Check FILE (default: the configured schedules.yaml); exit 2 listing every error."""
    config = load_checked(settings, Path(file) if file else None, check=not no_pipelines)
    for warning in missing_folders(config):
        click.echo(str(warning), err=True)
    click.echo(f"{config.path}: OK ({len(config.jobs)} jobs, revision {config.revision})")


@click.command("run")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "text"]),
    default=None,
    help="Log format [env ZENML_SCHEDULER_LOG_FORMAT; auto = json unless a terminal]",
)
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default=None)
@click.option("--max-concurrent-runs", type=int, default=None, help="Runs at once [default: CPU count]")
@click.option("--misfire-grace", default=None, help="How late a slot may still fire, e.g. 10m")
@click.option("--shutdown-grace", default=None, help="On SIGTERM, how long runs may finish, e.g. 60s")
@click.option("--kill-grace", default=None, help="SIGTERM to SIGKILL for a run's process group, e.g. 10s")
@click.option("--lease-ttl", default=None, help="Heartbeat age after which a daemon's lease expires, e.g. 15s")
@click.option("--python", default=None, help="Interpreter for child processes [default: this one]")
@click.option(
    "--api/--no-api", "api_enabled", default=None, help="Serve the HTTP API [env ZENML_SCHEDULER_API_ENABLED]"
)
@click.option("--api-host", default=None, help="API address [default 127.0.0.1; others need API keys]")
@click.option("--api-port", type=int, default=None, help="API port [default 8765; 0 = any free port]")
@click.option("--no-check-pipelines", is_flag=True, help="Skip importing pipelines at start (not recommended).")
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Apply a config without jobs even when it removes every job [env ZENML_SCHEDULER_ALLOW_EMPTY]",
)
@click.option(
    "--standby",
    is_flag=True,
    help="On PostgreSQL, wait while another daemon leads and take over when it lapses [env ZENML_SCHEDULER_STANDBY]",
)
@options.common
def run(
    settings: Settings,
    no_check_pipelines: bool,
    allow_empty: bool,
    standby: bool,
    **flags: str | int | None,
) -> None:
    """Run the daemon in the foreground until SIGTERM or Ctrl+C."""
    from scheduler.config.settings import load_settings
    from scheduler.daemon.open_files import check_connection_room, raise_open_files_limit

    given = {
        **flags,
        "allow_empty": True if allow_empty else None,
        "standby": True if standby else None,
    }  # not given: the environment decides
    settings = load_settings(**{**settings.model_dump(exclude_unset=True), **given})
    setup_logging(settings.log_format, settings.log_level)
    open_files = raise_open_files_limit()
    if settings.api_enabled:
        check_connection_room(open_files, settings.api_max_connections)
    try:
        with StopSignalsUntilStarted():
            _serve(settings, no_check_pipelines)
    except StoppedBeforeStart as stop:
        click.echo(f"zenml-scheduler: stopped ({stop})", err=True)


def _serve(settings: Settings, no_check_pipelines: bool) -> None:
    from scheduler.daemon.leadership import Transitions
    from scheduler.daemon.sd_notify import Notifier
    from scheduler.daemon.standby import STANDBY_ON_SQLITE, Standby

    settings.check_python()
    require_writable_state_dir(settings)
    if settings.standby and settings.resolved_db_url.startswith("sqlite"):
        raise SettingsError(STANDBY_ON_SQLITE)
    store = options.state(settings)
    # Refuse early and clearly when another daemon runs; the lease itself is taken in start().
    holder = current_holder(store, utcnow(), timedelta(seconds=settings.lease_ttl))
    if holder is not None and not settings.standby:
        raise LeaseHeldError(f"another zenml-scheduler daemon already runs on this state database: {holder.describe()}")
    config, stamp = _load(settings, store, no_check_pipelines)
    transitions = Transitions()  # over the process's life, across the daemons it runs in turn
    while True:
        if settings.standby:
            ttl = timedelta(seconds=settings.lease_ttl)
            Standby(store, ttl, Notifier(), socket.gethostname(), os.getpid()).wait()
            if _stamp(settings) != stamp:  # edited while this daemon waited: lead with the file as it is now
                config, stamp = _load(settings, store, no_check_pipelines)
        led = _lead(settings, config, store, no_check_pipelines, transitions)
        if led:
            break
        # Lost the lease to another daemon (or the race for a free one): wait as a standby again,
        # on a store of its own (the old one is fenced with the lost lease).
        store.close()
        store = options.state(settings)
    click.echo(json.dumps({"stopped": True}) if settings.log_format == "json" else "zenml-scheduler: stopped")


def _stamp(settings: Settings) -> tuple[int, int, int] | None:
    try:
        st = os.stat(settings.config)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _load(settings: Settings, store: Store, no_check_pipelines: bool) -> tuple[Config, tuple[int, int, int] | None]:
    """schedules.yaml, checked (a rejection is recorded), and the file's stamp when it was read."""
    stamp = _stamp(settings)
    try:
        config = load_checked(settings, check=not no_check_pipelines)
        refuse_emptying(store, config, settings.allow_empty)
    except ConfigError as exc:
        with store.write() as conn:
            record_rejected_config(conn, settings.config, exc.problems, utcnow(), "daemon")
        raise
    for warning in missing_folders(config):
        log.warning("%s", warning)
    return config, stamp


def _lead(settings: Settings, config: Config, store: Store, no_check_pipelines: bool, transitions: Transitions) -> bool:
    """Start a daemon and run it until it stops (True). With --standby, False when it could not
    take the lease or lost it; without, those end the process (exit 3)."""
    from scheduler.daemon.loop import Daemon
    from scheduler.daemon.standby import record_demotion

    daemon = Daemon(settings, config, store, check_pipelines=not no_check_pipelines, transitions=transitions)
    try:
        daemon.start()
    except LeaseHeldError:
        if not settings.standby:
            raise
        log.info("standby: another daemon took the lease first")
        return False
    click.echo(
        f"zenml-scheduler: {len(config.jobs)} jobs from {config.path} (revision {config.revision}), "
        f"state {masked_url(settings.resolved_db_url)}"
    )
    click.echo(startup_table(config, daemon.next_fires))
    if daemon.services.api_url:
        click.echo(f"HTTP API on {daemon.services.api_url} (OpenAPI at {daemon.services.api_url}/openapi.json)")
    sys.stdout.flush()
    daemon.notifier.ready(daemon.status_line())  # recovered, reconciled and timing: ready
    try:
        daemon.run()
    except LeaseLostError as exc:
        then = "standby" if settings.standby else "exit"
        record_demotion(store, daemon.lease, str(exc), then, utcnow())
        transitions.demoted()
        if not settings.standby:
            raise
        log.warning("demoted: this daemon no longer leads and waits as a standby again")
        return False
    return True
