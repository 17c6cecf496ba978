"""The daemon's watchers: one `FolderWatcher` per enabled watch job, kept in step with the config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scheduler.config.model import Config
from scheduler.policy.file_runs import Dispatch
from scheduler.store.engine import Store
from scheduler.watch.folder_watcher import Emit, FolderWatcher
from scheduler.watch.seen_files import Known, load_known


class FolderWatchers:
    def __init__(self, store: Store, emit: Emit) -> None:
        self.store = store
        self.emit = emit
        self.watchers: dict[str, tuple[FolderWatcher, tuple[Any, ...]]] = {}

    def sync(self, config: Config) -> None:
        """Start watchers for new watch jobs, stop those of removed or disabled ones, and restart
        the ones whose watch rule changed (a parameters change needs no restart)."""
        wanted = {
            name: (job, (job.spec.watch, job.watch_root, job.spec.catchup))
            for name, job in config.jobs.items()
            if job.is_watch and job.spec.enabled
        }
        stale = [name for name, (_, rule) in self.watchers.items() if name not in wanted or wanted[name][1] != rule]
        self._stop(stale)
        for name, (job, rule) in wanted.items():
            if name not in self.watchers:
                watcher = FolderWatcher(job, self._loader(name), self.emit)
                watcher.start()
                self.watchers[name] = (watcher, rule)

    def rescan(self, job: str) -> None:
        if job in self.watchers:
            self.watchers[job][0].rescan()

    def hand_back(self, dispatch: Dispatch) -> None:
        """A dispatch the daemon did not record (paused job): its files count as unseen again."""
        if dispatch.job in self.watchers:
            self.watchers[dispatch.job][0].forget([seen.rel for seen in dispatch.files])

    def stop_all(self) -> None:
        self._stop(list(self.watchers))

    def __len__(self) -> int:
        return len(self.watchers)

    def _stop(self, names: list[str]) -> None:
        for name in names:  # signal all first, so they wind down together
            self.watchers[name][0].stop_event.set()
        for name in names:
            self.watchers.pop(name)[0].stop()

    def _loader(self, job: str) -> Callable[[bool], dict[str, Known | None]]:
        def load(details: bool) -> dict[str, Known | None]:
            with self.store.read() as conn:
                return load_known(conn, job, details)

        return load
