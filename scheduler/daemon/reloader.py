"""Hot reload: load and check a new schedules.yaml off the main loop.

The main loop only polls, so a slow pipeline check (seconds: it imports ZenML in a child) never
delays a fire; the loop applies the new config as a diff once it is known good.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from scheduler import tuning
from scheduler.config.loader import load_config
from scheduler.config.model import Config
from scheduler.errors import ConfigError, Problem, SchedulerError

Result = tuple[str, Config | ConfigError]


class Reloader:
    """Loads (and, when asked, pipeline-checks) the config in a worker thread, one at a time."""

    def __init__(
        self, path: Path, python: str, check_pipelines: bool, check_timeout: float = tuning.PIPELINE_CHECK_TIMEOUT_S
    ) -> None:
        self.path = path
        self.python = python
        self.check_pipelines = check_pipelines
        self.check_timeout = check_timeout
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

                config = checked_config(config, self.python, timeout=self.check_timeout)
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
