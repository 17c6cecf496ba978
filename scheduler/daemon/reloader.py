"""Hot reload: notice edits of schedules.yaml, and load and check the new file off the main loop.

The main loop only polls both objects, so a slow pipeline check (seconds: it imports ZenML in a
child) never delays a fire; the loop applies the new config as a diff once it is known good.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path

from scheduler.config.loader import load_config
from scheduler.config.model import Config
from scheduler.errors import ConfigError, Problem, SchedulerError

Signature = tuple[int, int, int] | None


def file_signature(path: Path) -> Signature:
    """Inode, modification time and size: a save in place or by rename changes at least one."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class ConfigWatcher:
    """Polls the config file; reports a change once it has been quiet for `debounce` seconds,
    so a burst of saves (or an editor's write-then-rename) gives one reload."""

    def __init__(self, path: Path, debounce: float = 0.5, interval: float = 0.25) -> None:
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


Result = tuple[str, Config | ConfigError]


class Reloader:
    """Loads (and, when asked, pipeline-checks) the config in a worker thread, one at a time."""

    def __init__(self, path: Path, python: str, check_pipelines: bool) -> None:
        self.path = path
        self.python = python
        self.check_pipelines = check_pipelines
        self._results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self._busy = threading.Event()
        self._again: str | None = None

    def begin(self, reason: str) -> None:
        """Start loading; a request while one is under way runs right after it (the file may
        have changed again meanwhile)."""
        if self._busy.is_set():
            self._again = reason
            return
        self._busy.set()
        threading.Thread(target=self._load, args=(reason,), name="config-reload", daemon=True).start()

    def _load(self, reason: str) -> None:
        try:
            config = load_config(self.path)
            if self.check_pipelines:  # the checked config carries its pipelines' descriptions
                from scheduler.runs.preflight import checked_config

                config = checked_config(config, self.python)
            self._results.put((reason, config))
        except ConfigError as exc:
            self._results.put((reason, exc))
        except SchedulerError as exc:  # the checker itself failed: reject rather than guess
            self._results.put((reason, ConfigError([Problem(str(self.path), 1, 1, str(exc))])))
        finally:
            self._busy.clear()

    def result(self) -> Result | None:
        try:
            outcome = self._results.get_nowait()
        except queue.Empty:
            return None
        if self._again is not None:
            again, self._again = self._again, None
            self.begin(again)
        return outcome
