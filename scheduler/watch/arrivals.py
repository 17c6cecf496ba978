"""When a landed file is complete, how files are grouped into runs, and what each run is keyed on.

Pure: the watcher (`scheduler.watch.folder_watcher`) stats files and passes the results and the monotonic
time in; nothing here touches the file system or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.policy.file_runs import FileSeen


@dataclass(frozen=True)
class Stat:
    size: int
    mtime_ns: int


@dataclass
class _Pending:
    stat: Stat
    since: float
    found_at_start: bool


@dataclass
class SettleTracker:
    """Files seen but not yet complete: complete once size and mtime stayed the same for `settle` seconds."""

    settle: float
    pending: dict[str, _Pending] = field(default_factory=dict)

    def observe(self, rel: str, stat: Stat | None, now: float, found_at_start: bool = False) -> None:
        """Record what a stat showed; None means the file is gone."""
        if stat is None:
            self.pending.pop(rel, None)
            return
        current = self.pending.get(rel)
        if current is None:
            self.pending[rel] = _Pending(stat, now, found_at_start)
        elif current.stat != stat:
            current.stat, current.since = stat, now

    def due(self, now: float) -> list[str]:
        """Files whose settle time has passed since their last change: stat them again and `confirm`."""
        return [rel for rel, item in self.pending.items() if now - item.since >= self.settle]

    def confirm(self, rel: str, stat: Stat | None, now: float) -> _Pending | None:
        """The pending entry if the file is unchanged since it was last seen (it is complete), else None."""
        item = self.pending.get(rel)
        if item is None:
            return None
        if stat is None or stat != item.stat:
            self.observe(rel, stat, now)
            return None
        if now - item.since < self.settle:
            return None
        return self.pending.pop(rel)

    def next_deadline(self) -> float | None:
        if not self.pending:
            return None
        return min(item.since for item in self.pending.values()) + self.settle


@dataclass
class Batcher:
    """per_batch: collect complete files for `window` seconds from the first one, at most `max_batch` per run."""

    window: float
    max_batch: int
    files: list[FileSeen] = field(default_factory=list)
    opened: float | None = None

    def add(self, files: list[FileSeen], now: float) -> None:
        if files and self.opened is None:
            self.opened = now
        self.files.extend(files)

    def take(self, now: float) -> list[list[FileSeen]]:
        """Full batches at once; the rest when the window has passed since the batch opened."""
        batches = []
        while len(self.files) >= self.max_batch:
            batches.append(self.files[: self.max_batch])
            self.files = self.files[self.max_batch :]
        if self.files and self.opened is not None and now - self.opened >= self.window:
            batches.append(self.files)
            self.files = []
        if not self.files:
            self.opened = None
        elif batches:
            self.opened = now  # the leftover of a full batch starts a window of its own
        return batches

    def next_deadline(self) -> float | None:
        return None if self.opened is None else self.opened + self.window


def plan_found_at_start(files: list[FileSeen], catchup: str) -> tuple[list[FileSeen], list[tuple[FileSeen, str]]]:
    """Files that arrived while the daemon was down: `all` dispatches each, `latest` only the newest,
    `none` records them as skipped. Returns (to dispatch, [(file, skip code)])."""
    if catchup == "all" or not files:
        return files, []
    if catchup == "none":
        return [], [(seen, "catchup-none") for seen in files]
    newest = max(files, key=lambda seen: (seen.mtime_ns, seen.rel))
    return [newest], [(seen, "coalesced") for seen in files if seen is not newest]
