"""Signals: the handlers only record what was asked; the main loop acts on it.

SIGTERM and SIGINT ask for a graceful stop (a second one stops the runs at once), SIGHUP for a
reload, and SIGUSR1 writes every thread's stack to the log (a daemon that seems stuck).
"""

from __future__ import annotations

import faulthandler
import signal
from types import FrameType
from typing import Any

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def unblock_stop_signals() -> None:
    """A blocked signal mask is inherited through fork and exec: a daemon started by a parent
    that had SIGTERM blocked (a test runner, some wrappers and init scripts) would never see its
    SIGTERM, and neither would the runs it starts. Threads inherit the mask of the thread that
    starts them, so this runs before any thread exists."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class SignalFlags:
    """What signals asked for since `install`; `restore` puts the previous handlers back."""

    def __init__(self) -> None:
        self.stops = 0
        self.reload = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        unblock_stop_signals()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self.request_stop)
        self._previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self.request_reload)
        faulthandler.register(signal.SIGUSR1, all_threads=True)

    def request_stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        self.stops += 1

    def request_reload(self, signum: int = signal.SIGHUP, _frame: FrameType | None = None) -> None:
        self.reload = True

    def take_reload(self) -> bool:
        asked, self.reload = self.reload, False
        return asked

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
