"""`zenml-scheduler api-key ...`: create, list and revoke the HTTP API's keys."""

from __future__ import annotations

from typing import cast

import click

from scheduler.api.keys import create_key, read_key_file, revoke_key
from scheduler.cli import options
from scheduler.cli.text_table import render_table
from scheduler.config.settings import Settings
from scheduler.config.stored_keys import Scope
from scheduler.errors import NotFoundError


@click.group("api-key")
def api_key() -> None:
    """Manage HTTP API keys (stored hashed in the key file; the key is shown once)."""


@api_key.command("create")
@click.option("--name", required=True, help="Who uses the key (shown in the audit trail), e.g. ci.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["read", "trigger", "admin"]),
    help="read: GET endpoints and /metrics; trigger: also start runs; admin: also pause and resume.",
)
@options.common
@options.json_option
def create(settings: Settings, name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create a key and print it once; only its hash is kept."""
    path = settings.resolved_api_keys_file
    key = create_key(path, name, cast(tuple[Scope, ...], scopes))
    if as_json:
        options.emit({"name": name, "scopes": list(scopes), "key": key, "file": str(path)})
        return
    click.echo(key)
    click.echo(
        f"API key {name!r} ({', '.join(scopes)}) added to {path}. It is shown only now: store it in "
        "your secret manager. A running daemon picks it up within a second.",
        err=True,
    )


@api_key.command("list")
@options.common
@options.json_option
def list_keys(settings: Settings, as_json: bool) -> None:
    """Names and scopes of the keys in the key file and the api_keys setting (never the keys)."""
    path = settings.resolved_api_keys_file
    rows = [(k, "setting") for k in settings.api_keys] + [(k, str(path)) for k in read_key_file(path)]
    if as_json:
        options.emit([{"name": k.name, "scopes": list(k.scopes), "created_at": k.created_at, "from": where}
              for k, where in rows])  # fmt: skip
        return
    click.echo(render_table(["NAME", "SCOPES", "CREATED", "FROM"],
                            [[k.name, ",".join(k.scopes), k.created_at, where] for k, where in rows]))  # fmt: skip


@api_key.command("revoke")
@click.argument("name")
@options.common
def revoke(settings: Settings, name: str) -> None:
    """Remove the key NAME from the key file; a running daemon refuses it within a second."""
    path = settings.resolved_api_keys_file
    if not revoke_key(path, name):
        raise NotFoundError(f"no API key named {name!r} in {path}")
    click.echo(f"revoked {name}")
