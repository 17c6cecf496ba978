"""Hot reload: load and check a new schedules.yaml off the main loop.

The main loop only polls, so a slow pipeline check (seconds: it imports ZenML in a child) never
delays a fire; the loop applies the new config as a diff once it is known good. Whatever goes
wrong while loading (a file the loader chokes on, a check that hangs or crashes) becomes a
rejected config: the daemon survives it and keeps running the last good one.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from scheduler import tuning
from scheduler.config.loader import load_config
from scheduler.config.model import Config
from scheduler.config.watch_roots import StatePaths
from scheduler.errors import ConfigError, Problem, SchedulerError

log = logging.getLogger(__name__)

Result = tuple[str, Config | ConfigError]
Check = Callable[[Config], Config]


def _start_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="config-reload", daemon=True).start()


class Reloader:
    """Loads (and, when asked, pipeline-checks) the config on a worker thread, one at a time.

    `check` replaces the pipeline check and `spawn` the thread start (the simulation runs both in
    line, deterministically)."""

    def __init__(
        self,
        path: Path,
        python: str,
        check_pipelines: bool,
        check_timeout: float = tuning.PIPELINE_CHECK_TIMEOUT_S,
        *,
        max_bytes: int = tuning.CONFIG_MAX_BYTES,
        state: StatePaths | None = None,
        check: Check | None = None,
        spawn: Callable[[Callable[[], None]], None] = _start_thread,
    ) -> None:
        self.path = path
        self.check = check if check is not None else self._pipeline_check if check_pipelines else None
        self.python = python
        self.check_timeout = check_timeout
        self.spawn = spawn
        self.max_bytes = max_bytes
        self.state = state
        self._results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self._busy = threading.Event()
        self._again: str | None = None

    @property
    def busy(self) -> bool:
        """A load is under way, waiting to run, or its result not taken yet."""
        return self._busy.is_set() or self._again is not None or not self._results.empty()

    def begin(self, reason: str) -> None:
        """Start loading; a request while one is under way runs right after it (the file may
        have changed again meanwhile)."""
        if self._busy.is_set():
            self._again = reason
            return
        self._busy.set()
        self.spawn(lambda: self._load(reason))

    def _pipeline_check(self, config: Config) -> Config:
        from scheduler.runs.preflight import checked_config

        return checked_config(config, self.python, timeout=self.check_timeout)

    def _load(self, reason: str) -> None:
        outcome: Config | ConfigError
        try:
            config = load_config(self.path, self.max_bytes, self.state)
            outcome = config if self.check is None else self.check(config)  # checked: with pipeline descriptions
        except ConfigError as exc:
            outcome = exc
        except SchedulerError as exc:  # the checker itself failed: reject rather than guess
            outcome = self._rejection(str(exc))
        except Exception as exc:  # anything else, too: the daemon must survive its loader
            log.exception("loading %s failed", self.path)
            outcome = self._rejection(f"loading the config failed: {type(exc).__name__}: {exc}")
        # Not busy before the result is visible: the main loop, taking the result, may begin the
        # next load at once (an edit made meanwhile), and that must not be mistaken for this one.
        self._busy.clear()
        self._results.put((reason, outcome))

    def _rejection(self, message: str) -> ConfigError:
        return ConfigError([Problem(str(self.path), 1, 1, message)])

    def result(self) -> Result | None:
        try:
            outcome = self._results.get_nowait()
        except queue.Empty:
            return None
        if self._again is not None:
            again, self._again = self._again, None
            self.begin(again)
        return outcome
