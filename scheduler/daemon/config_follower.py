"""Following schedules.yaml: notice a change (or a request to reload), load and check the new
file off the main loop, and report the verdict: a config to apply, or a rejection, which is
logged and audited while the last good config keeps running."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from scheduler.config.model import Config
from scheduler.daemon.config_monitor import ConfigFileMonitor
from scheduler.daemon.reloader import Reloader
from scheduler.daemon.sd_notify import Notifier
from scheduler.errors import ConfigError
from scheduler.store.catalog import record_rejected_config
from scheduler.store.engine import Store

log = logging.getLogger(__name__)


class ConfigFollower:
    def __init__(
        self, config: Config, python: str, check_pipelines: bool, check_timeout: float, store: Store, notifier: Notifier
    ) -> None:
        self.path = config.path
        self.monitor = ConfigFileMonitor(config.path)
        self.reloader = Reloader(config.path, python, check_pipelines, check_timeout)
        self.store = store
        self.notifier = notifier
        self.requested: str | None = None

    def request(self, reason: str) -> None:
        """Reload at the next poll (SIGHUP, `zenml-scheduler reload`)."""
        self.requested = reason

    def poll(self, now: datetime, running: Config, status_line: Callable[[], str]) -> tuple[str, Config] | None:
        """(why, the new config) once a reload has produced a valid one; None otherwise."""
        if self.monitor.poll():
            self.requested = self.requested or "file changed"
        if self.requested:
            self.notifier.reloading()
            self.reloader.begin(self.requested)
            self.requested = None
        done = self.reloader.result()
        if done is None:
            return None
        reason, outcome = done
        self.notifier.ready(status_line())
        if isinstance(outcome, ConfigError):
            log.error("config reload (%s) rejected; still running revision %s:\n%s", reason, running.revision, outcome)
            with self.store.write() as conn:
                record_rejected_config(conn, self.path, outcome.problems, now, "reload")
            return None
        return reason, outcome
