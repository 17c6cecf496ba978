"""Make sure the ZenML store is initialised, once, before a child uses it.

ZenML creates a brand-new local store in whichever process touches it first. Two children
doing that at the same moment race: one sees a half-migrated database, a missing default user
or duplicate default components, and may leave the global configuration without an active
project. So every child calls `ensure_store_ready` before its first ZenML client access: the
first use takes an exclusive ``flock`` on a file in ZenML's global config directory and
initialises the store there; a marker written after a clean initialisation lets every later
child skip the lock (two ``stat`` calls, no store access).

A store without an active project (left by that race before children took the lock, or by a
second project plus a lost ``active_project_id``) fails every run until someone sets one.
ZenML's own message names a command without the config it applies to; `no_project_message`
names the exact command, verified to repair such a store.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import sys
from pathlib import Path

LOCK_FILE = ".zenml-scheduler-store.lock"
MARKER_FILE = ".zenml-scheduler-store-ready"

# The two wordings ZenML 0.98 uses when neither the repository nor the global config names a
# project (`GlobalConfiguration.get_active_project_id` and `Client.active_project`).
_NO_PROJECT_MESSAGES = ("No project is currently set as active", "No active project is configured")


class StoreNotReady(Exception):
    """The ZenML store cannot be used as it is; the message says how to fix it."""


def config_directory() -> Path:
    """ZenML's global config directory: ``ZENML_CONFIG_PATH`` or its per-user default."""
    from zenml.utils.io_utils import get_global_config_directory

    return Path(get_global_config_directory())


def _is_ready(directory: Path) -> bool:
    # config.yaml too: a folder emptied by hand (or `zenml clean`) needs initialising again.
    return (directory / MARKER_FILE).exists() and (directory / "config.yaml").exists()


def ensure_store_ready() -> None:
    """Initialise the ZenML store unless a previous child already did.

    Raises:
        StoreNotReady: When the store has no active project (the message says what to run).
    """
    directory = config_directory()
    if _is_ready(directory):
        return
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a") as lock:
        # Blocks while another child initialises; released when the file is closed or that
        # child dies. A stop signal still interrupts the wait (the handler raises).
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if _is_ready(directory):
            return  # the child we waited for did it
        _initialise()
        (directory / MARKER_FILE).write_text(f"initialised by pid {os.getpid()}\n", encoding="utf-8")


def _initialise() -> None:
    """The accesses that create a new store, its defaults and the global active project and stack."""
    from zenml.client import Client

    client = Client()
    try:
        client.active_project  # noqa: B018 (the property access is the initialisation)
        client.active_stack_model  # noqa: B018
    except RuntimeError as exc:
        message = no_project_message(exc)
        if message is None:
            raise
        raise StoreNotReady(message) from exc


def no_project_message(exc: BaseException) -> str | None:
    """For ZenML's "no active project" error, what to run to fix it; None for any other error."""
    if not isinstance(exc, RuntimeError) or not any(m in str(exc) for m in _NO_PROJECT_MESSAGES):
        return None
    directory = config_directory()
    # Run outside any `zenml init` folder: inside one, `project set` only changes that folder's
    # configuration, while the broken one is the global configuration.
    command = (
        f"cd / && ZENML_CONFIG_PATH={shlex.quote(str(directory))} "
        f"{shlex.quote(_zenml_command())} project set {shlex.quote(_project_to_set())}"
    )
    return f"the ZenML store has no active project (global config {directory}); to fix it, run: {command}"


def _zenml_command() -> str:
    """The ``zenml`` CLI of the interpreter running this child, when it sits beside it."""
    beside = Path(sys.executable).parent / "zenml"
    return str(beside) if beside.exists() else "zenml"


def _project_to_set() -> str:
    """ZenML's default project if the store has it, else the only (or first) project it has."""
    from zenml.constants import DEFAULT_PROJECT_NAME, ENV_ZENML_DEFAULT_PROJECT_NAME

    default = os.environ.get(ENV_ZENML_DEFAULT_PROJECT_NAME, DEFAULT_PROJECT_NAME)
    try:
        from zenml.client import Client

        names = [project.name for project in Client().list_projects(size=50).items]
    except Exception:  # the advice must not fail because the store misbehaves further
        return default
    return default if default in names or not names else names[0]
