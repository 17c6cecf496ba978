"""`zenml-scheduler health` and `config`: what service managers and operators ask a daemon."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click

from scheduler.cli import exit_codes, options
from scheduler.config.settings import Settings
from scheduler.daemon.lease import Holder, current_holder
from scheduler.store.engine import masked_url
from scheduler.store.upstream_runs import read_follower_state
from scheduler.store.urls import check_url
from scheduler.timing.clock import utcnow


def effective_settings(settings: Settings) -> dict[str, Any]:
    """Every setting as it is in force, secrets masked (a database password never prints)."""
    values = settings.model_dump(mode="json")
    values["db_url"] = masked_url(settings.resolved_db_url)
    values["state_dir"] = str(settings.resolved_state_dir)
    values["config"] = str(settings.config.resolve())
    return values


def leadership(holder: Holder | None) -> dict[str, Any]:
    """`role`, `epoch` and `leader` as `health --json` and `status --json` report them, from the
    live holder of the lease (None when no daemon holds it)."""
    # high availability: the lease's holder leads; its epoch grows by one at every takeover
    return {
        "role": "leader" if holder else None,
        "epoch": holder.epoch if holder else None,
        "leader": {"host": holder.host, "pid": holder.pid, "since": holder.started_at.isoformat()} if holder else None,
    }


@click.command("health")
@options.common
@options.json_option
def health(settings: Settings, as_json: bool) -> None:
    """Exit 0 when a daemon's heartbeat on this state database is fresh, 3 otherwise."""
    now = utcnow()
    store = options.reading(settings)
    holder = current_holder(store, now, timedelta(seconds=settings.lease_ttl))
    with store.read() as conn:
        follower = read_follower_state(conn) if holder is not None else None
    report = {
        "healthy": holder is not None,
        "host": holder.host if holder else None,
        "pid": holder.pid if holder else None,
        "since": holder.started_at.isoformat() if holder else None,
        "heartbeat_age_s": round(holder.heartbeat_age_s, 1) if holder else None,
        **leadership(holder),
        # the child that reads ZenML runs for after: triggers: running, down (restarting), or off
        "follower": follower or {"state": "off"},
    }
    if as_json:
        click.echo(json.dumps(report))
    elif holder is not None:
        click.echo(f"healthy: {holder.describe()}, heartbeat {report['heartbeat_age_s']}s ago")
        if follower and follower.get("state") == "down":
            error = follower.get("error") or "no error output"
            click.echo(f"follower down since {follower.get('down_since')}: {error}")
    else:
        click.echo(f"unhealthy: no daemon heartbeat within {settings.lease_ttl:.0f}s", err=True)
    if holder is None:
        raise SystemExit(exit_codes.DAEMON_STATE)


@click.command("settings")
@options.common
@options.json_option
def show_settings(settings: Settings, as_json: bool) -> None:
    """The effective settings (flags > ZENML_SCHEDULER_* > .env > defaults), secrets masked; alias: config."""
    check_url(settings.resolved_db_url)  # a URL no command could open is not in force: exit 2 here too
    values = effective_settings(settings)
    if as_json:
        click.echo(json.dumps(values, indent=2))
        return
    for key, value in values.items():
        click.echo(f"{key} = {value}  (ZENML_SCHEDULER_{key.upper()})")
