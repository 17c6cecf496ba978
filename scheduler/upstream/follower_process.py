"""The follower child: one long-lived process that imports ZenML (the daemon never does), reads
the pipeline runs that ended since a cursor and writes them as JSON lines (see
`scheduler.child.follower`). This module starts it, hands each line to the main loop, notices
its death and restarts it with back-off.

Its stdin stays an open pipe it never reads from: when the daemon dies, even by SIGKILL, the
pipe closes and the follower exits instead of running on unowned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from scheduler import tuning
from scheduler.child.protocol import FOLLOWER_MODULE, last_output_line, parse_follower_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FollowerExit:
    """The follower ended by itself: its exit code and the last line it wrote to stderr."""

    pid: int
    exit_code: int | None
    error: str
    restart_in_s: float


class FollowerProcess:
    def __init__(
        self,
        python: str,
        project_root: Path,
        env: Mapping[str, str],
        log_path: Path,
        hand_over: Callable[[Any], None],
        *,
        interval: float = tuning.FOLLOWER_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.python = python
        self.project_root = project_root
        self.env = dict(env)
        self.log_path = log_path
        self.hand_over = hand_over
        self.interval = interval
        self.monotonic = monotonic
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._backoff = tuning.FOLLOWER_BACKOFF_MIN_S
        self._next_start = 0.0
        self._started = 0.0

    @property
    def running(self) -> bool:
        return self.process is not None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def due(self) -> bool:
        """Whether a follower that is not running may be started now (its back-off has passed)."""
        return self.process is None and self.monotonic() >= self._next_start

    def start(self, since: datetime) -> int:
        """Start reading from `since`; return the pid. OSError when it cannot be spawned."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [self.python, "-m", FOLLOWER_MODULE, "--since", since.isoformat(), "--interval", str(self.interval),
                "--overlap", str(tuning.FOLLOWER_OVERLAP_S)]  # fmt: skip
        with open(self.log_path, "ab") as errors:
            process = subprocess.Popen(
                argv, cwd=self.project_root, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=errors, start_new_session=True,
            )  # fmt: skip
        assert process.stdout is not None
        threading.Thread(target=self._read, args=(process.stdout,), name="follower-lines", daemon=True).start()
        self.process = process
        self._started = self.monotonic()
        return process.pid

    def _read(self, lines: IO[bytes]) -> None:
        for raw in lines:
            try:
                item = parse_follower_line(raw.decode("utf-8", "replace"))
            except ValueError as exc:
                log.warning("ignoring a line from the follower that is not its protocol: %s", exc)
                continue
            self.hand_over(item)

    def check(self) -> FollowerExit | None:
        """The follower's exit, once, if it ended by itself; its restart is then scheduled with
        back-off (doubling up to a minute, reset after a minute of running)."""
        if self.process is None or self.process.poll() is None:
            return None
        process, self.process = self.process, None
        if self.monotonic() - self._started > tuning.FOLLOWER_BACKOFF_MAX_S:
            self._backoff = tuning.FOLLOWER_BACKOFF_MIN_S
        delay = self._backoff
        self._backoff = min(self._backoff * 2, tuning.FOLLOWER_BACKOFF_MAX_S)
        self._next_start = self.monotonic() + delay
        self.restarts += 1
        _close(process)
        return FollowerExit(
            process.pid, process.returncode, last_output_line(self.log_path, tuning.LOG_TAIL_CHARS), delay
        )

    def stop(self) -> None:
        """Stop the follower: SIGTERM, then SIGKILL if it has not gone within kill grace."""
        process, self.process = self.process, None
        if process is None:
            return
        _close(process)  # closing stdin alone makes it exit; the signal makes sure
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=tuning.FOLLOWER_STOP_S)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            log.warning("the follower (pid %s) ignored SIGTERM; sending SIGKILL", process.pid)
            with contextlib.suppress(OSError):  # already gone
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _close(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):  # already gone
            process.stdin.close()
