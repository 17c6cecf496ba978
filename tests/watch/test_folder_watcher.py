"""One FolderWatcher in process, on real files: the scan, path checks and what it hands over.

The thread is not started: the tests call its scan and advance steps with explicit times, so
settle waits cost nothing and nothing depends on inotify timing (the daemon tests cover that).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scheduler.config.loader import parse_config
from scheduler.policy.file_runs import Dispatch
from scheduler.watch.folder_watcher import FolderWatcher
from scheduler.watch.seen_files import Known, Notice


def make_watcher(tmp_path: Path, watch: str, known: dict[str, Known | None] | None = None) -> tuple:
    config = parse_config(
        f"version: 1\njobs:\n  w:\n    pipeline: a.b:c\n    watch: {watch}\n    parameters: {{p: '{{path}}'}}\n",
        tmp_path / "schedules.yaml",
        "rev",
    )
    emitted: list[Dispatch | Notice] = []
    watcher = FolderWatcher(config.jobs["w"], lambda details: dict(known or {}), emitted.append)
    watcher.known = watcher._load_known(watcher.retrigger)
    return watcher, emitted


def settle_and_advance(watcher: FolderWatcher, start: float = 1000.0) -> None:
    watcher._scan(start, at_start=True)
    watcher._advance(start + 10)  # well past settle: everything still there and unchanged is complete


def dispatched(emitted: list) -> list[str]:
    return sorted(seen.rel for item in emitted if isinstance(item, Dispatch) for seen in item.files)


def notices(emitted: list, event: str) -> list[dict]:
    return [item.details for item in emitted if isinstance(item, Notice) and item.event == event]


def test_scan_hands_over_new_complete_files_only(tmp_path: Path) -> None:
    incoming = tmp_path / "in"
    (incoming / "sub").mkdir(parents=True)
    for name in ("a.csv", "b.csv", ".hidden.csv", "c.tmp", "sub/deep.csv"):
        (incoming / name).write_text("x\n")
    watcher, emitted = make_watcher(tmp_path, "{path: in, patterns: ['*.csv']}", known={"b.csv": None})
    settle_and_advance(watcher)
    assert dispatched(emitted) == ["a.csv"]  # b.csv was seen before; the rest are ignored or too deep
    (dispatch,) = [item for item in emitted if isinstance(item, Dispatch)]
    assert dispatch.files[0].path == str((incoming / "a.csv").resolve()) and dispatch.files[0].found_at_start
    assert "a.csv" in watcher.known


def test_recursive_scan_does_not_enter_symlinked_folders(tmp_path: Path) -> None:
    incoming, outside = tmp_path / "in", tmp_path / "outside"
    (incoming / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.csv").write_text("no\n")
    (incoming / "sub" / "deep.csv").write_text("yes\n")
    (incoming / "escape").symlink_to(outside, target_is_directory=True)
    watcher, emitted = make_watcher(tmp_path, "{path: in, recursive: true}")
    settle_and_advance(watcher)
    assert dispatched(emitted) == ["sub/deep.csv"]


def test_unreadable_file_is_refused_once_and_never_handed_over(tmp_path: Path, monkeypatch) -> None:
    incoming = tmp_path / "in"
    incoming.mkdir()
    locked = incoming / "locked.csv"
    locked.write_text("x\n")
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads everything: make the permission check answer as for anyone else
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if p == str(locked) else real_access(p, mode))
    watcher, emitted = make_watcher(tmp_path, "{path: in}")
    settle_and_advance(watcher)
    settle_and_advance(watcher, start=2000.0)  # seen again by the next scan: not refused twice
    assert dispatched(emitted) == []
    (refusal,) = notices(emitted, "file-refused")
    assert refusal["file"] == "locked.csv" and refusal["reason"] == "not readable"


def test_a_changed_seen_file_is_noticed_on_events_not_on_every_scan(tmp_path: Path) -> None:
    incoming = tmp_path / "in"
    incoming.mkdir()
    (incoming / "a.csv").write_text("x\n")
    watcher, emitted = make_watcher(tmp_path, "{path: in}", known={"a.csv": None})
    settle_and_advance(watcher)
    assert emitted == []
    (incoming / "a.csv").write_text("changed\n")
    watcher._event(str(incoming / "a.csv"), 1500.0)
    watcher._event(str(incoming / "a.csv"), 1501.0)
    watcher._advance(1600.0)
    assert dispatched(emitted) == [] and [n["file"] for n in notices(emitted, "file-modified-ignored")] == ["a.csv"]


def test_forgotten_files_are_handed_over_again_by_the_next_scan(tmp_path: Path) -> None:
    incoming = tmp_path / "in"
    incoming.mkdir()
    (incoming / "a.csv").write_text("x\n")
    watcher, emitted = make_watcher(tmp_path, "{path: in}")
    settle_and_advance(watcher)
    watcher.forget(["a.csv"])  # what the daemon does when the job was paused
    settle_and_advance(watcher, start=2000.0)
    assert dispatched(emitted) == ["a.csv", "a.csv"]


def three_files_waiting(tmp_path: Path, catchup: str) -> tuple[FolderWatcher, list]:
    """f0, f1, f2 (oldest to newest) landed while the daemon was down; settle 1s."""
    incoming = tmp_path / "in"
    incoming.mkdir()
    for n in range(3):
        (incoming / f"f{n}.csv").write_text("x\n")
        os.utime(incoming / f"f{n}.csv", ns=(n * 10**9, n * 10**9))
    config = parse_config(
        f"version: 1\njobs:\n  w:\n    pipeline: a.b:c\n    watch: {{path: in, settle: 1s}}\n    catchup: {catchup}\n",
        tmp_path / "schedules.yaml",
        "rev",
    )
    emitted: list = []
    return FolderWatcher(config.jobs["w"], lambda details: {}, emitted.append), emitted


@pytest.mark.parametrize(("catchup", "runs", "skipped"), [("all", 3, 0), ("latest", 1, 2), ("none", 0, 3)])
def test_files_found_at_start_follow_catchup(tmp_path: Path, catchup: str, runs: int, skipped: int) -> None:
    watcher, emitted = three_files_waiting(tmp_path, catchup)
    settle_and_advance(watcher)
    dispatches = [item for item in emitted if isinstance(item, Dispatch)]
    assert len([d for d in dispatches if d.skip is None]) == runs
    assert len([d for d in dispatches if d.skip is not None]) == skipped
    if catchup == "latest":
        assert [d.files[0].rel for d in dispatches if d.skip is None] == ["f2.csv"]


def test_recorded_files_that_are_gone_are_forgotten_by_the_next_scan(tmp_path: Path) -> None:
    incoming = tmp_path / "in"
    incoming.mkdir()
    (incoming / "here.csv").write_text("x\n")
    known: dict[str, Known | None] = {"here.csv": None, **{f"gone-{n}.csv": None for n in range(1000)}}
    watcher, emitted = make_watcher(tmp_path, "{path: in}", known=known)
    settle_and_advance(watcher)
    assert watcher.known == {"here.csv": None} and emitted == []


def test_catchup_latest_chooses_among_all_files_found_at_start(tmp_path: Path) -> None:
    watcher, emitted = three_files_waiting(tmp_path, "latest")
    incoming = tmp_path / "in"
    watcher._scan(1000.0, at_start=True)
    (incoming / "f2.csv").write_text("still being written\n")  # the newest is not complete yet
    os.utime(incoming / "f2.csv", ns=(3 * 10**9, 3 * 10**9))
    watcher._event(str(incoming / "f2.csv"), 1000.5)
    watcher._advance(1001.2)  # f0 and f1 are complete: they wait for f2
    assert emitted == []
    watcher._advance(1001.6)
    outcome = sorted((d.files[0].rel, d.skip[0] if d.skip else "run") for d in emitted)
    assert outcome == [("f0.csv", "coalesced"), ("f1.csv", "coalesced"), ("f2.csv", "run")]
