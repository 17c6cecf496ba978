"""What `run` makes sure of before it opens the state database or starts anything, so that a
daemon that could not work refuses at once with one line, instead of failing each run later."""

from __future__ import annotations

import signal
import tempfile
from types import FrameType

from scheduler.config.settings import Settings
from scheduler.daemon.signals import unblock_stop_signals
from scheduler.errors import StateError


def require_writable_state_dir(settings: Settings) -> None:
    """StateError unless the state folder can be written (or, while it does not exist, the folder
    it will be made in): the daemon writes each run's log there, and the default database.
    Nothing is left behind: the probe is an unnamed temporary file."""
    folder = settings.resolved_state_dir
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise StateError(
            f"the state folder {folder} is not writable ({exc.strerror}): the daemon keeps its run logs there "
            "(and its database, by default); give a writable --state-dir (ZENML_SCHEDULER_STATE_DIR)"
        ) from None


class StoppedBeforeStart(BaseException):
    """SIGTERM or SIGINT arrived before the daemon's own handlers were installed. A BaseException,
    so that no `except Exception` on the way (the pipeline check, opening the database) keeps it."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise StoppedBeforeStart(signal.Signals(signum).name)


class StopSignalsUntilStarted:
    """Within it, SIGTERM and SIGINT end start-up with StoppedBeforeStart (the pipeline check and
    opening the database can take seconds) instead of killing the process or printing a
    KeyboardInterrupt traceback; the daemon installs its own handlers when it starts."""

    def __enter__(self) -> StopSignalsUntilStarted:
        unblock_stop_signals()
        self._previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
