"""When a landed file is complete, how files are grouped into runs, and what each run is keyed on.

Pure: the watcher (`scheduler.watch.folder_watcher`) stats files and passes the results and the monotonic
time in; nothing here touches the file system or the clock.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Any

from scheduler.config.loader import Job
from scheduler.config.watch_spec import render_parameters
from scheduler.policy.decide import FireRequest

MAX_KEY = 400  # the run_key column's width


@dataclass(frozen=True)
class Stat:
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FileSeen:
    """A complete file, ready to be dispatched."""

    rel: str  # relative to the watched folder, '/'-separated: the file's name in run keys
    path: str  # resolved absolute path: what the pipeline is given
    size: int
    mtime_ns: int
    digest: str | None = None  # content digest (on_modified: retrigger)
    found_at_start: bool = False

    @property
    def identity(self) -> str:
        """Content digest when known, else a digest of size and mtime."""
        if self.digest is not None:
            return self.digest[:16]
        return hashlib.sha256(f"{self.size}:{self.mtime_ns}".encode()).hexdigest()[:12]

    @property
    def version(self) -> str:
        """What makes the file new again: nothing once seen (''), or a change of content."""
        return self.digest or ""


@dataclass(frozen=True)
class Dispatch:
    """One run's worth of files (one file, or one batch), or files to record as skipped."""

    job: str
    files: tuple[FileSeen, ...]
    skip: tuple[str, str] | None = None  # (code, reason): recorded, not run


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


def file_run_key(job: str, files: tuple[FileSeen, ...]) -> str:
    """`<job>@file:<relative path>#<identity>`; a batch keys on its files' sorted identities."""
    if len(files) == 1:
        seen = files[0]
        key = f"{job}@file:{seen.rel}#{seen.identity}"
        if len(key) <= MAX_KEY:
            return key
        digest = hashlib.sha256(seen.rel.encode()).hexdigest()[:16]
        return f"{job}@file:{seen.rel[: MAX_KEY - len(job) - 60]}...{digest}#{seen.identity}"
    members = "\n".join(sorted(f"{seen.rel}#{seen.identity}" for seen in files))
    return f"{job}@files:{len(files)}#{hashlib.sha256(members.encode()).hexdigest()[:16]}"


def template_values(files: tuple[FileSeen, ...], batch: str) -> dict[str, Any]:
    if batch == "per_batch":
        return {"paths": [seen.path for seen in sorted(files, key=lambda seen: seen.rel)]}
    seen = files[0]
    name = posixpath.basename(seen.rel)
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return {"path": seen.path, "name": name, "stem": stem}


def file_request(job: Job, dispatch: Dispatch) -> FireRequest:
    """The fire request for a dispatch: its run key, and the job's parameters with the templates filled in."""
    assert job.spec.watch is not None
    parameters = render_parameters(job.spec.parameters, template_values(dispatch.files, job.spec.watch.batch))
    files = tuple(
        {"file": seen.rel, "size": seen.size, "mtime_ns": seen.mtime_ns, "identity": seen.identity}
        for seen in dispatch.files
    )
    return FireRequest(
        dispatch.job, "file", file_run_key(dispatch.job, dispatch.files), "watcher",
        parameters=parameters, preskip=dispatch.skip, files=files,
    )  # fmt: skip
