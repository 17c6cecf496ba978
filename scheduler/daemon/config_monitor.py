"""Notice edits of schedules.yaml: also a save by rename, as many editors do, and a burst of
saves settles into one change."""

from __future__ import annotations

import os
import time
from pathlib import Path

from scheduler import tuning

Signature = tuple[int, int, int] | None


def file_signature(path: Path) -> Signature:
    """Inode, modification time and size: a save in place or by rename changes at least one."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class ConfigFileMonitor:
    """Polls the config file; reports a change once it has been quiet for `debounce` seconds,
    so a burst of saves (or an editor's write-then-rename) gives one reload."""

    def __init__(
        self, path: Path, debounce: float = tuning.CONFIG_DEBOUNCE_S, interval: float = tuning.CONFIG_POLL_S
    ) -> None:
        self.path = path
        self.debounce = debounce
        self.interval = interval
        self._seen = file_signature(path)
        self._changed_at: float | None = None
        self._next_check = 0.0

    def poll(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now < self._next_check:
            return False
        self._next_check = now + self.interval
        current = file_signature(self.path)
        if current != self._seen:
            self._seen, self._changed_at = current, now
            return False
        if self._changed_at is not None and now - self._changed_at >= self.debounce:
            self._changed_at = None
            return True
        return False
