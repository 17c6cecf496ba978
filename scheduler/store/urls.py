"""State database URLs: which ones are accepted, and how they are shown.

A URL is checked before anything is opened or created, so a mistyped `--db-url` costs one line
of explanation (exit 2) and leaves no file, folder or connection behind.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from scheduler.errors import SettingsError

SETTING = "setting db_url (--db-url / ZENML_SCHEDULER_DB_URL)"
ACCEPTED = "sqlite:///PATH (a file) or postgresql+psycopg://USER@HOST[:PORT]/DATABASE"
ENGINES = ("sqlite", "postgresql")


def check_url(url: str) -> URL:
    """The parsed URL of a state database this release can use; SettingsError saying what is
    wrong and what is accepted otherwise."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise SettingsError(f"{SETTING}: {_shown(url)!r} is not a database URL; accepted: {ACCEPTED}") from None
    backend = parsed.get_backend_name()
    if backend == "file":
        raise SettingsError(f"{SETTING}: file:// URLs are not database URLs; for an SQLite file write sqlite:///PATH")
    if backend not in ENGINES:
        raise SettingsError(f"{SETTING}: the {backend!r} database engine is not supported; accepted: {ACCEPTED}")
    if backend == "sqlite":
        _refuse_in_memory(parsed)
    elif not parsed.database:
        raise SettingsError(
            f"{SETTING}: {masked_url(url)} names no database; write postgresql+psycopg://USER@HOST[:PORT]/DATABASE"
        )
    _require_driver(parsed)
    return parsed


def _require_driver(parsed: URL) -> None:
    """The driver the URL names (or its engine's default) must be installed."""
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise SettingsError(
            f"{SETTING}: no driver {parsed.drivername!r} for {parsed.get_backend_name()}; accepted: {ACCEPTED}"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        hint = (
            "write postgresql+psycopg://... and install the postgres extra (pip install 'zenml-scheduler[postgres]')"
            if parsed.get_backend_name() == "postgresql"
            else f"accepted: {ACCEPTED}"
        )
        raise SettingsError(
            f"{SETTING}: {parsed.drivername}:// needs the {dialect.driver} driver, which is not installed "
            f"({exc.name or exc}); {hint}"
        ) from None


def _refuse_in_memory(parsed: URL) -> None:
    """An in-memory SQLite database lives and dies with one connection: every thread would see its
    own empty database, two daemons could run at once, and nothing would be left at exit."""
    database = parsed.database or ""
    if database in ("", ":memory:") or "mode=memory" in database or parsed.query.get("mode") == "memory":
        raise SettingsError(
            f"{masked_url(parsed)} is an in-memory database, which keeps no state and no lease; "
            "give a file, e.g. sqlite:///var/lib/zenml-scheduler/state.db"
        )


def masked_url(url: str | URL) -> str:
    """A database URL with its password replaced, safe to print and log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


def _shown(url: str) -> str:
    """An unparseable URL as it may be printed: a password-like part between ':' and '@' hidden."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)[:200]
