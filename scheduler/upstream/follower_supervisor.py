"""The follower child on the record: its start, death and stop are audited, and its state is
kept in the state database for `health --json`; its restarts follow the process's back-off."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from scheduler.store import upstream_runs
from scheduler.store.audit import Event, append
from scheduler.store.engine import Store
from scheduler.upstream.follower_process import FollowerProcess

log = logging.getLogger(__name__)

DAEMON = "daemon"


class FollowerSupervisor:
    def __init__(self, store: Store, follower: FollowerProcess) -> None:
        self.store = store
        self.follower = follower
        self._state: dict[str, Any] = {"state": "off"}

    @property
    def state(self) -> dict[str, Any]:
        """What `health --json` reports about the follower (also kept in the state database)."""
        return dict(self._state)

    def supervise(self, now: datetime, needed: bool) -> None:
        """Note a death (and schedule the restart), start the follower when it is needed and its
        back-off has passed, stop it when no job needs it any more."""
        ended = self.follower.check()
        if ended is not None:
            details = {"pid": ended.pid, "exit_code": ended.exit_code, "error": ended.error,
                       "restart_in_s": ended.restart_in_s, "restarts": self.follower.restarts}  # fmt: skip
            log.error(
                "the follower (pid %s) ended with exit code %s; restarting in %.0fs: %s",
                ended.pid,
                ended.exit_code,
                ended.restart_in_s,
                ended.error or "no error output",
            )
            self._record("follower-died", details, now, {"state": "down", "down_since": now.isoformat(), **details})
        if needed and self.follower.due():
            with self.store.write() as conn:
                since = upstream_runs.start_cursor(conn, now)
            try:
                pid = self.follower.start(since)
            except OSError as exc:
                log.error("cannot start the follower: %s", exc)
                return
            details = {"pid": pid, "since": since.isoformat(), "restarts": self.follower.restarts}
            log.info("follower started (pid %s), reading ZenML runs that ended since %s", pid, since.isoformat())
            state = {"state": "running", "pid": pid, "started_at": now.isoformat(), "cursor": since.isoformat(),
                     "restarts": self.follower.restarts}  # fmt: skip
            self._record("follower-started", details, now, state)
        elif not needed and self.follower.running:
            pid = self.follower.pid
            self.follower.stop()
            self._record(
                "follower-stopped", {"pid": pid, "reason": "no job follows ZenML runs any more"}, now, {"state": "off"}
            )

    def _record(self, event: str, details: dict[str, Any], now: datetime, state: dict[str, Any]) -> None:
        self._state = state
        with self.store.write() as conn:
            append(conn, now, [Event(event, DAEMON, details=details)])
            upstream_runs.write_follower_state(conn, state)

    def stop(self, now: datetime | None = None) -> None:
        """Stop the follower (the daemon is stopping); its cursor stays where it is."""
        if not self.follower.running:
            return
        self.follower.stop()
        self._state = {"state": "off"}
        if now is not None:
            try:
                with self.store.write() as conn:
                    upstream_runs.write_follower_state(conn, self._state)
            except Exception as exc:  # stopping: the state is advisory, the database may be gone
                log.warning("could not record the follower's stop: %s", exc)
