"""Following schedules.yaml: notice a change (or a request to reload), load and check the new
file off the main loop, and report the verdict: a config to apply, or a rejection, which is
logged and audited while the last good config keeps running."""

from __future__ import annotations

import logging
import time
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
        self,
        config: Config,
        reloader: Reloader,
        store: Store,
        notifier: Notifier,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = config.path
        self.monotonic = monotonic
        self.monitor = ConfigFileMonitor(config.path)
        self.reloader = reloader
        self.store = store
        self.notifier = notifier
        self.requested: str | None = None

    def request(self, reason: str) -> None:
        """Reload at the next poll (SIGHUP, `zenml-scheduler reload`)."""
        self.requested = reason

    @property
    def idle(self) -> bool:
        """No reload asked for, under way or waiting to be reported."""
        return self.requested is None and not self.reloader.busy

    def poll(self, now: datetime, running: Config, status_line: Callable[[], str]) -> tuple[str, Config] | None:
        """(why, the new config) once a reload has produced a valid one; None otherwise."""
        if self.monitor.poll(self.monotonic()):
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
