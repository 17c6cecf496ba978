"""What other threads hand to the main loop: slots from the timer thread, complete files and
notices from the watchers, fires an API thread has already recorded, and what the follower read.

Handing over is all those threads do; deciding and writing happen on the main loop, which
drains everything at the start of each tick.
"""

from __future__ import annotations

import contextlib
import queue
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler.child.protocol import FollowedRun, FollowerNote
from scheduler.policy.file_runs import Dispatch
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.keys import slot_run_key
from scheduler.store.fires import FireResult
from scheduler.watch.seen_files import Notice


@dataclass
class Drained:
    slots: list[FireRequest] = field(default_factory=list)
    files: list[Dispatch] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    recorded: list[FireResult] = field(default_factory=list)  # fires an API thread wrote; the rest is ours
    followed: list[FollowedRun] = field(default_factory=list)  # ended ZenML runs the follower read
    notes: list[FollowerNote] = field(default_factory=list)  # what else the follower said


class HandOver:
    """A thread-safe inbox; `wait` lets an item wake the main loop at once."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._early: list[Any] = []

    def put(self, item: Dispatch | Notice | FireResult | FollowedRun | FollowerNote) -> None:
        self._queue.put(item)

    def slots(self, job: str, times: list[datetime]) -> None:
        """The timer thread's sink: `job`'s slots at `times` are due."""
        self._queue.put((job, times))

    def wait(self, timeout: float) -> None:
        """Block until something is handed over or `timeout` passes; the item waits for `drain`."""
        with contextlib.suppress(queue.Empty):
            self._early.append(self._queue.get(timeout=timeout))

    def drain(self) -> Drained:
        items, self._early = self._early, []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        drained = Drained()
        for item in items:
            if isinstance(item, tuple):
                name, times = item
                drained.slots += [FireRequest(name, "schedule", slot_run_key(name, t), "scheduler", t) for t in times]
            elif isinstance(item, Dispatch):
                drained.files.append(item)
            elif isinstance(item, Notice):
                drained.notices.append(item)
            elif isinstance(item, FollowedRun):
                drained.followed.append(item)
            elif isinstance(item, FollowerNote):
                drained.notes.append(item)
            else:
                drained.recorded.append(item)
        return drained
