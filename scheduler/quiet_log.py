"""A log line that can repeat thousands of times a second (a full descriptor table, a database
that is away) is written once per interval, with how many were held back since.

Without this, one fault can fill a disk with its own log: 300 idle sockets once grew the log by
31 MB in 6 seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class _Throttle:
    """Lets one through per `every_s` seconds and counts the rest; thread-safe."""

    def __init__(self, every_s: float, monotonic: Callable[[], float]) -> None:
        self.every_s = every_s
        self.monotonic = monotonic
        self._next = float("-inf")
        self._held = 0
        self._lock = threading.Lock()

    def admit(self) -> int | None:
        """None when held back; else how many were held back since the last one let through."""
        with self._lock:
            now = self.monotonic()
            if now < self._next:
                self._held += 1
                return None
            held, self._held = self._held, 0
            self._next = now + self.every_s
            return held


def _with_count(message: str, held: int) -> str:
    return f"{message} ({held} more like this since the last one not logged)" if held else message


class QuietLog:
    """Writes through `logger` at most once every `every_s` seconds."""

    def __init__(self, logger: logging.Logger, every_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self._throttle = _Throttle(every_s, monotonic)

    def log(self, level: int, message: str, *args: object, exc_info: bool = False) -> bool:
        """Log now, or count the line as held back; True when it was written."""
        held = self._throttle.admit()
        if held is None:
            return False
        self.logger.log(level, _with_count(message, held), *args, exc_info=exc_info)
        return True

    def warning(self, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, message, *args)

    def error(self, message: str, *args: object, exc_info: bool = False) -> bool:
        return self.log(logging.ERROR, message, *args, exc_info=exc_info)


class QuietFilter(logging.Filter):
    """For a logger we do not own (asyncio's): records whose message starts with one of
    `prefixes` pass at most once every `every_s` seconds; the others pass untouched."""

    def __init__(
        self, prefixes: tuple[str, ...], every_s: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self._throttle = _Throttle(every_s, monotonic)

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str) or not record.msg.startswith(self.prefixes):
            return True
        held = self._throttle.admit()
        if held is None:
            return False
        record.msg = _with_count(record.msg, held)
        return True


def quiet(logger: logging.Logger, prefixes: tuple[str, ...], every_s: float) -> None:
    """Install one QuietFilter for `prefixes` on `logger` (again: no second filter)."""
    if not any(isinstance(f, QuietFilter) and f.prefixes == prefixes for f in logger.filters):
        logger.addFilter(QuietFilter(prefixes, every_s))
