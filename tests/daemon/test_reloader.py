"""The reloader and the config follower in process: whatever the loader does, the daemon gets a
verdict (applied or rejected, on the record), systemd hears READY after RELOADING, and an edit
made while a load was under way is never left unapplied."""

from __future__ import annotations

import queue
import subprocess
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from scheduler.config.loader import load_config
from scheduler.config.model import Config
from scheduler.daemon.config_follower import ConfigFollower
from scheduler.daemon.reloader import Reloader
from scheduler.daemon.sd_notify import Notifier
from scheduler.errors import ConfigError
from scheduler.store import audit
from scheduler.store.catalog import apply_config
from scheduler.store.engine import open_store
from scheduler.store.migrations import migrate
from tests.simulation.world import FaultyStore

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
CONFIG = "version: 1\njobs:\n  a: {pipeline: x.y:z, every: 1m}\n"


def hangs(config: Config) -> Config:
    raise subprocess.TimeoutExpired(["python", "-m", "scheduler.child.check"], 300)


def crashes(config: Config) -> Config:
    raise MemoryError("the file expanded to gigabytes")


@pytest.mark.parametrize(("check", "message"), [(hangs, "TimeoutExpired"), (crashes, "MemoryError")])
def test_a_check_that_hangs_or_crashes_is_a_rejected_config(
    tmp_path: Path, check: Callable[[Config], Config], message: str
) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(CONFIG)
    reloader = Reloader(path, "python", True, check=check, spawn=lambda work: work())
    reloader.begin("test")
    reason, outcome = reloader.result() or ("", None)
    assert reason == "test" and isinstance(outcome, ConfigError)
    assert message in str(outcome) and not reloader.busy


def test_the_follower_audits_the_rejection_and_says_ready_again(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(CONFIG)
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    sent: list[tuple[str, ...]] = []
    notifier = Notifier({})
    notifier.send = lambda *fields: sent.append(fields)  # type: ignore[method-assign]
    reloader = Reloader(path, "python", True, check=hangs, spawn=lambda work: work())
    follower = ConfigFollower(load_config(path), reloader, store, notifier, monotonic=lambda: 0.0)
    follower.request("SIGHUP")
    assert follower.poll(NOW, load_config(path), lambda: "status") is None
    assert [fields[0] for fields in sent][:1] == ["RELOADING=1"] and sent[-1][0] == "READY=1"
    with store.read() as conn:
        [rejected] = [e for e in audit.query(conn) if e["event"] == "config-rejected"]
    assert "TimeoutExpired" in rejected["details"]["problems"][0] and follower.idle


class _MainLoopInPut(queue.SimpleQueue):  # type: ignore[type-arg]
    """The result queue, with the main loop acting the moment a result is put (between the put
    and whatever the loading thread does next): an edit arrives and the result is taken."""

    def __init__(self, act: Callable[[], None]) -> None:
        super().__init__()
        self.act = act

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        act, self.act = self.act, lambda: None
        act()


def test_an_edit_made_while_a_load_finishes_is_loaded_too(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(CONFIG)
    loads: list[Callable[[], None]] = []
    reloader = Reloader(path, "python", False, spawn=loads.append)
    taken: list[Any] = []

    def main_loop() -> None:
        reloader.begin("file changed")  # the next edit, noticed by the main loop
        taken.append(reloader.result())

    reloader._results = _MainLoopInPut(main_loop)
    reloader.begin("first edit")
    loads.pop(0)()  # the loading thread runs; the main loop acts as its result appears
    assert taken and taken[0] is not None and taken[0][0] == "first edit"
    assert len(loads) == 1, "the second edit was left waiting for a result that never comes"
    loads.pop(0)()
    assert (reloader.result() or ("",))[0] == "file changed"


def _emptying_follower(tmp_path: Path, allow_empty: bool = False) -> tuple[Path, FaultyStore, ConfigFollower]:
    """A follower over a state database whose jobs came from CONFIG, as a daemon that ran it."""
    path = tmp_path / "schedules.yaml"
    path.write_text(CONFIG)
    store = FaultyStore(f"sqlite:///{tmp_path / 'state.db'}")
    with store.write(fenced=False) as conn:
        migrate(conn)
        apply_config(conn, load_config(path), NOW, "daemon")
    reloader = Reloader(path, "python", False, spawn=lambda work: work())
    follower = ConfigFollower(
        load_config(path), reloader, store, Notifier({}), monotonic=lambda: 0.0, allow_empty=allow_empty
    )
    return path, store, follower


def _rejections(store: FaultyStore) -> list[str]:
    with store.read() as conn:
        return [p for e in audit.query(conn) if e["event"] == "config-rejected" for p in e["details"]["problems"]]


def test_a_file_without_jobs_is_rejected_over_active_jobs_unless_it_says_so(tmp_path: Path) -> None:
    path, store, follower = _emptying_follower(tmp_path)
    running = load_config(path)
    path.write_text("version: 1\njobs:\n  # a: {pipeline: x.y:z, every: 1m}\n")  # everything commented out
    follower.request("file changed")
    store.armed = "before"  # the database is away as the rejection is recorded: the verdict waits
    with pytest.raises(OperationalError):
        follower.poll(NOW, running, lambda: "status")
    assert not follower.idle
    assert follower.poll(NOW, running, lambda: "status") is None
    [problem] = _rejections(store)
    assert problem.startswith(f"{path}:2:1: the file has no jobs: applying it would remove all 1 active job(s) (a)")
    assert follower.idle
    path.write_text("version: 1\njobs: {}\n")  # on purpose
    follower.request("file changed")
    verdict = follower.poll(NOW, running, lambda: "status")
    assert verdict is not None and verdict[1].jobs == {} and len(_rejections(store)) == 1


def test_allow_empty_applies_a_file_without_jobs(tmp_path: Path) -> None:
    path, store, follower = _emptying_follower(tmp_path, allow_empty=True)
    path.write_text("version: 1\njobs:\n")
    follower.request("file changed")
    verdict = follower.poll(NOW, load_config(path), lambda: "status")
    assert verdict is not None and verdict[1].jobs == {} and _rejections(store) == []
