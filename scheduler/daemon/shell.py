"""The daemon's I/O pieces, each made by a factory the `Daemon` calls: child processes, the
APScheduler timer, folder watchers, the side services, the reloader, the lease, the after
triggers with their follower child and the monotonic clock. `Shell()` makes the real ones; the
simulation (tests/simulation) passes its own, so the same loop runs against a simulated world
under simulated time."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from scheduler.config.model import Config
from scheduler.config.settings import Settings
from scheduler.daemon.leadership import lease_reading
from scheduler.daemon.lease import Lease
from scheduler.daemon.reloader import Reloader
from scheduler.daemon.services import Services
from scheduler.daemon.timer import SlotSink, SlotTimer
from scheduler.runs.runner import Runner, child_env
from scheduler.store.engine import Store
from scheduler.upstream.after_triggers import AfterTriggers
from scheduler.upstream.follower_process import FollowerProcess
from scheduler.watch.folder_watcher import Emit
from scheduler.watch.watchers import FolderWatchers

if TYPE_CHECKING:
    from scheduler.daemon.loop import Daemon


def real_runner(settings: Settings, config: Config, env: Mapping[str, str]) -> Runner:
    runs_dir = settings.resolved_state_dir / "runs"
    return Runner(settings.python, runs_dir, config.project_root, settings.kill_grace, env)


def real_services(daemon: Daemon) -> Services:
    return Services(
        daemon.settings, daemon.store, lambda: daemon.config, daemon.handover.put, daemon.health,
        lease=lambda: lease_reading(daemon.lease, daemon.transitions),
    )  # fmt: skip


def real_reloader(settings: Settings, config: Config, check_pipelines: bool) -> Reloader:
    return Reloader(
        config.path, settings.python, check_pipelines, settings.pipeline_check_timeout,
        max_bytes=settings.config_max_bytes, state=settings.state_paths,
    )  # fmt: skip


def real_after_triggers(daemon: Daemon) -> AfterTriggers:
    settings = daemon.settings
    follower = FollowerProcess(
        settings.python, daemon.config.project_root, child_env(daemon.env, daemon.config.project_root),
        settings.resolved_state_dir / "follower.log",
        daemon.handover.put, interval=settings.follower_interval, monotonic=daemon.monotonic,
    )  # fmt: skip
    return AfterTriggers(daemon.store, follower, daemon.grace, settings.max_chain_depth, daemon.monotonic)


def real_lease(store: Store, settings: Settings, config: Config, monotonic: Callable[[], float]) -> Lease:
    return Lease(
        store, timedelta(seconds=settings.lease_ttl), str(config.path), monotonic=monotonic, elections=settings.standby
    )


@dataclass(frozen=True)
class Shell:
    runner: Callable[[Settings, Config, Mapping[str, str]], Any] = real_runner
    timer: Callable[[SlotSink], Any] = SlotTimer
    watchers: Callable[[Store, Emit], Any] = FolderWatchers
    services: Callable[[Daemon], Any] = real_services
    reloader: Callable[[Settings, Config, bool], Reloader] = real_reloader
    lease: Callable[[Store, Settings, Config, Callable[[], float]], Lease] = real_lease
    after_triggers: Callable[[Daemon], AfterTriggers] = real_after_triggers
    monotonic: Callable[[], float] = time.monotonic
    signals: bool = True  # install SIGTERM/SIGINT/SIGHUP/SIGUSR1 handlers (not in a test's own process)
