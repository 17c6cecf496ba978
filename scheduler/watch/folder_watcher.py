"""File-watch rules -> dispatches: one thread per watch job, watching its folder.

inotify events (through watchfiles) say where to look; a full scan at start, every
`scan_interval` and on resume is the safety net, and the only source with `poll: true`.
Each thread hands `Dispatch`es and `Notice`s to the daemon, which records them; the
decisions (settle, batching, run keys) live in the pure `scheduler.watch.arrivals`.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from scheduler import tuning
from scheduler.config.model import Job
from scheduler.policy.file_runs import Dispatch, FileSeen
from scheduler.watch.arrivals import Batcher, SettleTracker, plan_found_at_start
from scheduler.watch.folder_listing import FolderListing, content_digest, stat_of
from scheduler.watch.seen_files import Known, Notice

log = logging.getLogger(__name__)
logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every batch of changes at INFO

Emit = Callable[[Dispatch | Notice], None]


class FolderWatcher:
    """Watches one job's folder on its own thread; `stop()` ends it within about 0.2 s."""

    def __init__(self, job: Job, load_known: Callable[[bool], dict[str, Known | None]], emit: Emit) -> None:
        assert job.spec.watch is not None and job.watch_root is not None
        self.job = job.name
        self.spec = job.spec.watch
        self.catchup = job.spec.catchup
        self.root = str(job.watch_root)
        self._load_known = load_known
        self._emit = emit
        self.listing = FolderListing(self.root, self.spec)
        self.tracker = SettleTracker(self.spec.settle_seconds)
        self.batcher = Batcher(self.spec.window_seconds, self.spec.max_batch)
        # Files recorded before: path -> None (on_modified: ignore, the path is all that counts), or
        # path -> what was recorded (retrigger). A start with 100,000 seen files holds only their names.
        self.retrigger = self.spec.on_modified == "retrigger"
        self.known: dict[str, Known | None] = {}
        self._refused: dict[str, str] = {}
        self._modified_noticed: set[str] = set()
        self._found_ready: list[FileSeen] = []
        self._found_since: float | None = None
        self._forget: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
        self._rescan = threading.Event()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"watch:{job.name}", daemon=True)

    # ---- control (any thread) --------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = tuning.THREAD_STOP_S) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def rescan(self) -> None:
        """Scan the whole folder soon (after a resume, or to be sure)."""
        self._rescan.set()

    def forget(self, rels: list[str]) -> None:
        """Files the daemon did not record (their job is paused): dispatch them again when seen."""
        self._forget.put(rels)

    # ---- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        first, reported_missing, loaded, last_error = True, False, False, ""
        while not self.stop_event.is_set():
            try:
                if not os.path.isdir(self.root):
                    if not reported_missing:
                        self._notice("watch-error", error=f"watched folder {self.root} does not exist (yet)")
                        reported_missing = True
                    self.stop_event.wait(tuning.WATCH_RETRY_S)
                    continue
                if not loaded:
                    self.known, loaded = self._load_known(self.retrigger), True
                reported_missing = False
                if self.spec.poll:
                    self._started(first)
                    first = False
                    self._poll_loop()
                else:
                    self._event_loop(first)
                    first = False
            except Exception as exc:  # keep watching whatever the folder or the database does
                error = f"{type(exc).__name__}: {exc}"
                if error != last_error:  # on the record once, not every retry
                    log.exception("watcher of %s failed; retrying every %.0fs", self.job, tuning.WATCH_RETRY_S)
                    self._notice("watch-error", error=error)
                    last_error = error
                self.stop_event.wait(tuning.WATCH_RETRY_S)

    def _started(self, at_start: bool) -> None:
        """Record the start and scan the whole folder (at start: files that arrived while down)."""
        mode = "polling" if self.spec.poll else "events"
        self._notice("watch-started", folder=self.root, mode=mode, known_files=len(self.known))
        self._scan(self._now(), at_start=at_start)

    def _event_loop(self, at_start: bool) -> None:
        import watchfiles  # imported here: a config without watch jobs never loads it

        changes_seen: Iterator[set[tuple[Any, str]]] = watchfiles.watch(
            self.root, watch_filter=None, debounce=50, step=10, rust_timeout=tuning.WATCH_EVENT_WAIT_MS,
            yield_on_timeout=True, recursive=self.spec.recursive, stop_event=self.stop_event, raise_interrupt=False,
            force_polling=False, ignore_permission_denied=True,
        )  # fmt: skip
        # The generator sets up inotify on its first step: take it before scanning, so that a file
        # landing during the scan is reported afterwards instead of waiting for the next scan.
        first_changes = next(changes_seen, set())
        self._started(at_start)
        next_scan = self._now() + self.spec.scan_seconds
        for changes in itertools.chain([first_changes], changes_seen):
            now = self._now()
            for _change, path in changes:
                self._event(path, now)
            if self._rescan.is_set() or now >= next_scan:
                self._rescan.clear()
                self._scan(now)
                next_scan = now + self.spec.scan_seconds
            self._advance(self._now())
            if not os.path.isdir(self.root):
                self._notice("watch-error", error=f"watched folder {self.root} was removed; waiting for it")
                return

    def _poll_loop(self) -> None:
        next_scan = self._now() + self.spec.scan_seconds
        while not self.stop_event.is_set():
            now = self._now()
            if self._rescan.is_set() or now >= next_scan:
                self._rescan.clear()
                if not os.path.isdir(self.root):
                    return
                self._scan(now)
                next_scan = now + self.spec.scan_seconds
            self._advance(self._now())
            deadlines = [next_scan, self.tracker.next_deadline(), self.batcher.next_deadline()]
            wait = min(d for d in deadlines if d is not None) - self._now()
            self.stop_event.wait(min(max(wait, 0.01), 0.5))

    # ---- what was seen ---------------------------------------------------------------------
    def _now(self) -> float:
        return time.monotonic()

    def _take_forgotten(self) -> None:
        while True:
            try:
                rels = self._forget.get_nowait()
            except queue.Empty:
                return
            for rel in rels:
                self.known.pop(rel, None)

    def _scan(self, now: float, at_start: bool = False) -> None:
        """Look at every file in the folder; hand those not yet recorded to the settle tracker.

        Also forgets recorded files that are gone: `known` only spares re-reading files that are
        still there (the state database decides what ran), so a folder whose files are moved
        away after processing does not grow the daemon's memory file by file, forever."""
        self._take_forgotten()
        present = set()
        for rel, path in self.listing.files():
            present.add(rel)
            self._consider(rel, path, now, at_start)
        if len(present) < len(self.known):
            self.known = {rel: known for rel, known in self.known.items() if rel in present}

    def _event(self, path: str, now: float) -> None:
        rel = self.listing.relative(path)
        if rel is None:
            return
        if os.path.isdir(path) and not os.path.islink(path):
            if self.spec.recursive:  # a folder moved in arrives as one event: look inside
                for child_rel, child in self.listing.files(path, rel + "/"):
                    self._consider(child_rel, child, now)
            return
        if self.listing.selects(rel.rsplit("/", 1)[-1]):
            self._consider(rel, path, now, event=True)

    def _consider(self, rel: str, path: str, now: float, at_start: bool = False, event: bool = False) -> None:
        if rel in self.known:
            known = self.known[rel]
            if known is None:  # on_modified: ignore
                if event:
                    self._notice_modified(rel, path)
                return
            current = stat_of(path)
            if current is not None and (current.size, current.mtime_ns) == (known.size, known.mtime_ns):
                return  # unchanged since it was recorded
        self.tracker.observe(rel, stat_of(path), now, at_start)

    def _notice_modified(self, rel: str, path: str) -> None:
        """A recorded file changed (an event, not a deletion): on the record once per path."""
        if rel not in self._modified_noticed and os.path.exists(path):
            self._modified_noticed.add(rel)
            self._notice("file-modified-ignored", file=rel, reason="already dispatched; on_modified is ignore")

    # ---- complete files -> dispatches ------------------------------------------------------
    def _advance(self, now: float) -> None:
        """Dispatch the files that became complete, and batches whose window closed."""
        ready: list[FileSeen] = []
        for rel, found_at_start in self._complete(now):
            seen = self._accept(rel, found_at_start)
            if seen is not None:
                ready.append(seen)
        dispatch, skipped = plan_found_at_start(self._found_at_start(ready, now), self.catchup)
        ready = [seen for seen in ready if not seen.found_at_start] + dispatch
        for seen, code in skipped:
            reason = f"found at start; catchup is {self.catchup}"
            self._emit(Dispatch(self.job, (seen,), (code, reason)))
        if self.spec.batch == "per_file":
            for seen in sorted(ready, key=lambda s: s.rel):
                self._emit(Dispatch(self.job, (seen,)))
            return
        self.batcher.add(sorted(ready, key=lambda s: s.rel), now)
        for batch in self.batcher.take(now):
            self._emit(Dispatch(self.job, tuple(batch)))

    def _found_at_start(self, ready: list[FileSeen], now: float) -> list[FileSeen]:
        """The files found by the start-up scan, handed to the catch-up plan together: with
        `catchup: latest` the newest must be chosen among all of them, not among those that
        happened to complete first. A file still being written holds the others back for at
        most tuning.WATCH_FOUND_WAIT_S seconds."""
        self._found_ready += [seen for seen in ready if seen.found_at_start]
        if not self._found_ready:
            return []
        if self.catchup == "latest":
            self._found_since = self._found_since or now
            still_settling = any(item.found_at_start for item in self.tracker.pending.values())
            if still_settling and now - self._found_since < tuning.WATCH_FOUND_WAIT_S:
                return []
        found, self._found_ready, self._found_since = self._found_ready, [], None
        return found

    def _complete(self, now: float) -> list[tuple[str, bool]]:
        if self.spec.ready_marker is None:
            done = []
            for rel in self.tracker.due(now):
                item = self.tracker.confirm(rel, stat_of(os.path.join(self.root, rel)), now)
                if item is not None:
                    done.append((rel, item.found_at_start))
            return done
        marked: dict[str, bool] = {}
        done = []
        for rel in list(self.tracker.pending):
            folder = os.path.dirname(rel)
            if folder not in marked:
                marked[folder] = os.path.exists(os.path.join(self.root, folder, self.spec.ready_marker))
            if marked[folder]:
                done.append((rel, self.tracker.pending.pop(rel).found_at_start))
        return done

    def _accept(self, rel: str, found_at_start: bool) -> FileSeen | None:
        """The file as dispatched, or None: refused (audited) or unchanged content."""
        real, current = self.listing.check(rel)
        if isinstance(current, str):
            return self._refuse(rel, real, current)
        digest = None
        if self.spec.on_modified == "retrigger":
            try:
                digest = content_digest(real)
            except OSError as exc:
                return self._refuse(rel, real, f"not readable: {exc.strerror}")
            known = self.known.get(rel)
            self.known[rel] = Known(digest, current.size, current.mtime_ns)
            if known is not None and known.version == digest:
                return None  # touched, same content
        else:
            self.known[rel] = None
        self._refused.pop(rel, None)
        return FileSeen(rel, real, current.size, current.mtime_ns, digest, found_at_start)

    def _refuse(self, rel: str, real: str, reason: str) -> None:
        if self._refused.get(rel) != f"{real}|{reason}":
            self._refused[rel] = f"{real}|{reason}"
            self._notice("file-refused", file=rel, resolved=real, reason=reason)
        return None

    def _notice(self, event: str, **details: Any) -> None:
        self._emit(Notice(self.job, event, details))
