"""Following schedules.yaml: notice a change (or a request to reload), load and check the new
file off the main loop, and report the verdict: a config to apply, or a rejection, which is
logged and audited while the last good config keeps running. A valid file without jobs that
would remove every active job is rejected too, unless it says so on purpose (`jobs: {}`) or the
daemon runs with allow_empty."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from scheduler.config.model import Config
from scheduler.daemon.config_monitor import ConfigFileMonitor
from scheduler.daemon.reloader import Reloader, Result
from scheduler.daemon.sd_notify import Notifier
from scheduler.errors import ConfigError
from scheduler.policy.reload_diff import emptying_problem
from scheduler.store.catalog import active_jobs, record_rejected_config
from scheduler.store.engine import Store

log = logging.getLogger(__name__)


class ConfigFollower:
    def __init__(
        self,
        config: Config,
        reloader: Reloader,
        store: Store,
        notifier: Notifier,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        allow_empty: bool = False,
    ) -> None:
        self.path = config.path
        self.monotonic = monotonic
        self.monitor = ConfigFileMonitor(config.path)
        self.reloader = reloader
        self.store = store
        self.notifier = notifier
        self.allow_empty = allow_empty
        self.requested: str | None = None
        # A verdict taken from the reloader but not settled yet: kept while the state database
        # fails, so that a reload is neither lost nor applied unchecked.
        self._verdict: Result | None = None

    def request(self, reason: str) -> None:
        """Reload at the next poll (SIGHUP, `zenml-scheduler reload`)."""
        self.requested = reason

    @property
    def idle(self) -> bool:
        """No reload asked for, under way or waiting to be reported."""
        return self.requested is None and self._verdict is None and not self.reloader.busy

    def poll(self, now: datetime, running: Config, status_line: Callable[[], str]) -> tuple[str, Config] | None:
        """(why, the new config) once a reload has produced a valid one; None otherwise."""
        if self.monitor.poll(self.monotonic()):
            self.requested = self.requested or "file changed"
        if self.requested:
            self.notifier.reloading()
            self.reloader.begin(self.requested)
            self.requested = None
        if self._verdict is None:
            self._verdict = self.reloader.result()
            if self._verdict is None:
                return None
            self.notifier.ready(status_line())
        reason, outcome = self._verdict
        if not isinstance(outcome, ConfigError) and not outcome.jobs:
            outcome = self._refuse_emptying(outcome)
        if isinstance(outcome, ConfigError):
            log.error("config reload (%s) rejected; still running revision %s:\n%s", reason, running.revision, outcome)
            with self.store.write() as conn:
                record_rejected_config(conn, self.path, outcome.problems, now, "reload")
            self._verdict = None
            return None
        self._verdict = None
        return reason, outcome

    def _refuse_emptying(self, config: Config) -> Config | ConfigError:
        """`config` (it has no jobs), or its rejection when applying it would remove every active job."""
        with self.store.read() as conn:
            problem = emptying_problem(config, active_jobs(conn), self.allow_empty)
        return config if problem is None else ConfigError([problem])
